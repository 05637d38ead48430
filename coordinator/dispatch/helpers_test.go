package dispatch

import (
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

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func clean() *score.Distribution { return &score.Distribution{} }
func bad() *score.Distribution {
	return dist("pkg/evil.py", 100, score.Hit{Name: "evil", Weight: 100})
}

// seq returns a Rand that yields vals in turn, then 0.99 (never picked).
func seq(vals ...float64) func() float64 {
	return func() float64 {
		if len(vals) == 0 {
			return 0.99
		}
		v := vals[0]
		vals = vals[1:]
		return v
	}
}

func one(t *testing.T, s *sink) Task {
	t.Helper()
	ts := s.take()
	if len(ts) != 1 {
		t.Fatalf("got %d tasks, want 1: %+v", len(ts), ts)
	}
	return ts[0]
}

func outcomeOf(t *testing.T, h *harness, name string) Outcome {
	t.Helper()
	var found []Outcome
	for _, o := range h.outcomes() {
		if o.Job.Name == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("job %s has %d outcomes, want 1", name, len(found))
	}
	return found[0]
}

// ids returns the task ids of tasks.
func ids(ts []Task) []uint64 {
	out := make([]uint64, len(ts))
	for i, tk := range ts {
		out[i] = tk.ID
	}
	return out
}

// sessionOf returns a session's load from a snapshot.
func sessionOf(t *testing.T, s Snapshot, id string) SessionLoad {
	t.Helper()
	return only(t, s.Sessions, func(x SessionLoad) bool { return x.ID == id })
}

// identityOf returns an identity's load from a snapshot.
func identityOf(t *testing.T, s Snapshot, identity string) IdentityLoad {
	t.Helper()
	return only(t, s.Identities, func(x IdentityLoad) bool { return x.Identity == identity })
}

// only returns the first of xs that match, failing t when none does.
func only[T any](t *testing.T, xs []T, match func(T) bool) T {
	t.Helper()
	i := slices.IndexFunc(xs, match)
	if i < 0 {
		t.Fatalf("none matches in %+v", xs)
	}
	return xs[i]
}

// heldByA returns a harness on cfg where session a (identity A, one slot)
// holds the only task of job p (u1), and that task.
func heldByA(t *testing.T, cfg Config) (*harness, *sink, Task) {
	h := newHarness(t, cfg)
	a := h.joinAs("a", "A", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	return h, a, one(t, a)
}

// honestInTime fails t unless the harness has exactly jobs outcomes, each a
// clean verdict from the honest identity alone, reported within the job's
// 120 s lease.
func honestInTime(t *testing.T, h *harness, jobs int) {
	t.Helper()
	outs := h.outcomes()
	if len(outs) != jobs {
		t.Fatalf("%d outcomes for %d jobs", len(outs), jobs)
	}
	for _, o := range outs {
		if o.Failure != "" || !slices.Equal(o.Identities, []string{"honest"}) {
			t.Fatalf("outcome %+v", o)
		}
		if took := o.Finished.Sub(o.Job.LeasedAt); took >= 120*time.Second {
			t.Fatalf("job %s reported %s after its lease began, past the 120 s lease", o.Job.Name, took)
		}
	}
}

// heldByAWithB is heldByA with session b (identity B, one slot) joined
// before the job was admitted; what b was sent is left in its sink.
func heldByAWithB(t *testing.T, cfg Config) (h *harness, a, b *sink, ta Task) {
	h = newHarness(t, cfg)
	a = h.joinAs("a", "A", 1, "h1")
	b = h.joinAs("b", "B", 1, "h1")
	h.d.Admit([]Job{mkJob("p", "u1")}, t0)
	return h, a, b, one(t, a)
}

// u1At45 checks that s is sent nothing at 44 s and a copy of u1 at 45 s:
// with the 15 s prior a copy is overdue 45 s after its first dispatch.
func u1At45(t *testing.T, h *harness, s *sink) {
	t.Helper()
	h.d.Tick(at(44))
	if n := len(s.take()); n != 0 {
		t.Fatalf("%d tasks before 45 s", n)
	}
	h.d.Tick(at(45))
	if tk := one(t, s); tk.URL != "u1" {
		t.Fatalf("at 45 s: %+v", tk)
	}
}
