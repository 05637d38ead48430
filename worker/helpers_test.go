package worker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

// chanStream is a client stream made of channels, so a worker session runs
// inside a synctest bubble (gRPC's transport does not block durably there).
type chanStream struct {
	ctx  context.Context
	fail chan error                    // Recv returns what it receives here
	in   chan *fleetv1.ConnectResponse // coordinator -> worker
	out  chan *fleetv1.ConnectRequest  // worker -> coordinator
	when time.Time                     // when the worker connected
}

func (s *chanStream) Recv() (*fleetv1.ConnectResponse, error) {
	select {
	case m := <-s.in:
		return m, nil
	case err := <-s.fail:
		return nil, err
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

func (s *chanStream) Send(m *fleetv1.ConnectRequest) error {
	select {
	case s.out <- m:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *chanStream) CloseSend() error             { return nil }
func (s *chanStream) Header() (metadata.MD, error) { return nil, nil }
func (s *chanStream) Trailer() metadata.MD         { return nil }
func (s *chanStream) Context() context.Context     { return s.ctx }
func (s *chanStream) SendMsg(any) error            { return errors.New("not used") }
func (s *chanStream) RecvMsg(any) error            { return errors.New("not used") }

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
	s := &chanStream{ctx: ctx, fail: make(chan error, 1), in: make(chan *fleetv1.ConnectResponse, 16), out: make(chan *fleetv1.ConnectRequest, 1024), when: time.Now()}
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
	s.in <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{HeartbeatInterval: durationpb.New(d)}}}
}

// nextMsg is the worker's next message that is not a heartbeat.
func nextMsg(t *testing.T, s *chanStream) *fleetv1.ConnectRequest {
	t.Helper()
	for {
		m := <-s.out
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
