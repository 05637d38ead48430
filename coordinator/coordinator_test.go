package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/fleetauth"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/fakeapi"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testRules are the fake API's rules: a worker's result may name only these
// rules with these weights (the coordinator checks).
const testRules = `
rule r1 { meta: weight = 3 strings: $a = "evil" condition: $a }
rule r2 { meta: weight = 7 strings: $a = "worse" condition: $a }
rule r { meta: weight = 1 strings: $a = "bad" condition: $a }
rule s { meta: weight = 2 strings: $a = "sad" condition: $a }
rule heavy { meta: weight = 9 strings: $a = "heavy" condition: $a }
`

// testToken is the fleet token of the tests' servers that need one.
const testToken = "fleet-token-of-the-tests-0123456789"

// testWeights are testRules' weights.
var testWeights = map[string]int64{"r1": 3, "r2": 7, "r": 1, "s": 2, "heavy": 9}

// fakeAPI is the shared in-memory Dragonfly API.
type fakeAPI = fakeapi.API

// newFakeAPI serves testRules as "h1" and the jobs.
func newFakeAPI(jobs ...mainframe.Job) *fakeAPI {
	return fakeapi.New(mainframe.RuleSet{Hash: "h1", Rules: map[string]string{"a": testRules}}, jobs...)
}

func intp(i int) *int       { return &i }
func strp(s string) *string { return &s }

func job(name string, dists ...string) mainframe.Job {
	return mainframe.Job{Name: name, Version: "1.0", Distributions: dists, Hash: "h1", Attempt: intp(1), AssignmentID: strp("as-" + name)}
}

// fleet is a coordinator serving over bufconn.
type fleet struct {
	t      *testing.T
	c      *Coordinator
	api    *fakeAPI
	lis    *bufconn.Listener
	from   *addrListener // lis as served: connections from chosen addresses
	srv    *Server
	cancel context.CancelFunc
	done   chan error
}

// addrListener serves a bufconn listener's connections; one dialled with
// dialFrom comes, as the server sees it, from the address chosen.
type addrListener struct {
	*bufconn.Listener
	dialMu sync.Mutex // one dialFrom at a time: its connection is the next accepted
	mu     sync.Mutex
	next   net.Addr
	port   int
}

func (l *addrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	a := l.next
	l.next = nil
	l.mu.Unlock()
	if a == nil {
		return c, nil
	}
	return addrConn{Conn: c, remote: a}, nil
}

// dialFrom connects as ip would (a new port each time).
func (l *addrListener) dialFrom(ctx context.Context, ip string) (net.Conn, error) {
	l.dialMu.Lock()
	defer l.dialMu.Unlock()
	l.mu.Lock()
	l.port++
	l.next = &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000 + l.port}
	l.mu.Unlock()
	c, err := l.Listener.DialContext(ctx)
	if err != nil {
		l.mu.Lock()
		l.next = nil
		l.mu.Unlock()
	}
	return c, err
}

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// fromAddr are dial options of a worker on another host (ip) that sends
// the fleet token over plaintext (the server needs FleetInsecure).
func (f *fleet) fromAddr(ip string) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return f.from.dialFrom(ctx, ip) }),
		grpc.WithPerRPCCredentials(fleetauth.Token{Value: testToken, AllowInsecure: true}),
	}
}

func startFleet(t *testing.T, api *fakeAPI, tweak func(*Config)) *fleet {
	t.Helper()
	return startFleetWith(t, api, tweak, ServerConfig{Insecure: true})
}

// startFleetWith is startFleet with the production server built from scfg.
func startFleetWith(t *testing.T, api *fakeAPI, tweak func(*Config), scfg ServerConfig) *fleet {
	t.Helper()
	// Heartbeats every 250 ms, but a session is cut for silence (and a
	// send held by flow control, SendTimeout) only after 10 s: with the
	// default 3 misses, a pause of the test process over 750 ms (a loaded
	// machine not running it) cut the fake workers with "worker missed its
	// heartbeats", however often they heartbeat. Tests of silence and
	// stalls set their own (heartbeat_test.go on synctest's clock).
	cfg := Config{
		API: api, LoadDuration: 20 * time.Millisecond, HeartbeatInterval: 250 * time.Millisecond, HeartbeatMisses: 40,
		DrainTimeout: 5 * time.Second, FlushTimeout: 5 * time.Second, Prefetch: DefaultPrefetch,
		Logger: slog.New(slog.DiscardHandler),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(c, scfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, c: c, api: api, lis: bufconn.Listen(1 << 20), srv: srv, done: make(chan error, 1)}
	f.from = &addrListener{Listener: f.lis}
	go f.srv.Serve(f.from)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- c.Run(ctx) }()
	t.Cleanup(f.stop)
	return f
}

