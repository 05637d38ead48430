package fleettest

import (
	"context"
	"github.com/dragonfly-fleet/fleet/internal/fakeapi"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
// and nothing held by those sessions was ever reported.)
func TestPoisonNameDoesNotBlindTheFleet(t *testing.T) {
	poison := testkit.Gzip(t, testkit.Tar(t,
		testkit.TarEntry{Name: "poison-1.0/setup.py", Body: []byte("print('hi')\n")},
		testkit.TarEntry{Name: "../" + strings.Repeat("\x01", 1_000_000), Body: []byte("x")},
	))
	srv := testkit.HostileServer(t, append(testkit.DemoCases(t), testkit.HostileCase{Dist: "poison-1.0.tar.gz", Body: poison}))

	pad := strings.Repeat("// padding: a rule set over gRPC's default 4 MiB message limit\n", 5<<20/64)
	sources := map[string]string{"zz_pad": pad}
	for k, v := range demo.Rules() {
		sources[k] = v
	}
	one := 1
	api := fakeapi.New(mainframe.RuleSet{Hash: rules.ContentHash(sources), Rules: sources},
		mainframe.Job{Name: "poison", Version: "1.0", Distributions: []string{srv.URL + "/poison-1.0.tar.gz"}, Attempt: &one},
		mainframe.Job{Name: "reqeusts", Version: "2.31.0", Distributions: []string{srv.URL + "/reqeusts-2.31.0.tar.gz"}, Attempt: &one},
		mainframe.Job{Name: "tinycolors", Version: "1.2.0", Distributions: []string{srv.URL + "/tinycolors-1.2.0.tar.gz", srv.URL + "/tinycolors-1.2.0-py3-none-any.whl"}, Attempt: &one})

	obs := &sessions{Observer: coordinator.NopObserver()}
	c, err := coordinator.New(coordinator.Config{
		API: api, LoadDuration: 20 * time.Millisecond, HeartbeatInterval: 200 * time.Millisecond,
		DrainTimeout: 5 * time.Second, FlushTimeout: 5 * time.Second, Prefetch: coordinator.DefaultPrefetch,
		Logger: slog.New(slog.DiscardHandler), Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := coordinator.NewServer(c, coordinator.ServerConfig{Token: "fleet-token-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	coordDone := make(chan error, 1)
	go func() { coordDone <- s.Run(ctx, lis) }()

	wctx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- worker.Run(wctx, worker.Config{
			Target: "passthrough:///coordinator", InMemory: true, Token: "fleet-token-0123456789",
			DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })},
			WorkerID:    "w1", Threads: 2, Fetch: fetch.Config{AllowedHosts: []string{srv.URL}},
			Logger: slog.New(slog.DiscardHandler),
		})
	}()
	defer func() {
		stopWorker()
		if err := <-workerDone; err != nil {
			t.Errorf("worker: %v", err)
		}
		cancel()
		if err := <-coordDone; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	}()

	reports := api.WaitReports(t, 3)
	byName := map[string]mainframe.Report{}
	for _, r := range reports {
		if _, dup := byName[r.Name]; dup {
			t.Fatalf("%s reported twice", r.Name)
		}
		byName[r.Name] = r
	}
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
