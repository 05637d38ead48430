package worker

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"google.golang.org/protobuf/encoding/protowire"
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

// TestOversizedTasksAreNotHeld: a queued task holds only what the worker
// uses of it, within the protocol's bounds: a URL over
// protocol.MaxURLBytes fails at once as a download failure naming the bound
// (the coordinator fails such a job itself, never sending it), and what is
// kept of a task is its id, URL, rules hash and its job's name and version
// cut for the logs, not the strings or unknown fields of megabytes a
// hostile coordinator may put in it. 16 such tasks waiting behind a busy
// slot held their 48 MiB until they ran.
func TestOversizedTasksAreNotHeld(t *testing.T) {
	e, s := busySession(t) // task 1 runs until the test lets it go
	const n, size = 16, 1 << 20
	before := testkit.HeapInUse()
	for id := uint64(2); id < 2+n; id++ {
		tk := &fleetv1.Task{TaskId: id, RulesHash: demoHash, Job: &fleetv1.JobRef{Name: strings.Repeat("n", size), Version: "1"}}
		if id%2 == 0 {
			tk.Url = e.files.URL + "/" + strings.Repeat("a", size)
		} else {
			tk.Url = e.files.URL + "/tinycolors-1.2.0.tar.gz"
		}
		// An unknown field of a MiB (a field of a newer release, or junk).
		tk.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), make([]byte, size)))
		s.assign(tk)
	}
	// Taken once more tasks than any room are answered: some handed back.
	var marks []*fleetv1.Task
	for id := uint64(100); id < 100+n+1; id++ {
		marks = append(marks, e.task(id, "tinycolors-1.2.0.tar.gz", demoHash))
	}
	s.assign(marks...)
	results := map[uint64]*fleetv1.TaskResult{}
	for back := false; !back; {
		m := s.next()
		back = len(m.GetTaskReturn().GetTaskIds()) > 0
		for _, r := range m.GetResults().GetResults() {
			results[r.GetTaskId()] = r
		}
	}
	if grown := int64(testkit.HeapInUse()) - int64(before); grown > 8<<20 {
		t.Errorf("with %d tasks of 3 MiB queued, the heap holds %d MiB more, want their big fields dropped", n, grown>>20)
	}
	close(e.block)
	for id := uint64(2); id < 2+n; id += 2 {
		for results[id] == nil {
			for _, r := range s.next().GetResults().GetResults() {
				results[r.GetTaskId()] = r
			}
		}
		f := results[id].GetFailure()
		want := fmt.Sprintf("URL of %d bytes: exceeds the limit of %d bytes", len(e.files.URL)+1+size, protocol.MaxURLBytes)
		if f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD || !strings.Contains(f.GetReason(), want) || len(f.GetReason()) > protocol.MaxTextBytes {
			t.Errorf("task %d of a %d-byte URL: %v, want a download failure saying %q", id, size, clip.String(results[id].String(), 512), want)
		}
	}
}

// TestRuleSetsHeldStayBounded: a worker holds at most keepRules compiled
// rule sets, also when its queued tasks name more. A set no queued task
// names is evicted first; past that the least recently used goes anyway,
// and its queued tasks are handed back. A coordinator that queued a task
// for each set before pushing it kept as many sets as the worker holds
// tasks (Threads + 16), each up to protocol.MaxRuleSetBytes of sources
// that compile to up to 190 MiB (when a set could have 32 MiB, a 31 MiB set
// of plain strings: 750 MB resident).
func TestRuleSetsHeldStayBounded(t *testing.T) {
	e, s := busySession(t) // task 1 runs until the test lets it go
	held := map[string]bool{demoHash: true}
	answered := map[uint64]string{} // task -> "result" or "back"
	take := func(m *fleetv1.ConnectRequest) {
		if st := m.GetRulesStatus(); st != nil {
			held[st.GetHash()] = st.GetError() == "" && !st.GetEvicted()
		}
		for _, id := range m.GetTaskReturn().GetTaskIds() {
			answered[id] = "back"
		}
		for _, r := range m.GetResults().GetResults() {
			answered[r.GetTaskId()] = "result"
		}
	}
	count := func() (n int) {
		for _, ok := range held {
			if ok {
				n++
			}
		}
		return n
	}
	hashes := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
	push := func(h string) {
		s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: h, Sources: demo.Rules()}}})
		for {
			m := s.next()
			take(m)
			if st := m.GetRulesStatus(); st.GetHash() == h && !st.GetEvicted() {
				return
			}
		}
	}
	for i, h := range hashes {
		// The task first, the set after: the task keeps the set in use.
		s.assign(e.task(uint64(11+i), "tinycolors-1.2.0.tar.gz", h))
		push(h)
		push(h) // answered at once: the evictions after the compile came first
		if n := count(); n > keepRules {
			t.Errorf("with %s ready: %d rule sets held, want at most %d", h, n, keepRules)
		}
	}
	close(e.block)
	for len(answered) < len(hashes)+1 {
		take(s.next())
	}
	if n := count(); n > keepRules {
		t.Errorf("in the end: %d rule sets held, want at most %d", n, keepRules)
	}
	if answered[1] != "result" {
		t.Errorf("task 1: %s, want its result", answered[1])
	}
	for i, h := range hashes {
		id := uint64(11 + i)
		if want := map[bool]string{true: "result", false: "back"}[held[h]]; answered[id] != want {
			t.Errorf("task %d of rules %s (held %v): %s, want %s", id, h, held[h], answered[id], want)
		}
	}
}

// TestRuleSetsOfAnEndedSessionAreReleased: the rule sets a session held
// are released when it ends, and a set evicted when it is: the scan
// engine kept the plan of each of the last four sets it scanned with, and
// each scanner thread a scanner of each of the last eight, and so the sets
// themselves (their sources and compiled rules), whatever the session
// held: a hostile coordinator's large sets outlived its session.
func TestRuleSetsOfAnEndedSessionAreReleased(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(e.task(1, "tinycolors-1.2.0.tar.gz", demoHash))
	s.results(1)
	before := testkit.HeapInUse()
	// A set at the protocol's bound, nearly all comment (it compiles at
	// once).
	const size = protocol.MaxRuleSetBytes - 64
	big := map[string]string{"big": "/*" + strings.Repeat("x", size) + "*/\nrule big { condition: false }"}
	s.pushRules("big", big)
	big = nil
	s.assign(e.task(2, "tinycolors-1.2.0.tar.gz", "big"))
	if r := s.results(1)[2]; r.GetDistribution() == nil {
		t.Fatalf("task 2: %v, want a scan with the big set", r)
	}
	s.close()
	// The next session scans with its own rules (files not scanned
	// before: a scanner thread drops the scanners of forgotten sets before
	// its next file).
	s = e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(e.task(3, "reqeusts-2.31.0.tar.gz", demoHash))
	s.results(1)
	grown := int64(testkit.HeapInUse()) - int64(before)
	t.Logf("heap grown by %d KiB", grown>>10)
	if grown > size/2 {
		t.Errorf("after the session that held a %d MiB rule set ended, the heap holds %d MiB more, want the set released", size>>20, grown>>20)
	}
}
