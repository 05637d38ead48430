package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules/matchmem"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	yara "github.com/hillu/go-yara/v4"
)

func asMatchMemory(t *testing.T, err error, path string, bound int64) {
	t.Helper()
	var le *limit.Error
	if !errors.As(err, &le) || le.Kind != MatchMemory || le.Path != path || le.Max != bound {
		t.Fatalf("error %v, want a match_memory limit error on %s with max %d", err, path, bound)
	}
}

// TestMatchMemoryStopsTheScan: 8 strings × 1,000,000 matches and a greedy
// regex would hold about 1 GB after some 15 s of scanning; the watchdog
// stops the scan near the 16 MiB bound and the distribution fails naming
// the file.
func TestMatchMemoryStopsTheScan(t *testing.T) {
	rs := compile(t, map[string]string{"h": testkit.GreedyRules(8), "r": `rule greedy { strings: $r = /[A-Za-z]{200,}/ condition: $r }`})
	const bound = 16 << 20
	e := newEngine(t, Config{Threads: 1, Limits: limit.Limits{MatchMemory: bound, ScanTimeout: time.Minute}})
	lines := strings.Repeat(strings.Repeat("A", 255)+"\n", 16<<20/256)
	data := tgz(t, [2]string{"p/ok.py", "AAAAAAAAAAAAAAAAAAAA"}, [2]string{"p/big.txt", lines})
	_, err := e.Scan(context.Background(), rs, "p.tar.gz", data)
	asMatchMemory(t, err, "p/big.txt", bound)
	if e.guard.Stops() != 1 {
		t.Errorf("%d scans stopped by the watchdog, want 1 (the scan ran to its end)", e.guard.Stops())
	}
	// The same rules on a file under the bound: a verdict, as before.
	res, err := e.Scan(context.Background(), rs, "q.tar.gz", tgz(t, [2]string{"q/a.py", strings.Repeat("A", 4096)}))
	if err != nil || len(res.Rules) != 2 || res.TopFile != "q/a.py" {
		t.Fatalf("small file: %+v %v", res.Distribution, err)
	}
}

// TestMatchMemoryBoundIsExact: whenever the watchdog looks, a file fails if
// and only if its matches cost more than the bound; the last look is taken
// when the scan finishes. "AB" repeated n times is n matches of 56 + 4 bytes.
func TestMatchMemoryBoundIsExact(t *testing.T) {
	rs := compile(t, map[string]string{"ab": `rule ab { strings: $a = "AB" condition: #a > 0 }`})
	const n = 20000
	data := bytes.Repeat([]byte("AB"), n)
	cost := int64(n * (matchmem.RecordSize + 4))
	for _, tc := range []struct {
		bound int64
		fail  bool
	}{{cost, false}, {cost - 1, true}, {cost / 2, true}} {
		e := newEngine(t, Config{Threads: 1, Limits: limit.Limits{MatchMemory: tc.bound}})
		res, err := e.Scan(context.Background(), rs, "ab.bin", data)
		if tc.fail {
			asMatchMemory(t, err, "ab.bin", tc.bound)
		} else if err != nil || res.Score != 0 || len(res.Rules) != 1 {
			t.Errorf("bound %d (the cost): %+v %v, want rule ab and no error", tc.bound, res.Distribution, err)
		}
		if e.guard.Watches() != 1 {
			t.Errorf("bound %d: %d scans watched, want 1", tc.bound, e.guard.Watches())
		}
		e.Close()
	}
}

func TestMatchMemoryWatchesOnlyWhatCanPassTheBound(t *testing.T) {
	rs := compile(t, map[string]string{"ab": `rule ab { strings: $a = "AB" $b = /B+/ condition: any of them }`})
	// Per offset at most: 2 × (56 + 4) for $a, 2 × (56 + 512) for $b.
	worst := int64(2*(matchmem.RecordSize+4) + 2*(matchmem.RecordSize+libyaraMaxMatchData))
	e := newEngine(t, Config{Threads: 1, Limits: limit.Limits{MatchMemory: 100 * worst}})
	for _, size := range []int{0, 1, 100} {
		if _, err := e.Scan(context.Background(), rs, "f", bytes.Repeat([]byte("B"), size)); err != nil {
			t.Fatal(err)
		}
	}
	if w := e.guard.Watches(); w != 0 {
		t.Errorf("%d small scans watched, want none", w)
	}
	if _, err := e.Scan(context.Background(), rs, "f", bytes.Repeat([]byte("x"), 101)); err != nil {
		t.Fatal(err)
	}
	if w := e.guard.Watches(); w != 1 {
		t.Errorf("a 101-byte scan: %d watched, want 1", w)
	}
}

