package dispatch

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/score"
)

func TestJoinClampsSlots(t *testing.T) {
	h := newHarness(t, Config{MaxSlots: 4, Prefetch: 1})
	a := h.joinAs("a", "A", 1<<30, "h1")
	urls := make([]string, 10)
	for i := range urls {
		urls[i] = fmt.Sprintf("u%d", i)
	}
	h.d.Admit([]Job{mkJob("p", urls...)}, t0)
	if n := len(a.take()); n != 5 {
		t.Fatalf("session claiming 2^30 slots got %d tasks, want MaxSlots 4 + prefetch 1", n)
	}
	s := h.d.Snapshot()
	if si := s.Sessions[0]; si.Slots != 4 || si.SlotsClaimed != 1<<30 || si.Identity != "A" || s.Counters.SlotsClamped != 1 {
		t.Fatalf("snapshot = %+v", s)
	}
	if d := New(Config{Prefetch: 1}); d.cfg.MaxSlots != 64 {
		t.Fatalf("default MaxSlots = %d, want 64", d.cfg.MaxSlots)
	}
}

func TestIdentityBounded(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	h.joinAs("a", strings.Repeat("x", 1<<20), 1, "h1")
	h.joinAs("b", "", 1, "h1")
	s := h.d.Snapshot()
	if len(s.Sessions[0].Identity) > maxIdentity {
		t.Fatalf("identity of %d bytes kept", len(s.Sessions[0].Identity))
	}
	if s.Sessions[1].Identity != "session b" {
		t.Fatalf("empty identity became %q", s.Sessions[1].Identity)
	}
}

// TestSilentHolderCannotStallReleases: a worker that claims a million slots,
// takes every task it can and never answers (while its session stays up)
// next to one honest worker: every release is reported within its lease,
// from the honest worker's results, also when every task is spot-checked
// (the silent worker being the only other identity, the checks are skipped).
func TestSilentHolderCannotStallReleases(t *testing.T) {
	for _, rate := range []float64{0, 1} {
		t.Run(fmt.Sprintf("verify=%v", rate), func(t *testing.T) {
			h := newHarness(t, Config{VerifyRate: rate, Prefetch: 1})
			silent := h.joinAs("s1", "silent", 1_000_000, "h1")
			honest := h.joinAs("w1", "honest", 4, "h1")
			var leased []Job
			for sec := 0; sec <= 240; sec++ {
				now := at(sec)
				if sec%5 == 0 && sec <= 100 {
					j := mkJob(fmt.Sprintf("j%03d", sec), fmt.Sprintf("j%03d-a", sec), fmt.Sprintf("j%03d-b", sec), fmt.Sprintf("j%03d-c", sec))
					j.LeasedAt = now
					leased = append(leased, j)
					h.d.Admit([]Job{j}, now)
				}
				h.d.Tick(now)
				for {
					ts := honest.take()
					if len(ts) == 0 {
						break
					}
					ids := make([]uint64, len(ts))
					for i, tk := range ts {
						ids[i] = tk.ID
					}
					h.d.Started("w1", ids, now)
					for _, tk := range ts {
						h.d.Result("w1", Result{TaskID: tk.ID, Dist: clean()}, now)
					}
				}
				h.d.Started("s1", nil, now) // heartbeats, never answers
				for _, si := range h.d.Snapshot().Sessions {
					if si.ID == "s1" && si.Outstanding > 65 {
						t.Fatalf("silent holder holds %d tasks, above 64 slots + 1", si.Outstanding)
					}
				}
			}
			// Identities take turns: the silent holder gets what the honest
			// worker could not take at once (the first release, checks).
			if n := len(silent.take()); n < 3 {
				t.Fatalf("the silent holder took %d tasks, too few for the test to mean anything", n)
			}
			honestInTime(t, h, len(leased))
			c := h.d.Snapshot().Counters
			if c.JobsDropped != 0 || c.BackupsWon != c.BackupsDispatched {
				t.Fatalf("counters = %+v", c)
			}
			if rate == 0 && c.BackupsDispatched == 0 {
				t.Fatalf("no backups: %+v", c)
			}
			if rate == 1 && (c.VerifyPicked != int64(3*len(leased)) || c.VerifySkipped == 0) {
				t.Fatalf("spot checks: %+v", c)
			}
			if n := len(h.eventsOf(EventBackupDispatched)); int64(n) != c.BackupsDispatched {
				t.Fatalf("%d backup events, %d backups", n, c.BackupsDispatched)
			}
		})
	}
}

// TestMismatchWaitsForRunningThirdCopy: when two results disagree while a
// third identity already runs a copy (a backup), that copy decides.
func TestMismatchWaitsForRunningThirdCopy(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 1})
	a := h.joinAs("a", "A", 1, "h1")
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	ta, tb := one(t, a), one(t, b)
	c := h.joinAs("c", "C", 1, "h1")
	h.d.Tick(at(45)) // both copies overdue: a backup of a's goes to c
	tc := one(t, c)
	h.d.Result("a", Result{TaskID: ta.ID, Dist: bad()}, at(46))
	h.d.Result("b", Result{TaskID: tb.ID, Dist: clean()}, at(46))
	if len(h.outcomes()) != 0 || len(h.eventsOf(EventVerifyMismatch)) != 1 {
		t.Fatalf("settled without c's running copy: %+v", h.outcomes())
	}
	h.d.Result("c", Result{TaskID: tc.ID, Dist: bad()}, at(47))
	o := outcomeOf(t, h, "p")
	if o.Package.Score != 100 || !slices.Equal(o.Identities, []string{"A", "C"}) || !h.d.Quarantined("B") {
		t.Fatalf("outcome = %+v, B quarantined %v", o, h.d.Quarantined("B"))
	}
}

