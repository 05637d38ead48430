package dispatch

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBouncerCannotStallReleases (review H1): a worker that hands every
// task back at once, next to an honest one with fewer slots that takes 7 s
// a task (so the bouncer, always empty, looks the least loaded). A returned
// task waits for the other identity rather than going back to the bouncer:
// every release is reported within its lease, from the honest worker's
// results, and each task is bounced at most once.
func TestBouncerCannotStallReleases(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	bouncer := h.joinAs("b", "bouncer", 64, "h1")
	honest := h.joinAs("w1", "honest", 4, "h1")
	leased, bounced := 0, 0
	type held struct {
		id  uint64
		due int
	}
	var running []held
	for sec := 0; sec <= 240; sec++ {
		now := at(sec)
		if sec%5 == 0 && sec <= 100 {
			j := mkJob(fmt.Sprintf("j%03d", sec), fmt.Sprintf("j%03d-a", sec), fmt.Sprintf("j%03d-b", sec))
			j.LeasedAt = now
			leased++
			h.d.Admit([]Job{j}, now)
		}
		h.d.Tick(now)
		for range 3 { // a few round trips per second
			got := bouncer.take()
			bounced += len(got)
			h.d.Returned("b", ids(got))
		}
		for _, tk := range honest.take() {
			running = append(running, held{tk.ID, sec + 7})
		}
		for len(running) > 0 && running[0].due <= sec {
			h.d.Result("w1", Result{TaskID: running[0].id, Dist: clean()}, now)
			running = running[1:]
		}
	}
	honestInTime(t, h, leased)
	s := h.d.Snapshot()
	if bounced == 0 || bounced > 2*leased {
		t.Fatalf("bounced %d copies of %d tasks: a returned task went back to the bouncer", bounced, 2*leased)
	}
	if s.Counters.TasksReturned != int64(bounced) || sessionOf(t, s, "b").Returned != int64(bounced) || identityOf(t, s, "bouncer").Returned != int64(bounced) {
		t.Fatalf("returns not counted: %+v", s)
	}
}

// TestReturnsSuspendSession: more than slots + prefetch returns within a
// minute from a session not draining suspend it for two minutes (event,
// snapshot, no tasks meanwhile, its credits not counted); returns while
// draining and returns of ids it does not hold are no strikes.
func TestReturnsSuspendSession(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1, LeaseTimeout: 10 * time.Minute})
	b := h.joinAs("b", "B", 2, "h1") // limit: 2 slots + 1 prefetch = 3 returns a minute
	urls := make([]string, 20)
	for i := range urls {
		urls[i] = fmt.Sprintf("u%d", i)
	}
	h.d.Admit([]Job{mkJob("p", urls...)}, t0)
	// Three returns at 0 s and one at 61 s: never more than 3 within a minute.
	h.d.Returned("b", ids(b.take()))
	h.d.Returned("b", []uint64{999_999}) // not held: ignored
	h.d.Tick(at(61))
	got := b.take()
	if len(got) != 3 {
		t.Fatalf("b got %d tasks back after returning 3, want 3", len(got))
	}
	h.d.Returned("b", ids(got[:1]))
	if s := h.d.Snapshot(); !sessionOf(t, s, "b").SuspendedUntil.IsZero() || s.Counters.SessionsSuspended != 0 {
		t.Fatalf("suspended too early: %+v", s)
	}
	// Three more within the minute: 4 > 3.
	got = append(got[1:], b.take()...)
	h.d.Tick(at(62))
	h.d.Returned("b", ids(got))
	s := h.d.Snapshot()
	if until := sessionOf(t, s, "b").SuspendedUntil; !until.Equal(at(62).Add(2*time.Minute)) || s.Counters.SessionsSuspended != 1 {
		t.Fatalf("not suspended: until %v, %+v", until, s.Counters)
	}
	if ev := h.eventsOf(EventSessionSuspended); len(ev) != 1 || ev[0].Session != "b" || ev[0].Identity != "B" || !strings.Contains(ev[0].Reason, "more than 3 tasks") {
		t.Fatalf("events = %+v", ev)
	}
	if n := len(b.take()); n != 0 {
		t.Fatalf("suspended session got %d tasks", n)
	}
	if c := h.d.Capacity(""); c >= 0 {
		t.Fatalf("capacity %d counts the suspended session's credits", c)
	}
	h.d.Tick(at(62 + 119))
	if n := len(b.take()); n != 0 {
		t.Fatalf("got %d tasks before the suspension ended", n)
	}
	ch := h.d.Changed()
	h.d.Tick(at(62 + 120))
	got = b.take()
	if len(got) != 3 {
		t.Fatalf("got %d tasks after the suspension, want 3", len(got))
	}
	select {
	case <-ch:
	default:
		t.Fatal("the end of a suspension did not signal a change (capacity grew)")
	}

	// Draining: hand-backs are no strikes.
	h.d.Tick(at(200))
	h.d.Drain("b")
	h.d.Returned("b", ids(got))
	s = h.d.Snapshot()
	if c := s.Counters; c.TasksReturned != 7 || c.SessionsSuspended != 1 || s.TasksWaiting != 20 {
		t.Fatalf("counters = %+v, waiting %d", c, s.TasksWaiting)
	}
}

