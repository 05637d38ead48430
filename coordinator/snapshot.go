package coordinator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
)

// Snapshot is an immutable view of the coordinator's state, for operators
// (the status page, metrics, autoscaling): readers get values, never the
// coordinator's live parts.
type Snapshot struct {
	// Taken is when the snapshot was taken.
	Taken time.Time
	// RulesHash is the rules in use ("" before the first load).
	RulesHash string
	// Sessions are the connected worker sessions with when each was last
	// heard from.
	Sessions []SessionState
	// Dispatch is the dispatcher's state: jobs in flight, tasks, sessions'
	// credits, spot checks, quarantines, counters.
	Dispatch dispatch.Snapshot
	// Outbox is the report queue.
	Outbox OutboxState
	// Draining is true once shutdown began.
	Draining bool
	// Refusals count what the coordinator refused or dropped at its door.
	Refusals Refusals
}

// SessionState is a connected session.
type SessionState struct {
	SessionInfo
	LastSeen time.Time
}

// OutboxState is the outbox as operators see it.
type OutboxState struct {
	// Reports waiting for the API.
	Reports int
	// Full: leasing pauses until reports drain.
	Full   bool
	Health outbox.Health
	// Recovery is what opening the outbox found (a corrupt file moved aside,
	// unreadable records).
	Recovery outbox.Recovery
}

// Snapshot returns the current state.
func (c *Coordinator) Snapshot() Snapshot {
	snap := Snapshot{
		Taken:     c.cfg.Now(),
		RulesHash: c.rules.current().Hash,
		Dispatch:  c.disp.Snapshot(),
		Outbox: OutboxState{
			Reports: c.out.Len(), Full: c.out.Full(), Health: c.out.Health(), Recovery: c.out.Recovery(),
		},
		Draining: c.isDraining(),
		Refusals: c.refusals.snapshot(),
	}
	c.mu.Lock()
	for _, s := range c.sessions {
		snap.Sessions = append(snap.Sessions, SessionState{SessionInfo: s.info, LastSeen: time.Unix(0, s.lastSeen.Load())})
	}
	c.mu.Unlock()
	return snap
}

// QueueAsker answers GET /queue-status (the API client does).
type QueueAsker interface {
	QueueStatus(ctx context.Context) (mainframe.QueueStatus, error)
}

// QueueView is the API's queue status as last fetched.
type QueueView struct {
	Status mainframe.QueueStatus
	// Fetched is when Status was fetched (zero: never).
	Fetched time.Time
	// Err is the last attempt's error, if it failed (Status then is the last
	// good answer).
	Err error
}

// QueueStatus returns the API's queue status, asking the API only when the
// last attempt (answer or error) is older than maxAge: concurrent callers
// share one request however many status pages and scrapes ask, and a
// failing API is asked at most once per maxAge too. The request runs
// detached from the caller (bounded by queueFetchTimeout): a caller that
// gives up gets the last view at once, and the answer still serves the next
// ones. After a failed attempt no caller waits: each gets the last view, with
// its error, while the next attempt runs. Without an API that answers it
// (QueueAsker), it returns an error.
func (c *Coordinator) QueueStatus(ctx context.Context, maxAge time.Duration) QueueView {
	return c.queue.get(ctx, c.cfg.Now, maxAge)
}

// queueFetchTimeout bounds one GET /queue-status (with the API client's
// retries).
const queueFetchTimeout = 10 * time.Second

// queueCache is a single-flight cache of the API's queue status. Its fetch
// goroutine ends within queueFetchTimeout, or when stop is called.
type queueCache struct {
	api QueueAsker

	mu       sync.Mutex
	view     QueueView
	tried    time.Time // when the last attempt ended
	inflight chan struct{}
	stopped  bool
	cancel   context.CancelFunc // of the fetch in flight
	fetches  sync.WaitGroup
}

var errNoQueue = errors.New("the API client does not answer queue status")

func (q *queueCache) get(ctx context.Context, now func() time.Time, maxAge time.Duration) QueueView {
	q.mu.Lock()
	if q.api == nil {
		q.mu.Unlock()
		return QueueView{Err: errNoQueue}
	}
	if !q.tried.IsZero() && now().Sub(q.tried) < maxAge {
		v := q.view
		q.mu.Unlock()
		return v
	}
	if q.inflight == nil && !q.stopped {
		done := make(chan struct{})
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queueFetchTimeout)
		q.inflight, q.cancel = done, cancel
		q.fetches.Add(1)
		go q.fetch(fctx, now, done)
	}
	wait := q.inflight
	if q.view.Err != nil {
		// The last attempt failed (the API is down or refusing): the
		// caller gets that view at once instead of waiting on an API that
		// likely still fails, so scrapes and pages stay fast through an
		// outage; the fetch's answer serves the next callers.
		wait = nil
	}
	q.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.view
}

// fetch asks the API once and keeps the answer, or the error beside the
// last good answer.
func (q *queueCache) fetch(ctx context.Context, now func() time.Time, done chan struct{}) {
	defer q.fetches.Done()
	st, err := q.api.QueueStatus(ctx)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cancel()
	if err == nil {
		q.view = QueueView{Status: st, Fetched: now()}
	} else {
		q.view.Err = err
	}
	q.tried = now()
	q.inflight, q.cancel = nil, nil
	close(done)
}

// stop cancels the fetch in flight, waits for it, and fetches no more
// (later callers get the last view).
func (q *queueCache) stop() {
	q.mu.Lock()
	q.stopped = true
	if q.cancel != nil {
		q.cancel()
	}
	q.mu.Unlock()
	q.fetches.Wait()
}
