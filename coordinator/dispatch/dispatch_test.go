package dispatch

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/score"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// sink records the tasks sent to one session.
type sink struct {
	mu    sync.Mutex
	tasks []Task
}

func (s *sink) Send(ts []Task) {
	s.mu.Lock()
	s.tasks = append(s.tasks, ts...)
	s.mu.Unlock()
}

func (s *sink) take() []Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tasks
	s.tasks = nil
	return ts
}

type harness struct {
	t      *testing.T
	d      *Dispatcher
	mu     sync.Mutex
	outs   []Outcome
	events []Event
	sinks  map[string]*sink
}

// newHarness returns a dispatcher whose outcomes and events are recorded.
// Spot checks are off unless cfg asks for them (VerifyRate 0).
func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, sinks: map[string]*sink{}}
	cfg.Done = func(o Outcome) {
		h.mu.Lock()
		h.outs = append(h.outs, o)
		h.mu.Unlock()
	}
	cfg.OnEvent = func(e Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}
	h.d = New(cfg)
	return h
}

// join adds a session whose identity is its id.
func (h *harness) join(id string, slots int, hashes ...string) *sink {
	return h.joinAs(id, id, slots, hashes...)
}

func (h *harness) joinAs(id, identity string, slots int, hashes ...string) *sink {
	h.t.Helper()
	s := &sink{}
	h.sinks[id] = s
	if err := h.d.Join(id, identity, slots, s, t0); err != nil {
		h.t.Fatal(err)
	}
	for _, hash := range hashes {
		h.d.RulesReady(id, hash)
	}
	return s
}

func (h *harness) outcomes() []Outcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.outs)
}

// eventsOf returns the recorded events of a kind.
func (h *harness) eventsOf(k EventKind) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func intp(i int) *int       { return &i }
func strp(s string) *string { return &s }
func mkJob(name string, urls ...string) Job {
	return Job{Name: name, Version: "1.0", Distributions: urls, RulesHash: "h1", LeasedAt: t0, Attempt: intp(1), AssignmentID: strp("a-" + name)}
}

func dist(top string, topScore int64, hits ...score.Hit) *score.Distribution {
	d := &score.Distribution{TopFile: top, TopScore: topScore, Rules: hits}
	for _, h := range hits {
		d.Score += h.Weight
	}
	return d
}

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
	if c := h.d.Capacity(); c != -7 {
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
