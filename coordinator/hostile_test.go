package coordinator

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// Attacks on the coordinator through its production gRPC server (NewServer:
// auth, limits, keepalive, health, reflection), as a worker holding the
// fleet token or an unauthenticated peer would make them.

func hello(id string, slots uint32) *fleetv1.ConnectRequest {
	return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
		WorkerId: id, ProtocolVersion: protocol.Version, Slots: slots, Host: "test", Mode: fleetv1.WorkerMode_WORKER_MODE_SCAN,
	}}}
}

// sessionSlots returns the effective slots of the worker's session, waiting
// for it to join.
func (f *fleet) sessionSlots(t *testing.T, workerID string) int {
	t.Helper()
	var slots int
	testkit.WaitFor(t, 10*time.Second, func() bool {
		for _, s := range f.c.Snapshot().Sessions {
			if s.WorkerID == workerID {
				slots = s.Slots
				return true
			}
		}
		return false
	}, func() string { return "worker " + workerID + " never joined" })
	return slots
}

// waitIdentities waits until n identities are ready for tasks.
func (f *fleet) waitIdentities(t *testing.T, n int) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, func() bool { return f.c.Snapshot().Dispatch.SpotChecks.Identities >= n },
		func() string {
			return fmt.Sprintf("%d identities ready, want %d", f.c.Snapshot().Dispatch.SpotChecks.Identities, n)
		})
}

// TestSlotClaimIsCapped: a token holder that claims four billion slots gets
// DRAGONFLY_MAX_WORKER_SLOTS, and an honest worker still gets tasks.
func TestSlotClaimIsCapped(t *testing.T) {
	var jobs []mainframe.Job
	for i := range 30 {
		jobs = append(jobs, job(fmt.Sprintf("j%02d", i), "u"))
	}
	api := newFakeAPI(jobs...)
	f := startFleet(t, api, func(c *Config) { c.MaxWorkerSlots = 8 })
	hog := f.worker("hog", 4000000000)
	hog.ready()
	if got := f.sessionSlots(t, "hog"); got != 8 {
		t.Fatalf("hog has %d slots, want the cap 8", got)
	}
	honest := f.worker("honest", 2)
	honest.ready()
	hogTasks := hog.tasks(9) // 8 slots + 1 prefetch
	ts := honest.tasks(3)
	for _, tk := range ts {
		honest.answer(result(tk, ""))
	}
	for _, tk := range hogTasks {
		hog.answer(result(tk, ""))
	}
	api.WaitReports(t, 12)
}

// TestSlotCapAboveUint32DoesNotWrap: a DRAGONFLY_MAX_WORKER_SLOTS past
// 2^32 caps nothing a worker can claim, and the claim stands. The cap was
// converted to the claim's uint32: 4294967296 read as 0 (every worker got 1
// slot, logged as "worker slots capped" asked=2 slots=0), 4294967297 as 1.
func TestSlotCapAboveUint32DoesNotWrap(t *testing.T) {
	for _, limit := range []int{1 << 32, 1<<32 + 1} {
		f := startFleet(t, newFakeAPI(), func(c *Config) { c.MaxWorkerSlots = limit })
		w := f.worker("w", 6)
		w.ready()
		if got := f.sessionSlots(t, "w"); got != 6 {
			t.Errorf("MaxWorkerSlots %d: the worker has %d slots, want the 6 it claimed", limit, got)
		}
	}
}

