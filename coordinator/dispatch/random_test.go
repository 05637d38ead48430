package dispatch

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/score"
)

// checkInvariants verifies the dispatcher's internal consistency. The caller
// holds no lock; nothing else runs.
func (d *Dispatcher) checkInvariants() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, s := range d.sessions {
		if s.slots < 1 || s.slots > d.cfg.MaxSlots {
			return fmt.Errorf("session %s: %d slots", id, s.slots)
		}
		if len(s.outstanding) > s.slots+d.cfg.Prefetch {
			return fmt.Errorf("session %s holds %d tasks with %d slots + %d prefetch", id, len(s.outstanding), s.slots, d.cfg.Prefetch)
		}
		if s.quarantined != (d.quar[s.identity] != nil) {
			return fmt.Errorf("session %s: quarantined=%v, identity's entry %v", id, s.quarantined, d.quar[s.identity])
		}
		if s.quarantined && len(s.outstanding) > 0 {
			return fmt.Errorf("quarantined session %s holds %d tasks", id, len(s.outstanding))
		}
		perJob := map[*job]int{}
		for tid, a := range s.outstanding {
			if d.assigns[tid] != a || a.session != s || !slices.Contains(a.task.copies, a) {
				return fmt.Errorf("session %s: copy %d inconsistent", id, tid)
			}
			perJob[a.task.job]++
		}
		if len(perJob) != len(s.jobs) {
			return fmt.Errorf("session %s: affinity counts %d jobs, holds %d", id, len(s.jobs), len(perJob))
		}
		for js, n := range perJob {
			if s.jobs[js] != n {
				return fmt.Errorf("session %s: affinity count %d, holds %d", id, s.jobs[js], n)
			}
		}
	}
	backups := map[*job]int{}
	for tid, a := range d.assigns {
		if d.sessions[a.session.id] != a.session || a.session.outstanding[tid] != a {
			return fmt.Errorf("copy %d not held by a live session", tid)
		}
		if a.budget {
			if a.kind != copyBackup || !a.task.live() {
				return fmt.Errorf("copy %d counted as a backup its task needs: kind %d, task live %v", tid, a.kind, a.task.live())
			}
			backups[a.task.job]++
		}
	}
	for js, n := range backups {
		if js.backups != n || n > 2*maxJobBackups {
			return fmt.Errorf("job %s: counts %d backups outstanding, has %d (at most %d)", js.Name, js.backups, n, 2*maxJobBackups)
		}
	}
	for _, js := range d.jobs {
		if js.backups != backups[js] {
			return fmt.Errorf("job %s: counts %d backups outstanding, has %d", js.Name, js.backups, backups[js])
		}
	}
	if err := d.checkIdentities(); err != nil {
		return err
	}
	if err := d.checkSpeed(); err != nil {
		return err
	}
	for i, t := range d.pending {
		if t.hidx != i {
			return fmt.Errorf("heap index %d != %d", t.hidx, i)
		}
		if !t.live() || d.need(t) <= 0 {
			return fmt.Errorf("task %s/%d waiting with need %d, done %v, finished %v", t.job.Name, t.index, d.need(t), t.done, t.job.finished)
		}
	}
	for key, js := range d.jobs {
		if js.finished || js.Key() != key {
			return fmt.Errorf("job %s: finished %v in the live set", js.Name, js.finished)
		}
		notDone := 0
		for _, t := range js.tasks {
			if t.done {
				continue
			}
			notDone++
			if n := d.need(t); (n > 0) != (t.hidx >= 0) {
				return fmt.Errorf("task %s/%d: need %d, in heap %v (a task both waiting and assigned, or lost)", js.Name, t.index, n, t.hidx >= 0)
			}
			if len(t.votes) >= t.want {
				return fmt.Errorf("task %s/%d: %d votes, wants %d, not settled", js.Name, t.index, len(t.votes), t.want)
			}
			if len(t.lostBy) >= lostLimit || len(t.lostSessions) > lostLimit || (t.lostFew && len(t.lostSessions) >= lostLimit) {
				return fmt.Errorf("task %s/%d lost by %v (sessions %v, few %v) and still live", js.Name, t.index, t.lostBy, t.lostSessions, t.lostFew)
			}
			if len(t.returners) > maxReturners {
				return fmt.Errorf("task %s/%d: %d returners", js.Name, t.index, len(t.returners))
			}
			seen := map[string]bool{}
			if nv := t.noVerdict; nv != nil {
				if !t.retried || t.want != 1 || len(t.votes) > 0 || classOf(nv.res) != classNoVerdict || d.quar[nv.identity] != nil {
					return fmt.Errorf("task %s/%d: no-verdict failure of %s held with want %d, %d votes, retried %v", js.Name, t.index, nv.identity, t.want, len(t.votes), t.retried)
				}
				seen[nv.identity] = true
			}
			for _, v := range t.votes {
				if seen[v.identity] {
					return fmt.Errorf("task %s/%d: two votes of %s", js.Name, t.index, v.identity)
				}
				seen[v.identity] = true
				if d.quar[v.identity] != nil {
					return fmt.Errorf("task %s/%d: vote of quarantined %s kept", js.Name, t.index, v.identity)
				}
			}
			for _, a := range t.copies {
				if seen[a.session.identity] {
					return fmt.Errorf("task %s/%d: two copies or a copy and a vote of %s", js.Name, t.index, a.session.identity)
				}
				seen[a.session.identity] = true
			}
		}
		if notDone != js.remaining {
			return fmt.Errorf("job %s: remaining %d, %d tasks not done", js.Name, js.remaining, notDone)
		}
		for _, t := range js.tasks {
			if len(t.votes) > 3 || len(t.copies) > 5 {
				return fmt.Errorf("task %s/%d: %d votes, %d copies", js.Name, t.index, len(t.votes), len(t.copies))
			}
		}
	}
	if len(d.quarSeq) != len(d.quar) || len(d.quar) > d.cfg.MaxQuarantined {
		return fmt.Errorf("quarantine list %d/%d entries, bound %d", len(d.quarSeq), len(d.quar), d.cfg.MaxQuarantined)
	}
	return nil
}

