// Package status is the operators' view of a coordinator: Prometheus metrics,
// a server-rendered status page (/status), its JSON form (/status.json),
// health endpoints (/healthz, /readyz) and the fleet-size signal an
// autoscaler reads.
//
// A Monitor observes: it is the coordinator's Observer
// (coordinator.Config.Observer) and the API client's (mainframe.Config.Observer,
// via APIObserver), so it is built first. What it shows of the coordinator's
// state it reads from one immutable snapshot (Source.Snapshot) taken per
// page or scrape, never from the coordinator's live parts: the build order is
// Monitor, API client, coordinator, then Handler(coordinator, server.Ready).
// It starts no goroutines. The API's backlog (GET /queue-status) is asked on
// demand, when a page or a scrape finds the last answer older than
// Config.QueueRefresh; the coordinator answers concurrent askers with one
// request (Source.QueueStatus), so however many pages are open the API sees
// at most one call per QueueRefresh.
//
// # Metrics
//
// Every metric is in namespace "dragonfly_". Events (the Monitor's registry,
// Registry):
//
//	dragonfly_build_info{version,revision,goversion}   1
//	dragonfly_lease_requests_total{result}              POST /jobs calls: jobs, empty, error
//	dragonfly_jobs_leased_total                         jobs leased
//	dragonfly_jobs_scanned_total{result}                jobs whose scan finished: success, failure
//	dragonfly_jobs_completed_total{outcome}             jobs at their final fate, one outcome each:
//	                                                    success, failure (report accepted), conflict (the API
//	                                                    answered 409 to the report), rejected (another final 4xx),
//	                                                    abandoned (report given up: not accepted within the
//	                                                    report max age, or one that cannot be encoded),
//	                                                    dropped_stale (not reported: its lease ended with a
//	                                                    distribution still waiting for a worker, or workers
//	                                                    held its tasks past the max job age)
//	dragonfly_job_duration_seconds                      lease to last result of a job
//	dragonfly_api_requests_total{endpoint,status}       HTTP tries against the API; status "none" when no
//	                                                    response arrived, "7xx" and the like for one HTTP
//	                                                    does not define
//	dragonfly_api_request_duration_seconds{endpoint}    duration of one try
//	dragonfly_api_token_refreshes_total{result}         Auth0 token requests: ok, error
//	dragonfly_rules_updates_total{result}               rule fetches that changed or failed: ok, error
//	dragonfly_sessions_started_total                    worker sessions started
//	dragonfly_sessions_ended_total{result}              worker sessions ended: clean, error
//	dragonfly_dispatch_events_total{kind}               dispatcher events: backup_dispatched, backup_won,
//	                                                    result_dropped, task_lost, lost_failed, verify_picked,
//	                                                    verify_agreed, verify_mismatch, verify_inconclusive,
//	                                                    verify_decided, verify_skipped, quarantine,
//	                                                    session_suspended, no_verdict_retry
//	dragonfly_outbox_write_failing                      1 while the outbox's writes fail (reports in memory
//	                                                    only, leasing paused); from the coordinator's
//	                                                    once-a-second health report
//	dragonfly_outbox_not_durable_reports                reports held in memory only
//	dragonfly_outbox_write_failures                     failed outbox write transactions since start
//
// State, read from a snapshot taken at scrape time (see Gatherer):
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
//	dragonfly_tasks_cancelled_total                     task copies withdrawn: another copy answered, or
//	                                                    their release ended
//	dragonfly_results_late_total                        results for tasks no longer assigned to the sender
//	dragonfly_jobs_superseded_total                     re-leases merged into a job in flight
//	dragonfly_outbox_reports                            reports waiting for the API
//	dragonfly_spot_checks_active                        1 while spot checks run (rate > 0 and two or more
//	                                                    worker identities ready), else 0
//	dragonfly_quarantined_workers                       worker identities quarantined
//	dragonfly_rules_info{hash}                          1 for the rules in use (absent before the first load)
//	dragonfly_rule_matches_total{rule}                  finished jobs each rule of the current rule set
//	                                                    matched, since that set was loaded: only names of
//	                                                    the current set, and every series starts over when
//	                                                    the set changes
//	dragonfly_api_queue_polls_total{result}             GET /queue-status answers (ok) and failures (error),
//	                                                    each counted once however many pages and scrapes saw it
//	dragonfly_api_queue_jobs{state}                     the API's queue by state: queued, in_progress,
//	                                                    retryable, exhausted, stranded (last good answer)
//	dragonfly_api_queue_backlog_jobs                    the API's total_backlog
//	dragonfly_api_queue_oldest_age_seconds              the API's oldest_age_seconds
//	dragonfly_api_queue_last_success_timestamp_seconds  when the API last answered
//	dragonfly_fleet_desired_workers                     workers the backlog needs (see DesiredWorkers)
//	dragonfly_fleet_distributions_per_job               the average the formula uses
//	dragonfly_fleet_max_workers                         the formula's cap
//	dragonfly_refusals_total{reason}                    refused or dropped at the door: stream,
//	                                                    pending_evicted, pending_expired, conns_over_cap,
//	                                                    sessions_over_identity_cap, results_repeated,
//	                                                    results_rules_unknown
//
// The dragonfly_api_queue_* gauges are absent until the API answered once.
// A scrape asks for the queue status like a page does (at most once per
// Config.QueueRefresh, waiting at most Config.QueueTimeout).
//
// # Bounds
//
// Every list is bounded: recent results, failures and spot check events
// (Config.RecentResults, RecentFailures, RecentSpotChecks), the releases kept
// per worker identity (Config.ReleasesPerIdentity over Config.ReleaseWindow,
// for Config.Identities identities), the rule sets whose matches are counted
// (4, least recently matched forgotten) and the rule names per set
// (Config.MaxRules). Strings from workers and the API are cut to 2 KiB.
//
// # The other side
//
// Protect puts the status paths behind a bearer token (DRAGONFLY_STATUS_TOKEN);
// /metrics and the health paths stay open. dragonfly status is a client of
// the document: DocumentURL finds it from a coordinator's address, Fetch
// reads it (at most MaxDocument bytes, within a timeout), and View draws it
// as WriteText's tables or as JSON, once or every interval.
package status

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/prometheus/client_golang/prometheus"
)

