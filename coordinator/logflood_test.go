package coordinator

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"google.golang.org/grpc/codes"
)

// Log volume as an attack surface: what a token holder makes the
// coordinator write is bounded by time, not by how fast it acts.

// churn opens a session as id and ends it at once with a protocol violation
// (a second Hello), as a hostile token holder can in a loop.
func (f *fleet) churn(id string) {
	f.t.Helper()
	w := f.worker(id, 1)
	if w.next().GetWelcome() == nil {
		f.t.Fatal("no Welcome first")
	}
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
		WorkerId: id, ProtocolVersion: fleetv1.ProtocolVersion_PROTOCOL_VERSION_1, Slots: 1, Mode: fleetv1.WorkerMode_WORKER_MODE_SCAN,
	}}})
	wantEnded(f.t, w.recv, codes.InvalidArgument, "hello sent twice", "the churning session")
	w.close()
}

// TestSessionChurnLogsAreThrottled: a worker with the fleet token that ends
// its session right after Hello, again and again, gets sessionLogBurst
// "worker connected" and as many "worker session ended" lines per identity
// and minute; the next line says how many were held back. Every session was
// two lines.
func TestSessionChurnLogsAreThrottled(t *testing.T) {
	var log syncLog
	clock := testkit.NewClock()
	f := startFleet(t, newFakeAPI(), func(c *Config) { c.Logger = log.logger(); c.Now = clock.Now })
	const sessions = 40
	for range sessions {
		f.churn("churner")
	}
	lines := strings.Count(log.String(), "\n")
	connected, ended := strings.Count(log.String(), "worker connected"), strings.Count(log.String(), "worker session ended")
	t.Logf("%d sessions: %d lines (%d connected, %d ended), %d bytes", sessions, lines, connected, ended, len(log.String()))
	if connected != sessionLogBurst || ended != sessionLogBurst {
		t.Fatalf("%d sessions logged %d connected and %d ended lines, want %d each:\n%s", sessions, connected, ended, sessionLogBurst, head(log.String()))
	}
	clock.Advance(time.Minute)
	f.churn("churner")
	if held := sessions - sessionLogBurst; !strings.Contains(log.String(), "suppressed="+strconv.Itoa(held)) {
		t.Fatalf("a minute later, no line counts the %d held back:\n%s", held, head(log.String()))
	}
	// Refused Hellos (a previous release's, without a mode) go the same way.
	for range sessions {
		w := f.legacyWorker("old", 1)
		wantEnded(t, w.recv, codes.FailedPrecondition, "previous release", "the previous release's session")
		w.close()
	}
	if n := strings.Count(log.String(), "it is of the previous release"); n != sessionLogBurst {
		t.Fatalf("%d refused Hellos logged %d lines, want %d", sessions, n, sessionLogBurst)
	}
}

// head is the start of a log, for a failure message.
// TestRotatingWorkerIDsLogsAreBounded: a token holder that makes up a new
// worker id for each session it ends at once gets at most sessionKindBurst
// lines of each kind a minute, however many ids it uses; it got about
// 1,024 (the per-identity throttle's keys).
func TestRotatingWorkerIDsLogsAreBounded(t *testing.T) {
	var log syncLog
	clock := testkit.NewClock()
	f := startFleet(t, newFakeAPI(), func(c *Config) { c.Logger = log.logger(); c.Now = clock.Now })
	const sessions = 3 * sessionKindBurst
	for i := range sessions {
		f.churn("id-" + strconv.Itoa(i))
	}
	connected, ended := strings.Count(log.String(), "worker connected"), strings.Count(log.String(), "worker session ended")
	if connected != sessionKindBurst || ended != sessionKindBurst {
		t.Fatalf("%d sessions under new ids logged %d connected and %d ended lines, want %d each", sessions, connected, ended, sessionKindBurst)
	}
	// The lines held back were under ids that never come again: the next
	// line of each kind, a minute later under yet another id, counts them
	// (each said none was held back, and a flood under new ids looked like
	// 32 sessions a minute).
	clock.Advance(time.Minute)
	f.churn("id-new")
	if n := strings.Count(log.String(), fmt.Sprintf("suppressed=%d", sessions-sessionKindBurst)); n != 2 {
		t.Fatalf("a minute later, %d lines count the %d held back of each kind, want the connected and the ended line:\n%s", n, sessions-sessionKindBurst, tail(log.String()))
	}
}

