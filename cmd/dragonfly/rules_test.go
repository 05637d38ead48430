package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeRuleFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRulesCheck: the exact lines, the summary and the exit status for a
// set with warnings, one with an error in a .yar file, and duplicate
// identifiers across files.
func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	writeRuleFile(t, dir, "a.yara", "rule clean { meta: weight = 1 condition: true }\n")
	greedy := writeRuleFile(t, dir, "greedy.yar", `rule greedy
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
	writeRuleFile(t, bad, "a.yara", "rule a { condition: true }\n")
	zzz := writeRuleFile(t, bad, "zzz.yar", "rule z {\n  strings:\n    $a = \"abcdef\"\n  condition:\n    $a and $missing }\n")
	code, out, errOut = runCLI(t, nil, "rules", "check", filepath.Join(bad, "a.yara"), zzz)
	if want := zzz + ":5: error: undefined string \"$missing\"\n"; code != 1 || out != want {
		t.Fatalf("exit %d, stdout %q, want %q; stderr %s", code, out, want, errOut)
	}
	if errOut != "dragonfly rules check: 2 files do not compile: 1 error, 0 warnings\n" {
		t.Errorf("stderr %q", errOut)
	}

	// The same identifier in two files (given as two paths).
	one := writeRuleFile(t, t.TempDir(), "one.yar", "rule dup { condition: true }\n")
	two := writeRuleFile(t, t.TempDir(), "two.yara", "\n\nrule dup { condition: false }\n")
	code, out, _ = runCLI(t, nil, "rules", "check", two, one)
	if want := two + ":3: error: duplicated identifier \"dup\" (rule \"dup\" is also declared at " + one + ":1)\n"; code != 1 || out != want {
		t.Fatalf("exit %d, stdout %q, want %q", code, out, want)
	}
}

func TestRulesCheckUsage(t *testing.T) {
	dir := t.TempDir()
	a := writeRuleFile(t, dir, "x.yar", "rule a { condition: true }\n")
	b := writeRuleFile(t, t.TempDir(), "x.yara", "rule b { condition: true }\n")
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
