package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
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

// TestRulesWithAHashWorkersRefuseAreRefused: GET /rules answering a set
// whose hash is longer than a worker takes (protocol.MaxIDBytes) is refused
// and the rules in use stay. Loaded, every worker refused it unanswered, so
// no worker was ever ready for the current rules and leasing paused for
// good, while the whole hash went into the coordinator's log lines.
func TestRulesWithAHashWorkersRefuseAreRefused(t *testing.T) {
	api := newFakeAPI()
	m := loadedRules(t, api, time.Second)
	long := strings.Repeat("f", protocol.MaxIDBytes+1)
	api.SetRules(mainframe.RuleSet{Hash: long, Rules: map[string]string{"a": testRules}}, nil)
	if h := m.ensure(context.Background(), "h2"); h != "h1" {
		t.Fatalf("ensure = %d-byte hash, want the loaded h1", len(h))
	}
	err := m.update(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bytes a rules hash may have") || len(err.Error()) > 512 {
		t.Fatalf("update error = %.300v, want one naming the bound, clipped", err)
	}
}

// TestRulesWithTooManyFilesAreRefused: GET /rules answering a set of more
// than protocol.MaxRuleFiles files is refused before it is compiled, and
// the rules in use stay. Three million empty files fit in a 33 MiB answer
// and took seconds and hundreds of MiB to compile, here and on every
// worker.
func TestRulesWithTooManyFilesAreRefused(t *testing.T) {
	api := newFakeAPI()
	m := loadedRules(t, api, time.Second)
	many := map[string]string{"a": testRules}
	for i := range protocol.MaxRuleFiles {
		many[fmt.Sprintf("f%d", i)] = ""
	}
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: many}, nil)
	err := m.update(context.Background())
	if err == nil || !strings.Contains(err.Error(), "files, over the 4096 a rule set may have") {
		t.Fatalf("update error = %v, want one naming the file bound", err)
	}
	if h := m.current().Hash; h != "h1" {
		t.Fatalf("rules in use %q, want h1 kept", h)
	}
}

// TestUnknownHashesFetchTheRulesOncePerRetry: jobs naming a new unknown
// hash each (a hostile API) make at most one GET /rules per RulesRetry.
// Each made one: a fetch storm and, with a set that changes on every fetch,
// a switch (every worker recompiling) per job; with a hanging GET /rules,
// each job of a batch waited the whole budget before the next, so a batch
// of them was admitted past its lease.
func TestUnknownHashesFetchTheRulesOncePerRetry(t *testing.T) {
	api := newFakeAPI()
	clock := testkit.NewClock()
	m := newRulesManager(api, slog.New(slog.DiscardHandler), clock.Now, time.Minute, time.Second, func(rules.Set) {}, nopObserver{})
	if err := m.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := api.RulesFetches()
	for i := range 20 {
		if h := m.ensure(context.Background(), fmt.Sprintf("unknown-%d", i)); h != "h1" {
			t.Fatalf("ensure = %q, want h1", h)
		}
	}
	if n := api.RulesFetches() - before; n != 1 {
		t.Fatalf("%d fetches of GET /rules for 20 unknown hashes within the retry interval, want 1", n)
	}
	clock.Advance(time.Minute)
	m.ensure(context.Background(), "unknown-late")
	if n := api.RulesFetches() - before; n != 2 {
		t.Fatalf("%d fetches after the retry interval, want 2", n)
	}
}
