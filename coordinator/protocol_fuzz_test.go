package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The protocol fuzz target drives the real session handler (Coordinator.Connect)
// with arbitrary ConnectRequest sequences, as a hostile or broken worker could
// send them, and checks what the coordinator promises:
//   - no panic, and the handler returns once the stream ends (bounded);
//   - an error is a gRPC status with a client-side code, never Unknown/Internal;
//   - a session never holds more tasks than slots+prefetch, and a task id is
//     never assigned twice while outstanding;
//   - every assigned task belongs to an admitted job and names one of its
//     distributions;
//   - when the session ends, every job is either finished exactly once or
//     still in flight with its tasks waiting again: nothing is lost.

// fzPrefetch is the coordinator's Prefetch in the fuzz harness.
const fzPrefetch = 1

// fzJobs are the jobs admitted before the worker connects; task ids are
// assigned from 1 upwards, so small ids in the fuzz input hit real tasks.
func fzJobs(now time.Time) []dispatch.Job {
	one := 1
	return []dispatch.Job{
		{Name: "alpha", Version: "1.0", Distributions: []string{"https://files.example/a-1.0.tar.gz", "https://files.example/a-1.0-py3-none-any.whl"}, RulesHash: "h1", Attempt: &one, LeasedAt: now},
		{Name: "beta", Version: "2.0", Distributions: []string{"https://files.example/b-2.0.zip"}, RulesHash: "h1", LeasedAt: now},
		{Name: "gamma", Version: "0.1", Distributions: []string{"https://files.example/g-0.1.tar.gz"}, RulesHash: "h2", LeasedAt: now},
		{Name: "delta", Version: "3", Distributions: nil, RulesHash: "h1", LeasedAt: now},
	}
}

// fzAPI serves the harness's two rule sets (h1, then h2), which the harness
// loads before the session; it leases and reports nothing: the harness admits
// jobs itself and does not Run the coordinator.
type fzAPI struct{ calls *int }

func (fzAPI) Lease(context.Context, int) ([]mainframe.Job, error) {
	return nil, errors.New("fzAPI: not used")
}
func (a fzAPI) Rules(context.Context) (mainframe.RuleSet, error) {
	*a.calls++
	hash := fmt.Sprintf("h%d", *a.calls)
	return mainframe.RuleSet{Hash: hash, Rules: map[string]string{"r": `rule r1 { meta: weight = 1 strings: $a = "x` + hash + `" condition: $a }`}}, nil
}
func (fzAPI) Report(context.Context, mainframe.Report) error { return errors.New("fzAPI: not used") }

// fzObserver counts finished jobs and keeps what the coordinator took from
// the worker (session info, failure reasons) to check its bounds.
type fzObserver struct {
	nopObserver
	mu       sync.Mutex
	finished map[string]int
	failed   map[string]string
	sessions []SessionInfo
}

func (o *fzObserver) SessionStarted(info SessionInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sessions = append(o.sessions, info)
}

func (o *fzObserver) JobFinished(out dispatch.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished[out.Job.Name]++
	if out.Failure != "" {
		o.failed[out.Job.Name] = out.Failure
	}
}

// fzServerStream is a FleetService_ConnectServer that replays a script of
// worker messages and checks every message the coordinator sends.
type fzServerStream struct {
	testkit.StreamStub
	script   []*fleetv1.ConnectRequest
	endErr   error // returned by Recv after the script (io.EOF: clean close)
	failSend int   // the failSend-th Send fails (0: never)
	jobs     map[string]dispatch.Job
	drained  chan struct{} // closed when Recv runs out of script

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced at each Send
	sends       int
	slots       int
	outstanding map[uint64]bool
	assigned    map[uint64]bool // ever assigned
	// answered are ids the script answered or returned before the
	// coordinator's Assign of them arrived (its send goroutine may lag its
	// receive loop): such an Assign is not counted as outstanding.
	answered   map[uint64]bool
	violations []string
}

func (s *fzServerStream) violate(format string, a ...any) {
	s.violations = append(s.violations, fmt.Sprintf(format, a...))
}