func (f *fleet) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	if err := <-f.done; err != nil {
		f.t.Errorf("Run: %v", err)
	}
	f.srv.Stop(0)
	f.c.WaitSessions()
}

// readyWorker starts a fleet on api with one worker whose rules are ready.
func readyWorker(t *testing.T, api *fakeAPI, id string, slots uint32) (*fleet, *fakeWorker) {
	t.Helper()
	f := startFleet(t, api, nil)
	w := f.worker(id, slots)
	w.ready()
	return f, w
}

// nothingOn fails t if ch holds a value now; what says what that would mean.
func nothingOn[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s: %+v", what, v)
	default:
	}
}

// fakeWorker is a scripted worker speaking the real protocol.
type fakeWorker struct {
	t      *testing.T
	conn   *grpc.ClientConn
	stream fleetv1.FleetService_ConnectClient
	cancel context.CancelFunc
	in     chan *fleetv1.ConnectResponse
	recv   chan error

	mu      sync.Mutex // serializes stream.Send (heartbeats and the test's messages)
	silent  chan struct{}
	silence func() // stops the heartbeats: the worker goes quiet
}

func (f *fleet) worker(id string, slots uint32) *fakeWorker {
	f.t.Helper()
	return f.workerWith(id, slots)
}

// dial connects to the fleet's server in memory with the fleet's limits on
// message sizes (and opts); it is closed when the test ends.
func (f *fleet) dial(opts ...grpc.DialOption) *grpc.ClientConn {
	f.t.Helper()
	limits := grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(protocol.MaxResponseBytes), grpc.MaxCallSendMsgSize(protocol.MaxRequestBytes))
	return testkit.DialBuf(f.t, f.lis, append([]grpc.DialOption{limits}, opts...)...)
}

// workerWith is worker over a connection with extra dial options.
func (f *fleet) workerWith(id string, slots uint32, opts ...grpc.DialOption) *fakeWorker {
	f.t.Helper()
	return f.workerMode(id, slots, fleetv1.WorkerMode_WORKER_MODE_SCAN, opts...)
}

// legacyWorker is worker as the previous release's workers say Hello: with
// no mode (the field came with this release).
func (f *fleet) legacyWorker(id string, slots uint32) *fakeWorker {
	f.t.Helper()
	return f.workerMode(id, slots, fleetv1.WorkerMode_WORKER_MODE_UNSPECIFIED)
}

// workerMode is workerWith announcing mode in its Hello.
func (f *fleet) workerMode(id string, slots uint32, mode fleetv1.WorkerMode, opts ...grpc.DialOption) *fakeWorker {
	f.t.Helper()
	conn := f.dial(opts...)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := fleetv1.NewFleetServiceClient(conn).Connect(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	w := &fakeWorker{t: f.t, conn: conn, stream: stream, cancel: cancel, in: make(chan *fleetv1.ConnectResponse, 100), recv: make(chan error, 1), silent: make(chan struct{})}
	w.silence = sync.OnceFunc(func() { close(w.silent) })
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				w.recv <- err
				close(w.in)
				return
			}
			w.in <- m
		}
	}()
	f.t.Cleanup(w.close)
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
		WorkerId: id, ProtocolVersion: fleetv1.ProtocolVersion_PROTOCOL_VERSION_1, Slots: slots, Host: "test", Mode: mode,
	}}})
	// Like a real worker, it heartbeats until told to go silent, so a loaded
	// machine never makes the coordinator drop it.
	go heartbeat(ctx, f.c.cfg.HeartbeatInterval/5, w.silent, func(m *fleetv1.ConnectRequest) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.stream.Send(m)
	})
	return w
}

// heartbeat sends a heartbeat with send every d until ctx ends, stop (when
// not nil) is closed, or a send fails.
func heartbeat(ctx context.Context, d time.Duration, stop <-chan struct{}, send func(*fleetv1.ConnectRequest) error) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}) != nil {
				return
			}
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// closeSend half-closes the stream, as a worker that has finished does.
func (w *fakeWorker) closeSend() {
	w.silence()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stream.CloseSend()
}

