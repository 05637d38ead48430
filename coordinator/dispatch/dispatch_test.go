package dispatch

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/score"
)

func TestAggregatesWorkedExample(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	a := h.join("a", 1, "h1")
	b := h.join("b", 1, "h1")
	h.d.Admit([]Job{mkJob("pkg", "https://files.pythonhosted.org/packages/aa/bb/cc/pkg-1.0.tar.gz", "https://files.pythonhosted.org/packages/dd/ee/ff/pkg-1.0-py3-none-any.whl")}, t0)
	ta, tb := a.take(), b.take()
	if len(ta) != 1 || len(tb) != 1 {
		t.Fatalf("tasks not spread over both sessions: a=%d b=%d", len(ta), len(tb))
	}
	results := map[string]*score.Distribution{
		// sdist: a/setup.py {r1 w5, r2 w3}, a/x.py {r1} -> 8
		"https://files.pythonhosted.org/packages/aa/bb/cc/pkg-1.0.tar.gz": dist("a/setup.py", 8, score.Hit{Name: "r1", Weight: 5}, score.Hit{Name: "r2", Weight: 3}),
		// wheel: b/x.py {r1}, b/y.py {r3 w10} -> 15
		"https://files.pythonhosted.org/packages/dd/ee/ff/pkg-1.0-py3-none-any.whl": dist("b/y.py", 10, score.Hit{Name: "r1", Weight: 5}, score.Hit{Name: "r3", Weight: 10}),
	}
	h.d.Result("a", Result{TaskID: ta[0].ID, Dist: results[ta[0].URL]}, t0)
	if len(h.outcomes()) != 0 {
		t.Fatal("job finished before all distributions")
	}
	h.d.Result("b", Result{TaskID: tb[0].ID, Dist: results[tb[0].URL]}, t0)
	outs := h.outcomes()
	if len(outs) != 1 {
		t.Fatalf("outcomes = %d, want 1", len(outs))
	}
	o := outs[0]
	if o.Failure != "" || o.Package.Score != 15 || !slices.Equal(o.Package.RulesMatched, []string{"r1", "r2", "r3"}) {
		t.Fatalf("outcome = %+v", o)
	}
	want := "https://inspector.pypi.io/project/pkg/1.0/packages/dd/ee/ff/pkg-1.0-py3-none-any.whl/b/y.py"
	if o.InspectorURL != want {
		t.Fatalf("inspector = %q, want %q", o.InspectorURL, want)
	}
	if *o.Job.Attempt != 1 || *o.Job.AssignmentID != "a-pkg" || o.Job.RulesHash != "h1" {
		t.Fatalf("lease identity lost: %+v", o.Job)
	}
	if !slices.Equal(o.Sessions, []string{"a", "b"}) {
		t.Fatalf("sessions = %v", o.Sessions)
	}
}

// TestCapacityCountsSessionsReadyForTheHash: the capacity for jobs of new
// rules counts only the sessions that can scan with them: a fleet still
// compiling (or failing to compile) the new set has none, so the loader
// leases nothing whose lease would run out waiting.
func TestCapacityCountsSessionsReadyForTheHash(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	h.join("a", 2, "h1")
	h.join("b", 1, "h1", "h2")
	for hash, want := range map[string]int{"": 5, "h1": 5, "h2": 2, "h3": 0} {
		if c := h.d.Capacity(hash); c != want {
			t.Errorf("Capacity(%q) = %d, want %d", hash, c, want)
		}
	}
	if h.d.ReadyFor("h3") || !h.d.ReadyFor("h2") {
		t.Errorf("ReadyFor h3 %v, h2 %v; want false, true", h.d.ReadyFor("h3"), h.d.ReadyFor("h2"))
	}
	h.d.RulesReady("a", "h3")
	if c := h.d.Capacity("h3"); c != 3 || !h.d.ReadyFor("h3") {
		t.Errorf("Capacity(h3) once a is ready = %d, want 3 (ready %v)", c, h.d.ReadyFor("h3"))
	}
}

