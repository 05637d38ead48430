package coordinator

import (
	"context"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/retry"
)

// loadLoop leases jobs whenever the fleet has free capacity and the outbox has
// room: at most the free credits (slots + prefetch of ready workers, minus
// tasks already waiting), at most BulkSize. It waits LoadDuration only after an
// empty answer, an answer of no job new to it, or an API error.
func (c *Coordinator) loadLoop(ctx context.Context) error {
	if err := c.rules.load(ctx); err != nil {
		return err
	}
	for {
		n, err := c.waitCapacity(ctx)
		if err != nil {
			return err
		}
		leasedAt := c.cfg.Now()
		jobs, err := c.cfg.API.Lease(ctx, n)
		if ctx.Err() != nil {
			// Jobs leased by a request cut short are re-leased by the API later.
			return ctx.Err()
		}
		c.obs.Leased(len(jobs), err)
		if err != nil {
			c.log.Error("lease failed; retrying after the load duration", "batch", n, "wait", c.cfg.LoadDuration, "err", err)
			if err := retry.Sleep(ctx, c.cfg.LoadDuration); err != nil {
				return err
			}
			continue
		}
		if len(jobs) == 0 {
			c.log.Debug("queue empty; waiting", "wait", c.cfg.LoadDuration)
			if err := retry.Sleep(ctx, c.cfg.LoadDuration); err != nil {
				return err
			}
			continue
		}
		if c.admit(ctx, jobs, leasedAt) == 0 {
			// Every job was one already here (its report waiting, or
			// being scanned): no new work. Leased again at once, an API
			// answering with such jobs alone would spin this loop.
			c.log.Debug("lease brought no new job; waiting", "jobs", len(jobs), "wait", c.cfg.LoadDuration)
			if err := retry.Sleep(ctx, c.cfg.LoadDuration); err != nil {
				return err
			}
		}
	}
}

// waitCapacity blocks until jobs may be leased and returns how many: the
// free credits of the workers ready for the rules new jobs get.
//
// Workers may be free but none ready for those rules: for a moment after a
// switch, while they compile the new set, or for good when they cannot
// compile it (a module their libyara lacks). Jobs leased then could only
// wait for their lease to run out, so none are leased; and since only a
// leased job's hash makes the coordinator fetch GET /rules, it looks again
// every RulesRetry while this lasts, so that a set the API fixed is found.
// Free workers count whatever they hold (Dispatcher.Idle): also those that
// could compile no set at all (a coordinator restarted onto such a set).
func (c *Coordinator) waitCapacity(ctx context.Context) (int, error) {
	var since time.Time // since when free workers hold other rules, or none
	for {
		changed, outChanged := c.disp.Changed(), c.out.Changed()
		var retry *time.Timer
		if !c.out.Full() && !c.out.Health().WriteFailing {
			cur := c.rules.current().Hash
			if n := c.disp.Capacity(cur); n > 0 {
				return min(n, c.cfg.BulkSize), nil
			}
			if c.disp.Idle() && !c.disp.ReadyFor(cur) {
				if since.IsZero() {
					since = c.cfg.Now()
				}
				retry = time.NewTimer(max(c.cfg.RulesRetry-c.cfg.Now().Sub(since), 0))
			} else {
				since = time.Time{}
			}
		}
		fired, err := c.waitChange(ctx, changed, outChanged, retry)
		if err != nil {
			return 0, err
		}
		if fired {
			c.log.Warn("leasing paused: workers are free but none is ready for the current rules (compiling them, or failing to: see their rules status); fetching the rules again",
				"rules", c.rules.current().Hash, "paused_for", c.cfg.Now().Sub(since).Round(time.Second))
			c.rules.refresh(ctx)
			// Also the set in use again, to the sessions that evicted it
			// (an eviction may cross the switch back to it).
			c.rules.offerCurrent()
			since = c.cfg.Now()
		}
	}
}

// waitChange waits for a change of the dispatcher or the outbox, or for
// retry (when not nil; stopped on return) to fire, which it reports.
func (c *Coordinator) waitChange(ctx context.Context, changed, outChanged <-chan struct{}, retry *time.Timer) (bool, error) {
	var fired <-chan time.Time
	if retry != nil {
		defer retry.Stop()
		fired = retry.C
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-changed:
	case <-outChanged:
	case <-fired:
		return true, nil
	}
	return false, nil
}

// admit hands leased jobs to the dispatcher with the rules to scan them with,
// and returns how many were new to it. leasedAt is when the lease call
// began; a job's own LeasedAt, when later, is when its lease began. A release whose report is still
// waiting in the outbox (the API re-leased it before accepting our report) is
// not scanned again: its report moves to the new lease.
func (c *Coordinator) admit(ctx context.Context, jobs []mainframe.Job, leasedAt time.Time) int {
	batch := make([]dispatch.Job, 0, len(jobs))
	for _, j := range jobs {
		// When the try that leased it was sent, if the API client says:
		// the call began earlier by its token fetch and any refused tries
		// and their Retry-After (minutes), and dated from then the job
		// was past its lease on arrival, its spot checks given up, every
		// copy given a backup and a task not started at once dropped.
		at := leasedAt
		if j.LeasedAt.After(at) {
			at = j.LeasedAt
		}
		hash := c.rules.ensure(ctx, j.Hash)
		if ok, err := c.out.Supersede(j.Name, j.Version, j.Attempt, j.AssignmentID, at); ok {
			if err != nil {
				c.log.Error("outbox write failed", "job", j.Name, "version", j.Version, "err", err)
			}
			c.log.Info("job re-leased while its report waits; report moved to the new lease", "job", j.Name, "version", j.Version, "attempt", deref(j.Attempt))
			continue
		}
		batch = append(batch, dispatch.Job{
			Name: j.Name, Version: j.Version, Distributions: j.Distributions,
			Attempt: j.Attempt, AssignmentID: j.AssignmentID,
			RulesHash: hash, LeasedAt: at,
		})
	}
	return c.disp.Admit(batch, c.cfg.Now())
}