// checkIdentities verifies the per-identity counts against the sessions.
func (d *Dispatcher) checkIdentities() error {
	type sum struct {
		sessions, outstanding, overdue int
		jobs                           map[*job]int
	}
	want := map[string]*sum{}
	for _, s := range d.sessions {
		w := want[s.identity]
		if w == nil {
			w = &sum{jobs: map[*job]int{}}
			want[s.identity] = w
		}
		if d.ids[s.identity] != s.ident {
			return fmt.Errorf("session %s: identity state not shared", s.id)
		}
		w.sessions++
		w.outstanding += len(s.outstanding)
		for _, a := range s.outstanding {
			w.jobs[a.task.job]++
			if a.overdue {
				w.overdue++
			}
		}
		if len(s.returns) > s.slots+d.cfg.Prefetch {
			return fmt.Errorf("session %s: %d return times kept", s.id, len(s.returns))
		}
	}
	for name, st := range d.ids {
		w := want[name]
		if w == nil {
			w = &sum{}
			if !slices.Contains(d.goneIDs, name) {
				return fmt.Errorf("identity %s without sessions not in the remembered list", name)
			}
		}
		if st.sessions != w.sessions || st.outstanding != w.outstanding || st.overdue != w.overdue || len(st.jobs) != len(w.jobs) {
			return fmt.Errorf("identity %s: %d sessions, %d outstanding, %d overdue, %d jobs; want %d, %d, %d, %d",
				name, st.sessions, st.outstanding, st.overdue, len(st.jobs), w.sessions, w.outstanding, w.overdue, len(w.jobs))
		}
		for js, n := range w.jobs {
			if st.jobs[js] != n {
				return fmt.Errorf("identity %s: %d copies of job %s counted, %d held", name, st.jobs[js], js.Name, n)
			}
		}
		if st.outstanding > d.cfg.MaxIdentityCredits {
			return fmt.Errorf("identity %s holds %d copies, cap %d", name, st.outstanding, d.cfg.MaxIdentityCredits)
		}
	}
	if len(want) != len(d.ids)-len(d.goneIDs) || len(d.goneIDs) > maxGoneIdentities {
		return fmt.Errorf("%d identities with sessions, %d states, %d remembered", len(want), len(d.ids), len(d.goneIDs))
	}
	return nil
}

