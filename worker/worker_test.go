package worker

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeCoord accepts sessions and hands them to the test.
type fakeCoord struct {
	fleetv1.UnimplementedFleetServiceServer
	sessions chan *fakeSession
	// refuse, when it returns an error, answers a session with it right
	// after Hello (a coordinator refusing the worker).
	refuse   func() error
	refusals atomic.Int64
}

type fakeSession struct {
	t      *testing.T
	stream fleetv1.FleetService_ConnectServer
	hello  *fleetv1.Hello
	in     chan *fleetv1.ConnectRequest
	end    chan struct{}
	once   sync.Once
}

func (f *fakeCoord) Connect(stream fleetv1.FleetService_ConnectServer) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	if f.refuse != nil {
		if err := f.refuse(); err != nil {
			f.refusals.Add(1)
			return err
		}
	}
	s := &fakeSession{stream: stream, hello: m.GetHello(), in: make(chan *fleetv1.ConnectRequest, 100), end: make(chan struct{})}
	go func() {
		defer close(s.in)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			s.in <- m
		}
	}()
	f.sessions <- s
	select {
	case <-s.end:
		return nil
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

func (s *fakeSession) close() { s.once.Do(func() { close(s.end) }) }

func (s *fakeSession) send(m *fleetv1.ConnectResponse) {
	s.t.Helper()
	if err := s.stream.Send(m); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

// next returns the next message from the worker that is not a heartbeat; nil
// when the worker closed its side.
func (s *fakeSession) next() *fleetv1.ConnectRequest {
	s.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-s.in:
			if !ok {
				return nil
			}
			if m.GetHeartbeat() != nil {
				continue
			}
			return m
		case <-timeout:
			s.t.Fatal("timed out waiting for the worker")
		}
	}
}

// welcome sends Welcome and a rule set and waits until the worker has it ready.
func (s *fakeSession) welcome(hash string, sources map[string]string) {
	s.t.Helper()
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{SessionId: "s1", HeartbeatInterval: durationpb.New(time.Minute)}}})
	s.pushRules(hash, sources)
}

func (s *fakeSession) pushRules(hash string, sources map[string]string) {
	s.t.Helper()
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: hash, Sources: sources}}})
	for {
		m := s.next()
		if st := m.GetRulesStatus(); st != nil && st.GetHash() == hash && !st.GetEvicted() {
			if st.GetError() != "" {
				s.t.Fatalf("rules %s did not compile: %s", hash, st.GetError())
			}
			return
		}
	}
}

func (s *fakeSession) assign(ts ...*fleetv1.Task) {
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: ts}}})
}

// results collects n task results (hand-backs are returned separately).
func (s *fakeSession) results(n int) map[uint64]*fleetv1.TaskResult {
	s.t.Helper()
	out := map[uint64]*fleetv1.TaskResult{}
	for len(out) < n {
		m := s.next()
		if m == nil {
			s.t.Fatalf("worker closed with %d of %d results", len(out), n)
		}
		for _, r := range m.GetResults().GetResults() {
			out[r.GetTaskId()] = r
		}
	}
	return out
}

type env struct {
	t      *testing.T
	coord  *fakeCoord
	files  *httptest.Server
	cancel context.CancelFunc
	done   chan error
	block  chan struct{} // downloads of /slow/ wait on it
	slow   chan struct{} // a download of /slow/ has begun
	lis    *bufconn.Listener
	extra  sync.Map // more files to serve: name -> []byte
}

// startWorker runs a worker against a fake coordinator; demo packages are
// served over HTTP at files.URL + "/" + name, and under /slow/ after block
// is closed.
func startWorker(t *testing.T, threads int, tweak func(*Config)) *env {
	return startWorkerWith(t, threads, &fakeCoord{}, tweak)
}