// TestMatchMemoryDoesNotChangeVerdicts scans the demo packages and
// generated ones with (nearly) every scan watched, under a bound none
// reaches, and 1 byte of match data, and with nothing watched and libyara's
// 512: the results are the same. TestOracleYaraCLI does the same against
// the yara command line tool.
func TestMatchMemoryDoesNotChangeVerdicts(t *testing.T) {
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	sources := demo.Rules()
	sources["example"] = exampleRules
	rs := compile(t, sources)
	dists := append(files, generatedDists(t)...)
	run := func(cfg Config) (out []Result, watched, scans int64) {
		var n atomic.Int64
		cfg.OnFile = func(int, time.Duration) { n.Add(1) }
		e := New(cfg)
		defer e.Close()
		for _, d := range dists {
			res, err := e.Scan(context.Background(), rs, d.Name, d.Data)
			if err != nil {
				t.Fatalf("%s: %v", d.Name, err)
			}
			out = append(out, res)
		}
		return out, e.guard.Watches(), n.Load()
	}
	plain, unwatched, _ := run(Config{Threads: 2, Limits: limit.Limits{MatchMemory: 1 << 62}})
	guarded, watched, scans := run(Config{Threads: 2, Limits: limit.Limits{MatchMemory: 8 << 10}, MaxMatchData: 1})
	if unwatched != 0 || watched < scans*9/10 {
		t.Fatalf("%d scans watched without a bound, %d of %d with it: the comparison is void", unwatched, watched, scans)
	}
	matched := 0
	for i := range dists {
		a, b := plain[i], guarded[i]
		if a.Score != b.Score || a.TopFile != b.TopFile || fmt.Sprint(a.Rules) != fmt.Sprint(b.Rules) || fmt.Sprint(a.Files) != fmt.Sprint(b.Files) {
			t.Errorf("%s: unguarded %+v\nguarded %+v", dists[i].Name, a.Distribution, b.Distribution)
		}
		matched += len(a.Files)
	}
	if matched < 50 {
		t.Fatalf("only %d matched files compared", matched)
	}
	// Restore libyara's default for the other tests.
	New(Config{Threads: 1}).Close()
}

// generatedDists are the oracle's random packages (without the yara CLI).
func generatedDists(t *testing.T) []demo.File {
	var out []demo.File
	tokens := []string{"ALPHA", "BRAVO", "CHARLIE", "DELTA", "exec(base64.b64decode(", "discord.com/api/webhooks/", "marshal.loads(", "zlib.decompress(", "socket.socket("}
	for p := range 8 {
		var files [][2]string
		for f := range 30 {
			var b strings.Builder
			for i := range 40 {
				fmt.Fprintf(&b, "x%d = %d\n", i*p, f)
				if (i+f+p)%5 == 0 {
					b.WriteString(tokens[(i+f*p)%len(tokens)] + "\n")
				}
			}
			ext := []string{".py", ".txt", "setup.py", ".pyw", ".cfg"}[(f+p)%5]
			files = append(files, [2]string{fmt.Sprintf("gen%d-1.0/m%d%s", p, f, ext), b.String()})
		}
		out = append(out, genDist(t, p, files))
	}
	return out
}

func TestMaxMatchDataIsApplied(t *testing.T) {
	e := New(Config{Threads: 1, MaxMatchData: 7})
	v, err := yara.GetConfiguration(yara.ConfigMaxMatchData)
	e.Close()
	if err != nil || v != 7 {
		t.Errorf("max match data %v %v, want 7", v, err)
	}
	e = New(Config{Threads: 1})
	v, err = yara.GetConfiguration(yara.ConfigMaxMatchData)
	e.Close()
	if err != nil || v != libyaraMaxMatchData {
		t.Errorf("max match data %v %v, want libyara's default %d", v, err, libyaraMaxMatchData)
	}
}
