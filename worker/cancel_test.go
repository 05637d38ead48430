package worker

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
)

// TestCancelStopsWithdrawnTasks: tasks the coordinator withdraws (their
// release ended, or another copy answered) stop at once and are handed
// back, the queued one's download ahead and the running one's download
// ended, instead of holding the slot until the task's bound (90 s here, 10
// min by default); ids the worker does not hold are ignored, and the next
// task starts in the freed slot.
func TestCancelStopsWithdrawnTasks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := newMemFiles(t, 0)
		s := scanningSession(t, files, 1, 90*time.Second)
		start := time.Now()
		assignTasks(s, stalledTask(1, nil), fileTask(2, "stall/y-1.0.tar.gz"))
		synctest.Wait()
		s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Cancel{Cancel: &fleetv1.Cancel{TaskIds: []uint64{2, 1, 99}}}}
		var back []uint64
		for len(back) < 2 {
			m := nextMsg(t, s)
			tr := m.GetTaskReturn()
			if tr == nil {
				t.Fatalf("after the Cancel: %v after %v, want tasks 1 and 2 handed back", m, time.Since(start))
			}
			back = append(back, tr.GetTaskIds()...)
		}
		if slices.Sort(back); !slices.Equal(back, []uint64{1, 2}) || time.Since(start) != 0 {
			t.Fatalf("handed back %v after %v, want 1 and 2 at once", back, time.Since(start))
		}
		synctest.Wait()
		ended := files.endedDownloads()
		if slices.Sort(ended); !slices.Equal(ended, []string{"/stall/x-1.0.tar.gz", "/stall/y-1.0.tar.gz"}) {
			t.Fatalf("downloads ended: %v, want both", ended)
		}
		assignTasks(s, fileTask(3, "reqeusts-2.31.0.tar.gz"))
		if rs := nextMsg(t, s).GetResults().GetResults(); len(rs) != 1 || rs[0].GetTaskId() != 3 || rs[0].GetDistribution().GetScore() != 8 {
			t.Fatalf("results %v, want task 3 scanned in the freed slot", rs)
		}
	})
}