// TestJoinWakesWaitersAndCountsAsIdle: a session joining closes the
// Changed channel (the loader parked on it looks again), and a free session
// that has no rules ready (its worker compiled none of the sets offered) is
// Idle though it adds no Capacity; a full, draining or quarantined one is
// not. Join did not signal: a loader parked before a worker joined slept on
// however long the worker could not compile the rules in use.
func TestJoinWakesWaitersAndCountsAsIdle(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	changed := h.d.Changed()
	if h.d.Idle() {
		t.Fatal("Idle with no session")
	}
	h.join("a", 1)
	select {
	case <-changed:
	default:
		t.Fatal("Join did not close the Changed channel")
	}
	if c := h.d.Capacity(""); c != 0 || !h.d.Idle() {
		t.Fatalf("session with no rules ready: Capacity(\"\") %d, Idle %v; want 0, true", c, h.d.Idle())
	}
	h.d.Drain("a")
	if h.d.Idle() {
		t.Fatal("a draining session counted as Idle")
	}
	b := h.join("b", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
	if n := len(b.take()); n != 2 {
		t.Fatalf("b got %d tasks, want 2 (1 slot + 1 prefetch)", n)
	}
	if h.d.Idle() {
		t.Fatal("a full session counted as Idle")
	}
	h.join("q", 1)
	h.d.Quarantine("q", "test")
	if h.d.Idle() {
		t.Fatal("a quarantined session counted as Idle")
	}
}

func TestCreditsBoundOutstanding(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	a := h.join("a", 2, "h1")
	urls := make([]string, 10)
	for i := range urls {
		urls[i] = fmt.Sprintf("u%d", i)
	}
	h.d.Admit([]Job{mkJob("big", urls...)}, t0)
	got := a.take()
	if len(got) != 3 {
		t.Fatalf("sent %d tasks to a session with 2 slots + 1 prefetch, want 3", len(got))
	}
	for i, tk := range got {
		if tk.URL != urls[i] {
			t.Fatalf("task %d url %s, want distribution order", i, tk.URL)
		}
	}
	if c := h.d.Capacity(""); c != -7 {
		t.Fatalf("capacity = %d, want -7 (0 free credits, 7 waiting)", c)
	}
	h.d.Result("a", Result{TaskID: got[0].ID, Dist: &score.Distribution{}}, t0)
	if n := len(a.take()); n != 1 {
		t.Fatalf("after one result sent %d tasks, want 1", n)
	}
}

func TestRulesReadinessGatesAssignment(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	a := h.join("a", 1) // no rules yet
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	if n := len(a.take()); n != 0 {
		t.Fatalf("assigned %d tasks to a session without rules", n)
	}
	h.d.RulesReady("a", "other")
	if n := len(a.take()); n != 0 {
		t.Fatalf("assigned %d tasks to a session with other rules", n)
	}
	h.d.RulesReady("a", "h1")
	if n := len(a.take()); n != 1 {
		t.Fatalf("after rules ready got %d tasks, want 1", n)
	}
}

func TestLeaveRedispatchesAndDropsLateResults(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.join("a", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	old := a.take()
	if len(old) != 1 {
		t.Fatal("no task for a")
	}
	b := h.join("b", 1, "h1")
	h.d.Leave("a", LeaveLost)
	nb := b.take()
	if len(nb) != 1 || nb[0].ID == old[0].ID || nb[0].URL != "u1" {
		t.Fatalf("task not re-dispatched under a new id: %+v", nb)
	}
	// a's late result (as if it came back over a new session with the same id) is dropped.
	h.join("a", 1, "h1")
	h.d.Result("a", Result{TaskID: old[0].ID, Dist: dist("x", 100, score.Hit{Name: "bad", Weight: 100})}, t0)
	if len(h.outcomes()) != 0 || h.d.Snapshot().Counters.ResultsLate != 1 {
		t.Fatalf("late result not dropped: outcomes=%d counters=%+v", len(h.outcomes()), h.d.Snapshot().Counters)
	}
	h.d.Result("b", Result{TaskID: nb[0].ID, Dist: &score.Distribution{}}, t0)
	outs := h.outcomes()
	if len(outs) != 1 || outs[0].Package.Score != 0 {
		t.Fatalf("outcomes = %+v", outs)
	}
}

func TestFailureFailsJobOnce(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.join("a", 2, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2", "u3")}, t0)
	ts := a.take()
	if len(ts) != 2 {
		t.Fatalf("got %d tasks", len(ts))
	}
	h.d.Result("a", Result{TaskID: ts[1].ID, Failure: "distribution u2: HTTP 404 Not Found"}, t0)
	// The third task is never sent; the first finishes as an orphan.
	h.d.Result("a", Result{TaskID: ts[0].ID, Dist: &score.Distribution{}}, t0)
	if n := len(a.take()); n != 0 {
		t.Fatalf("sent %d tasks of a failed job", n)
	}
	outs := h.outcomes()
	if len(outs) != 1 || outs[0].Failure != "distribution u2: HTTP 404 Not Found" {
		t.Fatalf("outcomes = %+v", outs)
	}
	if s := h.d.Snapshot(); s.TasksWaiting != 0 || s.TasksRunning != 0 || s.JobsInFlight != 0 {
		t.Fatalf("state not clean: %+v", s)
	}
}

func TestExpireDropsUndispatchedJobs(t *testing.T) {
	h := newHarness(t, Config{LeaseTimeout: time.Minute})
	a := h.join("a", 1, "h1")
	h.d.Admit([]Job{mkJob("first", "u1"), mkJob("second", "u2")}, t0)
	ts := a.take()
	if len(ts) != 1 || ts[0].Name != "first" {
		t.Fatalf("oldest job not first: %+v", ts)
	}
	if dropped := h.d.Expire(t0.Add(59 * time.Second)); len(dropped) != 0 {
		t.Fatalf("dropped before the lease ended: %+v", dropped)
	}
	dropped := h.d.Tick(t0.Add(time.Minute)).Dropped
	if len(dropped) != 1 || dropped[0].Name != "second" {
		t.Fatalf("dropped = %+v, want only the undispatched job", dropped)
	}
	h.d.Result("a", Result{TaskID: ts[0].ID, Dist: &score.Distribution{}}, t0.Add(61*time.Second))
	outs := h.outcomes()
	if len(outs) != 1 || outs[0].Job.Name != "first" {
		t.Fatalf("outcomes = %+v", outs)
	}
	if n := len(a.take()); n != 0 {
		t.Fatalf("dropped job's task was sent later (%d tasks)", n)
	}
}

func TestSupersededLeaseKeepsProgress(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.join("a", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
	ts := a.take()
	h.d.Result("a", Result{TaskID: ts[0].ID, Dist: &score.Distribution{}}, t0)
	re := mkJob("p", "u1", "u2")
	re.Attempt, re.AssignmentID, re.LeasedAt = intp(2), strp("second-lease"), t0.Add(2*time.Minute)
	h.d.Admit([]Job{re}, t0.Add(2*time.Minute))
	ts = a.take()
	if len(ts) != 1 || ts[0].URL != "u2" {
		t.Fatalf("re-lease restarted the job: %+v", ts)
	}
	h.d.Result("a", Result{TaskID: ts[0].ID, Dist: &score.Distribution{}}, t0)
	outs := h.outcomes()
	if len(outs) != 1 || *outs[0].Job.Attempt != 2 || *outs[0].Job.AssignmentID != "second-lease" {
		t.Fatalf("outcome does not carry the newest lease: %+v", outs)
	}
	if c := h.d.Snapshot().Counters; c.JobsSuperseded != 1 || c.JobsAdmitted != 1 {
		t.Fatalf("counters = %+v", c)
	}
}

func TestJobLimitsAndEmptyJobs(t *testing.T) {
	h := newHarness(t, Config{MaxDistributions: 2, Prefetch: 1})
	h.d.Admit([]Job{mkJob("empty"), mkJob("many", "u1", "u2", "u3")}, t0)
	outs := h.outcomes()
	if len(outs) != 2 {
		t.Fatalf("outcomes = %d", len(outs))
	}
	if outs[0].Failure != "" || outs[0].Package.Score != 0 || outs[0].InspectorURL != "" || len(outs[0].Package.RulesMatched) != 0 {
		t.Fatalf("empty job = %+v", outs[0])
	}
	if want := "3 distributions: exceeds limit DRAGONFLY_MAX_DISTRIBUTIONS (2 distributions)"; outs[1].Failure != want {
		t.Fatalf("failure = %q, want %q", outs[1].Failure, want)
	}
}

// TestTextLimitsAtTheBoundary: a distribution URL of protocol.MaxURLBytes
// and a name or version of protocol.MaxTextBytes are sent to a worker; one
// byte more fails the job at Admit, naming the limit, and nothing is sent.
func TestTextLimitsAtTheBoundary(t *testing.T) {
	const prefix = "https://h/p/"
	for _, tc := range []struct {
		name  string
		limit int
		job   func(n int) Job
	}{
		{"url", protocol.MaxURLBytes, func(n int) Job { return mkJob("p", prefix+strings.Repeat("u", n-len(prefix))) }},
		{"name", protocol.MaxTextBytes, func(n int) Job { return mkJob(strings.Repeat("n", n), "u1") }},
		{"version", protocol.MaxTextBytes, func(n int) Job {
			j := mkJob("p", "u1")
			j.Version = strings.Repeat("v", n)
			return j
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{Prefetch: 1})
			a := h.join("a", 1, "h1")
			h.d.Admit([]Job{tc.job(tc.limit)}, t0)
			if got := a.take(); len(got) != 1 || len(h.outcomes()) != 0 {
				t.Fatalf("%s of %d bytes (the limit): %d tasks sent, %d jobs finished; want 1 and 0", tc.name, tc.limit, len(got), len(h.outcomes()))
			}
			h = newHarness(t, Config{Prefetch: 1})
			a = h.join("a", 1, "h1")
			h.d.Admit([]Job{tc.job(tc.limit + 1)}, t0)
			outs := h.outcomes()
			if got := a.take(); len(got) != 0 || len(outs) != 1 || !strings.Contains(outs[0].Failure, "exceeds the limit") {
				t.Fatalf("%s of %d bytes (one over): %d tasks sent, outcomes %.300v; want none sent, the job failed naming the limit", tc.name, tc.limit+1, len(got), outs)
			}
		})
	}
}

// TestDrainAll: after DrainAll no session gets a task, those present nor
// those that join later, so once the handed-back tasks are in, nothing is
// outstanding and stays so (what the coordinator's shutdown waits for).
func TestDrainAll(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	a := h.join("a", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
	h.d.Admit([]Job{mkJob("q", "u3")}, t0) // leased after p: p's tasks go first
	ts := a.take()
	if len(ts) != 2 {
		t.Fatalf("got %d tasks, want 2", len(ts))
	}
	h.d.DrainAll()
	h.d.Returned("a", []uint64{ts[1].ID})
	h.d.Result("a", Result{TaskID: ts[0].ID, Dist: &score.Distribution{}}, t0)
	b := h.join("b", 2, "h1")
	if got := append(a.take(), b.take()...); len(got) != 0 {
		t.Fatalf("tasks assigned after DrainAll: %+v", got)
	}
	if s := h.d.Snapshot(); s.TasksRunning != 0 || s.JobsInFlight != 2 {
		t.Fatalf("tasks running %d, jobs in flight %d; want 0 and 2", s.TasksRunning, s.JobsInFlight)
	}
}

// TestDeliveringCountsJobsOnTheirWayToDone: a finished job leaves
// JobsInFlight before Done receives it (Done runs without the lock);
// Snapshot.Delivering counts it until Done returns, so a shutdown that
// waits for the jobs in flight does not flush the reports before this one
// is among them (it was left out, and without a durable outbox lost).
func TestDeliveringCountsJobsOnTheirWayToDone(t *testing.T) {
	var d *Dispatcher
	var during Snapshot
	d = New(Config{Done: func(Outcome) { during = d.Snapshot() }})
	a := &sink{}
	if err := d.Join("a", "a", 1, a, t0); err != nil {
		t.Fatal(err)
	}
	d.RulesReady("a", "h1")
	d.Admit([]Job{mkJob("p", "u1")}, t0)
	ts := a.take()
	if len(ts) != 1 {
		t.Fatalf("got %d tasks, want 1", len(ts))
	}
	d.Result("a", Result{TaskID: ts[0].ID, Dist: &score.Distribution{}}, t0)
	if during.JobsInFlight != 0 || during.Delivering != 1 {
		t.Fatalf("during Done: jobs in flight %d, delivering %d; want 0 and 1", during.JobsInFlight, during.Delivering)
	}
	if n := d.Snapshot().Delivering; n != 0 {
		t.Fatalf("after Done: delivering %d, want 0", n)
	}
}

// TestDrainAllEndsChecksWhoseCopyCannotCome: draining, a spot check whose
// second copy was handed back (no copy is assigned while draining) is
// skipped as when no other identity is ready, and the job finishes with
// the first result; a check whose second copy is still running waits for
// it. The coordinator's clock, which ended such checks, stops when it
// drains: the job was left unreported and the API leased it again.
func TestDrainAllEndsChecksWhoseCopyCannotCome(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 1})
	a := h.joinAs("a", "A", 1, "h1")
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	ta, tb := one(t, a), one(t, b) // the first copy and the check copy
	h.d.Result("a", Result{TaskID: ta.ID, Dist: clean()}, t0)
	h.d.DrainAll()
	if n := len(h.outcomes()); n != 0 {
		t.Fatalf("%d jobs finished while the check copy runs, want none", n)
	}
	h.d.Returned("b", []uint64{tb.ID})
	outs := h.outcomes()
	if len(outs) != 1 || outs[0].Failure != "" {
		t.Fatalf("outcomes %+v, want the job finished with its first result", outs)
	}
	if ev := h.eventsOf(EventVerifySkipped); len(ev) != 1 {
		t.Fatalf("verify skipped %+v, want one", ev)
	}
	if s := h.d.Snapshot(); s.JobsInFlight != 0 || s.TasksRunning != 0 {
		t.Fatalf("jobs in flight %d, tasks running %d; want 0 and 0", s.JobsInFlight, s.TasksRunning)
	}
}

// checkedBesideABusyIdentity starts a harness where the session id of
// identity busy holds an unchecked job q (so it could back up a copy, but
// has no free slot), then admits job p, picked for a spot check, for the
// sessions a (identity A) and b (identity B) it returns.
func checkedBesideABusyIdentity(t *testing.T, id, busy string) (*harness, *sink, *sink) {
	t.Helper()
	h := newHarness(t, Config{VerifyRate: 0.5, Rand: seq(0.99, 0)})
	s := h.joinAs(id, busy, 1, "h1")
	h.d.Admit([]Job{mkJob("q", "u0")}, t0) // not checked: keeps it busy
	one(t, s)
	a := h.joinAs("a", "A", 1, "h1")
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	return h, a, b
}

// TestDrainWaitsForAnOverdueCheckCopyStillRunning: a spot check copy
// overdue when the dispatcher drains still runs and may answer (the drain
// waits for it: a task is running); the check is not skipped meanwhile. A
// liar's clean first result is not reported unchecked: the check copy's
// verdict is compared, and without a third identity the fail-safe rule
// reports the malicious one.
func TestDrainWaitsForAnOverdueCheckCopyStillRunning(t *testing.T) {
	h, a, b := checkedBesideABusyIdentity(t, "c", "C")
	ta, tb := one(t, a), one(t, b) // the first copy and the check copy
	h.d.Result("a", Result{TaskID: ta.ID, Dist: clean()}, at(10))
	h.d.Tick(at(45)) // b's check copy is overdue; C, busy, could back it up
	if n := len(h.outcomes()); n != 0 {
		t.Fatalf("%d jobs finished before draining, want none", n)
	}
	h.d.DrainAll()
	h.d.Tick(at(46)) // the coordinator's clock may still run
	for _, o := range h.outcomes() {
		if o.Job.Name == "p" {
			t.Fatalf("job p finished while its check copy runs: %+v", o)
		}
	}
	if s := h.d.Snapshot(); s.TasksRunning == 0 {
		t.Fatal("no task running: the drain would not wait for the check copy")
	}
	h.d.Result("b", Result{TaskID: tb.ID, Dist: bad()}, at(50))
	if o := outcomeOf(t, h, "p"); o.Failure != "" || o.Package.Score != 100 || o.Verified != 1 {
		t.Fatalf("outcome %+v, want the check copy's verdict (score 100) by the fail-safe rule", o)
	}
}

// TestDrainWaitsForAnOverdueThirdCopyStillRunning: a mismatch's deciding
// copy overdue when the dispatcher drains is waited for, not settled by the
// fail-safe rule without it: its vote makes the majority that quarantines
// the liar.
func TestDrainWaitsForAnOverdueThirdCopyStillRunning(t *testing.T) {
	h, a, b := checkedBesideABusyIdentity(t, "d", "D")
	c := h.joinAs("c", "C", 1, "h1")
	ta, tb := one(t, a), one(t, b)
	h.d.Result("a", Result{TaskID: ta.ID, Dist: clean()}, at(1))
	h.d.Result("b", Result{TaskID: tb.ID, Dist: bad()}, at(2))
	tc := one(t, c)  // the deciding copy
	h.d.Tick(at(45)) // c's copy is overdue; D, busy, could back it up
	h.d.DrainAll()
	for _, o := range h.outcomes() {
		if o.Job.Name == "p" {
			t.Fatalf("job p finished while its deciding copy runs: %+v", o)
		}
	}
	h.d.Result("c", Result{TaskID: tc.ID, Dist: bad()}, at(50))
	if o := outcomeOf(t, h, "p"); o.Failure != "" || o.Package.Score != 100 || !h.d.Quarantined("A") {
		t.Fatalf("outcome %+v, A quarantined %v; want score 100 by majority and A quarantined", o, h.d.Quarantined("A"))
	}
}

func TestDrainAndReturn(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	a := h.join("a", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
	ts := a.take()
	if len(ts) != 2 {
		t.Fatalf("got %d", len(ts))
	}
	h.d.Drain("a")
	h.d.Returned("a", []uint64{ts[1].ID})
	if n := len(a.take()); n != 0 {
		t.Fatal("draining session got tasks")
	}
	b := h.join("b", 1, "h1")
	got := b.take()
	if len(got) != 1 || got[0].URL != "u2" {
		t.Fatalf("handed-back task not re-dispatched: %+v", got)
	}
}
