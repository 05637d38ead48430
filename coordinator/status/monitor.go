// Package status is the operators' view of a coordinator: Prometheus metrics,
// a server-rendered status page (/status), its JSON form (/status.json), and
// the fleet-size signal an autoscaler reads.
//
// A Monitor is the coordinator's Observer (coordinator.Config.Observer) and
// the API client's Observer (mainframe.Config.Observer, via APIObserver).
// Attach gives it the coordinator, whose state (dispatcher snapshot, sessions,
// outbox, rules) it reads when scraped or asked for a page. PollQueue is the
// one goroutine it needs: it polls the API's GET /queue-status; its caller
// owns it and stops it with the context.
//
// # Metrics
//
// Every metric is in the Monitor's own registry (Registry), namespace
// "dragonfly_". Events:
//
//	dragonfly_build_info{version}                       1
//	dragonfly_lease_requests_total{result}              POST /jobs calls: jobs, empty, error
//	dragonfly_jobs_leased_total                         jobs leased
//	dragonfly_jobs_scanned_total{result}                jobs whose scan finished: success, failure
//	dragonfly_jobs_completed_total{outcome}             jobs at their final fate, one outcome each:
//	                                                    success, failure (report accepted), conflict (the API
//	                                                    answered 409 to the report), rejected (another final 4xx),
//	                                                    abandoned (not accepted within the report max age),
//	                                                    dropped_stale (lease ended before a worker took it)
//	dragonfly_job_duration_seconds                      lease to last result of a job
//	dragonfly_api_requests_total{endpoint,status}       HTTP tries against the API; status "none" when no
//	                                                    response arrived
//	dragonfly_api_request_duration_seconds{endpoint}    duration of one try
//	dragonfly_api_token_refreshes_total{result}         Auth0 token requests: ok, error
//	dragonfly_rules_updates_total{result}               rule fetches that changed or failed: ok, error
//	dragonfly_sessions_started_total                    worker sessions started
//	dragonfly_sessions_ended_total{result}              worker sessions ended: clean, error
//	dragonfly_api_queue_polls_total{result}             GET /queue-status polls: ok, error
//
// State, read at scrape time:
//
//	dragonfly_workers_connected                         worker sessions
//	dragonfly_scanner_slots                             scanner slots of the connected workers
//	dragonfly_scanner_slots_busy                        slots holding a task (per worker at most its slots)
//	dragonfly_jobs_in_flight                            leased jobs not finished
//	dragonfly_dispatch_backlog_tasks                    tasks waiting for a worker
//	dragonfly_dispatch_backlog_oldest_age_seconds       age of the lease of the oldest job waiting (0: none)
//	dragonfly_tasks_running                             tasks assigned to workers
//	dragonfly_tasks_dispatched_total                    task assignments
//	dragonfly_tasks_requeued_total                      tasks handed back or taken from ended sessions
//	dragonfly_results_late_total                        results for tasks no longer assigned to the sender
//	dragonfly_jobs_superseded_total                     re-leases merged into a job in flight
//	dragonfly_outbox_reports                            reports waiting for the API
//	dragonfly_rules_info{hash}                          1 for the rules in use (absent before the first load)
//	dragonfly_api_queue_jobs{state}                     the API's queue by state: queued, in_progress,
//	                                                    retryable, exhausted, stranded (last successful poll)
//	dragonfly_api_queue_backlog_jobs                    the API's total_backlog
//	dragonfly_api_queue_oldest_age_seconds              the API's oldest_age_seconds
//	dragonfly_api_queue_last_success_timestamp_seconds  when the last poll succeeded
//	dragonfly_fleet_desired_workers                     workers the backlog needs (see DesiredWorkers)
//	dragonfly_fleet_distributions_per_job               the average the formula uses
//	dragonfly_fleet_max_workers                         the formula's cap
//
// The dragonfly_api_queue_* gauges are absent until a poll succeeds.
package status

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/prometheus/client_golang/prometheus"
)