func TestBackupFirstResultWinsLateDropped(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.joinAs("a", "A", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
	ta := one(t, a)
	b := h.joinAs("b", "B", 1, "h1")
	tb := one(t, b)
	if ta.URL != "u1" || tb.URL != "u2" {
		t.Fatalf("a=%s b=%s", ta.URL, tb.URL)
	}
	// Prior task time 15 s: a copy is overdue after 45 s. Nobody else has a
	// free slot, so the backup waits.
	if r := h.d.Tick(at(44)); r.Backups != 0 {
		t.Fatalf("backup at 44 s: %+v", r)
	}
	if r := h.d.Tick(at(45)); r.Backups != 0 || h.d.Snapshot().BackupsWaiting != 2 {
		t.Fatalf("backup without a free slot: %+v %+v", r, h.d.Snapshot())
	}
	c := h.joinAs("c", "C", 1, "h1") // a free slot: u1's backup goes there at once
	tc := one(t, c)
	if tc.URL != "u1" || tc.ID == ta.ID {
		t.Fatalf("backup = %+v", tc)
	}
	ev := h.eventsOf(EventBackupDispatched)
	if len(ev) != 1 || ev[0].From != "A" || ev[0].Identity != "C" || ev[0].URL != "u1" || ev[0].Name != "p" {
		t.Fatalf("backup events = %+v", ev)
	}
	h.d.Result("c", Result{TaskID: tc.ID, Dist: bad()}, at(46))
	if len(h.eventsOf(EventBackupWon)) != 1 {
		t.Fatal("no backup-won event")
	}
	// The losing copy keeps its credit until its result.
	if si := h.d.Snapshot().Sessions[0]; si.ID != "a" || si.Outstanding != 1 {
		t.Fatalf("a = %+v", si)
	}
	h.d.Result("a", Result{TaskID: ta.ID, Dist: clean()}, at(47))
	if n := h.d.Snapshot().Counters.ResultsDropped; n != 1 || len(h.eventsOf(EventResultDropped)) != 1 {
		t.Fatalf("late result of the losing copy: dropped=%d", n)
	}
	// u2's backup went to the slot c freed... or to a, now free: not B.
	var tb2 Task
	for _, s := range []*sink{a, c} {
		for _, tk := range s.take() {
			tb2 = tk
		}
	}
	if tb2.URL != "u2" {
		t.Fatalf("u2 not backed up once a slot freed: %+v", tb2)
	}
	h.d.Result("b", Result{TaskID: tb.ID, Dist: clean()}, at(48))
	o := outcomeOf(t, h, "p")
	if o.Package.Score != 100 || !slices.Equal(o.Identities, []string{"B", "C"}) {
		t.Fatalf("outcome = %+v", o)
	}
}

func TestNoBackupToSameIdentityOrPrefetchCredit(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	a1 := h.joinAs("a1", "A", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	one(t, a1)
	a2 := h.joinAs("a2", "A", 1, "h1") // same identity, idle
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("q", "v1"), mkJob("r", "w1")}, t0)
	// q and r went to a2 and b (most free credits); b and a2 now hold one
	// task each: a prefetch credit, no free slot.
	a2.take()
	tb := b.take()
	if len(tb) != 1 {
		t.Fatalf("b got %d", len(tb))
	}
	h.d.Tick(at(60))
	if n := h.d.Snapshot().Counters.BackupsDispatched; n != 0 {
		t.Fatalf("%d backups to a same-identity session or a prefetch credit", n)
	}
	h.d.Result("b", Result{TaskID: tb[0].ID, Dist: clean()}, at(61))
	got := b.take()
	if len(got) != 1 || got[0].URL != "u1" {
		t.Fatalf("b's freed slot did not take u1's backup: %+v", got)
	}
}

func TestBackupTiming(t *testing.T) {
	d := New(Config{Prefetch: 1})
	tm := d.timing()
	if tm.typical != 15*time.Second || tm.wait != 45*time.Second || tm.reserve != 25*time.Second {
		t.Fatalf("prior timing = %+v", tm)
	}
	for range speedMinSamples {
		d.speed.add("A", 2*time.Second)
	}
	if tm = d.timing(); tm.typical != 2*time.Second || tm.wait != 10*time.Second || tm.reserve != 12*time.Second {
		t.Fatalf("fast fleet timing = %+v (floor 10 s)", tm)
	}
	for range speedMinSamples {
		d.speed.add("A", 50*time.Second)
	}
	if tm = d.timing(); tm.typical != 50*time.Second || tm.wait != 60*time.Second || tm.reserve != 60*time.Second {
		t.Fatalf("slow fleet timing = %+v (ceiling 60 s)", tm)
	}
	for range speedWindow {
		d.speed.add("A", time.Hour)
	}
	if tm = d.timing(); tm.typical != 60*time.Second {
		t.Fatalf("typical %s, want the lease/2 ceiling", tm.typical)
	}
	tm = timing{typical: 20 * time.Second, wait: 60 * time.Second, reserve: 30 * time.Second}
	deadline := at(120)
	for _, tc := range []struct {
		assigned, now int
		want          bool
	}{
		{0, 59, false},
		{0, 60, true},
		{70, 89, false}, // 31 s left > reserve
		{70, 90, true},  // 30 s left, outstanding 20 s
		{85, 100, false},
		{85, 105, true},
		{119, 130, false}, // past the lease, outstanding less than typical
	} {
		if got := tm.overdue(at(tc.assigned), deadline, at(tc.now)); got != tc.want {
			t.Errorf("assigned %d, now %d: overdue = %v, want %v", tc.assigned, tc.now, got, tc.want)
		}
	}
}

func TestLostByThreeIdentitiesFails(t *testing.T) {
	h := newHarness(t, Config{})
	long := strings.Repeat("z", 10<<10)
	ids := []string{"A", "B", long}
	h.d.Admit([]Job{mkJob("p", "ok", "crash")}, t0)
	w := h.joinAs("w", "W", 1, "h1")
	if tk := one(t, w); tk.URL != "ok" {
		t.Fatalf("w got %s", tk.URL)
	} else {
		h.d.Drain("w")
		h.d.Result("w", Result{TaskID: tk.ID, Dist: clean()}, t0)
	}
	for i, id := range ids {
		sid := fmt.Sprintf("s%d", i)
		s := h.joinAs(sid, id, 1, "h1")
		tk := one(t, s)
		if tk.URL != "crash" {
			t.Fatalf("%s got %s", sid, tk.URL)
		}
		h.d.Started(sid, []uint64{tk.ID}, t0)
		h.d.Leave(sid, LeaveLost)
	}
	o := outcomeOf(t, h, "p")
	for _, want := range []string{"distribution crash", "lost by 3 different workers while scanning it", "A, B, zzz", "may crash scanners"} {
		if !strings.Contains(o.Failure, want) {
			t.Fatalf("failure %q lacks %q", o.Failure, want)
		}
	}
	if len(o.Failure) > clip.Default {
		t.Fatalf("failure of %d bytes", len(o.Failure))
	}
	if ev := h.eventsOf(EventLostFailed); len(ev) != 1 || len(ev[0].Identities) != 3 || ev[0].Reason != o.Failure {
		t.Fatalf("events = %+v", ev)
	}
	if n := len(h.eventsOf(EventTaskLost)); n != 3 {
		t.Fatalf("%d task-lost events", n)
	}
	d := h.joinAs("d", "D", 1, "h1")
	if n := len(d.take()); n != 0 {
		t.Fatalf("failed task dispatched again (%d)", n)
	}
	if s := h.d.Snapshot(); s.JobsInFlight != 0 || s.TasksWaiting != 0 || s.Counters.JobsLostFailed != 1 {
		t.Fatalf("snapshot = %+v", s)
	}
}

