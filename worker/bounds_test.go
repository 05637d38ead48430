package worker

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/rules"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The coordinator's values that size or pace the worker are bounded (review
// finding L6): heartbeat interval, tasks held, rule compiles, hand-back
// messages. The heartbeat interval's clamp is in liveness_test.go (it is
// seen on the liveness check), the message limit in session_test.go.

// TestTasksBeyondCreditHandedBack: a worker holds at most Threads +
// MaxPrefetch tasks (running and queued); a coordinator assigning more gets
// the rest back at once with the reason, and the worker takes tasks again
// once it has room.
func TestTasksBeyondCreditHandedBack(t *testing.T) {
	e := startWorker(t, 1, func(c *Config) { c.MaxPrefetch = 2 })
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	var tasks []*fleetv1.Task
	for id := range uint64(6) {
		tasks = append(tasks, e.task(id+1, "slow/tinycolors-1.2.0.tar.gz", demoHash))
	}
	s.assign(tasks...)
	tr := s.next().GetTaskReturn()
	if !slices.Equal(tr.GetTaskIds(), []uint64{4, 5, 6}) || tr.GetReason() != "over credit: this worker holds at most 3 tasks (1 slots + 2 prefetched)" {
		t.Fatalf("hand-back %v, want tasks 4-6 over credit", tr)
	}
	<-e.slow // task 1 runs
	s.assign(e.task(7, "tinycolors-1.2.0.tar.gz", demoHash))
	if tr := s.next().GetTaskReturn(); !slices.Equal(tr.GetTaskIds(), []uint64{7}) {
		t.Fatalf("hand-back %v, want task 7: the worker is full", tr)
	}
	close(e.block)
	for id, r := range s.results(3) {
		if r.GetDistribution() == nil || id < 1 || id > 3 {
			t.Fatalf("result %d: %v, want scans of tasks 1-3", id, r)
		}
	}
	s.assign(e.task(8, "reqeusts-2.31.0.tar.gz", demoHash))
	if r := s.results(1)[8]; r.GetDistribution().GetScore() != 8 {
		t.Fatalf("task 8 once the worker had room: %v", r)
	}
}

// TestHandBacksSplitBelowTheLimit: 20,000 tasks beyond credit, with ids of
// 9-byte varints (180 KB of ids), are handed back in messages below the
// coordinator's limit (64 KiB here), each id once.
func TestHandBacksSplitBelowTheLimit(t *testing.T) {
	e := startWorker(t, 1, func(c *Config) { c.MaxPrefetch = 1 })
	s := e.session()
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{
		SessionId: "s1", HeartbeatInterval: durationpb.New(time.Minute), MaxRequestBytes: MinRequestBytes,
	}}})
	s.pushRules(demoHash, demo.Rules())
	const base, n = 1 << 60, 20000
	tasks := []*fleetv1.Task{e.task(1, "slow/tinycolors-1.2.0.tar.gz", demoHash), e.task(2, "slow/tinycolors-1.2.0.tar.gz", demoHash)}
	for i := range uint64(n) {
		tasks = append(tasks, &fleetv1.Task{TaskId: base + i, Url: e.files.URL + "/x.tar.gz", RulesHash: demoHash})
	}
	s.assign(tasks...)
	back := map[uint64]int{}
	messages := 0
	for len(back) < n {
		m := s.next()
		if m == nil {
			t.Fatalf("worker closed the stream after %d hand-backs", len(back))
		}
		if size := proto.Size(m); size > MinRequestBytes {
			t.Fatalf("a %d-byte message over the %d-byte limit", size, MinRequestBytes)
		}
		if tr := m.GetTaskReturn(); tr != nil {
			messages++
			for _, id := range tr.GetTaskIds() {
				back[id]++
			}
		}
	}
	for id, c := range back {
		if id < base || id >= base+n || c != 1 {
			t.Fatalf("task %d handed back %d times, want the tasks beyond credit once", id, c)
		}
	}
	if messages < 3 {
		t.Errorf("%d hand-back messages, want at least 3 for 180 KB of ids", messages)
	}
	close(e.block)
	if rs := s.results(2); rs[1].GetDistribution() == nil || rs[2].GetDistribution() == nil {
		t.Fatalf("tasks within credit: %v", rs)
	}
}

