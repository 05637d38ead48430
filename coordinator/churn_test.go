package coordinator

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// churnState is the size of every structure the coordinator keeps per
// session, identity, task or rules hash.
type churnState struct {
	Sessions, PerIdentity, Strikes, Holds, Known, History     int
	DispSessions, Identities, Running, Backups, Jobs, Waiting int
	// SendBudgetFree: no rule-set send holds any of the shared budget.
	SendBudgetFree bool
}

// maxGoneIdentitiesForTest is dispatch's bound on identities remembered for
// their counts after their last session left.
const maxGoneIdentitiesForTest = 1024

func (c *Coordinator) churnState() churnState {
	var s churnState
	c.mu.Lock()
	s.Sessions, s.PerIdentity = len(c.sessions), len(c.perIdentity)
	c.mu.Unlock()
	c.guard.mu.Lock()
	s.Strikes = len(c.guard.strikes)
	c.guard.mu.Unlock()
	c.rules.mu.Lock()
	s.Holds, s.Known, s.History = len(c.rules.holds), len(c.rules.known), len(c.rules.history)
	c.rules.mu.Unlock()
	d := c.disp.Snapshot()
	s.DispSessions, s.Identities, s.Running, s.Backups = len(d.Sessions), len(d.Identities), d.TasksRunning, d.BackupsWaiting
	s.Jobs, s.Waiting = d.JobsInFlight, d.TasksWaiting
	if s.SendBudgetFree = c.bigSends.TryAcquire(bigSendBudget); s.SendBudgetFree {
		c.bigSends.Release(bigSendBudget)
	}
	return s
}

// rawSession opens a session stream on conn as worker id; cancel breaks it
// (a network cut, as the server sees it).
func rawSession(t *testing.T, conn *grpc.ClientConn) (fleetv1.FleetService_ConnectClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := fleetv1.NewFleetServiceClient(conn).Connect(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return stream, cancel
}

// recvUntil reads messages until ok says one is the one awaited.
func recvUntil(t *testing.T, stream fleetv1.FleetService_ConnectClient, what string, ok func(*fleetv1.ConnectResponse) bool) *fleetv1.ConnectResponse {
	t.Helper()
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok(m) {
			return m
		}
	}
}

// waitGoroutines waits until the goroutines are back to at most base.
func waitGoroutines(t *testing.T, base int, phase string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, func() bool { return runtime.NumGoroutine() <= base },
		func() string {
			buf := make([]byte, 1<<20)
			return fmt.Sprintf("%s: %d goroutines, baseline %d:\n%s", phase, runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		})
}