// TestLossesThatDoNotCount: while three identities are ready, the same
// identity losing a task three times, a session cut by the coordinator or
// closed cleanly, and a lost session that had not started the task do not
// make three identities.
func TestLossesThatDoNotCount(t *testing.T) {
	type loss struct {
		identity string
		started  bool
		why      LeaveReason
	}
	for _, tc := range []struct {
		name   string
		losses []loss
		lost   int64
	}{
		{"same identity three times", []loss{{"A", true, LeaveLost}, {"A", true, LeaveLost}, {"A", true, LeaveLost}}, 3},
		{"cut and clean", []loss{{"A", true, LeaveCut}, {"B", true, LeaveClean}, {"C", true, LeaveLost}, {"D", true, LeaveLost}}, 2},
		{"not started", []loss{{"A", false, LeaveLost}, {"B", true, LeaveLost}, {"C", true, LeaveLost}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{Prefetch: 1})
			// Two more identities are ready (for other rules): losses count
			// per identity.
			h.joinAs("x", "X", 1, "h2")
			h.joinAs("y", "Y", 1, "h2")
			h.d.Admit([]Job{mkJob("p", "crash")}, t0)
			for i, l := range tc.losses {
				sid := fmt.Sprintf("s%d", i)
				tk := one(t, h.joinAs(sid, l.identity, 1, "h1"))
				if l.started {
					h.d.Started(sid, []uint64{tk.ID}, t0)
				}
				h.d.Leave(sid, l.why)
			}
			if len(h.outcomes()) != 0 {
				t.Fatalf("job ended: %+v", h.outcomes())
			}
			tk := one(t, h.joinAs("z", "Z", 1, "h1"))
			h.d.Result("z", Result{TaskID: tk.ID, Dist: clean()}, t0)
			if o := outcomeOf(t, h, "p"); o.Failure != "" {
				t.Fatalf("failed: %s", o.Failure)
			}
			if c := h.d.Snapshot().Counters; c.TasksLost != tc.lost || c.JobsLostFailed != 0 {
				t.Fatalf("counters = %+v", c)
			}
		})
	}
}

func TestStartedUnknownIDsAreCountedNotKept(t *testing.T) {
	h, _, tk := heldByA(t, Config{Prefetch: 1})
	ids := make([]uint64, 100_000)
	for i := range ids {
		ids[i] = uint64(i) + 1000
	}
	ids[0] = tk.ID
	h.d.Started("a", ids, t0)
	h.d.Started("a", ids, t0) // heartbeats repeat it
	s := h.d.Snapshot()
	if s.Counters.StartedUnknown != 2*99_999 || s.Sessions[0].Started != 1 || s.TasksRunning != 1 {
		t.Fatalf("snapshot = %+v", s)
	}
	h.d.Started("nobody", ids, t0) // unknown session: ignored
}

func TestSpotCheckAgreed(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 1, Prefetch: 1})
	a := h.joinAs("a", "A", 1, "h1")
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	ta, tb := one(t, a), one(t, b)
	if ta.URL != "u1" || tb.URL != "u1" || ta.ID == tb.ID {
		t.Fatalf("copies %+v %+v", ta, tb)
	}
	h.d.Result("a", Result{TaskID: ta.ID, Dist: bad()}, t0)
	if len(h.outcomes()) != 0 {
		t.Fatal("picked task finished before its check")
	}
	h.d.Result("b", Result{TaskID: tb.ID, Dist: bad()}, t0)
	o := outcomeOf(t, h, "p")
	if o.Package.Score != 100 || o.Verified != 1 || !slices.Equal(o.Identities, []string{"A", "B"}) {
		t.Fatalf("outcome = %+v", o)
	}
	c := h.d.Snapshot().Counters
	if c.VerifyPicked != 1 || c.VerifyAgreed != 1 || len(h.eventsOf(EventVerifyAgreed)) != 1 {
		t.Fatalf("counters = %+v", c)
	}
}