// TestDrainingReturnsAreNoStrikes: a draining session hands its whole queue
// back: no strike, no avoidance.
func TestDrainingReturnsAreNoStrikes(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	a := h.joinAs("a", "A", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
	ts := a.take()
	h.d.Drain("a")
	h.d.Returned("a", ids(ts))
	s := h.d.Snapshot()
	if s.Counters.TasksReturned != 0 || s.Counters.TasksRequeued != 2 || sessionOf(t, s, "a").Returned != 0 {
		t.Fatalf("counters = %+v", s.Counters)
	}
	// A session of the same identity takes them (no avoidance recorded).
	a2 := h.joinAs("a2", "A", 2, "h1")
	if n := len(a2.take()); n != 2 {
		t.Fatalf("a2 got %d", n)
	}
}

// TestReturnedAvoidsReturner: a returned task goes to another identity, busy
// or not, then to another session of the returning identity; back to the
// returning session only when nobody else could take it.
func TestReturnedAvoidsReturner(t *testing.T) {
	h := newHarness(t, Config{})
	a1 := h.joinAs("a1", "A", 1, "h1")
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("busy", "x")}, t0)
	one(t, a1) // a1 holds x: p's u1 goes to b's free slot first
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	tb := one(t, b)
	h.d.Returned("b", []uint64{tb.ID})
	if n := len(b.take()); n != 0 {
		t.Fatal("returned task went back to the returner while A could take it")
	}
	// A is busy: u1 waits for it rather than going back to b.
	if s := h.d.Snapshot(); s.TasksWaiting != 1 {
		t.Fatalf("waiting = %d", s.TasksWaiting)
	}
	// A sits on x: once its copy is overdue, A is no reason to wait (a
	// silent identity's full queue): u1 goes back to b, the only other.
	u1At45(t, h, b)

	// One identity, two sessions: the other session first, busy or not.
	h2 := newHarness(t, Config{})
	s1 := h2.joinAs("s1", "C", 1, "h1")
	s2 := h2.joinAs("s2", "C", 1, "h1")
	h2.d.Admit([]Job{mkJob("q", "v1"), mkJob("r", "w1")}, t0)
	tk, busy := one(t, s1), one(t, s2)
	h2.d.Returned("s1", []uint64{tk.ID})
	if n := len(s1.take()); n != 0 {
		t.Fatal("returning session got its task back while another session of its identity could take it")
	}
	h2.d.Result("s2", Result{TaskID: busy.ID, Dist: clean()}, at(1))
	if got := one(t, s2); got.URL != "v1" {
		t.Fatalf("s2 got %+v", got)
	}
}

