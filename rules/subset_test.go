package rules

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/score"
	yara "github.com/hillu/go-yara/v4"
)

// trickySet has what a naive split gets wrong: rules in comments, strings and
// regexes holding braces, quotes and comment markers, a hex string with
// comments holding braces, metadata with duplicates, a NUL and non-string
// values, a module, private and global rules, references, tags, and a rule
// that runs from one source into the next.
var trickySet = Set{Hash: "parent", Sources: map[string]string{
	"a": `import "math"
/* rule fake_in_comment { condition: true } */
// rule fake2 { condition: true }
rule a_plain
{
    meta:
        weight = -5
        filetype = ".py  .txt"
        filetype = ".ignored"
    strings:
        $s = "rule x { condition: b_ref } \" // not a comment"
        $h = { 4D 5A [2-4] ( 90 | 91 ) /* } comment in hex */ ?? // } line comment
               00 }
        $r = /\/rule fake3 \{ \}"/ nocase
    condition:
        any of them
}
private rule b_private { meta: filetype = 7 condition: filesize > 0x10 and math.entropy(0, filesize) >= 0 }
global rule c_global { condition: filesize < 10MB }
rule d_ref : tag1 tag2 { meta: weight = 0x10 filetype = "setup.py\x00.txt" condition: b_private or a_plain }
rule e_loop { condition: for any i in (1..2) : ( i == 1 ) and not d_ref }
rule z_spans { meta: filetype = ".md" weight = 1KB`,
	"b": `condition: e_loop }
rule f_last { condition: true }`,
}}

