package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/retry"
	"github.com/dragonfly-fleet/fleet/rules"
)

// rulesManager keeps the rule set the fleet scans with. It fetches GET /rules
// at start and whenever a leased job names another hash, validates the new set
// by compiling it, and only then switches. A failed update keeps the old set:
// jobs are then scanned and reported under the hash actually used.
type rulesManager struct {
	api      API
	log      *slog.Logger
	now      func() time.Time
	retry    time.Duration
	budget   time.Duration // for the update a job's unknown hash asks for
	onChange func(rules.Set)
	obs      Observer
	compile  func(rules.Set) (*rules.Compiled, error) // rules.Compile

	fetch sync.Mutex // one fetch at a time
	mu    sync.Mutex
	cur   rules.Set
	// lastTry is when the last fetch a job's unknown hash made ended (or
	// stopped being waited for): one per retry interval whatever the hash
	// (a hostile API may name a new one in every job).
	lastTry time.Time
	known   map[string]map[string]int64 // rules hash -> rule name -> weight
	history []string                    // hashes in known, oldest first
	holds   map[string]int              // rules hash -> tasks sessions hold under it
	// running is the update updateWithin started that has not ended.
	running *updateRun
	// sources is the content digest (rules.ContentHash) of the sets loaded
	// lately, by hash, the oldest first in sourcesOrder (at most
	// keepSources): a hash names one content (see update).
	sources      map[string]string
	sourcesOrder []string
	// stopped: shutdown has begun (see stop). switching is held from
	// there through onChange by a switch, and by stop.
	stopped   bool
	switching sync.Mutex
}

// keepSources is how many loaded sets' content digests are kept: more than
// the sets a worker or a session's offers remember (3, 16).
const keepSources = 64

// keepWeights is how many recent rule sets' weights are kept to check
// results with (jobs in flight may still use a set the fleet switched away
// from), besides those of every set a session holds tasks for: a held
// task's result is always checked (bounded by the tasks outstanding).
const keepWeights = 4

func newRulesManager(api API, log *slog.Logger, now func() time.Time, retry, budget time.Duration, onChange func(rules.Set), obs Observer) *rulesManager {
	return &rulesManager{api: api, log: log, now: now, retry: retry, budget: budget, onChange: onChange, obs: obs, compile: rules.Compile,
		known: map[string]map[string]int64{}, holds: map[string]int{}, sources: map[string]string{}}
}

func (m *rulesManager) current() rules.Set {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// weights returns the rule weights of a rule set loaded recently or held
// (see hold); nil when the hash is unknown: a result cannot be checked
// against it, and must not be taken.
func (m *rulesManager) weights(hash string) map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.known[hash]
}

// hold keeps the weights of hash (if known) until release: a session was
// sent a task scanned with it.
func (m *rulesManager) hold(hash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holds[hash]++
}

// release ends one hold of hash.
func (m *rulesManager) release(hash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holds[hash]--; m.holds[hash] > 0 {
		return
	}
	delete(m.holds, hash)
	m.trimLocked()
}

// trimLocked forgets the weights of sets beyond the newest keepWeights
// that no session holds a task for.
func (m *rulesManager) trimLocked() {
	for i := 0; i < len(m.history) && len(m.history) > keepWeights; {
		h := m.history[i]
		if m.holds[h] > 0 || h == m.cur.Hash || i >= len(m.history)-keepWeights {
			i++
			continue
		}
		delete(m.known, h)
		m.history = slices.Delete(m.history, i, i+1)
	}
}

