package worker

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
)

// TestRunLeavesNoDownloadConnections: once Run has returned, nothing of
// its downloads is left. Its keep-alive connections to the download hosts
// stayed open, each with its transport's two goroutines (and the host's
// end of it), until the idle timeout (90 s) or the host closed them: a
// program that runs a worker and goes on (dragonfly local, a test, an
// embedding) kept them past Run.
func TestRunLeavesNoDownloadConnections(t *testing.T) {
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	var whl []byte
	for _, f := range files {
		if f.Name == "tinycolors-1.2.0-py3-none-any.whl" {
			whl = f.Data
		}
	}
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(whl) }))
	defer host.Close()
	coord := &fakeCoord{sessions: make(chan *fakeSession, 4)}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	fleetv1.RegisterFleetServiceServer(srv, coord)
	go srv.Serve(lis)
	defer srv.Stop()

	ignore := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Target: "passthrough:///coordinator", InMemory: true,
			DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })},
			WorkerID:    "w1", Threads: 1, Fetch: fetch.Config{AllowedHosts: []string{host.URL}},
			Logger: slog.New(slog.DiscardHandler),
		})
	}()
	var s *fakeSession
	select {
	case s = <-coord.sessions:
		s.t = t
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not connect")
	}
	s.welcome(demoHash, demo.Rules())
	s.assign(&fleetv1.Task{TaskId: 1, Url: host.URL + "/tinycolors-1.2.0-py3-none-any.whl", RulesHash: demoHash, Job: &fleetv1.JobRef{Name: "n", Version: "v"}})
	if r := s.results(1)[1]; r.GetDistribution() == nil {
		t.Fatalf("result %v, want a distribution", r)
	}
	cancel()
	for s.next() != nil { // Draining, then the worker closes its side
	}
	s.close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20 s after the coordinator closed the stream")
	}
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("goroutines left after Run returned: %v", err)
	}
}