func (w *fakeWorker) close() {
	w.silence()
	w.cancel()
	for range w.in {
	}
	w.conn.Close()
}

func (w *fakeWorker) send(m *fleetv1.ConnectRequest) {
	w.t.Helper()
	w.mu.Lock()
	err := w.stream.Send(m)
	w.mu.Unlock()
	if err != nil {
		// The stream's real status comes from Recv.
		select {
		case rerr := <-w.recv:
			w.t.Fatalf("send: %v (stream ended: %v)", err, rerr)
		case <-time.After(5 * time.Second):
			w.t.Fatalf("send: %v", err)
		}
	}
}

// next returns the next message that is not a heartbeat.
func (w *fakeWorker) next() *fleetv1.ConnectResponse {
	w.t.Helper()
	m, ok := testkit.NextNonHeartbeat(w.t, w.in, 10*time.Second)
	if !ok {
		w.t.Fatalf("stream ended: %v", <-w.recv)
	}
	return m
}

// ready reads Welcome and the rule set and reports the rules ready.
func (w *fakeWorker) ready() string {
	w.t.Helper()
	if m := w.next(); m.GetWelcome() == nil {
		w.t.Fatalf("first message %v, want Welcome", m)
	}
	rs := w.next().GetRuleSet()
	if rs == nil {
		w.t.Fatal("no rule set after Welcome")
	}
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: rs.GetHash()}}})
	return rs.GetHash()
}

func (w *fakeWorker) tasks(n int) []*fleetv1.Task {
	w.t.Helper()
	var out []*fleetv1.Task
	for len(out) < n {
		m := w.next()
		if a := m.GetAssign(); a != nil {
			out = append(out, a.GetTasks()...)
		} else if m.GetDrain() == nil {
			w.t.Fatalf("unexpected message %v", m)
		}
	}
	return out
}

// result is a distribution result naming rules of testRules with their
// weights; the score is theirs (a worker's score is recomputed anyway).
func result(t *fleetv1.Task, top string, rules ...string) *fleetv1.TaskResult {
	d := &fleetv1.DistributionResult{TopFile: top}
	for _, r := range rules {
		w, ok := testWeights[r]
		if !ok {
			panic("result: rule " + r + " is not in testRules")
		}
		d.Rules = append(d.Rules, &fleetv1.RuleHit{Name: r, Weight: w})
		d.Score += w
	}
	d.TopFileScore = d.Score
	return &fleetv1.TaskResult{TaskId: t.GetTaskId(), Outcome: &fleetv1.TaskResult_Distribution{Distribution: d}, Stats: &fleetv1.TaskStats{ScanTime: durationpb.New(time.Millisecond)}}
}

func (w *fakeWorker) answer(rs ...*fleetv1.TaskResult) {
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: rs}}})
}

func TestJobsFlowThroughWorkers(t *testing.T) {
	api := newFakeAPI(
		job("a", "https://h/p/a-1.0.tar.gz", "https://h/p/a-1.0-py3-none-any.whl"),
		job("b", "https://h/p/b-1.0.tar.gz"),
		job("empty"),
	)
	f := startFleet(t, api, nil)
	w := f.worker("w1", 2)
	if h := w.ready(); h != "h1" {
		t.Fatalf("rules hash %q", h)
	}
	// 2 slots + 1 prefetch: exactly 3 tasks; of one lease answer the
	// release of fewer distributions first.
	ts := w.tasks(3)
	if ts[0].GetJob().GetName() != "b" || ts[1].GetJob().GetName() != "a" || ts[2].GetJob().GetName() != "a" {
		t.Fatalf("task order %v %v %v", ts[0].GetJob(), ts[1].GetJob(), ts[2].GetJob())
	}
	w.answer(result(ts[1], "a-1.0/setup.py", "r1"), result(ts[2], "a/x.py", "r2"), result(ts[0], ""))
	byName := testkit.ByKey(t, api.WaitReports(t, 3), func(r mainframe.Report) string { return r.Name })
	a := byName["a"].Success
	if a == nil || a.Score != 7 || !slices.Equal(a.RulesMatched, []string{"r1", "r2"}) || a.Commit != "h1" ||
		a.InspectorURL == nil || *a.InspectorURL != "https://inspector.pypi.io/project/a/1.0/p/a-1.0-py3-none-any.whl/a/x.py" {
		t.Fatalf("report a = %+v", byName["a"])
	}
	if *byName["a"].Attempt != 1 || *byName["a"].AssignmentID != "as-a" {
		t.Fatalf("lease identity not echoed: %+v", byName["a"])
	}
	if b := byName["b"].Success; b == nil || b.Score != 0 || b.InspectorURL != nil || len(b.RulesMatched) != 0 {
		t.Fatalf("report b = %+v", byName["b"])
	}
	if e := byName["empty"].Success; e == nil || e.Score != 0 {
		t.Fatalf("report empty = %+v", byName["empty"])
	}
}

