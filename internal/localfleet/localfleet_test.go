package localfleet

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/fakeapi"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// events records, in order, what the worker and the coordinator did.
type events struct {
	worker.Observer
	mu  sync.Mutex
	log []string
}

func (e *events) add(what string) {
	e.mu.Lock()
	e.log = append(e.log, what)
	e.mu.Unlock()
}

func (e *events) Connection(connected, _ bool) {
	if !connected {
		e.add("worker disconnected")
	}
}

// TestRunScansAndStopsInOrder: the worker reaches the coordinator in
// memory, without a token, and scans the demo releases; when the context
// ends the worker has left before the coordinator is told to stop.
func TestRunScansAndStopsInOrder(t *testing.T) {
	srv := testkit.HostileServer(t, testkit.DemoCases(t))
	one := 1
	api := fakeapi.New(mainframe.RuleSet{Hash: rules.ContentHash(demo.Rules()), Rules: demo.Rules()},
		mainframe.Job{Name: "reqeusts", Version: "2.31.0", Distributions: []string{srv.URL + "/reqeusts-2.31.0.tar.gz"}, Attempt: &one},
		mainframe.Job{Name: "tinycolors", Version: "1.2.0", Distributions: []string{srv.URL + "/tinycolors-1.2.0.tar.gz"}, Attempt: &one})
	c, err := coordinator.New(coordinator.Config{API: api, LoadDuration: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := coordinator.NewServer(c, coordinator.ServerConfig{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{Observer: worker.NopObserver()}
	serve := func(ctx context.Context, ln net.Listener) error {
		go func() { <-ctx.Done(); ev.add("coordinator stopping") }()
		return cs.Run(ctx, ln)
	}
	w := worker.Config{WorkerID: "w1", Threads: 2, Fetch: fetch.Config{AllowedHosts: []string{srv.URL}}, Observer: ev, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, w, serve) }()
	reports := api.WaitReports(t, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, r := range reports {
		if want := map[string]int64{"reqeusts": 8, "tinycolors": 0}[r.Name]; r.Success == nil || r.Success.Score != want {
			t.Errorf("%s: %+v, want score %d", r.Name, r, want)
		}
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.log) < 2 || ev.log[0] != "worker disconnected" || ev.log[len(ev.log)-1] != "coordinator stopping" {
		t.Errorf("events %q: want the worker gone before the coordinator stops", ev.log)
	}
}

// TestRunEndsWhenTheCoordinatorFails: a coordinator that cannot serve ends
// the run with its error; the worker is stopped, not left retrying.
func TestRunEndsWhenTheCoordinatorFails(t *testing.T) {
	broken := errors.New("metrics port taken")
	w := worker.Config{WorkerID: "w1", Threads: 1, Logger: slog.New(slog.DiscardHandler)}
	err := Run(t.Context(), w, func(context.Context, net.Listener) error { return broken })
	if !errors.Is(err, broken) {
		t.Fatalf("Run: %v, want %v", err, broken)
	}
}

// sessions counts the worker sessions a coordinator started.
type sessions struct {
	coordinator.Observer
	mu      sync.Mutex
	started int
	ended   []error
}

func (s *sessions) SessionStarted(coordinator.SessionInfo) {
	s.mu.Lock()
	s.started++
	s.mu.Unlock()
}

func (s *sessions) SessionEnded(_ coordinator.SessionInfo, err error) {
	s.mu.Lock()
	s.ended = append(s.ended, err)
	s.mu.Unlock()
}

// TestPoisonNameDoesNotBlindTheFleet: one crafted sdist with a member name of
// a million control characters (an unsafe path whose quoted form alone is
// over 4 MB) next to ordinary releases, and a rule set of 5 MB (over gRPC's
// default 4 MiB message): the worker reports the crafted release as a
// failure with a bounded reason, the session is never cut, and every release
// is reported exactly once. (Before: the result exceeded the coordinator's
// receive limit, the session died, the task was re-dispatched to die again,
// and nothing held by those sessions was ever reported.) The coordinator
// here requires a fleet token, as a production one does.
func TestPoisonNameDoesNotBlindTheFleet(t *testing.T) {
	poison := testkit.Gzip(t, testkit.Tar(t,
		testkit.TarEntry{Name: "poison-1.0/setup.py", Body: []byte("print('hi')\n")},
		testkit.TarEntry{Name: "../" + strings.Repeat("\x01", 1_000_000), Body: []byte("x")},
	))
	srv := testkit.HostileServer(t, append(testkit.DemoCases(t), testkit.HostileCase{Dist: "poison-1.0.tar.gz", Body: poison}))

	// A set at the protocol's bound: its message is over gRPC's default
	// 4 MiB limit.
	sources := map[string]string{}
	for k, v := range demo.Rules() {
		sources[k] = v
	}
	n := protocol.MaxRuleSetBytes - protocol.RuleSetBytes(sources) - len("zz_pad")
	line := "// padding: a rule set over gRPC's default 4 MiB message limit\n"
	sources["zz_pad"] = strings.Repeat(line, n/len(line)) + strings.Repeat(" ", n%len(line))
	one := 1
	api := fakeapi.New(mainframe.RuleSet{Hash: rules.ContentHash(sources), Rules: sources},
		mainframe.Job{Name: "poison", Version: "1.0", Distributions: []string{srv.URL + "/poison-1.0.tar.gz"}, Attempt: &one},
		mainframe.Job{Name: "reqeusts", Version: "2.31.0", Distributions: []string{srv.URL + "/reqeusts-2.31.0.tar.gz"}, Attempt: &one},
		mainframe.Job{Name: "tinycolors", Version: "1.2.0", Distributions: []string{srv.URL + "/tinycolors-1.2.0.tar.gz", srv.URL + "/tinycolors-1.2.0-py3-none-any.whl"}, Attempt: &one})

	obs := &sessions{Observer: coordinator.NopObserver()}
	// Heartbeats every 2 s: with 200 ms ones a loaded machine (this suite
	// beside other race-enabled tests) once cut the session for missed
	// heartbeats. What the test guards against, a message over the limit,
	// ends the session at once whatever the interval.
	c, err := coordinator.New(coordinator.Config{
		API: api, LoadDuration: 20 * time.Millisecond, HeartbeatInterval: 2 * time.Second,
		DrainTimeout: 5 * time.Second, FlushTimeout: 5 * time.Second, Prefetch: coordinator.DefaultPrefetch,
		Logger: slog.New(slog.DiscardHandler), Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	const token = "fleet-token-0123456789"
	cs, err := coordinator.NewServer(c, coordinator.ServerConfig{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	w := worker.Config{WorkerID: "w1", Token: token, Threads: 2, Fetch: fetch.Config{AllowedHosts: []string{srv.URL}}, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, w, cs.Run) }()
	defer func() { // after the checks: the session must hold while the fleet runs
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	reports := api.WaitReports(t, 3)
	byName := testkit.ByKey(t, reports, func(r mainframe.Report) string { return r.Name })
	p := byName["poison"]
	if p.Success != nil || !strings.HasPrefix(p.Reason, "distribution poison-1.0.tar.gz: ") || !strings.Contains(p.Reason, "unsafe path") {
		t.Fatalf("poison report %+v, want a failure naming the unsafe path", p)
	}
	if len(p.Reason) > protocol.MaxTextBytes {
		t.Fatalf("poison reason of %d bytes, over %d", len(p.Reason), protocol.MaxTextBytes)
	}
	if r := byName["reqeusts"]; r.Success == nil || r.Success.Score != 8 {
		t.Fatalf("reqeusts %+v, want score 8", r)
	}
	if r := byName["tinycolors"]; r.Success == nil || r.Success.Score != 0 {
		t.Fatalf("tinycolors %+v, want clean", r)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.started != 1 || len(obs.ended) != 0 {
		t.Fatalf("%d sessions started, %d ended (%v): the session must never be cut", obs.started, len(obs.ended), obs.ended)
	}
}
