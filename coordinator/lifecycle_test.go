package coordinator

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
)

// TestShutdownCutsStreamsHeldOpenAfterTheDrain, on synctest's clock: once
// the drain is over (here at once: the one job was reported) and the
// reports are flushed, a worker that keeps its stream open (heartbeating,
// never closing its side: one still scanning a copy nobody waits for, or
// a hostile one) holds the shutdown for stopGrace, not for the drain
// timeout again. Before: Run waited DrainTimeout + 5 s more for it (10 min
// here; with the defaults 30 + 15 + 35 s in all, past the stop grace
// periods the deployments give: the process was killed).
func TestShutdownCutsStreamsHeldOpenAfterTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(job("p", "u1"))
		c, err := New(Config{API: api, LoadDuration: 20 * time.Millisecond, HeartbeatInterval: time.Second,
			DrainTimeout: 10 * time.Minute, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := NewServer(c, ServerConfig{Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		lis := bufconn.Listen(1 << 20)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx, lis) }()

		conn := testkit.DialBuf(t, lis)
		defer conn.Close()
		wctx, stopWorker := context.WithCancel(context.Background())
		defer stopWorker()
		stream, err := fleetv1.NewFleetServiceClient(conn).Connect(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(hello("w", 1)); err != nil {
			t.Fatal(err)
		}
		for answered := false; !answered; {
			m, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			var reply *fleetv1.ConnectRequest
			switch {
			case m.GetRuleSet() != nil:
				reply = &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: m.GetRuleSet().GetHash()}}}
			case m.GetAssign() != nil:
				reply = &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{
					Results: []*fleetv1.TaskResult{result(m.GetAssign().GetTasks()[0], "")}}}}
				answered = true
			default:
				continue
			}
			if err := stream.Send(reply); err != nil {
				t.Fatal(err)
			}
		}
		api.WaitReports(t, 1)
		// From now on the worker reads and heartbeats, and never closes.
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		}()
		go heartbeat(wctx, time.Second, nil, stream.Send)

		start := time.Now()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if took := time.Since(start); took > stopGrace {
			t.Errorf("shutdown with nothing in flight took %v: it waited for a stream held open past the drain", took)
		}
		if r := api.Reports(); len(r) != 1 || r[0].Success == nil {
			t.Errorf("reports %+v, want the one job's", r)
		}
	})
}

// TestWorkerConnectingDuringTheDrainIsRefused: a session that begins while
// the coordinator drains could get no task, so it is refused at once with
// Unavailable (retry later: the next coordinator), before Welcome and the
// rule set. Before: it was welcomed, sent the whole rule set (up to 32
// MiB) and told to drain, and a worker that drained so reconnected and
// compiled the rules again, time after time, until the coordinator was
// gone (it read as ready meanwhile). The gRPC health service says
// NOT_SERVING from the drain on, as /readyz does.
func TestWorkerConnectingDuringTheDrainIsRefused(t *testing.T) {
	api := newFakeAPI(job("p", "u1"))
	f := startFleet(t, api, func(c *Config) { c.DrainTimeout = 10 * time.Minute })
	a := f.worker("a", 1)
	a.ready()
	ts := a.tasks(1)
	stopped := make(chan struct{})
	go func() {
		f.stop()
		close(stopped)
	}()
	for m := a.next(); m.GetDrain() == nil; m = a.next() {
	}

	b := f.worker("b", 1)
	for m := range b.in {
		if m.GetHeartbeat() == nil {
			// Unblock the stop before failing.
			a.answer(result(ts[0], ""))
			a.closeSend()
			<-stopped
			t.Fatalf("a session begun during the drain got %v", m)
		}
	}
	wantEnded(t, b.recv, codes.Unavailable, "shutting down", "a session begun during the drain")
	// The health service says so too (it said SERVING through the drain).
	health := healthpb.NewHealthClient(f.dial())
	for _, svc := range []string{"", fleetv1.FleetService_ServiceDesc.ServiceName} {
		resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			a.answer(result(ts[0], ""))
			a.closeSend()
			<-stopped
			t.Fatalf("health of %q during the drain: %v, %v; want NOT_SERVING", svc, resp.GetStatus(), err)
		}
	}

	a.answer(result(ts[0], ""))
	a.closeSend()
	<-stopped
	if r := api.Reports(); len(r) != 1 {
		t.Fatalf("reports %+v, want the one job's", r)
	}
}

// failOnce is the fake API failing the first report it is sent with 503.
type failOnce struct {
	*fakeAPI
	failed atomic.Bool
}

func (f *failOnce) Report(ctx context.Context, r mainframe.Report) error {
	if f.failed.CompareAndSwap(false, true) {
		return &mainframe.APIError{Endpoint: "PUT /package", Status: 503}
	}
	return f.fakeAPI.Report(ctx, r)
}

// withOneReport returns a coordinator of cfg (a load duration of 1 s, no
// logs) whose outbox holds one report, p 1.0, leased and enqueued now
// (returned), not run yet.
func withOneReport(t *testing.T, cfg Config) (*Coordinator, time.Time) {
	t.Helper()
	cfg.LoadDuration, cfg.Logger = time.Second, slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r := mainframe.Report{Name: "p", Version: "1.0", Success: &mainframe.Success{Score: 3, RulesMatched: []string{"r1"}, Commit: "h1"}}
	if err := c.out.Put(outbox.Entry{Report: r, LeasedAt: now, Enqueued: now}); err != nil {
		t.Fatal(err)
	}
	return c, now
}