// TestStalledReaderIsCutAndRefused: a worker that stops reading (gRPC flow
// control then holds the coordinator's send) is cut within SendTimeout, its
// tasks go to an honest worker, and its identity is refused for a while
// (Unavailable: retry later, not a configuration error).
func TestStalledReaderIsCutAndRefused(t *testing.T) {
	big := strings.Repeat("// padding that makes the rule set large\n", (protocol.MaxRuleSetBytes-len(testRules)-16)/41)
	api := newFakeAPI(job("p", "u1"))
	api.SetRules(mainframe.RuleSet{Hash: "h1", Rules: map[string]string{"a": testRules, "pad": big}}, nil)
	f := startFleet(t, api, func(c *Config) {
		c.HeartbeatInterval = 100 * time.Millisecond
		c.HeartbeatMisses = 50 // not cut for silence: the stall must be what cuts it
	})
	// Fixed 64 KiB windows: no BDP growth, so a 4 MB rule set cannot fit in
	// the transport's buffers of a peer that does not read.
	conn := f.dial(grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := fleetv1.NewFleetServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(hello("stalled", 4)); err != nil {
		t.Fatal(err)
	}
	// It heartbeats (so it is not silent) but never calls Recv.
	hbCtx, stopHB := context.WithCancel(ctx)
	var hbDone sync.WaitGroup
	hbDone.Go(func() { heartbeat(hbCtx, 20*time.Millisecond, nil, stream.Send) })
	// The session joins, then is cut.
	f.sessionSlots(t, "stalled")
	testkit.WaitFor(t, 20*time.Second, func() bool { return len(f.c.Snapshot().Sessions) == 0 },
		func() string { return "the stalled session was not cut" })
	stopHB()
	hbDone.Wait()
	cancel()
	// Reconnecting with the same identity is refused for a while.
	again := f.worker("stalled", 4)
	wantEnded(t, again.recv, codes.Unavailable, "stalled", "the stalled identity reconnecting")
	// The job still goes through an honest worker.
	honest := f.worker("honest", 1)
	honest.ready()
	honest.answer(result(honest.tasks(1)[0], ""))
	api.WaitReports(t, 1)
}

// TestSilentHolderCannotStallReleases: a worker that accepts tasks and
// heartbeats but never answers cannot keep a release from being reported
// while an honest worker has a free slot: an overdue task gets a backup copy
// on the honest worker and its result is reported, inside the lease.
func TestSilentHolderCannotStallReleases(t *testing.T) {
	api := newFakeAPI(job("p", "u1", "u2"))
	f := startFleet(t, api, func(c *Config) {
		c.TaskTimePrior = time.Second
		c.BackupMin = time.Second
	})
	holder := f.worker("holder", 64)
	holder.ready()
	held := holder.tasks(2) // takes both distributions, answers neither
	honest := f.worker("honest", 2)
	honest.ready()
	backups := honest.tasks(2)
	for _, tk := range backups {
		found := false
		for _, h := range held {
			found = found || h.GetUrl() == tk.GetUrl()
		}
		if !found || tk.GetTaskId() == held[0].GetTaskId() || tk.GetTaskId() == held[1].GetTaskId() {
			t.Fatalf("backup %v is not a new copy of a held task", tk)
		}
		honest.answer(result(tk, "x", "r"))
	}
	r := api.WaitReports(t, 1)[0]
	if r.Success == nil || r.Success.Score != 1 {
		t.Fatalf("report %+v, want the honest worker's score", r)
	}
	if d := f.c.Snapshot().Dispatch.Counters; d.BackupsDispatched < 2 || d.BackupsWon < 2 {
		t.Fatalf("counters %+v, want 2 backups dispatched and won", d)
	}
	// The holder's late answers are dropped, not reported twice.
	holder.answer(result(held[0], ""), result(held[1], ""))
	testkit.WaitFor(t, 10*time.Second, func() bool {
		c := f.c.Snapshot().Dispatch.Counters
		return c.ResultsDropped+c.ResultsOrphaned >= 2
	}, func() string { return fmt.Sprintf("late results not dropped: %+v", f.c.Snapshot().Dispatch.Counters) })
	if n := len(api.Reports()); n != 1 {
		t.Fatalf("%d reports, want 1", n)
	}
}

// TestRulesStatusFloodKeepsNothing: RulesStatus messages with megabyte
// hashes the coordinator never sent are ignored: nothing is kept per hash.
// (Before, 30 such messages grew the heap from 2.7 MB to 137 MB.)
func TestRulesStatusFloodKeepsNothing(t *testing.T) {
	api := newFakeAPI()
	// 105 MB of messages take a while to arrive on a loaded machine: the
	// session must not be cut for silence meanwhile (not what is tested).
	f := startFleet(t, api, func(c *Config) { c.HeartbeatInterval = 5 * time.Second })
	w := f.worker("flood", 1)
	w.ready()
	before := testkit.HeapInUse()
	for i := range 30 {
		hash := fmt.Sprintf("%02d", i) + strings.Repeat("h", 3<<20)
		w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: hash, Error: strings.Repeat("e", 512<<10)}}})
	}
	// Draining is handled after every message before it: once the session
	// shows it, the flood was handled.
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Draining{Draining: &fleetv1.Draining{}}})
	testkit.WaitFor(t, 20*time.Second, func() bool { return f.c.Snapshot().Dispatch.Sessions[0].Draining },
		func() string { return "the flood was not handled" })
	after := testkit.HeapInUse()
	grew := int64(after) - int64(before)
	t.Logf("heap before %d, after %d bytes (grew %d) after 30 RulesStatus of 3.5 MB", before, after, grew)
	if grew > 16<<20 {
		t.Fatalf("heap grew by %d bytes: hashes are kept", grew)
	}
	if ready := f.c.Snapshot().Dispatch.Sessions[0].RulesReady; len(ready) != 1 || ready[0] != "h1" {
		t.Fatalf("rules ready %v, want only h1", ready)
	}
}