// TestOverdueFromFirstDispatch: a copy that replaces a returned one is as old
// as the task's first dispatch: bouncing cannot keep a task young and
// unbacked.
func TestOverdueFromFirstDispatch(t *testing.T) {
	h, _, ta := heldByA(t, Config{})
	s := h.joinAs("s", "S", 1, "h1") // will sit on it
	h.d.Tick(at(30))
	h.d.Returned("a", []uint64{ta.ID}) // at 30 s
	if tk := one(t, s); tk.URL != "u1" {
		t.Fatalf("s got %+v", tk)
	}
	c := h.joinAs("c", "C", 1, "h1")
	c.take()
	// Prior 15 s: overdue 45 s after the first dispatch (0 s), not after
	// s's copy (30 s).
	u1At45(t, h, c)
	if ev := h.eventsOf(EventBackupDispatched); len(ev) != 1 || ev[0].From != "S" {
		t.Fatalf("events = %+v", ev)
	}
	// The backup's own clock starts at its dispatch: no backup of it at 46 s.
	h.joinAs("e", "E", 1, "h1")
	h.d.Tick(at(46))
	if n := h.d.Snapshot().Counters.BackupsDispatched; n != 1 {
		t.Fatalf("%d backups", n)
	}
}

// TestBouncerAloneDropsJobOnce: with nobody but a bouncer to take a task, it
// is suspended after its returns and the job ends exactly once: dropped when
// its lease ends, never reported.
func TestBouncerAloneDropsJobOnce(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	dropped, bounces := 0, 0
	for sec := 0; sec <= 200; sec++ {
		for range 100 {
			got := b.take()
			if len(got) == 0 {
				break
			}
			bounces += len(got)
			h.d.Returned("b", ids(got))
		}
		r := h.d.Tick(at(sec))
		dropped += len(r.Dropped) + len(r.Abandoned)
	}
	if dropped != 1 || len(h.outcomes()) != 0 {
		t.Fatalf("dropped %d, outcomes %+v", dropped, h.outcomes())
	}
	if bounces > 3 {
		t.Fatalf("%d bounces: the session was not suspended after 3", bounces)
	}
	if s := h.d.Snapshot(); s.JobsInFlight != 0 || s.TasksWaiting != 0 || s.Counters.JobsDropped != 1 {
		t.Fatalf("snapshot = %+v", s)
	}
}

// TestSilentIdentityCannotCaptureWork (review H4): silent sessions claiming
// 64 slots each take work, but identities take turns: the honest identity
// gets work from the start, overdue copies are backed up to it (not to
// other silent identities), and every release is reported within its
// lease. Once as three sessions of one identity, once as three identities.
func TestSilentIdentityCannotCaptureWork(t *testing.T) {
	for _, tc := range []struct {
		name       string
		identities []string
	}{
		{"one identity, three sessions", []string{"silent", "silent", "silent"}},
		{"three identities", []string{"silent-0", "silent-1", "silent-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{Prefetch: 1})
			var silent []*sink
			for i, id := range tc.identities {
				silent = append(silent, h.joinAs(fmt.Sprintf("s%d", i), id, 64, "h1"))
			}
			honest := h.joinAs("w1", "honest", 4, "h1")
			leased, honestGot, silentGot := 0, 0, 0
			for sec := 0; sec <= 17*60; sec++ {
				now := at(sec)
				if sec%5 == 0 && sec <= 100 {
					j := mkJob(fmt.Sprintf("j%03d", sec), fmt.Sprintf("j%03d-a", sec), fmt.Sprintf("j%03d-b", sec), fmt.Sprintf("j%03d-c", sec))
					j.LeasedAt = now
					leased++
					h.d.Admit([]Job{j}, now)
				}
				h.d.Tick(now)
				for _, tk := range honest.take() {
					honestGot++
					h.d.Result("w1", Result{TaskID: tk.ID, Dist: clean()}, now)
				}
				for _, s := range silent {
					silentGot += len(s.take())
				}
				// Fresh identities look alike: each takes a turn, the
				// honest one by the fourth release.
				if sec == 15 && honestGot == 0 {
					t.Fatal("the honest worker got nothing in the first 15 s")
				}
			}
			honestInTime(t, h, leased)
			c := h.d.Snapshot().Counters
			if silentGot < 3 || c.BackupsDispatched == 0 || c.BackupsWon != c.BackupsDispatched {
				t.Fatalf("silent got %d; counters %+v", silentGot, c)
			}
			for _, e := range h.eventsOf(EventBackupDispatched) {
				if e.Identity != "honest" {
					t.Fatalf("backup to %s, a silent identity", e.Identity)
				}
			}
		})
	}
}

