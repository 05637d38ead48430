package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// pruneRules have rules for .py files only, a rule for every file, a private
// rule a .py rule depends on, and a rule for setup.py.
const pruneRules = `
private rule helper { strings: $h = "HELPER" condition: $h }
rule any_file { meta: weight = 1 strings: $a = "ANYWHERE" condition: $a }
rule py_exec { meta: weight = 10 filetype = ".py" strings: $e = "exec(" condition: $e and helper }
rule setup_only { meta: weight = 5 filetype = "setup.py" strings: $s = "cmdclass" condition: $s }
rule txt_or_md { meta: weight = 2 filetype = ".txt .md" strings: $t = "NOTE" condition: $t }
`

// TestPruningScansOnlyWhatPathsAdmit: each file is scanned with the rules
// its path admits (subsets compiled once each), a file no rule admits is not
// scanned, and the result is the exhaustive one.
func TestPruningScansOnlyWhatPathsAdmit(t *testing.T) {
	rs := compile(t, map[string]string{"p": pruneRules})
	files := [][2]string{
		{"p-1/setup.py", "HELPER exec( cmdclass ANYWHERE NOTE"},
		{"p-1/p/mod.py", "HELPER exec( NOTE"},
		{"p-1/p/other.py", "exec( without the helper"},
		{"p-1/README.md", "NOTE exec( HELPER"},
		{"p-1/data.bin", "ANYWHERE exec( HELPER"},
		{"p-1/LICENSE", "nothing"},
	}
	data := tgz(t, files...)
	plain := newEngine(t, Config{Threads: 2, Exhaustive: true})
	var skipped atomic.Int64
	var subsets atomic.Int64
	e := newEngine(t, Config{Threads: 2, OnSkip: func(int) { skipped.Add(1) }, OnSubset: func(_ time.Duration, err error) {
		if err != nil {
			t.Errorf("subset: %v", err)
		}
		subsets.Add(1)
	}})
	res := scanAsPlain(t, e, plain, rs, "p-1.tar.gz", data)
	if res.Score != 18 || res.TopFile != "p-1/setup.py" {
		t.Errorf("score %d top %s", res.Score, res.TopFile)
	}
	// Every file admits any_file: nothing is skipped here. The subsets:
	// setup.py {any_file, py_exec, setup_only, helper}, .py {any_file,
	// py_exec, helper}, .md {any_file, txt_or_md}, the rest {any_file}.
	if skipped.Load() != 0 || subsets.Load() != 4 || res.Stats.Scanned != len(files) {
		t.Errorf("%d skipped, %d subsets compiled, %d scanned", skipped.Load(), subsets.Load(), res.Stats.Scanned)
	}
	// Without any_file, LICENSE and data.bin admit nothing.
	rs2 := compile(t, map[string]string{"p": strings.Replace(pruneRules, "rule any_file", "private rule any_file", 1)})
	if st := scanAsPlain(t, e, plain, rs2, "p-1.tar.gz", data).Stats; st.Skipped != 2 || st.SkippedBytes != int64(len("ANYWHERE exec( HELPER")+len("nothing")) || st.Scanned != 4 || st.Files != 6 {
		t.Errorf("stats %+v: want data.bin and LICENSE skipped", st)
	}
	if c := e.Counters(); c.Skipped != 2 || c.Subsets < 7 {
		t.Errorf("counters %+v", c)
	}
}