// TestFlushTriesReportsWaitingForARetry, on synctest's clock: at shutdown,
// a report whose retry falls after the flush (FlushTimeout; the API failed
// it just before) is tried at once and delivered, and one that fails
// during the flush is tried again within it, whatever its backoff had
// grown to. Before, the flush waited the whole FlushTimeout for a try that
// came after it: an outbox in memory lost the report (its job leased
// again, at the cost of an attempt).
func TestFlushTriesReportsWaitingForARetry(t *testing.T) {
	// Every drawn backoff is its ceiling (30 s here): deterministic.
	saved := reportRetry
	reportRetry.Rand = func(ceil time.Duration) time.Duration { return ceil }
	t.Cleanup(func() { reportRetry = saved })
	for _, tc := range []struct {
		name      string
		failFirst bool // the API fails the flush's first try
	}{
		{"waiting past the flush", false},
		{"failing during the flush", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fake := newFakeAPI()
				api := &failOnce{fakeAPI: fake}
				api.failed.Store(!tc.failFirst)
				c, now := withOneReport(t, Config{API: api, FlushTimeout: 15 * time.Second})
				// A report that failed five times: its next try is 30 s away.
				for range 5 {
					e, ok := c.out.Next(now.Add(time.Hour))
					if !ok {
						t.Fatal("the report is not due")
					}
					if err := c.out.Retry(e, now.Add(reportRetry.Delay(e.Tries+1, 0))); err != nil {
						t.Fatal(err)
					}
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- c.Run(ctx) }()
				synctest.Wait()
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run: %v", err)
				}
				if got := fake.Reports(); len(got) != 1 || got[0].Name != "p" {
					t.Fatalf("reports %+v, want p's, delivered during the flush", got)
				}
				if took := time.Since(now); took >= 15*time.Second {
					t.Errorf("shutdown took %v: the flush waited for its whole timeout", took)
				}
			})
		})
	}
}

// retryAfterOnce is the fake API answering the first report with 503 and
// the given Retry-After, and recording when each report was tried.
type retryAfterOnce struct {
	*fakeAPI
	after time.Duration
	mu    sync.Mutex
	tries []time.Time
}

func (f *retryAfterOnce) Report(ctx context.Context, r mainframe.Report) error {
	f.mu.Lock()
	f.tries = append(f.tries, time.Now())
	first := len(f.tries) == 1
	f.mu.Unlock()
	if first {
		return &mainframe.APIError{Endpoint: "PUT /package", Status: 503, RetryAfter: f.after}
	}
	return f.fakeAPI.Report(ctx, r)
}

// TestReportRetryWaitsTheAPIsRetryAfter, on synctest's clock: a report the
// API refused with a Retry-After (one the client's own tries did not
// outlast) is tried again no sooner than that, within the sender's cap;
// without one the drawn backoff applies (pinned to 0 here, so the contrast
// shows the header's effect). Before, the sender drew its own backoff and
// ignored the header.
func TestReportRetryWaitsTheAPIsRetryAfter(t *testing.T) {
	saved := reportRetry
	reportRetry.Rand = func(time.Duration) time.Duration { return 0 }
	t.Cleanup(func() { reportRetry = saved })
	for _, tc := range []struct {
		after, want time.Duration
	}{
		{0, 0},
		{20 * time.Second, 20 * time.Second},
		{time.Hour, reportRetry.Max}, // capped
	} {
		t.Run(tc.after.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fake := newFakeAPI()
				api := &retryAfterOnce{fakeAPI: fake, after: tc.after}
				c, _ := withOneReport(t, Config{API: api})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- c.Run(ctx) }()
				for len(fake.Reports()) == 0 {
					time.Sleep(time.Second)
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run: %v", err)
				}
				api.mu.Lock()
				defer api.mu.Unlock()
				if len(api.tries) != 2 {
					t.Fatalf("%d tries, want 2", len(api.tries))
				}
				if gap := api.tries[1].Sub(api.tries[0]); gap != tc.want {
					t.Errorf("retried after %v, want %v", gap, tc.want)
				}
			})
		})
	}
}

// TestHealthSaysNotServingBeforeTheDrainRefusesSessions: from the moment
// a connecting worker is refused for the drain (isDraining), the health
// service of every server on the coordinator says NOT_SERVING, not a
// moment later: here a hook that runs as the drain begins (another
// server's, registered before this one's) looks at both. Before: the
// drain was visible first and the hooks ran after, so a worker refused
// then and asking health at once read SERVING (the flake of
// TestWorkerConnectingDuringTheDrainIsRefused, narrowed, not closed).
func TestHealthSaysNotServingBeforeTheDrainRefusesSessions(t *testing.T) {
	c, err := New(Config{API: newFakeAPI(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var srv *Server
	var refusing bool
	var status healthpb.HealthCheckResponse_ServingStatus
	c.onDrain(func() {
		refusing = c.isDraining()
		resp, err := srv.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Errorf("health check: %v", err)
		}
		status = resp.GetStatus()
	})
	srv, err = NewServer(c, ServerConfig{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	c.beginDrain()
	if refusing && status == healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("sessions were refused for the drain while health said %v", status)
	}
	resp, err := srv.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if !c.isDraining() || err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after beginDrain: draining %v, health %v, %v; want true, NOT_SERVING", c.isDraining(), resp.GetStatus(), err)
	}
	// A server built once the drain has begun says NOT_SERVING at once.
	late, err := NewServer(c, ServerConfig{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := late.health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("a server built during the drain: health %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
}
