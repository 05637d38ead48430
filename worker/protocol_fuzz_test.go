package worker

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/scan"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The protocol fuzz target drives a real worker session (Worker.session: the
// receive loop, the handler, task and compile goroutines, the real fetcher
// and scan engine) with arbitrary ConnectResponse sequences, as a broken or
// hostile coordinator could send them, and checks what the worker promises:
//   - no panic; the session ends once the stream does (bounded) and leaves no
//     goroutine behind;
//   - the first message is Hello with the worker's slots;
//   - results and hand-backs name only tasks it was given, and a task is
//     answered at most once per assignment; while the session lives, every
//     task it was given is answered (result or hand-back): nothing is lost;
//   - rules statuses name only pushed rule sets;
//   - at most Threads tasks run at once.

// fzFrames and fzEncode are the fuzzers' frame codec (internal/testkit).
func fzFrames(data []byte, max int) [][]byte { return testkit.Frames(data, max) }

func fzEncode(msgs ...*fleetv1.ConnectResponse) []byte { return testkit.EncodeFrames(msgs...) }

// fzClientStream is a FleetService_ConnectClient that replays a script of
// coordinator messages and checks every message the worker sends.
type fzClientStream struct {
	testkit.StreamStub
	script  []*fleetv1.ConnectResponse
	drained chan struct{} // closed when the script has been handed to the worker
	hangup  chan struct{} // closed by the harness: Recv ends the stream
	endErr  error

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced at each Send
	sends      []*fleetv1.ConnectRequest
	held       map[uint64]bool // tasks given to the worker and not answered yet
	given      int             // distinct assignments
	maybe      map[uint64]int  // re-assignments of held ids: may be answered
	pushed     map[string]bool
	statused   map[string]bool // pushed rule sets the worker answered
	closedSend bool
	violations []string
}

func (s *fzClientStream) violate(format string, a ...any) {
	s.violations = append(s.violations, fmt.Sprintf(format, a...))
}

func (s *fzClientStream) Recv() (*fleetv1.ConnectResponse, error) {
	s.mu.Lock()
	if len(s.script) == 0 {
		s.mu.Unlock()
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
		select {
		case <-s.hangup:
			return nil, s.endErr
		case <-s.Ctx.Done():
			return nil, status.FromContextError(s.Ctx.Err()).Err()
		}
	}
	m := s.script[0]
	s.script = s.script[1:]
	if m.GetAssign() != nil {
		// Like the real coordinator, assign only once the pushed rules have
		// an answer (bounded: a worker that never answers just gets the
		// tasks early).
		deadline := time.NewTimer(5 * time.Second)
		defer deadline.Stop()
	wait:
		for {
			waiting := false
			for h := range s.pushed {
				waiting = waiting || !s.statused[h]
			}
			if !waiting {
				break
			}
			ch := s.changed
			s.mu.Unlock()
			select {
			case <-ch:
			case <-deadline.C:
				s.mu.Lock()
				break wait
			}
			s.mu.Lock()
		}
	}
	for _, t := range m.GetAssign().GetTasks() {
		// A task id the worker already holds is a duplicate: it must not
		// be run or answered twice.
		// Which one the worker sees depends on whether it handled the
		// first copy's completion before this message, so a re-assignment
		// of an id held here may be answered once more, or not at all.
		// TestDuplicateTaskIDIsRunOnce checks the held case exactly.
		if s.held[t.GetTaskId()] {
			s.maybe[t.GetTaskId()]++
			continue
		}
		s.held[t.GetTaskId()] = true
		s.given++
	}
	if rs := m.GetRuleSet(); rs != nil {
		s.pushed[rs.GetHash()] = true
	}
	s.mu.Unlock()
	return m, nil
}

