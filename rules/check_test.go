package rules

import (
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

func diagLines(ds []Diagnostic) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out
}

// checkFiles writes the files (name, source) into a new directory and
// checks the rules loaded from it: the directory, the set and the report.
func checkFiles(t *testing.T, files ...[2]string) (string, Set, Report) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		testkit.WriteFile(t, dir, f[0], f[1])
	}
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Check(set)
	if err != nil {
		t.Fatal(err)
	}
	return dir, set, rep
}

// TestCheckWarnings: libyara's warnings and the metadata lint, each at the
// line it is about, in the file the rule came from, file by file.
func TestCheckWarnings(t *testing.T) {
	dir, _, rep := checkFiles(t,
		[2]string{"a.yara", `rule clean {
  meta:
    weight = 2
    filetype = ".py setup.py"
  condition: true
}
`},
		[2]string{"zzz.yar", `// a rule set with two traps
rule greedy
{
  meta:
    description = "a .* regex and a double space"
    weight = 5
    filetype = ".py  .txt"
  strings:
    $a = /import.*os/
  condition:
    $a
}
`})
	zzz := filepath.Join(dir, "zzz.yar")
	want := []string{
		zzz + `:7: warning: rule "greedy": filetype ".py  .txt" has an empty entry (a double space): Dragonfly splits it on each single space, and an empty suffix ends every path, so the rule counts in every file`,
		zzz + `:9: warning: $a contains .*, .+ or .{x,} consider using .{,N}, .{1,N} or {x,N} with a reasonable value for N`,
	}
	if got := diagLines(rep.Diagnostics); !slices.Equal(got, want) {
		t.Fatalf("diagnostics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rep.Compiled == nil || rep.Compiled.Len() != 2 || rep.Errors() != 0 {
		t.Fatalf("compiled %v, %d errors", rep.Compiled, rep.Errors())
	}
	for _, d := range rep.Diagnostics {
		if d.Rule != "greedy" || d.Severity != Warning || d.Stem != "zzz" {
			t.Errorf("%+v: want a warning about rule greedy in stem zzz", d)
		}
	}
}

// TestCheckErrorNamesRealFile: an error names the file as it is called on
// disk (zzz.yar, not zzz.yara) and the line in it, for Check and for the
// fleet's Compile alike.
func TestCheckErrorNamesRealFile(t *testing.T) {
	dir, set, rep := checkFiles(t,
		[2]string{"a.yara", "rule a { condition: true }\nrule b { condition: true }\n"},
		[2]string{"zzz.yar", "rule ok { condition: true }\n\nrule broken {\n  strings:\n    $a = \"abcdef\"\n  condition: $a and\n    $b }\n"})
	zzz := filepath.Join(dir, "zzz.yar")
	want := []string{zzz + `:7: error: undefined string "$b"`}
	if got := diagLines(rep.Diagnostics); !slices.Equal(got, want) {
		t.Fatalf("diagnostics %q, want %q", got, want)
	}
	if rep.Compiled != nil || rep.Errors() != 1 {
		t.Fatalf("compiled %v with %d errors", rep.Compiled, rep.Errors())
	}
	_, err := Compile(set)
	var ce *CompileError
	if !errors.As(err, &ce) || !slices.Equal(ce.Messages, []string{zzz + `:7: undefined string "$b"`}) {
		t.Fatalf("Compile: %v", err)
	}
	// A single file keeps its name too.
	one, err := Load(zzz)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(one); err == nil || !strings.Contains(err.Error(), zzz+":7: ") {
		t.Fatalf("single file: %v", err)
	}
}

// TestCheckDuplicateAcrossFiles: libyara refuses an identifier declared in
// two files; the error is at the second and names the first.
func TestCheckDuplicateAcrossFiles(t *testing.T) {
	dir, _, rep := checkFiles(t,
		[2]string{"first.yar", "// one\nrule dup { condition: true }\n"},
		[2]string{"second.yara", "rule other { condition: true }\n\nprivate rule\n  dup\n{\n  condition: true\n}\n"})
	want := []string{filepath.Join(dir, "second.yara") + `:4: error: duplicated identifier "dup" (rule "dup" is also declared at ` + filepath.Join(dir, "first.yar") + `:2)`}
	if got := diagLines(rep.Diagnostics); !slices.Equal(got, want) {
		t.Fatalf("diagnostics %q, want %q", got, want)
	}
}

// TestLintMetadata: every metadata lint, and what is not linted.
func TestLintMetadata(t *testing.T) {
	cases := []struct {
		meta string
		want []string // texts after `rule "r": `; nil: no warning
	}{
		{`weight = 5`, nil},
		{`weight = -3`, nil},
		{`weight = "9"`, []string{`weight = "9" is not an integer: Dragonfly counts the rule with weight 0`}},
		{`weight = true`, []string{`weight = true is not an integer: Dragonfly counts the rule with weight 0`}},
		{`weight = 1 weight = 2`, []string{`a second weight is ignored: Dragonfly reads the first (1)`}},
		{`filetype = 3`, []string{`filetype = 3 is not a string: Dragonfly ignores it and counts the rule in every file`}},
		{`filetype = ".py"`, nil},
		{`filetype = ".py setup.py /PKG-INFO"`, nil},
		{`filetype = ""`, nil},
		{`filetype = " .py"`, []string{`filetype " .py" has an empty entry (a leading space): Dragonfly splits it on each single space, and an empty suffix ends every path, so the rule counts in every file`}},
		{`filetype = ".py "`, []string{`filetype ".py " has an empty entry (a trailing space): Dragonfly splits it on each single space, and an empty suffix ends every path, so the rule counts in every file`}},
		{`filetype = ".py   .txt "`, []string{`filetype ".py   .txt " has an empty entry (a double space, a trailing space): Dragonfly splits it on each single space, and an empty suffix ends every path, so the rule counts in every file`}},
		{`filetype = ".py py"`, []string{`filetype entry "py" has no dot: it is a plain suffix, so it also matches paths such as "xpy"; did you mean ".py"?`}},
		{`filetype = ".txt PTH"`, []string{`filetype entry "PTH" has no dot: it is a plain suffix, so it also matches paths such as "xPTH"; did you mean ".PTH"?`}},
		{`filetype = "PKG-INFO METADATA setup"`, nil}, // file names, not typos
		{`filetype = ".py" filetype = ".txt"`, []string{`a second filetype is ignored: Dragonfly reads the first (".py")`}},
		{`filetype = "\x20.py"`, []string{`filetype " .py" has an empty entry (a leading space): Dragonfly splits it on each single space, and an empty suffix ends every path, so the rule counts in every file`}},
	}
	for _, tc := range cases {
		src := "rule r {\n  meta:\n    " + strings.ReplaceAll(tc.meta, " weight", "\n    weight") + "\n  condition: true\n}\n"
		src = strings.ReplaceAll(src, " filetype = \".txt", "\n    filetype = \".txt")
		rep, err := Check(Set{Sources: map[string]string{"m": src}})
		if err != nil || rep.Compiled == nil {
			t.Fatalf("%s: %v %v", tc.meta, err, rep.Diagnostics)
		}
		var got []string
		for _, d := range rep.Diagnostics {
			got = append(got, strings.TrimPrefix(d.Text, `rule "r": `))
			if d.File != "m.yara" || d.Line < 3 {
				t.Errorf("%s: %s: want m.yara at line 3 or later", tc.meta, d)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: lint %q, want %q", tc.meta, got, tc.want)
		}
	}
}

// TestLintWithoutCompiling: a set that does not compile is linted from its
// declarations, so one run shows everything.
func TestLintWithoutCompiling(t *testing.T) {
	rep, err := Check(Set{Sources: map[string]string{
		"a": "rule a {\n meta:\n  weight = \"3\"\n condition: true\n}\n",
		"b": "rule b { condition: $nope }\n",
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`a.yara:3: warning: rule "a": weight = "3" is not an integer: Dragonfly counts the rule with weight 0`,
		`b.yara:1: error: undefined string "$nope"`,
	}
	if got := diagLines(rep.Diagnostics); !slices.Equal(got, want) {
		t.Fatalf("diagnostics %q, want %q", got, want)
	}
}

// TestDeclarationsAgreeWithLibyara: the tokenizer finds every rule libyara
// compiles, with the same metadata, in the benchmark and demo rule sets and
// in sources built to confuse it.
func TestDeclarationsAgreeWithLibyara(t *testing.T) {
	sets := map[string]map[string]string{"demo": demo.Rules()}
	bench, err := Load("../bench/rules")
	if err != nil {
		t.Fatal(err)
	}
	sets["bench"] = bench.Sources
	sets["tricky"] = map[string]string{"t": `import "math"
/* rule fake1 { meta: weight = 1 condition: true } */
// rule fake2 { condition: true }
rule a : tag1 tag2 {
  meta:
    description = "rule fake3 { meta: weight = 9 } \"quoted\" \\"
    weight = 0x10
    size = 2KB
    neg = -4
    flag = false
    filetype = "\t.py"
  strings:
    $re = /rule fake4 \/ { meta: "/ nocase
    $hex = { 72 75 6c 65 [2-4] ( 7b | 7d ) }
    $s = "} rule fake5 {"
  condition:
    $re and $hex and $s and math.entropy(0, filesize) \ 2 > 1
}
private global rule
b
{ condition: filesize \ 2 > 0 and "x" matches /}/ }
rule c { meta: w = "a" strings: $a = "a" condition: $a }
`}
	for name, src := range sets {
		c, err := Compile(Set{Sources: src})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		decls := map[string]ruleDecl{}
		for _, st := range (Set{Sources: src}).Stems() {
			for _, d := range declarations(src[st]) {
				decls[d.name] = d
			}
		}
		n := 0
		for _, r := range c.Yara().GetRules() {
			n++
			d, ok := decls[r.Identifier()]
			if !ok {
				t.Errorf("%s: rule %s not found", name, r.Identifier())
				continue
			}
			var want []metaValue
			for _, m := range r.Metas() {
				want = append(want, metaValue{key: m.Identifier, value: m.Value})
			}
			var got []metaValue
			for _, m := range d.metas {
				got = append(got, metaValue{key: m.key, value: m.value})
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: rule %s: metadata %v, libyara %v", name, r.Identifier(), got, want)
			}
		}
		if len(decls) != n {
			t.Errorf("%s: %d declarations, libyara compiled %d rules", name, len(decls), n)
		}
	}
	// Lines: after multi-line comments and hex strings.
	ds := declarations("/*\n\n*/\nrule x {\n strings: $h = {\n 00\n 01 }\n condition: $h }\n\nrule\n\ny { meta:\n k = 1 condition: true }")
	if len(ds) != 2 || ds[0].line != 4 || ds[1].line != 12 || ds[1].metas[0].line != 13 {
		t.Errorf("declarations %+v", ds)
	}
}

func FuzzDeclarations(f *testing.F) {
	f.Add("rule a { meta: weight = 1 filetype = \".py\" condition: true }")
	f.Add("rule a { strings: $a = /x\\/y/ $b = { 00 } condition: any of them }")
	f.Add("/* x */ rule b : t { meta: s = \"\\x41\\\"\" condition: true } // c")
	f.Fuzz(func(t *testing.T, src string) {
		// Never panics, and every rule libyara compiles is found.
		ds := declarations(src)
		c, err := Compile(Set{Sources: map[string]string{"f": src}})
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, d := range ds {
			names[d.name] = true
		}
		for _, r := range c.Yara().GetRules() {
			if !names[r.Identifier()] {
				t.Fatalf("rule %s not found in %q", r.Identifier(), src)
			}
		}
	})
}

// TestCheckBoundsMessages: identifiers and values from the sources are cut
// before they go into a message.
func TestCheckBoundsMessages(t *testing.T) {
	long := strings.Repeat("a", 100000)
	rep, err := Check(Set{Sources: map[string]string{
		"a": "rule " + long + " {\n meta:\n  weight = \"" + long + "\"\n condition: $missing\n}\n",
	}})
	if err != nil {
		t.Fatal(err)
	}
	var lint, errs int
	for _, d := range rep.Diagnostics {
		if d.Severity == Error {
			errs++
		} else if strings.Contains(d.Text, "is not an integer") {
			lint++
		}
		if len(d.String()) > 4<<10 {
			t.Errorf("%d-byte diagnostic: %.200s", len(d.String()), d)
		}
	}
	if lint != 1 || errs == 0 {
		t.Errorf("%d lint warnings, %d errors: %d diagnostics", lint, errs, len(rep.Diagnostics))
	}
}

// TestCheckDiagnosticsArePrintable: a source's name (a GET /rules
// document's stem, a file name) and the source text libyara quotes (an
// import's module name) reach the diagnostic lines escaped: a terminal
// escape in them (ESC [8m conceals what follows) must not hide the line,
// or a warning, on the terminal that shows it.
func TestCheckDiagnosticsArePrintable(t *testing.T) {
	for name, set := range map[string]Set{
		"stem": {Sources: map[string]string{
			"x\x1b[8m": "rule greedy {\n  meta:\n    filetype = \".py  .txt\"\n  condition:\n    true\n}\n",
			"y\r":      "rule a { condition: $a }\n",
		}},
		"file name": {Sources: map[string]string{"z": "rule b { condition: $b }\n"}, Files: map[string]string{"z": "rules/\x1b[2Kz.yar"}},
		"import":    {Sources: map[string]string{"m": "import \"\x1b[8mhidden\"\nrule m { condition: true }\n"}},
	} {
		rep, err := Check(set)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Diagnostics) == 0 {
			t.Fatalf("%s: no diagnostics", name)
		}
		for _, line := range diagLines(rep.Diagnostics) {
			if i := strings.IndexFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
				t.Errorf("%s: diagnostic %q holds a control character", name, line)
			}
		}
		_, err = Compile(set)
		var ce *CompileError
		if errors.As(err, &ce) && strings.ContainsAny(ce.Error(), "\x1b\r") {
			t.Errorf("%s: compile error %q holds a control character", name, ce.Error())
		}
	}
}

// TestCheckWarnsOfGlobalRules: every source is compiled into one namespace,
// so a global rule gates every rule of the set, and one that is false (a
// mistake, or a hostile API's answer) makes every release read clean with
// no error anywhere. rules check warns at the rule, and the compiled set
// names its global rules for the coordinator and dragonfly scan to say so.
func TestCheckWarnsOfGlobalRules(t *testing.T) {
	dir, _, rep := checkFiles(t,
		[2]string{"a.yara", "rule hit {\n  meta:\n    weight = 5\n  strings:\n    $a = \"EVIL\"\n  condition:\n    $a\n}\n"},
		[2]string{"b.yara", "// off switch\nprivate global rule off { condition: false }\n"})
	want := []string{
		filepath.Join(dir, "b.yara") + `:2: warning: rule "off" is global: a file it does not match matches no rule of the set (every file is compiled into one namespace), so if it is false every release reads clean`,
	}
	if got := diagLines(rep.Diagnostics); !slices.Equal(got, want) {
		t.Fatalf("diagnostics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c := rep.Compiled
	if c == nil || !slices.Equal(c.Globals(), []string{"off"}) {
		t.Fatalf("compiled %v: want global rules [off]", c)
	}
	if w := c.GlobalWarning(); !strings.Contains(w, "holds 1 global rule (off):") || !strings.Contains(w, "every release read clean") {
		t.Errorf("GlobalWarning() = %q", w)
	}
	// A set without global rules has no warning.
	_, _, rep = checkFiles(t, [2]string{"a.yara", "rule hit { condition: true }\n"})
	if len(rep.Diagnostics) != 0 || rep.Compiled.GlobalWarning() != "" || rep.Compiled.Globals() != nil {
		t.Errorf("no global rule: diagnostics %v, warning %q", diagLines(rep.Diagnostics), rep.Compiled.GlobalWarning())
	}
}
