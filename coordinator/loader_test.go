package coordinator

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// sameJobAPI answers the first lease with one job and holds every later
// lease until its context ends, counting them: a second lease before the
// loader's pause is one it made at once.
type sameJobAPI struct {
	*fakeAPI
	job mainframe.Job

	mu     sync.Mutex
	leases int
}

func (a *sameJobAPI) Lease(ctx context.Context, n int) ([]mainframe.Job, error) {
	a.mu.Lock()
	a.leases++
	k := a.leases
	a.mu.Unlock()
	if k > 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return []mainframe.Job{a.job}, nil
}

func (a *sameJobAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leases
}

// TestLeaseOfNoNewJobPauses, on synctest's clock: an answer whose every job
// is one the coordinator already has (its report waits in the outbox, or it
// is being scanned) adds no work, and the loader pauses LoadDuration as
// after an empty answer. It leased again at once: an API answering every
// lease with such a job (hostile, or broken) spun the loop at full speed,
// each turn a log line and an outbox write.
func TestLeaseOfNoNewJobPauses(t *testing.T) {
	for _, where := range []string{"report waiting", "job in flight"} {
		t.Run(where, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				x := job("x", "u1")
				api := &sameJobAPI{fakeAPI: newFakeAPI(), job: x}
				c, err := New(Config{API: api, Prefetch: DefaultPrefetch, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				defer c.out.Close()
				if err := c.rules.update(context.Background()); err != nil {
					t.Fatal(err)
				}
				switch where {
				case "report waiting":
					if err := c.out.Put(outbox.Entry{Report: mainframe.Report{Name: x.Name, Version: x.Version, Reason: "failed"}, LeasedAt: time.Now()}); err != nil {
						t.Fatal(err)
					}
				case "job in flight":
					c.disp.Admit([]dispatch.Job{{Name: x.Name, Version: x.Version, Distributions: x.Distributions, RulesHash: "h1", LeasedAt: time.Now()}}, time.Now())
				}
				// A ready worker with free credits, so the loader leases.
				sctx, stopSession := context.WithCancel(context.Background())
				s := &chanServerStream{StreamStub: testkit.StreamStub{Ctx: sctx}, In: make(chan *fleetv1.ConnectRequest, 16), Out: make(chan *fleetv1.ConnectResponse, 64)}
				sessionDone := make(chan error, 1)
				go func() { sessionDone <- c.Connect(s) }()
				s.In <- hello("w", 2)
				s.In <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1"}}}
				synctest.Wait()
				if n := c.disp.Capacity("h1"); n < 1 {
					t.Fatalf("capacity %d, want free credits", n)
				}

				ctx, cancel := context.WithCancel(context.Background())
				loaded := make(chan error, 1)
				go func() { loaded <- c.loadLoop(ctx) }()
				synctest.Wait()
				if n := api.count(); n != 1 {
					t.Errorf("%d leases at once, want 1 and a pause of LoadDuration", n)
				}
				cancel()
				<-loaded
				stopSession()
				<-sessionDone
				c.WaitSessions()
			})
		})
	}
}

// refusingLeases is the API's transport for POST /jobs: 503 with
// Retry-After: 30 the first refusals times, then body once, then [].
type refusingLeases struct {
	refusals int
	body     string

	mu sync.Mutex
	n  int
}

func (l *refusingLeases) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("[]")), Request: r}
	switch {
	case n <= l.refusals:
		resp.StatusCode = http.StatusServiceUnavailable
		resp.Header.Set("Retry-After", "30")
		resp.Body = io.NopCloser(strings.NewReader(`{"detail":"busy"}`))
	case n == l.refusals+1:
		resp.Body = io.NopCloser(strings.NewReader(l.body))
	}
	return resp, nil
}

// clientLeases leases through a real API client (its retries and their
// Retry-After); the rest is the fake API.
type clientLeases struct {
	*fakeAPI
	client *mainframe.Client
}

func (a *clientLeases) Lease(ctx context.Context, n int) ([]mainframe.Job, error) {
	return a.client.Lease(ctx, n)
}