// Config bounds a Monitor. The zero value of every field means its default.
type Config struct {
	// Version is this build, shown on the page and as the version label of
	// dragonfly_build_info. Default "unknown".
	Version string
	// Revision is the VCS revision of this build (the revision label).
	// Default "unknown".
	Revision string
	// GoVersion is the Go release that built it (the goversion label).
	// Default runtime.Version().
	GoVersion string
	// QueueRefresh: a page or scrape asks the API for GET /queue-status when
	// the last answer is older than this; the coordinator makes one request
	// for any number of askers. Default 5 s.
	QueueRefresh time.Duration
	// QueueTimeout bounds how long a page or scrape waits for that answer
	// before it shows the last one. Default 3 s.
	QueueTimeout time.Duration
	// QueueStale: an API answer older than this no longer counts in
	// DesiredWorkers (the API backlog is taken as 0). Default 2 min.
	QueueStale time.Duration
	// RecentResults is how many finished jobs the page lists. Default 50.
	RecentResults int
	// RecentFailures is how many failures the page lists. Default 50;
	// broken worker sessions are listed apart, a fifth as many, so that a
	// worker breaking its sessions in a loop cannot push job failures and
	// quarantines off the page.
	RecentFailures int
	// RecentSpotChecks is how many spot check mismatches, decisions,
	// inconclusive checks and quarantines the page lists. Default 50.
	RecentSpotChecks int
	// ReleaseWindow is how long the releases a worker identity took part in
	// are kept (for a quarantined identity: the window before its
	// quarantine). Default 1 h.
	ReleaseWindow time.Duration
	// ReleasesPerIdentity bounds the releases kept per identity; beyond it
	// the oldest are forgotten and the list says it is incomplete.
	// Default 1000.
	ReleasesPerIdentity int
	// Identities bounds the worker identities whose releases are kept; beyond
	// it the one idle longest is forgotten (quarantined ones last).
	// Default 256. Full at the defaults (256,000 releases) the log holds
	// about 22 MiB (BenchmarkReleaseLogFull).
	Identities int
	// TopRules is how many rules the page lists by matches. Default 10.
	TopRules int
	// MaxRules bounds the rule names counted per rule set (a rule set has a
	// few hundred). Default 4096.
	MaxRules int
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
	c.Version = cmp.Or(c.Version, "unknown")
	c.Revision = cmp.Or(c.Revision, "unknown")
	c.GoVersion = cmp.Or(c.GoVersion, runtime.Version())
	c.QueueRefresh = bound.Or(c.QueueRefresh, 5*time.Second)
	c.QueueTimeout = bound.Or(c.QueueTimeout, 3*time.Second)
	c.QueueStale = bound.Or(c.QueueStale, 2*time.Minute)
	for _, p := range []*int{&c.RecentResults, &c.RecentFailures, &c.RecentSpotChecks} {
		*p = bound.Or(*p, 50)
	}
	c.ReleaseWindow = bound.Or(c.ReleaseWindow, time.Hour)
	c.ReleasesPerIdentity = bound.Or(c.ReleasesPerIdentity, 1000)
	c.Identities = bound.Or(c.Identities, 256)
	c.TopRules = bound.Or(c.TopRules, 10)
	c.MaxRules = bound.Or(c.MaxRules, 4096)
	c.ErrorWindow = bound.Or(c.ErrorWindow, 15*time.Minute)
	c.MaxWorkers = bound.Or(c.MaxWorkers, 100)
	c.SlotsPerWorker = bound.Or(c.SlotsPerWorker, 2)
	c.DistributionsPerJob = bound.Or(c.DistributionsPerJob, 3)
	c.DistributionsWindow = bound.Or(c.DistributionsWindow, 200)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Source is the coordinator as the Monitor reads it: an immutable snapshot,
// and the API's queue status through the coordinator's single-flight cache.
// *coordinator.Coordinator implements it.
type Source interface {
	Snapshot() coordinator.Snapshot
	QueueStatus(ctx context.Context, maxAge time.Duration) coordinator.QueueView
}

var _ Source = (*coordinator.Coordinator)(nil)

// Monitor collects a coordinator's events. It is safe for concurrent use;
// its Observer methods are quick (one short lock).
type Monitor struct {
	cfg     Config
	started time.Time
	met     *metrics
	rules   *ruleCounts

	mu            sync.Mutex
	jobsBySession map[string]int64 // jobs done, while the session is connected
	results       ring[Result]
	failures      ring[Failure]
	broken        ring[Failure] // broken worker sessions, apart from failures (addFailure)
	failureSeq    uint64        // the last Failure.seq given
	spotChecks    ring[SpotCheck]
	dists         ring[int] // distributions the last finished jobs queued as tasks
	releases      *releaseLog
	lastLease     time.Time
	lastReport    time.Time
	lastError     *Error
	endpoints     map[string]*endpointState
	queue         *Queue
	leasedAtQueue int64 // counts.leased when queue was recorded
	queueErr      *Error
	lastQueueErr  error
	queueOK       int64 // queue answers seen
	queueFailed   int64 // queue failures seen
	counts        counts
}

type counts struct {
	leased, scannedOK, scannedFailed, dropped, accepted, conflicts, rejected, abandoned int64
}

var _ coordinator.Observer = (*Monitor)(nil)

// New returns a Monitor with its own registry.
func New(cfg Config) *Monitor {
	cfg = cfg.withDefaults()
	m := &Monitor{
		cfg:           cfg,
		started:       cfg.Now(),
		rules:         newRuleCounts(4, cfg.MaxRules),
		jobsBySession: map[string]int64{},
		results:       newRing[Result](cfg.RecentResults),
		failures:      newRing[Failure](cfg.RecentFailures),
		broken:        newRing[Failure](max(1, cfg.RecentFailures/5)),
		spotChecks:    newRing[SpotCheck](cfg.RecentSpotChecks),
		dists:         newRing[int](cfg.DistributionsWindow),
		releases:      newReleaseLog(cfg.ReleaseWindow, cfg.ReleasesPerIdentity, cfg.Identities),
		endpoints:     map[string]*endpointState{},
	}
	m.met = newMetrics(cfg)
	return m
}

// Registry holds the Monitor's event metrics; Gatherer adds the state read
// from a coordinator.
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
		m.lastError = &Error{Time: now, Source: "lease", Message: clip.Error(err, clip.Default)}
		return
	}
	m.lastLease = now
}