// TestSessionChurnLeavesNothingBehind: 300 sessions at each point of a
// session's life, each a new identity, breaking there (before Hello, after
// Welcome, mid rule-set send, holding a task, after handing it back, after
// draining, after starting it, after a protocol violation), leave the
// coordinator's per-session, per-identity, per-task and per-rules state,
// the shared rule-set send budget and its goroutines as they were
// (identities that handed tasks back are remembered, within the
// dispatcher's bound).
func TestSessionChurnLeavesNothingBehind(t *testing.T) {
	const cycles = 300
	// A rule set larger than the fixed flow-control window: a session that
	// breaks before reading it breaks mid-send.
	pad := strings.Repeat("// padding that makes the rule set large\n", 200<<10/41)
	var jobs []mainframe.Job
	for i := range 3 * cycles {
		jobs = append(jobs, job(fmt.Sprintf("p%d", i), "u"))
	}
	api := newFakeAPI(jobs...)
	api.SetRules(mainframe.RuleSet{Hash: "h1", Rules: map[string]string{"a": testRules, "pad": pad}}, nil)
	f := startFleet(t, api, func(c *Config) { c.HeartbeatInterval = time.Second })
	conn := f.dial(grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	hello := func(stream fleetv1.FleetService_ConnectClient, id string) {
		t.Helper()
		if err := stream.Send(hello(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	welcome := func(stream fleetv1.FleetService_ConnectClient) {
		t.Helper()
		recvUntil(t, stream, "Welcome", func(m *fleetv1.ConnectResponse) bool { return m.GetWelcome() != nil })
	}
	ready := func(stream fleetv1.FleetService_ConnectClient) {
		t.Helper()
		rs := recvUntil(t, stream, "the rule set", func(m *fleetv1.ConnectResponse) bool { return m.GetRuleSet() != nil }).GetRuleSet()
		if err := stream.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: rs.GetHash()}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Warm up: the connection and the rules are there, the jobs leased.
	{
		stream, cancel := rawSession(t, conn)
		hello(stream, "warm")
		welcome(stream)
		ready(stream)
		recvUntil(t, stream, "a task", func(m *fleetv1.ConnectResponse) bool { return m.GetAssign() != nil })
		cancel()
	}
	quiet := func() {
		testkit.WaitFor(t, 30*time.Second, func() bool {
			s := f.c.churnState()
			// The send budget is given back by the session's sender, which
			// may end after the session does.
			return s.Sessions == 0 && s.DispSessions == 0 && s.Running == 0 && s.SendBudgetFree
		}, func() string {
			return fmt.Sprintf("sessions did not end, or the send budget was not given back: %+v", f.c.churnState())
		})
	}
	quiet()
	runtime.GC()
	base := f.c.churnState()
	goBase := runtime.NumGoroutine()
	t.Logf("baseline %+v, %d goroutines", base, goBase)

	// takeTasks opens a session that is ready and returns the ids of the
	// first tasks it is assigned.
	takeTasks := func(s fleetv1.FleetService_ConnectClient, id string) []uint64 {
		hello(s, id)
		welcome(s)
		ready(s)
		a := recvUntil(t, s, "a task", func(m *fleetv1.ConnectResponse) bool { return m.GetAssign() != nil }).GetAssign()
		var ids []uint64
		for _, x := range a.GetTasks() {
			ids = append(ids, x.GetTaskId())
		}
		return ids
	}
	phases := []struct {
		name string
		run  func(stream fleetv1.FleetService_ConnectClient, id string)
	}{
		{"before Hello", func(fleetv1.FleetService_ConnectClient, string) {}},
		{"after Welcome", func(s fleetv1.FleetService_ConnectClient, id string) { hello(s, id); welcome(s) }},
		{"mid rule-set send", func(s fleetv1.FleetService_ConnectClient, id string) {
			hello(s, id)
			welcome(s)
			// Joined: the rule set is being sent, and the worker does not read it.
			testkit.WaitFor(t, 10*time.Second, func() bool { return f.c.churnState().Sessions == 1 }, func() string { return "no session" })
		}},
		{"holding tasks", func(s fleetv1.FleetService_ConnectClient, id string) {
			hello(s, id)
			welcome(s)
			ready(s)
			recvUntil(t, s, "a task", func(m *fleetv1.ConnectResponse) bool { return m.GetAssign() != nil })
		}},
		{"handing tasks back", func(s fleetv1.FleetService_ConnectClient, id string) {
			ids := takeTasks(s, id)
			if err := s.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_TaskReturn{TaskReturn: &fleetv1.TaskReturn{TaskIds: ids}}}); err != nil {
				t.Fatal(err)
			}
		}},
		{"draining", func(s fleetv1.FleetService_ConnectClient, id string) {
			hello(s, id)
			welcome(s)
			ready(s)
			recvUntil(t, s, "a task", func(m *fleetv1.ConnectResponse) bool { return m.GetAssign() != nil })
			if err := s.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Draining{Draining: &fleetv1.Draining{}}}); err != nil {
				t.Fatal(err)
			}
			s.CloseSend()
			for {
				if _, err := s.Recv(); err != nil {
					return
				}
			}
		}},
		{"losing started tasks", func(s fleetv1.FleetService_ConnectClient, id string) {
			ids := takeTasks(s, id)
			if err := s.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{RunningTaskIds: ids}}}); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 10*time.Second, func() bool {
				d := f.c.disp.Snapshot()
				return len(d.Sessions) == 1 && d.Sessions[0].Started > 0
			}, func() string { return "not started" })
		}},
		{"protocol violation", func(s fleetv1.FleetService_ConnectClient, id string) {
			hello(s, id)
			welcome(s)
			ready(s)
			recvUntil(t, s, "a task", func(m *fleetv1.ConnectResponse) bool { return m.GetAssign() != nil })
			s.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: []*fleetv1.TaskResult{{TaskId: 1 << 60}}}}})
			for {
				if _, err := s.Recv(); err != nil {
					return
				}
			}
		}},
	}
	for _, p := range phases {
		for i := range cycles {
			stream, cancel := rawSession(t, conn)
			p.run(stream, fmt.Sprintf("%s-%d", strings.ReplaceAll(p.name, " ", "-"), i))
			cancel()
		}
		quiet()
		got := f.c.churnState()
		t.Logf("after %d sessions %s: %+v", cycles, p.name, got)
		if got.Jobs > 10 || got.Waiting > 10 {
			// Leasing follows the credits of the one session at a time.
			t.Errorf("after %d sessions %s: %d jobs, %d tasks waiting", cycles, p.name, got.Jobs, got.Waiting)
		}
		got.Jobs, got.Waiting = base.Jobs, base.Waiting
		if got.Identities > base.Identities+maxGoneIdentitiesForTest {
			t.Errorf("after %d sessions %s: %d identities remembered", cycles, p.name, got.Identities)
		}
		got.Identities = base.Identities
		if got != base {
			t.Errorf("after %d sessions %s: %+v, baseline %+v", cycles, p.name, got, base)
		}
		waitGoroutines(t, goBase, p.name)
	}
}