// TestIdentityCreditCap: many sessions of one identity count at most
// MaxIdentityCredits toward Capacity and hold at most that many tasks.
func TestIdentityCreditCap(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	for i := range 100 {
		h.joinAs(fmt.Sprintf("s%03d", i), "many", 64, "h1") // 100 x 65 credits
	}
	h.joinAs("w1", "honest", 4, "h1")
	if c := h.d.Capacity(""); c != DefaultMaxIdentityCredits+5 {
		t.Fatalf("capacity %d, want %d (the cap) + 5", c, DefaultMaxIdentityCredits+5)
	}
	urls := make([]string, DefaultMaxDistributions)
	for i := range urls {
		urls[i] = fmt.Sprintf("u%d", i)
	}
	var jobs []Job
	for i := range 4 {
		jobs = append(jobs, mkJob(fmt.Sprintf("j%d", i), urls...))
	}
	h.d.Admit(jobs, t0)
	s := h.d.Snapshot()
	many, honest := identityOf(t, s, "many"), identityOf(t, s, "honest")
	if many.Outstanding != DefaultMaxIdentityCredits || many.Credits != 0 || many.Sessions != 100 {
		t.Fatalf("many = %+v", many)
	}
	if honest.Outstanding != 5 || honest.Credits != 0 {
		t.Fatalf("honest = %+v", honest)
	}
	if s.TasksWaiting != 4*DefaultMaxDistributions-DefaultMaxIdentityCredits-5 {
		t.Fatalf("waiting = %d", s.TasksWaiting)
	}
	if d := New(Config{MaxIdentityCredits: 7}); d.cfg.MaxIdentityCredits != 7 {
		t.Fatal("MaxIdentityCredits not kept")
	}
}

// TestSharedIdentityCrashStorm (review H5): every worker shares one
// identity (one client certificate for the whole Deployment). A distribution
// that kills the worker scanning it fails its job after three sessions lost
// it, saying that losses were counted per session.
func TestSharedIdentityCrashStorm(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 1, Prefetch: 1})
	const id = "cert:CN=dragonfly-worker"
	n := 0
	join := func() {
		n++
		h.joinAs(fmt.Sprintf("w%d", n), id, 4, "h1")
	}
	for range 10 {
		join()
	}
	h.d.Admit([]Job{mkJob("poison", "poison-1.0.tar.gz")}, t0)
	crashes := 0
	for sec := 0; sec < 120 && len(h.outcomes()) == 0; sec++ {
		for _, sid := range slices.Sorted(func(yield func(string) bool) {
			for k := range h.sinks {
				if !yield(k) {
					return
				}
			}
		}) {
			for _, tk := range h.sinks[sid].take() {
				h.d.Started(sid, []uint64{tk.ID}, at(sec))
				h.d.Leave(sid, LeaveLost) // the worker process died on it
				delete(h.sinks, sid)
				crashes++
				join() // restarted by its Deployment
			}
		}
		h.d.Tick(at(sec))
	}
	o := outcomeOf(t, h, "poison")
	for _, want := range []string{"distribution poison-1.0.tar.gz", "lost by 3 worker sessions while scanning it", "of " + id, "counted per session: fewer than 3 worker identities were ready", "may crash scanners"} {
		if !strings.Contains(o.Failure, want) {
			t.Fatalf("failure %q lacks %q", o.Failure, want)
		}
	}
	if crashes != 3 {
		t.Fatalf("%d crashes before the job failed, want 3", crashes)
	}
	if c := h.d.Snapshot().Counters; c.JobsLostFailed != 1 || c.TasksLost != 3 {
		t.Fatalf("counters = %+v", c)
	}
	if ev := h.eventsOf(EventLostFailed); len(ev) != 1 || ev[0].Reason != o.Failure {
		t.Fatalf("events = %+v", ev)
	}
}

