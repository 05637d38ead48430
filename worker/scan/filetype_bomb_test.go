package scan

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/score"
)

// TestAdmitCostDoesNotGrowWithSuffixes: a rule set may list millions of
// distinct filetype suffixes (a metadata string holds up to 8 KiB, about
// 1,300 suffixes of 5 bytes; 512 such rules fit in the 4 MiB a set may
// have: 670,000). Which rules a path admits is decided for every file
// a worker unpacks, outside libyara's scan timeout, so it must not cost a
// look at every suffix: it is a lookup per distinct suffix length.
func TestAdmitCostDoesNotGrowWithSuffixes(t *testing.T) {
	const rulesN, perRule = 300, 900 // 270,000 distinct suffixes
	var b strings.Builder
	k := 0
	for i := range rulesN {
		ents := make([]string, perRule)
		for j := range ents {
			ents[j] = fmt.Sprintf("~%06d", k)
			k++
		}
		fmt.Fprintf(&b, "rule f%d { meta: filetype = %q condition: false }\n", i, strings.Join(ents, " "))
	}
	b.WriteString("rule py { meta: filetype = \".py\" weight = 1 strings: $a = \"EVIL\" condition: $a }\n")
	rs := compile(t, map[string]string{"x": b.String()})
	p := newPlan(rs, false, 8, nil)
	py, ok := p.index["py"]
	if !ok {
		t.Fatal("no rule py")
	}
	const files = 2000
	start := time.Now()
	for i := range files {
		adm := p.admit(fmt.Sprintf("pkg-1.0/pkg/mod%04d.py", i))
		if !adm.has(py) {
			t.Fatalf("rule py not admitted for a .py file")
		}
	}
	if adm := p.admit("pkg-1.0/x~000042"); !adm.has(p.index["f0"]) || adm.has(py) {
		t.Fatal("a path ending in ~000042 must admit f0 alone")
	}
	took := time.Since(start)
	// A look at every suffix: 2,000 x 270,000 comparisons, seconds; a
	// lookup per distinct length: about a millisecond.
	if took > 500*time.Millisecond {
		t.Errorf("admitting %d paths took %v with %d distinct suffixes: the cost grows with the suffixes", files, took, k)
	}
	t.Logf("%d paths admitted in %v (%d distinct suffixes)", files, took, k)
}

// TestAdmitEqualsHasSuffix: the lookup per distinct length admits exactly
// the rules whose filetype has an entry the path ends with
// (score.Rule.Applies, the reference client's str.endswith), for entries
// the differential fuzz target does not write: not UTF-8, longer than the
// path, the whole path, suffixes of each other, listed twice, by one rule
// and by several.
func TestAdmitEqualsHasSuffix(t *testing.T) {
	pieces := []string{"\xff", "\xc3", "\xa9", "é", ".py", "py", "y", "a/", "/", "\t", "setup.py", "x"}
	rng := rand.New(rand.NewPCG(7, 11))
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	// A meta string as YARA reads it: bytes outside printable ASCII,
	// quotes and backslashes escaped.
	quote := func(s string) string {
		var b strings.Builder
		b.WriteByte('"')
		for i := range len(s) {
			switch c := s[i]; {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c >= 0x7f:
				fmt.Fprintf(&b, `\x%02x`, c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		return b.String()
	}
	var src strings.Builder
	for i := range 60 {
		var ents []string
		for range 1 + rng.IntN(4) {
			ents = append(ents, word(1+rng.IntN(4)))
		}
		if rng.IntN(4) == 0 {
			ents = append(ents, ents[0]) // listed twice
		}
		fmt.Fprintf(&src, "rule r%d { meta: filetype = %s condition: true }\n", i, quote(strings.Join(ents, " ")))
	}
	p := newPlan(compile(t, map[string]string{"x": src.String()}), false, 8, nil)
	for range 20000 {
		path := word(rng.IntN(7))
		adm := p.admit(path)
		for i, name := range p.names {
			m, _ := p.full.Rule(name)
			if want := (score.Rule{Filetypes: m.Filetypes}).Applies(path); adm.has(i) != want {
				t.Fatalf("path %q, rule %s (filetype %q): admitted %v, HasSuffix says %v", path, name, m.Filetypes, adm.has(i), want)
			}
		}
	}
}