// TestLiarCaughtByThirdIdentity: a worker reports a malicious distribution
// clean. Its spot check disagrees, a third identity decides, the liar is
// quarantined, its results for unfinished jobs are discarded and scanned
// again, its outstanding tasks are dispatched elsewhere, and every job is
// reported with the honest verdict.
func TestLiarCaughtByThirdIdentity(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 0.5, Rand: seq(0.9, 0.9, 0.9, 0), Prefetch: 1})
	liar := h.joinAs("l", "liar", 4, "h1")
	// Before anyone else connects the liar takes q (two distributions) and r
	// (leased after q: one lease answer would send the smaller r first).
	h.d.Admit([]Job{mkJob("q", "q1", "q2")}, t0)
	h.d.Admit([]Job{mkJob("r", "r1")}, t0)
	lt := liar.take()
	if len(lt) != 3 {
		t.Fatalf("liar got %d", len(lt))
	}
	h.d.Result("l", Result{TaskID: lt[0].ID, Dist: clean()}, t0) // q1: a lie, q2 and r1 held
	// p is picked: the liar's copy now, the check copy when h1 joins.
	h.d.Admit([]Job{mkJob("p", "p1")}, t0)
	lp := one(t, liar)
	h1 := h.joinAs("h1", "honest-1", 1, "h1")
	hp := one(t, h1)
	h2 := h.joinAs("h2", "honest-2", 1, "h1")
	h.d.Result("l", Result{TaskID: lp.ID, Dist: clean()}, at(1))
	h.d.Result("h1", Result{TaskID: hp.ID, Dist: bad()}, at(2))
	if ev := h.eventsOf(EventVerifyMismatch); len(ev) != 1 || !slices.Equal(ev[0].Identities, []string{"liar", "honest-1"}) {
		t.Fatalf("mismatch events = %+v", ev)
	}
	third := one(t, h2)
	if third.URL != "p1" {
		t.Fatalf("third scan = %+v", third)
	}
	h.d.Result("h2", Result{TaskID: third.ID, Dist: bad()}, at(3))

	if !h.d.Quarantined("liar") {
		t.Fatal("liar not quarantined")
	}
	ev := h.eventsOf(EventVerifyDecided)
	if len(ev) != 1 || !slices.Equal(ev[0].Quarantined, []string{"liar"}) {
		t.Fatalf("decided events = %+v", ev)
	}
	if q := h.eventsOf(EventQuarantine); len(q) != 1 || q[0].Identity != "liar" || !strings.Contains(q[0].Reason, "p1") {
		t.Fatalf("quarantine events = %+v", q)
	}
	o := outcomeOf(t, h, "p")
	if o.Package.Score != 100 || !slices.Equal(o.Identities, []string{"honest-1", "honest-2"}) || o.Verified != 1 {
		t.Fatalf("p = %+v", o)
	}
	// q1 (the liar's answer), q2 and r1 (held by the liar) are scanned again
	// by the honest workers; the liar gets nothing more.
	seen := map[string]bool{}
	for range 10 {
		for sid, s := range map[string]*sink{"h1": h1, "h2": h2} {
			for _, tk := range s.take() {
				seen[tk.URL] = true
				h.d.Result(sid, Result{TaskID: tk.ID, Dist: bad()}, at(4))
			}
		}
	}
	if !seen["q1"] || !seen["q2"] || !seen["r1"] {
		t.Fatalf("re-dispatched = %v", seen)
	}
	if n := len(liar.take()); n != 0 {
		t.Fatalf("quarantined liar got %d tasks", n)
	}
	for _, name := range []string{"q", "r"} {
		o := outcomeOf(t, h, name)
		if o.Package.Score != 100 || slices.Contains(o.Identities, "liar") {
			t.Fatalf("%s = %+v", name, o)
		}
	}
	// Its late answer for r1 is dropped; reconnecting does not clear the
	// quarantine.
	h.d.Result("l", Result{TaskID: lt[2].ID, Dist: clean()}, at(5))
	h.d.Leave("l", LeaveClean)
	again := h.joinAs("l2", "liar", 4, "h1")
	h.d.Admit([]Job{mkJob("s", "s1", "s2", "s3")}, at(6))
	if n := len(again.take()); n != 0 {
		t.Fatalf("reconnected liar got %d tasks", n)
	}
	s := h.d.Snapshot()
	if s.Counters.ResultsDiscarded != 1 || s.Counters.Quarantines != 1 || len(s.Quarantined) != 1 || s.Quarantined[0].Identity != "liar" {
		t.Fatalf("snapshot = %+v", s)
	}
	if !s.Sessions[slices.IndexFunc(s.Sessions, func(si SessionLoad) bool { return si.ID == "l2" })].Quarantined {
		t.Fatal("session of a quarantined identity not marked")
	}
}

// TestMismatchWithoutThird: with only two identities, the fail-safe rule
// decides and nobody is quarantined.
func TestMismatchWithoutThird(t *testing.T) {
	fail := func(kind string) Result { return Result{Failure: "distribution u1: " + kind, FailureKind: kind} }
	for _, tc := range []struct {
		name     string
		a, b     Result
		score    int64
		failure  string
		kind     EventKind
		decided  bool
		verified int
	}{
		{"higher score wins", Result{Dist: clean()}, Result{Dist: bad()}, 100, "", EventVerifyMismatch, true, 1},
		{"higher score wins, other order", Result{Dist: bad()}, Result{Dist: clean()}, 100, "", EventVerifyMismatch, true, 1},
		{"failure stands against success", Result{Dist: clean()}, fail("FAILURE_KIND_ARCHIVE"), 0, "distribution u1: FAILURE_KIND_ARCHIVE", EventVerifyMismatch, true, 1},
		{"download failure stands against one success", fail(KindDownload), Result{Dist: bad()}, 0, "distribution u1: " + KindDownload, EventVerifyInconclusive, true, 1},
		{"two download failures agree", fail(KindDownload), fail(KindDownload), 0, "distribution u1: " + KindDownload, EventVerifyAgreed, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{VerifyRate: 1, Prefetch: 1})
			a := h.joinAs("a", "A", 1, "h1")
			b := h.joinAs("b", "B", 1, "h1")
			h.d.Admit([]Job{mkJob("p", "u1")}, t0)
			ta, tb := one(t, a), one(t, b)
			tc.a.TaskID, tc.b.TaskID = ta.ID, tb.ID
			h.d.Result("a", tc.a, t0)
			h.d.Result("b", tc.b, t0)
			o := outcomeOf(t, h, "p")
			if o.Failure != tc.failure || (tc.failure == "" && o.Package.Score != tc.score) || o.Verified != tc.verified {
				t.Fatalf("outcome = %+v", o)
			}
			if !slices.Equal(o.Identities, []string{"A", "B"}) {
				t.Fatalf("identities = %v", o.Identities)
			}
			if len(h.eventsOf(tc.kind)) != 1 || (len(h.eventsOf(EventVerifyDecided)) == 1) != tc.decided {
				t.Fatalf("events = %+v", h.events)
			}
			if s := h.d.Snapshot(); len(s.Quarantined) != 0 {
				t.Fatalf("quarantined %+v", s.Quarantined)
			}
		})
	}
}

