package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/fakeapi"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"go.uber.org/goleak"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testRule = `rule evil_setup { meta: weight = 7 strings: $a = "evil" condition: $a }`

// fakeAPI is the shared in-memory Dragonfly API.
type fakeAPI = fakeapi.API

// newFakeAPI serves testRule.
func newFakeAPI() *fakeAPI {
	return fakeapi.New(mainframe.RuleSet{Hash: "0123456789abcdef0123", Rules: map[string]string{"setup": testRule}})
}

func intp(i int) *int       { return &i }
func strp(s string) *string { return &s }

func testJob(name string, dists ...string) mainframe.Job {
	return mainframe.Job{Name: name, Version: "1.0", Distributions: dists, Hash: "0123456789abcdef0123",
		Attempt: intp(1), AssignmentID: strp("as-" + name)}
}

// eventObserver forwards to the Monitor and signals reports, so tests wait
// on events instead of sleeping.
type eventObserver struct {
	*Monitor
	reported chan outbox.Report
}

func (o *eventObserver) Reported(r outbox.Report, err error, took time.Duration) {
	o.Monitor.Reported(r, err, took)
	o.reported <- r
}

// fleet is a real coordinator over bufconn, observed by a Monitor.
type fleet struct {
	t   *testing.T
	c   *coordinator.Coordinator
	mon *Monitor
	obs *eventObserver
	api *fakeAPI
	lis *bufconn.Listener
	srv *coordinator.Server
	// stop ends the coordinator's Run (its drain and flush included) and
	// waits for it; the cleanup calls it too.
	stop func()
}

func startFleet(t *testing.T, api *fakeAPI, cfg Config) *fleet {
	t.Helper()
	return startFleetOver(t, api, api, cfg)
}

