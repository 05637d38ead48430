package worker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestRefusedCredentialsEndTheWorker: a coordinator that answers
// Unauthenticated (a wrong fleet token) is a configuration error: after
// AuthFailures tries Run returns an error (the process exits non-zero and
// Kubernetes shows CrashLoopBackOff) instead of retrying forever while
// looking healthy.
func TestRefusedCredentialsEndTheWorker(t *testing.T) {
	for _, code := range []codes.Code{codes.Unauthenticated, codes.PermissionDenied} {
		t.Run(code.String(), func(t *testing.T) {
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
	var mu sync.Mutex
	n := 0
	coord := &fakeCoord{refuse: func() error {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch {
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

// TestResultsStayBelowTheCoordinatorsLimit: results are split into messages
// below Welcome.max_request_bytes, and a single result too large for any
// message (a top file path of many KiB) becomes a failure of that task naming
// the cause, instead of a message the coordinator cannot take (which would
// cut the session, again and again).
func TestResultsStayBelowTheCoordinatorsLimit(t *testing.T) {
	e := startWorker(t, 4, nil)
	long := strings.Repeat("d/", 3000) + "evil.py"
	e.extra.Store("long-1.0.tar.gz", testkit.Gzip(t, testkit.Tar(t, testkit.TarEntry{Name: long, Body: []byte(`exec(base64.b64decode("x"))`)})))
	s := e.session()
	const limit = 2048
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{
		SessionId: "s1", HeartbeatInterval: durationpb.New(time.Minute), MaxRequestBytes: limit,
	}}})
	s.pushRules(demoHash, demo.Rules())
	var tasks []*fleetv1.Task
	for i := range 12 {
		tasks = append(tasks, e.task(uint64(100+i), "reqeusts-2.31.0.tar.gz", demoHash))
	}
	tasks = append(tasks, e.task(200, "long-1.0.tar.gz", demoHash))
	s.assign(tasks...)
	got := map[uint64]*fleetv1.TaskResult{}
	deadline := time.After(60 * time.Second)
	for len(got) < len(tasks) {
		select {
		case m, ok := <-s.in:
			if !ok {
				t.Fatal("worker closed the stream")
			}
			if size := proto.Size(m); size > limit {
				t.Fatalf("worker sent a %d-byte message over the %d-byte limit", size, limit)
			}
			for _, r := range m.GetResults().GetResults() {
				got[r.GetTaskId()] = r
			}
		case <-deadline:
			t.Fatalf("%d of %d results", len(got), len(tasks))
		}
	}
	for i := range 12 {
		if r := got[uint64(100+i)]; r.GetDistribution().GetScore() != 8 {
			t.Fatalf("task %d: %v", 100+i, r)
		}
	}
	f := got[200].GetFailure()
	if f == nil || f.GetLimit() != "message_size" || !strings.Contains(f.GetReason(), fmt.Sprint(limit)) {
		t.Fatalf("long-path result = %v, want a message_size failure", got[200])
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