// TestMismatchWithoutThirdKeepsTheMatchedRules: two successes of one score
// (0) disagree on the rules: a rule of weight 0 matched for one, nothing for
// the other. Without a third identity the fail-safe rule reports the one
// with more rules, in either order: a lie can only make a verdict cleaner,
// and dropping the matched rule would hide it from the report.
func TestMismatchWithoutThirdKeepsTheMatchedRules(t *testing.T) {
	matched := func() *score.Distribution { return dist("pkg/x.py", 0, score.Hit{Name: "suspicious", Weight: 0}) }
	for _, order := range [][2]*score.Distribution{{clean(), matched()}, {matched(), clean()}} {
		h := newHarness(t, Config{VerifyRate: 1, Prefetch: 1})
		a := h.joinAs("a", "A", 1, "h1")
		b := h.joinAs("b", "B", 1, "h1")
		h.d.Admit([]Job{mkJob("p", "u1")}, t0)
		ta, tb := one(t, a), one(t, b)
		h.d.Result("a", Result{TaskID: ta.ID, Dist: order[0]}, t0)
		h.d.Result("b", Result{TaskID: tb.ID, Dist: order[1]}, t0)
		o := outcomeOf(t, h, "p")
		if o.Failure != "" || o.Package.Score != 0 || !slices.Equal(o.Package.RulesMatched, []string{"suspicious"}) {
			t.Errorf("first vote with %d rules: outcome = %+v, want rules [suspicious]", len(order[0].Rules), o)
		}
	}
}

// TestDownloadFailureDoesNotQuarantine: an honest worker's network blip
// against a success, then a third identity agreeing with the success: the
// success is reported and nobody is quarantined.
func TestDownloadFailureDoesNotQuarantine(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 1})
	a := h.joinAs("a", "A", 1, "h1")
	b := h.joinAs("b", "B", 1, "h1")
	c := h.joinAs("c", "C", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	ta, tb := one(t, a), one(t, b)
	h.d.Result("a", Result{TaskID: ta.ID, Dist: bad()}, t0)
	h.d.Result("b", Result{TaskID: tb.ID, Failure: "u1: HTTP 503", FailureKind: KindDownload}, t0)
	if len(h.eventsOf(EventVerifyInconclusive)) != 1 || len(h.eventsOf(EventVerifyMismatch)) != 0 {
		t.Fatalf("events = %+v", h.events)
	}
	tc := one(t, c)
	h.d.Result("c", Result{TaskID: tc.ID, Dist: bad()}, t0)
	o := outcomeOf(t, h, "p")
	if o.Failure != "" || o.Package.Score != 100 || !slices.Equal(o.Identities, []string{"A", "C"}) {
		t.Fatalf("outcome = %+v", o)
	}
	if h.d.Quarantined("B") || len(h.eventsOf(EventQuarantine)) != 0 {
		t.Fatal("the worker with the download failure was quarantined")
	}
}

// TestThreeWayDisagreementFailsSafe: three different verdicts: no majority,
// no quarantine, the highest score is reported.
func TestThreeWayDisagreementFailsSafe(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 1})
	sinks := []*sink{h.joinAs("a", "A", 1, "h1"), h.joinAs("b", "B", 1, "h1"), h.joinAs("c", "C", 1, "h1")}
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	results := map[string]*score.Distribution{
		"a": clean(),
		"b": dist("x", 5, score.Hit{Name: "meh", Weight: 5}),
		"c": bad(),
	}
	for i, sid := range []string{"a", "b", "c"} {
		tk := one(t, sinks[i])
		h.d.Result(sid, Result{TaskID: tk.ID, Dist: results[sid]}, t0)
	}
	o := outcomeOf(t, h, "p")
	if o.Package.Score != 100 || len(o.Identities) != 3 {
		t.Fatalf("outcome = %+v", o)
	}
	if ev := h.eventsOf(EventVerifyDecided); len(ev) != 1 || len(ev[0].Quarantined) != 0 || len(h.eventsOf(EventQuarantine)) != 0 {
		t.Fatalf("events = %+v", h.events)
	}
}

func TestSpotChecksOffWithOneIdentity(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 1, Prefetch: 1})
	h.joinAs("a1", "A", 1, "h1")
	h.joinAs("a2", "A", 1, "h1") // a reconnect: the same identity
	if s := h.d.Snapshot().SpotChecks; s.Active || s.Identities != 1 || s.Rate != 1 {
		t.Fatalf("spot checks = %+v", s)
	}
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	var (
		sid string
		tk  Task
		n   int
	)
	for _, id := range []string{"a1", "a2"} {
		for _, x := range h.sinks[id].take() {
			sid, tk = id, x
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d copies with one identity", n)
	}
	h.d.Result(sid, Result{TaskID: tk.ID, Dist: bad()}, t0)
	o := outcomeOf(t, h, "p")
	if o.Package.Score != 100 || o.Verified != 0 {
		t.Fatalf("outcome = %+v", o)
	}
	if ev := h.eventsOf(EventVerifySkipped); len(ev) != 1 || !strings.Contains(ev[0].Reason, "spot checks off") {
		t.Fatalf("skip events = %+v", ev)
	}
	h.joinAs("b", "B", 1, "h1")
	if s := h.d.Snapshot().SpotChecks; !s.Active || s.Identities != 2 {
		t.Fatalf("spot checks with two identities = %+v", s)
	}
}

// TestSpotCheckGivesUp: a check that cannot be placed (the other identity
// left, or no credit before the lease ends) is skipped and the job reported
// with the one result, before its lease ends.
func TestSpotCheckGivesUp(t *testing.T) {
	// skipped checks that job p was reported from a's vote alone (score
	// 100, unverified) after one check was skipped for reason.
	skipped := func(t *testing.T, h *harness, reason string) Outcome {
		t.Helper()
		o := outcomeOf(t, h, "p")
		if o.Package.Score != 100 || o.Verified != 0 {
			t.Fatalf("outcome = %+v", o)
		}
		if ev := h.eventsOf(EventVerifySkipped); len(ev) != 1 || ev[0].Reason != reason {
			t.Fatalf("events = %+v", ev)
		}
		return o
	}
	t.Run("other identity left", func(t *testing.T) {
		h, _, b, ta := heldByAWithB(t, Config{VerifyRate: 1})
		b.take()
		h.d.Leave("b", LeaveClean)
		// The first vote comes with no other identity left to take the
		// check: it is given up at once, not at the next Tick.
		h.d.Result("a", Result{TaskID: ta.ID, Dist: bad()}, at(1))
		skipped(t, h, "spot checks off: fewer than two identities ready")
	})
	t.Run("other identity leaves after the first vote", func(t *testing.T) {
		h, _, b, ta := heldByAWithB(t, Config{VerifyRate: 1})
		one(t, b) // b holds the check copy
		h.d.Result("a", Result{TaskID: ta.ID, Dist: bad()}, at(1))
		h.d.Leave("b", LeaveClean)
		if len(h.outcomes()) != 0 {
			t.Fatal("finished before Tick")
		}
		h.d.Tick(at(2))
		skipped(t, h, "no other identity is ready")
	})
	t.Run("lease ending", func(t *testing.T) {
		h := newHarness(t, Config{VerifyRate: 0.5, Rand: seq(0.9, 0)})
		b := h.joinAs("b", "B", 1, "h1")
		h.d.Admit([]Job{mkJob("busy", "x")}, t0) // b holds it and never answers
		one(t, b)
		a := h.joinAs("a", "A", 1, "h1")
		h.d.Admit([]Job{mkJob("p", "u1")}, t0)
		ta := one(t, a)
		h.d.Result("a", Result{TaskID: ta.ID, Dist: bad()}, at(1))
		// Prior 15 s: reserve 25 s, so the check is given up at 95 s.
		h.d.Tick(at(94))
		if len(h.outcomes()) != 0 {
			t.Fatal("gave up early")
		}
		h.d.Tick(at(95))
		if o := skipped(t, h, "the lease is ending"); o.Finished.After(at(95)) {
			t.Fatalf("outcome = %+v", o)
		}
	})
}

