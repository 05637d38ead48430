// Package coordinator is the fleet's coordinator: it alone holds the Dragonfly
// API credentials. Its loader leases jobs within the fleet's free capacity, the
// dispatcher (package dispatch) spreads their distributions over the workers'
// gRPC sessions, and its sender reports each job's outcome exactly once,
// through a bounded outbox (package outbox).
//
// Goroutines: Run owns the loader, the sender pool, the lease-expiry ticker and
// the rules manager's refreshes; each worker session runs in its gRPC handler
// goroutine plus a receive goroutine and a send goroutine (the stream's only
// sender) that end with the stream.
//
// The door (Server): every stream but a local health Check must carry the
// fleet token, checked before the stream exists; connections without an
// authenticated stream are pending, capped apart (64, the oldest closed
// for a new one) and closed after 10 s; authenticated ones are capped
// in total (MaxWorkers), never per address.
//
// Identities. What spot checks, backups, lost-task counts, stall refusals,
// quarantine and the per-identity session cap hold is a session's identity
// (see identity): its certificate subject under mutual TLS, else the worker
// id it declares; never a bare peer address (workers behind one NAT share
// it). Only a certificate identity cannot be changed by reconnecting.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/internal/logthrottle"
	"github.com/dragonfly-fleet/fleet/protocol"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// API is the Dragonfly API as the coordinator uses it.
type API interface {
	Lease(ctx context.Context, batch int) ([]mainframe.Job, error)
	Rules(ctx context.Context) (mainframe.RuleSet, error)
	Report(ctx context.Context, r mainframe.Report) error
}

// Config bounds a Coordinator.
type Config struct {
	// API is the Dragonfly API. Required.
	API API
	// BulkSize caps the jobs leased per request (DRAGONFLY_BULK_SIZE).
	// Default DefaultBulkSize.
	BulkSize int
	// LoadDuration is the wait after an empty lease or an API error
	// (DRAGONFLY_LOAD_DURATION). Default DefaultLoadDuration.
	LoadDuration time.Duration
	// LeaseTimeout is the API's lease length. Default DefaultLeaseTimeout.
	LeaseTimeout time.Duration
	// Prefetch is how many tasks beyond its slots a worker may hold
	// (DRAGONFLY_PREFETCH): 0, the zero value, none; at most
	// protocol.MaxPrefetch (16), what a worker holds beyond its threads (New
	// refuses more). Fleets run with DefaultPrefetch.
	Prefetch int
	// MaxWorkerSlots caps the slots a worker may claim in Hello
	// (DRAGONFLY_MAX_WORKER_SLOTS), so one token holder cannot take the whole
	// queue. Default 64.
	MaxWorkerSlots int
	// SendTimeout ends a session whose worker does not take a message for this
	// long (it stopped reading; its tasks are re-dispatched), and refuses that
	// worker's identity for a growing while. Default HeartbeatMisses
	// heartbeat intervals.
	SendTimeout time.Duration
	// VerifyRate is the share of tasks scanned again by a second worker and
	// compared before the job is reported (DRAGONFLY_VERIFY_RATE): 0, the
	// zero value, no spot checks. Fleets run with DefaultVerifyRate.
	VerifyRate float64
	// TaskTimePrior and BackupMin tune when an overdue task gets a backup copy
	// on another worker (dispatch.Config). Defaults 15 s and 10 s.
	TaskTimePrior, BackupMin time.Duration
	// AcceptNonScanningWorkers accepts workers whose Hello announces a
	// non-scanning mode (fabricated results). For benchmark harnesses only;
	// no flag or variable sets it.
	AcceptNonScanningWorkers bool
	// MaxDistributions fails jobs with more distributions
	// (DRAGONFLY_MAX_DISTRIBUTIONS). Default DefaultMaxDistributions.
	MaxDistributions int
	// HeartbeatInterval is how often both sides of a session send heartbeats;
	// a session silent for HeartbeatMisses intervals ends
	// (DRAGONFLY_HEARTBEAT_INTERVAL). Defaults DefaultHeartbeatInterval and 3.
	HeartbeatInterval time.Duration
	HeartbeatMisses   int
	// DrainTimeout bounds the wait for jobs in flight at shutdown
	// (DRAGONFLY_DRAIN_TIMEOUT): the wait ends sooner once no worker holds
	// a task (none is assigned while draining, so the jobs left cannot
	// finish; the API leases them again). Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// FlushTimeout bounds the wait for the outbox to empty at shutdown. Default 15 s.
	FlushTimeout time.Duration
	// Outbox holds reports until the API accepts them. Default: in memory,
	// capacity 1000.
	Outbox *outbox.Outbox
	// Senders is the number of concurrent report senders. Default 8.
	Senders int
	// ReportMaxAge abandons a report the API has not accepted this long after
	// its lease began (it cannot be accepted any more). Default
	// dispatch.MaxAge(LeaseTimeout): four leases, at least 15 min.
	ReportMaxAge time.Duration
	// RulesRetry is the least time between two rule fetches a job's unknown
	// hash asks for, whatever the hashes (the jobs meanwhile are scanned
	// with the rules loaded and reported under their hash). Default 30 s.
	RulesRetry time.Duration
	// Version is this build's version, sent in Welcome.
	Version string
	// Logger receives the coordinator's logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock of leases, reports and the dispatcher. Default
	// time.Now. Sessions' liveness is measured on the monotonic clock
	// instead (Coordinator.mono): a wall-clock step must not end them.
	Now func() time.Time
	// Observer receives events for metrics and the status page. Optional.
	Observer Observer
}