func TestLeasesOnlyWhatTheFleetCanStart(t *testing.T) {
	api := newFakeAPI()
	var jobs []mainframe.Job
	for i := range 50 {
		jobs = append(jobs, job(fmt.Sprintf("j%d", i), "u"))
	}
	api.Add(jobs...)
	f := startFleet(t, api, nil)
	// No worker: nothing may be leased. Wait for the loader to load rules
	// and settle, observed through the rules fetch.
	w := f.worker("w1", 1)
	w.ready()
	ts := w.tasks(2)
	leases := api.Leases()
	if len(leases) == 0 || leases[0] != 2 {
		t.Fatalf("first lease asked for %v, want 2 (1 slot + 1 prefetch)", leases)
	}
	total := 0
	for _, n := range leases {
		total += n
	}
	if total != 2 {
		t.Fatalf("leased %d jobs for a fleet of 2 credits: %v", total, leases)
	}
	w.answer(result(ts[0], ""))
	more := w.tasks(1)
	if more[0].GetJob().GetName() != "j2" {
		t.Fatalf("next task %v", more[0].GetJob())
	}
	w.answer(result(ts[1], ""), result(more[0], ""))
	api.WaitReports(t, 3)
}

func TestLostWorkerTasksGoElsewhereAndLateResultsAreDropped(t *testing.T) {
	api := newFakeAPI(job("p", "u1", "u2"))
	f, a := readyWorker(t, api, "a", 1)
	ta := a.tasks(2)
	b := f.worker("b", 1)
	b.ready()
	a.close() // the worker dies holding both tasks
	tb := b.tasks(2)
	if tb[0].GetTaskId() == ta[0].GetTaskId() {
		t.Fatal("re-dispatched task kept its id")
	}
	b.answer(result(tb[0], "f", "r"), result(tb[1], "g", "s"))
	reports := api.WaitReports(t, 1)
	if len(reports) != 1 || reports[0].Success.Score != 2 {
		t.Fatalf("reports = %+v", reports)
	}
}

func TestRulesChangeFollowsTheLeasedHash(t *testing.T) {
	api := newFakeAPI()
	_, w := readyWorker(t, api, "w", 1)
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": `rule r2 { condition: true }`}}, nil)
	j := job("p", "u1")
	j.Hash = "h2"
	api.Add(j)
	m := w.next()
	rs := m.GetRuleSet()
	if rs == nil || rs.GetHash() != "h2" {
		t.Fatalf("got %v, want the new rule set pushed", m)
	}
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h2"}}})
	scannedWith(t, api, w, "h2")
}

// TestRulesNoWorkerCompilesPauseLeasing: when every worker fails to
// compile the rules the API switched to, nothing more is leased (a job
// leased for them could only wait for its lease to run out), and the
// coordinator looks at GET /rules again every RulesRetry, so the set the
// API fixes is found, offered and scanned with.
func TestRulesNoWorkerCompilesPauseLeasing(t *testing.T) {
	api := newFakeAPI()
	// p, leased under h2, never finishes: a short drain at the end.
	f := startFleet(t, api, func(c *Config) { c.RulesRetry, c.DrainTimeout = 50*time.Millisecond, 100*time.Millisecond })
	w := f.worker("w", 1)
	w.ready()
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": `rule r2 { condition: true }`}}, nil)
	j := job("p", "u1")
	j.Hash = "h2"
	api.Add(j)
	if rs := w.next().GetRuleSet(); rs.GetHash() != "h2" {
		t.Fatalf("got rules %q, want h2 offered", rs.GetHash())
	}
	// p's lease is behind the offer (its hash made the coordinator fetch
	// h2); an empty lease may come before it, as the worker was ready first.
	leased := len(api.Leases())
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h2", Error: "a.yara:1: cannot compile here"}}})
	var more []mainframe.Job
	for i := range 5 {
		more = append(more, job(fmt.Sprintf("q%d", i), "u1"))
		more[i].Hash = "h2"
	}
	api.Add(more...)
	api.SetRules(mainframe.RuleSet{Hash: "h3", Rules: map[string]string{"a": `rule r3 { condition: true }`}}, nil)
	// Found without a job asking for it: the queue names h2 only.
	m := w.next()
	if rs := m.GetRuleSet(); rs.GetHash() != "h3" {
		t.Fatalf("got %v, want h3 offered", m)
	}
	if got := api.Leases(); len(got) != leased {
		t.Fatalf("leases %v while no worker held the current rules, want none after the first %d", got, leased)
	}
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h3"}}})
	scannedWith(t, api, w, "h3")
}