// TestMatchCacheKeysOnRulesAndContent: bytes first seen as LICENSE.txt are
// scanned again as evil.py (other rules), and the same bytes under the same
// rules are a hit; every answer equals the exhaustive one.
func TestMatchCacheKeysOnRulesAndContent(t *testing.T) {
	rs := compile(t, map[string]string{"p": pruneRules})
	body := "HELPER exec( NOTE ANYWHERE"
	var scans atomic.Int64
	e := newEngine(t, Config{Threads: 1, OnFile: func(int, time.Duration) { scans.Add(1) }})
	plain := newEngine(t, Config{Threads: 1, Exhaustive: true})
	for i, tc := range []struct {
		path  string
		scans int64
		hits  int
	}{
		{"LICENSE.txt", 1, 0},
		{"evil.py", 2, 0},   // .py rules: not answered by the .txt entry
		{"other.txt", 2, 1}, // same bytes, same rules as LICENSE.txt
		{"x/evil.py", 2, 1},
		{"setup.py", 3, 0},
	} {
		res := scanAsPlain(t, e, plain, rs, "d.tar.gz", tgz(t, [2]string{tc.path, body}))
		if scans.Load() != tc.scans || res.Stats.CacheHits != tc.hits {
			t.Errorf("%d %s: %d scans so far, %d hits; want %d, %d", i, tc.path, scans.Load(), res.Stats.CacheHits, tc.scans, tc.hits)
		}
	}
	// Another compilation of the same sources is the same rules.
	rsAgain := compile(t, map[string]string{"p": pruneRules})
	if res, err := e.Scan(context.Background(), rsAgain, "d.tar.gz", tgz(t, [2]string{"a.py", body})); err != nil || res.Stats.CacheHits != 1 {
		t.Errorf("same sources compiled again: %d hits, %v", res.Stats.CacheHits, err)
	}
	// Other sources (one byte of a string) are other rules.
	rsOther := compile(t, map[string]string{"p": strings.Replace(pruneRules, `"NOTE"`, `"NOTF"`, 1)})
	if res, err := e.Scan(context.Background(), rsOther, "d.tar.gz", tgz(t, [2]string{"a.py", body})); err != nil || res.Stats.CacheHits != 0 {
		t.Errorf("other rules: %d hits, %v", res.Stats.CacheHits, err)
	}
}

// TestMatchCacheOnlyForContentModules: a rule set importing a module whose
// values may not depend only on the bytes (time) is never cached; one that
// imports math is.
func TestMatchCacheOnlyForContentModules(t *testing.T) {
	for _, tc := range []struct {
		module string
		hits   int
	}{{"time", 0}, {"math", 1}, {"pe", 0}} {
		src := fmt.Sprintf("import %q\n%s", tc.module, pruneRules)
		rs := compile(t, map[string]string{"p": src})
		e := newEngine(t, Config{Threads: 1})
		data := tgz(t, [2]string{"a.py", "HELPER exec("})
		for range 2 {
			if _, err := e.Scan(context.Background(), rs, "d.tar.gz", data); err != nil {
				t.Fatal(err)
			}
		}
		if c := e.Counters(); c.CacheHits != int64(tc.hits) {
			t.Errorf("import %s: %d hits, want %d", tc.module, c.CacheHits, tc.hits)
		}
	}
}

// TestSingleFlight: the same bytes in two distributions scanned at the same
// time are scanned once; the second file joins the first's scan and gets
// its matches, and its buffer is given back at once.
func TestSingleFlight(t *testing.T) {
	rs := compile(t, map[string]string{"p": pruneRules})
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	var scans atomic.Int64
	// The budget holds both mod.py buffers (62 bytes each) but not also
	// other.py's (8): other.py is read only once the wheel's mod.py,
	// joining the scan in flight, gave its buffer back.
	e := newEngine(t, Config{Threads: 2, Budget: 130, OnFile: func(int, time.Duration) {
		scans.Add(1)
		started <- struct{}{}
		<-release
	}})
	body := "HELPER exec( ANYWHERE " + strings.Repeat("x", 40)
	sdist := tgz(t, [2]string{"p-1/p/mod.py", body})
	whl := wheel(t, [2]string{"p/mod.py", body}, [2]string{"p/other.py", "ANYWHERE"})
	type out struct {
		res Result
		err error
	}
	first := make(chan out, 1)
	go func() {
		r, err := e.Scan(context.Background(), rs, "p-1.tar.gz", sdist)
		first <- out{r, err}
	}()
	<-started // the sdist's mod.py is under a scanner
	second := make(chan out, 1)
	go func() {
		r, err := e.Scan(context.Background(), rs, "p-1-py3-none-any.whl", whl)
		second <- out{r, err}
	}()
	select {
	case <-started: // the wheel's other.py: its mod.py joined the first scan
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the wheel's other.py never reached a scanner: the joined file kept its budget")
	}
	close(release)
	a, b := <-first, <-second
	if a.err != nil || b.err != nil {
		t.Fatal(a.err, b.err)
	}
	if scans.Load() != 2 || b.res.Stats.CacheHits != 1 || b.res.Stats.Scanned != 1 {
		t.Errorf("%d scans; wheel stats %+v; want mod.py scanned once", scans.Load(), b.res.Stats)
	}
	if a.res.Score != 11 || b.res.Score != 11 || b.res.TopFile != "p/mod.py" || len(b.res.Files) != 2 {
		t.Errorf("sdist %+v\nwheel %+v", a.res.Distribution, b.res.Distribution)
	}
}