func (c Config) withDefaults() (Config, error) {
	if c.API == nil {
		return c, errors.New("coordinator: no API")
	}
	if c.Prefetch < 0 || c.Prefetch > protocol.MaxPrefetch {
		// A worker holds at most protocol.MaxPrefetch tasks beyond its
		// threads and hands back the rest: more would bounce forever.
		return c, fmt.Errorf("coordinator: prefetch %d (DRAGONFLY_PREFETCH) must be between 0 and %d, what a worker holds beyond its threads", c.Prefetch, protocol.MaxPrefetch)
	}
	c.BulkSize = bound.Or(c.BulkSize, DefaultBulkSize)
	c.LoadDuration = bound.Or(c.LoadDuration, DefaultLoadDuration)
	c.LeaseTimeout = bound.Or(c.LeaseTimeout, DefaultLeaseTimeout)
	if c.LeaseTimeout < MinLeaseTimeout || c.LeaseTimeout > MaxLeaseTimeout {
		return c, fmt.Errorf("coordinator: lease timeout %s (DRAGONFLY_LEASE_TIMEOUT) must be between %s and %s", c.LeaseTimeout, MinLeaseTimeout, MaxLeaseTimeout)
	}
	c.HeartbeatInterval = bound.Or(c.HeartbeatInterval, DefaultHeartbeatInterval)
	c.HeartbeatMisses = bound.Or(c.HeartbeatMisses, 3)
	c.MaxWorkerSlots = bound.Or(c.MaxWorkerSlots, DefaultMaxWorkerSlots)
	c.SendTimeout = bound.Or(c.SendTimeout, time.Duration(c.HeartbeatMisses)*c.HeartbeatInterval)
	c.DrainTimeout = bound.Or(c.DrainTimeout, DefaultDrainTimeout)
	c.FlushTimeout = bound.Or(c.FlushTimeout, 15*time.Second)
	c.Senders = bound.Or(c.Senders, 8)
	c.ReportMaxAge = bound.Or(c.ReportMaxAge, dispatch.MaxAge(c.LeaseTimeout))
	c.RulesRetry = bound.Or(c.RulesRetry, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Outbox == nil {
		ob, err := outbox.Open(outbox.Config{})
		if err != nil {
			return c, err
		}
		c.Outbox = ob
	}
	return c, nil
}

// Defaults of Config fields that have a setting of their own: the commands'
// flag defaults are these.
const (
	DefaultBulkSize          = 20
	DefaultLoadDuration      = 60 * time.Second
	DefaultLeaseTimeout      = 120 * time.Second
	DefaultPrefetch          = dispatch.DefaultPrefetch
	DefaultMaxWorkerSlots    = 64
	DefaultVerifyRate        = dispatch.DefaultVerifyRate
	DefaultMaxDistributions  = dispatch.DefaultMaxDistributions
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultDrainTimeout      = 30 * time.Second
)

// MaxWorkerSlotsBound is the largest MaxWorkerSlots the commands take
// (DRAGONFLY_MAX_WORKER_SLOTS): far above any worker's threads, and small
// enough that the bounds derived from it (the answers one message may
// carry, a session's tasks) cannot overflow.
const MaxWorkerSlotsBound = 1 << 16

// The lease lengths the coordinator accepts (DRAGONFLY_LEASE_TIMEOUT). Below
// 10 s every task's lease would be ending as it starts (the dispatcher keeps
// at least 10 s of a lease for a backup copy, and a scan takes seconds):
// nothing could be backed up and every job would look overdue. Above a day
// the API's JOB_TIMEOUT is surely misread (a number of seconds taken as
// something else), and the ages derived from it stop making sense.
const (
	MinLeaseTimeout = 10 * time.Second
	MaxLeaseTimeout = 24 * time.Hour
)

// DefaultMetricsPort is the coordinator's HTTP port (metrics, status,
// health) unless DRAGONFLY_METRICS_ADDR says otherwise. Not 9090, which is
// Prometheus's own: next to a Prometheus the coordinator could not bind it.
// The Prometheus exporter port allocations fill 9100-9999; this port lies
// above the allocated range. DefaultWorkerMetricsPort is the port the
// deployment examples give a worker's metrics.
const (
	DefaultMetricsPort       = "10179"
	DefaultWorkerMetricsPort = "10180"
)

// Coordinator leases jobs, serves worker sessions and reports results.
type Coordinator struct {
	fleetv1.UnimplementedFleetServiceServer

	cfg   Config
	log   *slog.Logger
	disp  *dispatch.Dispatcher
	out   *outbox.Outbox
	rules *rulesManager
	obs   Observer

	mu       sync.Mutex
	sessions map[string]*workerSession
	nextSess uint64
	draining chan struct{} // closed when shutdown begins
	flushing atomic.Bool   // the shutdown's flush of reports has begun
	drainOne sync.Once
	// drainHooks run when the drain begins (onDrain), before draining
	// closes; drainBegun says they are taken. Both under mu.
	drainHooks []func()
	drainBegun bool
	streams    sync.WaitGroup // sessions' receive and send goroutines

	maxSessions    atomic.Int64   // the server's MaxWorkers
	maxPerIdentity atomic.Int64   // the server's MaxSessionsPerIdentity
	perIdentity    map[string]int // sessions per identity, under mu
	refusals       refusalCounters
	guard          *guard
	sessionLogs    *logthrottle.Throttle // per-session log lines, per identity (sessionLog)
	bigSends       *semaphore.Weighted
	outboxFailing  atomic.Bool // the outbox's writes fail: leasing pauses
	queue          queueCache
	// epoch is when New ran, with its monotonic clock reading (see mono).
	epoch time.Time
}

// mono is the time since New on the monotonic clock, plus 1 ns (never 0,
// which sendingSince reads as no send). A session's liveness (its silence,
// a send stalled) is measured on it, not on Config.Now: those instants
// were kept as Unix nanoseconds, which drop the monotonic reading, so a
// step of the wall clock (NTP correcting it, a VM resumed) of more than
// HeartbeatMisses intervals forward dropped every session as silent at its
// next tick (each running task counted lost), and one back kept a dead
// worker's session, and the tasks it held, for as long as the step.
func (c *Coordinator) mono() int64 { return int64(time.Since(c.epoch)) + 1 }

// New returns a coordinator. Register it on a gRPC server, then Run it.
func New(cfg Config) (*Coordinator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:         cfg,
		log:         cfg.Logger,
		out:         cfg.Outbox,
		obs:         cfg.Observer,
		sessions:    map[string]*workerSession{},
		perIdentity: map[string]int{},
		draining:    make(chan struct{}),
		guard:       newGuard(30*time.Second, 10*time.Minute, time.Hour, 4096),
		sessionLogs: logthrottle.New(sessionLogEvery, 1024),
		bigSends:    semaphore.NewWeighted(bigSendBudget),
		epoch:       time.Now(),
	}
	c.maxSessions.Store(DefaultMaxWorkers)
	c.maxPerIdentity.Store(DefaultMaxSessionsPerIdentity)
	if qa, ok := cfg.API.(QueueAsker); ok {
		c.queue.api = qa
	}
	if r := c.out.Recovery(); r.Corrupt() {
		c.log.Error("outbox file was corrupt: moved aside and a fresh one started", "moved_to", r.CorruptPath, "cause", r.CorruptCause, "salvaged", r.Salvaged)
	}
	if r := c.out.Recovery(); r.Unreadable > 0 || r.MoveError != "" {
		c.log.Error("outbox records unreadable: moved aside for an operator", "records", r.Unreadable, "listed", r.UnreadableRecords, "move_error", r.MoveError)
	}
	c.disp = dispatch.New(dispatch.Config{
		Prefetch:         cfg.Prefetch,
		MaxDistributions: cfg.MaxDistributions,
		LeaseTimeout:     cfg.LeaseTimeout,
		MaxSlots:         cfg.MaxWorkerSlots,
		VerifyRate:       cfg.VerifyRate,
		TaskTimePrior:    cfg.TaskTimePrior,
		BackupMin:        cfg.BackupMin,
		Done:             c.complete,
		OnEvent:          c.dispatchEvent,
	})
	// A quarter of the lease (at most 30 s) for new rules before the jobs
	// that asked for them are scanned with the loaded ones.
	c.rules = newRulesManager(cfg.API, cfg.Logger, cfg.Now, cfg.RulesRetry, min(cfg.LeaseTimeout/4, 30*time.Second), c.rulesChanged, c.obs)
	return c, nil
}