// TestLeaseRetriedForMinutesKeepsItsWholeLease, on synctest's clock: a
// lease the API refuses four times with 503 and Retry-After: 30 (as an
// overloaded API or a gateway in front of it answers) leases its jobs two
// minutes after the call began, and they get their whole lease from then.
// The lease was dated from the call's start: the job arrived past its
// lease, and its second distribution, waiting for the one slot, was
// dropped at the next tick, unreported (the API leases it again at the
// cost of one of its three attempts; its spot checks, had there been any,
// were given up, and every copy was overdue at once).
func TestLeaseRetriedForMinutesKeepsItsWholeLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &refusingLeases{refusals: 4, body: `[{"name":"p","version":"1.0","distributions":["u1","u2"],"hash":"h1","attempt":1,"assignment_id":"as-p"}]`}
		client, err := mainframe.New(mainframe.Config{BaseURL: "http://api.test", Transport: tr, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		api := &clientLeases{fakeAPI: newFakeAPI(), client: client}
		// The worker does not heartbeat: not dropped for it.
		c, err := New(Config{API: api, HeartbeatMisses: 1000, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.out.Close()
		// One worker, one slot, 2 s a scan.
		sctx, stopSession := context.WithCancel(context.Background())
		s := &chanServerStream{StreamStub: testkit.StreamStub{Ctx: sctx}, In: make(chan *fleetv1.ConnectRequest, 16), Out: make(chan *fleetv1.ConnectResponse, 64)}
		sessionDone := make(chan error, 1)
		go func() { sessionDone <- c.Connect(s) }()
		s.In <- hello("w", 1)
		go func() {
			for {
				var m *fleetv1.ConnectResponse
				select {
				case m = <-s.Out:
				case <-sctx.Done():
					return
				}
				if rs := m.GetRuleSet(); rs != nil {
					s.In <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: rs.GetHash()}}}
				}
				for _, tk := range m.GetAssign().GetTasks() {
					time.Sleep(2 * time.Second)
					select {
					case s.In <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: []*fleetv1.TaskResult{result(tk, "")}}}}:
					case <-sctx.Done():
						return
					}
				}
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		time.Sleep(3 * time.Minute)
		got := api.Reports()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		stopSession()
		<-sessionDone
		c.WaitSessions()
		if len(got) != 1 || got[0].Name != "p" || got[0].Success == nil {
			t.Fatalf("reports %+v 3 min after the lease call began (the job leased at 2 min, scanned in 4 s), want p's", got)
		}
		if s := c.disp.Snapshot(); s.Counters.JobsDropped != 0 {
			t.Errorf("%d jobs dropped", s.Counters.JobsDropped)
		}
	})
}

// TestWorkerJoiningWakesTheLoader, on synctest's clock: the loader waits
// for capacity while no worker is connected (the state every coordinator
// starts in); a worker then joins and cannot compile the rules in use.
// Leasing stays paused (no worker is ready for them), and GET /rules is
// fetched again every RulesRetry, so the set the API fixed meanwhile is
// found and offered. Join did not wake the loader (nor did the worker's
// failed compile): it slept on, the fixed set was never fetched and the
// fleet leased nothing until some session happened to end.
func TestWorkerJoiningWakesTheLoader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(job("p", "u1"))
		const retry = 30 * time.Second
		// Not cut for silence within the test: a session ending wakes
		// the loader too, which must not be what does it.
		c, err := New(Config{API: api, RulesRetry: retry, HeartbeatInterval: 5 * time.Second, HeartbeatMisses: 1000,
			Prefetch: DefaultPrefetch, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.out.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ran := make(chan error, 1)
		go func() { ran <- c.Run(ctx) }()
		synctest.Wait() // h1 loaded; the loader waits: no worker
		if h := c.rules.current().Hash; h != "h1" {
			t.Fatalf("rules %q, want h1 loaded", h)
		}
		fetched := api.RulesFetches()

		sctx, stopSession := context.WithCancel(context.Background())
		defer stopSession()
		s := &chanServerStream{StreamStub: testkit.StreamStub{Ctx: sctx}, In: make(chan *fleetv1.ConnectRequest, 16), Out: make(chan *fleetv1.ConnectResponse, 64)}
		offered := make(chan string, 16)
		go func() {
			for {
				select {
				case m := <-s.Out:
					if rs := m.GetRuleSet(); rs != nil {
						offered <- rs.GetHash()
					}
				case <-sctx.Done():
					return
				}
			}
		}()
		sessionDone := make(chan error, 1)
		go func() { sessionDone <- c.Connect(s) }()
		s.In <- hello("w", 2)
		if h := <-offered; h != "h1" {
			t.Fatalf("offered %q, want h1", h)
		}
		s.In <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1", Error: "a.yara:1: cannot compile here"}}}
		synctest.Wait()
		api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": testRules}}, nil)

		time.Sleep(3 * retry)
		synctest.Wait()
		if n := api.RulesFetches() - fetched; n == 0 {
			t.Fatalf("no GET /rules in %s while the only worker could not compile the rules in use (RulesRetry %s): the loader was not woken by the worker joining", 3*retry, retry)
		}
		select {
		case h := <-offered:
			if h != "h2" {
				t.Fatalf("offered %q, want the fixed set h2", h)
			}
		default:
			t.Fatal("the fixed set h2 was not offered to the worker")
		}
		if n := len(api.Leases()); n != 0 {
			t.Fatalf("%d leases while no worker held the rules in use, want none", n)
		}

		cancel()
		if err := <-ran; err != nil {
			t.Fatalf("Run: %v", err)
		}
		stopSession()
		<-sessionDone
		c.WaitSessions()
	})
}