// JobFinished records a finished job (coordinator.Observer): its result or
// failure, the identities that scanned it (kept per identity for
// Config.ReleaseWindow), and, for a success, its rules' matches.
func (m *Monitor) JobFinished(o dispatch.Outcome) {
	result := "success"
	if o.Failure != "" {
		result = "failure"
	}
	m.met.jobsScanned.WithLabelValues(result).Inc()
	if !o.Job.LeasedAt.IsZero() {
		m.met.jobDuration.Observe(max(o.Finished.Sub(o.Job.LeasedAt), 0).Seconds())
	}
	if o.Failure == "" {
		m.rules.add(o.Job.RulesHash, o.Package.RulesMatched)
	}
	ids := slices.Clone(o.Identities)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	elapsed := max(o.Finished.Sub(o.Job.LeasedAt), 0).Seconds()

	m.mu.Lock()
	defer m.mu.Unlock()
	// The tasks it made, not its distributions: a job failed when admitted
	// (thousands of wheels, over DRAGONFLY_MAX_DISTRIBUTIONS) needed no slot.
	m.dists.add(o.Tasks)
	for _, id := range o.Sessions {
		if n, ok := m.jobsBySession[id]; ok {
			m.jobsBySession[id] = n + 1
		}
	}
	for _, id := range ids {
		m.releases.add(id, Release{Name: o.Job.Name, Version: o.Job.Version, Finished: o.Finished, Failed: o.Failure != ""})
	}
	if o.Failure != "" {
		m.counts.scannedFailed++
		m.addFailure(Failure{
			Time: o.Finished, Kind: FailureScan, Name: o.Job.Name, Version: o.Job.Version,
			Attempt: o.Job.Attempt, Reason: clip.String(o.Failure, clip.Default), Workers: ids, Report: ReportQueued,
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
		Score: o.Package.Score, Grade: Grade(o.Package.Score), Rules: rules, InspectorURL: o.InspectorURL,
		Distributions: len(o.Job.Distributions), Workers: ids, ElapsedSeconds: elapsed,
		Files: o.Stats.Files, BytesScanned: o.Stats.BytesExpanded, Report: ReportQueued,
	})
}

// JobDropped records a job dropped unreported: past its lease with a
// distribution still waiting for a worker, or past the max job age
// (coordinator.Observer).
func (m *Monitor) JobDropped(j dispatch.Job) {
	m.met.jobsCompleted.WithLabelValues("dropped_stale").Inc()
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts.dropped++
	m.addFailure(Failure{
		Time: now, Kind: FailureDropped, Name: j.Name, Version: j.Version, Attempt: j.Attempt,
		Reason: "lease ended before every distribution was scanned; the API will lease it again",
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
			m.lastError = &Error{Time: now, Source: "report", Message: clip.Error(err, clip.Default)}
		}
	}
	m.setReportState(r.Name, r.Version, state)
	if state == ReportConflict || state == ReportRejected {
		m.addFailure(Failure{
			Time: now, Kind: FailureReport, Name: r.Name, Version: r.Version, Attempt: r.Attempt,
			Reason: clip.Error(err, clip.Default), Report: state,
		})
	}
}

// ReportAbandoned records a report given up after the report max age
// (coordinator.Observer).
func (m *Monitor) ReportAbandoned(r outbox.Report, err error) {
	m.met.jobsCompleted.WithLabelValues("abandoned").Inc()
	reason := "not accepted within the report max age"
	if err != nil {
		reason += ": " + clip.Error(err, clip.Default)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts.abandoned++
	m.setReportState(r.Name, r.Version, ReportAbandoned)
	m.addFailure(Failure{
		Time: m.cfg.Now(), Kind: FailureReport, Name: r.Name, Version: r.Version, Attempt: r.Attempt,
		Reason: reason, Report: ReportAbandoned,
	})
}

// addFailure lists a failure, under m.mu. Broken worker sessions go to a
// list of their own, a fifth as long: a token holder ends a session at its
// own pace (a protocol violation right after Hello, under any worker id),
// and its sessions took the places of job failures and quarantines, 50 of
// them in a second.
func (m *Monitor) addFailure(f Failure) {
	m.failureSeq++
	f.seq = m.failureSeq
	if f.Kind == FailureWorker {
		m.broken.add(f)
		return
	}
	m.failures.add(f)
}

// failureList is the failures listed, newest first.
func (m *Monitor) failureList() []Failure {
	out := append(m.failures.list(), m.broken.list()...)
	slices.SortFunc(out, func(a, b Failure) int { return cmp.Compare(b.seq, a.seq) })
	return out
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
	var err error
	if !ok {
		err = errors.New("rules update failed (fetch or compile); see the coordinator's log")
	}
	m.countResult(m.met.rulesUpdates, "rules", err)
}

// SessionStarted records a worker session (coordinator.Observer).
func (m *Monitor) SessionStarted(info coordinator.SessionInfo) {
	m.met.sessionsStarted.Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobsBySession[info.SessionID] = 0
}

// SessionEnded records the end of a worker session (coordinator.Observer).
func (m *Monitor) SessionEnded(info coordinator.SessionInfo, err error) {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.jobsBySession, info.SessionID)
	if err == nil {
		m.met.sessionsEnded.WithLabelValues("clean").Inc()
		return
	}
	m.met.sessionsEnded.WithLabelValues("error").Inc()
	who := info.Identity
	if who == "" {
		who = info.WorkerID
	}
	m.addFailure(Failure{
		Time: now, Kind: FailureWorker, Workers: []string{who},
		Reason: clip.String("session "+info.SessionID+" on "+info.Host+" ended: "+err.Error()+"; its tasks were dispatched again", clip.Default),
	})
}

// DispatchEvent records a dispatcher event (coordinator.Observer): counted
// by kind; spot-check mismatches, decisions, inconclusive checks and
// quarantines are listed with the spot checks, quarantines and
// distributions failed after three losses with the failures. A quarantine
// freezes the identity's release list: it then covers the window before
// the quarantine.
func (m *Monitor) DispatchEvent(e dispatch.Event) {
	m.met.dispatchEvents.WithLabelValues(e.Kind.String()).Inc()
	var kind SpotCheckKind
	switch e.Kind {
	case dispatch.EventVerifyMismatch:
		kind = SpotMismatch
	case dispatch.EventVerifyDecided:
		kind = SpotDecided
	case dispatch.EventVerifyInconclusive:
		kind = SpotInconclusive
	case dispatch.EventQuarantine:
		kind = SpotQuarantine
	case dispatch.EventLostFailed:
		m.mu.Lock()
		defer m.mu.Unlock()
		m.addFailure(Failure{Time: e.Time, Kind: FailureLost, Name: e.Name, Version: e.Version,
			Reason: clip.String(e.Reason, clip.Default), Workers: slices.Clone(e.Identities)})
		return
	default:
		return
	}
	sc := SpotCheck{Time: e.Time, Kind: kind, Name: e.Name, Version: e.Version, URL: e.URL,
		Identities: slices.Clone(e.Identities), Quarantined: slices.Clone(e.Quarantined), Reason: clip.String(e.Reason, clip.Default)}
	if kind == SpotQuarantine && e.Identity != "" && !slices.Contains(sc.Identities, e.Identity) {
		sc.Identities = append(sc.Identities, e.Identity)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.spotChecks.add(sc)
	if kind == SpotQuarantine {
		m.addFailure(Failure{Time: e.Time, Kind: FailureQuarantine, Name: e.Name, Version: e.Version,
			Reason: "worker quarantined: " + sc.Reason, Workers: slices.Clone(sc.Identities)})
		if e.Identity != "" {
			m.releases.quarantine(e.Identity, e.Time)
		}
	}
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

func (m *Monitor) tokenRefresh(err error) { m.countResult(m.met.tokenRefreshes, "token", err) }

// countResult counts an ok or an error on c; an error from source is also
// the last error.
func (m *Monitor) countResult(c *prometheus.CounterVec, source string, err error) {
	if err == nil {
		c.WithLabelValues("ok").Inc()
		return
	}
	c.WithLabelValues("error").Inc()
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastError = &Error{Time: now, Source: source, Message: clip.Error(err, clip.Default)}
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

// statusLabel is the status label of an API try.
func statusLabel(status int) string {
	switch {
	case status == 0:
		return "none"
	case http.StatusText(status) == "" && status >= 1 && status <= 999:
		// Go's client takes any three digits ("042" is 42): an API
		// answering each try with another made a series of each, 800 per
		// endpoint and 99 more under 100. Statuses HTTP does not define
		// are counted by class.
		return strconv.Itoa(status/100) + "xx"
	}
	return strconv.Itoa(status)
}

// sameError reports whether a and b are the same error value, without
// comparing values of types that cannot be compared.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// ring keeps the last n items.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func newRing[T any](n int) ring[T] { return ring[T]{buf: make([]T, n)} }

// add appends v; it returns the item it overwrote, if any.
func (r *ring[T]) add(v T) (old T, overwrote bool) {
	old, overwrote = r.buf[r.next], r.full
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	return old, overwrote
}

func (r *ring[T]) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// items returns the items oldest first (shared storage: read only, under the lock).
func (r *ring[T]) items() []T {
	if !r.full {
		return r.buf[:r.next]
	}
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}

// list returns a copy, newest first.
func (r *ring[T]) list() []T {
	out := slices.Clone(r.items())
	slices.Reverse(out)
	return out
}

// newest returns the newest item matching ok, nil if none.
func (r *ring[T]) newest(ok func(*T) bool) *T {
	n := r.len()
	for i := 1; i <= n; i++ {
		j := (r.next - i + len(r.buf)) % len(r.buf)
		if ok(&r.buf[j]) {
			return &r.buf[j]
		}
	}
	return nil
}

// window counts requests and errors over a sliding span, in 15 slots.
type window struct {
	slot    time.Duration
	buckets [windowSlots]bucket
}

const windowSlots = 15

type bucket struct {
	idx            int64 // slot number (time / slot)
	requests, errs int64
}

type endpointState struct {
	win        *window
	lastStatus int
	lastCall   time.Time
}

func newWindow(span time.Duration) *window {
	return &window{slot: max(span/windowSlots, time.Nanosecond)}
}

func (w *window) add(now time.Time, isErr bool) {
	idx := now.UnixNano() / int64(w.slot)
	b := &w.buckets[idx%windowSlots]
	if b.idx != idx {
		*b = bucket{idx: idx}
	}
	b.requests++
	if isErr {
		b.errs++
	}
}

// sum counts the slots within the span ending now.
func (w *window) sum(now time.Time) (requests, errs int64) {
	idx := now.UnixNano() / int64(w.slot)
	for _, b := range w.buckets {
		if b.idx > idx-windowSlots && b.idx <= idx {
			requests += b.requests
			errs += b.errs
		}
	}
	return requests, errs
}

// releaseLog keeps, per worker identity, the releases whose outcomes used
// its results, for a window; bounded per identity and in identities. Used
// under Monitor.mu.
type releaseLog struct {
	window   time.Duration
	per, ids int
	byID     map[string]*identityLog
}

type identityLog struct {
	rels ring[Release]
	// dropped is the newest release the ring forgot (zero: none).
	dropped time.Time
	// quarantined is when the identity was quarantined (zero: it is not).
	quarantined time.Time
	last        time.Time // newest release or quarantine
}

func newReleaseLog(window time.Duration, per, ids int) *releaseLog {
	return &releaseLog{window: window, per: per, ids: ids, byID: map[string]*identityLog{}}
}

func (l *releaseLog) get(id string) *identityLog {
	if il := l.byID[id]; il != nil {
		return il
	}
	if len(l.byID) >= l.ids {
		l.evict()
	}
	il := &identityLog{rels: newRing[Release](l.per)}
	l.byID[id] = il
	return il
}

// evict forgets the identity idle longest, a quarantined one only when every
// identity is quarantined.
func (l *releaseLog) evict() {
	var victim string
	var vq bool
	var vlast time.Time
	for id, il := range l.byID {
		q := !il.quarantined.IsZero()
		if victim == "" || (vq && !q) || (vq == q && il.last.Before(vlast)) {
			victim, vq, vlast = id, q, il.last
		}
	}
	delete(l.byID, victim)
}

func (l *releaseLog) add(id string, r Release) {
	il := l.get(id)
	if old, ok := il.rels.add(r); ok && old.Finished.After(il.dropped) {
		il.dropped = old.Finished
	}
	if r.Finished.After(il.last) {
		il.last = r.Finished
	}
}

func (l *releaseLog) quarantine(id string, at time.Time) {
	il := l.get(id)
	if il.quarantined.IsZero() {
		il.quarantined = at
	}
	if at.After(il.last) {
		il.last = at
	}
}

// list returns the releases of id finished since one window before since
// (a quarantine's time; zero: now), newest first, and whether none of them
// was forgotten.
func (l *releaseLog) list(id string, since, now time.Time) ([]Release, bool) {
	if since.IsZero() {
		since = now
	}
	cutoff := since.Add(-l.window)
	out := []Release{}
	il := l.byID[id]
	if il == nil {
		return out, true
	}
	for _, r := range il.rels.list() {
		if !r.Finished.Before(cutoff) {
			out = append(out, r)
		}
	}
	return out, il.dropped.Before(cutoff)
}

// ruleCounts counts, per rule set, the finished jobs each rule matched. It
// keeps the sets most recently matched (a job scanned with older rules may
// finish after a change), never the one in use; dragonfly_rule_matches_total
// shows the current set's only, so its series start over when the set
// changes.
type ruleCounts struct {
	mu       sync.Mutex
	sets     int
	maxRules int
	byHash   map[string]*ruleSet
	tick     uint64
	current  string // the rules in use at the last page or scrape: never evicted
}

type ruleSet struct {
	counts  map[string]int64
	used    uint64
	dropped int64 // matches of names beyond maxRules
}

func newRuleCounts(sets, maxRules int) *ruleCounts {
	return &ruleCounts{sets: sets, maxRules: maxRules, byHash: map[string]*ruleSet{}}
}

func (r *ruleCounts) add(hash string, rules []string) {
	if len(rules) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tick++
	s := r.byHash[hash]
	if s == nil {
		if len(r.byHash) >= r.sets {
			oldest := ""
			for h, x := range r.byHash {
				if h != r.current && (oldest == "" || x.used < r.byHash[oldest].used) {
					oldest = h
				}
			}
			delete(r.byHash, oldest)
		}
		s = &ruleSet{counts: map[string]int64{}}
		r.byHash[hash] = s
	}
	s.used = r.tick
	for _, name := range rules {
		if _, ok := s.counts[name]; !ok && len(s.counts) >= r.maxRules {
			s.dropped++
			continue
		}
		s.counts[name]++
	}
}

// setCurrent says which rule set is in use.
func (r *ruleCounts) setCurrent(hash string) {
	r.mu.Lock()
	r.current = hash
	r.mu.Unlock()
}

// all returns the counts of the rule set hash, by rule name.
func (r *ruleCounts) all(hash string) []RuleMatches {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.byHash[hash]
	if s == nil || hash == "" {
		return nil
	}
	out := make([]RuleMatches, 0, len(s.counts))
	for name, n := range s.counts {
		out = append(out, RuleMatches{Rule: name, Matches: n})
	}
	return out
}

// top returns the n rules of hash with the most matches (ties by name).
func (r *ruleCounts) top(hash string, n int) []RuleMatches {
	all := r.all(hash)
	slices.SortFunc(all, func(a, b RuleMatches) int {
		if a.Matches != b.Matches {
			if a.Matches > b.Matches {
				return -1
			}
			return 1
		}
		if a.Rule < b.Rule {
			return -1
		}
		if a.Rule > b.Rule {
			return 1
		}
		return 0
	})
	if len(all) > n {
		all = all[:n]
	}
	if all == nil {
		all = []RuleMatches{}
	}
	return all
}