func TestQuarantineAPI(t *testing.T) {
	h := newHarness(t, Config{MaxQuarantined: 2})
	a := h.joinAs("a", "A", 2, "h1")
	h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
	if n := len(a.take()); n != 2 {
		t.Fatalf("a got %d", n)
	}
	b := h.joinAs("b", "B", 2, "h1")
	h.d.Quarantine("A", "operator said so")
	got := b.take()
	if len(got) != 2 {
		t.Fatalf("a's tasks not re-dispatched at once: %+v", got)
	}
	if c := h.d.Capacity(""); c != 0 {
		t.Fatalf("capacity %d counts the quarantined session", c)
	}
	if h.d.Quarantined("B") || !h.d.Quarantined("A") {
		t.Fatal("wrong identities quarantined")
	}
	h.d.Quarantine("A", "again") // no-op
	h.d.Quarantine("X", "x")
	h.d.Quarantine("Y", "y") // evicts A, the oldest
	s := h.d.Snapshot()
	if h.d.Quarantined("A") || len(s.Quarantined) != 2 || s.Quarantined[0].Identity != "X" || s.Counters.Quarantines != 3 {
		t.Fatalf("bound not kept: %+v", s.Quarantined)
	}
	if ev := h.eventsOf(EventQuarantine); len(ev) != 3 || ev[0].Reason != "operator said so" {
		t.Fatalf("events = %+v", ev)
	}
}

// TestAffinity: a task goes to a session already holding a task of its
// release when that session has a free slot, or when nobody has one; never
// when that would leave another session's free slot idle.
func TestAffinity(t *testing.T) {
	for _, tc := range []struct {
		name         string
		slots        int // of a and of b
		wantA, wantB int
		why          string
	}{
		// Without affinity u2 would go to b (4 free credits against 3).
		{"holder with a free slot", 3, 2, 0, "want both at a"},
		{"holder without a free slot, another with one", 1, 1, 1, "affinity left b's slot idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{Prefetch: 1})
			a := h.joinAs("a", "A", tc.slots, "h1")
			b := h.joinAs("b", "B", tc.slots, "h1")
			h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
			if na, nb := len(a.take()), len(b.take()); na != tc.wantA || nb != tc.wantB {
				t.Fatalf("a=%d b=%d: %s", na, nb, tc.why)
			}
		})
	}
	t.Run("nobody has a free slot", func(t *testing.T) {
		h := newHarness(t, Config{Prefetch: 1})
		b := h.joinAs("b", "B", 2, "h1")
		h.d.Admit([]Job{mkJob("q", "v1", "v2")}, t0) // b: slots full, one credit
		if n := len(b.take()); n != 2 {
			t.Fatalf("b got %d", n)
		}
		a := h.joinAs("a", "A", 1, "h1")
		h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
		// u1 fills a's slot; for u2 a and b both have one prefetch credit and
		// b was picked less recently, but a holds u1.
		if na, nb := len(a.take()), len(b.take()); na != 2 || nb != 0 {
			t.Fatalf("a=%d b=%d, want both at a", na, nb)
		}
	})
}

func TestMaxJobAgeDropsHeldJobs(t *testing.T) {
	h, _, tk := heldByA(t, Config{MaxJobAge: 10 * time.Minute, Prefetch: 1})
	if r := h.d.Tick(t0.Add(10*time.Minute - time.Second)); len(r.Dropped)+len(r.Abandoned) != 0 {
		t.Fatalf("dropped early: %+v", r)
	}
	r := h.d.Tick(t0.Add(10 * time.Minute))
	if len(r.Dropped) != 0 || len(r.Abandoned) != 1 || r.Abandoned[0].Name != "p" || h.d.Snapshot().Counters.JobsAbandoned != 1 {
		t.Fatalf("tick = %+v", r)
	}
	h.d.Result("a", Result{TaskID: tk.ID, Dist: clean()}, t0.Add(11*time.Minute))
	if len(h.outcomes()) != 0 || h.d.Snapshot().Counters.ResultsOrphaned != 1 {
		t.Fatalf("dropped job reported: %+v", h.outcomes())
	}
}

// TestMaxJobAgeFollowsTheLease: unset, MaxJobAge is four leases, at least
// 15 min. It was 15 min whatever the lease: with the API's JOB_TIMEOUT at an
// hour, a job a slow worker held was given up (its result orphaned) a
// quarter of the way into its own lease.
func TestMaxJobAgeFollowsTheLease(t *testing.T) {
	for _, tc := range []struct {
		lease, age time.Duration
	}{
		{0, 15 * time.Minute}, // the default lease, 2 min
		{time.Hour, 4 * time.Hour},
	} {
		h, _, tk := heldByA(t, Config{LeaseTimeout: tc.lease, Prefetch: 1})
		if r := h.d.Tick(t0.Add(tc.age - time.Second)); len(r.Dropped)+len(r.Abandoned) != 0 {
			t.Fatalf("lease %s: given up before %s: %+v", tc.lease, tc.age, r)
		}
		if r := h.d.Tick(t0.Add(tc.age)); len(r.Abandoned) != 1 {
			t.Fatalf("lease %s: not given up at %s: %+v", tc.lease, tc.age, r)
		}
		h.d.Result("a", Result{TaskID: tk.ID, Dist: clean()}, t0.Add(tc.age))
		if len(h.outcomes()) != 0 {
			t.Fatalf("lease %s: reported after it was given up: %+v", tc.lease, h.outcomes())
		}
	}
	if got := MaxAge(math.MaxInt64 / 2); got != math.MaxInt64 {
		t.Errorf("MaxAge of a huge lease = %s, want the largest duration, not a wrapped one", got)
	}
}