func (s *fzClientStream) Send(m *fleetv1.ConnectRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closedSend {
		s.violate("Send after CloseSend: %v", m)
	}
	if len(s.sends) == 0 {
		if h := m.GetHello(); h == nil {
			s.violate("first message is %T, want Hello", m.GetMsg())
		}
	} else if m.GetHello() != nil {
		s.violate("Hello sent twice")
	}
	s.sends = append(s.sends, proto.Clone(m).(*fleetv1.ConnectRequest))
	var ids []uint64
	for _, r := range m.GetResults().GetResults() {
		ids = append(ids, r.GetTaskId())
		if r.GetOutcome() == nil {
			s.violate("result for task %d without an outcome", r.GetTaskId())
		}
	}
	ids = append(ids, m.GetTaskReturn().GetTaskIds()...)
	for _, id := range ids {
		switch {
		case s.held[id]:
			delete(s.held, id)
		case s.maybe[id] > 0:
			s.maybe[id]--
		default:
			s.violate("task %d answered but not held (never given, or answered twice)", id)
		}
	}
	if rs := m.GetRulesStatus(); rs != nil {
		if !s.pushed[rs.GetHash()] {
			s.violate("rules status for %q, which was never pushed", rs.GetHash())
		}
		s.statused[rs.GetHash()] = true
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// unanswered counts tasks given and not answered yet.
func (s *fzClientStream) unanswered() int { return len(s.held) }

func (s *fzClientStream) CloseSend() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closedSend = true
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// fzClient hands out one stream.
type fzClient struct{ stream *fzClientStream }

func (c fzClient) Connect(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[fleetv1.ConnectRequest, fleetv1.ConnectResponse], error) {
	c.stream.Ctx = ctx
	return c.stream, nil
}

// fzWorkerEnv is shared by the executions of one fuzz process: the scan
// engine (its threads) and the in-memory file server.
type fzWorkerEnv struct {
	engine *scan.Engine
	files  *memFiles
}

func newFzWorkerEnv(tb testing.TB) *fzWorkerEnv {
	return &fzWorkerEnv{engine: testEngine(tb, 2), files: newMemFiles(tb, 0)}
}

// fzWorkerResult is what one scripted session produced.
type fzWorkerResult struct {
	err   error
	sends []*fleetv1.ConnectRequest
}

// run runs one session against the script in data. mode: bit 0 unused
// (it selected a fabricated-results mode the product no longer has); bits 1-2 Threads-1; bit 3 ends the stream with an error instead of EOF;
// bit 4 stops the worker (drain) once the script is consumed.
func (env *fzWorkerEnv) run(t *testing.T, mode byte, data []byte) fzWorkerResult {
	var script []*fleetv1.ConnectResponse
	for _, fr := range fzFrames(data, 64) {
		m := &fleetv1.ConnectResponse{}
		if proto.Unmarshal(fr, m) != nil {
			continue
		}
		script = append(script, m)
	}
	threads := int(mode>>1&3) + 1
	st := &fzClientStream{
		script: script, drained: make(chan struct{}), hangup: make(chan struct{}), endErr: io.EOF,
		changed: make(chan struct{}), held: map[uint64]bool{}, maybe: map[uint64]int{}, pushed: map[string]bool{}, statused: map[string]bool{},
	}
	if mode&8 != 0 {
		st.endErr = status.Error(codes.Unavailable, "fuzz: connection reset")
	}
	env.files.mu.Lock()
	env.files.peak = 0
	env.files.mu.Unlock()
	w := testWorker(t, fzClient{st}, Config{
		Target: "fuzz", WorkerID: "fz", Host: "fuzz", Threads: threads,
		Grace: 5 * time.Second,
		Fetch: fetch.Config{
			AllowedHosts: []string{"files.example"}, Transport: env.files, Attempts: 1,
			StallTimeout: 200 * time.Millisecond, TotalTimeout: 5 * time.Second,
			Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		},
	}, env.engine)

	ignore := goleak.IgnoreCurrent()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- w.session(ctx) }()

	var serr error
	ended := false
	select {
	case <-st.drained:
	case serr = <-done:
		ended = true
	case <-time.After(30 * time.Second):
		t.Fatalf("the worker did not take a script of %d messages in 30 s", len(script))
	}
	if !ended && mode&16 != 0 {
		stop()
	}
	// While the session lives, every task given must be answered.
	deadline := time.After(30 * time.Second)
	for !ended {
		st.mu.Lock()
		n, ch, closed := st.unanswered(), st.changed, st.closedSend
		st.mu.Unlock()
		if n == 0 || closed {
			break
		}
		select {
		case <-ch:
		case serr = <-done:
			ended = true
		case <-deadline:
			t.Fatalf("%d tasks given to the worker were neither answered nor handed back within 30 s", n)
		}
	}
	close(st.hangup)
	if !ended {
		select {
		case serr = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the session did not end 30 s after the coordinator hung up")
		}
	}
	stop()
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("goroutines left after the session: %v", err)
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	for _, v := range st.violations {
		t.Error(v)
	}
	if len(st.sends) == 0 || st.sends[0].GetHello().GetSlots() != uint32(threads) {
		t.Errorf("first message %v, want Hello with %d slots", st.sends, threads)
	}
	env.files.mu.Lock()
	peak := env.files.peak
	env.files.mu.Unlock()
	if peak > 2*threads {
		t.Errorf("%d downloads at once with %d threads, want at most 2 per thread (the running task's and the next queued one's)", peak, threads)
	}
	return fzWorkerResult{err: serr, sends: st.sends}
}

// fzWorkerSeeds are coordinator scripts: a well-behaved session first, then
// misbehaving ones. demo is the demo rule set's hash.
func fzWorkerSeeds() [][]*fleetv1.ConnectResponse {
	welcome := func(d time.Duration) *fleetv1.ConnectResponse {
		return &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{SessionId: "s1", HeartbeatInterval: durationpb.New(d), CoordinatorVersion: "v"}}}
	}
	ruleSet := func(hash string, src map[string]string) *fleetv1.ConnectResponse {
		return &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: hash, Sources: src}}}
	}
	task := func(id uint64, name, hash string) *fleetv1.Task {
		return &fleetv1.Task{TaskId: id, Url: "https://files.example/" + name, RulesHash: hash, Job: &fleetv1.JobRef{Name: "n", Version: "1", Attempt: 1}}
	}
	assign := func(ts ...*fleetv1.Task) *fleetv1.ConnectResponse {
		return &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: ts}}}
	}
	drain := &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{Grace: durationpb.New(time.Second)}}}
	hb := &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}
	cancel := func(ids ...uint64) *fleetv1.ConnectResponse {
		return &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Cancel{Cancel: &fleetv1.Cancel{TaskIds: ids}}}
	}
	src := demo.Rules()
	h := "demo"
	other := map[string]string{"x": `rule everything { meta: weight = 1 condition: true }`}
	return [][]*fleetv1.ConnectResponse{
		{welcome(time.Minute), ruleSet(h, src), hb, assign(task(1, "reqeusts-2.31.0.tar.gz", h), task(2, "tinycolors-1.2.0-py3-none-any.whl", h), task(3, "404", h))},
		{welcome(time.Minute), assign(task(1, "tinycolors-1.2.0.tar.gz", h)), ruleSet(h, src), assign(task(2, "tinycolors-1.2.0.tar.gz", "unknown"))},
		{welcome(time.Minute), ruleSet("bad", map[string]string{"a": "rule { nope"}), ruleSet("empty", map[string]string{}), ruleSet("x", other), assign(task(5, "html", "x"), task(6, "500", "x"), task(7, "stall", "x"))},
		{welcome(time.Minute), ruleSet("x", other), assign(task(1, "stall", "x"), task(1, "stall", "x")), assign(task(1, "reqeusts-2.31.0.tar.gz", "x"))},
		{welcome(time.Minute), ruleSet("x", other), assign(task(1, "stall", "x"), task(2, "404", "x"), task(3, "404", "x")), drain, assign(task(4, "404", "x"))},
		{welcome(time.Minute), ruleSet("a", other), ruleSet("b", other), ruleSet("c", other), ruleSet("d", other), ruleSet("a", other), assign(task(1, "404", "a"))},
		{welcome(time.Nanosecond), hb, assign(&fleetv1.Task{TaskId: 9, Url: "%%%"})},
		{{}, welcome(-time.Second), assign(task(1, "404", ""), &fleetv1.Task{}), drain, drain},
		{welcome(time.Minute), ruleSet("x", other), assign(&fleetv1.Task{TaskId: 2, Url: "https://evil.example/x.zip", RulesHash: "x"}, &fleetv1.Task{TaskId: 3, Url: "file:///etc/passwd", RulesHash: "x"})},
		{welcome(time.Minute), ruleSet("x", other), cancel(1), assign(task(1, "stall", "x"), task(2, "stall", "x"), task(3, "404", "x")), cancel(2, 1, 2, 99), cancel(), drain},
	}
}

