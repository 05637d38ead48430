package worker

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// scanningSession runs a worker with a real scan engine and fetcher whose
// downloads come from files, for a synctest bubble, and returns its first
// session's stream once the worker has the demo rules ready (Welcome with
// a 5 min heartbeat, the longest allowed: the test's coordinator does not
// answer heartbeats). Downloads have no stall or total timeout of their
// own: only the task's bound stops them. The loop stops and the engine
// closes when t ends.
func scanningSession(t *testing.T, files *memFiles, threads int, maxTaskTime time.Duration) *chanStream {
	client := newChanClient()
	w := testWorker(t, client, Config{
		Threads: threads, BackoffMin: time.Second, BackoffMax: time.Second, MaxTaskTime: maxTaskTime,
		Fetch: fetch.Config{AllowedHosts: []string{"files.example"}, Transport: files, Attempts: 1,
			StallTimeout: 24 * time.Hour, TotalTimeout: 24 * time.Hour},
	}, testEngine(t, threads))
	stop := startLoop(w)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("loop: %v", err)
		}
	})
	s := <-client.streams
	<-client.tries
	if m := <-s.Out; m.GetHello() == nil {
		t.Fatalf("first message %v, want Hello", m)
	}
	welcomeEvery(s, MaxHeartbeat)
	s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "demo", Sources: demo.Rules()}}}
	if st := nextMsg(t, s).GetRulesStatus(); st.GetHash() != "demo" || st.GetError() != "" {
		t.Fatalf("rules status %v, want demo ready", st)
	}
	return s
}

func stalledTask(id uint64, deadline *timestamppb.Timestamp) *fleetv1.Task {
	return &fleetv1.Task{TaskId: id, Url: "https://files.example/stall/x-1.0.tar.gz", RulesHash: "demo", LeaseDeadline: deadline}
}

// TestTaskPastMaxTaskTimeFails: a download that never ends is stopped at
// MaxTaskTime, not a moment before, and fails as the limit "time"; its
// download's context ends. Tasks that finish past their lease deadline but
// within MaxTaskTime are verdicts, not failures: the coordinator still
// reports a job whose copies run past its lease.
func TestTaskPastMaxTaskTimeFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := newMemFiles(t, 80*time.Second)
		s := scanningSession(t, files, 2, 90*time.Second)
		assigned := time.Now()
		lease := timestamppb.New(assigned.Add(60 * time.Second))
		s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: []*fleetv1.Task{
			stalledTask(1, lease),
			{TaskId: 2, Url: "https://files.example/slow/reqeusts-2.31.0.tar.gz", RulesHash: "demo", LeaseDeadline: lease},
		}}}}
		got := map[uint64]time.Duration{}
		results := map[uint64]*fleetv1.TaskResult{}
		for len(results) < 2 {
			for _, r := range nextMsg(t, s).GetResults().GetResults() {
				results[r.GetTaskId()] = r
				got[r.GetTaskId()] = time.Since(assigned)
			}
		}
		if d := results[2].GetDistribution(); d == nil || d.GetScore() != 8 || got[2] != 80*time.Second {
			t.Errorf("task past its lease, within MaxTaskTime: %v after %v, want the reqeusts scan (score 8) after 80 s", results[2], got[2])
		}
		f := results[1].GetFailure()
		if f == nil || f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_LIMIT || f.GetLimit() != "time" {
			t.Fatalf("stalled task: %v, want a LIMIT failure of limit time", results[1])
		}
		if got[1] != 90*time.Second {
			t.Errorf("stalled task failed %v after it arrived, want exactly 90 s (MaxTaskTime)", got[1])
		}
		want := "distribution x-1.0.tar.gz: task ran past the worker's limit DRAGONFLY_MAX_TASK_TIME (1m30s)"
		if f.GetReason() != want {
			t.Errorf("reason %q\nwant   %q", f.GetReason(), want)
		}
		if ended := files.endedDownloads(); len(ended) != 1 || ended[0] != "/stall/x-1.0.tar.gz" {
			t.Errorf("downloads whose context ended: %v, want the stalled one", ended)
		}
	})
}

// TestTaskTimeCeiling: whatever lease deadline the coordinator sends
// (absent, past by our clock, absurdly far), a task runs up to the default
// MaxTaskTime: never failed at once by a coordinator clock behind ours,
// never unbounded.
func TestTaskTimeCeiling(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline func(now time.Time) *timestamppb.Timestamp
	}{
		{"absent", func(time.Time) *timestamppb.Timestamp { return nil }},
		{"past by an hour", func(now time.Time) *timestamppb.Timestamp { return timestamppb.New(now.Add(-time.Hour)) }},
		{"a year ahead", func(now time.Time) *timestamppb.Timestamp { return timestamppb.New(now.AddDate(1, 0, 0)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := scanningSession(t, newMemFiles(t, 0), 1, 0)
				assigned := time.Now()
				s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: []*fleetv1.Task{stalledTask(1, tc.deadline(assigned))}}}}
				rs := nextMsg(t, s).GetResults().GetResults()
				took := time.Since(assigned)
				if len(rs) != 1 || rs[0].GetFailure().GetLimit() != "time" {
					t.Fatalf("results %v, want one failure of limit time", rs)
				}
				if took != DefaultMaxTaskTime {
					t.Errorf("failed %v after it arrived, want exactly MaxTaskTime (%v)", took, DefaultMaxTaskTime)
				}
				want := "distribution x-1.0.tar.gz: task ran past the worker's limit DRAGONFLY_MAX_TASK_TIME (10m0s)"
				if r := rs[0].GetFailure().GetReason(); r != want {
					t.Errorf("reason %q\nwant   %q", r, want)
				}
			})
		})
	}
}

// TestTaskBoundPassedWhileQueued: a task whose bound passes while it waits
// for a slot is handed back, not failed (the wait is the worker's, not the
// distribution's).
func TestTaskBoundPassedWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := scanningSession(t, newMemFiles(t, 0), 1, 0)
		now := time.Now()
		s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: []*fleetv1.Task{
			stalledTask(1, nil), // holds the only slot for MaxTaskTime
			{TaskId: 2, Url: "https://files.example/reqeusts-2.31.0.tar.gz", RulesHash: "demo", LeaseDeadline: timestamppb.New(now.Add(time.Minute))},
		}}}}
		if rs := nextMsg(t, s).GetResults().GetResults(); len(rs) != 1 || rs[0].GetTaskId() != 1 || rs[0].GetFailure().GetLimit() != "time" {
			t.Fatalf("first answer %v, want task 1 failed by its time", rs)
		}
		tr := nextMsg(t, s).GetTaskReturn()
		if ids := tr.GetTaskIds(); len(ids) != 1 || ids[0] != 2 || !strings.Contains(tr.GetReason(), "time bound passed") {
			t.Fatalf("second answer %v, want task 2 handed back for its time bound", tr)
		}
	})
}