func (s *fzServerStream) Send(m *fleetv1.ConnectResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	if s.failSend > 0 && s.sends == s.failSend {
		return status.Error(codes.Unavailable, "fuzz: connection reset")
	}
	if a := m.GetAssign(); a != nil {
		for _, t := range a.GetTasks() {
			id := t.GetTaskId()
			if s.outstanding[id] {
				s.violate("task %d assigned while still outstanding", id)
			}
			s.assigned[id] = true
			if s.answered[id] {
				delete(s.answered, id)
			} else {
				s.outstanding[id] = true
			}
			j, ok := s.jobs[t.GetJob().GetName()]
			switch {
			case !ok:
				s.violate("task %d for unknown job %q", id, t.GetJob().GetName())
			case t.GetJob().GetVersion() != j.Version || t.GetRulesHash() != j.RulesHash:
				s.violate("task %d: job %s %s hash %s, want %s %s hash %s", id, t.GetJob().GetName(), t.GetJob().GetVersion(), t.GetRulesHash(), j.Name, j.Version, j.RulesHash)
			default:
				found := false
				for _, d := range j.Distributions {
					found = found || d == t.GetUrl()
				}
				if !found {
					s.violate("task %d: url %q is not a distribution of %s", id, t.GetUrl(), j.Name)
				}
			}
		}
		if max := s.slots + fzPrefetch; len(s.outstanding) > max {
			s.violate("session holds %d tasks, more than slots+prefetch = %d", len(s.outstanding), max)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// Recv returns the next scripted message. A Results or TaskReturn naming
// ids that may still be assigned waits (briefly, bounded) for them, so that
// the script answers tasks the coordinator really sent.
func (s *fzServerStream) Recv() (*fleetv1.ConnectRequest, error) {
	if len(s.script) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
		if s.endErr == nil {
			<-s.Ctx.Done()
			return nil, s.Ctx.Err()
		}
		return nil, s.endErr
	}
	m := s.script[0]
	s.script = s.script[1:]
	var ids []uint64
	for _, r := range m.GetResults().GetResults() {
		ids = append(ids, r.GetTaskId())
	}
	ids = append(ids, m.GetTaskReturn().GetTaskIds()...)
	if h := m.GetHello(); h != nil {
		s.mu.Lock()
		if s.slots == 0 {
			s.slots = max(int(h.GetSlots()), 1)
		}
		s.mu.Unlock()
	}
	if len(ids) > 0 {
		deadline := time.NewTimer(20 * time.Millisecond)
		defer deadline.Stop()
	wait:
		for {
			s.mu.Lock()
			missing := false
			for _, id := range ids {
				// Ids above 5 can never be assigned (4 tasks, a few requeues).
				if id >= 1 && id <= 8 && !s.assigned[id] {
					missing = true
				}
			}
			ch := s.changed
			s.mu.Unlock()
			if !missing {
				break
			}
			select {
			case <-ch:
			case <-deadline.C:
				break wait
			}
		}
		s.mu.Lock()
		for _, id := range ids {
			if s.outstanding[id] {
				delete(s.outstanding, id)
			} else if !s.assigned[id] && len(s.answered) < 1<<16 {
				s.answered[id] = true
			}
		}
		s.mu.Unlock()
	}
	return m, nil
}

// fzCoordinatorSession runs one session with the scripted worker and checks
// the invariants. mode: bit 0 ends the script with a transport error instead
// of a clean close, bit 1 leaves the stream open until cancelled; the upper
// bits pick a Send that fails.
func fzCoordinatorSession(t *testing.T, mode byte, data []byte) {
	fzRunCoordinatorSession(t, mode, data)
}

// fzRunCoordinatorSession is fzCoordinatorSession; it returns the finished
// jobs (name -> failure reason, "" for success).
func fzRunCoordinatorSession(t *testing.T, mode byte, data []byte) map[string]string {
	obs := &fzObserver{finished: map[string]int{}, failed: map[string]string{}}
	c, err := New(Config{API: fzAPI{calls: new(int)}, Prefetch: fzPrefetch, HeartbeatInterval: time.Minute, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	defer c.out.Close()
	// Rules h1 and h2 are known (h2 is current): a worker may report either
	// ready, and results are checked against them.
	for range 2 {
		if err := c.rules.update(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	jobs := fzJobs(now)
	for _, j := range jobs {
		// One lease answer each, so tasks go out in this order (within one
		// answer the releases of fewer distributions go first) and the
		// seeds' task ids keep naming the same distributions.
		c.disp.Admit([]dispatch.Job{j}, now)
	}

	script := testkit.DecodeFrames(data, 64, func() *fleetv1.ConnectRequest { return &fleetv1.ConnectRequest{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &fzServerStream{
		StreamStub: testkit.StreamStub{Ctx: ctx}, script: script, endErr: io.EOF, failSend: int(mode >> 2),
		jobs: map[string]dispatch.Job{}, changed: make(chan struct{}), drained: make(chan struct{}),
		outstanding: map[uint64]bool{}, assigned: map[uint64]bool{}, answered: map[uint64]bool{},
	}
	if mode&1 != 0 {
		st.endErr = status.Error(codes.Unavailable, "fuzz: connection reset")
	}
	if mode&2 != 0 {
		st.endErr = nil // wait for cancellation
	}
	for _, j := range jobs {
		st.jobs[j.Name] = j
	}

	done := make(chan error, 1)
	go func() { done <- c.Connect(st) }()
	if st.endErr == nil {
		// Let the whole script be consumed, then hang up.
		select {
		case <-st.drained:
		case err := <-done:
			done <- err
		case <-time.After(30 * time.Second):
			t.Fatalf("Connect did not consume a script of %d messages in 30 s", len(script))
		}
		cancel()
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Connect did not return 30 s after the worker's stream ended (script of %d messages)", len(script))
	}
	cancel()
	c.WaitSessions()

	if err != nil {
		s, ok := status.FromError(err)
		if !ok {
			t.Fatalf("Connect returned a non-status error: %v", err)
		}
		switch s.Code() {
		case codes.InvalidArgument, codes.FailedPrecondition, codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.PermissionDenied, codes.ResourceExhausted:
		default:
			t.Fatalf("Connect returned code %v: %v", s.Code(), err)
		}
	}
	st.mu.Lock()
	violations := st.violations
	st.mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	if n := len(c.Snapshot().Sessions); n != 0 {
		t.Errorf("%d sessions left after Connect returned", n)
	}
	snap := c.disp.Snapshot()
	if len(snap.Sessions) != 0 || snap.TasksRunning != 0 {
		t.Errorf("dispatcher still has %d sessions and %d tasks assigned after the session ended", len(snap.Sessions), snap.TasksRunning)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	finished := 0
	for name, n := range obs.finished {
		if n != 1 {
			t.Errorf("job %s finished %d times", name, n)
		}
		finished++
	}
	if finished+snap.JobsInFlight != len(jobs) {
		t.Errorf("%d jobs finished + %d in flight, want %d: a job was lost", finished, snap.JobsInFlight, len(jobs))
	}
	if c.out.Len() != finished {
		t.Errorf("outbox holds %d reports for %d finished jobs", c.out.Len(), finished)
	}
	// Whatever the worker sent, what the coordinator keeps of it is bounded.
	for _, info := range obs.sessions {
		if len(info.WorkerID) > protocol.MaxIDBytes || len(info.Host) > protocol.MaxIDBytes || len(info.Version) > protocol.MaxIDBytes ||
			len(info.Identity) > protocol.MaxIDBytes+8 || len(info.SessionID) > 96 {
			t.Errorf("session info not bounded: worker id %d, host %d, version %d, identity %d, session %d bytes",
				len(info.WorkerID), len(info.Host), len(info.Version), len(info.Identity), len(info.SessionID))
		}
	}
	for name, reason := range obs.failed {
		if len(reason) > protocol.MaxTextBytes {
			t.Errorf("job %s failed with a reason of %d bytes", name, len(reason))
		}
	}
	out := map[string]string{}
	for name := range obs.finished {
		out[name] = obs.failed[name]
	}
	return out
}

// FuzzCoordinatorMessageSizes drives the session handler with one hostile
// field of a fuzzed size (up to 8 MiB, over the 4 MiB a real worker may send
// through the production server, since the handler must not rely on the
// transport's limit): worker id, host, rules hashes, compile errors, failure
// reasons, top file paths, rule names, counts of task ids. The session must
// end cleanly or with a client-side status, and what the coordinator keeps is
// bounded (see the checks in fzRunCoordinatorSession).
func FuzzCoordinatorMessageSizes(f *testing.F) {
	for kind := range byte(9) {
		for _, size := range []uint32{0, 1, 255, 256, 257, 4095, 4096, 4097, 1 << 20, 4<<20 + 1} {
			f.Add(kind, size)
		}
	}
	f.Fuzz(func(t *testing.T, kind byte, size uint32) {
		size %= 8 << 20
		big := strings.Repeat("\x01", int(size))
		h := &fleetv1.Hello{WorkerId: "fz", ProtocolVersion: protocol.Version, Slots: 2, Host: "fuzz", Version: "v", Mode: fleetv1.WorkerMode_WORKER_MODE_SCAN}
		ready := &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1"}}}
		ok := &fleetv1.TaskResult{TaskId: 1, Outcome: &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{
			TopFile: "pkg/x.py", TopFileScore: 1, Rules: []*fleetv1.RuleHit{{Name: "r1", Weight: 1}},
		}}}
		var extra *fleetv1.ConnectRequest
		switch kind % 9 {
		case 0:
			h.WorkerId = big + "x"
		case 1:
			h.Host, h.Version = big, big
		case 2:
			extra = &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: big, Error: big}}}
		case 3:
			extra = &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1", Error: big}}}
		case 4:
			extra = &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: []*fleetv1.TaskResult{
				{TaskId: 1, Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{Reason: big, Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE}}},
			}}}}
		case 5:
			ok.GetDistribution().TopFile = big + "x"
		case 6:
			ok.GetDistribution().Rules = []*fleetv1.RuleHit{{Name: big + "x", Weight: 1}}
		case 7:
			ids := make([]uint64, min(int(size), 1<<20))
			for i := range ids {
				ids[i] = uint64(i)
			}
			extra = &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_TaskReturn{TaskReturn: &fleetv1.TaskReturn{TaskIds: ids, Reason: big}}}
		case 8:
			ids := make([]uint64, min(int(size), 1<<20))
			for i := range ids {
				ids[i] = uint64(i + 1)
			}
			extra = &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{RunningTaskIds: ids}}}
		}
		script := []*fleetv1.ConnectRequest{{Msg: &fleetv1.ConnectRequest_Hello{Hello: h}}, ready}
		if extra != nil {
			script = append(script, extra)
		}
		script = append(script, &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: []*fleetv1.TaskResult{ok}}}})
		fzRunCoordinatorSession(t, 0, testkit.EncodeFrames(script...))
	})
}