// load fetches the first rule set, retrying until it succeeds or ctx ends.
func (m *rulesManager) load(ctx context.Context) error {
	b := retry.Backoff{Policy: retry.Policy{Base: time.Second, Max: time.Minute}}
	for m.current().Hash == "" {
		if err := m.update(ctx); err != nil {
			delay := b.Next(0)
			m.log.Error("cannot load rules; retrying", "retry_in", delay, "err", err)
			if err := retry.Sleep(ctx, delay); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensure returns the hash to scan a job with, given the hash the API leased it
// under: that hash once loaded, or the current one when the update fails or
// a fetch an unknown hash made ended less than the retry interval ago.
func (m *rulesManager) ensure(ctx context.Context, want string) string {
	cur := m.current()
	if want == "" || want == cur.Hash {
		return cur.Hash
	}
	m.mu.Lock()
	now := m.now()
	recent := !m.lastTry.IsZero() && now.Sub(m.lastTry) < m.retry
	if !recent {
		m.lastTry = now
	}
	m.mu.Unlock()
	if recent {
		return m.current().Hash
	}
	err := m.updateWithin(ctx)
	// The interval runs from the end of the try. Dated from its start, a
	// try that spent its whole budget (as long as the interval by default)
	// left the next job of the same lease answer free to try, and wait,
	// again: a batch naming rules that do not come waited a budget per job,
	// past its lease.
	m.mu.Lock()
	m.lastTry = m.now()
	m.mu.Unlock()
	if err != nil {
		m.log.Error("rules update failed; scanning with the rules loaded and reporting their hash",
			"wanted", want, "using", m.current().Hash, "err", err)
	}
	return m.current().Hash
}

// refresh fetches GET /rules within the budget and switches to a new set
// that compiles (no job asked for it: see waitCapacity).
func (m *rulesManager) refresh(ctx context.Context) {
	if err := m.updateWithin(ctx); err != nil && ctx.Err() == nil {
		m.log.Error("rules update failed; keeping the rules loaded", "using", m.current().Hash, "err", err)
	}
}

// updateRun is an update running on its own goroutine: err is set before
// done is closed.
type updateRun struct {
	done chan struct{}
	err  error
}

// errUpdateRunning: the update goes on past the budget (GET /rules is given
// up then, but libyara cannot stop a compile), or one started earlier
// still runs.
var errUpdateRunning = errors.New("the rules update runs past the update budget (a compile cannot be stopped): the new set is taken once it compiles")

// updateWithin is update waited for at most the budget, compiling
// included: leased jobs age while the rules come, and neither a slow or
// hanging GET /rules (its own retries could take minutes) nor a set that
// takes minutes to compile (libyara cannot stop one) may hold them past
// their lease. Past the budget the loaded set scans them; the fetch is
// given up, but a compile goes on, on its own goroutine, and the set is
// taken once it compiles. A call while one runs does not wait for it (its
// budget is spent): the loaded set scans.
func (m *rulesManager) updateWithin(ctx context.Context) error {
	m.mu.Lock()
	if m.running != nil {
		m.mu.Unlock()
		return errUpdateRunning
	}
	run := &updateRun{done: make(chan struct{})}
	m.running = run
	m.mu.Unlock()
	go func() {
		uctx, cancel := context.WithTimeout(ctx, m.budget)
		run.err = m.update(uctx)
		cancel()
		m.mu.Lock()
		m.running = nil
		m.mu.Unlock()
		close(run.done)
	}()
	wait := time.NewTimer(m.budget)
	defer wait.Stop()
	select {
	case <-run.done:
		return run.err
	case <-wait.C:
		return errUpdateRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

// keeping says what a refused set leaves: the rules in use, or at start
// none (load retries: nothing is leased until the API serves a set taken,
// such as one within the bounds of a release before).
func (m *rulesManager) keeping() string {
	if m.current().Hash == "" {
		return "no rules are loaded: nothing is leased until the API serves a rule set the coordinator takes"
	}
	return "keeping the rules in use"
}

// errStopped: the set compiled after stop.
var errStopped = errors.New("the coordinator is shutting down: the rules compiled are not taken")

// stop ends the switches: leasing has ended, and a set an update goes on
// compiling past its budget (see updateWithin) is not taken when it
// compiles (it would be offered to every draining worker, or to sessions
// after Run returned). A switch under way has told onChange on return.
func (m *rulesManager) stop() {
	m.switching.Lock()
	defer m.switching.Unlock()
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
}

// offerCurrent tells onChange the set in use again (to the sessions that
// evicted it), unless shutdown began. It holds switching: a switch an
// update makes on its own goroutine (see updateWithin) cannot come between
// reading the set and offering it, which offered the replaced set after
// the new one, in its place at sessions that had not been sent the new
// one yet.
func (m *rulesManager) offerCurrent() {
	m.switching.Lock()
	defer m.switching.Unlock()
	m.mu.Lock()
	set, stopped := m.cur, m.stopped
	m.mu.Unlock()
	if set.Hash != "" && !stopped {
		m.onChange(set)
	}
}

// update fetches, validates and switches to the API's current rules.
func (m *rulesManager) update(ctx context.Context) error {
	m.fetch.Lock()
	defer m.fetch.Unlock()
	rs, err := m.api.Rules(ctx)
	if err != nil {
		m.obs.RulesUpdated(false)
		return fmt.Errorf("fetch rules: %w", err)
	}
	set := rules.Set{Hash: rs.Hash, Sources: rs.Rules}
	if set.Hash == "" {
		set.Hash = rules.ContentHash(set.Sources)
	}
	if len(set.Hash) > protocol.MaxIDBytes {
		// A worker refuses such a set unanswered (a commit hash is 40
		// bytes): loaded, no worker would ever be ready for it.
		m.obs.RulesUpdated(false)
		return fmt.Errorf("rules %s: hash of %d bytes, over the %d bytes a rules hash may have; %s", clip.String(set.Hash, 64), len(set.Hash), protocol.MaxIDBytes, m.keeping())
	}
	// A hash names one content. Served again with other sources (a
	// rollback by a buggy or hostile API), a worker that compiled the first
	// keeps it (it compiles a hash once, and a session offered a hash is
	// not offered it again) and scans with it, and reports would claim the
	// hash for either content.
	digest := rules.ContentHash(set.Sources)
	m.mu.Lock()
	was, seen := m.sources[set.Hash]
	m.mu.Unlock()
	if seen && was != digest {
		m.obs.RulesUpdated(false)
		return fmt.Errorf("rules %s: served with other sources than when loaded before (a hash names one rule set: workers holding the first would scan with it under this hash); keeping the rules in use: publish changed rules under a new hash (a restart does not help, workers keep a hash's first content)", clip.String(set.Hash, 64))
	}
	if set.Hash == m.current().Hash {
		return nil
	}
	if err := protocol.CheckRuleSet(set.Sources); err != nil {
		m.obs.RulesUpdated(false)
		return fmt.Errorf("rules %s: %w; %s", clip.String(set.Hash, 64), err, m.keeping())
	}
	compiled, err := m.compile(set)
	if err == nil && compiled.Reportable() == 0 {
		err = rules.ErrNoRules
	}
	if err != nil {
		m.obs.RulesUpdated(false)
		return fmt.Errorf("rules %s: %w", clip.String(set.Hash, 64), err)
	}
	// The rules a result may name: YARA reports no match of a private one.
	weights := map[string]int64{}
	for _, r := range compiled.Rules() {
		if !compiled.Private(r.Name) {
			weights[r.Name] = r.Weight
		}
	}
	m.switching.Lock()
	defer m.switching.Unlock()
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		m.log.Info("rules compiled after shutdown began; not taken", "hash", set.Hash)
		return errStopped
	}
	old := m.cur.Hash
	m.cur = set
	if _, ok := m.known[set.Hash]; !ok {
		m.history = append(m.history, set.Hash)
	}
	m.known[set.Hash] = weights
	m.trimLocked()
	if !seen {
		m.sources[set.Hash] = digest
		m.sourcesOrder = append(m.sourcesOrder, set.Hash)
		if len(m.sourcesOrder) > keepSources {
			delete(m.sources, m.sourcesOrder[0])
			m.sourcesOrder = slices.Delete(m.sourcesOrder, 0, 1)
		}
	}
	m.mu.Unlock()
	m.obs.RulesUpdated(true)
	m.log.Info("rules loaded", "hash", set.Hash, "previous", old, "files", len(set.Sources), "rules", compiled.Len(), "compile_time", compiled.CompileTime().Round(time.Millisecond))
	if w := compiled.GlobalWarning(); w != "" {
		m.log.Warn("rules loaded with global rules: "+w, "hash", set.Hash, "global_rules", len(compiled.Globals()))
	}
	m.onChange(set)
	return nil
}
