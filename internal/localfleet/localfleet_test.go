package localfleet

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/fakeapi"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
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