func FuzzWorkerProtocol(f *testing.F) {
	for i, s := range fzWorkerSeeds() {
		f.Add(byte(i%32), fzEncode(s...))
	}
	f.Add(byte(0x10), fzEncode(fzWorkerSeeds()[0]...)) // stop right after the assignment
	f.Add(byte(0x08), fzEncode(fzWorkerSeeds()[0]...)) // a broken stream
	f.Add(byte(2), fzEncode(fzWorkerSeeds()[3]...))    // duplicate task ids, real downloads
	f.Add(byte(0), []byte{})
	f.Add(byte(1), []byte{0xff, 0xff, 0xff, 0x01})
	env := newFzWorkerEnv(f)
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		env.run(t, mode, data)
	})
}

// The harness must reach real scans, or the fuzzer only ever tests the
// hand-back paths: the well-behaved seed scans the demo packages.
func TestFuzzHarnessWorkerScans(t *testing.T) {
	env := newFzWorkerEnv(t)
	res := env.run(t, 2, fzEncode(fzWorkerSeeds()[0]...)) // 2 threads, real scans
	got := map[uint64]*fleetv1.TaskResult{}
	for _, m := range res.sends {
		for _, r := range m.GetResults().GetResults() {
			got[r.GetTaskId()] = r
		}
	}
	if d := got[1].GetDistribution(); d == nil || d.GetScore() != 8 {
		t.Errorf("reqeusts: %v, want a distribution scoring 8", got[1])
	}
	if d := got[2].GetDistribution(); d == nil || d.GetScore() != 0 {
		t.Errorf("tinycolors: %v, want a clean distribution", got[2])
	}
	if f := got[3].GetFailure(); f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD {
		t.Errorf("404: %v, want a download failure", got[3])
	}
	if res.err == nil || !strings.Contains(res.err.Error(), "closed the stream") {
		t.Errorf("session error %v, want the coordinator closing the stream", res.err)
	}
}