// TestRulesOfferedToALongSessionStayBounded: a session that stays connected
// through 300 rules changes, reading every set but never reporting one
// evicted (a hostile worker; an honest one that cannot compile the sets
// does the same), remembers at most 16 hashes as offered, and is
// still sent the newest set. Before: one more hash per change, 283 after
// 300 changes, for as long as the session lasted.
func TestRulesOfferedToALongSessionStayBounded(t *testing.T) {
	api := newFakeAPI()
	f := startFleet(t, api, nil)
	w := f.worker("keeper", 1)
	w.ready()
	var s *workerSession
	f.c.mu.Lock()
	for _, x := range f.c.sessions {
		s = x
	}
	f.c.mu.Unlock()
	const changes = 300
	got := make(chan string, 1)
	go func() {
		// It reads everything (it does not stall), and evicts nothing.
		for m := range w.in {
			if h := m.GetRuleSet().GetHash(); h == fmt.Sprintf("h%d", changes+1) {
				got <- h
			}
		}
	}()
	for i := range changes {
		api.SetRules(mainframe.RuleSet{Hash: fmt.Sprintf("h%d", i+2), Rules: map[string]string{"a": testRules + fmt.Sprintf("\n// %d\n", i)}}, nil)
		f.c.rules.refresh(context.Background())
	}
	select {
	case <-got:
	case err := <-w.recv:
		t.Fatalf("the session ended before the newest rule set came: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the newest rule set was not sent")
	}
	s.mu.Lock()
	offered := len(s.offered)
	s.mu.Unlock()
	t.Logf("after %d rules changes: %d hashes remembered as offered", changes, offered)
	// A worker holds a few sets (the dispatcher remembers 16 ready per
	// session): no more need be remembered as offered.
	if offered > 16 {
		t.Fatalf("%d hashes remembered as offered after %d rules changes; want at most 16", offered, changes)
	}
	if !s.wasOffered(fmt.Sprintf("h%d", changes+1)) {
		t.Fatal("the rules in use are not remembered as offered")
	}
}

