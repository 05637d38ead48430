package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
	ensureGivesTheLoaded(t, m, "the hanging GET /rules", func() {})
}

// TestBatchNamingNewRulesWaitsOneBudget, on synctest's clock, with the
// coordinator's defaults (a 120 s lease: an update budget of 30 s, and
// RulesRetry 30 s): a lease answer of 20 jobs naming rules GET /rules cannot
// bring (it hangs) waits one budget in all, then every job is scanned with
// the loaded set. The retry interval was dated from the start of the try,
// which the budget's wait had used up: whether the next job of the batch
// waited a whole budget again was the race of two timers set for the same
// instant (the budget's and the fetch's deadline), lost here about once in
// four, and again for the job after it (in real time on one CPU, nearly
// always: every job waited in turn). Batches waited 60 s, 90 s, 2 min 30 s
// (past their lease: dropped unreported, each job losing one of its three
// attempts). The race is run 64 times.
func TestBatchNamingNewRulesWaitsOneBudget(t *testing.T) {
	for i := range 64 {
		synctest.Test(t, func(t *testing.T) {
			api := &hangingRules{fakeAPI: newFakeAPI()}
			c, err := New(Config{API: api, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.out.Close()
			if err := c.rules.load(context.Background()); err != nil {
				t.Fatal(err)
			}
			api.hang.Store(true)
			jobs := make([]mainframe.Job, 20)
			for k := range jobs {
				jobs[k] = job(fmt.Sprintf("p%d", k), "u")
				jobs[k].Hash = "h2"
			}
			start := time.Now()
			if n := c.admit(context.Background(), jobs, start); n != len(jobs) {
				t.Fatalf("%d jobs admitted, want %d", n, len(jobs))
			}
			if took, budget := time.Since(start), min(c.cfg.LeaseTimeout/4, 30*time.Second); took > budget {
				t.Fatalf("run %d: admitting %d jobs naming rules GET /rules cannot bring took %s, want at most one update budget (%s; the lease is %s)",
					i, len(jobs), took, budget, c.cfg.LeaseTimeout)
			}
			synctest.Wait() // the update given up has ended
		})
	}
}

// ensureGivesTheLoaded fails t unless m.ensure of h2 soon gives the loaded
// h1 (the update, held up by what, goes on without it); stuck runs before
// failing.
func ensureGivesTheLoaded(t *testing.T, m *rulesManager, what string, stuck func()) {
	t.Helper()
	got := make(chan string, 1)
	go func() { got <- m.ensure(context.Background(), "h2") }()
	select {
	case h := <-got:
		if h != "h1" {
			t.Fatalf("ensure = %q, want the loaded h1", h)
		}
	case <-time.After(20 * time.Second):
		stuck()
		t.Fatal("ensure still waits for " + what)
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

// TestGlobalRulesAreLoggedLoudly: a rule set holding a global rule loads
// (a global rule has its uses), but a false one makes every release read
// clean: every file matches no rule, and the fleet reports score 0 with a
// straight face. The load says so at warning level, naming the rule.
func TestGlobalRulesAreLoggedLoudly(t *testing.T) {
	api := newFakeAPI()
	var log syncLog
	m := newRulesManager(api, log.logger(), time.Now, time.Minute, time.Second, func(rules.Set) {}, nopObserver{})
	if err := m.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "global") {
		t.Fatalf("a set without global rules was warned about:\n%s", log.String())
	}
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": testRules, "z": "global rule off { condition: false }\n"}}, nil)
	if h := m.ensure(context.Background(), "h2"); h != "h2" {
		t.Fatalf("ensure = %q, want h2 loaded", h)
	}
	out := log.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "holds 1 global rule (off)") || !strings.Contains(out, "every release read clean") {
		t.Fatalf("log:\n%s\nwant a warning naming the global rule off", out)
	}
}

// TestRulesHashServedWithOtherSourcesIsRefused: a hash names one rule set.
// An API that goes back to a hash it served before with other sources (a
// buggy rollback, a hostile answer) is refused and the rules in use stay:
// a worker that compiled the hash keeps its first content (it compiles a
// hash once, and a session offered it is not offered it again), so reports
// under the hash would come from either content, and its results were
// checked against the other's weights.
func TestRulesHashServedWithOtherSourcesIsRefused(t *testing.T) {
	api := newFakeAPI()
	m := loadedRules(t, api, time.Second)
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": testRules + "rule extra { condition: false }\n"}}, nil)
	if h := m.ensure(context.Background(), "h2"); h != "h2" {
		t.Fatalf("ensure = %q, want h2", h)
	}
	// h1 again, its rules weighing otherwise.
	other := strings.ReplaceAll(testRules, "weight = 3", "weight = 30")
	api.SetRules(mainframe.RuleSet{Hash: "h1", Rules: map[string]string{"a": other}}, nil)
	err := m.update(context.Background())
	if err == nil || !strings.Contains(err.Error(), "served with other sources") {
		t.Fatalf("update error = %v, want the hash refused", err)
	}
	if h := m.current().Hash; h != "h2" {
		t.Fatalf("rules in use %q, want h2 kept", h)
	}
	if w := m.weights("h1"); w["r1"] != 3 {
		t.Fatalf("weights of h1 %v, want those it was loaded with (r1: 3)", w)
	}
	// The same sources under h1: a rollback, taken.
	api.SetRules(mainframe.RuleSet{Hash: "h1", Rules: map[string]string{"a": testRules}}, nil)
	if err := m.update(context.Background()); err != nil || m.current().Hash != "h1" {
		t.Fatalf("rollback to h1: %v, in use %q", err, m.current().Hash)
	}
	// The current hash with other sources: said so, the set in use stays.
	api.SetRules(mainframe.RuleSet{Hash: "h1", Rules: map[string]string{"a": other}}, nil)
	if err := m.update(context.Background()); err == nil || !strings.Contains(err.Error(), "served with other sources") {
		t.Fatalf("update error = %v, want the hash refused", err)
	}
}

// TestSlowCompileWaitsOnlyTheBudget: a job naming new rules waits at most
// the budget for them, compiling included, then is scanned with the loaded
// set; the new set is taken once it compiles. libyara cannot be stopped
// mid-compile, and a set within the 32 MiB bound of the time took 63 s (437,160 rules
// of one literal) or 4 min 16 s (165 rules of 10,000 strings) here: the
// lease loop waited that long with its batch, past the 120 s lease.
func TestSlowCompileWaitsOnlyTheBudget(t *testing.T) {
	api := newFakeAPI()
	m := loadedRules(t, api, 50*time.Millisecond)
	release := make(chan struct{})
	m.compile = func(s rules.Set) (*rules.Compiled, error) {
		<-release
		return rules.Compile(s)
	}
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": testRules + "rule extra { condition: false }\n"}}, nil)
	ensureGivesTheLoaded(t, m, "the compile", func() { close(release) })
	close(release)
	testkit.WaitFor(t, 20*time.Second, func() bool { return m.current().Hash == "h2" },
		func() string { return "h2 not taken once compiled: in use " + m.current().Hash })
}

// TestCompileEndingAfterShutdownIsNotTaken: a set still compiling when the
// coordinator shuts down (the update goes on past its budget, and libyara
// cannot stop a compile) is not taken when it compiles: leasing has ended,
// and switching then offered the new set to every draining worker (each
// compiling it while it finishes its last tasks) or to sessions of a
// coordinator whose Run had returned.
func TestCompileEndingAfterShutdownIsNotTaken(t *testing.T) {
	api := newFakeAPI()
	f := startFleet(t, api, func(c *Config) { c.LeaseTimeout, c.DrainTimeout = MinLeaseTimeout, 100*time.Millisecond })
	w := f.worker("w", 1)
	w.ready()
	entered, release := make(chan struct{}), make(chan struct{})
	f.c.rules.compile = func(s rules.Set) (*rules.Compiled, error) {
		if s.Hash == "h2" {
			close(entered)
			<-release
		}
		return rules.Compile(s)
	}
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": testRules + "rule extra { condition: false }\n"}}, nil)
	j := job("p", "u1")
	j.Hash = "h2"
	api.Add(j)
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("h2 is not compiled")
	}
	f.c.rules.mu.Lock()
	run := f.c.rules.running
	f.c.rules.mu.Unlock()
	if run == nil {
		t.Fatal("no update running while h2 compiles")
	}
	f.stop() // Run has returned
	close(release)
	<-run.done
	if h := f.c.rules.current().Hash; h != "h1" {
		t.Fatalf("rules %q taken after Run returned, want h1 kept", h)
	}
}

// TestRunningCompileIsNotWaitedForAgain: while a set compiles past the
// budget, jobs naming new rules after the retry interval are scanned with
// the loaded set at once, without a fetch, not after another budget each.
func TestRunningCompileIsNotWaitedForAgain(t *testing.T) {
	api := newFakeAPI()
	clock := testkit.NewClock()
	m := newRulesManager(api, slog.New(slog.DiscardHandler), clock.Now, time.Minute, 50*time.Millisecond, func(rules.Set) {}, nopObserver{})
	if err := m.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	m.compile = func(s rules.Set) (*rules.Compiled, error) {
		close(entered)
		<-release
		return rules.Compile(s)
	}
	api.SetRules(mainframe.RuleSet{Hash: "h2", Rules: map[string]string{"a": testRules + "rule extra { condition: false }\n"}}, nil)
	if h := m.ensure(context.Background(), "h2"); h != "h1" {
		t.Fatalf("ensure = %q, want h1 past the budget", h)
	}
	<-entered
	m.mu.Lock()
	run := m.running
	m.mu.Unlock()
	defer func() { close(release); <-run.done }()
	m.budget = time.Hour // a second wait for the budget would hold the test
	fetches := api.RulesFetches()
	for i := range 3 {
		clock.Advance(time.Minute)
		got := make(chan string, 1)
		go func() { got <- m.ensure(context.Background(), fmt.Sprintf("h%d", 3+i)) }()
		select {
		case h := <-got:
			if h != "h1" {
				t.Fatalf("ensure = %q, want h1", h)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a job waits for the budget again while the compile runs")
		}
	}
	if n := api.RulesFetches() - fetches; n != 0 {
		t.Fatalf("%d fetches while the compile runs, want none", n)
	}
}

// TestOversizedRulesAtStartSayNoneAreLoaded: a set over the bound at start
// (within the 32 MiB of the previous release, refused since 4 MiB) leaves
// no rules to scan with: load retries and nothing is leased. The error
// said the rules in use were kept.
func TestOversizedRulesAtStartSayNoneAreLoaded(t *testing.T) {
	api := newFakeAPI()
	api.SetRules(mainframe.RuleSet{Hash: "big", Rules: map[string]string{"a": testRules + "/*" + strings.Repeat("x", protocol.MaxRuleSetBytes) + "*/\n"}}, nil)
	m := newRulesManager(api, slog.New(slog.DiscardHandler), time.Now, time.Minute, time.Second, func(rules.Set) {}, nopObserver{})
	err := m.update(context.Background())
	if err == nil || strings.Contains(err.Error(), "keeping the rules in use") || !strings.Contains(err.Error(), "no rules are loaded: nothing is leased") {
		t.Fatalf("update error = %v, want one saying no rules are loaded", err)
	}
}