// TestJoinedScanSharesItsFailure: a file that joins a scan which times out
// fails its own distribution with the scan timeout, under its own path.
func TestJoinedScanSharesItsFailure(t *testing.T) {
	rs := compile(t, map[string]string{"slow": `rule slow { condition: for all i in (0..filesize-1) : ( uint8(i) < 0x100 ) }`})
	e := newEngine(t, Config{Threads: 2, Limits: limit.Limits{ScanTimeout: time.Second}})
	big := bytes.Repeat([]byte("A"), 40<<20)
	errs := make(chan error, 2)
	for _, name := range []string{"one.bin", "two.bin"} {
		go func() {
			_, err := e.Run(context.Background(), rs, func(ctx context.Context, alloc archive.Alloc, emit archive.Emit, _ archive.Link) (archive.Stats, error) {
				return archive.Stats{Files: 1}, emit(0, name, big)
			})
			var le *limit.Error
			if !errors.As(err, &le) || le.Kind != limit.ScanTimeout || le.Path != name {
				err = fmt.Errorf("%s: %w, want a scan_timeout limit error on it", name, err)
			} else {
				err = nil
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if c := e.Counters(); c.CacheEntries != 0 {
		t.Errorf("a failed scan was cached: %+v", c)
	}
}

// TestMatchCacheIsBounded: entries beyond the bound evict the least recently
// used.
func TestMatchCacheIsBounded(t *testing.T) {
	rs := compile(t, map[string]string{"p": pruneRules})
	const bound = 8 << 10
	e := newEngine(t, Config{Threads: 2, MatchCacheSize: bound})
	var files [][2]string
	for i := range 400 {
		files = append(files, [2]string{fmt.Sprintf("p/m%03d.py", i), fmt.Sprintf("HELPER exec( %d", i)})
	}
	if _, err := e.Scan(context.Background(), rs, "p.tar.gz", tgz(t, files...)); err != nil {
		t.Fatal(err)
	}
	c := e.Counters()
	if c.CacheBytes > bound || c.CacheEntries == 0 || c.CacheEntries >= 400 {
		t.Errorf("cache holds %d entries, %d bytes; bound %d", c.CacheEntries, c.CacheBytes, bound)
	}
	// The last files are still there, the first are gone.
	res, err := e.Scan(context.Background(), rs, "q.tar.gz", tgz(t, files[399], files[0]))
	if err != nil || res.Stats.CacheHits != 1 {
		t.Errorf("%d hits, %v; want the newest entry only", res.Stats.CacheHits, err)
	}
	off := newEngine(t, Config{Threads: 1, NoMatchCache: true})
	for range 2 {
		off.Scan(context.Background(), rs, "q.tar.gz", tgz(t, files[0]))
	}
	if c := off.Counters(); c.CacheHits != 0 || c.Scans != 2 {
		t.Errorf("cache off: %+v", c)
	}
}

// TestUnsplittableSetScansEverythingAdmitted: sources the split cannot read
// (here: libyara compiles them, the split is given other sources) fall back
// to the whole set, never to fewer rules.
func TestUnsplittableSetScansEverythingAdmitted(t *testing.T) {
	rs := compile(t, map[string]string{"p": pruneRules})
	p := newPlan(rs, false, 8, nil)
	if !p.split {
		t.Fatalf("not split: %s", p.reason)
	}
	tg, _ := p.targetFor("x.py")
	tg.compile()
	if !tg.subset || tg.holds.has(p.index["setup_only"]) || !tg.holds.has(p.index["helper"]) {
		t.Errorf(".py subset holds %v", tg.holds)
	}
	// A plan whose split disagrees with libyara uses the whole set.
	p.split = false
	tg, _ = p.targetFor("x.py")
	if tg != p.fullTarget {
		t.Error("an unsplit plan made a subset")
	}
	// A subset that does not compile falls back to the whole set.
	bad := &target{plan: p, admitted: newRuleBits(p.n)}
	bad.admitted.set(p.index["py_exec"])
	p.split = true
	p.deps[p.index["py_exec"]] = nil // the split "missed" helper: the subset does not compile
	bad.compile()
	if bad.subset || bad.rules != rs {
		t.Error("a subset missing a dependency was used")
	}
}

// yaraStrings runs `yara -s -L` and returns, by rule and string, the lines
// it prints: "offset:length:data".
func yaraStrings(t *testing.T, yaraBin, rulesFile, file string) map[string]map[string][]string {
	out, err := exec.Command(yaraBin, "-s", "-L", rulesFile, file).Output()
	if err != nil {
		t.Fatalf("yara -s: %v", err)
	}
	got := map[string]map[string][]string{}
	var rule string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "0x") {
			rule, _, _ = strings.Cut(line, " ")
			got[rule] = map[string][]string{}
			continue
		}
		parts := strings.SplitN(line, ":", 4)
		off, _ := strconv.ParseInt(parts[0][2:], 16, 64)
		got[rule][parts[2]] = append(got[rule][parts[2]], fmt.Sprintf("%d:%s:%s", off, parts[1], strings.TrimPrefix(parts[3], " ")))
	}
	return got
}

// printed is how yara -s prints match data: hex strings as hex bytes (64 at
// most, then "..."), others with \xHH escapes.
func printed(data []byte, hex bool) string {
	var b strings.Builder
	if hex {
		for i, c := range data[:min(64, len(data))] {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%02X", c)
		}
		return b.String()
	}
	for _, c := range data {
		if c >= 32 && c <= 126 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "\\x%02X", c)
		}
	}
	return b.String()
}