// Run leases and reports until ctx ends, then shuts down in phases: stop
// leasing, ask workers to drain, wait (bounded) for the jobs in flight while
// a worker holds a task of theirs, flush the outbox (bounded), return.
// Sessions end when the gRPC server stops.
func (c *Coordinator) Run(ctx context.Context) error {
	sendCtx, stopSenders := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSenders()

	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		c.sendLoop(sendCtx)
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.loadLoop(gctx) })
	g.Go(func() error { c.tickLoop(gctx); return nil })
	err := g.Wait()
	c.rules.stop()

	// Phase 2: tell workers to drain; wait for the jobs in flight while a
	// worker holds a task of theirs. No task is assigned from now on, so a
	// job whose tasks are all queued (handed back by draining workers, or
	// never assigned) cannot finish: it is not waited for.
	c.log.Info("shutting down: leasing stopped, draining workers", "jobs_in_flight", c.disp.Snapshot().JobsInFlight)
	c.disp.DrainAll()
	c.beginDrain()
	c.waitIdle(c.cfg.DrainTimeout, func() bool {
		s := c.disp.Snapshot()
		return (s.JobsInFlight == 0 || s.TasksRunning == 0) && s.Delivering == 0
	})
	if s := c.disp.Snapshot(); s.TasksRunning > 0 {
		c.log.Warn("jobs still in flight after drain timeout; the API will lease them again", "jobs", s.JobsInFlight, "tasks_running", s.TasksRunning)
	} else if s.JobsInFlight > 0 {
		c.log.Info("jobs left unfinished: no worker holds a task of theirs; the API will lease them again", "jobs", s.JobsInFlight)
	}
	// Phase 3: flush reports, each waiting one tried at once and retried
	// at most flushRetry apart.
	c.flushing.Store(true)
	if n := c.out.DueNow(); n > 0 {
		c.log.Info("flushing reports: those waiting for a retry are tried now", "reports", n)
	}
	c.waitIdle(c.cfg.FlushTimeout, func() bool { return c.out.Len() == 0 })
	if n := c.out.Len(); n > 0 {
		c.log.Warn("reports not delivered before shutdown", "reports", n, "durable", c.cfg.Outbox != nil)
	}
	stopSenders()
	<-sendDone
	c.queue.stop()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// waitIdle waits until done() or timeout, re-checking on every change.
