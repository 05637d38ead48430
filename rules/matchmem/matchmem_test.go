package matchmem_test

import (
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/rules/matchmem"
)

// The engine's tests (worker/scan matchmem_test.go) and the profiler's
// (rules profile_test.go) test the guard at work; this one tests how it
// reads libyara.

// libyaraMaxMatchData is libyara's default YR_CONFIG_MAX_MATCH_DATA.
const libyaraMaxMatchData = 512

// fourStrings is a rule of four literal strings; testkit.GreedyRules(n)
// adds n more.
const fourStrings = `rule four { strings: $a = "ALPHA" $b = "BRAVO" $c = "CHARLIE" $d = "DELTA" condition: any of them }`

// TestGuardReadsTheScanContext checks the slot reads the scanner's scan
// context where go-yara keeps it (the check Slot itself makes) and that the
// context describes the rules the scanner was made for.
func TestGuardReadsTheScanContext(t *testing.T) {
	rs, err := rules.Compile(rules.Set{Sources: map[string]string{"x": fourStrings, "h": testkit.GreedyRules(3)}})
	if err != nil {
		t.Fatal(err)
	}
	g := matchmem.NewGuard(1 << 20)
	defer g.Close()
	sc, err := rules.NewScanner(rs.Yara())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Destroy()
	s, err := g.Slot(sc)
	if err != nil {
		t.Fatal(err)
	}
	data := matchmem.SlotData(s)
	if len(data) != 4+3 {
		t.Errorf("%d strings, want 7", len(data))
	}
	for i, d := range data {
		if d == 0 || d > libyaraMaxMatchData {
			t.Errorf("string %d: %d bytes of data per match", i, d)
		}
	}
	if c := matchmem.SlotCost(s); c != 0 {
		t.Errorf("cost %d between scans, want 0", c)
	}
}
