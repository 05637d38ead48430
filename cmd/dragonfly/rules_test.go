package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"golang.org/x/sys/unix"
)

// TestRulesCheck: the exact lines, the summary and the exit status for a
// set with warnings, one with an error in a .yar file, and duplicate
// identifiers across files.
func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, dir, "a.yara", "rule clean { meta: weight = 1 condition: true }\n")
	greedy := testkit.WriteFile(t, dir, "greedy.yar", `rule greedy
{
  meta:
    weight = 5
    filetype = ".py  .txt"
  strings:
    $a = /eval\(.*\)/
  condition:
    $a
}
`)
	code, out, errOut := runCLI(t, nil, "rules", "check", dir)
	want := greedy + `:5: warning: rule "greedy": filetype ".py  .txt" has an empty entry (a double space): Dragonfly splits it on each single space, and an empty suffix ends every path, so the rule counts in every file
` + greedy + `:7: warning: $a contains .*, .+ or .{x,} consider using .{,N}, .{1,N} or {x,N} with a reasonable value for N
`
	if code != 0 || out != want {
		t.Fatalf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
	if errOut != "dragonfly rules check: 2 rules in 2 files compile: 2 warnings\n" {
		t.Errorf("stderr %q", errOut)
	}

	// An error in zzz.yar: named as it is on disk, exit 1.
	bad := t.TempDir()
	testkit.WriteFile(t, bad, "a.yara", "rule a { condition: true }\n")
	zzz := testkit.WriteFile(t, bad, "zzz.yar", "rule z {\n  strings:\n    $a = \"abcdef\"\n  condition:\n    $a and $missing }\n")
	code, out, errOut = runCLI(t, nil, "rules", "check", filepath.Join(bad, "a.yara"), zzz)
	if want := zzz + ":5: error: undefined string \"$missing\"\n"; code != 1 || out != want {
		t.Fatalf("exit %d, stdout %q, want %q; stderr %s", code, out, want, errOut)
	}
	if errOut != "dragonfly rules check: 2 files do not compile: 1 error, 0 warnings\n" {
		t.Errorf("stderr %q", errOut)
	}

	// The same identifier in two files (given as two paths).
	one := testkit.WriteFile(t, t.TempDir(), "one.yar", "rule dup { condition: true }\n")
	two := testkit.WriteFile(t, t.TempDir(), "two.yara", "\n\nrule dup { condition: false }\n")
	code, out, _ = runCLI(t, nil, "rules", "check", two, one)
	if want := two + ":3: error: duplicated identifier \"dup\" (rule \"dup\" is also declared at " + one + ":1)\n"; code != 1 || out != want {
		t.Fatalf("exit %d, stdout %q, want %q", code, out, want)
	}

	// Comments only: it compiles to no rule, which the fleet and dragonfly
	// scan refuse: exit 1, saying why.
	empty := testkit.WriteFile(t, t.TempDir(), "todo.yara", "// rules to come\n")
	code, _, errOut = runCLI(t, nil, "rules", "check", empty)
	if code != 1 || !strings.Contains(errOut, "0 rules in 1 file compile") || !strings.Contains(errOut, "holds no rule") {
		t.Fatalf("a set of no rule: exit %d, stderr %q", code, errOut)
	}
}