// TestHealthWatchIsBounded: health Watch needs the token, and the number
// of Watch streams open at once is capped (each holds a goroutine): with
// MaxWatchers held open, 5,000 more attempts are all refused at once with
// ResourceExhausted, and the server's goroutines do not grow with them
// (before: 5,000 streams held, 5,000 goroutines). Health Check from a local
// peer needs no token.
func TestHealthWatchIsBounded(t *testing.T) {
	api := newFakeAPI()
	f := startFleetWith(t, api, nil, ServerConfig{Token: testToken, MaxWatchers: 32, MaxStreamsPerConn: 8})
	// Without the token, Watch is refused.
	anon := f.dial()
	defer anon.Close()
	st, err := healthpb.NewHealthClient(anon).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Watch without a token: %v, want Unauthenticated", err)
	}
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+testToken))
	defer cancel()
	var held sync.WaitGroup
	defer held.Wait()
	defer cancel()
	watch := func(conn *grpc.ClientConn) (healthpb.Health_WatchClient, error) {
		st, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return nil, err
		}
		_, err = st.Recv()
		return st, err
	}
	// 32 watchers, one connection each, held open.
	for range 32 {
		conn := f.dial()
		defer conn.Close()
		st, err := watch(conn)
		if err != nil {
			t.Fatalf("watcher within the cap: %v", err)
		}
		held.Go(func() {
			for {
				if _, err := st.Recv(); err != nil {
					return
				}
			}
		})
	}
	goHeld := runtime.NumGoroutine()
	const attempts, conns = 5000, 50
	var flood []*grpc.ClientConn
	for range conns {
		c := f.dial()
		defer c.Close()
		flood = append(flood, c)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		refused int
		other   []error
	)
	for i := range attempts {
		wg.Go(func() {
			_, err := watch(flood[i%conns])
			mu.Lock()
			defer mu.Unlock()
			if status.Code(err) == codes.ResourceExhausted {
				refused++
			} else {
				other = append(other, err)
			}
		})
	}
	wg.Wait()
	goAfter := runtime.NumGoroutine()
	t.Logf("32 held; %d of %d more refused; goroutines %d with the watchers held, %d after the flood", refused, attempts, goHeld, goAfter)
	if refused != attempts {
		t.Fatalf("%d of %d refused; first other outcome: %v", refused, attempts, other[0])
	}
	// The flood left nothing behind but the 50 connections' own goroutines.
	if goAfter-goHeld > 20*conns {
		t.Fatalf("goroutines grew from %d to %d", goHeld, goAfter)
	}
	// Health Check itself needs no token.
	if _, err := healthpb.NewHealthClient(flood[0]).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check without a token: %v", err)
	}
}

