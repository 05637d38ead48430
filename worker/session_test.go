package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestRefusedCredentialsEndTheWorker: a coordinator that answers
// Unauthenticated (a wrong fleet token), PermissionDenied or
// FailedPrecondition (a protocol version it does not speak) is a
// configuration error: after
// AuthFailures tries Run returns an error (the process exits non-zero and
// Kubernetes shows CrashLoopBackOff) instead of retrying forever while
// looking healthy.
func TestRefusedCredentialsEndTheWorker(t *testing.T) {
	for _, code := range []codes.Code{codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition} {
		t.Run(code.String(), func(t *testing.T) {
			// FailedPrecondition: a protocol version the coordinator does
			// not speak, which no retry mends.
			coord := &fakeCoord{refuse: func() error { return status.Error(code, "invalid fleet token") }}
			e := startWorkerWith(t, 1, coord, func(c *Config) { c.AuthFailures = 3 })
			select {
			case err := <-e.done:
				if err == nil || status.Code(errors.Unwrap(err)) == codes.OK && !strings.Contains(err.Error(), "refused") {
					t.Fatalf("Run = %v, want the refusal", err)
				}
				if !strings.Contains(err.Error(), "invalid fleet token") {
					t.Fatalf("Run = %v, want the coordinator's reason", err)
				}
				e.done <- err // for the cleanup
			case <-time.After(20 * time.Second):
				t.Fatal("worker kept retrying a refused token")
			}
			if n := coord.refusals.Load(); n != 3 {
				t.Fatalf("%d sessions refused, want exactly 3", n)
			}
		})
	}
}

// TestLoadRefusalsAreRetried: ResourceExhausted and Unavailable (the
// coordinator is full, or refuses this worker for a while) are not
// configuration errors: the worker keeps trying and connects once let in.
func TestLoadRefusalsAreRetried(t *testing.T) {
	var tries atomic.Int64
	coord := &fakeCoord{refuse: func() error {
		switch n := tries.Add(1); {
		case n <= 3:
			return status.Error(codes.ResourceExhausted, "full")
		case n <= 6:
			return status.Error(codes.Unavailable, "refused for a while")
		}
		return nil
	}}
	e := startWorkerWith(t, 1, coord, func(c *Config) { c.AuthFailures = 2 })
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	if got := coord.refusals.Load(); got != 6 {
		t.Fatalf("%d refusals before the session, want 6", got)
	}
}

// connObserver records Connection calls.
type connObserver struct {
	nopObserver
	states chan [2]bool
}

func (o connObserver) Connection(connected, ready bool) { o.states <- [2]bool{connected, ready} }

// TestReadinessFollowsTheSession: connected without rules is not ready;
// rules compiled makes it ready; the session's end makes it neither.
func TestReadinessFollowsTheSession(t *testing.T) {
	obs := connObserver{states: make(chan [2]bool, 16)}
	e := startWorker(t, 1, func(c *Config) { c.Observer = obs })
	s := e.session()
	want := func(connected, ready bool) {
		t.Helper()
		select {
		case got := <-obs.states:
			if got != [2]bool{connected, ready} {
				t.Fatalf("state %v, want connected=%v ready=%v", got, connected, ready)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no state change, want connected=%v ready=%v", connected, ready)
		}
	}
	s.welcome(demoHash, demo.Rules())
	want(true, false)
	want(true, true)
	s.close()
	want(false, false)
	s2 := e.session()
	s2.welcome(demoHash, demo.Rules())
	want(true, false) // a new session starts unready: rules are per session
	want(true, true)
}

// TestHeartbeatNamesRunningTasks: when a task starts the worker tells the
// coordinator at once which tasks run (the coordinator counts a task lost
// by a worker only if it had started there).
func TestHeartbeatNamesRunningTasks(t *testing.T) {
	e := startWorker(t, 2, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(e.task(7, "slow/reqeusts-2.31.0.tar.gz", demoHash))
	<-e.slow
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-s.in:
			if ids := m.GetHeartbeat().GetRunningTaskIds(); len(ids) == 1 && ids[0] == 7 {
				close(e.block)
				if r := s.results(1)[7]; r.GetDistribution().GetScore() != 8 {
					t.Fatalf("result %v", r)
				}
				return
			}
		case <-deadline:
			t.Fatal("no heartbeat named the running task")
		}
	}
}