// checkSpeed verifies the speed samples' bound and counts.
func (d *Dispatcher) checkSpeed() error {
	sp := &d.speed
	n := 0
	for id, q := range sp.ids {
		if len(q.samples) == 0 || q.identity != id {
			return fmt.Errorf("speed queue of %s: %d samples, named %s", id, len(q.samples), q.identity)
		}
		for i := 1; i < len(q.samples); i++ {
			if q.samples[i].seq <= q.samples[i-1].seq {
				return fmt.Errorf("speed samples of %s out of order", id)
			}
		}
		n += len(q.samples)
	}
	if n != sp.n || n > speedWindow {
		return fmt.Errorf("%d speed samples, counted %d, bound %d", n, sp.n, speedWindow)
	}
	sized := 0
	for size, b := range sp.bySize {
		for i, q := range b {
			if len(q.samples) != size || q.pos != i || sp.ids[q.identity] != q || size > sp.top {
				return fmt.Errorf("speed queue of %s in size slot %d at %d: %d samples, pos %d, top %d", q.identity, size, i, len(q.samples), q.pos, sp.top)
			}
			sized++
		}
	}
	if sized != len(sp.ids) || (sp.n > 0 && len(sp.bySize[sp.top]) == 0) {
		return fmt.Errorf("%d queues sized, %d identities; top %d", sized, len(sp.ids), sp.top)
	}
	return nil
}

// guardSink fails the run if a task is ever sent to a quarantined identity
// or a suspended session (Send runs under the dispatcher's lock, in the
// driver's goroutine).
type guardSink struct {
	d        *Dispatcher
	id       string
	identity string
	tasks    []Task
	err      *error
}

func (s *guardSink) Send(ts []Task) {
	if s.d.quar[s.identity] != nil && *s.err == nil {
		*s.err = fmt.Errorf("%d tasks sent to quarantined identity %s", len(ts), s.identity)
	}
	if ss := s.d.sessions[s.id]; ss != nil && s.d.suspended(ss) && *s.err == nil {
		*s.err = fmt.Errorf("%d tasks sent to suspended session %s", len(ts), s.id)
	}
	s.tasks = append(s.tasks, ts...)
}

type driverSession struct {
	id, identity string
	kind         string // honest, liar, silent, bouncer
	sink         *guardSink
}

