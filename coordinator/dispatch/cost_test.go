package dispatch

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// crafted is a job of n distributions named name-0 ... name-(n-1).
func crafted(name string, n int) Job {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s-%d", name, i)
	}
	return mkJob(name, urls...)
}

// TestBigReleaseDoesNotHoldItsBatchPastTheLease: one lease answer brings a
// crafted release of 128 distributions that each take the whole task time,
// before two honest releases. The honest releases' tasks must not wait
// behind the 128 until their lease ends (dropped unreported, an API attempt
// lost each time: after 3 the API dead-letters an honest release).
func TestBigReleaseDoesNotHoldItsBatchPastTheLease(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.joinAs("w", "honest", 4, "h1")
	h.d.Admit([]Job{crafted("evil", DefaultMaxDistributions), mkJob("small", "s1"), mkJob("pair", "p1", "p2")}, t0)
	for sec := 0; sec <= 120; sec++ {
		now := at(sec)
		h.d.Tick(now)
		for _, tk := range w.take() {
			if !strings.HasPrefix(tk.URL, "evil-") {
				// An honest distribution: scanned in a second.
				h.d.Result("w", Result{TaskID: tk.ID, Dist: clean()}, now.Add(time.Second))
			}
		}
	}
	for _, name := range []string{"small", "pair"} {
		var got []Outcome
		for _, o := range h.outcomes() {
			if o.Job.Name == name {
				got = append(got, o)
			}
		}
		if len(got) != 1 || got[0].Failure != "" {
			t.Errorf("release %s: outcomes %+v, want one clean report within its lease (dropped: %d jobs)",
				name, got, h.d.Snapshot().Counters.JobsDropped)
		}
	}
}

// fleetSim drives a Dispatcher second by second as a coordinator, its
// workers and the API would: sessions run at most slots copies at once
// (the rest wait in the worker's queue), a copy runs for dur(url) or
// until maxTask after its arrival, the loader leases as many releases as
// Capacity says (at most 20 a lease), and the API re-leases a release whose
// lease ended unreported, dead-lettering it after 3 attempts.
type fleetSim struct {
	h        *harness
	sessions []*simSession
	dur      func(url string) time.Duration
	maxTask  time.Duration
	queue    []*simRelease // the API's: never leased first, then by lease end
	byName   map[string]*simRelease
	now      time.Time
	// slotTime sums the time copies ran in a slot, by release name prefix
	// up to "-" ("evil", "honest").
	slotTime map[string]time.Duration
	copies   map[string]int // copies sent, by the same prefix
	cancels  bool           // workers stop withdrawn copies (Cancel)
}

type simSession struct {
	id      string
	slots   int
	sink    *cancelSink
	running []*simCopy
	waiting []*simCopy
}

type simCopy struct {
	task    Task
	arrived time.Time
	started time.Time
}

type simRelease struct {
	job       Job
	published time.Time
	done      time.Time
	attempts  int
	leaseEnd  time.Time
	leased    bool
	reported  bool
	dead      bool
}

func newFleetSim(t *testing.T, cfg Config, identities, slots int, dur func(string) time.Duration) *fleetSim {
	f := &fleetSim{h: newHarness(t, cfg), dur: dur, maxTask: 10 * time.Minute, byName: map[string]*simRelease{},
		now: t0, slotTime: map[string]time.Duration{}, copies: map[string]int{}}
	for i := range identities {
		id := fmt.Sprintf("w%d", i)
		s := &cancelSink{}
		if err := f.h.d.Join(id, id, slots, s, t0); err != nil {
			t.Fatal(err)
		}
		f.h.d.RulesReady(id, "h1")
		f.sessions = append(f.sessions, &simSession{id: id, slots: slots, sink: s})
	}
	return f
}

func prefix(name string) string { return strings.SplitN(name, "-", 2)[0] }

// publish queues a release at the API.
func (f *fleetSim) publish(j Job) {
	r := &simRelease{job: j, published: f.now}
	f.queue = append(f.queue, r)
	f.byName[j.Name] = r
}

// lease hands out up to n releases: never leased ones first, then those
// whose lease ended, oldest lease first.
func (f *fleetSim) lease(n int) []Job {
	var fresh, expired []*simRelease
	for _, r := range f.queue {
		switch {
		case r.reported || r.dead:
		case !r.leased:
			fresh = append(fresh, r)
		case !f.now.Before(r.leaseEnd):
			expired = append(expired, r)
		}
	}
	var out []Job
	for _, r := range append(fresh, expired...) {
		if len(out) == n {
			break
		}
		if r.attempts == 3 {
			r.dead = true // dead-lettered: FAILED at the API
			continue
		}
		r.attempts++
		r.leased, r.leaseEnd = true, f.now.Add(120*time.Second)
		j := r.job
		j.Attempt, j.LeasedAt = intp(r.attempts), f.now
		out = append(out, j)
	}
	return out
}