// TestLossesPerSessionOnceFew: a task lost once while only two identities
// were ready keeps counting per session after a third identity joins.
func TestLossesPerSessionOnceFew(t *testing.T) {
	h := newHarness(t, Config{})
	h.d.Admit([]Job{mkJob("p", "crash")}, t0)
	lose := func(sid, identity string) {
		t.Helper()
		tk := one(t, h.joinAs(sid, identity, 1, "h1"))
		h.d.Started(sid, []uint64{tk.ID}, t0)
		h.d.Leave(sid, LeaveLost)
	}
	lose("a1", "A") // alone: per session from now on
	h.joinAs("x", "X", 1, "h2")
	h.joinAs("y", "Y", 1, "h2")
	lose("a2", "A")
	if len(h.outcomes()) != 0 {
		t.Fatal("failed after two losses")
	}
	lose("a3", "A")
	if o := outcomeOf(t, h, "p"); !strings.Contains(o.Failure, "sessions a1, a2, a3 of A") {
		t.Fatalf("failure = %q", o.Failure)
	}
}

// TestNoVerdictRetried (review M1): a download, host or limit failure of a task
// not spot-checked gets one more copy on another identity; that copy's
// result is the task's, and nobody is quarantined.
func TestNoVerdictRetried(t *testing.T) {
	dl := func(id uint64) Result {
		return Result{TaskID: id, Failure: "distribution u1: HTTP 503", FailureKind: KindDownload}
	}
	// retried: a's download failure at 1 s is retried on b (identity B).
	retried := func(t *testing.T) (*harness, *sink) {
		h, a, ta := heldByA(t, Config{})
		b := h.joinAs("b", "B", 1, "h1")
		h.d.Result("a", dl(ta.ID), at(1))
		one(t, b)
		return h, a
	}
	t.Run("retry scans it", func(t *testing.T) {
		h, _, ta := heldByA(t, Config{})
		b := h.joinAs("b", "B", 1, "h1")
		a2 := h.joinAs("a2", "A", 1, "h1") // the failing identity's other session
		h.d.Result("a", dl(ta.ID), at(1))
		if len(h.outcomes()) != 0 {
			t.Fatal("a no-verdict failure was final with another identity ready")
		}
		if n := len(a2.take()); n != 0 {
			t.Fatal("the retry went to the failing identity")
		}
		tb := one(t, b)
		if ev := h.eventsOf(EventNoVerdictRetry); len(ev) != 1 || ev[0].Identity != "A" || ev[0].TaskID != ta.ID || !strings.Contains(ev[0].Reason, "HTTP 503") {
			t.Fatalf("events = %+v", ev)
		}
		h.d.Result("b", Result{TaskID: tb.ID, Dist: bad()}, at(2))
		o := outcomeOf(t, h, "p")
		if o.Failure != "" || o.Package.Score != 100 || !slices.Equal(o.Identities, []string{"B"}) {
			t.Fatalf("outcome = %+v", o)
		}
		s := h.d.Snapshot()
		if h.d.Quarantined("A") || identityOf(t, s, "A").NoVerdictFailures != 1 || identityOf(t, s, "B").NoVerdictFailures != 0 {
			t.Fatalf("identities = %+v", s.Identities)
		}
		if c := s.Counters; c.NoVerdictRetries != 1 || c.NoVerdictOverruled != 1 || c.NoVerdictConfirmed != 0 {
			t.Fatalf("counters = %+v", c)
		}
		// A's count outlives its sessions.
		h.d.Leave("a", LeaveClean)
		h.d.Leave("a2", LeaveClean)
		if x := identityOf(t, h.d.Snapshot(), "A"); x.Sessions != 0 || x.NoVerdictFailures != 1 {
			t.Fatalf("A = %+v", x)
		}
	})
	t.Run("a host one worker refuses is retried", func(t *testing.T) {
		// A's DRAGONFLY_ALLOWED_HOSTS is narrower than the fleet's: its
		// refusal says nothing about the release, and was final.
		h, _, ta := heldByA(t, Config{})
		b := h.joinAs("b", "B", 1, "h1")
		h.d.Result("a", Result{TaskID: ta.ID, Failure: "distribution u1: host files.example not allowed", FailureKind: KindHost}, at(1))
		tb := one(t, b)
		h.d.Result("b", Result{TaskID: tb.ID, Dist: bad()}, at(2))
		if o := outcomeOf(t, h, "p"); o.Failure != "" || o.Package.Score != 100 {
			t.Fatalf("outcome = %+v, want b's scan", o)
		}
		if h.d.Quarantined("A") {
			t.Fatal("a host refusal quarantined its worker")
		}
	})
	t.Run("retry fails too", func(t *testing.T) {
		h := newHarness(t, Config{})
		a := h.joinAs("a", "A", 1, "h1")
		b := h.joinAs("b", "B", 1, "h1")
		c := h.joinAs("c", "C", 1, "h1")
		h.d.Admit([]Job{mkJob("p", "u1")}, t0)
		ta := one(t, a)
		h.d.Result("a", dl(ta.ID), at(1))
		tb := one(t, b)
		h.d.Result("b", Result{TaskID: tb.ID, Failure: "distribution u1: 600 MB expanded: exceeds limit", FailureKind: KindLimit}, at(2))
		o := outcomeOf(t, h, "p")
		if !strings.Contains(o.Failure, "exceeds limit") || !slices.Equal(o.Identities, []string{"B"}) {
			t.Fatalf("outcome = %+v", o)
		}
		if n := len(c.take()); n != 0 {
			t.Fatalf("a second retry (%d copies)", n)
		}
		if c := h.d.Snapshot().Counters; c.NoVerdictRetries != 1 || c.NoVerdictConfirmed != 1 || c.Quarantines != 0 {
			t.Fatalf("counters = %+v", c)
		}
	})
	t.Run("no other identity", func(t *testing.T) {
		h := newHarness(t, Config{})
		a := h.joinAs("a", "A", 1, "h1")
		h.joinAs("a2", "A", 1, "h1")
		h.d.Admit([]Job{mkJob("p", "u1")}, t0)
		var sid string
		var tk Task
		for _, id := range []string{"a", "a2"} {
			for _, x := range h.sinks[id].take() {
				sid, tk = id, x
			}
		}
		_ = a
		h.d.Result(sid, dl(tk.ID), at(1))
		if o := outcomeOf(t, h, "p"); !strings.Contains(o.Failure, "HTTP 503") {
			t.Fatalf("outcome = %+v", o)
		}
		if n := h.d.Snapshot().Counters.NoVerdictRetries; n != 0 {
			t.Fatalf("%d retries", n)
		}
	})
	t.Run("lease ending", func(t *testing.T) {
		h, _, ta := heldByA(t, Config{})
		h.joinAs("b", "B", 1, "h1")
		// Prior 15 s: reserve 25 s: no retry from 95 s on.
		h.d.Result("a", dl(ta.ID), at(95))
		if o := outcomeOf(t, h, "p"); !strings.Contains(o.Failure, "HTTP 503") {
			t.Fatalf("outcome = %+v", o)
		}
	})
	t.Run("retry unanswered", func(t *testing.T) {
		h, _ := retried(t) // and b never answers
		for sec := 2; sec < 95; sec++ {
			h.d.Tick(at(sec))
		}
		if len(h.outcomes()) != 0 {
			t.Fatal("gave up before the lease was ending")
		}
		h.d.Tick(at(95))
		o := outcomeOf(t, h, "p")
		if !strings.Contains(o.Failure, "HTTP 503") || !slices.Equal(o.Identities, []string{"A"}) || o.Finished.After(at(95)) {
			t.Fatalf("outcome = %+v", o)
		}
		if c := h.d.Snapshot().Counters; c.NoVerdictConfirmed != 1 {
			t.Fatalf("counters = %+v", c)
		}
	})
	t.Run("retry session leaves, nobody else", func(t *testing.T) {
		h, a := retried(t)
		h.d.Leave("b", LeaveCut)
		if n := len(a.take()); n != 0 {
			t.Fatal("the retry went back to the failing identity")
		}
		h.d.Tick(at(2))
		if o := outcomeOf(t, h, "p"); !strings.Contains(o.Failure, "HTTP 503") {
			t.Fatalf("outcome = %+v", o)
		}
	})
	t.Run("verdict failures stay final", func(t *testing.T) {
		h, _, b, ta := heldByAWithB(t, Config{})
		b.take()
		h.d.Result("a", Result{TaskID: ta.ID, Failure: "distribution u1: corrupt archive", FailureKind: "FAILURE_KIND_PARSE"}, at(1))
		if o := outcomeOf(t, h, "p"); o.Failure != "distribution u1: corrupt archive" {
			t.Fatalf("outcome = %+v", o)
		}
	})
	t.Run("failing identity quarantined meanwhile", func(t *testing.T) {
		h, _ := retried(t)
		h.d.Quarantine("A", "operator")
		h.d.Leave("b", LeaveCut) // the retry is gone, nobody else is ready
		h.d.Tick(at(2))
		if len(h.outcomes()) != 0 {
			t.Fatalf("reported the quarantined identity's failure: %+v", h.outcomes())
		}
		c := h.joinAs("c", "C", 1, "h1")
		tc := one(t, c)
		h.d.Result("c", Result{TaskID: tc.ID, Dist: bad()}, at(3))
		o := outcomeOf(t, h, "p")
		if o.Failure != "" || o.Package.Score != 100 || !slices.Equal(o.Identities, []string{"C"}) {
			t.Fatalf("outcome = %+v", o)
		}
	})
}

