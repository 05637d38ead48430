package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/rules"
)

// hangingRules is an API whose GET /rules, once hang is set, answers only
// when its context ends.
type hangingRules struct {
	*fakeAPI
	hang atomic.Bool
}

func (a *hangingRules) Rules(ctx context.Context) (mainframe.RuleSet, error) {
	if a.hang.Load() {
		<-ctx.Done()
		return mainframe.RuleSet{}, ctx.Err()
	}
	return a.fakeAPI.Rules(ctx)
}

// loadedRules is a rules manager over api with testRules loaded as "h1".
func loadedRules(t *testing.T, api API, budget time.Duration) *rulesManager {
	t.Helper()
	m := newRulesManager(api, slog.New(slog.DiscardHandler), time.Now, time.Minute, budget, func(rules.Set) {}, nopObserver{})
	if err := m.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUnknownHashWaitsOnlyTheBudget: a job naming new rules while GET
// /rules hangs is scanned with the loaded set once the update's budget is
// spent, not held (and its lease left to run out) until the API answers.
func TestUnknownHashWaitsOnlyTheBudget(t *testing.T) {
	api := &hangingRules{fakeAPI: newFakeAPI()}
	m := loadedRules(t, api, 50*time.Millisecond)
	api.hang.Store(true)
	got := make(chan string, 1)
	go func() { got <- m.ensure(context.Background(), "h2") }()
	select {
	case h := <-got:
		if h != "h1" {
			t.Fatalf("ensure = %q, want the loaded h1", h)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ensure still waits for the hanging GET /rules")
	}
}

// TestTriedHashesBounded: the unknown hashes remembered (not to fetch the
// rules again for each job) stay bounded when the API names a new one in
// every job; the newest is remembered.
func TestTriedHashesBounded(t *testing.T) {
	api := newFakeAPI()
	m := loadedRules(t, api, time.Second)
	for i := range 3 * maxTried {
		if h := m.ensure(context.Background(), fmt.Sprintf("unknown-%d", i)); h != "h1" {
			t.Fatalf("ensure = %q, want h1", h)
		}
	}
	m.mu.Lock()
	n, last := len(m.tried), m.tried[fmt.Sprintf("unknown-%d", 3*maxTried-1)]
	m.mu.Unlock()
	if n > maxTried || last.IsZero() {
		t.Fatalf("%d hashes remembered (bound %d), newest remembered: %v", n, maxTried, !last.IsZero())
	}
	before := api.RulesFetches()
	m.ensure(context.Background(), fmt.Sprintf("unknown-%d", 3*maxTried-1))
	if api.RulesFetches() != before {
		t.Fatal("the newest unknown hash was fetched again within the retry interval")
	}
}