// step advances one second.
func (f *fleetSim) step() {
	f.now = f.now.Add(time.Second)
	d := f.h.d
	d.Tick(f.now)
	if n := d.Capacity("h1"); n > 0 {
		if jobs := f.lease(min(n, 20)); len(jobs) > 0 {
			d.Admit(jobs, f.now)
		}
	}
	for _, s := range f.sessions {
		// Withdrawn copies stop within the second and are handed back
		// (unless the workers predate Cancel).
		if cancelled := s.sink.takeCancelled(); f.cancels && len(cancelled) > 0 {
			s.running = slices.DeleteFunc(s.running, func(c *simCopy) bool {
				if slices.Contains(cancelled, c.task.ID) {
					f.slotTime[prefix(c.task.Name)] += f.now.Sub(c.started)
					return true
				}
				return false
			})
			s.waiting = slices.DeleteFunc(s.waiting, func(c *simCopy) bool { return slices.Contains(cancelled, c.task.ID) })
			d.Returned(s.id, cancelled)
		}
		for _, tk := range s.sink.take() {
			s.waiting = append(s.waiting, &simCopy{task: tk, arrived: f.now})
			f.copies[prefix(tk.Name)]++
		}
		for len(s.running) < s.slots && len(s.waiting) > 0 {
			c := s.waiting[0]
			s.waiting = s.waiting[1:]
			c.started = f.now
			s.running = append(s.running, c)
		}
		kept := s.running[:0]
		for _, c := range s.running {
			end, timedOut := c.started.Add(f.dur(c.task.URL)), false
			if bound := c.arrived.Add(f.maxTask); !end.Before(bound) {
				end, timedOut = bound, true
			}
			if f.now.Before(end) {
				kept = append(kept, c)
				continue
			}
			f.slotTime[prefix(c.task.Name)] += end.Sub(c.started)
			r := Result{TaskID: c.task.ID, Dist: clean()}
			if timedOut {
				r = Result{TaskID: c.task.ID, Failure: "distribution " + c.task.URL + ": task ran past DRAGONFLY_MAX_TASK_TIME", FailureKind: KindLimit}
			}
			d.Result(s.id, r, f.now)
		}
		s.running = kept
	}
	for _, o := range f.h.outcomes() {
		if r := f.byName[o.Job.Name]; r != nil && !r.reported {
			r.reported, r.done = true, f.now
		}
	}
}

// latency is the mean and the longest time from publication to report
// of the releases of a prefix reported.
func (f *fleetSim) latency(p string) (mean, longest time.Duration) {
	var sum time.Duration
	n := 0
	for _, r := range f.queue {
		if prefix(r.job.Name) == p && r.reported {
			took := r.done.Sub(r.published)
			sum += took
			longest = max(longest, took)
			n++
		}
	}
	return sum / time.Duration(max(n, 1)), longest
}

// stats: releases of a prefix published, reported, dead-lettered, and the
// attempts their reports took beyond the first.
func (f *fleetSim) stats(p string) (published, reported, dead, extraAttempts int) {
	for _, r := range f.queue {
		if prefix(r.job.Name) != p {
			continue
		}
		published++
		if r.reported {
			reported++
			extraAttempts += r.attempts - 1
		}
		if !r.reported && (r.dead || (r.attempts == 3 && !f.now.Before(r.leaseEnd))) {
			dead++
		}
	}
	return
}