// TestReflectionNeedsTheToken: server reflection is behind the fleet token.
func TestReflectionNeedsTheToken(t *testing.T) {
	f := startFleetWith(t, newFakeAPI(), nil, ServerConfig{Token: testToken})
	conn := f.dial()
	defer conn.Close()
	for _, tc := range []struct {
		token string
		code  codes.Code
	}{{"", codes.Unauthenticated}, {"wrong", codes.Unauthenticated}, {testToken, codes.OK}} {
		ctx := context.Background()
		if tc.token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.token)
		}
		st, err := grpc_reflection_v1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err == nil {
			// A refused stream's status comes from Recv (Send may only see EOF).
			_ = st.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}})
			_, err = st.Recv()
		}
		if status.Code(err) != tc.code {
			t.Errorf("token %q: %v, want %v", tc.token, err, tc.code)
		}
	}
}

// remoteListener makes in-memory connections look like they come from a
// non-loopback address.
type remoteListener struct{ *bufconn.Listener }

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000} }

// TestPlaintextTokenFromRemotePeer: a token that crossed the network in the
// clear (no TLS, peer not on loopback) is refused as a configuration error,
// unless the coordinator is told the network is a development one.
func TestPlaintextTokenFromRemotePeer(t *testing.T) {
	for _, fleetInsecure := range []bool{false, true} {
		t.Run(fmt.Sprint("fleet_insecure=", fleetInsecure), func(t *testing.T) {
			c, err := New(Config{API: newFakeAPI(), HeartbeatInterval: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			srv, err := NewServer(c, ServerConfig{Token: testToken, FleetInsecure: fleetInsecure})
			if err != nil {
				t.Fatal(err)
			}
			lis := bufconn.Listen(1 << 20)
			go srv.Serve(remoteListener{lis})
			defer srv.Stop(0)
			conn, err := grpc.NewClient("passthrough:///x",
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
				grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+testToken)
			_, err = healthpb.NewHealthClient(conn).List(ctx, &healthpb.HealthListRequest{})
			want := codes.PermissionDenied
			if fleetInsecure {
				want = codes.OK
			}
			if status.Code(err) != want {
				t.Fatalf("List with the token over plaintext from 10.1.2.3: %v, want %v", err, want)
			}
			if err != nil && !strings.Contains(err.Error(), "DRAGONFLY_FLEET_INSECURE") {
				t.Fatalf("refusal %q does not say what to do", err)
			}
		})
	}
}

// TestInsecureNeedsLoopback: a coordinator without a token serves only on a
// loopback (or in-memory) listener.
func TestInsecureNeedsLoopback(t *testing.T) {
	c, srv := insecureServer(t, newFakeAPI())
	ln := listen(t, ":0") // every interface
	if err := srv.Serve(ln); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Serve on %s: %v, want a refusal naming loopback", ln.Addr(), err)
	}
	if _, err := NewServer(c, ServerConfig{}); err == nil {
		t.Fatal("a server with neither token nor insecure was built")
	}
}

// insecureServer builds a coordinator on api and its insecure production
// server, neither running.
func insecureServer(t *testing.T, api *fakeAPI) (*Coordinator, *Server) {
	t.Helper()
	c, err := New(Config{API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(c, ServerConfig{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

// listen listens on addr over TCP until the test ends.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestRunEndsWhenItCannotServeWorkers: when the gRPC server cannot serve
// (here an insecure coordinator given a non-loopback listener), Run stops
// the coordinator and returns the error at once: a coordinator no worker
// can reach must not go on leasing jobs until someone signals it.
func TestRunEndsWhenItCannotServeWorkers(t *testing.T) {
	_, srv := insecureServer(t, newFakeAPI(job("a", "https://files.example/a-1.0.tar.gz")))
	ln := listen(t, ":0") // every interface
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("Run on %s: %v, want the refusal naming loopback", ln.Addr(), err)
		}
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatalf("Run on %s went on after its server refused to serve, until its context ended", ln.Addr())
	}
}

// TestMaxWorkers: authenticated connections beyond DRAGONFLY_MAX_WORKERS
// and sessions beyond it are refused with ResourceExhausted: retry later,
// never Unauthenticated. A local health check still gets through (its
// connection stays pending).
func TestMaxWorkers(t *testing.T) {
	f := startFleetWith(t, newFakeAPI(), nil, ServerConfig{Insecure: true, MaxWorkers: 2})
	a := f.worker("a", 1)
	a.ready()
	b := f.worker("b", 1)
	b.ready()
	// A second session on a's connection: over the session cap.
	stream, err := fleetv1.NewFleetServiceClient(a.conn).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(hello("a2", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third session: %v, want ResourceExhausted", err)
	}
	// A third connection: its worker stream is refused before it begins.
	conn := f.dial()
	defer conn.Close()
	stream, err = fleetv1.NewFleetServiceClient(conn).Connect(context.Background())
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "DRAGONFLY_MAX_WORKERS") {
		t.Fatalf("third connection: %v, want ResourceExhausted naming DRAGONFLY_MAX_WORKERS", err)
	}
	if n := f.c.Snapshot().Refusals.ConnsOverCap; n != 1 {
		t.Fatalf("%d streams counted over the cap, want 1", n)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("local health check on the third connection: %v", err)
	}
	if c := f.srv.connCounts(); c.Authenticated != 2 || c.Pending != 1 {
		t.Fatalf("connections %+v, want 2 authenticated and 1 pending", c)
	}
}

// TestHugeTopFileRefused: a worker's top file of a MiB (no honest worker
// sends one: the walk fails paths over protocol.MaxPathBytes) ends its
// session, so the report's inspector_url stays a few KiB: a proxy's body
// limit answering 413, a final error, would drop the verdict.
func TestHugeTopFileRefused(t *testing.T) {
	api := newFakeAPI(job("p", "u1"))
	f, liar := readyWorker(t, api, "liar", 1)
	liar.answer(result(liar.tasks(1)[0], strings.Repeat("%", 1<<20), "r1"))
	wantEnded(t, liar.recv, codes.InvalidArgument, "top file", "the session of a MiB-long top file")
	w := f.worker("w", 1)
	w.ready()
	w.answer(result(w.tasks(1)[0], "p-1.0/setup.py", "r1"))
	r := api.WaitReports(t, 1)
	if r[0].Success == nil || r[0].Success.Score != 3 || r[0].Success.InspectorURL == nil {
		t.Fatalf("report = %+v, want the success of r1 with an inspector_url", r[0])
	}
	if n := len(*r[0].Success.InspectorURL); n > protocol.MaxPathBytes {
		t.Fatalf("inspector_url of %d bytes", n)
	}
}

// TestNonScanningWorkerRefused: a worker that announces it fabricates
// results is refused as a configuration error.
func TestNonScanningWorkerRefused(t *testing.T) {
	f := startFleet(t, newFakeAPI(), nil)
	conn := f.dial()
	defer conn.Close()
	stream, err := fleetv1.NewFleetServiceClient(conn).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := hello("bench", 1)
	h.GetHello().Mode = fleetv1.WorkerMode_WORKER_MODE_NON_SCANNING
	if err := stream.Send(h); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "only real scans") {
		t.Fatalf("non-scanning worker: %v, want PermissionDenied", err)
	}
}

// TestResultsAreCheckedAgainstTheRules: a result that names a rule the set
// does not have, gives a rule another weight, or names a top file no
// archive member can have, ends the session (its tasks
// go elsewhere); a claimed score is recomputed from the rules' weights.
func TestResultsAreCheckedAgainstTheRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		hit  *fleetv1.RuleHit
		top  string
	}{
		{"unknown rule", &fleetv1.RuleHit{Name: "made_up", Weight: 100}, "x.py"},
		{"wrong weight", &fleetv1.RuleHit{Name: "r1", Weight: -50}, "x.py"},
		// The top file becomes the inspector_url: a browser resolves
		// ".." before inspector sees it, so this one would link another
		// project's file (no archive member is named so: workers clean
		// paths and fail those leaving the root).
		{"top file leaving the archive", &fleetv1.RuleHit{Name: "r1", Weight: 3}, "p-1.0/../../../../../other/2.0/packages/o-2.0.tar.gz/o-2.0/setup.py"},
		{"top file not clean", &fleetv1.RuleHit{Name: "r1", Weight: 3}, "p-1.0//setup.py"},
		{"absolute top file", &fleetv1.RuleHit{Name: "r1", Weight: 3}, "/setup.py"},
		{"top file too long", &fleetv1.RuleHit{Name: "r1", Weight: 3}, strings.Repeat("a/", protocol.MaxPathBytes/2) + "x.py"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			liarRefusedHonestReported(t, &fleetv1.DistributionResult{
				Score: 100, TopFile: tc.top, TopFileScore: 100, Rules: []*fleetv1.RuleHit{tc.hit},
			}, "the liar's session (an invalid result)")
		})
	}
	// A claimed score is not trusted: the rules' weights decide.
	api := newFakeAPI(job("q", "u1"))
	_, w := readyWorker(t, api, "w", 1)
	tk := w.tasks(1)[0]
	w.answer(&fleetv1.TaskResult{TaskId: tk.GetTaskId(), Outcome: &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{
		Score: 0, TopFile: "x.py", TopFileScore: 0, Rules: []*fleetv1.RuleHit{{Name: "heavy", Weight: 9}},
	}}})
	if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 9 {
		t.Fatalf("report %+v, want score 9 from the rule's weight", r)
	}
}