// TestLiarsResultInDecidedJobDiscarded: the liar's unchecked result for
// another distribution of the very job whose spot check caught it is
// discarded and scanned again before the job is reported.
func TestLiarsResultInDecidedJobDiscarded(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 0.5, Rand: seq(0.9, 0), Prefetch: 1})
	liar := h.joinAs("l", "liar", 4, "h1")
	h1 := h.joinAs("h1", "honest-1", 1, "h1")
	h2 := h.joinAs("h2", "honest-2", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "p1", "p2")}, t0) // p2 picked
	lt := liar.take()
	if len(lt) != 2 || lt[0].URL != "p1" || lt[1].URL != "p2" {
		t.Fatalf("liar got %+v", lt)
	}
	hp := one(t, h1)
	worse := dist("pkg/worse.py", 200, score.Hit{Name: "worse", Weight: 200})
	h.d.Result("l", Result{TaskID: lt[0].ID, Dist: clean()}, t0)
	h.d.Result("l", Result{TaskID: lt[1].ID, Dist: clean()}, t0)
	h.d.Result("h1", Result{TaskID: hp.ID, Dist: bad()}, t0)
	third := one(t, h2)
	h.d.Result("h2", Result{TaskID: third.ID, Dist: bad()}, t0)
	if len(h.outcomes()) != 0 {
		t.Fatalf("reported with the liar's p1: %+v", h.outcomes())
	}
	var again Task
	for _, s := range []*sink{h1, h2} {
		for _, tk := range s.take() {
			again = tk
			h.d.Result(map[*sink]string{h1: "h1", h2: "h2"}[s], Result{TaskID: tk.ID, Dist: worse}, t0)
		}
	}
	if again.URL != "p1" {
		t.Fatalf("p1 not scanned again: %+v", again)
	}
	o := outcomeOf(t, h, "p")
	if o.Package.Score != 200 || slices.Contains(o.Identities, "liar") {
		t.Fatalf("outcome = %+v", o)
	}
}

func TestRulesReadyBounded(t *testing.T) {
	h := newHarness(t, Config{Prefetch: 1})
	h.joinAs("a", "A", 1)
	for i := range 1000 {
		h.d.RulesReady("a", fmt.Sprintf("hash-%d", i))
	}
	h.d.ForgetRulesAt("a", "hash-999")
	got := h.d.Snapshot().Sessions[0].RulesReady
	if len(got) != maxReady-1 || !slices.Contains(got, "hash-998") || slices.Contains(got, "hash-0") {
		t.Fatalf("%d hashes kept: %v", len(got), got)
	}
}

// TestBackupQueuedWhileCheckUnplaced: a spot-checked task whose first copy
// is overdue while its check still waits for a credit keeps its backup
// queued until a slot frees.
func TestBackupQueuedWhileCheckUnplaced(t *testing.T) {
	h := newHarness(t, Config{VerifyRate: 0.5, Rand: seq(0.9, 0)})
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("busy", "x")}, t0) // not picked; b holds it
	tx := one(t, b)
	a := h.joinAs("a", "A", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0) // picked: a, then a check nobody can take yet
	one(t, a)
	a2 := h.joinAs("a2", "A", 1, "h1") // a free slot, but of the identity holding u1
	h.d.Tick(at(45))                   // a's copy overdue; no free slot of another identity
	// a2 backs up b's overdue x (another identity), never u1.
	if got := a2.take(); len(got) != 1 || got[0].URL != "x" {
		t.Fatalf("a2 got %+v", got)
	}
	c := h.joinAs("c", "C", 1, "h1")
	if tk := one(t, c); tk.URL != "u1" {
		t.Fatalf("check = %+v", tk)
	}
	h.d.Result("b", Result{TaskID: tx.ID, Dist: clean()}, at(46))
	got := b.take()
	if len(got) != 1 || got[0].URL != "u1" {
		t.Fatalf("backup of a's overdue copy not dispatched to b's freed slot: %+v", got)
	}
	if ev := h.eventsOf(EventBackupDispatched); len(ev) != 2 || ev[1].URL != "u1" || ev[1].From != "A" || ev[1].Identity != "B" {
		t.Fatalf("events = %+v", ev)
	}
}

// A job picked for a spot check while only one identity is ready gets its
// check copy when a second identity joins before the first copy answers.
func TestSpotCheckPlacedWhenSecondIdentityJoins(t *testing.T) {
	h, _, ta := heldByA(t, Config{VerifyRate: 1})
	if ev := h.eventsOf(EventVerifyPicked); len(ev) != 1 {
		t.Fatalf("picked events = %+v", ev)
	}
	b := h.joinAs("b", "B", 1, "h1")
	tb := one(t, b)
	if tb.URL != "u1" || tb.ID == ta.ID {
		t.Fatalf("check copy = %+v", tb)
	}
	h.d.Result("a", Result{TaskID: ta.ID, Dist: bad()}, at(1))
	if len(h.outcomes()) != 0 {
		t.Fatal("finished before the check copy answered")
	}
	h.d.Result("b", Result{TaskID: tb.ID, Dist: bad()}, at(2))
	o := outcomeOf(t, h, "p")
	if o.Package.Score != 100 || o.Verified != 1 {
		t.Fatalf("outcome = %+v", o)
	}
	if ev := h.eventsOf(EventVerifySkipped); len(ev) != 0 {
		t.Fatalf("skipped events = %+v", ev)
	}
}