// startWorkerWith is startWorker against the given fake coordinator.
func startWorkerWith(t *testing.T, threads int, coord *fakeCoord, tweak func(*Config)) *env {
	t.Helper()
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	coord.sessions = make(chan *fakeSession, 4)
	e := &env{t: t, coord: coord, done: make(chan error, 1), block: make(chan struct{}), slow: make(chan struct{}, 10)}
	e.files = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if rest, ok := strings.CutPrefix(name, "slow/"); ok {
			name = rest
			e.slow <- struct{}{}
			select {
			case <-e.block:
			case <-r.Context().Done():
				return
			}
		}
		for _, f := range files {
			if f.Name == name {
				w.Write(f.Data)
				return
			}
		}
		if b, ok := e.extra.Load(name); ok {
			w.Write(b.([]byte))
			return
		}
		http.NotFound(w, r)
	}))
	e.lis = bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	fleetv1.RegisterFleetServiceServer(srv, e.coord)
	go srv.Serve(e.lis)
	cfg := Config{
		Target:   "passthrough:///coordinator",
		InMemory: true,
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.lis.DialContext(ctx) }),
		},
		WorkerID: "w1", Threads: threads, Grace: 10 * time.Second,
		Fetch:      fetch.Config{AllowedHosts: []string{e.files.URL}},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	// The demo file server stays allowed whatever the tweak allows besides.
	if !slices.Contains(cfg.Fetch.AllowedHosts, e.files.URL) {
		cfg.Fetch.AllowedHosts = append(cfg.Fetch.AllowedHosts, e.files.URL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-e.block:
		default:
			close(e.block)
		}
		<-e.done
		srv.Stop()
		e.files.Close()
	})
	return e
}

func (e *env) session() *fakeSession {
	e.t.Helper()
	select {
	case s := <-e.coord.sessions:
		s.t = e.t
		e.t.Cleanup(s.close)
		return s
	case <-time.After(20 * time.Second):
		e.t.Fatal("worker did not connect")
		return nil
	}
}

func (e *env) task(id uint64, name, hash string) *fleetv1.Task {
	return &fleetv1.Task{TaskId: id, Url: e.files.URL + "/" + name, RulesHash: hash, Job: &fleetv1.JobRef{Name: "n", Version: "v"}}
}

var demoHash = rules.ContentHash(demo.Rules())

func TestScansAssignedTasks(t *testing.T) {
	e := startWorker(t, 2, nil)
	s := e.session()
	if h := s.hello; h.GetWorkerId() != "w1" || h.GetSlots() != 2 || h.GetProtocolVersion() != fleetv1.ProtocolVersion_PROTOCOL_VERSION_1 {
		t.Fatalf("hello = %v", h)
	}
	s.welcome(demoHash, demo.Rules())
	s.assign(
		e.task(1, "reqeusts-2.31.0.tar.gz", demoHash),
		e.task(2, "tinycolors-1.2.0-py3-none-any.whl", demoHash),
		e.task(3, "missing-1.0.tar.gz", demoHash),
	)
	rs := s.results(3)
	d := rs[1].GetDistribution()
	if d == nil || d.GetScore() != 8 || d.GetTopFile() != "reqeusts-2.31.0/reqeusts/__init__.py" || d.GetTopFileScore() != 5 {
		t.Fatalf("reqeusts result = %v", rs[1])
	}
	if names := []string{d.GetRules()[0].GetName(), d.GetRules()[1].GetName()}; names[0] != "demo_exec_base64" || names[1] != "demo_setup_download" {
		t.Fatalf("rules = %v", d.GetRules())
	}
	if st := rs[1].GetStats(); st.GetFiles() != 3 || st.GetBytesDownloaded() == 0 || st.GetBytesExpanded() == 0 {
		t.Fatalf("stats = %v", st)
	}
	if c := rs[2].GetDistribution(); c == nil || c.GetScore() != 0 || c.GetTopFile() != "" {
		t.Fatalf("clean result = %v", rs[2])
	}
	f := rs[3].GetFailure()
	if f == nil || f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD || !strings.Contains(f.GetReason(), "missing-1.0.tar.gz") || !strings.Contains(f.GetReason(), "404") {
		t.Fatalf("missing result = %v", rs[3])
	}
}