// TestRepeatsDoNotPump (review L2): a repeated RulesReady and a Returned
// naming no task the session holds change nothing: no pump, no wake-up.
func TestRepeatsDoNotPump(t *testing.T) {
	h := newHarness(t, Config{})
	h.joinAs("a", "A", 1, "h1")
	pumps := h.d.pumps
	ch := h.d.Changed()
	for range 10 {
		h.d.RulesReady("a", "h1")
		h.d.Returned("a", []uint64{1, 2, 3})
		h.d.Returned("a", nil)
	}
	if h.d.pumps != pumps {
		t.Fatalf("%d pumps for repeats", h.d.pumps-pumps)
	}
	select {
	case <-ch:
		t.Fatal("repeats woke the loader")
	default:
	}
	h.d.RulesReady("a", "h2") // new: pumps and signals
	if h.d.pumps != pumps+1 {
		t.Fatal("a new hash did not pump")
	}
	select {
	case <-ch:
	default:
		t.Fatal("a new hash did not signal")
	}
}

// TestFastIdentityCannotPullBackupWait (review L7): one identity answering
// in 1 ms cannot bring the backup wait to its floor while another
// identity's tasks take 30 s.
func TestFastIdentityCannotPullBackupWait(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	fast := h.joinAs("f", "fast", 64, "h1")
	slow := h.joinAs("s", "honest", 4, "h1")
	now := t0
	for round := range 20 {
		j := mkJob(fmt.Sprintf("j%d", round), "a", "b", "c", "d", "e", "f", "g", "h", "i", "k")
		j.LeasedAt = now
		h.d.Admit([]Job{j}, now)
		for _, tk := range fast.take() {
			h.d.Result("f", Result{TaskID: tk.ID, Dist: clean()}, now.Add(time.Millisecond))
		}
		now = now.Add(30 * time.Second)
		for _, tk := range slow.take() {
			h.d.Result("s", Result{TaskID: tk.ID, Dist: clean()}, now)
		}
	}
	s := h.d.Snapshot()
	if s.TaskTime != 30*time.Second || s.BackupAfter != 60*time.Second {
		t.Fatalf("task time %s, backup after %s; want 30 s and 60 s (the ceiling)", s.TaskTime, s.BackupAfter)
	}
	// The fast identity alone: its answers count fully.
	var sp speed
	for range speedWindow {
		sp.add("fast", time.Millisecond)
	}
	if q := sp.quantile(15*time.Second, time.Second, time.Minute); q != time.Second {
		t.Fatalf("one identity: %s", q)
	}
	// A flood does not evict the other identity's samples.
	for range 8 {
		sp.add("honest", 30*time.Second)
	}
	for range 10 * speedWindow {
		sp.add("fast", time.Millisecond)
	}
	if sp.n != speedWindow || len(sp.ids["honest"].samples) != 8 {
		t.Fatalf("kept %d samples, %d of honest", sp.n, len(sp.ids["honest"].samples))
	}
	if q := sp.quantile(15*time.Second, time.Second, time.Minute); q != 30*time.Second {
		t.Fatalf("flooded: %s", q)
	}
}