// TestCostOfCraftedReleases measures what crafted releases of 128
// distributions, each running to the worker's task time (10 min), cost a
// fleet (4 identities x 4 slots, or 8 x 32) that also leases 10 honest
// releases a minute (2 distributions of 3 s each), with workers that stop
// withdrawn copies (Cancel) and with workers that predate it; run with -v
// for the numbers. Every honest release is reported without losing an API
// attempt; with Cancel, none waits more than 2.5 min on the small fleet (10
// min before) and a crafted release costs at most 2 slot-hours there (8
// before); on the large one no honest release waits at all, and a crafted
// release gets at most 16 backup copies (8, and a backup of each of those
// once it is overdue itself; 128 before: the whole fleet for 10 min).
func TestCostOfCraftedReleases(t *testing.T) {
	type scenario struct {
		name              string
		identities, slots int
		crafted           []int // minutes at which a crafted release is published
		cancels           bool
		// Bounds: the longest an honest release waits for its report; the
		// slot time and the copies of one crafted release (0: none).
		wait      time.Duration
		slotTime  time.Duration
		maxCopies int
	}
	var scenarios []scenario
	for _, cancels := range []bool{false, true} {
		small, smallCost := 11*time.Minute, 8*time.Hour+time.Minute
		if cancels {
			small, smallCost = 150*time.Second, 2*time.Hour
		}
		scenarios = append(scenarios,
			scenario{"one crafted", 4, 4, []int{1}, cancels, small, smallCost, 0},
			scenario{"crafted every 10 min", 4, 4, []int{1, 11, 21, 31}, cancels, small + time.Minute, smallCost, 0},
			scenario{"one crafted, 8 x 32 slots", 8, 32, []int{1}, cancels, 10 * time.Second, 0, DefaultMaxDistributions + 2*maxJobBackups},
			scenario{"crafted every 10 min, 8 x 32 slots", 8, 32, []int{1, 11, 21, 31}, cancels, 10 * time.Second, 0, DefaultMaxDistributions + 2*maxJobBackups})
	}
	scenarios = append(scenarios, scenario{name: "honest only", identities: 4, slots: 4, wait: 10 * time.Second})
	for _, tc := range scenarios {
		t.Run(fmt.Sprintf("%s, cancels %v", tc.name, tc.cancels), func(t *testing.T) {
			f := newFleetSim(t, Config{Prefetch: DefaultPrefetch}, tc.identities, tc.slots, func(url string) time.Duration {
				if strings.HasPrefix(url, "evil") {
					return time.Hour
				}
				return 3 * time.Second
			})
			f.cancels = tc.cancels
			const minutes = 45
			for sec := 0; sec < minutes*60; sec++ {
				if sec%6 == 0 && sec < (minutes-5)*60 {
					n := sec / 6
					f.publish(mkJob(fmt.Sprintf("honest-%d", n), fmt.Sprintf("honest-%d-a", n), fmt.Sprintf("honest-%d-b", n)))
				}
				for i, m := range tc.crafted {
					if sec == m*60 {
						f.publish(crafted(fmt.Sprintf("evil-%d", i), DefaultMaxDistributions))
					}
				}
				f.step()
			}
			pub, rep, dead, extra := f.stats("honest")
			mean, longest := f.latency("honest")
			c := f.h.d.Snapshot().Counters
			t.Logf("honest: %d published, %d reported (latency mean %s, longest %s), %d dead-lettered, %d extra attempts; slot time %s (%s a release), %d copies",
				pub, rep, mean, longest, dead, extra, f.slotTime["honest"], f.slotTime["honest"]/time.Duration(max(rep, 1)), f.copies["honest"])
			if len(tc.crafted) > 0 {
				cp, cr, cd, _ := f.stats("evil")
				t.Logf("crafted: %d published, %d reported, %d dead-lettered; slot time %s (%s a release), %d copies (%.1f a distribution)",
					cp, cr, cd, f.slotTime["evil"], f.slotTime["evil"]/time.Duration(cp), f.copies["evil"],
					float64(f.copies["evil"])/float64(cp*DefaultMaxDistributions))
			}
			t.Logf("counters: dropped %d abandoned %d backups %d (won %d) no-verdict retries %d lost-failed %d",
				c.JobsDropped, c.JobsAbandoned, c.BackupsDispatched, c.BackupsWon, c.NoVerdictRetries, c.JobsLostFailed)
			if rep != pub || dead != 0 || extra != 0 || longest > tc.wait {
				t.Errorf("honest releases: %d of %d reported, %d dead-lettered, %d extra attempts, the longest waited %s (at most %s)",
					rep, pub, dead, extra, longest, tc.wait)
			}
			if n := len(tc.crafted); n > 0 {
				if per := f.slotTime["evil"] / time.Duration(n); tc.slotTime > 0 && per > tc.slotTime {
					t.Errorf("a crafted release took %s of slot time, at most %s", per, tc.slotTime)
				}
				if per := f.copies["evil"] / n; tc.maxCopies > 0 && per > tc.maxCopies {
					t.Errorf("a crafted release had %d copies, at most %d", per, tc.maxCopies)
				}
			}
		})
	}
}