// Config bounds a Monitor. The zero value of every field means its default.
type Config struct {
	// Version is this build, shown on the page and as
	// dragonfly_build_info{version}. Default "unknown".
	Version string
	// QueuePollInterval is how often PollQueue asks the API for
	// GET /queue-status; one poll may take at most this long. Default 30 s.
	QueuePollInterval time.Duration
	// QueueMaxAge: an API queue status older than this no longer counts in
	// DesiredWorkers (the API backlog is taken as 0). Default 3 poll intervals.
	QueueMaxAge time.Duration
	// RecentResults is how many finished jobs the page lists. Default 50.
	RecentResults int
	// RecentFailures is how many failures the page lists. Default 50.
	RecentFailures int
	// ErrorWindow is the span of the recent API request and error counts.
	// Default 15 min.
	ErrorWindow time.Duration
	// MaxWorkers caps dragonfly_fleet_desired_workers. Default 100.
	MaxWorkers int
	// SlotsPerWorker is the scanner slots a worker is assumed to have while
	// none is connected (then the connected workers' average is used).
	// Default 2.
	SlotsPerWorker float64
	// DistributionsPerJob is the distributions a job is assumed to have
	// before any job finished (then the average over the last
	// DistributionsWindow finished jobs is used). Default 3.
	DistributionsPerJob float64
	// DistributionsWindow is how many finished jobs that average covers.
	// Default 200.
	DistributionsWindow int
	// Runtime adds the Go runtime and process collectors (go_*, process_*)
	// to the registry. Default false.
	Runtime bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Version == "" {
		c.Version = "unknown"
	}
	if c.QueuePollInterval <= 0 {
		c.QueuePollInterval = 30 * time.Second
	}
	if c.QueueMaxAge <= 0 {
		c.QueueMaxAge = 3 * c.QueuePollInterval
	}
	if c.RecentResults <= 0 {
		c.RecentResults = 50
	}
	if c.RecentFailures <= 0 {
		c.RecentFailures = 50
	}
	if c.ErrorWindow <= 0 {
		c.ErrorWindow = 15 * time.Minute
	}
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = 100
	}
	if c.SlotsPerWorker <= 0 {
		c.SlotsPerWorker = 2
	}
	if c.DistributionsPerJob <= 0 {
		c.DistributionsPerJob = 3
	}
	if c.DistributionsWindow <= 0 {
		c.DistributionsWindow = 200
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Source is the coordinator state a Monitor reads. *coordinator.Coordinator
// implements it.
type Source interface {
	Sessions() []coordinator.SessionInfo
	LastSeen() map[string]time.Time
	Dispatcher() *dispatch.Dispatcher
	Outbox() *outbox.Outbox
	RulesHash() string
}

// QueueSource answers GET /queue-status. *mainframe.Client implements it.
type QueueSource interface {
	QueueStatus(ctx context.Context) (mainframe.QueueStatus, error)
}

// Monitor collects a coordinator's events and state. It is safe for
// concurrent use; its Observer methods are quick (one short lock).
type Monitor struct {
	cfg     Config
	started time.Time
	src     atomic.Pointer[sourceBox]
	met     *metrics

	mu           sync.Mutex
	workers      map[string]*workerState // by session ID, while connected
	results      ring[Result]
	failures     ring[Failure]
	dists        ring[int] // distributions of the last finished jobs
	lastLease    time.Time
	lastReport   time.Time
	lastError    *Error
	endpoints    map[string]*endpointState
	queue        *Queue
	leasedAtPoll int64 // counts.leased when queue was fetched
	queueErr     *Error
	counts       counts
	outboxHealth outbox.Health
}

type sourceBox struct{ s Source }

type workerState struct {
	info coordinator.SessionInfo
	jobs int64
}

type counts struct {
	leased, scannedOK, scannedFailed, dropped, accepted, conflicts, rejected, abandoned int64
}

var _ coordinator.Observer = (*Monitor)(nil)

// New returns a Monitor with its own registry.
func New(cfg Config) *Monitor {
	cfg = cfg.withDefaults()
	m := &Monitor{
		cfg:       cfg,
		started:   cfg.Now(),
		workers:   map[string]*workerState{},
		results:   newRing[Result](cfg.RecentResults),
		failures:  newRing[Failure](cfg.RecentFailures),
		dists:     newRing[int](cfg.DistributionsWindow),
		endpoints: map[string]*endpointState{},
	}
	m.met = newMetrics(m, cfg)
	return m
}

// Attach sets the coordinator whose state the Monitor reads. Before it, the
// state gauges read zero.
func (m *Monitor) Attach(s Source) { m.src.Store(&sourceBox{s: s}) }

func (m *Monitor) source() Source {
	if b := m.src.Load(); b != nil {
		return b.s
	}
	return nil
}

// Registry holds the coordinator's metrics.
func (m *Monitor) Registry() *prometheus.Registry { return m.met.reg }

// Leased records a lease request (coordinator.Observer).
func (m *Monitor) Leased(jobs int, err error) {
	now := m.cfg.Now()
	switch {
	case err != nil:
		m.met.leaseRequests.WithLabelValues("error").Inc()
	case jobs == 0:
		m.met.leaseRequests.WithLabelValues("empty").Inc()
	default:
		m.met.leaseRequests.WithLabelValues("jobs").Inc()
	}
	m.met.jobsLeased.Add(float64(jobs))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts.leased += int64(jobs)
	if err != nil {
		m.lastError = &Error{Time: now, Source: "lease", Message: err.Error()}
		return
	}
	m.lastLease = now
}

// JobFinished records a finished job (coordinator.Observer).
func (m *Monitor) JobFinished(o dispatch.Outcome) {
	result := "success"
	if o.Failure != "" {
		result = "failure"
	}
	m.met.jobsScanned.WithLabelValues(result).Inc()
	if !o.Job.LeasedAt.IsZero() {
		m.met.jobDuration.Observe(max(o.Finished.Sub(o.Job.LeasedAt), 0).Seconds())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dists.add(len(o.Job.Distributions))
	workers := make([]string, 0, len(o.Sessions))
	for _, id := range o.Sessions {
		if w := m.workers[id]; w != nil {
			w.jobs++
			workers = append(workers, w.info.WorkerID)
		} else {
			workers = append(workers, id)
		}
	}
	slices.Sort(workers)
	workers = slices.Compact(workers)
	elapsed := max(o.Finished.Sub(o.Job.LeasedAt), 0).Seconds()
	if o.Failure != "" {
		m.counts.scannedFailed++
		m.failures.add(Failure{
			Time: o.Finished, Kind: FailureScan, Name: o.Job.Name, Version: o.Job.Version,
			Attempt: o.Job.Attempt, Reason: o.Failure, Workers: workers, Report: ReportQueued,
		})
		return
	}
	m.counts.scannedOK++
	// Heaviest first when the weights are known (score.Aggregate sets them).
	rules := slices.Clone(o.Package.RulesMatched)
	if len(o.Package.Hits) == len(rules) {
		for i, h := range o.Package.Hits {
			rules[i] = h.Name
		}
	}
	m.results.add(Result{
		Finished: o.Finished, Name: o.Job.Name, Version: o.Job.Version, Attempt: o.Job.Attempt,
		Score: o.Package.Score, Rules: rules, InspectorURL: o.InspectorURL,
		Distributions: len(o.Job.Distributions), Workers: workers, ElapsedSeconds: elapsed,
		Files: o.Stats.Files, BytesScanned: o.Stats.BytesExpanded, Report: ReportQueued,
	})
}

// JobDropped records a job dropped undispatched past its lease
// (coordinator.Observer).
func (m *Monitor) JobDropped(j dispatch.Job) {
	m.met.jobsCompleted.WithLabelValues("dropped_stale").Inc()
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts.dropped++
	m.failures.add(Failure{
		Time: now, Kind: FailureDropped, Name: j.Name, Version: j.Version, Attempt: j.Attempt,
		Reason: "lease ended before a worker took every distribution; the API will lease it again",
	})
}

// Reported records a report attempt (coordinator.Observer). A report whose
// attempt failed with a retryable error counts nowhere yet: it is sent again.
func (m *Monitor) Reported(r outbox.Report, err error, _ time.Duration) {
	now := m.cfg.Now()
	var apiErr *mainframe.APIError
	var state ReportState
	switch {
	case err == nil:
		state = ReportAccepted
		if r.Success != nil {
			m.met.jobsCompleted.WithLabelValues("success").Inc()
		} else {
			m.met.jobsCompleted.WithLabelValues("failure").Inc()
		}
	case errors.As(err, &apiErr) && apiErr.Conflict():
		state = ReportConflict
		m.met.jobsCompleted.WithLabelValues("conflict").Inc()
	case errors.As(err, &apiErr) && apiErr.Final():
		state = ReportRejected
		m.met.jobsCompleted.WithLabelValues("rejected").Inc()
	default:
		state = ReportRetrying
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch state {
	case ReportAccepted:
		m.counts.accepted++
		m.lastReport = now
	case ReportConflict:
		m.counts.conflicts++
	case ReportRejected:
		m.counts.rejected++
	default:
		if !errors.Is(err, context.Canceled) {
			m.lastError = &Error{Time: now, Source: "report", Message: err.Error()}
		}
	}
	m.setReportState(r.Name, r.Version, state)
	if state == ReportConflict || state == ReportRejected {
		m.failures.add(Failure{
			Time: now, Kind: FailureReport, Name: r.Name, Version: r.Version, Attempt: r.Attempt,
			Reason: err.Error(), Report: state,
		})
	}
}

// ReportAbandoned records a report given up after the report max age
// (coordinator.Observer).
func (m *Monitor) ReportAbandoned(r outbox.Report, err error) {
	m.met.jobsCompleted.WithLabelValues("abandoned").Inc()
	reason := "not accepted within the report max age"
	if err != nil {
		reason += ": " + err.Error()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts.abandoned++
	m.setReportState(r.Name, r.Version, ReportAbandoned)
	m.failures.add(Failure{
		Time: m.cfg.Now(), Kind: FailureReport, Name: r.Name, Version: r.Version, Attempt: r.Attempt,
		Reason: reason, Report: ReportAbandoned,
	})
}

// setReportState marks the newest result or failure of a release.
func (m *Monitor) setReportState(name, version string, state ReportState) {
	if p := m.results.newest(func(r *Result) bool { return r.Name == name && r.Version == version }); p != nil {
		p.Report = state
		return
	}
	if p := m.failures.newest(func(f *Failure) bool {
		return f.Kind == FailureScan && f.Name == name && f.Version == version
	}); p != nil {
		p.Report = state
	}
}

// RulesUpdated records a rules fetch that changed or failed
// (coordinator.Observer).
func (m *Monitor) RulesUpdated(ok bool) {
	if ok {
		m.met.rulesUpdates.WithLabelValues("ok").Inc()
		return
	}
	m.met.rulesUpdates.WithLabelValues("error").Inc()
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastError = &Error{Time: now, Source: "rules", Message: "rules update failed (fetch or compile); see the coordinator's log"}
}

// SessionStarted records a worker session (coordinator.Observer).
func (m *Monitor) SessionStarted(info coordinator.SessionInfo) {
	m.met.sessionsStarted.Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workers[info.SessionID] = &workerState{info: info}
}

// SessionEnded records the end of a worker session (coordinator.Observer).
func (m *Monitor) SessionEnded(info coordinator.SessionInfo, err error) {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.workers, info.SessionID)
	if err == nil {
		m.met.sessionsEnded.WithLabelValues("clean").Inc()
		return
	}
	m.met.sessionsEnded.WithLabelValues("error").Inc()
	m.failures.add(Failure{
		Time: now, Kind: FailureWorker, Workers: []string{info.WorkerID},
		Reason: "session " + info.SessionID + " on " + info.Host + " ended: " + err.Error() + "; its tasks were re-dispatched",
	})
}

// DispatchEvent records a dispatcher event (coordinator.Observer): counted
// by kind; spot-check mismatches, decisions, quarantines and distributions
// failed after three losses are listed with the failures.
func (m *Monitor) DispatchEvent(e dispatch.Event) {
	m.met.dispatchEvents.WithLabelValues(e.Kind.String()).Inc()
	var f *Failure
	switch e.Kind {
	case dispatch.EventVerifyMismatch:
		f = &Failure{Kind: FailureMismatch, Reason: "spot check mismatch: " + e.Reason}
	case dispatch.EventVerifyDecided:
		f = &Failure{Kind: FailureMismatch, Reason: "spot check decided: " + e.Reason}
	case dispatch.EventQuarantine:
		f = &Failure{Kind: FailureQuarantine, Reason: "worker quarantined: " + e.Reason}
	case dispatch.EventLostFailed:
		f = &Failure{Kind: FailureLost, Reason: e.Reason}
	default:
		return
	}
	f.Time, f.Name, f.Version = e.Time, e.Name, e.Version
	f.Workers = append(slices.Clone(e.Identities), e.Quarantined...)
	if e.Identity != "" && !slices.Contains(f.Workers, e.Identity) {
		f.Workers = append(f.Workers, e.Identity)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failures.add(*f)
}

// OutboxHealth records the outbox's health (coordinator.Observer).
func (m *Monitor) OutboxHealth(h outbox.Health) {
	failing := 0.0
	if h.WriteFailing {
		failing = 1
	}
	m.met.outboxFailing.Set(failing)
	m.met.outboxVolatile.Set(float64(h.NotDurable))
	m.met.outboxFailures.Set(float64(h.Failures))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outboxHealth = h
}

// APIObserver returns the hooks for mainframe.Config.Observer: request counts,
// statuses and latencies by endpoint, and Auth0 token refreshes.
func (m *Monitor) APIObserver() mainframe.Observer {
	return mainframe.Observer{Call: m.apiCall, TokenRefresh: m.tokenRefresh}
}

func (m *Monitor) apiCall(endpoint string, status int, took time.Duration) {
	m.met.apiRequests.WithLabelValues(endpoint, statusLabel(status)).Inc()
	m.met.apiDuration.WithLabelValues(endpoint).Observe(took.Seconds())
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.endpoints[endpoint]
	if e == nil {
		e = &endpointState{win: newWindow(m.cfg.ErrorWindow)}
		m.endpoints[endpoint] = e
	}
	e.win.add(now, Trouble(status))
	e.lastStatus, e.lastCall = status, now
}

func (m *Monitor) tokenRefresh(err error) {
	if err == nil {
		m.met.tokenRefreshes.WithLabelValues("ok").Inc()
		return
	}
	m.met.tokenRefreshes.WithLabelValues("error").Inc()
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastError = &Error{Time: now, Source: "token", Message: err.Error()}
}

// Trouble reports whether an API answer says the API (or our access to it)
// is unwell: no response (0), a redirect (the login page), 401, 403, 408,
// 429 or 5xx. Answers about one request (404, 409, 422) are not trouble.
func Trouble(status int) bool {
	switch {
	case status == 0, status >= 300 && status < 400, status >= 500:
		return true
	case status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return true
	}
	return false
}

// PollQueue asks src for the API's queue status at once and then every
// QueuePollInterval, until ctx ends; it returns nil then. Each poll is bounded
// by the interval. Results feed the dragonfly_api_queue_* gauges, the page and
// DesiredWorkers.
func (m *Monitor) PollQueue(ctx context.Context, src QueueSource) error {
	t := time.NewTicker(m.cfg.QueuePollInterval)
	defer t.Stop()
	for {
		m.pollOnce(ctx, src)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Monitor) pollOnce(ctx context.Context, src QueueSource) {
	pctx, cancel := context.WithTimeout(ctx, m.cfg.QueuePollInterval)
	defer cancel()
	q, err := src.QueueStatus(pctx)
	if ctx.Err() != nil {
		return
	}
	now := m.cfg.Now()
	if err != nil {
		m.met.queuePolls.WithLabelValues("error").Inc()
		m.mu.Lock()
		m.queueErr = &Error{Time: now, Source: "queue-status", Message: err.Error()}
		m.mu.Unlock()
		return
	}
	m.met.queuePolls.WithLabelValues("ok").Inc()
	m.mu.Lock()
	m.queue = &Queue{
		Fetched: now, Queued: q.Queued, InProgress: q.InProgress, Retryable: q.Retryable,
		Exhausted: q.Exhausted, Stranded: q.Stranded, TotalBacklog: q.TotalBacklog, OldestAgeSeconds: q.OldestAgeSeconds,
	}
	m.queueErr = nil
	m.leasedAtPoll = m.counts.leased
	m.mu.Unlock()
}

// statusLabel is the status label of an API try.
func statusLabel(status int) string {
	if status == 0 {
		return "none"
	}
	return strconv.Itoa(status)
}