func (c *Coordinator) waitIdle(timeout time.Duration, done func() bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		changed, outChanged := c.disp.Changed(), c.out.Changed()
		if done() {
			return
		}
		select {
		case <-t.C:
			return
		case <-changed:
		case <-outChanged:
		}
	}
}

func (c *Coordinator) beginDrain() {
	c.drainOne.Do(func() {
		// The hooks first, then draining: whoever sees the drain (a
		// session refused for it, isDraining) sees what they did (health
		// NOT_SERVING on every server), not a moment later.
		c.mu.Lock()
		hooks := c.drainHooks
		c.drainHooks, c.drainBegun = nil, true
		c.mu.Unlock()
		for _, f := range hooks {
			f()
		}
		close(c.draining)
	})
}

// onDrain has f run when the drain begins, before isDraining says so and
// before beginDrain returns (at once when it has begun): the server's
// health says NOT_SERVING before any session is refused for the drain. f
// must not wait for the drain (draining is not closed yet).
func (c *Coordinator) onDrain(f func()) {
	c.mu.Lock()
	if c.drainBegun {
		c.mu.Unlock()
		f()
		return
	}
	c.drainHooks = append(c.drainHooks, f)
	c.mu.Unlock()
}

// WaitSessions waits for the receive and send goroutines of ended sessions.
func (c *Coordinator) WaitSessions() { c.streams.Wait() }