// TestBackupsOfOneReleaseAreBounded: a release whose distributions all run
// for the worker's whole task time (10 min) makes every copy overdue; a
// backup copy of each runs as long again on another identity's free slots.
// At most maxJobBackups of one job's backups run at once, so honest work
// keeps the rest of the fleet; a backup that answers makes room for the next.
func TestBackupsOfOneReleaseAreBounded(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.joinAs("a", "A", 64, "h1")
	h.d.Admit([]Job{crafted("evil", 64)}, t0)
	if n := len(a.take()); n != 64 {
		t.Fatalf("a got %d tasks, want 64", n)
	}
	b := h.joinAs("b", "B", 64, "h1")
	h.d.Tick(at(45)) // every copy at a is overdue (3 x the 15 s prior)
	backups := b.take()
	if len(backups) != maxJobBackups {
		t.Fatalf("%d backups of one release at once, want %d (%d of B's 64 slots left for other work)",
			len(backups), maxJobBackups, 64-len(backups))
	}
	h.d.Admit([]Job{mkJob("honest", "h")}, at(46))
	if tk := one(t, b); tk.URL != "h" {
		t.Fatalf("honest task not sent to B's free slot: %+v", tk)
	}
	h.d.Result("b", Result{TaskID: backups[0].ID, Dist: clean()}, at(47))
	if tk := one(t, b); !strings.HasPrefix(tk.URL, "evil-") {
		t.Fatalf("no next backup once one answered: %+v", tk)
	}
}

// cancelSink is a sink that records the copies withdrawn from it.
type cancelSink struct {
	sink
	cancelled []uint64
}

func (s *cancelSink) Cancel(ids []uint64) {
	s.mu.Lock()
	s.cancelled = append(s.cancelled, ids...)
	s.mu.Unlock()
}

func (s *cancelSink) takeCancelled() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.cancelled
	s.cancelled = nil
	return ids
}

// joinCancelling adds a session whose sink can withdraw copies.
func (h *harness) joinCancelling(id, identity string, slots int) *cancelSink {
	h.t.Helper()
	s := &cancelSink{}
	if err := h.d.Join(id, identity, slots, s, t0); err != nil {
		h.t.Fatal(err)
	}
	h.d.RulesReady(id, "h1")
	return s
}

// TestCopiesWhoseResultsWouldBeThrownAwayAreWithdrawn: the copies still
// running of a job that failed, of a job dropped at the end of its lease,
// and of a task another copy answered are withdrawn, so the worker frees
// their slots instead of running them to the end (up to its 10 min task
// time); handing them back then is no strike against the session.
func TestCopiesWhoseResultsWouldBeThrownAwayAreWithdrawn(t *testing.T) {
	t.Run("job failed", func(t *testing.T) {
		h := newHarness(t, Config{})
		a := h.joinCancelling("a", "A", 3)
		h.d.Admit([]Job{mkJob("p", "u1", "u2", "u3")}, t0)
		ts := a.take()
		h.d.Result("a", Result{TaskID: ts[1].ID, Failure: "distribution u2: corrupt archive", FailureKind: "FAILURE_KIND_ARCHIVE"}, at(1))
		if got, want := a.takeCancelled(), []uint64{ts[0].ID, ts[2].ID}; !slices.Equal(sorted(got), want) {
			t.Fatalf("withdrawn %v, want %v (the copies of u1 and u3 of the failed job)", got, want)
		}
		h.d.Returned("a", []uint64{ts[0].ID, ts[2].ID})
		snap := h.d.Snapshot()
		if c := snap.Counters; c.TasksReturned != 0 || c.SessionsSuspended != 0 || c.TasksCancelled != 2 {
			t.Fatalf("counters %+v: a withdrawn copy handed back is no return", c)
		}
		if n := h.d.Capacity("h1"); n != 3 {
			t.Fatalf("capacity %d once the withdrawn copies are back, want 3", n)
		}
	})
	t.Run("job dropped", func(t *testing.T) {
		h := newHarness(t, Config{})
		a := h.joinCancelling("a", "A", 1)
		h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
		tk := one(t, &a.sink)
		h.d.Tick(at(119))
		if got := a.takeCancelled(); len(got) != 0 {
			t.Fatalf("withdrawn %v within the lease", got)
		}
		if r := h.d.Tick(at(120)); len(r.Dropped) != 1 {
			t.Fatalf("tick %+v, want p dropped (u2 never dispatched)", r)
		}
		if got := a.takeCancelled(); !slices.Equal(got, []uint64{tk.ID}) {
			t.Fatalf("withdrawn %v, want [%d] (u1 of the dropped job)", got, tk.ID)
		}
	})
	t.Run("another copy answered", func(t *testing.T) {
		h := newHarness(t, Config{})
		a := h.joinCancelling("a", "A", 1)
		h.d.Admit([]Job{mkJob("p", "u1", "u2")}, t0)
		ta := one(t, &a.sink)
		b := h.joinCancelling("b", "B", 1)
		one(t, &b.sink) // u2
		c := h.joinCancelling("c", "C", 1)
		h.d.Tick(at(45)) // u1 is overdue at a: a backup goes to c
		tc := one(t, &c.sink)
		h.d.Result("c", Result{TaskID: tc.ID, Dist: clean()}, at(46))
		if got := a.takeCancelled(); !slices.Equal(got, []uint64{ta.ID}) {
			t.Fatalf("withdrawn %v, want [%d] (a's copy of u1, answered by c's backup)", got, ta.ID)
		}
		if len(h.outcomes()) != 0 {
			t.Fatalf("outcomes %+v before u2 answered", h.outcomes())
		}
	})
}