func TestHostNotAllowedFails(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(&fleetv1.Task{TaskId: 7, Url: "https://evil.example/x-1.0.tar.gz", RulesHash: demoHash})
	f := s.results(1)[7].GetFailure()
	if f == nil || f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_HOST || !strings.Contains(f.GetReason(), "evil.example") {
		t.Fatalf("failure = %v", f)
	}
}

func TestEachTaskUsesItsOwnRules(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	other := map[string]string{"x": `rule everything { meta: weight = 1 condition: true }`}
	otherHash := rules.ContentHash(other)
	s.pushRules(otherHash, other)
	s.assign(e.task(1, "tinycolors-1.2.0.tar.gz", demoHash), e.task(2, "tinycolors-1.2.0.tar.gz", otherHash))
	rs := s.results(2)
	if got := rs[1].GetDistribution().GetScore(); got != 0 {
		t.Fatalf("demo rules scored %d, want 0", got)
	}
	if got := rs[2].GetDistribution().GetScore(); got != 1 {
		t.Fatalf("other rules scored %d, want 1", got)
	}
}

func TestStopDrains(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	slow := e.task(1, "slow/reqeusts-2.31.0.tar.gz", demoHash)
	s.assign(slow, e.task(2, "tinycolors-1.2.0.tar.gz", demoHash))
	// Stop the worker while task 1 downloads and task 2 waits for the slot.
	<-e.slow
	e.cancel()
	var draining, returned bool
	for !returned {
		m := s.next()
		if m == nil {
			t.Fatal("worker closed the stream before handing back the queued task")
		}
		switch {
		case m.GetDraining() != nil:
			draining = true
		case m.GetTaskReturn() != nil:
			if ids := m.GetTaskReturn().GetTaskIds(); len(ids) != 1 || ids[0] != 2 {
				t.Fatalf("handed back %v, want [2]", ids)
			}
			returned = true
		case m.GetResults() != nil:
			t.Fatalf("result before the slow download finished: %v", m)
		}
	}
	if !draining {
		t.Fatal("no Draining before the hand-back")
	}
	close(e.block)
	if r := s.results(1)[1]; r.GetDistribution().GetScore() != 8 {
		t.Fatalf("started task result = %v", r)
	}
	// The worker closes its side once done, and exits.
	if m := s.next(); m != nil {
		t.Fatalf("unexpected %v after the last result", m)
	}
	s.close()
	select {
	case err := <-e.done:
		e.done <- err
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not exit after draining")
	}
}

func TestCoordinatorDrainHandsBackQueued(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(e.task(1, "slow/tinycolors-1.2.0.tar.gz", demoHash), e.task(2, "tinycolors-1.2.0.tar.gz", demoHash))
	<-e.slow
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{}}})
	for {
		m := s.next()
		if tr := m.GetTaskReturn(); tr != nil {
			if ids := tr.GetTaskIds(); len(ids) != 1 || ids[0] != 2 {
				t.Fatalf("handed back %v", ids)
			}
			break
		}
	}
	// New tasks after the drain are handed back at once.
	s.assign(e.task(3, "tinycolors-1.2.0.tar.gz", demoHash))
	if tr := s.next().GetTaskReturn(); tr == nil || tr.GetTaskIds()[0] != 3 {
		t.Fatalf("task after drain not handed back: %v", tr)
	}
	close(e.block)
	if r := s.results(1)[1]; r.GetDistribution() == nil {
		t.Fatalf("result = %v", r)
	}
}

func TestReconnectsAfterTheStreamEnds(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.close() // coordinator ends the session (e.g. restart)
	s2 := e.session()
	if s2.hello.GetWorkerId() != "w1" {
		t.Fatalf("hello = %v", s2.hello)
	}
	s2.welcome(demoHash, demo.Rules())
	s2.assign(e.task(5, "reqeusts-2.31.0.tar.gz", demoHash))
	if r := s2.results(1)[5]; r.GetDistribution().GetScore() != 8 {
		t.Fatalf("result = %v", r)
	}
}
