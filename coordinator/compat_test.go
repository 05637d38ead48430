package coordinator

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/internal/fakeapi"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/score"
	"google.golang.org/grpc/codes"
)

// A worker of the previous release (its Hello has no mode) speaks the same
// protocol version: the coordinator works with it, and keeps this release's
// verdicts where that release's workers would give others.

// TestLegacyWorkerLongTopFileIsAFailure: the previous release's workers
// name member paths of any length, where this release's fail the
// distribution ("path longer than 4096 bytes"). Such a top file from a
// legacy worker is that failure, not the end of its session: ended, the
// worker reconnected, was given the task again, and the job's sessions
// ended in a loop until its lease ran out, with every task they held.
func TestLegacyWorkerLongTopFileIsAFailure(t *testing.T) {
	api := newFakeAPI(job("p", "u1"))
	f := startFleet(t, api, nil)
	old := f.legacyWorker("old", 1)
	old.ready()
	tk := old.tasks(1)[0]
	old.answer(result(tk, "p-1.0/"+strings.Repeat("d/", protocol.MaxPathBytes/2)+"x.py", "r1"))
	r := api.WaitReports(t, 1)
	if r[0].Success != nil || !strings.Contains(r[0].Reason, "path longer than 4096 bytes") {
		t.Fatalf("report %+v, want the failure a current worker reports", r[0])
	}
	if len(r[0].Reason) > 4<<10 {
		t.Fatalf("reason of %d bytes", len(r[0].Reason))
	}
	nothingOn(t, old.recv, "the legacy worker's session ended")
}

// TestLegacyTopFileLeavingTheArchiveStillEndsTheSession: only the length
// is tolerated; no worker of either release names a path that leaves the
// archive.
func TestLegacyTopFileLeavingTheArchiveStillEndsTheSession(t *testing.T) {
	api := newFakeAPI(job("p", "u1"))
	f := startFleet(t, api, nil)
	old := f.legacyWorker("old", 1)
	old.ready()
	old.answer(result(old.tasks(1)[0], "p-1.0/../../other/setup.py", "r1"))
	wantEnded(t, old.recv, codes.InvalidArgument, "top file", "the legacy worker's session (a top file leaving the archive)")
}

// TestLegacyWorkerNotUsedForRulesItScoresOtherwise: with a filetype of two
// spaces (the rule counts in every file since this release; the previous
// release dropped the empty entry), a legacy worker is left out of the rules'
// tasks, as a worker that cannot compile them is, and a current worker
// scans them; with rules it scores alike, it is used.
func TestLegacyWorkerNotUsedForRulesItScoresOtherwise(t *testing.T) {
	const src = testRules + `rule ft { meta: weight = 4 filetype = ".txt  .md" strings: $a = "socket" condition: $a }`
	j := job("p", "u1")
	j.Hash = "h2"
	api := fakeapi.New(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": src}}, j)
	f := startFleet(t, api, nil)
	old := f.legacyWorker("old", 1)
	old.ready()
	// The job is leased meanwhile and waits for a worker ready for h2.
	time.Sleep(300 * time.Millisecond)
	cur := f.worker("new", 1)
	cur.ready()
	tk := cur.tasks(1)[0]
	cur.answer(result(tk, "p-1.0/x.py", "r1"))
	if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 3 {
		t.Fatalf("report %+v", r)
	}
	for {
		select {
		case m := <-old.in:
			if m.GetAssign() != nil {
				t.Fatalf("the legacy worker was assigned %v", m.GetAssign())
			}
			continue
		default:
		}
		break
	}
	nothingOn(t, old.recv, "the legacy worker's session ended")
}

func TestLegacyScoring(t *testing.T) {
	rule := func(ft string) score.Rule {
		return score.Rule{Name: "r", Weight: 1, Filetypes: score.ParseFiletypes(ft)}
	}
	for _, tc := range []struct {
		name  string
		rules []score.Rule
		alike bool
	}{
		{"no filetype", []score.Rule{{Name: "r", Weight: 5}}, true},
		{"one suffix", []score.Rule{rule(".py")}, true},
		{"two suffixes", []score.Rule{rule(".py .txt")}, true},
		{"a suffix twice", []score.Rule{rule(".py .py")}, true},
		{"empty filetype", []score.Rule{rule("")}, true},
		{"only spaces", []score.Rule{rule("  ")}, true},
		{"double space", []score.Rule{rule(".py  .txt")}, false},
		{"leading space", []score.Rule{rule(" .py")}, false},
		{"trailing space", []score.Rule{rule(".py ")}, false},
		{"a tab", []score.Rule{rule(".py\t.txt")}, false},
		{"only a tab", []score.Rule{rule("\t")}, false},
		{"weights near the limit", []score.Rule{{Name: "a", Weight: math.MaxInt64}, {Name: "b", Weight: 1}}, false},
		{"negative weights near the limit", []score.Rule{{Name: "a", Weight: math.MinInt64}}, false},
		{"large weights within the range", []score.Rule{{Name: "a", Weight: math.MaxInt64 / 2}, {Name: "b", Weight: -(math.MaxInt64 / 2)}}, true},
	} {
		if why := legacyScoring(tc.rules); (why == "") != tc.alike {
			t.Errorf("%s: legacyScoring = %q, want alike %v", tc.name, why, tc.alike)
		}
	}
}