// scannedWith checks that w's next task names the rules hash and that its
// report carries that hash: results carry the hash of the rules used.
func scannedWith(t *testing.T, api *fakeAPI, w *fakeWorker, hash string) {
	t.Helper()
	n := len(api.Reports()) + 1
	ts := w.tasks(1)
	if ts[0].GetRulesHash() != hash {
		t.Fatalf("task rules %q, want %s", ts[0].GetRulesHash(), hash)
	}
	w.answer(result(ts[0], ""))
	if r := api.WaitReports(t, n); r[n-1].Success == nil || r[n-1].Success.Commit != hash {
		t.Fatalf("report %+v, want a success under %s", r[n-1], hash)
	}
}

func TestFailedRulesUpdateKeepsTheHashActuallyUsed(t *testing.T) {
	api := newFakeAPI()
	_, w := readyWorker(t, api, "w", 1)
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": `rule broken { condition: }`}}, nil)
	j := job("p", "u1")
	j.Hash = "h2"
	api.Add(j)
	scannedWith(t, api, w, "h1") // the new set does not compile
}

// TestEmptyRulesUpdateIsRefused: a set that compiles to no rule (comments
// only) would find nothing and report every release clean: it is refused
// like one that does not compile, and the rules in use stay.
func TestEmptyRulesUpdateIsRefused(t *testing.T) {
	api := newFakeAPI()
	_, w := readyWorker(t, api, "w", 1)
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": "// nothing yet\n"}}, nil)
	j := job("p", "u1")
	j.Hash = "h2"
	api.Add(j)
	scannedWith(t, api, w, "h1")
}

func TestFailureFailsThePackage(t *testing.T) {
	api := newFakeAPI(job("p", "u1", "u2"))
	_, w := readyWorker(t, api, "w", 2)
	ts := w.tasks(2)
	w.answer(&fleetv1.TaskResult{TaskId: ts[1].GetTaskId(), Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{
		Reason: "distribution u2: HTTP 404 Not Found", Kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD,
	}}})
	w.answer(result(ts[0], "x", "r"))
	r := api.WaitReports(t, 1)
	if r[0].Success != nil || r[0].Reason != "distribution u2: HTTP 404 Not Found" {
		t.Fatalf("report = %+v", r[0])
	}
}

// TestBlankFailureReasonStillReported: a worker's failure reason of
// nothing but white space, NUL or control characters is no reason the API
// can store (the encoder refuses a blank one, PostgreSQL a NUL): the report
// names the distribution instead, and a reason with some text keeps it, as
// one line without the control characters.
func TestBlankFailureReasonStillReported(t *testing.T) {
	for _, tc := range []struct{ reason, want string }{
		{" \t\r\n", "distribution u2: scan failed"},
		{"\u00a0\u3000\u200b", "distribution u2: scan failed"},
		{"\x00", "distribution u2: scan failed"},
		{"\x00truncated\x00 archive\n\x1b[1m", "truncated archive [1m"},
	} {
		t.Run(fmt.Sprintf("%q", tc.reason), func(t *testing.T) {
			api := newFakeAPI(job("p", "u1", "u2"))
			_, w := readyWorker(t, api, "w", 2)
			ts := w.tasks(2)
			w.answer(&fleetv1.TaskResult{TaskId: ts[1].GetTaskId(), Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{
				Reason: tc.reason, Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE,
			}}})
			w.answer(result(ts[0], "x", "r"))
			r := api.WaitReports(t, 1)
			if r[0].Success != nil || r[0].Reason != tc.want {
				t.Fatalf("report = %+v, want the failure %q", r[0], tc.want)
			}
		})
	}
}