func TestRulesCheckUsage(t *testing.T) {
	dir := t.TempDir()
	a := testkit.WriteFile(t, dir, "x.yar", "rule a { condition: true }\n")
	b := testkit.WriteFile(t, t.TempDir(), "x.yara", "rule b { condition: true }\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rules"}, "no subcommand"},
		{[]string{"rules", "lint"}, `unknown subcommand "lint"`},
		{[]string{"rules", "check"}, "no rule files"},
		{[]string{"rules", "check", filepath.Join(dir, "missing.yar")}, "no such file"},
		{[]string{"rules", "check", t.TempDir()}, "no .yara or .yar files"},
		{[]string{"rules", "check", a, b}, `two sources with stem "x": ` + a + " and " + b},
		{[]string{"rules", "check", "--bogus", a}, "unknown flag: --bogus"},
	} {
		code, out, errOut := runCLI(t, nil, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	code, out, _ := runCLI(t, nil, "rules", "check", "--help")
	if code != 0 || !strings.HasPrefix(out, "usage: dragonfly rules check PATH...") {
		t.Errorf("help: exit %d, %q", code, out)
	}
	code, out, _ = runCLI(t, nil, "rules", "--help")
	if code != 0 || !strings.Contains(out, "dragonfly rules profile --rules PATH") {
		t.Errorf("rules --help: exit %d, %q", code, out)
	}
}

// profileTarget writes an sdist of n generated .py and .txt files of about
// size bytes, every third one holding "MARKER".
func profileTarget(t *testing.T, dir string, n, size int) string {
	t.Helper()
	var files [][2]string
	for i := range n {
		var b strings.Builder
		for b.Len() < size {
			fmt.Fprintf(&b, "value_%d = compute(%d)\n", i, b.Len())
		}
		if i%3 == 0 {
			b.WriteString("MARKER\n")
		}
		ext := ".py"
		if i%2 == 1 {
			ext = ".txt"
		}
		files = append(files, [2]string{fmt.Sprintf("pkg-1.0/m%03d%s", i, ext), b.String()})
	}
	p := filepath.Join(dir, "pkg-1.0.tar.gz")
	if err := os.WriteFile(p, tgzOf(t, files...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRulesProfile: the deliberately expensive rule comes first in JSON and
// in the table; each object has the documented fields; the table ends with
// the verdict and the note comparing the sum with the full set.
func TestRulesProfile(t *testing.T) {
	rulesDir := t.TempDir()
	testkit.WriteFile(t, rulesDir, "cheap.yara", `rule cheap_marker { strings: $m = "MARKER" condition: $m }
rule cheap_py { meta: filetype = ".py" strings: $m = "MARKER" condition: $m }
private rule helper { strings: $h = "MARKER" condition: $h }
rule uses_helper { condition: helper }
`)
	testkit.WriteFile(t, rulesDir, "zzz.yar", `rule expensive
{
  condition:
    for all i in (0..filesize - 1) : (uint8(i) != 0xff)
}
rule greedy { strings: $a = /MARKER.*zzz/ condition: $a }
`)
	dir := t.TempDir()
	archivePath := profileTarget(t, dir, 90, 24<<10)
	// A directory target too: the same files unpacked (held once in memory).
	unpacked := filepath.Join(dir, "unpacked")
	os.MkdirAll(filepath.Join(unpacked, "pkg"), 0o755)
	testkit.WriteFile(t, filepath.Join(unpacked, "pkg"), "a.py", "MARKER\n")

	code, out, errOut := runCLI(t, nil, "rules", "profile", "--rules", rulesDir, "--format", "json", "--threads", "2", archivePath, unpacked)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got) != 6 {
		t.Fatalf("%d rules: %s", len(got), out)
	}
	if got[0]["rule"] != "expensive" || got[0]["file"] != filepath.Join(rulesDir, "zzz.yar") {
		t.Fatalf("first %v, want expensive from zzz.yar; all: %s", got[0], out)
	}
	byRule := map[string]map[string]any{}
	for _, r := range got {
		for _, k := range []string{"rule", "file", "seconds", "share", "matches", "bytes", "files", "timeouts", "over_match_memory", "warnings"} {
			if _, ok := r[k]; !ok {
				t.Errorf("rule %v lacks %q", r["rule"], k)
			}
		}
		byRule[r["rule"].(string)] = r
	}
	if m := byRule["cheap_marker"]["matches"]; fmt.Sprint(m) != "31" { // 30 in the sdist, 1 in the directory
		t.Errorf("cheap_marker matches %v", m)
	}
	if byRule["helper"]["matches"] != nil {
		t.Errorf("private rule matches %v, want null", byRule["helper"]["matches"])
	}
	if fmt.Sprint(byRule["cheap_py"]["files"]) != "46" || fmt.Sprint(byRule["cheap_marker"]["files"]) != "91" {
		t.Errorf("admitted files: cheap_py %v, cheap_marker %v", byRule["cheap_py"]["files"], byRule["cheap_marker"]["files"])
	}
	if w := fmt.Sprint(byRule["greedy"]["warnings"]); !strings.Contains(w, "zzz.yar:6: warning: $a contains .*") {
		t.Errorf("greedy warnings %s", w)
	}
	if !strings.Contains(errOut, "dragonfly rules profile: 6 rules over 91 files") || !strings.Contains(errOut, "only approximates the full set's scan time") {
		t.Errorf("stderr %q", errOut)
	}
	// Standard error is not a terminal here: no progress line; and the
	// directory holds no archive: no note about archives.
	if strings.Contains(errOut, "\r") || strings.Contains(errOut, "profiling") || strings.Contains(errOut, "note:") {
		t.Errorf("progress or note: %q", errOut)
	}

	// A directory of archives (a corpus) is profiled file by file, as the
	// fleet scans an archive inside a package: the user is told so, and how
	// to profile what the archives hold.
	corpus := filepath.Join(dir, "corpus")
	os.MkdirAll(corpus, 0o755)
	data, err := os.ReadFile(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, corpus, "p-1.0.tar.gz", string(data))
	testkit.WriteFile(t, corpus, "notes.txt", "MARKER\n")
	code, _, errOut = runCLI(t, nil, "rules", "profile", "--rules", rulesDir, "--format", "json", corpus)
	if code != 0 || !strings.Contains(errOut, "dragonfly rules profile: note: 1 archive in the directories given is profiled as bytes") ||
		!strings.Contains(errOut, "give it as a target (DIR/*)") || !strings.Contains(errOut, "over 2 files") {
		t.Errorf("directory of archives: exit %d, stderr %q", code, errOut)
	}

	code, out, errOut = runCLI(t, nil, "rules", "profile", "--rules", rulesDir, "--format", "table", archivePath)
	if code != 0 {
		t.Fatalf("table: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "RULE") || !strings.HasPrefix(lines[1], "expensive ") {
		t.Fatalf("table:\n%s", out)
	}
	if !regexp.MustCompile(`^[0-9]+ rules? takes? [0-9]+% of the time: expensive`).MatchString(lines[len(lines)-2]) ||
		!strings.Contains(lines[len(lines)-1], "only approximates the full set's scan time") {
		t.Errorf("verdict and note:\n%s", strings.Join(lines[len(lines)-2:], "\n"))
	}
	if !strings.Contains(out, "line 6: $a contains .*") {
		t.Errorf("table without greedy's warning:\n%s", out)
	}
}

func TestRulesProfileUsage(t *testing.T) {
	rulesPath := testkit.WriteFile(t, t.TempDir(), "r.yar", "rule r { condition: true }\n")
	bad := testkit.WriteFile(t, t.TempDir(), "bad.yar", "rule r { condition: $nope }\n")
	target := testkit.WriteFile(t, t.TempDir(), "x.py", "x\n")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rules", "profile", target}, 2, "no rules"},
		{[]string{"rules", "profile", "--rules", rulesPath}, 2, "no targets"},
		{[]string{"rules", "profile", "--rules", rulesPath, "--format", "sarif", target}, 2, `--format="sarif": not one of table, json`},
		{[]string{"rules", "profile", "--rules", bad, target}, 2, "bad.yar:1: undefined string"},
		{[]string{"rules", "profile", "--rules", rulesPath, filepath.Join(t.TempDir(), "missing.tar.gz")}, 1, "no such file"},
		{[]string{"rules", "profile", "--rules", rulesPath, "--max-memory", "1", target}, 1, "more than --max-memory"},
		{[]string{"rules", "profile", "--rules", rulesPath, "--max-memory", "0", target}, 2, "size must be positive"},
		{[]string{"rules", "profile", "--rules", rulesPath, "--threads", "0", target}, 2, "must be positive"},
	} {
		code, _, errOut := runCLI(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// openPTY opens a pseudo-terminal pair: what is written to tty can be read
// from master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminals: %v", err)
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return master, tty
}

// TestRulesProfileProgressOnTerminal: with standard error a terminal, the
// progress line is rewritten in place and cleared at the end.
func TestRulesProfileProgressOnTerminal(t *testing.T) {
	rulesPath := testkit.WriteFile(t, t.TempDir(), "r.yar", "rule a { strings: $a = \"MARKER\" condition: $a }\nrule b { condition: filesize > 1 }\n")
	target := profileTarget(t, t.TempDir(), 6, 1<<10)
	master, tty := openPTY(t)
	defer master.Close()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(master) // until the terminal side is closed (EIO)
		got <- string(b)
	}()
	var stdout bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: tty, Getenv: clitest.Env(nil), Dir: t.TempDir()}
	code := run(context.Background(), e, []string{"rules", "profile", "--rules", rulesPath, "--format", "json", target})
	tty.Close()
	out := <-got
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"\r\x1b[Kunpacking 1 target", "\r\x1b[Kprofiling 1/5: a set without rules", "\r\x1b[Kprofiling 5/5: b", "\r\x1b[Kdragonfly rules profile: 2 rules"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q: %q", want, out)
		}
	}
}

// tgzOf builds a .tar.gz of files (path, content pairs).
func tgzOf(t *testing.T, files ...[2]string) []byte {
	t.Helper()
	var ents []testkit.TarEntry
	for _, f := range files {
		ents = append(ents, testkit.TarEntry{Name: f[0], Body: []byte(f[1])})
	}
	return testkit.Gzip(t, testkit.Tar(t, ents...))
}

// TestRulesCheckRefusesOversizedSet: a set over protocol.MaxRuleSetBytes,
// or of more than protocol.MaxRuleFiles files, compiles, but the coordinator refuses it (and keeps the rules in use):
// rules check, which compiles as the fleet does, says so with status 1.
func TestRulesCheckRefusesOversizedSet(t *testing.T) {
	dir := t.TempDir()
	big := "/*" + strings.Repeat("x", protocol.MaxRuleSetBytes) + "*/\nrule a { condition: true }\n"
	testkit.WriteFile(t, dir, "big.yara", big)
	code, _, errOut := runCLI(t, nil, "rules", "check", dir)
	if code != 1 || !strings.Contains(errOut, "the coordinator refuses it") {
		t.Fatalf("a set of %d bytes: exit %d, stderr %q", len(big), code, errOut)
	}
	many := t.TempDir()
	for i := range protocol.MaxRuleFiles + 1 {
		testkit.WriteFile(t, many, fmt.Sprintf("r%d.yara", i), fmt.Sprintf("rule r%d { condition: true }\n", i))
	}
	code, _, errOut = runCLI(t, nil, "rules", "check", many)
	if code != 1 || !strings.Contains(errOut, "4097 files, over the 4096 a rule set may have: the coordinator refuses it") {
		t.Fatalf("a set of %d files: exit %d, stderr %q", protocol.MaxRuleFiles+1, code, errOut)
	}
	small := testkit.WriteFile(t, t.TempDir(), "small.yara", "rule a { condition: true }\n")
	if code, _, errOut := runCLI(t, nil, "rules", "check", small); code != 0 {
		t.Fatalf("a small set: exit %d, stderr %q", code, errOut)
	}
}
