package worker

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
)

func assignTasks(s *chanStream, ts ...*fleetv1.Task) {
	s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: ts}}}
}

func fileTask(id uint64, name string) *fleetv1.Task {
	return &fleetv1.Task{TaskId: id, Url: "https://files.example/" + name, RulesHash: "demo"}
}

// resultsAt collects n results and when each arrived, since start.
func resultsAt(t *testing.T, s *chanStream, n int, start time.Time) (map[uint64]*fleetv1.TaskResult, map[uint64]time.Duration) {
	t.Helper()
	rs, at := map[uint64]*fleetv1.TaskResult{}, map[uint64]time.Duration{}
	for len(rs) < n {
		for _, r := range nextMsg(t, s).GetResults().GetResults() {
			rs[r.GetTaskId()], at[r.GetTaskId()] = r, time.Since(start)
		}
	}
	return rs, at
}

// TestQueuedTaskDownloadsAhead: a task waiting for the only slot downloads
// while the running one is busy, so it is scanned the moment the slot frees
// (80 s after both arrived), not after a download of its own (160 s).
func TestQueuedTaskDownloadsAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := newMemFiles(t, 80*time.Second)
		s := scanningSession(t, files, 1, 0)
		start := time.Now()
		assignTasks(s, fileTask(1, "slow/reqeusts-2.31.0.tar.gz"), fileTask(2, "slow/reqeusts-2.31.0.tar.gz"))
		rs, at := resultsAt(t, s, 2, start)
		for id := range uint64(2) {
			if d := rs[id+1].GetDistribution(); d.GetScore() != 8 || at[id+1] != 80*time.Second {
				t.Errorf("task %d: %v after %v, want the reqeusts scan (score 8) after 80 s", id+1, rs[id+1], at[id+1])
			}
		}
		files.mu.Lock()
		defer files.mu.Unlock()
		if files.peak != 2 {
			t.Errorf("%d downloads at once, want 2 (the running task's and the queued one's)", files.peak)
		}
	})
}

// TestDownloadsAheadOnePerSlot: however many tasks wait, only the next one
// per slot holds a download: four tasks on one slot download two at a time.
func TestDownloadsAheadOnePerSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := newMemFiles(t, 80*time.Second)
		s := scanningSession(t, files, 1, 0)
		start := time.Now()
		var ts []*fleetv1.Task
		for id := range uint64(4) {
			ts = append(ts, fileTask(id+1, "slow/reqeusts-2.31.0.tar.gz"))
		}
		assignTasks(s, ts...)
		rs, at := resultsAt(t, s, 4, start)
		want := map[uint64]time.Duration{1: 80 * time.Second, 2: 80 * time.Second, 3: 160 * time.Second, 4: 160 * time.Second}
		for id, w := range want {
			if rs[id].GetDistribution().GetScore() != 8 || at[id] != w {
				t.Errorf("task %d: %v after %v, want the reqeusts scan (score 8) after %v", id, rs[id], at[id], w)
			}
		}
		files.mu.Lock()
		defer files.mu.Unlock()
		if files.peak != 2 {
			t.Errorf("%d downloads at once with one slot, want 2", files.peak)
		}
	})
}

// TestDrainDropsDownloadAhead: a queued task handed back on a drain stops
// its download at once; the running task is not disturbed.
func TestDrainDropsDownloadAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := newMemFiles(t, 0)
		s := scanningSession(t, files, 1, 90*time.Second)
		assignTasks(s, stalledTask(1, nil), fileTask(2, "stall/y-1.0.tar.gz"))
		synctest.Wait()
		files.mu.Lock()
		inFlight := files.inFlight
		files.mu.Unlock()
		if inFlight != 2 {
			t.Fatalf("%d downloads in flight, want 2 (the running task's and the queued one's)", inFlight)
		}
		s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{}}}
		if tr := nextMsg(t, s).GetTaskReturn(); !slices.Equal(tr.GetTaskIds(), []uint64{2}) {
			t.Fatalf("answer to the drain %v, want task 2 handed back", tr)
		}
		synctest.Wait()
		if ended := files.endedDownloads(); !slices.Equal(ended, []string{"/stall/y-1.0.tar.gz"}) {
			t.Fatalf("downloads ended after the hand-back: %v, want the queued task's", ended)
		}
		if rs := nextMsg(t, s).GetResults().GetResults(); len(rs) != 1 || rs[0].GetTaskId() != 1 || rs[0].GetFailure().GetLimit() != "time" {
			t.Fatalf("results %v, want task 1 failed by its time", rs)
		}
	})
}

// TestDownloadAheadPastTheBound: a task whose download began while it
// waited, and stalls, fails at its bound as the limit "time", like any task
// past its bound, not as a download failure.
func TestDownloadAheadPastTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := scanningSession(t, newMemFiles(t, 60*time.Second), 1, 90*time.Second)
		start := time.Now()
		assignTasks(s, fileTask(1, "slow/reqeusts-2.31.0.tar.gz"), stalledTask(2, nil))
		rs, at := resultsAt(t, s, 2, start)
		if rs[1].GetDistribution().GetScore() != 8 || at[1] != 60*time.Second {
			t.Errorf("task 1: %v after %v, want the reqeusts scan after 60 s", rs[1], at[1])
		}
		f := rs[2].GetFailure()
		want := "distribution x-1.0.tar.gz: task ran past the worker's limit DRAGONFLY_MAX_TASK_TIME (1m30s)"
		if f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_LIMIT || f.GetLimit() != "time" || f.GetReason() != want || at[2] != 90*time.Second {
			t.Errorf("task 2: %v after %v, want a LIMIT failure of limit time after 90 s, reason %q", rs[2], at[2], want)
		}
	})
}

// TestCutShort: the cause that ended a task's context, else the one that
// ended its download ahead, else none.
func TestCutShort(t *testing.T) {
	timeUp := &taskTimeError{b: taskBound{limit: time.Minute}}
	ended := func(cause error) context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(cause)
		return ctx
	}
	live := context.Background()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		ahead *download
		want  error
	}{
		{"nothing ended", live, nil, nil},
		{"download alive", live, &download{ctx: live}, nil},
		{"download past the bound", live, &download{ctx: ended(timeUp)}, timeUp},
		{"task ended first", ended(errSessionOver), &download{ctx: ended(timeUp)}, errSessionOver},
		{"task past the bound", ended(timeUp), nil, timeUp},
	} {
		if got := cutShort(tc.ctx, tc.ahead); !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