// A backup copy whose session ends without answering leaves the overdue
// copy it backed up without a backup: another one is dispatched.
func TestLostBackupIsReplaced(t *testing.T) {
	h, _, ta := heldByA(t, Config{})
	b := h.joinAs("b", "B", 1, "h1")
	h.d.Tick(at(45)) // a's copy is overdue: b takes a backup
	tb := one(t, b)
	if tb.URL != "u1" || tb.ID == ta.ID {
		t.Fatalf("backup = %+v", tb)
	}
	h.d.Leave("b", LeaveClean)
	c := h.joinAs("c", "C", 1, "h1")
	h.d.Tick(at(46))
	tc := one(t, c)
	if tc.URL != "u1" || tc.ID == ta.ID || tc.ID == tb.ID {
		t.Fatalf("second backup = %+v", tc)
	}
	if ev := h.eventsOf(EventBackupDispatched); len(ev) != 2 || ev[1].Identity != "C" || ev[1].From != "A" {
		t.Fatalf("backup events = %+v", ev)
	}
	h.d.Result("c", Result{TaskID: tc.ID, Dist: bad()}, at(47))
	if o := outcomeOf(t, h, "p"); o.Package.Score != 100 {
		t.Fatalf("outcome = %+v", o)
	}
}

// TestSpotCheckWaitsForAnIdentityCompiling: right after a rules change a
// worker that only claims its rules ready is the one ready identity; the
// honest ones are still compiling. A check of its answer waits for them
// (RulesOffered) up to compileWait, then goes to the first that is ready;
// it is given up when none is ready within compileWait, or when the only
// one compiling fails.
func TestSpotCheckWaitsForAnIdentityCompiling(t *testing.T) {
	start := func(t *testing.T) (*harness, *sink, Task) {
		h := newHarness(t, Config{VerifyRate: 1})
		liar := h.joinAs("liar", "L", 1, "h1")
		h.joinAs("honest", "H", 1)
		h.d.RulesOffered("honest", "h1", t0)
		h.d.Admit([]Job{mkJob("p", "u1")}, t0)
		tl := one(t, liar)
		h.d.Tick(at(1))
		h.d.Result("liar", Result{TaskID: tl.ID, Dist: clean()}, at(1))
		h.d.Tick(at(2))
		if len(h.outcomes()) != 0 {
			t.Fatalf("finished unchecked while an identity compiles: %+v", h.outcomes())
		}
		return h, liar, tl
	}
	t.Run("checked once it is ready", func(t *testing.T) {
		h, _, _ := start(t)
		h.d.RulesReady("honest", "h1")
		th := one(t, h.sinks["honest"])
		h.d.Result("honest", Result{TaskID: th.ID, Dist: bad()}, at(3))
		h.d.Tick(at(3))
		if ev := h.eventsOf(EventVerifySkipped); len(ev) != 0 {
			t.Fatalf("skipped: %+v", ev)
		}
		if ev := h.eventsOf(EventVerifyMismatch); len(ev) != 1 {
			t.Fatalf("the liar's clean answer was not found out: events %+v", h.eventsOf(EventVerifyMismatch))
		}
	})
	t.Run("given up after compileWait", func(t *testing.T) {
		h, _, _ := start(t)
		h.d.Tick(t0.Add(compileWait - time.Second))
		if len(h.outcomes()) != 0 {
			t.Fatal("gave up before compileWait")
		}
		h.d.Tick(t0.Add(compileWait))
		if ev := h.eventsOf(EventVerifySkipped); len(ev) != 1 || ev[0].Reason != "no other identity is ready" {
			t.Fatalf("events = %+v", ev)
		}
	})
	t.Run("a session offered the rules later does not extend the wait", func(t *testing.T) {
		h, _, _ := start(t)
		h.joinAs("again", "H2", 1)
		h.d.RulesOffered("again", "h1", t0.Add(compileWait-time.Second))
		h.d.Tick(t0.Add(compileWait))
		if ev := h.eventsOf(EventVerifySkipped); len(ev) != 1 {
			t.Fatalf("a new compiling session kept the check waiting past compileWait from the lease: %+v", ev)
		}
	})
	t.Run("given up when its compile fails", func(t *testing.T) {
		h, _, _ := start(t)
		h.d.RulesFailed("honest", "h1")
		h.d.Tick(at(3))
		if ev := h.eventsOf(EventVerifySkipped); len(ev) != 1 {
			t.Fatalf("events = %+v", ev)
		}
	})
}

// TestSpotCheckComparesEveryReportedField: two verdicts agree only when
// everything the report carries from them is the same: the score, the top
// file (the report's inspector_url), its score and the rules with their
// weights. A liar that kept the score but pointed the link at another file,
// or named other rules, passed its spot check.
func TestSpotCheckComparesEveryReportedField(t *testing.T) {
	a60, b40 := score.Hit{Name: "a", Weight: 60}, score.Hit{Name: "b", Weight: 40}
	// The first result lists its rules out of order (nothing makes a
	// worker sort them): order is not a disagreement.
	first := func() *score.Distribution { return dist("pkg/evil.py", 100, b40, a60) }
	for _, c := range []struct {
		name  string
		other *score.Distribution
		agree bool
	}{
		{"the same verdict", first(), true},
		{"the same rules in another order", dist("pkg/evil.py", 100, a60, b40), true},
		{"another top file", dist("pkg/other.py", 100, a60, b40), false},
		{"another top score", dist("pkg/evil.py", 60, a60, b40), false},
		{"other rules of the same weights", dist("pkg/evil.py", 100, score.Hit{Name: "c", Weight: 60}, b40), false},
		{"the same rules with other weights", dist("pkg/evil.py", 100, score.Hit{Name: "a", Weight: 40}, score.Hit{Name: "b", Weight: 60}), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{VerifyRate: 1})
			a := h.joinAs("a", "A", 1, "h1")
			b := h.joinAs("b", "B", 1, "h1")
			h.d.Admit([]Job{mkJob("p", "u1")}, t0)
			ta, tb := one(t, a), one(t, b)
			h.d.Result("a", Result{TaskID: ta.ID, Dist: first()}, t0)
			h.d.Result("b", Result{TaskID: tb.ID, Dist: c.other}, at(1))
			agreed, mismatched := len(h.eventsOf(EventVerifyAgreed)), len(h.eventsOf(EventVerifyMismatch))
			if c.agree && (agreed != 1 || mismatched != 0) || !c.agree && (agreed != 0 || mismatched != 1) {
				t.Fatalf("%d agreed, %d mismatch events; want agreement %v", agreed, mismatched, c.agree)
			}
		})
	}
}