// tickLoop is the coordinator's clock: every second the dispatcher drops jobs
// past their lease and dispatches backups of overdue tasks, and the outbox
// retries writes that failed.
func (c *Coordinator) tickLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep := c.disp.Tick(c.cfg.Now())
		for _, j := range rep.Dropped {
			c.obs.JobDropped(j)
			c.log.Warn("job dropped: its lease ended before every distribution was scanned; the API will lease it again",
				"job", j.Name, "version", j.Version, "attempt", deref(j.Attempt))
		}
		for _, j := range rep.Abandoned {
			c.obs.JobDropped(j)
			c.log.Error("job abandoned: workers held its tasks past the report max age without answering; the API will lease it again",
				"job", j.Name, "version", j.Version, "attempt", deref(j.Attempt))
		}
		c.syncOutbox()
	}
}

// syncOutbox retries the outbox's failed writes, and says when writes start
// and stop failing (leasing pauses while they fail: see waitCapacity).
func (c *Coordinator) syncOutbox() {
	was := c.outboxFailing.Load()
	h := c.out.Health()
	if h.WriteFailing || h.NotDurable > 0 || h.PendingDeletes > 0 {
		_ = c.out.Sync()
		h = c.out.Health()
	}
	c.outboxFailing.Store(h.WriteFailing)
	switch {
	case h.WriteFailing && !was:
		c.log.Error("outbox writes fail: reports are kept in memory only and leasing is paused until writes succeed",
			"not_durable", h.NotDurable, "since", h.Since, "err", h.LastError)
	case !h.WriteFailing && was:
		c.log.Info("outbox writes succeed again; leasing resumes")
	}
	c.obs.OutboxHealth(h)
}

// dispatchEvent logs what the dispatcher did about slow, lost or lying
// workers, and passes it to the observer.
func (c *Coordinator) dispatchEvent(e dispatch.Event) {
	attrs := []any{"job", e.Name, "version", e.Version, "url", e.URL, "task", e.TaskID, "session", e.Session, "identity", e.Identity}
	l, ok := eventLogs[e.Kind]
	if !ok {
		c.log.Debug("dispatch event", append(attrs, "kind", e.Kind.String())...)
		c.obs.DispatchEvent(e)
		return
	}
	for _, k := range l.keys {
		attrs = append(attrs, k, eventAttr(e, k))
	}
	c.log.Log(context.Background(), l.level, l.msg, attrs...)
	c.obs.DispatchEvent(e)
}

