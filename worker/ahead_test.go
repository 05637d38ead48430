package worker

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
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

// TestDownloadsAhead: a task waiting for the only slot downloads while the
// running one is busy, so it is scanned the moment the slot frees (80 s
// after both arrived), not after a download of its own (160 s); however
// many tasks wait, only the next one per slot holds a download: four tasks
// on one slot download two at a time.
func TestDownloadsAhead(t *testing.T) {
	const s80, s160 = 80 * time.Second, 160 * time.Second
	for _, tc := range []struct {
		name string
		want []time.Duration // when each task's result arrives
	}{
		{"one waits", []time.Duration{s80, s80}},
		{"three wait", []time.Duration{s80, s80, s160, s160}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				files := newMemFiles(t, s80)
				s := scanningSession(t, files, 1, 0)
				start := time.Now()
				var ts []*fleetv1.Task
				for i := range tc.want {
					ts = append(ts, fileTask(uint64(i+1), "slow/reqeusts-2.31.0.tar.gz"))
				}
				assignTasks(s, ts...)
				rs, at := resultsAt(t, s, len(ts), start)
				for i, w := range tc.want {
					id := uint64(i + 1)
					if rs[id].GetDistribution().GetScore() != 8 || at[id] != w {
						t.Errorf("task %d: %v after %v, want the reqeusts scan (score 8) after %v", id, rs[id], at[id], w)
					}
				}
				files.mu.Lock()
				defer files.mu.Unlock()
				if files.peak != 2 {
					t.Errorf("%d downloads at once with one slot, want 2 (the running task's and the next one's)", files.peak)
				}
			})
		})
	}
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

// storedZip is a zip of one stored (uncompressed) file of size bytes: a
// download of about size bytes.
func storedZip(t *testing.T, size int) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "big/data.bin", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFinishedDownloadsAheadAreReleased: once every task is answered, the
// worker holds none of their distributions. A task started from the queue
// left its download ahead (the whole distribution) in the queue's backing
// array (s.queue = s.queue[1:] keeps the popped element), so a full queue
// of tasks kept up to MaxPrefetch distributions alive after their scans,
// beyond the 2 x Threads the worker promises.
func TestFinishedDownloadsAheadAreReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 4 << 20
		files := newMemFiles(t, 0)
		files.files["big-1.0.zip"] = storedZip(t, size)
		s := scanningSession(t, files, 1, 0)
		before := testkit.HeapInUse()
		var ts []*fleetv1.Task
		for id := range uint64(17) { // Threads + MaxPrefetch
			ts = append(ts, fileTask(id+1, "big-1.0.zip"))
		}
		assignTasks(s, ts...)
		rs, _ := resultsAt(t, s, len(ts), time.Now())
		for id, r := range rs {
			if r.GetDistribution() == nil {
				t.Fatalf("task %d: %v, want a scan", id, r)
			}
		}
		synctest.Wait()
		after := testkit.HeapInUse()
		if grown := int64(after) - int64(before); grown > 2*size {
			t.Errorf("with every task answered, the heap holds %d MiB more than before them (%d distributions of %d MiB), want none held",
				grown>>20, grown/size, size>>20)
		}
	})
}

// downloadsSeen records the Observer's downloads.
type downloadsSeen struct {
	nopObserver
	mu    sync.Mutex
	bytes int64
	n     int
}

func (o *downloadsSeen) Downloaded(b int64, _ time.Duration, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bytes += b
	o.n++
}

func (o *downloadsSeen) seen() (int, int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n, o.bytes
}