func TestRulesOfTrickySet(t *testing.T) {
	got, err := trickySet.Rules()
	if err != nil {
		t.Fatal(err)
	}
	want := []RuleInfo{
		{Name: "a_plain", Stem: "a", Line: 4, Weight: -5, Filetypes: []string{".py", "", ".txt"}},
		{Name: "b_private", Stem: "a", Line: 18, Private: true, Modules: []string{"math"}},
		{Name: "c_global", Stem: "a", Line: 19, Global: true},
		{Name: "d_ref", Stem: "a", Line: 20, Weight: 16, Filetypes: []string{"setup.py"}, Deps: []string{"a_plain", "b_private"}},
		{Name: "e_loop", Stem: "a", Line: 21, Deps: []string{"d_ref"}},
		{Name: "z_spans", Stem: "a", Line: 22, Weight: 1024, Filetypes: []string{".md"}, Deps: []string{"e_loop"}},
		{Name: "f_last", Stem: "b", Line: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("%d rules, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !sameInfo(got[i], want[i]) {
			t.Errorf("rule %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	agreeWithLibyara(t, trickySet)
	if im, err := trickySet.Imports(); err != nil || !slices.Equal(im, []string{"math"}) {
		t.Errorf("imports %v %v", im, err)
	}
}

func sameInfo(a, b RuleInfo) bool {
	return a.Name == b.Name && a.Stem == b.Stem && a.Line == b.Line && a.Private == b.Private && a.Global == b.Global &&
		a.Weight == b.Weight && slices.Equal(a.Filetypes, b.Filetypes) && (a.Filetypes == nil) == (b.Filetypes == nil) &&
		slices.Equal(a.Deps, b.Deps) && slices.Equal(a.Modules, b.Modules)
}

// agreeWithLibyara compiles s and checks Rules against libyara's own view:
// the same rules in the same order, the same modifiers, and the metadata the
// scorer reads from libyara (weight, filetype) equal to the split's.
func agreeWithLibyara(t *testing.T, s Set) []RuleInfo {
	t.Helper()
	c, err := Compile(s)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	infos, err := s.Rules()
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	yr := c.Yara().GetRules()
	if len(yr) != len(infos) {
		t.Fatalf("libyara has %d rules, the split %d", len(yr), len(infos))
	}
	for i, r := range yr {
		in := infos[i]
		if r.Identifier() != in.Name || r.IsPrivate() != in.Private || r.IsGlobal() != in.Global {
			t.Errorf("rule %d: libyara %s private %v global %v; split %+v", i, r.Identifier(), r.IsPrivate(), r.IsGlobal(), in)
			continue
		}
		m, _ := c.Rule(in.Name)
		if m.Weight != in.Weight || !slices.Equal(m.Filetypes, in.Filetypes) || (m.Filetypes == nil) != (in.Filetypes == nil) {
			t.Errorf("rule %s: libyara weight %d filetypes %q; split %d %q", in.Name, m.Weight, m.Filetypes, in.Weight, in.Filetypes)
		}
	}
	return infos
}

// subsetHolds compiles s.Subset(names) and returns the rules libyara finds
// in it: a dependency the split missed would not compile (an undefined
// identifier).
func subsetHolds(t *testing.T, s Set, names ...string) (Set, []string) {
	t.Helper()
	sub, err := s.Subset(names)
	if err != nil {
		t.Fatalf("subset %v: %v", names, err)
	}
	return sub, ruleNames(t, sub)
}

func TestSubsetHoldsWhatRulesDependOn(t *testing.T) {
	for _, tc := range []struct {
		names []string
		held  []string
	}{
		{[]string{"f_last"}, []string{"c_global", "f_last"}},
		{[]string{"a_plain"}, []string{"a_plain", "c_global"}},
		{[]string{"e_loop"}, []string{"a_plain", "b_private", "c_global", "d_ref", "e_loop"}},
		{[]string{"b_private", "f_last"}, []string{"b_private", "c_global", "f_last"}},
	} {
		sub, held := subsetHolds(t, trickySet, tc.names...)
		if !slices.Equal(held, tc.held) {
			t.Errorf("subset %v holds %v, want %v", tc.names, held, tc.held)
		}
		if sub.Hash != SubsetHash("parent", tc.held) || len(sub.Hash) != 40 {
			t.Errorf("subset %v hash %q", tc.names, sub.Hash)
		}
		// Declarations stay at their lines.
		infos, err := sub.Rules()
		if err != nil {
			t.Fatal(err)
		}
		all, _ := trickySet.Rules()
		for _, in := range infos {
			for _, o := range all {
				if o.Name == in.Name && (o.Line != in.Line || o.Stem != in.Stem) {
					t.Errorf("%s moved from %s:%d to %s:%d", in.Name, o.Stem, o.Line, in.Stem, in.Line)
				}
			}
		}
		usesMath := slices.Contains(tc.held, "b_private")
		if strings.Contains(sub.Sources["a"], `import "math"`) != usesMath {
			t.Errorf("subset %v: import kept %v, want %v", tc.names, !usesMath, usesMath)
		}
	}
	// The rule that spans two sources keeps its two halves.
	_, held := subsetHolds(t, trickySet, "z_spans")
	if !slices.Equal(held, []string{"a_plain", "b_private", "c_global", "d_ref", "e_loop", "z_spans"}) {
		t.Errorf("z_spans subset holds %v", held)
	}
}

func TestSubsetFallsBackToTheWholeSet(t *testing.T) {
	all, err := trickySet.Rules()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range all {
		names = append(names, r.Name)
	}
	if sub, err := trickySet.Subset(names); err != nil || sub.Hash != trickySet.Hash || len(sub.Sources) != 2 {
		t.Errorf("every rule: %v %v, want the set itself", sub.Hash, err)
	}
	if _, err := trickySet.Subset([]string{"nope"}); err == nil {
		t.Error("an unknown rule name was accepted")
	}
	include := Set{Hash: "h", Sources: map[string]string{"x": "include \"other.yara\"\nrule a { condition: true }\nrule b { condition: true }"}}
	if sub, err := include.Subset([]string{"a"}); err != nil || sub.Hash != "h" {
		t.Errorf("include: %v %v, want the set itself", sub.Hash, err)
	}
	_, err = include.Rules()
	var se *SplitError
	if !errors.As(err, &se) || se.File != "x.yara" || se.Line != 1 {
		t.Errorf("include: Rules error %v, want a SplitError at x.yara:1", err)
	}
}

func TestSplitErrors(t *testing.T) {
	for name, src := range map[string]string{
		"unterminated string":   "rule a { strings: $a = \"abc\n\" condition: $a }",
		"bad escape":            `rule a { strings: $a = "\q" condition: $a }`,
		"no brace":              "rule a { condition: true",
		"duplicate":             "rule a { condition: true }\nrule a { condition: true }",
		"non-ascii":             "rule a { condition: true } \u00e9",
		"garbage":               "rulez",
		"raw newline in regexp": "rule a { strings: $a = /ab\nc/ condition: $a }",
		"bad meta":              "rule a { meta: x = y condition: true }",
	} {
		if _, err := (Set{Sources: map[string]string{"s": src}}).Rules(); err == nil {
			t.Errorf("%s: split without error", name)
		}
	}
	// libyara's lexer ends the input inside a comment, string or regexp at
	// its end without an error, and reads the text up to its first NUL.
	for _, tail := range []string{" /* ", ` "abc`, " /abc", " \x00 rule b { condition: c }", "\x00\n\t"} {
		s := Set{Sources: map[string]string{"s": "rule a { condition: true }" + tail}}
		infos := agreeWithLibyara(t, s)
		if len(infos) != 1 {
			t.Errorf("%q: %+v", tail, infos)
		}
	}
}

func TestRulesOfBenchAndDemoSets(t *testing.T) {
	set, err := Load(filepath.Join("..", "bench", "rules"))
	if err != nil {
		t.Fatal(err)
	}
	infos := agreeWithLibyara(t, set)
	if len(infos) < 50 {
		t.Fatalf("%d bench rules", len(infos))
	}
	for _, in := range infos {
		_, held := subsetHolds(t, set, in.Name)
		if !slices.Contains(held, in.Name) || len(held) != 1+len(in.Deps) {
			t.Errorf("subset of %s holds %v", in.Name, held)
		}
	}
}

// FuzzRulesAgreeWithLibyara: whatever libyara compiles, the split reads
// the same rules, modifiers and metadata, and every rule's subset compiles
// (a dependency the split missed is an undefined identifier) and holds
// exactly the rule, what it names and the global rules.
func FuzzRulesAgreeWithLibyara(f *testing.F) {
	f.Add(trickySet.Sources["a"], trickySet.Sources["b"])
	f.Add("rule a { condition: true }", "private rule b { condition: a }")
	f.Add(`global private rule g { strings: $a = /a\/b{2,3}/is condition: #a == 0 or !a[1] > 2 or @a[1] < 0 }`, `rule r : t { meta: filetype = "" condition: g and uint8(0) != 0x41 }`)
	f.Add(`rule h { strings: $h = { 41 [-] 42 } $x = "x" xor(1-3) $y = "y" base64("!@#$%^&*(){}[].,|ABCDEFGHIJ\x09LMNOPQRSTUV") condition: any of ($h, $x*) }`, `rule i { condition: h and for all j in (1..#h) : (@h[j] > 0) }`)
	if entries, err := os.ReadDir(filepath.Join("..", "bench", "rules")); err == nil {
		for _, e := range entries {
			if data, err := os.ReadFile(filepath.Join("..", "bench", "rules", e.Name())); err == nil {
				f.Add(string(data), "")
			}
		}
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		s := Set{Hash: "h", Sources: map[string]string{"a": a, "b": b}}
		c, err := Compile(s)
		if err != nil {
			s.Rules() // must not panic
			return
		}
		if len(c.Yara().GetRules()) == 0 {
			return
		}
		infos := agreeWithLibyara(t, s)
		byName := map[string]RuleInfo{}
		for _, in := range infos {
			byName[in.Name] = in
		}
		for _, in := range infos {
			_, held := subsetHolds(t, s, in.Name)
			want := map[string]bool{in.Name: true}
			var walk func(string)
			walk = func(n string) {
				for _, d := range byName[n].Deps {
					if !want[d] {
						want[d] = true
						walk(d)
					}
				}
			}
			walk(in.Name)
			for _, o := range infos {
				if o.Global {
					want[o.Name] = true
					walk(o.Name)
				}
			}
			if len(held) != len(want) {
				t.Fatalf("subset of %s holds %v, want %v", in.Name, held, want)
			}
			for _, h := range held {
				if !want[h] {
					t.Fatalf("subset of %s holds %v, want %v", in.Name, held, want)
				}
			}
		}
	})
}

// TestCompileIsLibyarasCompile: the rules Compile gives (compiled apart from
// go-yara's Compiler, saved and reloaded: see yaraCompile) are the rules
// go-yara's Compiler gives (names, metadata) and match the same.
func TestCompileIsLibyarasCompile(t *testing.T) {
	c, err := Compile(trickySet)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := trickySet.join(trickySet.Stems())
	// go-yara v4.2.4's Compiler lets the collector free its callback's
	// handle during the compile (see yaraCompile): no collection meanwhile
	// (nor one forced by a GOMEMLIMIT).
	gc, limit := debug.SetGCPercent(-1), debug.SetMemoryLimit(math.MaxInt64)
	yc, err := yara.NewCompiler()
	if err == nil {
		yc.DisableIncludes()
		err = yc.AddString(text, "")
	}
	var ref *yara.Rules
	if err == nil {
		ref, err = yc.GetRules()
	}
	debug.SetGCPercent(gc)
	debug.SetMemoryLimit(limit)
	if err != nil {
		t.Fatal(err)
	}
	full := &Compiled{yara: ref, meta: map[string]score.Rule{}}
	for _, r := range ref.GetRules() {
		full.meta[r.Identifier()] = ruleMeta(r.Identifier(), r.Metas())
		full.count++
	}
	var a, b []string
	for _, r := range c.Yara().GetRules() {
		a = append(a, r.Identifier())
	}
	for _, r := range full.Yara().GetRules() {
		b = append(b, r.Identifier())
	}
	if !slices.Equal(a, b) || c.Len() != full.Len() || len(a) == 0 {
		t.Fatalf("Compile %v, go-yara %v", a, b)
	}
	for _, name := range a {
		x, _ := c.Rule(name)
		y, _ := full.Rule(name)
		if x.Weight != y.Weight || !slices.Equal(x.Filetypes, y.Filetypes) {
			t.Errorf("%s: %+v vs %+v", name, x, y)
		}
	}
	data := []byte("rule x { condition: b_ref } \" // not a comment MZ\x90\x00 PKG")
	var m1, m2 yara.MatchRules
	if err := c.Yara().ScanMem(data, ScanFlags, 0, &m1); err != nil {
		t.Fatal(err)
	}
	if err := full.Yara().ScanMem(data, ScanFlags, 0, &m2); err != nil {
		t.Fatal(err)
	}
	if len(m1) != len(m2) || len(m1) == 0 {
		t.Fatalf("Compile's rules matched %d rules, go-yara's %d", len(m1), len(m2))
	}
	for i := range m1 {
		if m1[i].Rule != m2[i].Rule {
			t.Errorf("match %d: %s vs %s", i, m1[i].Rule, m2[i].Rule)
		}
	}
}

// TestProfileBase: what rules profile measures a rule's cost against is
// its subset without it: the rules it names (so it is not charged for
// them), and the global rules other than it; nothing at all for a rule
// that depends on nothing but itself. Where a rule it depends on names it
// in turn (here a loop variable spelt like a later rule), it cannot be
// left out.
func TestProfileBase(t *testing.T) {
	for _, tc := range []struct {
		name string
		held []string // nil: no rule at all
	}{
		{"e_loop", []string{"a_plain", "b_private", "c_global", "d_ref"}},
		{"a_plain", []string{"c_global"}},
		{"c_global", nil},
	} {
		base, ok, err := trickySet.profileBase(tc.name)
		if err != nil || !ok {
			t.Fatalf("profileBase(%s): %v %v", tc.name, ok, err)
		}
		if held := ruleNames(t, base); !slices.Equal(held, tc.held) {
			t.Errorf("profileBase(%s) holds %v, want %v", tc.name, held, tc.held)
		}
	}
	globals := Set{Hash: "g", Sources: map[string]string{"g": "global rule cheap_g { condition: filesize < 1MB }\n" +
		"global rule costly_g { condition: filesize > 0 }\nrule m { condition: true }\n"}}
	base, ok, err := globals.profileBase("cheap_g")
	if err != nil || !ok {
		t.Fatalf("profileBase(cheap_g): %v %v", ok, err)
	}
	if held := ruleNames(t, base); !slices.Equal(held, []string{"costly_g"}) {
		t.Errorf("profileBase(cheap_g) holds %v, want the other global rule", held)
	}
	loop := Set{Hash: "l", Sources: map[string]string{"l": "rule x { condition: for any y in (1..2) : (y == 1) }\nrule y { condition: x }\n"}}
	if _, ok, err := loop.profileBase("x"); err != nil || ok {
		t.Errorf("profileBase(x) of a loop: ok %v, err %v; want it not left out", ok, err)
	}
}

// ruleNames compiles s and lists its rules (none for a set of no source).
func ruleNames(t *testing.T, s Set) []string {
	t.Helper()
	if len(s.Sources) == 0 {
		return nil
	}
	c, err := Compile(s)
	if err != nil {
		t.Fatalf("%v does not compile: %v", s.Sources, err)
	}
	var names []string
	for _, r := range c.Yara().GetRules() {
		names = append(names, r.Identifier())
	}
	return names
}
