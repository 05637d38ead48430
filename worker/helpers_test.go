package worker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
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
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The worker tests' fixtures: a fake coordinator over gRPC (bufconn) for
// sessions on the real clock (startWorker), a stream made of channels for
// sessions inside a synctest bubble (chanClient, testWorker, startLoop), an
// in-memory file server (memFiles) and a scan engine (testEngine).

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
	m, _ := testkit.NextNonHeartbeat(s.t, s.in, 20*time.Second)
	return m
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

// busySession starts a one-thread worker with the demo rules ready and its
// one slot held: task 1 runs (its download is blocked) until the test
// closes e.block.
func busySession(t *testing.T) (*env, *fakeSession) {
	t.Helper()
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(e.task(1, "slow/tinycolors-1.2.0.tar.gz", demoHash))
	<-e.slow
	return e, s
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

// chanStream is the worker's side of a session, made of channels (In:
// coordinator -> worker, Out: worker -> coordinator, Fail: the stream
// breaks), and when the worker connected.
type chanStream struct {
	testkit.ChanStream[*fleetv1.ConnectResponse, *fleetv1.ConnectRequest]
	when time.Time
}

// chanClient hands each Connect's stream to the test; refuse, when set,
// fails the Connect instead.
type chanClient struct {
	streams chan *chanStream
	refuse  func() error
	tries   chan time.Time
}

func (c *chanClient) Connect(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[fleetv1.ConnectRequest, fleetv1.ConnectResponse], error) {
	c.tries <- time.Now()
	if c.refuse != nil {
		if err := c.refuse(); err != nil {
			return nil, err
		}
	}
	s := &chanStream{ChanStream: testkit.ChanStream[*fleetv1.ConnectResponse, *fleetv1.ConnectRequest]{
		StreamStub: testkit.StreamStub{Ctx: ctx}, Fail: make(chan error, 1), In: make(chan *fleetv1.ConnectResponse, 16), Out: make(chan *fleetv1.ConnectRequest, 1024),
	}, when: time.Now()}
	c.streams <- s
	return s, nil
}

// newChanClient is a chanClient with room for the connects of a test.
func newChanClient() *chanClient {
	return &chanClient{streams: make(chan *chanStream, 4), tries: make(chan time.Time, 64)}
}

// testWorker is the worker of cfg, made by the production constructor,
// that connects through client and scans with engine (nil when the test
// scans nothing). Unset, Target is "test", WorkerID "w", Host "h" and
// Threads 1.
func testWorker(t testing.TB, client fleetv1.FleetServiceClient, cfg Config, engine *scan.Engine) *Worker {
	t.Helper()
	cfg.Target, cfg.WorkerID, cfg.Host = cmp.Or(cfg.Target, "test"), cmp.Or(cfg.WorkerID, "w"), cmp.Or(cfg.Host, "h")
	cfg.Threads = max(cfg.Threads, 1)
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWorker(cfg, client, engine)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// startLoop runs w's loop until stop, which returns the loop's error.
func startLoop(w *Worker) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.loop(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// welcomeEvery sends Welcome with heartbeat interval d on s.
func welcomeEvery(s *chanStream, d time.Duration) {
	s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{HeartbeatInterval: durationpb.New(d)}}}
}

// nextMsg is the worker's next message that is not a heartbeat.
func nextMsg(t *testing.T, s *chanStream) *fleetv1.ConnectRequest {
	t.Helper()
	for {
		m := <-s.Out
		if m.GetHeartbeat() == nil {
			return m
		}
	}
}

// memFiles serves distributions from memory (host files.example in the
// tests' fetch settings), inside a synctest bubble too: the demo packages
// by name; /404, /500 and /html (an error page); /slow/NAME, NAME after
// slowFor; /stall and /stall/NAME, a zip's first bytes and then nothing
// until the request ends (the end is recorded); any other name, a refused
// connection. It counts the downloads in flight (peak: the most at once).
type memFiles struct {
	files   map[string][]byte
	slowFor time.Duration

	mu       sync.Mutex
	inFlight int
	peak     int
	ended    []string // stalled downloads whose request ended
}

func newMemFiles(t testing.TB, slowFor time.Duration) *memFiles {
	t.Helper()
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	f := &memFiles{files: map[string][]byte{}, slowFor: slowFor}
	for _, d := range files {
		f.files[d.Name] = d.Data
	}
	return f
}

func (f *memFiles) RoundTrip(r *http.Request) (*http.Response, error) {
	// A download is in flight from the request until its body is closed.
	f.mu.Lock()
	f.inFlight++
	f.peak = max(f.peak, f.inFlight)
	f.mu.Unlock()
	done := sync.OnceFunc(func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	})
	name := strings.TrimPrefix(r.URL.Path, "/")
	if rest, ok := strings.CutPrefix(name, "slow/"); ok {
		select {
		case <-time.After(f.slowFor):
		case <-r.Context().Done():
			done()
			return nil, r.Context().Err()
		}
		name = rest
	}
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, ContentLength: -1}
	var body io.Reader
	switch {
	case name == "404":
		resp.StatusCode = http.StatusNotFound
		body = strings.NewReader("not found")
	case name == "500":
		resp.StatusCode = http.StatusInternalServerError
		body = strings.NewReader("oops")
	case name == "html":
		resp.Header.Set("Content-Type", "text/html")
		body = strings.NewReader("<html><body>Service Unavailable</body></html>")
	case name == "stall" || strings.HasPrefix(name, "stall/"):
		body = io.MultiReader(strings.NewReader("PK\x03\x04"), stalled{r: r, f: f})
	case f.files[name] != nil:
		body = bytes.NewReader(f.files[name])
		resp.ContentLength = int64(len(f.files[name]))
	default:
		done()
		return nil, errors.New("test files: connection refused")
	}
	resp.Body = memBody{Reader: body, done: done}
	return resp, nil
}

// endedDownloads are the paths of the stalled downloads whose request ended.
func (f *memFiles) endedDownloads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ended)
}

// memBody calls done when closed.
type memBody struct {
	io.Reader
	done func()
}

func (b memBody) Close() error { b.done(); return nil }

// stalled reads nothing until its request ends, which it records.
type stalled struct {
	r *http.Request
	f *memFiles
}

func (s stalled) Read([]byte) (int, error) {
	<-s.r.Context().Done()
	s.f.mu.Lock()
	s.f.ended = append(s.f.ended, s.r.URL.Path)
	s.f.mu.Unlock()
	return 0, s.r.Context().Err()
}

// testEngine is a scan engine of threads threads, closed when t ends.
func testEngine(t testing.TB, threads int) *scan.Engine {
	e := scan.New(scan.Config{Threads: threads, Limits: limit.Limits{ScanTimeout: 10 * time.Second}})
	t.Cleanup(e.Close)
	return e
}