// drive runs steps random operations chosen by rng against a dispatcher and
// checks the invariants after each; then it lets honest workers finish
// everything and checks that every admitted job ended exactly once.
func drive(t *testing.T, rng *rand.Rand, steps int) Counters {
	var sendErr error
	ended := map[string]int{}
	var d *Dispatcher
	var doneErr error
	d = New(Config{
		VerifyRate: 0.3, Rand: rng.Float64, Prefetch: 1, MaxSlots: 8, MaxIdentityCredits: 12,
		Done: func(o Outcome) {
			ended[o.Job.Name]++
			for _, id := range o.Identities {
				if d.Quarantined(id) && doneErr == nil {
					doneErr = fmt.Errorf("job %s reported with results of quarantined %s", o.Job.Name, id)
				}
			}
		},
	})
	now := t0
	sessions := map[string]*driverSession{}
	var order []string // session ids, for deterministic picks
	nextSess, nextJob := 0, 0
	var admitted []string
	expected := map[string]int{} // endings each release must have: one per admitted lease

	join := func(identity, kind string) *driverSession {
		id := fmt.Sprintf("s%d", nextSess)
		nextSess++
		slots := 1 + rng.IntN(3)
		if kind == "silent" {
			slots = 1 << 20
		}
		ds := &driverSession{id: id, identity: identity, kind: kind, sink: &guardSink{d: d, id: id, identity: identity, err: &sendErr}}
		if err := d.Join(id, identity, slots, ds.sink, now); err != nil {
			t.Fatal(err)
		}
		sessions[id] = ds
		order = append(order, id)
		if rng.IntN(5) > 0 {
			d.RulesReady(id, "h1")
		}
		if rng.IntN(4) == 0 {
			d.RulesReady(id, "h2")
		}
		return ds
	}
	pickSession := func(filter func(*driverSession) bool) *driverSession {
		var c []*driverSession
		for _, id := range order {
			if ds := sessions[id]; ds != nil && filter(ds) {
				c = append(c, ds)
			}
		}
		if len(c) == 0 {
			return nil
		}
		return c[rng.IntN(len(c))]
	}
	answer := func(ds *driverSession, tk Task) Result {
		r := Result{TaskID: tk.ID}
		f := fnv.New32a()
		f.Write([]byte(tk.URL))
		v := f.Sum32()
		switch {
		case ds.kind == "liar":
			r.Dist = &score.Distribution{}
		case rng.IntN(30) == 0:
			r.Failure, r.FailureKind = "download failed", KindDownload
		case v%17 == 0:
			r.Failure = "corrupt archive"
		default:
			w := int64(v % 5)
			r.Dist = &score.Distribution{Score: w, TopScore: w}
			if w > 0 {
				r.Dist.TopFile = "f.py"
				r.Dist.Rules = []score.Hit{{Name: "r", Weight: w}}
			}
		}
		return r
	}
	// A crasher is an input that usually kills the worker scanning it.
	crasher := func(tk Task) bool {
		f := fnv.New32a()
		f.Write([]byte(tk.URL))
		return f.Sum32()%11 == 0
	}
	finishing := false
	respond := func(ds *driverSession, n int) {
		if ds.kind == "bouncer" {
			ids := make([]uint64, len(ds.sink.tasks))
			for i, tk := range ds.sink.tasks {
				ids[i] = tk.ID
			}
			ds.sink.tasks = nil
			d.Returned(ds.id, ids)
			return
		}
		for i := 0; i < n && len(ds.sink.tasks) > 0; i++ {
			k := rng.IntN(len(ds.sink.tasks))
			tk := ds.sink.tasks[k]
			if crasher(tk) && !finishing && rng.IntN(4) > 0 {
				continue
			}
			ds.sink.tasks = slices.Delete(ds.sink.tasks, k, k+1)
			d.Result(ds.id, answer(ds, tk), now)
		}
	}
	identities := []string{"A", "B", "C", "D"}
	step := func(i int) {
		switch r := rng.IntN(100); {
		case r < 14:
			var batch []Job
			for range 1 + rng.IntN(3) {
				name := fmt.Sprintf("j%d", nextJob)
				nextJob++
				urls := make([]string, rng.IntN(5))
				for k := range urls {
					urls[k] = fmt.Sprintf("%s-u%d", name, k)
				}
				j := mkJob(name, urls...)
				j.LeasedAt = now
				if rng.IntN(8) == 0 {
					j.RulesHash = "h2"
				}
				batch = append(batch, j)
				admitted = append(admitted, name)
				expected[name]++
			}
			if rng.IntN(10) == 0 && len(admitted) > len(batch) {
				// The API leases a release again: merged into the job in
				// flight, or a new lease (with its own outcome) if ours ended.
				name := admitted[rng.IntN(len(admitted)-len(batch))]
				j := mkJob(name, name+"-u0")
				j.LeasedAt, j.Attempt = now, intp(2)
				if !d.Has(j.Name, j.Version) {
					expected[name]++
				}
				batch = append(batch, j)
			}
			d.Admit(batch, now)
		case r < 22:
			kind := "honest"
			id := identities[rng.IntN(len(identities))]
			switch rng.IntN(9) {
			case 0:
				kind, id = "liar", "L"
			case 1:
				kind, id = "silent", "S"
			case 2:
				kind, id = "bouncer", "R"
			}
			join(id, kind)
		case r < 28:
			if ds := pickSession(func(*driverSession) bool { return true }); ds != nil {
				why := LeaveLost
				if k := rng.IntN(4); k < 2 {
					why = LeaveReason(k * 2) // clean or cut
				}
				d.Leave(ds.id, why)
				delete(sessions, ds.id)
			}
		case r < 38:
			if ds := pickSession(func(ds *driverSession) bool { return len(ds.sink.tasks) > 0 }); ds != nil {
				var ids []uint64
				for _, tk := range ds.sink.tasks {
					if rng.IntN(4) > 0 {
						ids = append(ids, tk.ID)
					}
				}
				ids = append(ids, rng.Uint64N(1000))
				d.Started(ds.id, ids, now)
			}
		case r < 70:
			if ds := pickSession(func(ds *driverSession) bool { return ds.kind != "silent" && len(ds.sink.tasks) > 0 }); ds != nil {
				respond(ds, 1+rng.IntN(3))
			}
		case r < 74:
			if ds := pickSession(func(ds *driverSession) bool { return len(ds.sink.tasks) > 0 }); ds != nil {
				k := rng.IntN(len(ds.sink.tasks))
				d.Returned(ds.id, []uint64{ds.sink.tasks[k].ID})
				ds.sink.tasks = slices.Delete(ds.sink.tasks, k, k+1)
			}
		case r < 86:
			now = now.Add(time.Duration(rng.IntN(10)) * time.Second)
			for _, j := range d.Expire(now) {
				ended[j.Name]++
			}
		case r < 90:
			if ds := pickSession(func(ds *driverSession) bool { return slices.ContainsFunc(ds.sink.tasks, crasher) }); ds != nil {
				var ids []uint64
				for _, tk := range ds.sink.tasks {
					if crasher(tk) {
						ids = append(ids, tk.ID)
					}
				}
				d.Started(ds.id, ids, now)
				d.Leave(ds.id, LeaveLost)
				delete(sessions, ds.id)
			}
		case r < 91:
			d.Quarantine([]string{"A", "B", "C", "D", "L", "S", "R"}[rng.IntN(7)], "random")
		case r < 93:
			if ds := pickSession(func(*driverSession) bool { return true }); ds != nil {
				d.Drain(ds.id)
			}
		case r < 96:
			if ds := pickSession(func(*driverSession) bool { return true }); ds != nil {
				d.Result(ds.id, Result{TaskID: rng.Uint64N(2000), Dist: &score.Distribution{}}, now)
			}
		default:
			if ds := pickSession(func(*driverSession) bool { return true }); ds != nil {
				d.ForgetRulesAt(ds.id, "h2")
			}
		}
		if err := errors.Join(d.checkInvariants(), sendErr, doneErr); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for name, n := range ended {
			if n > expected[name] {
				t.Fatalf("step %d: job %s ended %d times, admitted %d", i, name, n, expected[name])
			}
		}
	}
	for i := range steps {
		step(i)
	}

	// Finish: fresh honest identities answer everything; time moves on, so
	// jobs held by silent or quarantined workers are backed up or dropped.
	finishing = true
	// Now and then nobody new comes for longer than MaxJobAge: jobs held by
	// silent workers and nobody else are abandoned.
	late := 0
	if rng.IntN(4) == 0 {
		late = 200
	}
	// Now and then the coordinator shuts down: nothing is assigned any more
	// (the fresh identities below drain too), running copies still answer,
	// and the jobs left end when their lease does.
	if rng.IntN(4) == 0 {
		d.DrainAll()
		if err := errors.Join(d.checkInvariants(), sendErr, doneErr); err != nil {
			t.Fatalf("after DrainAll: %v", err)
		}
	}
	for round := 0; d.Snapshot().JobsInFlight > 0; round++ {
		if round > 2000 {
			t.Fatalf("jobs still in flight after %d rounds: %+v", round, d.Snapshot())
		}
		if round%50 == 0 && round >= late {
			for k := range 3 {
				ds := join(fmt.Sprintf("fin-%d-%d", round, k), "honest")
				d.RulesReady(ds.id, "h1")
				d.RulesReady(ds.id, "h2")
			}
		}
		for _, id := range order {
			if ds := sessions[id]; ds != nil && ds.kind != "silent" {
				respond(ds, len(ds.sink.tasks))
			}
		}
		now = now.Add(5 * time.Second)
		r := d.Tick(now)
		for _, j := range append(r.Dropped, r.Abandoned...) {
			ended[j.Name]++
		}
		if err := errors.Join(d.checkInvariants(), sendErr, doneErr); err != nil {
			t.Fatalf("finishing round %d: %v", round, err)
		}
	}
	for _, name := range admitted {
		if n := ended[name]; n != expected[name] {
			t.Fatalf("job %s ended %d times, want exactly %d (once per admitted lease)", name, n, expected[name])
		}
	}
	s := d.Snapshot()
	if s.TasksWaiting != 0 || s.JobsInFlight != 0 {
		t.Fatalf("leftover state %+v", s)
	}
	return s.Counters
}