// TestMatchDetailsAgainstYaraCLI: the matched strings the engine collects are
// those `yara -s -L` prints (offsets, lengths, data), the first 16 of each
// string, with the rest counted; a cached answer is the same.
func TestMatchDetailsAgainstYaraCLI(t *testing.T) {
	yaraBin := yaraCLI(t)
	src := `
rule many { meta: weight = 1 strings: $a = "AB" $b = "ZZZ" condition: $a or $b }
rule hexy { meta: weight = 2 filetype = ".py" strings: $h = { 41 42 [0-2] 43 } $w = "wide" wide condition: any of them }
rule regexy { meta: weight = 3 strings: $r = /C[A-Z]{2,}D/ $p = "PRIV" private condition: $r or $p }
rule nocount { meta: weight = 4 filetype = ".md" strings: $n = "AB" condition: $n }
`
	rs := compile(t, map[string]string{"d": src})
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "r.yara")
	writeFile(t, rulesFile, src)
	body := strings.Repeat("AB ", 40) + "ABXC w\x00i\x00d\x00e\x00 C" + strings.Repeat("Q", 700) + "D PRIV \x01\xffCXYD"
	file := filepath.Join(dir, "mod.py")
	writeFile(t, file, body)
	cli := yaraStrings(t, yaraBin, rulesFile, file)

	e := newEngine(t, Config{Threads: 1, MatchDetails: true})
	data := tgz(t, [2]string{"mod.py", body})
	var first []score.StringHits
	for round := range 2 {
		res, err := e.Scan(context.Background(), rs, "d.tar.gz", data)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Files) != 1 {
			t.Fatalf("%+v", res.Distribution)
		}
		f := res.Files[0]
		if round == 1 {
			if res.Stats.CacheHits != 1 || !reflect.DeepEqual(f.Strings, first) {
				t.Errorf("cached details differ (%d hits)", res.Stats.CacheHits)
			}
			break
		}
		first = f.Strings
		seen := 0
		for _, h := range f.Strings {
			lines := cli[h.Rule][h.String]
			if len(lines) == 0 {
				t.Errorf("%s %s: yara printed nothing", h.Rule, h.String)
				continue
			}
			if len(h.Matches)+h.Omitted != len(lines) || len(h.Matches) != min(len(lines), score.MaxStringMatches) {
				t.Errorf("%s %s: %d listed + %d omitted, yara %d", h.Rule, h.String, len(h.Matches), h.Omitted, len(lines))
			}
			for i, m := range h.Matches {
				want := lines[i]
				got := fmt.Sprintf("%d:%d:%s", m.Offset, m.Length, printed(m.Data, h.String == "$h"))
				if len(m.Data) == m.Length || h.String == "$h" {
					if got != want {
						t.Errorf("%s %s match %d: %q, yara %q", h.Rule, h.String, i, got, want)
					}
				} else if !strings.HasPrefix(want, got) || len(m.Data) != score.MaxMatchBytes {
					t.Errorf("%s %s match %d: %q is not the start of yara's %q", h.Rule, h.String, i, got, want)
				}
			}
			seen++
		}
		// Every string yara printed for the counted rules is listed
		// (nocount matched but counts only in .md files).
		for _, rule := range []string{"many", "hexy", "regexy"} {
			for str := range cli[rule] {
				if !slices.ContainsFunc(f.Strings, func(h score.StringHits) bool { return h.Rule == rule && h.String == str }) {
					t.Errorf("%s %s printed by yara, not listed", rule, str)
				}
			}
		}
		// $b did not match; $p is private (yara -s does not print it).
		if seen != 4 || slices.ContainsFunc(f.Strings, func(h score.StringHits) bool { return h.Rule == "nocount" || h.String == "$p" }) {
			t.Errorf("listed %+v", f.Strings)
		}
		long := slices.IndexFunc(f.Strings, func(h score.StringHits) bool { return h.String == "$r" })
		if long < 0 || f.Strings[long].Matches[0].Length != 512 {
			t.Errorf("the 702-byte match of $r is not cut at 512: %+v", f.Strings[long])
		}
	}
}