// TestResultsWithInconsistentRulesRefused: a result that names a rule
// twice (its weight would count twice in the recomputed score), or a top
// file without rules or rules without a top file, ends the session as
// TestResultsAreCheckedAgainstTheRules's results do; the honest worker's
// verdict is reported.
func TestResultsWithInconsistentRulesRefused(t *testing.T) {
	r1 := func() *fleetv1.RuleHit { return &fleetv1.RuleHit{Name: "r1", Weight: 3} }
	for _, tc := range []struct {
		name  string
		rules []*fleetv1.RuleHit
		top   string
	}{
		{"rule counted twice", []*fleetv1.RuleHit{r1(), r1()}, "x.py"},
		{"rules without a top file", []*fleetv1.RuleHit{r1()}, ""},
		{"top file without rules", nil, "x.py"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			liarRefusedHonestReported(t, &fleetv1.DistributionResult{
				Score: 6, TopFile: tc.top, TopFileScore: 6, Rules: tc.rules,
			}, "the liar's session (an inconsistent result)")
		})
	}
}

// liarRefusedHonestReported: a worker answering its task with res has its
// session ended (InvalidArgument; what names it), and an honest worker's
// verdict (rule r1, score 3) is the one reported.
func liarRefusedHonestReported(t *testing.T, res *fleetv1.DistributionResult, what string) {
	t.Helper()
	api := newFakeAPI(job("p", "u1"))
	f, liar := readyWorker(t, api, "liar", 1)
	tk := liar.tasks(1)[0]
	liar.answer(&fleetv1.TaskResult{TaskId: tk.GetTaskId(), Outcome: &fleetv1.TaskResult_Distribution{Distribution: res}})
	wantEnded(t, liar.recv, codes.InvalidArgument, "", what)
	honest := f.worker("honest", 1)
	honest.ready()
	honest.answer(result(honest.tasks(1)[0], "x", "r1"))
	if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 3 {
		t.Fatalf("report %+v, want the honest score 3", r)
	}
}

