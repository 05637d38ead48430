package coordinator

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// A worker of the previous release (e7010a8; its Hello has no mode) speaks
// the same protocol version, but its archive walk gives other verdicts than
// this release's whatever the rules: it skips tar hard links (a filetype
// rule's hit in a hard-linked setup.py reads clean), and it scans member
// paths over 4,096 bytes that this release fails when they are not the top
// file. Its results cannot tell, so it is refused, saying so.

// TestPreviousReleaseWorkerRefusedSayingWhy: a Hello without a mode ends the
// session with FailedPrecondition naming the previous release and the
// upgrade, before any task; the job waits for a worker of this release and
// gets its verdict.
func TestPreviousReleaseWorkerRefusedSayingWhy(t *testing.T) {
	api := newFakeAPI(job("p", "u1"))
	var log syncLog
	f := startFleet(t, api, func(c *Config) { c.Logger = log.logger() })
	old := f.legacyWorker("old", 1)
	wantEnded(t, old.recv, codes.FailedPrecondition, "previous release", "the previous release's worker's session")
	for {
		select {
		case m, ok := <-old.in:
			if ok && m.GetAssign() != nil {
				t.Fatalf("the previous release's worker was assigned %v", m.GetAssign())
			}
			if ok {
				continue
			}
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
	cur := f.worker("new", 1)
	cur.ready()
	cur.answer(result(cur.tasks(1)[0], "p-1.0/x.py", "r1"))
	if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 3 {
		t.Fatalf("report %+v", r)
	}
	if !strings.Contains(log.String(), "worker refused: it is of the previous release") {
		t.Errorf("no log line saying to upgrade the worker")
	}
}