// A coordinator that assigns a task id the worker already runs gets one
// answer: the copy is neither run nor handed back (which would re-queue a
// running task on the coordinator).
func TestDuplicateTaskIDIsRunOnce(t *testing.T) {
	e := startWorker(t, 2, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(e.task(1, "slow/tinycolors-1.2.0.tar.gz", demoHash))
	<-e.slow // task 1 is downloading and blocked
	s.assign(e.task(1, "reqeusts-2.31.0.tar.gz", demoHash), e.task(2, "tinycolors-1.2.0.tar.gz", demoHash))
	if got := s.results(1); got[2] == nil {
		t.Fatalf("results %v, want task 2 first", got)
	}
	close(e.block)
	got := s.results(1)
	if d := got[1].GetDistribution(); d == nil || d.GetScore() != 0 {
		t.Fatalf("task 1: %v, want the clean tinycolors result (the copy naming reqeusts must not run)", got[1])
	}
	// Nothing else arrives for task 1: the next message is the answer to a
	// marker task.
	s.assign(e.task(3, "tinycolors-1.2.0.tar.gz", demoHash))
	for {
		m := s.next()
		if m == nil {
			t.Fatal("worker closed the stream")
		}
		if ids := m.GetTaskReturn().GetTaskIds(); len(ids) > 0 {
			t.Fatalf("worker handed back %v", ids)
		}
		rs := m.GetResults().GetResults()
		for _, r := range rs {
			if r.GetTaskId() == 1 {
				t.Fatalf("task 1 answered twice: %v", r)
			}
		}
		if len(rs) > 0 && rs[len(rs)-1].GetTaskId() == 3 {
			break
		}
	}
}