// TestShutdownDrainsWorkersAndFlushesReports: shutting down, the
// coordinator tells its workers to drain and waits for a job in flight only
// while a worker holds a task of it. Here the worker hands back the
// prefetched task and finishes the started one: the job cannot finish (no
// task is assigned while draining), and the coordinator stops at once
// instead of waiting out its drain timeout (10 min here).
func TestShutdownDrainsWorkersAndFlushesReports(t *testing.T) {
	api := newFakeAPI(job("p", "u1", "u2"))
	f := startFleet(t, api, func(c *Config) { c.DrainTimeout = 10 * time.Minute })
	w := f.worker("w", 1)
	w.ready()
	ts := w.tasks(2)
	stopped := make(chan struct{})
	go func() {
		f.stop()
		close(stopped)
	}()
	// The worker is told to drain, hands back the prefetched task, and
	// finishes the started one.
	for m := w.next(); m.GetDrain() == nil; m = w.next() {
	}
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_TaskReturn{TaskReturn: &fleetv1.TaskReturn{TaskIds: []uint64{ts[1].GetTaskId()}, Reason: "draining"}}})
	w.answer(result(ts[0], ""))
	w.closeSend()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the coordinator waited for a job no worker held a task of")
	}
	// The job could not finish (its second distribution was handed back with
	// no other worker): no report, the API leases it again.
	if r := api.Reports(); len(r) != 0 {
		t.Fatalf("reports = %+v, want none for the unfinished job", r)
	}
}

// abandonObserver records abandoned reports.
type abandonObserver struct {
	nopObserver
	abandoned chan outbox.Report
}

func (o abandonObserver) ReportAbandoned(r outbox.Report, _ error) { o.abandoned <- r }

// waitOutboxEmpty waits until f's outbox holds no report.
func waitOutboxEmpty(t *testing.T, f *fleet) {
	t.Helper()
	for changed := f.c.out.Changed(); f.c.out.Len() != 0; changed = f.c.out.Changed() {
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("outbox still holds %d reports", f.c.out.Len())
		}
	}
}

// TestReportAbandoned: a report is given up, and its place in the outbox
// freed, after one try when the client cannot encode it
// (mainframe.ErrUnsendable: written by an earlier release, or a defect; the
// API leases the job again when its lease ends) instead of being retried
// for the report max age, and once past the max age when the API keeps
// failing.
func TestReportAbandoned(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		maxAge time.Duration
	}{
		{"unsendable", fmt.Errorf("PUT /package: %w: p 1.0: neither success nor a readable failure reason", mainframe.ErrUnsendable), 0},
		// 1 ns: any report is past it by the time it is first sent.
		{"past the max age", &mainframe.APIError{Endpoint: "PUT /package", Status: 503}, time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(job("p", "u1"))
			api.FailReports(tc.err)
			obs := abandonObserver{abandoned: make(chan outbox.Report, 10)}
			f := startFleet(t, api, func(c *Config) {
				c.Observer = obs
				c.ReportMaxAge = tc.maxAge
			})
			w := f.worker("w", 1)
			w.ready()
			ts := w.tasks(1)
			w.answer(result(ts[0], "f", "r1"))
			select {
			case r := <-obs.abandoned:
				if r.Name != "p" || r.Success == nil || r.Success.Score != 3 {
					t.Fatalf("abandoned %+v", r)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the failing report was never abandoned")
			}
			// Given up means gone: the outbox no longer holds it.
			waitOutboxEmpty(t, f)
			if tries := api.ReportTries(); tries != 1 {
				t.Fatalf("%d report attempts, want 1", tries)
			}
			nothingOn(t, obs.abandoned, "abandoned twice")
		})
	}
}

// TestReportRefusedForGoodDropped: a report the API refuses for good (409:
// the release is finished or leased to someone else; 422) is dropped after
// its one try, its place in the outbox freed: retrying cannot succeed, and
// it is not retried until the report max age.
func TestReportRefusedForGoodDropped(t *testing.T) {
	for _, status := range []int{409, 422} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			api := newFakeAPI(job("p", "u1"))
			api.FailReports(&mainframe.APIError{Endpoint: "PUT /package", Status: status})
			f := startFleet(t, api, nil)
			w := f.worker("w", 1)
			w.ready()
			ts := w.tasks(1)
			w.answer(result(ts[0], "f", "r1"))
			// One deadline for it all: the retries of a report kept by
			// mistake change the outbox, and would each restart a wait
			// per change.
			deadline := time.After(10 * time.Second)
			for changed := f.c.out.Changed(); api.ReportTries() == 0 || f.c.out.Len() != 0; changed = f.c.out.Changed() {
				select {
				case <-changed:
				case <-deadline:
					t.Fatalf("after %d tries the outbox still holds %d reports", api.ReportTries(), f.c.out.Len())
				}
			}
			if tries := api.ReportTries(); tries != 1 {
				t.Fatalf("%d report attempts, want 1", tries)
			}
		})
	}
}

