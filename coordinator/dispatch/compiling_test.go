package dispatch

import (
	"fmt"
	"testing"
	"time"
)

// TestNoVerdictRetryWaitsForCompiling: right after a rules change the
// one ready identity (a liar claiming its rules ready at once, or an honest
// worker with a narrower DRAGONFLY_ALLOWED_HOSTS) answers a task, not
// spot-checked, with a download, host or limit failure. RulesOffered says
// the retry waits for an identity still compiling, as a spot check does;
// the failure was final at once (a failure report is terminal on the API).
func TestNoVerdictRetryWaitsForCompiling(t *testing.T) {
	start := func(t *testing.T) *harness {
		h := newHarness(t, Config{})
		first := h.joinAs("first", "F", 1, "h1")
		h.joinAs("honest", "H", 1)
		h.d.RulesOffered("honest", "h1", t0)
		h.d.Admit([]Job{mkJob("p", "u1")}, t0)
		tf := one(t, first)
		h.d.Result("first", Result{TaskID: tf.ID, Failure: "distribution u1: host files.example not allowed", FailureKind: KindHost}, at(1))
		h.d.Tick(at(2))
		if len(h.outcomes()) != 0 {
			t.Fatalf("a no-verdict failure was final while another identity compiles: %+v", h.outcomes())
		}
		return h
	}
	t.Run("retried once it is ready", func(t *testing.T) {
		h := start(t)
		h.d.RulesReady("honest", "h1")
		th := one(t, h.sinks["honest"])
		h.d.Result("honest", Result{TaskID: th.ID, Dist: bad()}, at(5))
		if o := outcomeOf(t, h, "p"); o.Failure != "" || o.Package.Score != 100 {
			t.Fatalf("outcome = %+v, want the honest scan", o)
		}
	})
	t.Run("failure stands after compileWait", func(t *testing.T) {
		h := start(t)
		h.d.Tick(t0.Add(compileWait - time.Second))
		if len(h.outcomes()) != 0 {
			t.Fatal("gave up before compileWait")
		}
		h.d.Tick(t0.Add(compileWait))
		if o := outcomeOf(t, h, "p"); o.Failure == "" {
			t.Fatalf("outcome = %+v, want the failure", o)
		}
	})
}

// TestStaleCompilingEntriesDoNotBlockOffers: a hash offered to a
// session and never answered (a set the coordinator replaced before it was
// sent, an answer that crossed the offer) stays in its compiling set for
// good; once maxReady of them gathered, every later RulesOffered of the
// session was ignored, and checks no longer waited for its compiles.
func TestStaleCompilingEntriesDoNotBlockOffers(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 1})
	h.joinAs("honest", "H", 1)
	for i := range maxReady {
		h.d.RulesOffered("honest", fmt.Sprintf("old-%d", i), t0)
	}
	later := t0.Add(time.Hour)
	liar := h.joinAs("liar", "L", 1, "h1")
	h.d.RulesOffered("honest", "h1", later)
	j := mkJob("p", "u1")
	j.LeasedAt = later
	h.d.Admit([]Job{j}, later)
	tl := one(t, liar)
	h.d.Result("liar", Result{TaskID: tl.ID, Dist: clean()}, later.Add(time.Second))
	h.d.Tick(later.Add(2 * time.Second))
	if len(h.outcomes()) != 0 {
		t.Fatalf("finished unchecked while the honest identity compiles h1: %+v", h.eventsOf(EventVerifySkipped))
	}
}
