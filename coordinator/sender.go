package coordinator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/retry"
)

// sendLoop feeds due outbox entries to Senders concurrent senders until ctx
// ends.
func (c *Coordinator) sendLoop(ctx context.Context) {
	work := make(chan outbox.Entry)
	var wg sync.WaitGroup
	for range c.cfg.Senders {
		wg.Go(func() {
			for e := range work {
				c.send(ctx, e)
			}
		})
	}
	defer wg.Wait()
	defer close(work)
	for {
		changed := c.out.Changed()
		e, ok := c.out.Next(c.cfg.Now())
		if !ok {
			if !c.waitDue(ctx, changed) {
				return
			}
			continue
		}
		select {
		case work <- e:
		case <-ctx.Done():
			c.out.Release(e)
			return
		}
	}
}

// waitDue waits for a change in the outbox or the next retry time.
func (c *Coordinator) waitDue(ctx context.Context, changed <-chan struct{}) bool {
	var timer <-chan time.Time
	if due, ok := c.out.NextDue(); ok {
		t := time.NewTimer(max(due.Sub(c.cfg.Now()), time.Millisecond))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-changed:
	case <-timer:
	}
	return true
}

func (c *Coordinator) send(ctx context.Context, e outbox.Entry) {
	r := e.Report
	start := c.cfg.Now()
	err := c.cfg.API.Report(ctx, r)
	took := c.cfg.Now().Sub(start)
	attrs := []any{"job", r.Name, "version", r.Version, "attempt", deref(r.Attempt)}
	// An outcome is observed once it stands: a report superseded by a new
	// lease while it was sent is sent again, and that send's outcome is the
	// job's (observed before, it counted the job twice).
	var apiErr *mainframe.APIError
	switch {
	case err == nil:
		if c.finishEntry(e, attrs) {
			c.obs.Reported(r, err, took)
		}
	case ctx.Err() != nil:
		c.obs.Reported(r, err, took)
		c.out.Release(e)
	case errors.Is(err, mainframe.ErrUnsendable):
		// Made by an earlier release, or a defect: it can never be sent.
		// Dropped, the job goes back to the API's queue when its lease ends
		// and is scanned again.
		c.log.Error("report cannot be encoded; dropped", append(attrs, "err", err)...)
		c.obs.Reported(r, err, took)
		if c.finishEntry(e, attrs) {
			c.obs.ReportAbandoned(r, err)
		}
	case errors.As(err, &apiErr) && apiErr.Final():
		c.log.Warn("report refused for good; dropped", append(attrs, "status", apiErr.Status, "err", err)...)
		if c.finishEntry(e, attrs) {
			c.obs.Reported(r, err, took)
		}
	case c.cfg.Now().Sub(e.LeasedAt) > c.cfg.ReportMaxAge:
		c.log.Error("report abandoned: not accepted within the report max age", append(attrs, "tries", e.Tries+1, "err", err)...)
		c.obs.Reported(r, err, took)
		if c.finishEntry(e, attrs) {
			c.obs.ReportAbandoned(r, err)
		}
	default:
		c.obs.Reported(r, err, took)
		// The API's Retry-After (a 429 or 503 the client's own tries did not
		// outlast) replaces the drawn wait, as in every retry.Policy:
		// retrying sooner only meets the same answer.
		var after time.Duration
		if apiErr != nil {
			after = apiErr.RetryAfter
		}
		delay := reportRetry.Delay(e.Tries+1, after)
		if c.flushing.Load() {
			// The flush ends soon: a later try would never come.
			delay = min(delay, flushRetry)
		}
		c.log.Warn("report failed; will retry", append(attrs, "tries", e.Tries+1, "retry_in", delay, "err", err)...)
		if err := c.out.Retry(e, c.cfg.Now().Add(delay)); err != nil {
			c.log.Error("outbox write failed", append(attrs, "err", err)...)
		}
	}
}

// finishEntry takes a sent report out of the outbox; it reports false when
// the report was superseded by a new lease while it was sent (it is sent
// again).
func (c *Coordinator) finishEntry(e outbox.Entry, attrs []any) bool {
	removed, err := c.out.Done(e)
	if err != nil {
		c.log.Error("outbox write failed", append(attrs, "err", err)...)
	}
	if !removed {
		c.log.Info("report superseded by a new lease while sending; sending again", attrs...)
	}
	return removed
}

// reportRetry spaces the retries of a report: 1 s doubling to 30 s, full
// jitter.
var reportRetry = retry.Policy{Base: time.Second, Max: 30 * time.Second}

// flushRetry is the longest wait between two tries of a report during the
// shutdown's flush (FlushTimeout, 15 s).
const flushRetry = time.Second