// TestBlankReasonFromAnEarlierOutboxDropped: an outbox kept from a release
// before reasons were made one line may hold a failure whose reason is
// only white space. The client cannot encode it (the fake API encodes as
// the client does): it is dropped on its first try, not retried for the
// report max age in a place of the outbox.
func TestBlankReasonFromAnEarlierOutboxDropped(t *testing.T) {
	ob, err := outbox.Open(outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := ob.Put(outbox.Entry{Report: outbox.Report{Name: "old", Version: "1.0", Reason: " \t\x00"}, LeasedAt: now, Enqueued: now}); err != nil {
		t.Fatal(err)
	}
	api := newFakeAPI()
	obs := abandonObserver{abandoned: make(chan outbox.Report, 10)}
	f := startFleet(t, api, func(c *Config) { c.Outbox, c.Observer = ob, obs })
	select {
	case r := <-obs.abandoned:
		if r.Name != "old" {
			t.Fatalf("abandoned %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the unsendable report was never dropped")
	}
	waitOutboxEmpty(t, f)
	if tries, got := api.ReportTries(), api.Reports(); tries != 1 || len(got) != 0 {
		t.Fatalf("%d tries, %d reports accepted; want 1 try, none accepted", tries, len(got))
	}
}

// TestPrefetchBeyondWhatWorkersHoldRefused: a worker holds at most
// protocol.MaxPrefetch tasks beyond its threads and hands back the rest, so
// a larger prefetch would bounce tasks forever: New refuses it, naming the
// setting.
func TestPrefetchBeyondWhatWorkersHoldRefused(t *testing.T) {
	for _, p := range []int{-1, protocol.MaxPrefetch + 1} {
		if _, err := New(Config{API: newFakeAPI(), Prefetch: p}); err == nil || !strings.Contains(err.Error(), "DRAGONFLY_PREFETCH") {
			t.Fatalf("prefetch %d: %v, want a refusal naming DRAGONFLY_PREFETCH", p, err)
		}
	}
	if _, err := New(Config{API: newFakeAPI(), Prefetch: protocol.MaxPrefetch}); err != nil {
		t.Fatalf("prefetch %d: %v", protocol.MaxPrefetch, err)
	}
}

// TestRulesAWorkerEvictedAreOfferedAgain: a worker keeps a few compiled
// rule sets and says which it evicts; when the API goes back to an evicted
// set (a rollback, or replicas serving two commits), that set is offered
// to the worker again. It was offered once per session only: no worker was
// ever ready for the current rules again, and leasing paused for good.
func TestRulesAWorkerEvictedAreOfferedAgain(t *testing.T) {
	api := newFakeAPI()
	// The fleet's clock stands still but for the step past the retry
	// interval, taken before the switch back (no session goes silent).
	clock := testkit.NewClock()
	f := startFleet(t, api, func(c *Config) { c.Now, c.RulesRetry, c.HeartbeatMisses = clock.Now, time.Minute, 1000 })
	w := f.worker("w", 1)
	w.ready()
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": testRules}}, nil)
	j := job("p", "u1")
	j.Hash = "h2"
	api.Add(j)
	if rs := w.next().GetRuleSet(); rs.GetHash() != "h2" {
		t.Fatalf("got rules %q, want h2 offered", rs.GetHash())
	}
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h2"}}})
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1", Evicted: true}}})
	scannedWith(t, api, w, "h2")

	clock.Advance(time.Minute)
	api.SetRules(mainframe.RuleSet{Hash: "h1", Rules: map[string]string{"a": testRules}}, nil)
	k := job("q", "u1")
	api.Add(k)
	m := w.next()
	if rs := m.GetRuleSet(); rs.GetHash() != "h1" {
		t.Fatalf("got %v, want the evicted h1 offered again", m)
	}
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1"}}})
	scannedWith(t, api, w, "h1")
}

// TestRulesReplacedBeforeSentAreOfferedAgain: a rule set queued to a worker
// and replaced by a newer one before the session's sender took it never
// reached the worker; when the API goes back to it, it is offered again.
// It stayed marked as offered: the worker was never sent it, never ready
// for it, and leasing paused for good (the re-offer while paused skips a
// set marked offered).
func TestRulesReplacedBeforeSentAreOfferedAgain(t *testing.T) {
	s := &workerSession{notify: make(chan struct{}, 1), offered: map[string]bool{}}
	s.offerRules(&fleetv1.RuleSet{Hash: "h2"})
	s.offerRules(&fleetv1.RuleSet{Hash: "h3"}) // h2 not sent yet: replaced
	var sent []string
	for _, m := range s.take() {
		sent = append(sent, m.GetRuleSet().GetHash())
	}
	if !slices.Equal(sent, []string{"h3"}) {
		t.Fatalf("sent %q, want only h3", sent)
	}
	if !s.offerRules(&fleetv1.RuleSet{Hash: "h2"}) {
		t.Fatal("h2, replaced before it was sent, not offered again")
	}
	if rs := s.take(); len(rs) != 1 || rs[0].GetRuleSet().GetHash() != "h2" {
		t.Fatalf("sent %v, want h2", rs)
	}
	if s.offerRules(&fleetv1.RuleSet{Hash: "h3"}) {
		t.Fatal("h3, sent, offered again")
	}
}

// TestFailedJobWithdrawsItsRunningTasks: when a distribution fails its
// release, the worker is told to stop the release's other tasks (Cancel,
// after the Assign that carried them), whose results would be thrown away;
// it hands them back without a strike, and the session goes on.
func TestFailedJobWithdrawsItsRunningTasks(t *testing.T) {
	api := newFakeAPI(job("p", "u1", "u2", "u3"))
	_, w := readyWorker(t, api, "w", 3)
	ts := w.tasks(3)
	w.answer(&fleetv1.TaskResult{TaskId: ts[1].GetTaskId(), Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{
		Reason: "distribution u2: corrupt archive", Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE,
	}}})
	// One Cancel per withdrawn task, or one for both: the send goroutine
	// may take the first before the second is queued.
	var cancelled []uint64
	for len(cancelled) < 2 {
		cancelled = append(cancelled, w.next().GetCancel().GetTaskIds()...)
	}
	slices.Sort(cancelled)
	if want := []uint64{ts[0].GetTaskId(), ts[2].GetTaskId()}; !slices.Equal(cancelled, want) {
		t.Fatalf("cancelled %v, want tasks %v (u1 and u3 of the failed release)", cancelled, want)
	}
	if r := api.WaitReports(t, 1); r[0].Reason != "distribution u2: corrupt archive" {
		t.Fatalf("report = %+v", r[0])
	}
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_TaskReturn{TaskReturn: &fleetv1.TaskReturn{TaskIds: cancelled, Reason: "cancelled by the coordinator"}}})
	w.answer(result(ts[0], "x", "r")) // crossed the Cancel: dropped quietly
	api.Add(job("q", "v1"))
	if tk := w.tasks(1); tk[0].GetUrl() != "v1" {
		t.Fatalf("next task %v, want v1", tk[0])
	}
}

// TestReportMaxAgeFollowsTheLease: unset, the report max age is four leases
// (at least 15 min), as the dispatcher's job age: with a lease of an hour a
// fixed 15 min gave up reports the API would still accept, inside their
// lease. A lease outside 10 s to 24 h is refused.
func TestReportMaxAgeFollowsTheLease(t *testing.T) {
	for _, tc := range []struct {
		lease, want time.Duration
	}{
		{0, 15 * time.Minute},
		{time.Minute, 15 * time.Minute},
		{time.Hour, 4 * time.Hour},
	} {
		c, err := Config{API: newFakeAPI(), LeaseTimeout: tc.lease}.withDefaults()
		if err != nil || c.ReportMaxAge != tc.want {
			t.Errorf("lease %s: report max age %s, %v; want %s", tc.lease, c.ReportMaxAge, err, tc.want)
		}
	}
	for _, lease := range []time.Duration{5 * time.Second, 25 * time.Hour} {
		if _, err := (Config{API: newFakeAPI(), LeaseTimeout: lease}).withDefaults(); err == nil || !strings.Contains(err.Error(), "between 10s and 24h0m0s") {
			t.Errorf("lease %s: %v, want refused", lease, err)
		}
	}
}
