package scan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// TestOracleYaraCLI checks per-file matches against the yara command line
// tool: generated packages are extracted to disk, `yara -r` scans them, and
// every file's matched rules (after the filetype filter) must equal ours.
func TestOracleYaraCLI(t *testing.T) {
	yaraBin := yaraCLI(t)
	sources := demo.Rules()
	sources["example"] = exampleRules
	set := rules.Set{Sources: sources}
	rs := compile(t, sources)
	// The CLI gets the same text the engine compiles: sources joined by "\n".
	var joined []string
	for _, st := range set.Stems() {
		joined = append(joined, sources[st])
	}
	rulesFile := filepath.Join(t.TempDir(), "all.yara")
	writeFile(t, rulesFile, strings.Join(joined, "\n"))

	dists, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	// Plus generated packages mixing the rules' strings into random text.
	rng := rand.New(rand.NewPCG(1, 2))
	tokens := []string{"ALPHA", "BRAVO", "CHARLIE", "DELTA", "exec(base64.b64decode(", "discord.com/api/webhooks/", "marshal.loads(", "zlib.decompress(", "socket.socket(", "SPDX-License-Identifier: Apache-2.0", "urllib.request.urlopen", "subprocess.", "Login Data", `Local Storage\leveldb`}
	for p := range 12 {
		var files [][2]string
		for f := range 30 {
			body := genText(rng, "x", 20, 4, tokens)
			ext := []string{".py", ".txt", "setup.py", ".pyw", ".cfg"}[rng.IntN(5)]
			files = append(files, [2]string{fmt.Sprintf("gen%d-1.0/m%d%s", p, f, ext), body})
		}
		dists = append(dists, genDist(t, p, files))
	}

	// And sdists whose hard links give files' content other names (and
	// suffixes), as tarfile extracts them.
	for p := range 4 {
		var ents []tarEnt
		for f := range 12 {
			body := genText(rng, "y", 10, 3, tokens)
			ext := []string{".py", ".txt", "setup.py", ".cfg"}[rng.IntN(4)]
			name := fmt.Sprintf("lnk%d-1.0/d%d%s", p, f, ext)
			ents = append(ents, tarEnt{name: name, body: body})
			for l := range rng.IntN(3) {
				ext := []string{".py", ".txt", "setup.py", ".pyw"}[rng.IntN(4)]
				ents = append(ents, tarEnt{name: fmt.Sprintf("lnk%d-1.0/l%d_%d%s", p, f, l, ext), link: name})
			}
		}
		dists = append(dists, demo.File{Name: fmt.Sprintf("lnk%d-1.0.tar.gz", p), Data: tgzEnts(t, ents...)})
	}

	// Twice: with the defaults, and with every scan watched by the match
	// memory guard (a bound no file reaches, but every file could) and 1
	// byte of match data per match: neither may change a match.
	for _, cfg := range []Config{{Threads: 2}, {Threads: 2, Limits: limit.Limits{MatchMemory: 8 << 10}, MaxMatchData: 1}} {
		var scans atomic.Int64
		cfg.OnFile = func(int, time.Duration) { scans.Add(1) }
		e := New(cfg)
		oracleRun(t, e, yaraBin, rulesFile, rs, dists)
		if w := e.guard.Watches(); cfg.Limits.MatchMemory > 0 && w < scans.Load()*9/10 {
			t.Errorf("%d of %d scans watched, want nearly all", w, scans.Load())
		}
		t.Logf("match memory %d: %d of %d scans watched", cfg.Limits.MatchMemory, e.guard.Watches(), scans.Load())
		e.Close()
	}
	New(Config{Threads: 1}).Close() // libyara's default match data again
}

// genText is lines lines of Python-like assignments to variables named
// prefix+number, each followed, one time in oneIn, by a line of one of
// tokens.
func genText(rng *rand.Rand, prefix string, lines, oneIn int, tokens []string) string {
	var b strings.Builder
	for range lines {
		fmt.Fprintf(&b, "%s%d = %d\n", prefix, rng.IntN(1000), rng.IntN(1000))
		if rng.IntN(oneIn) == 0 {
			b.WriteString(tokens[rng.IntN(len(tokens))] + "\n")
		}
	}
	return b.String()
}

func oracleRun(t *testing.T, e *Engine, yaraBin, rulesFile string, rs *rules.Compiled, dists []demo.File) {
	compared := 0
	for _, d := range dists {
		dir := t.TempDir()
		// Extract with the archive package itself, to disk, hard links as
		// hard links.
		paths := map[int]string{}
		_, err := archive.Walk(context.Background(), d.Data, d.Name, e.Limits(),
			func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil },
			func(index int, path string, data []byte) error {
				p := filepath.Join(dir, filepath.FromSlash(path))
				paths[index] = p
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				return os.WriteFile(p, data, 0o644)
			},
			func(index int, path string, target int) error {
				p := filepath.Join(dir, filepath.FromSlash(path))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				return os.Link(paths[target], p)
			})
		if err != nil {
			t.Fatalf("%s: extract: %v", d.Name, err)
		}
		out, err := exec.Command(yaraBin, "-r", "-w", rulesFile, dir).Output()
		if err != nil {
			t.Fatalf("yara on %s: %v", d.Name, err)
		}
		cli := map[string][]string{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			rule, path, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			rel, _ := filepath.Rel(dir, path)
			rel = filepath.ToSlash(rel)
			if r, ok := rs.Rule(rule); ok && r.Applies(rel) {
				cli[rel] = append(cli[rel], rule)
			}
		}
		res, err := e.Scan(context.Background(), rs, d.Name, d.Data)
		if err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		ours := map[string][]string{}
		for _, f := range res.Files {
			for _, h := range f.Rules {
				ours[f.Path] = append(ours[f.Path], h.Name)
			}
		}
		for path := range cli {
			sort.Strings(cli[path])
		}
		all := map[string]bool{}
		for p := range cli {
			all[p] = true
		}
		for p := range ours {
			all[p] = true
		}
		for p := range all {
			compared++
			if !slices.Equal(cli[p], ours[p]) {
				t.Errorf("%s: %s: yara CLI %v, engine %v", d.Name, p, cli[p], ours[p])
			}
		}
	}
	if compared < 50 {
		t.Fatalf("only %d matched files compared: the oracle is too weak", compared)
	}
	t.Logf("compared %d matched files across %d distributions", compared, len(dists))
}