// heldCompiler compiles rule sets one by one as the test releases them, and
// records the order they started in and how many ran at once.
type heldCompiler struct {
	mu       sync.Mutex
	started  []string
	running  int
	peak     int
	begun    chan string
	released map[string]chan struct{}
	stop     chan struct{} // closed at the test's end: every compile goes on
}

func (h *heldCompiler) compile(set rules.Set) (*rules.Compiled, error) {
	h.mu.Lock()
	h.started = append(h.started, set.Hash)
	h.running++
	h.peak = max(h.peak, h.running)
	release := h.released[set.Hash]
	h.mu.Unlock()
	select {
	case h.begun <- set.Hash:
	case <-h.stop:
	}
	select {
	case <-release:
	case <-h.stop:
	}
	h.mu.Lock()
	h.running--
	h.mu.Unlock()
	return rules.Compile(set)
}

// TestOneRuleCompileAtATime: rule sets pushed while one compiles wait, one
// at a time: a newer set replaces the waiting one, which is reported
// evicted (the coordinator assigns nothing for it here; a task for it is
// handed back). At most one compile runs at any time.
func TestOneRuleCompileAtATime(t *testing.T) {
	hc := &heldCompiler{begun: make(chan string, 8), released: map[string]chan struct{}{}, stop: make(chan struct{})}
	for _, h := range []string{"a", "b", "c", "d"} {
		hc.released[h] = make(chan struct{})
	}
	e := startWorker(t, 1, func(c *Config) { c.compileRules = hc.compile })
	t.Cleanup(func() { close(hc.stop) }) // before the worker's cleanup waits for its compiles
	s := e.session()
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{SessionId: "s1", HeartbeatInterval: durationpb.New(time.Minute)}}})
	src := demo.Rules()
	push := func(hash string) {
		s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: hash, Sources: src}}})
	}
	status := func(want string, evicted bool) {
		t.Helper()
		st := s.next().GetRulesStatus()
		if st.GetHash() != want || st.GetEvicted() != evicted || st.GetError() != "" {
			t.Fatalf("rules status %v, want %s evicted=%v", st, want, evicted)
		}
	}
	push("a")
	if h := <-hc.begun; h != "a" {
		t.Fatalf("compiling %s first, want a", h)
	}
	push("b")
	push("c") // replaces b, which never compiles
	status("b", true)
	push("d") // replaces c
	status("c", true)
	close(hc.released["a"])
	status("a", false)
	if h := <-hc.begun; h != "d" {
		t.Fatalf("compiling %s after a, want d", h)
	}
	close(hc.released["d"])
	status("d", false)
	hc.mu.Lock()
	started, peak := slices.Clone(hc.started), hc.peak
	hc.mu.Unlock()
	if !slices.Equal(started, []string{"a", "d"}) || peak != 1 {
		t.Fatalf("compiles %v with at most %d at once, want [a d] one at a time", started, peak)
	}
	s.assign(e.task(1, "reqeusts-2.31.0.tar.gz", "c"), e.task(2, "reqeusts-2.31.0.tar.gz", "d"))
	var returned []uint64
	var result *fleetv1.TaskResult
	for returned == nil || result == nil {
		m := s.next()
		if ids := m.GetTaskReturn().GetTaskIds(); len(ids) > 0 {
			returned = ids
		}
		if rs := m.GetResults().GetResults(); len(rs) > 0 {
			result = rs[0]
		}
	}
	if !slices.Equal(returned, []uint64{1}) || result.GetTaskId() != 2 || result.GetDistribution().GetScore() != 8 {
		t.Fatalf("handed back %v and result %v, want task 1 (rules c dropped) back and task 2 scanned with d", returned, result)
	}
}