func head(s string) string { return s[:min(len(s), 4096)] }

// tail is the end of a log, for a failure message.
func tail(s string) string { return s[max(0, len(s)-4096):] }

// TestRepeatedWorkerReportsAreThrottled: a worker that says, again and
// again in one session, that it could not compile the rules it was offered
// (with an error text of 4 KiB each time), or that it is draining, gets
// sessionLogBurst lines of each per identity and minute; each message was a
// line, the compile error one of over 4 KiB: as many bytes of log as it
// sent.
func TestRepeatedWorkerReportsAreThrottled(t *testing.T) {
	var log syncLog
	clock := testkit.NewClock()
	f := startFleet(t, newFakeAPI(), func(c *Config) { c.Logger = log.logger(); c.Now = clock.Now })
	w := f.worker("noisy", 1)
	if w.next().GetWelcome() == nil {
		t.Fatal("no Welcome first")
	}
	hash := w.next().GetRuleSet().GetHash()
	if hash == "" {
		t.Fatal("no rule set after Welcome")
	}
	const messages = 100
	for range messages {
		w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: hash, Error: strings.Repeat("e", 4<<10)}}})
		w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Draining{Draining: &fleetv1.Draining{}}})
	}
	// A second Hello ends the session once every message before it was handled.
	w.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
		WorkerId: "noisy", ProtocolVersion: fleetv1.ProtocolVersion_PROTOCOL_VERSION_1, Slots: 1, Mode: fleetv1.WorkerMode_WORKER_MODE_SCAN,
	}}})
	wantEnded(t, w.recv, codes.InvalidArgument, "hello sent twice", "the noisy session")
	compile, draining := strings.Count(log.String(), "worker could not compile rules"), strings.Count(log.String(), "worker draining")
	t.Logf("%d messages of each: %d compile lines, %d draining lines, %d bytes of log", messages, compile, draining, len(log.String()))
	if compile != sessionLogBurst || draining != sessionLogBurst {
		t.Fatalf("%d compile failures and %d drains logged %d and %d lines, want %d each", messages, messages, compile, draining, sessionLogBurst)
	}
}

// TestSessionErrorLoggedAfterCleanDisconnects: an honest worker that
// disconnected cleanly sessionLogBurst times within a minute (restarts, a
// rolling update) still gets the warning of a session that then broke, the
// one line saying its tasks were dispatched again: a clean end and a broken
// one are not the same line. Both were of kind "ended", so the clean ends
// used up the burst and the warning was held back.
func TestSessionErrorLoggedAfterCleanDisconnects(t *testing.T) {
	var log syncLog
	clock := testkit.NewClock()
	f := startFleet(t, newFakeAPI(), func(c *Config) { c.Logger = log.logger(); c.Now = clock.Now })
	for range sessionLogBurst {
		w := f.worker("flaky", 1)
		if w.next().GetWelcome() == nil {
			t.Fatal("no Welcome first")
		}
		w.closeSend()
		if err := w.ended(); err != io.EOF {
			t.Fatalf("a clean disconnect ended with %v", err)
		}
		w.close()
	}
	if n := strings.Count(log.String(), "worker disconnected"); n != sessionLogBurst {
		t.Fatalf("%d clean disconnects logged %d lines, want %d:\n%s", sessionLogBurst, n, sessionLogBurst, head(log.String()))
	}
	f.churn("flaky")
	if n := strings.Count(log.String(), "worker session ended"); n != 1 {
		t.Fatalf("a broken session after %d clean disconnects logged %d warnings, want 1:\n%s", sessionLogBurst, n, head(log.String()))
	}
}
