package rules

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/rules/matchmem"
)

// profileFiles are n generated source files of about size bytes: .py files
// and .txt files, every third one holding the word "MARKER".
func profileFiles(n, size int) []ProfileFile {
	rng := rand.New(rand.NewPCG(7, 9))
	words := []string{"import", "os", "def", "return", "self", "value", "print", "data", "(", ")", ":", "\n", "    "}
	var out []ProfileFile
	for i := range n {
		var b strings.Builder
		for b.Len() < size {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		if i%3 == 0 {
			b.WriteString("MARKER\n")
		}
		ext := ".py"
		if i%2 == 1 {
			ext = ".txt"
		}
		out = append(out, ProfileFile{Path: fmt.Sprintf("pkg-1.0/m%03d%s", i, ext), Data: []byte(b.String())})
	}
	return out
}

const profileRules = `rule cheap_marker { strings: $m = "MARKER" condition: $m }
rule cheap_py {
  meta:
    filetype = ".py"
  strings:
    $m = "MARKER"
  condition:
    $m
}
private rule helper { strings: $h = "MARKER" condition: $h }
rule uses_helper { condition: helper }
rule greedy { strings: $a = /MARKER.*zzz/ condition: $a }
`

// expensive walks every byte of the file in YARA's virtual machine: far
// more work than any string search here.
const expensiveRule = `rule expensive {
  condition:
    for all i in (0..filesize - 1) : (uint8(i) != 0xff)
}
`

// TestProfileOrder: the deliberately expensive rule comes first; the
// matches, admitted files and bytes follow each rule's filetype; a private
// rule's matches are unknown; libyara's warnings stand beside their rule.
func TestProfileOrder(t *testing.T) {
	files := profileFiles(120, 24<<10)
	set := Set{Sources: map[string]string{"cheap": profileRules, "zzz": expensiveRule}, Files: map[string]string{"zzz": "rules/zzz.yar"}}
	var calls []string
	rep, err := Profile(context.Background(), set, files, ProfileConfig{Threads: 2, Progress: func(done, total int, what string) {
		if total != 9 || done != len(calls)+1 {
			t.Errorf("progress %d/%d", done, total)
		}
		calls = append(calls, what)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 9 {
		t.Errorf("progress called %d times: %q", len(calls), calls)
	}
	for _, r := range rep.Rules {
		t.Logf("%-12s %.4fs share %.3f", r.Rule, r.Seconds, r.Share)
	}
	t.Logf("sum %.4fs full set %.4fs empty %.4fs", rep.Sum, rep.FullSet, rep.Empty)
	if len(rep.Rules) != 6 {
		t.Fatalf("%d rules", len(rep.Rules))
	}
	top := rep.Rules[0]
	if top.Rule != "expensive" || top.File != "rules/zzz.yar" {
		t.Fatalf("first rule %+v, want expensive from rules/zzz.yar; all: %+v", top, rep.Rules)
	}
	var allBytes int64
	for _, f := range files {
		allBytes += int64(len(f.Data))
	}
	byName := map[string]RuleCost{}
	sum := 0.0
	for i, r := range rep.Rules {
		byName[r.Rule] = r
		sum += r.Share
		if r.Seconds < 0 || (i > 0 && r.Seconds > rep.Rules[i-1].Seconds) {
			t.Errorf("rule %s: seconds %v out of order", r.Rule, r.Seconds)
		}
	}
	if math.Abs(sum-1) > 1e-9 || rep.Sum <= 0 || rep.FullSet <= 0 || rep.Files != 120 || rep.Bytes != allBytes {
		t.Errorf("shares sum to %v; report %+v", sum, rep)
	}
	want := map[string]struct {
		matches, files int
		bytes          int64
	}{
		"expensive":    {120, 120, allBytes},
		"cheap_marker": {40, 120, allBytes},
		"cheap_py":     {20, 60, 0},
		"helper":       {-1, 120, allBytes},
		"uses_helper":  {40, 120, allBytes},
		"greedy":       {0, 120, allBytes},
	}
	for name, w := range want {
		r := byName[name]
		if w.bytes == 0 {
			for _, f := range files {
				if strings.HasSuffix(f.Path, ".py") {
					w.bytes += int64(len(f.Data))
				}
			}
		}
		if r.Matches != w.matches || r.Files != w.files || r.Bytes != w.bytes || r.Timeouts != 0 {
			t.Errorf("rule %s: %+v, want matches %d files %d bytes %d", name, r, w.matches, w.files, w.bytes)
		}
	}
	if !byName["helper"].Private || byName["greedy"].File != "cheap.yara" {
		t.Errorf("helper %+v greedy %+v", byName["helper"], byName["greedy"])
	}
	if w := byName["greedy"].Warnings; len(w) == 0 || !strings.HasPrefix(w[0].String(), "cheap.yara:12: warning: ") {
		t.Errorf("greedy's warnings %q", w)
	}
	if len(byName["cheap_marker"].Warnings) != 0 {
		t.Errorf("cheap_marker's warnings %q", byName["cheap_marker"].Warnings)
	}
}

// TestProfileGlobalRule: a global rule is measured against a set without
// rules, the others against the global rules (which their subsets hold).
func TestProfileGlobalRule(t *testing.T) {
	files := profileFiles(30, 8<<10)
	set := Set{Sources: map[string]string{"g": "global rule small { condition: filesize < 1MB }\nrule marker { strings: $m = \"MARKER\" condition: $m }\n" + expensiveRule}}
	rep, err := Profile(context.Background(), set, files, ProfileConfig{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rules) != 3 || rep.Rules[0].Rule != "expensive" {
		t.Fatalf("rules %+v", rep.Rules)
	}
	for _, r := range rep.Rules {
		if r.Rule == "small" && (!r.Global || r.Matches != 30) {
			t.Errorf("global rule %+v", r)
		}
		if r.Rule == "marker" && r.Matches != 10 {
			t.Errorf("marker %+v", r)
		}
	}
}

func TestProfileRefusesBrokenSet(t *testing.T) {
	_, err := Profile(context.Background(), Set{Sources: map[string]string{"b": "rule b { condition: $x }"}}, profileFiles(1, 10), ProfileConfig{})
	if err == nil || !strings.Contains(err.Error(), "b.yara:1: ") {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Profile(ctx, Set{Sources: map[string]string{"a": profileRules}}, profileFiles(4, 10), ProfileConfig{}); err == nil {
		t.Fatal("cancelled profile succeeded")
	}
}

// TestProfileCostOfDependencies: a rule is not charged for the rules it
// depends on, nor a global rule for the other global rules: each is
// measured against its subset without it. Both cheap rules here once
// carried the whole cost of the expensive rule they go with. CPU times
// vary from run to run on a busy machine: three profiles are summed.
func TestProfileCostOfDependencies(t *testing.T) {
	files := profileFiles(40, 32<<10)
	costly := "for all i in (0..filesize - 1) : (uint8(i) != 0xff)"
	for _, tc := range []struct{ src, cheap, dear string }{
		{"rule expensive { condition: " + costly + " }\nrule uses_expensive { condition: expensive or filesize == 0 }\n", "uses_expensive", "expensive"},
		{"global rule cheap_g { condition: filesize < 1MB }\nglobal rule costly_g { condition: " + costly + " }\nrule marker { strings: $m = \"MARKER\" condition: $m }\n", "cheap_g", "costly_g"},
	} {
		var cheap, dear float64
		for range 3 {
			rep, err := Profile(context.Background(), Set{Sources: map[string]string{"r": tc.src}}, files, ProfileConfig{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Rules {
				switch r.Rule {
				case tc.cheap:
					cheap += r.Seconds
				case tc.dear:
					dear += r.Seconds
				}
			}
		}
		t.Logf("%s %.4fs, %s %.4fs", tc.cheap, cheap, tc.dear, dear)
		if dear <= 0 || cheap > dear/2 {
			t.Errorf("%s costs %.4fs beside %s's %.4fs: charged with the rule it goes with", tc.cheap, cheap, tc.dear, dear)
		}
	}
}

// floodRule has 12 literals, "a" to "aaaaaaaaaaaa", that all match at
// (nearly) every offset of a run of 'a's: over 1 MiB, libyara would keep
// 12 million matches, some 850 MB, until the scan ends.
func floodRule() string {
	var b strings.Builder
	b.WriteString("rule flood { strings:")
	for i := range 12 {
		fmt.Fprintf(&b, " $a%d = %q", i, strings.Repeat("a", i+1))
	}
	b.WriteString(" condition: any of them }\n")
	return b.String()
}

// TestProfileBoundsMatchMemory: a file whose matches pass
// ProfileConfig.MatchMemory has its scan stopped and is counted over match
// memory (not as a timeout, nor a match); a small file the rule matches
// and a large one it does not (watched, under the bound) count as before.
// The guard's watchdog stops the scan: libyara does not keep its matches
// until the scan ends.
func TestProfileBoundsMatchMemory(t *testing.T) {
	files := []ProfileFile{
		{Path: "pkg-1.0/flood.txt", Data: []byte(strings.Repeat("a", 1<<20))},
		{Path: "pkg-1.0/small.py", Data: []byte("aaaa")},
		{Path: "pkg-1.0/quiet.txt", Data: []byte(strings.Repeat("b", 64<<10))},
	}
	set := Set{Sources: map[string]string{"f": floodRule()}}
	rep, err := Profile(context.Background(), set, files, ProfileConfig{Threads: 2, MatchMemory: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rules) != 1 {
		t.Fatalf("rules %+v", rep.Rules)
	}
	r := rep.Rules[0]
	if r.Rule != "flood" || r.Files != 3 || r.OverMatchMemory != 1 || r.Timeouts != 0 || r.Matches != 1 {
		t.Errorf("flood %+v, want 3 files, 1 over match memory, no timeout, 1 match (small.py)", r)
	}

	yr, err := compileText(floodRule())
	if err != nil {
		t.Fatal(err)
	}
	p := &profiler{files: files, cfg: ProfileConfig{Threads: 1, Timeout: time.Minute}, guard: matchmem.NewGuard(1 << 20)}
	defer p.guard.Close()
	res, err := p.run(context.Background(), yr, []int{0, 1, 2}, "flood", true)
	if err != nil {
		t.Fatal(err)
	}
	if res.overMemory != 1 || res.matches != 1 || res.timeouts != 0 || p.guard.Stops() != 1 || p.guard.Watches() != 2 {
		t.Errorf("run %+v: %d stopped by the watchdog, %d watched; want flood.txt stopped, flood.txt and quiet.txt watched", res, p.guard.Stops(), p.guard.Watches())
	}
}