// eventLogs says how dispatch events are logged: the level, the message,
// and the attributes (see eventAttr) beyond the ones every event has.
var eventLogs = map[dispatch.EventKind]struct {
	level slog.Level
	msg   string
	keys  []string
}{
	dispatch.EventBackupDispatched:   {slog.LevelInfo, "task overdue; backup dispatched to another worker", []string{"slow_identity"}},
	dispatch.EventTaskLost:           {slog.LevelWarn, "task lost while scanning: the worker's session broke", []string{"lost_by"}},
	dispatch.EventLostFailed:         {slog.LevelError, "distribution failed: lost by three workers while scanning it", []string{"lost_by", "reason"}},
	dispatch.EventVerifyMismatch:     {slog.LevelError, "spot check mismatch: two workers disagree on a distribution; one may be lying", []string{"identities", "reason"}},
	dispatch.EventVerifyDecided:      {slog.LevelError, "spot check decided", []string{"identities", "quarantined", "reason"}},
	dispatch.EventQuarantine:         {slog.LevelError, "worker quarantined: no more tasks; its unreported results are discarded", []string{"reason"}},
	dispatch.EventSessionSuspended:   {slog.LevelWarn, "worker session suspended: it handed back more tasks than it holds without draining", []string{"reason"}},
	dispatch.EventNoVerdictRetry:     {slog.LevelInfo, "download, host or limit failure retried on another worker", []string{"reason"}},
	dispatch.EventVerifyInconclusive: {slog.LevelWarn, "spot check inconclusive: one side could not download or hit a limit", []string{"identities", "reason"}},
}

// eventAttr is the value of a log attribute of e.
func eventAttr(e dispatch.Event, key string) any {
	switch key {
	case "slow_identity":
		return e.From
	case "lost_by", "identities":
		return e.Identities
	case "quarantined":
		return e.Quarantined
	}
	return e.Reason
}

// complete receives a finished job from the dispatcher and queues its report.
func (c *Coordinator) complete(o dispatch.Outcome) {
	// The one boundary between the dispatcher's outcome and the report the
	// API receives (and the outbox keeps).
	r := mainframe.Report{Name: o.Job.Name, Version: o.Job.Version, Attempt: o.Job.Attempt, AssignmentID: o.Job.AssignmentID}
	if o.Failure != "" {
		r.Reason = o.Failure
	} else {
		s := &mainframe.Success{Score: o.Package.Score, RulesMatched: o.Package.RulesMatched, Commit: o.Job.RulesHash}
		if o.InspectorURL != "" {
			u := o.InspectorURL
			s.InspectorURL = &u
		}
		r.Success = s
	}
	// Observed before the report is queued (the sender's Reported must come
	// after it); made durable before the job is logged as finished (a "job
	// finished" line means its report survives a crash).
	c.obs.JobFinished(o)
	durable := true
	if err := c.out.Put(outbox.Entry{Report: r, LeasedAt: o.Job.LeasedAt, Enqueued: c.cfg.Now()}); err != nil {
		// The report is in memory and the write is retried (tickLoop);
		// leasing pauses meanwhile.
		durable = false
		c.outboxFailing.Store(true)
		c.log.Error("outbox write failed; report kept in memory, write retried, leasing paused", "job", r.Name, "version", r.Version, "err", err)
	}
	attrs := []any{"durable", durable,
		"job", o.Job.Name, "version", o.Job.Version, "attempt", deref(o.Job.Attempt),
		"distributions", len(o.Job.Distributions), "workers", o.Identities, "sessions", o.Sessions, "verified", o.Verified,
		"elapsed", o.Finished.Sub(o.Job.LeasedAt).Round(time.Millisecond),
		"download", o.Stats.DownloadTime.Round(time.Millisecond), "scan", o.Stats.ScanTime.Round(time.Millisecond),
		"bytes", o.Stats.BytesExpanded, "files", o.Stats.Files,
	}
	if o.Failure != "" {
		c.log.Warn("job failed", append(attrs, "reason", o.Failure)...)
	} else {
		c.log.Info("job finished", append(attrs, "score", o.Package.Score, "rules", o.Package.RulesMatched)...)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