// TestMatchDetailsNeedMatchData: details force libyara's 512 bytes of match
// data even when the engine is asked for 1.
func TestMatchDetailsNeedMatchData(t *testing.T) {
	cfg := Config{MaxMatchData: 1, MatchDetails: true}.withDefaults()
	if cfg.MaxMatchData != 512 {
		t.Errorf("max match data %d with details", cfg.MaxMatchData)
	}
	if cfg := (Config{MaxMatchData: 1}).withDefaults(); cfg.MaxMatchData != 1 {
		t.Errorf("max match data %d without details", cfg.MaxMatchData)
	}
}

// TestClosureOfEveryRuleIsNoSubsetFailure: admitted rules that depend on
// every rule of the set are scanned with the whole set, which is no failed
// subset compilation (OnSubset, the subsets{result="error"} metric).
func TestClosureOfEveryRuleIsNoSubsetFailure(t *testing.T) {
	rs := compile(t, map[string]string{"p": `
rule txt { meta: weight = 1 filetype = ".txt" strings: $t = "NOTE" condition: $t }
rule py { meta: weight = 2 filetype = ".py" strings: $e = "exec(" condition: $e and txt }
`})
	var failed atomic.Int64
	e := newEngine(t, Config{Threads: 1, OnSubset: func(_ time.Duration, err error) {
		if err != nil {
			failed.Add(1)
			t.Errorf("subset: %v", err)
		}
	}})
	plain := newEngine(t, Config{Threads: 1, Exhaustive: true})
	res := scanAsPlain(t, e, plain, rs, "p.tar.gz", tgz(t, [2]string{"p/a.py", "exec( NOTE"}, [2]string{"p/b.txt", "NOTE"}))
	if res.Score != 3 {
		t.Errorf("score %d, want 3", res.Score)
	}
	if c := e.Counters(); c.SubsetFailures != 0 || failed.Load() != 0 {
		t.Errorf("counters %+v", c)
	}
}

// TestSubsetHoldsGlobalRulesThePathDoesNotAdmit: a global rule gates every
// rule of the set, so a subset holds every global rule, also one that is
// private or whose filetype the path does not admit (neither is in the
// admitted set). Left out, the .py rule matched a file the global rule
// excludes: a score the whole set never gives.
func TestSubsetHoldsGlobalRulesThePathDoesNotAdmit(t *testing.T) {
	for name, global := range map[string]string{
		"private": `private global rule small { condition: filesize < 16 }`,
		"txt":     `global rule small { meta: filetype = ".txt" condition: filesize < 16 }`,
	} {
		t.Run(name, func(t *testing.T) {
			rs := compile(t, map[string]string{"p": global + `
rule py_exec { meta: weight = 10 filetype = ".py" strings: $e = "exec(" condition: $e }
rule txt_note { meta: weight = 2 filetype = ".txt" strings: $t = "NOTE" condition: $t }
`})
			var subsets atomic.Int64
			e := newEngine(t, Config{Threads: 1, OnSubset: func(_ time.Duration, err error) {
				if err != nil {
					t.Errorf("subset: %v", err)
				}
				subsets.Add(1)
			}})
			plain := newEngine(t, Config{Threads: 1, Exhaustive: true})
			// Over 16 bytes: the global rule is false, nothing matches.
			res := scanAsPlain(t, e, plain, rs, "p-1.tar.gz", tgz(t, [2]string{"p-1/big.py", "exec( and more than sixteen bytes"}))
			if res.Score != 0 || len(res.Files) != 0 {
				t.Errorf("big.py: score %d, files %+v; want nothing matched", res.Score, res.Files)
			}
			// Under 16 bytes the .py rule matches, pruned or not.
			if res := scanAsPlain(t, e, plain, rs, "p-1.tar.gz", tgz(t, [2]string{"p-1/a.py", "exec("})); res.Score != 10 {
				t.Errorf("a.py: score %d, want 10", res.Score)
			}
			if subsets.Load() == 0 {
				t.Error("no subset compiled: the test does not reach pruning")
			}
		})
	}
}