// TestRandomizedInvariants drives seeded random sequences of joins, leaves,
// starts, results (honest, lying, silent), hand-backs, ticks, admissions,
// quarantines and drains (of sessions, and in a quarter of the runs of the
// whole dispatcher before the finish), checking the invariants after every
// step.
func TestRandomizedInvariants(t *testing.T) {
	seeds := uint64(200)
	if testing.Short() {
		seeds = 30
	}
	var sum Counters
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			c := drive(t, rand.New(rand.NewPCG(seed, 0xd15)), 500)
			sum.BackupsDispatched += c.BackupsDispatched
			sum.BackupsWon += c.BackupsWon
			sum.JobsLostFailed += c.JobsLostFailed
			sum.VerifyMismatch += c.VerifyMismatch
			sum.VerifyDecided += c.VerifyDecided
			sum.Quarantines += c.Quarantines
			sum.ResultsDiscarded += c.ResultsDiscarded
			sum.VerifySkipped += c.VerifySkipped
			sum.JobsDropped += c.JobsDropped
			sum.JobsSuperseded += c.JobsSuperseded
			sum.TasksLost += c.TasksLost
			sum.JobsAbandoned += c.JobsAbandoned
			sum.TasksReturned += c.TasksReturned
			sum.SessionsSuspended += c.SessionsSuspended
			sum.NoVerdictRetries += c.NoVerdictRetries
			sum.NoVerdictOverruled += c.NoVerdictOverruled
			sum.NoVerdictConfirmed += c.NoVerdictConfirmed
		})
	}
	// The run must reach the hostile paths, or it proves little. The short
	// run (30 seeds) checks the invariants only: it does not reach every
	// path (no abandoned job in its seeds).
	t.Logf("totals: %+v", sum)
	if testing.Short() {
		return
	}
	for name, n := range map[string]int64{
		"backups":            sum.BackupsDispatched,
		"backups won":        sum.BackupsWon,
		"lost-by-3 failures": sum.JobsLostFailed,
		"mismatches":         sum.VerifyMismatch,
		"decisions":          sum.VerifyDecided,
		"quarantines":        sum.Quarantines,
		"discarded results":  sum.ResultsDiscarded,
		"skipped checks":     sum.VerifySkipped,
		"dropped jobs":       sum.JobsDropped,
		"abandoned jobs":     sum.JobsAbandoned,
		"superseded leases":  sum.JobsSuperseded,
		"returns":            sum.TasksReturned,
		"suspensions":        sum.SessionsSuspended,
		"no-verdict retries": sum.NoVerdictRetries,
		"retries overruled":  sum.NoVerdictOverruled,
		"retries confirmed":  sum.NoVerdictConfirmed,
	} {
		if n == 0 {
			t.Errorf("no %s in %d seeded runs", name, seeds)
		}
	}
}