// TestLiarCaughtBySpotCheck: with spot checks on every task and three
// workers, a worker that reports a malicious distribution clean is outvoted
// and quarantined, and the release is reported with the honest verdict.
func TestLiarCaughtBySpotCheck(t *testing.T) {
	api := newFakeAPI()
	f := startFleet(t, api, func(c *Config) { c.VerifyRate = 1 })
	// The liar and one honest worker get the two copies of the check (the
	// job is leased once both are ready)...
	liar := f.worker("liar", 1)
	liar.ready()
	honest1 := f.worker("honest1", 1)
	honest1.ready()
	f.waitIdentities(t, 2)
	api.Add(job("evil", "u1"))
	lt, ht := liar.tasks(1)[0], honest1.tasks(1)[0]
	if lt.GetUrl() != "u1" || ht.GetUrl() != "u1" {
		t.Fatalf("copies %v %v", lt, ht)
	}
	// ...a third identity is ready when they disagree, and decides.
	honest2 := f.worker("honest2", 1)
	honest2.ready()
	f.waitIdentities(t, 3)
	liar.answer(result(lt, ""))
	honest1.answer(result(ht, "evil.py", "heavy"))
	honest2.answer(result(honest2.tasks(1)[0], "evil.py", "heavy"))
	api.WaitReports(t, 1)
	r := api.Reports()[0]
	if r.Success == nil || r.Success.Score != 9 {
		t.Fatalf("report %+v, want the honest score 9", r)
	}
	q := f.c.Snapshot().Dispatch.Quarantined
	if len(q) != 1 || q[0].Identity != "liar" {
		t.Fatalf("quarantined %+v, want the liar", q)
	}
}