// TestDownloadAheadHandedBackIsObserved: a download ahead that completed
// before its task was handed back (drain) is a distribution download: the
// Observer (the downloads and downloaded bytes metrics) sees it, as it
// sees every download the worker makes.
func TestDownloadAheadHandedBackIsObserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := newMemFiles(t, 0)
		obs := &downloadsSeen{}
		client := newChanClient()
		w := testWorker(t, client, Config{
			Threads: 1, BackoffMin: time.Second, BackoffMax: time.Second, MaxTaskTime: 90 * time.Second, Observer: obs,
			Fetch: fetch.Config{AllowedHosts: []string{"files.example"}, Transport: files, Attempts: 1,
				StallTimeout: 24 * time.Hour, TotalTimeout: 24 * time.Hour},
		}, testEngine(t, 1))
		stop := startLoop(w)
		defer stop()
		s := <-client.streams
		<-client.tries
		<-s.Out // Hello
		welcomeEvery(s, MaxHeartbeat)
		s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "demo", Sources: demo.Rules()}}}
		if st := nextMsg(t, s).GetRulesStatus(); st.GetHash() != "demo" || st.GetError() != "" {
			t.Fatalf("rules status %v, want demo ready", st)
		}
		want := int64(len(files.files["reqeusts-2.31.0.tar.gz"]))
		assignTasks(s, stalledTask(1, nil), fileTask(2, "reqeusts-2.31.0.tar.gz"))
		synctest.Wait() // task 2's download ahead is complete
		s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{}}}
		if tr := nextMsg(t, s).GetTaskReturn(); !slices.Equal(tr.GetTaskIds(), []uint64{2}) {
			t.Fatalf("answer to the drain %v, want task 2 handed back", tr)
		}
		synctest.Wait()
		if n, b := obs.seen(); n != 1 || b != want {
			t.Errorf("observed %d downloads of %d bytes in all, want task 2's (%d bytes): the worker downloaded it", n, b, want)
		}
	})
}

// TestDownloadAheadWallTime: a task's wall time covers its download, unpack
// and scan (the task_duration_seconds metric, TaskStats.wall_time), also
// when the download was made while the task waited: it is never shorter
// than the download time it reports.
func TestDownloadAheadWallTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := newMemFiles(t, 80*time.Second)
		s := scanningSession(t, files, 1, 0)
		assignTasks(s, fileTask(1, "slow/reqeusts-2.31.0.tar.gz"), fileTask(2, "slow/reqeusts-2.31.0.tar.gz"))
		rs, _ := resultsAt(t, s, 2, time.Now())
		for id, r := range rs {
			st := r.GetStats()
			if dl, wall := st.GetDownloadTime().AsDuration(), st.GetWallTime().AsDuration(); dl != 80*time.Second || wall < dl {
				t.Errorf("task %d: download time %v, wall time %v, want a download of 80 s within the wall time", id, dl, wall)
			}
		}
	})
}

// TestDownloadAheadWaitsForItsRules: a queued task whose rules are not
// ready downloads nothing (it would be handed back, "rules not ready", the
// moment a slot frees); it downloads ahead once they are.
func TestDownloadAheadWaitsForItsRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		files := newMemFiles(t, 0)
		s := scanningSession(t, files, 1, 90*time.Second)
		later := &fleetv1.Task{TaskId: 2, Url: "https://files.example/stall/y-1.0.tar.gz", RulesHash: "later"}
		assignTasks(s, stalledTask(1, nil), later)
		synctest.Wait()
		inFlight := func() int {
			files.mu.Lock()
			defer files.mu.Unlock()
			return files.inFlight
		}
		if n := inFlight(); n != 1 {
			t.Errorf("%d downloads in flight, want 1 (the running task's): task 2's rules are not known", n)
		}
		s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "later", Sources: demo.Rules()}}}
		if st := nextMsg(t, s).GetRulesStatus(); st.GetHash() != "later" || st.GetError() != "" {
			t.Fatalf("rules status %v, want later ready", st)
		}
		synctest.Wait()
		if n := inFlight(); n != 2 {
			t.Errorf("%d downloads in flight once task 2's rules are ready, want 2 (task 2's ahead)", n)
		}
	})
}

// TestTaskWithoutURLFails: a task without a URL (only a hostile
// coordinator sends one) fails as a download, whether it runs at once or
// waited for a slot; it was scanned as empty data, clean, when it ran at
// once.
func TestTaskWithoutURLFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := scanningSession(t, newMemFiles(t, 0), 1, 0)
		assignTasks(s, &fleetv1.Task{TaskId: 1, RulesHash: "demo"}, &fleetv1.Task{TaskId: 2, RulesHash: "demo"})
		rs, _ := resultsAt(t, s, 2, time.Now())
		for id, r := range rs {
			if r.GetFailure().GetKind() != fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD {
				t.Errorf("task %d without a URL: %v, want a download failure", id, r)
			}
		}
	})
}