// manyRules is a rule set of n rules that match every file, with names of
// about 100 bytes: a result of it carries about 106·n bytes of rule hits.
func manyRules(prefix string, n int) map[string]string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "rule %s_%s_%06d { meta: weight = 1 condition: true }\n", prefix, strings.Repeat("x", 90), i)
	}
	return map[string]string{prefix: b.String()}
}

// TestResultsStayBelowTheCoordinatorsLimit: a single result too large for
// any message becomes a failure of that task naming the cause, instead of a
// message the coordinator cannot take (which would cut the session, again
// and again); a tiny limit from the coordinator is raised to MinRequestBytes
// (logged once per session), so it cannot turn ordinary results into such
// failures.
func TestResultsStayBelowTheCoordinatorsLimit(t *testing.T) {
	var logs testkit.SyncBuffer
	e := startWorker(t, 4, func(c *Config) {
		c.MaxPrefetch = 16
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	s := e.session()
	welcome := &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{
		SessionId: "s1", HeartbeatInterval: durationpb.New(time.Minute), MaxRequestBytes: 100,
	}}}
	s.send(welcome)
	s.send(welcome) // a second Welcome logs nothing more
	// Results of about 16 KB and 74 KB.
	const smallRules, bigRules = 150, 700
	small, big := manyRules("small", smallRules), manyRules("big", bigRules)
	smallHash, bigHash := rules.ContentHash(small), rules.ContentHash(big)
	s.pushRules(smallHash, small)
	s.pushRules(bigHash, big)
	var tasks []*fleetv1.Task
	for i := range 12 {
		tasks = append(tasks, e.task(uint64(100+i), "reqeusts-2.31.0.tar.gz", smallHash))
	}
	tasks = append(tasks, e.task(200, "tinycolors-1.2.0.tar.gz", bigHash))
	s.assign(tasks...)
	got := map[uint64]*fleetv1.TaskResult{}
	deadline := time.After(60 * time.Second)
	for len(got) < len(tasks) {
		select {
		case m, ok := <-s.in:
			if !ok {
				t.Fatal("worker closed the stream")
			}
			if size := proto.Size(m); size > MinRequestBytes {
				t.Fatalf("worker sent a %d-byte message over the %d-byte limit", size, MinRequestBytes)
			}
			for _, r := range m.GetResults().GetResults() {
				got[r.GetTaskId()] = r
			}
		case <-deadline:
			t.Fatalf("%d of %d results", len(got), len(tasks))
		}
	}
	for i := range 12 {
		if r := got[uint64(100+i)]; len(r.GetDistribution().GetRules()) != smallRules {
			t.Fatalf("task %d: %d rules, want %d (failure %.200v)", 100+i, len(r.GetDistribution().GetRules()), smallRules, r.GetFailure())
		}
	}
	f := got[200].GetFailure()
	if f == nil || f.GetLimit() != "message_size" || !strings.Contains(f.GetReason(), fmt.Sprint(MinRequestBytes)) {
		t.Fatalf("result of %d rules = %.300v, want a message_size failure naming %d", bigRules, got[200], MinRequestBytes)
	}
	if n := strings.Count(logs.String(), "coordinator message limit out of bounds"); n != 1 {
		t.Errorf("clamp logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestResultBatchesSplitBelowTheLimit: results that finished together are
// sent in as many messages as the coordinator's limit needs, as the worker
// bounds it: a tiny limit is raised to MinRequestBytes, a huge one cut to
// protocol.MaxRequestBytes (the coordinator could not take more), none
// means protocol.LegacyRequestBytes.
func TestResultBatchesSplitBelowTheLimit(t *testing.T) {
	for _, tc := range []struct {
		asked uint32
		used  int
	}{
		{100, MinRequestBytes},
		{math.MaxUint32, protocol.MaxRequestBytes},
		{0, protocol.LegacyRequestBytes},
		{200 << 10, 200 << 10},
	} {
		t.Run(fmt.Sprint(tc.asked), func(t *testing.T) {
			w := testWorker(t, &chanClient{}, Config{BackoffMin: time.Second, BackoffMax: time.Second}, nil)
			stream := &chanStream{ChanStream: testkit.ChanStream[*fleetv1.ConnectResponse, *fleetv1.ConnectRequest]{StreamStub: testkit.StreamStub{Ctx: t.Context()}, Out: make(chan *fleetv1.ConnectRequest, 64)}}
			s := &coordinatorSession{w: w, stream: stream, interval: 5 * time.Second, maxRequest: protocol.LegacyRequestBytes}
			hb := time.NewTicker(time.Hour)
			defer hb.Stop()
			s.welcome(&fleetv1.Welcome{MaxRequestBytes: tc.asked}, hb)
			// Seven results of a third of the limit each: three messages
			// at least, however they are packed.
			hits := tc.used / 3 / 106
			for i := range 7 {
				d := &fleetv1.DistributionResult{Score: int64(hits), TopFile: "a.py", TopFileScore: 1}
				for j := range hits {
					d.Rules = append(d.Rules, &fleetv1.RuleHit{Name: fmt.Sprintf("%s_%06d", strings.Repeat("x", 93), j), Weight: 1})
				}
				s.pending = append(s.pending, &fleetv1.TaskResult{TaskId: uint64(i + 1), Outcome: &fleetv1.TaskResult_Distribution{Distribution: d}})
			}
			if err := s.flushResults(); err != nil {
				t.Fatal(err)
			}
			close(stream.Out)
			var ids []uint64
			messages := 0
			for m := range stream.Out {
				messages++
				if size := proto.Size(m); size > tc.used {
					t.Errorf("message %d of %d bytes over the %d-byte limit", messages, size, tc.used)
				}
				for _, r := range m.GetResults().GetResults() {
					if len(r.GetDistribution().GetRules()) != hits {
						t.Errorf("task %d: %v, want its %d rules", r.GetTaskId(), r.GetFailure(), hits)
					}
					ids = append(ids, r.GetTaskId())
				}
			}
			if messages < 3 || !slices.Equal(ids, []uint64{1, 2, 3, 4, 5, 6, 7}) {
				t.Errorf("results %v in %d messages, want 1..7 in order in at least 3", ids, messages)
			}
		})
	}
}

// TestFailureReasonsAreBounded: a member name of 1,000,000 control
// characters (4 MB once quoted; archive/tar writes no longer PAX records)
// gives a failure reason of a few KiB.
func TestFailureReasonsAreBounded(t *testing.T) {
	e := startWorker(t, 1, nil)
	name := "../" + strings.Repeat("\x01", 1_000_000)
	e.extra.Store("poison-1.0.tar.gz", testkit.Gzip(t, testkit.Tar(t, testkit.TarEntry{Name: name, Body: []byte("x")})))
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(e.task(1, "poison-1.0.tar.gz", demoHash))
	f := s.results(1)[1].GetFailure()
	if f == nil || f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_ARCHIVE {
		t.Fatalf("result = %v, want an archive failure", f)
	}
	if n := len(f.GetReason()); n > protocol.MaxTextBytes {
		t.Fatalf("reason of %d bytes, over %d", n, protocol.MaxTextBytes)
	}
	if !strings.HasPrefix(f.GetReason(), "distribution poison-1.0.tar.gz: ") {
		t.Fatalf("reason %.80q does not name the distribution", f.GetReason())
	}
}

// TestPlaintextTokenOnlyToLoopback: the worker refuses to send its token
// without TLS to a coordinator that is not on loopback, unless told it is a
// development network.
func TestPlaintextTokenOnlyToLoopback(t *testing.T) {
	for _, tc := range []struct {
		target        string
		fleetInsecure bool
		ok            bool
	}{
		{"127.0.0.1:50051", false, true},
		{"localhost:50051", false, true},
		{"[::1]:50051", false, true},
		{"dns:///localhost:50051", false, true},
		{"coordinator:50051", false, false},
		{"10.0.0.5:50051", false, false},
		{"coordinator:50051", true, true},
	} {
		cfg := Config{Target: tc.target, Token: "t", FleetInsecure: tc.fleetInsecure}
		_, err := cfg.dialOptions()
		if (err == nil) != tc.ok {
			t.Errorf("target %s insecure=%v: err %v, want ok=%v", tc.target, tc.fleetInsecure, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "DRAGONFLY_FLEET_INSECURE") {
			t.Errorf("error %q does not say how to proceed", err)
		}
	}
}

// TestTokenGRPCCannotCarryRefused: a token with a byte outside printable
// ASCII is refused before the worker dials: gRPC fails every stream that
// carries it with Internal, and the worker reconnected forever.
func TestTokenGRPCCannotCarryRefused(t *testing.T) {
	for _, token := range []string{"0123456789abcdef\n", "0123456789abcdef\r", "0123456789abcdef\x00", "0123456789abcdef\u00e9"} {
		cfg := Config{Target: "127.0.0.1:50051", Token: token}
		_, err := cfg.dialOptions()
		if err == nil || !strings.Contains(err.Error(), "printable ASCII") || strings.Contains(err.Error(), "0123456789abcdef") {
			t.Errorf("token %q: err %v, want a refusal naming the byte, not the token", token, err)
		}
	}
	cfg := Config{Target: "127.0.0.1:50051", Token: "0123456789abcdef ~!"}
	if _, err := cfg.dialOptions(); err != nil {
		t.Errorf("a printable token: %v", err)
	}
}

// TestCoordinatorTextInLogsIsBounded: what a coordinator says in words (a
// Welcome's session id and version, a refusal's or a broken stream's
// status message, up to 16 MiB in gRPC's trailers) is cut before it goes
// into a log line or Run's error: no line of a MiB per Welcome or per
// reconnect.
func TestCoordinatorTextInLogsIsBounded(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	long := strings.Repeat("y", 16<<10) // a Welcome over 64 KiB is refused undecoded
	var tries atomic.Int64
	coord := &fakeCoord{refuse: func() error {
		if tries.Add(1) == 1 {
			return nil
		}
		return status.Error(codes.PermissionDenied, huge)
	}}
	var logs testkit.SyncBuffer
	e := startWorkerWith(t, 1, coord, func(c *Config) {
		c.AuthFailures = 3
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	s := e.session()
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{SessionId: long, CoordinatorVersion: long, HeartbeatInterval: durationpb.New(time.Minute)}}})
	s.close() // then three refusals: Run gives up
	var err error
	select {
	case err = <-e.done:
		e.done <- err // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("worker kept retrying a refused worker")
	}
	const max = 16 << 10
	if err == nil || len(err.Error()) > max {
		t.Errorf("Run's error of %d bytes, want the refusal within %d", len(fmt.Sprint(err)), max)
	}
	lines := strings.Split(logs.String(), "\n")
	for _, l := range lines {
		if len(l) > max {
			t.Errorf("a log line of %d bytes, over %d: %s", len(l), max, clip.String(l, 256))
		}
	}
	if !strings.Contains(logs.String(), "connected to coordinator") || !strings.Contains(logs.String(), "refused this worker") {
		t.Errorf("logs without the connection and the refusal:\n%s", clip.String(logs.String(), 4096))
	}
}

// tasksSeen records the Observer's finished tasks: the outcome and limit of
// each TaskDone.
type tasksSeen struct {
	nopObserver
	mu   sync.Mutex
	done []string
}

func (o *tasksSeen) TaskDone(r *fleetv1.TaskResult, limit string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	outcome := "success"
	if f := r.GetFailure(); f != nil {
		outcome = f.GetKind().String() + " " + limit
	}
	o.done = append(o.done, outcome)
}

func (o *tasksSeen) seen() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.done)
}

// TestOversizedResultCountedOnce: a distribution whose result does not fit
// in a message is one task, failed by the limit message_size: the Observer
// (dragonfly_worker_tasks_total, the task duration histograms and
// dragonfly_worker_limit_violations_total) sees it once, as the failure the
// coordinator receives, not also as the success it was before it was cut.
func TestOversizedResultCountedOnce(t *testing.T) {
	obs := &tasksSeen{}
	e := startWorker(t, 1, func(c *Config) { c.Observer = obs })
	s := e.session()
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{
		SessionId: "s1", HeartbeatInterval: durationpb.New(time.Minute), MaxRequestBytes: MinRequestBytes,
	}}})
	big := manyRules("big", 700) // a result of about 74 KB
	bigHash := rules.ContentHash(big)
	s.pushRules(bigHash, big)
	s.assign(e.task(1, "tinycolors-1.2.0.tar.gz", bigHash))
	r := s.results(1)[1]
	if f := r.GetFailure(); f.GetLimit() != "message_size" {
		t.Fatalf("result = %.300v, want a message_size failure", r)
	}
	// Observed before the result was sent.
	if got, want := obs.seen(), []string{"FAILURE_KIND_LIMIT message_size"}; !slices.Equal(got, want) {
		t.Errorf("tasks observed = %q, want %q: one task, once", got, want)
	}
}