// TestOversizedRuleSetRefused: a rule set from the API over the protocol's
// limit is refused with a clear error and the rules in use stay.
func TestOversizedRuleSetRefused(t *testing.T) {
	api := newFakeAPI()
	f, _ := readyWorker(t, api, "w", 1)
	api.SetRules(mainframe.RuleSet{Hash: "huge", Rules: map[string]string{"a": strings.Repeat("x", protocol.MaxRuleSetBytes+1)}}, nil)
	err := f.c.rules.update(context.Background())
	if err == nil || !strings.Contains(err.Error(), "keeping the rules in use") {
		t.Fatalf("update: %v, want a refusal", err)
	}
	if h := f.c.Snapshot().RulesHash; h != "h1" {
		t.Fatalf("rules %q, want h1 kept", h)
	}
}

// TestLargeRuleSetReachesWorkers: a rule set at the protocol's bound (its
// message over gRPC's default 4 MiB) reaches a worker that uses the
// protocol's limits.
func TestLargeRuleSetReachesWorkers(t *testing.T) {
	pad := protocol.MaxRuleSetBytes - len("a") - len(testRules) - len("pad")
	line := "// a comment line to make the set large\n"
	big := strings.Repeat(line, pad/len(line)) + strings.Repeat(" ", pad%len(line))
	if n := protocol.RuleSetBytes(map[string]string{"a": testRules, "pad": big}); n != protocol.MaxRuleSetBytes {
		t.Fatalf("the set has %d bytes, want the bound %d", n, protocol.MaxRuleSetBytes)
	}
	api := newFakeAPI()
	api.SetRules(mainframe.RuleSet{Hash: "big", Rules: map[string]string{"a": testRules, "pad": big}}, nil)
	f := startFleet(t, api, nil)
	w := f.worker("w", 1)
	if h := w.ready(); h != "big" {
		t.Fatalf("rules %q", h)
	}
}

// endObserver passes the errors sessions end with.
type endObserver struct {
	nopObserver
	ended chan error
}

func (o endObserver) SessionEnded(_ SessionInfo, err error) { o.ended <- err }

// TestOversizedMessageEndsSessionSayingSo: a worker message over the
// coordinator's receive limit ends its session with ResourceExhausted on both
// ends (the coordinator's log and metrics say why, not "cancelled").
func TestOversizedMessageEndsSessionSayingSo(t *testing.T) {
	obs := endObserver{ended: make(chan error, 4)}
	f := startFleet(t, newFakeAPI(), func(c *Config) { c.Observer = obs })
	w := f.workerWith("big", 1, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	w.ready()
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: []*fleetv1.TaskResult{{
		TaskId: 1, Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{Reason: strings.Repeat("x", 5<<20)}},
	}}}}})
	wantEnded(t, w.recv, codes.ResourceExhausted, "", "the oversized message's session, at the worker")
	wantEnded(t, obs.ended, codes.ResourceExhausted, "larger than max", "the oversized message's session, at the coordinator")
}

// wantEnded waits (at most 10 s) for the error that ended a session and
// checks its code and that it names substr.
func wantEnded(t *testing.T, ended <-chan error, code codes.Code, substr, what string) {
	t.Helper()
	select {
	case err := <-ended:
		if status.Code(err) != code || !strings.Contains(err.Error(), substr) {
			t.Fatalf("%s ended with %v, want %v naming %q", what, err, code, substr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end", what)
	}
}