func sorted(ids []uint64) []uint64 { return slices.Sorted(slices.Values(ids)) }

// TestWithdrawnBackupsFreeTheJobsBackupBudget: backups whose tasks another
// copy answered are withdrawn; their results would be thrown away, so they
// must not hold the job's backup budget (maxJobBackups) while they run on.
// A worker of the previous release finishes them (up to its 10 min task
// time) and a hostile one never hands them back: the job's other overdue
// copies must still get backups, on another identity's free slots.
func TestWithdrawnBackupsFreeTheJobsBackupBudget(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.joinAs("a", "A", 2*maxJobBackups, "h1")
	h.d.Admit([]Job{crafted("p", 2*maxJobBackups)}, t0)
	primaries := a.take()
	if len(primaries) != 2*maxJobBackups {
		t.Fatalf("a got %d tasks, want %d", len(primaries), 2*maxJobBackups)
	}
	b := h.joinCancelling("b", "B", maxJobBackups)
	h.d.Tick(at(45)) // every copy at a is overdue
	backups := b.take()
	if len(backups) != maxJobBackups {
		t.Fatalf("%d backups at b, want %d", len(backups), maxJobBackups)
	}
	// a answers the tasks b backs up: b's copies are withdrawn, and b (a
	// worker that ignores Cancel) keeps them.
	byURL := map[string]Task{}
	for _, tk := range primaries {
		byURL[tk.URL] = tk
	}
	for _, bk := range backups {
		h.d.Result("a", Result{TaskID: byURL[bk.URL].ID, Dist: clean()}, at(46))
	}
	if got := b.takeCancelled(); len(got) != maxJobBackups {
		t.Fatalf("withdrawn %d of b's copies, want %d", len(got), maxJobBackups)
	}
	c := h.joinCancelling("c", "C", maxJobBackups)
	h.d.Tick(at(47))
	if got := len(c.take()); got != maxJobBackups {
		t.Fatalf("%d backups of the job's %d overdue copies left at a went to c's %d free slots, want %d (backups outstanding counted: %d, all withdrawn)",
			got, maxJobBackups, maxJobBackups, maxJobBackups, maxJobBackups)
	}
}

// TestSilentBackupsDoNotHoldTheJobsOtherBackups: one identity holds a
// release's tasks and another the first maxJobBackups backups of them,
// both silent (heartbeating, never answering). The backups go overdue in
// turn and must be backed up on an honest identity's free slots, past the
// cap they fill, so the release is reported within its lease; held back by
// the cap, no copy reached the honest identity and the release was
// abandoned at MaxJobAge (15 min), every API attempt alike.
func TestSilentBackupsDoNotHoldTheJobsOtherBackups(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.joinAs("a", "A", 2*maxJobBackups, "h1")
	h.d.Admit([]Job{crafted("p", 2*maxJobBackups)}, t0)
	if n := len(a.take()); n != 2*maxJobBackups {
		t.Fatalf("a got %d tasks, want %d", n, 2*maxJobBackups)
	}
	b := h.joinAs("b", "B", maxJobBackups, "h1")
	h.d.Tick(at(45)) // every copy at a is overdue
	if n := len(b.take()); n != maxJobBackups {
		t.Fatalf("%d backups at b, want %d", n, maxJobBackups)
	}
	c := h.joinAs("c", "C", 2*maxJobBackups, "h1")
	sent := 0
	for sec := 46; sec < 120; sec++ {
		h.d.Tick(at(sec))
		for _, tk := range c.take() {
			sent++
			h.d.Result("c", Result{TaskID: tk.ID, Dist: clean()}, at(sec))
		}
	}
	if outs := h.outcomes(); len(outs) != 1 || outs[0].Failure != "" {
		t.Fatalf("outcomes %+v within the lease, want one clean report (honest C was sent %d copies)", outs, sent)
	}
}
