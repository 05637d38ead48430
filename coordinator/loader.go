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
// empty answer or an API error.
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
		c.admit(ctx, jobs, leasedAt)
	}
}

// waitCapacity blocks until jobs may be leased and returns how many.
func (c *Coordinator) waitCapacity(ctx context.Context) (int, error) {
	for {
		changed, outChanged := c.disp.Changed(), c.out.Changed()
		if !c.out.Full() && !c.out.Health().WriteFailing {
			if n := c.disp.Capacity(c.rules.current().Hash); n > 0 {
				return min(n, c.cfg.BulkSize), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-changed:
		case <-outChanged:
		}
	}
}

// admit hands leased jobs to the dispatcher with the rules to scan them with.
// A release whose report is still waiting in the outbox (the API re-leased it
// before accepting our report) is not scanned again: its report moves to the
// new lease.
func (c *Coordinator) admit(ctx context.Context, jobs []mainframe.Job, leasedAt time.Time) {
	batch := make([]dispatch.Job, 0, len(jobs))
	for _, j := range jobs {
		hash := c.rules.ensure(ctx, j.Hash)
		if ok, err := c.out.Supersede(j.Name, j.Version, j.Attempt, j.AssignmentID, leasedAt); ok {
			if err != nil {
				c.log.Error("outbox write failed", "job", j.Name, "version", j.Version, "err", err)
			}
			c.log.Info("job re-leased while its report waits; report moved to the new lease", "job", j.Name, "version", j.Version, "attempt", deref(j.Attempt))
			continue
		}
		batch = append(batch, dispatch.Job{
			Name: j.Name, Version: j.Version, Distributions: j.Distributions,
			Attempt: j.Attempt, AssignmentID: j.AssignmentID,
			RulesHash: hash, LeasedAt: leasedAt,
		})
	}
	c.disp.Admit(batch, c.cfg.Now())
}