// fzCoordinatorSeeds are worker scripts: a well-behaved session first, then
// misbehaving ones.
func fzCoordinatorSeeds() [][]*fleetv1.ConnectRequest {
	hello := func(slots uint32) *fleetv1.ConnectRequest {
		return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
			WorkerId: "fz", ProtocolVersion: fleetv1.ProtocolVersion_PROTOCOL_VERSION_1, Slots: slots, Host: "fuzz", Version: "v",
			Mode: fleetv1.WorkerMode_WORKER_MODE_SCAN,
		}}}
	}
	// A worker of the previous release sends no mode: it is refused.
	legacyHello := func(slots uint32) *fleetv1.ConnectRequest {
		return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
			WorkerId: "fz", ProtocolVersion: fleetv1.ProtocolVersion_PROTOCOL_VERSION_1, Slots: slots, Host: "fuzz", Version: "v",
		}}}
	}
	ready := func(hash string) *fleetv1.ConnectRequest {
		return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: hash, CompileTime: durationpb.New(time.Millisecond)}}}
	}
	evicted := func(hash string) *fleetv1.ConnectRequest {
		return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: hash, Evicted: true}}}
	}
	compileErr := func(hash string) *fleetv1.ConnectRequest {
		return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: hash, Error: "line 1: syntax error"}}}
	}
	// ok is a valid result (rule r1 has weight 1 in both rule sets); sc is
	// the score a worker claims, which the coordinator recomputes.
	ok := func(id uint64, sc int64) *fleetv1.TaskResult {
		return &fleetv1.TaskResult{TaskId: id, Outcome: &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{
			Score: sc, TopFile: "pkg/x.py", TopFileScore: 1, Rules: []*fleetv1.RuleHit{{Name: "r1", Weight: 1}},
		}}, Stats: &fleetv1.TaskStats{BytesDownloaded: 10, Files: 1, ScanTime: durationpb.New(time.Millisecond)}}
	}
	longTop := func(id uint64) *fleetv1.TaskResult {
		r := ok(id, 1)
		r.GetDistribution().TopFile = strings.Repeat("d/", protocol.MaxPathBytes/2) + "x.py"
		return r
	}
	fail := func(id uint64) *fleetv1.TaskResult {
		return &fleetv1.TaskResult{TaskId: id, Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{Reason: "distribution x: truncated", Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE}}}
	}
	results := func(rs ...*fleetv1.TaskResult) *fleetv1.ConnectRequest {
		return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: rs}}}
	}
	ret := func(ids ...uint64) *fleetv1.ConnectRequest {
		return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_TaskReturn{TaskReturn: &fleetv1.TaskReturn{TaskIds: ids, Reason: "draining"}}}
	}
	hb := &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{TasksHeld: 2, TasksRunning: 1}}}
	draining := &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Draining{Draining: &fleetv1.Draining{}}}
	empty := &fleetv1.ConnectRequest{}

	return [][]*fleetv1.ConnectRequest{
		{hello(2), ready("h1"), results(ok(1, 5), ok(2, 0)), ready("h2"), results(ok(3, 1), ok(4, 9)), hb},
		{hello(1), ready("h1"), ready("h2"), results(fail(1)), results(ok(2, 3)), results(ok(1, 3)), draining},
		{hello(3), ready("h1"), ret(1, 2), results(ok(1, 1), ok(1, 1), ok(99, 1)), ret(3, 3, 0)},
		{hello(2), ready("h1"), evicted("h1"), compileErr("h2"), results(&fleetv1.TaskResult{TaskId: 1}), hb},
		{hello(1), hello(1)},
		{hb, hello(1)},
		{hello(0)},
		{{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{Slots: 1}}}},
		{hello(4000000000), ready("h1"), ready("h2"), results(ok(1, 1), ok(2, 1), ok(3, 1), ok(4, 1))},
		{hello(1), ready("h1"), draining, ret(1, 2), results(ok(1, 1))},
		{hello(2), empty},
		{legacyHello(2), ready("h1"), results(longTop(1), ok(2, 1)), results(longTop(3)), hb},
		{hello(2), ready("h1"), results(longTop(1))},
	}
}