func TestSessionCountAndOutstanding(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	if n := h.d.SessionCount(); n != 0 {
		t.Fatalf("count %d", n)
	}
	h.joinAs("a", "A", 1)
	h.joinAs("b", "A", 2, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
	h.d.Leave("a", LeaveClean)
	if n := h.d.SessionCount(); n != 1 {
		t.Fatalf("count %d, want 1", n)
	}
	if n, m := h.d.Outstanding("b"), h.d.Outstanding("a"); n != 2 || m != 0 {
		t.Fatalf("outstanding b %d, a %d; want 2, 0", n, m)
	}
}

// TestIdentitiesTakeTurns: an identity with three sessions and one with one
// session, all with free slots: single-task releases alternate between the
// identities, not between the sessions.
func TestIdentitiesTakeTurns(t *testing.T) {
	h := newHarness(t, Config{})
	var many []*sink
	for i := range 3 {
		many = append(many, h.joinAs(fmt.Sprintf("m%d", i), "many", 8, "h1"))
	}
	one := h.joinAs("o", "one", 8, "h1")
	var jobs []Job
	for i := range 16 {
		jobs = append(jobs, mkJob(fmt.Sprintf("j%02d", i), fmt.Sprintf("u%02d", i)))
	}
	h.d.Admit(jobs, t0)
	if n := len(one.take()); n != 8 {
		t.Fatalf("the single-session identity got %d of 16, want 8", n)
	}
	for i, s := range many {
		if n := len(s.take()); n < 2 || n > 3 {
			t.Fatalf("session m%d got %d, want 2 or 3 (8 spread over 3 sessions)", i, n)
		}
	}
}

// TestPickAvoidsTheSilent: a primary goes to an identity holding no overdue
// copy before one holding some, even a less loaded one; a backup to an
// identity that has answered before a fresh one.
func TestPickAvoidsTheSilent(t *testing.T) {
	t.Run("primary", func(t *testing.T) {
		h := newHarness(t, Config{})
		x := h.joinAs("x", "X", 4, "h1")
		h.d.Admit([]Job{mkJob("held", "h")}, t0)
		one(t, x) // X sits on it
		y := h.joinAs("y", "Y", 4, "h1")
		h.d.Admit([]Job{mkJob("big", "b1", "b2")}, at(40))
		if n := len(y.take()); n != 2 {
			t.Fatalf("y got %d", n)
		}
		h.d.Tick(at(45)) // X's copy overdue: its backup goes to Y
		if tk := one(t, y); tk.URL != "h" {
			t.Fatalf("backup = %+v", tk)
		}
		snap := h.d.Snapshot()
		if xl, yl := identityOf(t, snap, "X"), identityOf(t, snap, "Y"); xl.Outstanding != 1 || yl.Outstanding != 3 {
			t.Fatalf("setup: X %+v, Y %+v", xl, yl)
		}
		h.d.Admit([]Job{mkJob("p", "p1")}, at(46))
		if n := len(x.take()); n != 0 {
			t.Fatal("a primary went to the identity holding an overdue copy")
		}
		if tk := one(t, y); tk.URL != "p1" {
			t.Fatalf("y got %+v", tk)
		}
	})
	t.Run("backup", func(t *testing.T) {
		h := newHarness(t, Config{})
		a := h.joinAs("a", "A", 1, "h1")
		b := h.joinAs("b", "B", 2, "h1")
		h.d.Admit([]Job{mkJob("p", "u1"), mkJob("q", "v1")}, t0)
		one(t, a) // A sits on u1
		tb := one(t, b)
		h.d.Result("b", Result{TaskID: tb.ID, Dist: clean()}, at(1)) // B has answered
		h.d.Admit([]Job{mkJob("r", "w1")}, at(2))
		one(t, b) // B holds one: more loaded than a fresh identity
		f := h.joinAs("f", "F", 2, "h1")
		h.d.Tick(at(45))
		if n := len(f.take()); n != 0 {
			t.Fatal("the backup went to an identity that never answered")
		}
		if tk := one(t, b); tk.URL != "u1" {
			t.Fatalf("b got %+v", tk)
		}
	})
}
