package scan

import (
	"fmt"
	"strings"
	"testing"
	"time"
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