// startFleetOver is startFleet with the coordinator reaching api through
// over (a test's wrapper of it).
func startFleetOver(t *testing.T, api *fakeAPI, over coordinator.API, cfg Config) *fleet {
	t.Helper()
	mon := New(cfg)
	obs := &eventObserver{Monitor: mon, reported: make(chan outbox.Report, 100)}
	c, err := coordinator.New(coordinator.Config{
		API: over, LoadDuration: 10 * time.Millisecond, HeartbeatInterval: time.Minute,
		DrainTimeout: 5 * time.Second, FlushTimeout: 5 * time.Second,
		Prefetch: coordinator.DefaultPrefetch, VerifyRate: coordinator.DefaultVerifyRate,
		Logger: slog.New(slog.DiscardHandler), Observer: obs, Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := coordinator.NewServer(c, coordinator.ServerConfig{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, c: c, mon: mon, obs: obs, api: api, lis: newBufListener(), srv: srv}
	served := make(chan struct{})
	go func() {
		defer close(served)
		f.srv.Serve(f.lis)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	f.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator Run: %v", err)
		}
	})
	t.Cleanup(func() {
		f.stop()
		f.srv.Stop(0)
		<-served
		c.WaitSessions()
	})
	return f
}

func newBufListener() *bufconn.Listener { return bufconn.Listen(1 << 20) }

// handler is the coordinator's HTTP surface as cmd/dragonfly serves it.
func (f *fleet) handler() http.Handler { return f.mon.Handler(f.c, f.srv.Ready) }

// status is the status document of the fleet.
func (f *fleet) status() Document { return f.mon.Status(f.t.Context(), f.c) }

// waitReports waits for n report attempts.
func (f *fleet) waitReports(n int) []outbox.Report {
	f.t.Helper()
	var out []outbox.Report
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for len(out) < n {
		select {
		case r := <-f.obs.reported:
			out = append(out, r)
		case <-timeout.C:
			f.t.Fatalf("timed out waiting for %d reports; have %d", n, len(out))
		}
	}
	return out
}

// fakeWorker speaks the fleet protocol: it declares its rules ready and
// answers every task with a fixed result (a failure for URLs in fail).
type fakeWorker struct {
	cancel  context.CancelFunc
	done    chan error
	ready   chan struct{} // closed when its rules are ready
	drained chan struct{} // closed when the coordinator asked it to drain
}

func (f *fleet) worker(id string, slots uint32, fail map[string]string) *fakeWorker {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := fleetv1.NewFleetServiceClient(testkit.DialBuf(f.t, f.lis)).Connect(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	w := &fakeWorker{cancel: cancel, done: make(chan error, 1), ready: make(chan struct{}), drained: make(chan struct{})}
	go func() { w.done <- w.serve(stream, id, slots, fail) }()
	f.t.Cleanup(func() {
		w.cancel()
		if err := <-w.done; err != nil && ctx.Err() == nil {
			f.t.Errorf("fake worker: %v", err)
		}
	})
	select {
	case <-w.ready:
	case err := <-w.done:
		f.t.Fatalf("fake worker ended before its rules were ready: %v", err)
	}
	return w
}

// serve is the stream's only sender and receiver.
func (w *fakeWorker) serve(stream fleetv1.FleetService_ConnectClient, id string, slots uint32, fail map[string]string) error {
	if err := stream.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
		WorkerId: id, Version: "test-worker", ProtocolVersion: fleetv1.ProtocolVersion_PROTOCOL_VERSION_1, Slots: slots, Host: "host-" + id,
		Mode: fleetv1.WorkerMode_WORKER_MODE_SCAN,
	}}}); err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch msg := m.GetMsg().(type) {
		case *fleetv1.ConnectResponse_RuleSet:
			if err := stream.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: msg.RuleSet.GetHash()}}}); err != nil {
				return err
			}
			close(w.ready)
		case *fleetv1.ConnectResponse_Assign:
			res := &fleetv1.TaskResults{}
			for _, t := range msg.Assign.GetTasks() {
				r := &fleetv1.TaskResult{TaskId: t.GetTaskId(), Stats: &fleetv1.TaskStats{
					BytesDownloaded: 2048, BytesExpanded: 8192, Files: 3,
					DownloadTime: durationpb.New(20 * time.Millisecond), ScanTime: durationpb.New(5 * time.Millisecond),
					WallTime: durationpb.New(30 * time.Millisecond),
				}}
				if reason, ok := fail[t.GetUrl()]; ok {
					r.Outcome = &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{Reason: reason, Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, Limit: "file_size"}}
				} else {
					r.Outcome = &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{
						Score: 7, TopFile: t.GetJob().GetName() + "-1.0/setup.py", TopFileScore: 7,
						Rules: []*fleetv1.RuleHit{{Name: "evil_setup", Weight: 7}},
					}}
				}
				res.Results = append(res.Results, r)
			}
			if err := stream.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: res}}); err != nil {
				return err
			}
		case *fleetv1.ConnectResponse_Heartbeat:
			if err := stream.Send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}); err != nil {
				return err
			}
		case *fleetv1.ConnectResponse_Drain:
			close(w.drained)
			return errors.New("drained")
		}
	}
}

// finishJobs runs a worker through three jobs: a success, a failure and a
// success whose report is refused with 409.
func finishJobs(t *testing.T, cfg Config) *fleet {
	t.Helper()
	api := newFakeAPI()
	api.Conflict("raced")
	f := startFleet(t, api, cfg)
	f.worker("w-alpha", 2, map[string]string{"https://files.example/big-2.0.whl": "distribution big-2.0.whl: file setup.py exceeds limit DRAGONFLY_MAX_FILE_SIZE"})
	api.Add(
		testJob("evilpkg", "https://files.example/packages/aa/bb/evilpkg-1.0.tar.gz", "https://files.example/evilpkg-1.0-py3-none-any.whl"),
		testJob("big", "https://files.example/big-2.0.whl"),
		testJob("raced", "https://files.example/raced-1.0.tar.gz"),
	)
	f.waitReports(3)
	// The observer hears of an accepted or refused report once the sender
	// took it out of the outbox; the outbox is empty, as the page says.
	testkit.WaitFor(t, 20*time.Second, func() bool { return f.c.Snapshot().Outbox.Reports == 0 },
		func() string {
			return fmt.Sprintf("outbox still holds %d reports after the API answered them", f.c.Snapshot().Outbox.Reports)
		})
	return f
}