// FuzzDispatcher explores the same operations from fuzzed seeds:
// go test -fuzz FuzzDispatcher ./coordinator/dispatch/
func FuzzDispatcher(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(42), uint64(7))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		_ = drive(t, rand.New(rand.NewPCG(a, b)), 300)
	})
}

// TestRandomizedExactlyOnce drives the dispatcher with random joins, leaves,
// results, failures and hand-backs and checks that every admitted job ends in
// exactly one outcome and no session ever holds more than its credits.
func TestRandomizedExactlyOnce(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 7))
		h := newHarness(t, Config{Prefetch: 1})
		type held struct {
			session string
			task    Task
		}
		var inFlight []held
		live := map[string]int{}
		nextSession := 0
		joinOne := func() {
			id := fmt.Sprintf("s%d", nextSession)
			nextSession++
			live[id] = 1 + rng.IntN(3)
			h.join(id, live[id], "h1")
		}
		joinOne()
		collect := func() {
			for id, s := range h.sinks {
				for _, tk := range s.take() {
					inFlight = append(inFlight, held{id, tk})
				}
			}
		}
		jobs := 0
		for step := 0; step < 400; step++ {
			switch r := rng.IntN(10); {
			case r < 2:
				var batch []Job
				for range 1 + rng.IntN(3) {
					n := rng.IntN(4)
					urls := make([]string, n)
					for i := range urls {
						urls[i] = fmt.Sprintf("j%d-u%d", jobs, i)
					}
					batch = append(batch, mkJob(fmt.Sprintf("j%d", jobs), urls...))
					jobs++
				}
				h.d.Admit(batch, t0)
			case r < 3:
				joinOne()
			case r < 4 && len(live) > 1:
				for id := range live {
					delete(live, id)
					h.d.Leave(id, LeaveReason(rng.IntN(3)))
					break
				}
			case r < 5 && len(inFlight) > 0:
				i := rng.IntN(len(inFlight))
				x := inFlight[i]
				h.d.Returned(x.session, []uint64{x.task.ID})
				inFlight = slices.Delete(inFlight, i, i+1)
			default:
				if len(inFlight) == 0 {
					continue
				}
				i := rng.IntN(len(inFlight))
				x := inFlight[i]
				inFlight = slices.Delete(inFlight, i, i+1)
				res := Result{TaskID: x.task.ID, Dist: &score.Distribution{}}
				if rng.IntN(20) == 0 {
					res = Result{TaskID: x.task.ID, Failure: "boom"}
				}
				h.d.Result(x.session, res, t0)
			}
			collect()
			for _, si := range h.d.Snapshot().Sessions {
				if si.Outstanding > si.Slots+1 {
					t.Fatalf("seed %d: session %s holds %d tasks with %d slots", seed, si.ID, si.Outstanding, si.Slots)
				}
			}
		}
		// Finish everything: keep answering until no task is outstanding.
		for len(inFlight) > 0 || h.d.Snapshot().TasksWaiting > 0 {
			if len(live) == 0 {
				joinOne()
			}
			if len(inFlight) == 0 {
				joinOne()
				collect()
				continue
			}
			x := inFlight[0]
			inFlight = inFlight[1:]
			h.d.Result(x.session, Result{TaskID: x.task.ID, Dist: &score.Distribution{}}, t0)
			collect()
		}
		counts := map[string]int{}
		for _, o := range h.outcomes() {
			counts[o.Job.Name]++
		}
		for i := range jobs {
			if n := counts[fmt.Sprintf("j%d", i)]; n != 1 {
				t.Fatalf("seed %d: job j%d has %d outcomes, want exactly 1", seed, i, n)
			}
		}
		if s := h.d.Snapshot(); s.JobsInFlight != 0 || s.TasksWaiting != 0 {
			t.Fatalf("seed %d: leftover state %+v", seed, s)
		}
	}
}