func FuzzCoordinatorProtocol(f *testing.F) {
	seeds := fzCoordinatorSeeds()
	for i, s := range seeds {
		f.Add(byte(i%4), testkit.EncodeFrames(s...))
	}
	f.Add(byte(4<<2), testkit.EncodeFrames(seeds[0]...)) // the fourth Send fails
	f.Add(byte(0), []byte{})
	f.Add(byte(0), []byte{0xff, 0xff, 0xff})
	f.Fuzz(fzCoordinatorSession)
}

// The harness itself must reach real tasks, or the fuzzer only ever tests
// late results: the well-behaved seed finishes every job.
func TestFuzzHarnessCoordinatorFinishesJobs(t *testing.T) {
	got := fzRunCoordinatorSession(t, 0, testkit.EncodeFrames(fzCoordinatorSeeds()[0]...))
	want := map[string]string{"alpha": "", "beta": "", "gamma": "", "delta": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("finished jobs %v, want %v", got, want)
	}
	got = fzRunCoordinatorSession(t, 0, testkit.EncodeFrames(fzCoordinatorSeeds()[1]...))
	// alpha fails on its first distribution; beta and gamma are assigned
	// but never answered, so they stay in flight.
	if _, ok := got["beta"]; len(got) != 2 || got["alpha"] == "" || got["delta"] != "" || ok {
		t.Fatalf("second seed: finished %v, want alpha failed and delta clean only", got)
	}
}
