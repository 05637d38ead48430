package workbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// TestUnpackHoldsIdenticalFilesOnce: files of equal content share
// one copy, and only new content counts toward --max-memory.
func TestUnpackHoldsIdenticalFilesOnce(t *testing.T) {
	dir := t.TempDir()
	body := strings.Repeat("same content\n", 100)
	a := filepath.Join(dir, "a-1.0.tar.gz")
	os.WriteFile(a, testkit.Gzip(t, testkit.Tar(t, testkit.TarEntry{Name: "a-1.0/x.py", Body: []byte(body)}, testkit.TarEntry{Name: "a-1.0/y.txt", Body: []byte(body)}, testkit.TarEntry{Name: "a-1.0/z.py", Body: []byte("other")})), 0o644)
	b := filepath.Join(dir, "b")
	os.MkdirAll(b, 0o755)
	os.WriteFile(filepath.Join(b, "copy.py"), []byte(body), 0o644)
	lim := limit.Defaults()
	mem := Budget{Bytes: int64(len(body) + len("other")), Name: "--max-memory"}
	files, held, err := Unpack(context.Background(), []string{a, b}, lim, mem)
	if err != nil || held != int64(len(body)+len("other")) {
		t.Fatalf("held %d: %v", held, err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	if strings.Join(paths, " ") != "a-1.0/x.py a-1.0/y.txt a-1.0/z.py copy.py" {
		t.Fatalf("paths %q", paths)
	}
	if string(files[0].Data) != body || &files[0].Data[0] != &files[1].Data[0] || &files[0].Data[0] != &files[3].Data[0] || string(files[2].Data) != "other" {
		t.Errorf("identical files not shared")
	}
	// One byte less and the new content does not fit.
	mem.Bytes--
	if _, _, err := Unpack(context.Background(), []string{a, b}, lim, mem); err == nil || !strings.Contains(err.Error(), a+": the targets' files hold more than --max-memory") {
		t.Errorf("err = %v", err)
	}
}

func TestProfileVerdict(t *testing.T) {
	report := func(secs ...float64) rules.ProfileReport {
		var rep rules.ProfileReport
		for i, s := range secs {
			rep.Rules = append(rep.Rules, rules.RuleCost{Rule: fmt.Sprintf("r%d", i+1), Seconds: s})
			rep.Sum += s
		}
		for i := range rep.Rules {
			if rep.Sum > 0 {
				rep.Rules[i].Share = rep.Rules[i].Seconds / rep.Sum
			}
		}
		return rep
	}
	for _, tc := range []struct {
		rep  rules.ProfileReport
		want string
	}{
		{report(8.5, 8.4, 0.8, 0.8, 0.7), "2 rules take 88% of the time: r1, r2."},
		{report(9, 1, 0.5), "1 rule takes 86% of the time: r1."},
		{report(5, 4.5, 4, 3.5, 3), "No rule stands out: 4 rules take 85% of the time: r1, r2, r3, r4."},
		{report(10, 9, 8, 7, 6, 5, 1), "6 rules take 98% of the time: r1, r2, r3, r4, r5 and 1 more."},
		{report(0, 0), "No rule took measurable time over these files."},
		{report(), "No rule took measurable time over these files."},
	} {
		if got := Verdict(tc.rep); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.rep.Rules, got, tc.want)
		}
	}
}

// TestProfileStoppedScans: the table shows, beside a rule's matches, the
// files whose scan hit the timeout and those stopped over match memory;
// the JSON counts both.
func TestProfileStoppedScans(t *testing.T) {
	rep := rules.ProfileReport{Rules: []rules.RuleCost{
		{Rule: "both", Timeouts: 1, OverMatchMemory: 2},
		{Rule: "flood", Matches: 3, OverMatchMemory: 1},
		{Rule: "calm", Matches: 4},
	}}
	var table strings.Builder
	if err := WriteProfileTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" 0 (1 timeout, 2 over match memory) ", " 3 (1 over match memory) ", " 4 "} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js strings.Builder
	if err := WriteProfileJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"timeouts": 1,
    "over_match_memory": 2,`, `"timeouts": 0,
    "over_match_memory": 1,`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %q:\n%s", want, js.String())
		}
	}
}

// TestLoad: several paths make one set, each source keeping its file; two
// sources with one stem are refused naming both files.
func TestLoad(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	write := func(dir, name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("rule r_"+strings.TrimSuffix(name, filepath.Ext(name))+" { condition: true }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, c := write(dir, "a.yara"), write(dir, "b.yar"), write(other, "c.yara")
	set, err := Load([]string{dir, c})
	if err != nil || len(set.Sources) != 3 || set.FileName("a") != a || set.FileName("b") != b || set.FileName("c") != c ||
		set.Hash != rules.ContentHash(set.Sources) {
		t.Fatalf("set %+v, %v", set, err)
	}
	one, err := Load([]string{c})
	if single, _ := rules.Load(c); err != nil || one.Hash != single.Hash {
		t.Errorf("one path keeps its hash: %q, %q, %v", one.Hash, single.Hash, err)
	}
	dup := write(other, "a.yar")
	if _, err := Load([]string{dir, dup}); err == nil || !strings.Contains(err.Error(), `two sources with stem "a": `+a+" and "+dup) {
		t.Errorf("duplicate stem: %v", err)
	}
}

// TestCheckSummaryGrammar: the verb agrees with its count ("1 file does
// not compile", "1 rule in 1 file compiles").
func TestCheckSummaryGrammar(t *testing.T) {
	bad, err := rules.Check(rules.Set{Sources: map[string]string{"a": "rule a { condition: nope }"}})
	if err != nil {
		t.Fatal(err)
	}
	one, err := rules.Check(rules.Set{Sources: map[string]string{"a": "rule a { condition: true }"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rep   rules.Report
		files int
		want  string
	}{
		{bad, 1, "1 file does not compile: 1 error, 0 warnings"},
		{bad, 2, "2 files do not compile: 1 error, 0 warnings"},
		{one, 1, "1 rule in 1 file compiles: 0 warnings"},
	} {
		if got := CheckSummary(tc.rep, tc.files); got != tc.want {
			t.Errorf("CheckSummary = %q, want %q", got, tc.want)
		}
	}
}