// TestSessionsDuringDrainLeaveNothingBehind: 50 sessions holding tasks when
// shutdown begins are told to drain and break; 2,000 sessions that try to
// join meanwhile are refused. Nothing of either stays: sessions, identities,
// tasks held, goroutines.
func TestSessionsDuringDrainLeaveNothingBehind(t *testing.T) {
	var jobs []mainframe.Job
	for i := range 200 {
		jobs = append(jobs, job(fmt.Sprintf("p%d", i), "u"))
	}
	api := newFakeAPI(jobs...)
	f := startFleet(t, api, func(c *Config) {
		c.HeartbeatInterval = time.Second
		c.HeartbeatMisses = 100
		c.DrainTimeout = 20 * time.Second
	})
	conn := f.dial()
	runtime.GC()
	goBase := runtime.NumGoroutine()
	var held []fleetv1.FleetService_ConnectClient
	var cancels []context.CancelFunc
	var conns []*grpc.ClientConn
	for i := range 50 {
		cc := f.dial()
		conns = append(conns, cc)
		s, cancel := rawSession(t, cc)
		s.Send(hello(fmt.Sprintf("d%d", i), 1))
		rs := recvUntil(t, s, "rules", func(m *fleetv1.ConnectResponse) bool { return m.GetRuleSet() != nil }).GetRuleSet()
		s.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: rs.GetHash()}}})
		recvUntil(t, s, "task", func(m *fleetv1.ConnectResponse) bool { return m.GetAssign() != nil })
		held = append(held, s)
		cancels = append(cancels, cancel)
	}
	f.cancel()
	for _, s := range held {
		recvUntil(t, s, "drain", func(m *fleetv1.ConnectResponse) bool { return m.GetDrain() != nil })
	}
	for i := range 2000 {
		s, cancel := rawSession(t, conn)
		s.Send(hello(fmt.Sprintf("late%d", i), 1))
		if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
			t.Fatalf("a session joining while the coordinator drains: %v, want Unavailable", err)
		}
		cancel()
	}
	for _, c := range cancels {
		c()
	}
	for _, cc := range conns {
		cc.Close()
	}
	if err := <-f.done; err != nil {
		t.Fatal(err)
	}
	f.cancel = nil
	f.srv.Stop(0)
	f.c.WaitSessions()
	got := f.c.churnState()
	t.Logf("after the drain: %+v", got)
	if got.Sessions != 0 || got.PerIdentity != 0 || got.DispSessions != 0 || got.Identities != 0 || got.Running != 0 || got.Holds != 0 {
		t.Errorf("after the drain: %+v", got)
	}
	waitGoroutines(t, goBase, "drain")
}

// TestConnectionChurnLeavesTheGateEmpty: 1,000 rounds of a connection that
// carries a session and closes (mid-stream or after it), a connection that
// closes before its handshake, and one whose stream is refused for want of
// the token, leave the gate with no pending or authenticated connection,
// no session and the goroutines as they were.
func TestConnectionChurnLeavesTheGateEmpty(t *testing.T) {
	api := newFakeAPI()
	f := startFleetWith(t, api, nil, ServerConfig{Token: testToken})
	runtime.GC()
	goBase := runtime.NumGoroutine()
	for i := range 1000 {
		cc := f.dial(f.fromAddr("127.0.0.1")...)
		s, cancel := rawSession(t, cc)
		s.Send(hello(fmt.Sprintf("c%d", i), 1))
		recvUntil(t, s, "welcome", func(m *fleetv1.ConnectResponse) bool { return m.GetWelcome() != nil })
		if i%2 == 0 {
			cancel()
		}
		cc.Close()
		cancel()
		raw, err := f.lis.Dial()
		if err != nil {
			t.Fatal(err)
		}
		raw.Close()
		bad := f.dial()
		s2, cancel2 := rawSession(t, bad)
		s2.Recv()
		cancel2()
		bad.Close()
	}
	testkit.WaitFor(t, 20*time.Second, func() bool {
		c := f.srv.connCounts()
		return c.Pending == 0 && c.Authenticated == 0 && f.c.churnState().Sessions == 0
	},
		func() string { return fmt.Sprintf("%+v %+v", f.srv.connCounts(), f.c.churnState()) })
	t.Logf("%+v %+v refusals %+v", f.srv.connCounts(), f.c.churnState(), f.c.refusals.snapshot())
	waitGoroutines(t, goBase, "conns")
}
