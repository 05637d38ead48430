package status

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Histogram buckets, in seconds.
var (
	jobBuckets = []float64{0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300}
	apiBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// knownEndpoints are the API calls the coordinator makes; their series exist
// from the start.
var knownEndpoints = []string{"POST /jobs", "GET /rules", "PUT /package", "GET /queue-status"}

// metrics are the Monitor's event metrics.
type metrics struct {
	reg *prometheus.Registry

	leaseRequests   *prometheus.CounterVec
	jobsLeased      prometheus.Counter
	jobsScanned     *prometheus.CounterVec
	jobsCompleted   *prometheus.CounterVec
	jobDuration     prometheus.Histogram
	apiRequests     *prometheus.CounterVec
	apiDuration     *prometheus.HistogramVec
	tokenRefreshes  *prometheus.CounterVec
	rulesUpdates    *prometheus.CounterVec
	sessionsStarted prometheus.Counter
	sessionsEnded   *prometheus.CounterVec
	dispatchEvents  *prometheus.CounterVec
	outboxFailing   prometheus.Gauge
	outboxVolatile  prometheus.Gauge
	outboxFailures  prometheus.Gauge
}

const ns = "dragonfly"

// counter, counterVec, gauge, histogram and histogramVec make the
// Monitor's metrics in the dragonfly namespace.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help})
}

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets})
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets}, labels)
}

func newMetrics(cfg Config) *metrics {
	x := &metrics{
		reg:             prometheus.NewRegistry(),
		leaseRequests:   counterVec("lease_requests_total", "Lease requests (POST /jobs) by result: jobs, empty, error.", "result"),
		jobsLeased:      counter("jobs_leased_total", "Jobs leased from the API."),
		jobsScanned:     counterVec("jobs_scanned_total", "Jobs whose scan finished, by result: success, failure.", "result"),
		jobsCompleted:   counterVec("jobs_completed_total", "Jobs at their final fate, by outcome: success and failure (report accepted), conflict (the API answered 409 to the report), rejected (another final 4xx), abandoned (report given up: not accepted within the report max age, or one that cannot be encoded), dropped_stale (not reported, the API leases it again: its lease ended with a distribution still waiting for a worker, or workers held its tasks past the max job age).", "outcome"),
		jobDuration:     histogram("job_duration_seconds", "Time from a job's lease to its last result.", jobBuckets),
		apiRequests:     counterVec("api_requests_total", "HTTP tries against the Dragonfly API, by endpoint and status (none: no response; 7xx and the like: a status HTTP does not define).", "endpoint", "status"),
		apiDuration:     histogramVec("api_request_duration_seconds", "Duration of one HTTP try against the Dragonfly API, by endpoint.", apiBuckets, "endpoint"),
		tokenRefreshes:  counterVec("api_token_refreshes_total", "Auth0 token requests, by result: ok, error.", "result"),
		rulesUpdates:    counterVec("rules_updates_total", "Rule fetches that changed the rules or failed, by result: ok, error.", "result"),
		sessionsStarted: counter("sessions_started_total", "Worker sessions started."),
		sessionsEnded:   counterVec("sessions_ended_total", "Worker sessions ended, by result: clean, error.", "result"),
		dispatchEvents:  counterVec("dispatch_events_total", "Dispatcher events about slow, lost or lying workers, by kind: backup_dispatched, backup_won, result_dropped, task_lost, lost_failed, verify_picked, verify_agreed, verify_mismatch, verify_inconclusive, verify_decided, verify_skipped, quarantine, session_suspended, no_verdict_retry.", "kind"),
		outboxFailing:   gauge("outbox_write_failing", "1 while the outbox's writes fail (reports kept in memory only; leasing paused)."),
		outboxVolatile:  gauge("outbox_not_durable_reports", "Reports held in memory only: their outbox write failed and is being retried."),
		outboxFailures:  gauge("outbox_write_failures", "Failed outbox write transactions since the coordinator started."),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
		Help:        "Always 1; the labels are the coordinator's build: version, VCS revision, Go release.",
		ConstLabels: prometheus.Labels{"version": cfg.Version, "revision": cfg.Revision, "goversion": cfg.GoVersion}})
	info.Set(1)
	x.reg.MustRegister(info, x.leaseRequests, x.jobsLeased, x.jobsScanned, x.jobsCompleted, x.jobDuration,
		x.apiRequests, x.apiDuration, x.tokenRefreshes, x.rulesUpdates, x.sessionsStarted, x.sessionsEnded,
		x.dispatchEvents, x.outboxFailing, x.outboxVolatile, x.outboxFailures)
	if cfg.Runtime {
		x.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for _, r := range []string{"jobs", "empty", "error"} {
		x.leaseRequests.WithLabelValues(r)
	}
	for _, r := range []string{"success", "failure"} {
		x.jobsScanned.WithLabelValues(r)
	}
	for _, o := range []string{"success", "failure", "conflict", "rejected", "abandoned", "dropped_stale"} {
		x.jobsCompleted.WithLabelValues(o)
	}
	for _, r := range []string{"ok", "error"} {
		x.tokenRefreshes.WithLabelValues(r)
		x.rulesUpdates.WithLabelValues(r)
	}
	for _, r := range []string{"clean", "error"} {
		x.sessionsEnded.WithLabelValues(r)
	}
	for _, e := range knownEndpoints {
		x.apiDuration.WithLabelValues(e)
	}
	return x
}

// Gatherer returns the Monitor's metrics plus the state of src, read from
// one snapshot taken at each scrape (see the package doc for the list).
func (m *Monitor) Gatherer(src Source) prometheus.Gatherer {
	state := prometheus.NewRegistry()
	state.MustRegister(&collector{m: m, src: src})
	return prometheus.Gatherers{m.met.reg, state}
}

// collector reads the coordinator's state at scrape time.
type collector struct {
	m   *Monitor
	src Source
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil)
}

var (
	descWorkers       = desc("workers_connected", "Worker sessions connected.")
	descSlots         = desc("scanner_slots", "Scanner slots of the connected workers.")
	descSlotsBusy     = desc("scanner_slots_busy", "Scanner slots holding a task (per worker at most its slots).")
	descInFlight      = desc("jobs_in_flight", "Leased jobs not finished.")
	descBacklog       = desc("dispatch_backlog_tasks", "Tasks (distributions) waiting for a worker.")
	descBacklogAge    = desc("dispatch_backlog_oldest_age_seconds", "Age of the lease of the oldest job with a task waiting; 0 when none waits.")
	descRunning       = desc("tasks_running", "Tasks assigned to workers.")
	descDispatched    = desc("tasks_dispatched_total", "Task assignments to workers.")
	descRequeued      = desc("tasks_requeued_total", "Tasks handed back or taken from ended sessions and queued again.")
	descCancelled     = desc("tasks_cancelled_total", "Task copies withdrawn from workers (stopped and handed back): another copy answered first, or their release ended (reported, failed, or dropped for the API to lease again). Workers of the previous release finish such copies.")
	descLate          = desc("results_late_total", "Results for tasks no longer assigned to the worker that sent them.")
	descSuperseded    = desc("jobs_superseded_total", "Re-leases merged into a job already in flight.")
	descOutbox        = desc("outbox_reports", "Reports waiting for the API to accept them.")
	descSpotActive    = desc("spot_checks_active", "1 while spot checks run: a share of tasks is scanned again by a second worker identity (rate > 0 and two or more identities ready); else 0.")
	descQuarantined   = desc("quarantined_workers", "Worker identities quarantined (caught lying in a spot check): they get no tasks.")
	descRules         = desc("rules_info", "1 for the rules in use, by hash.", "hash")
	descRuleMatches   = desc("rule_matches_total", "Finished jobs each rule of the current rule set matched since the set was loaded; the series start over when it changes.", "rule")
	descQueuePolls    = desc("api_queue_polls_total", "Answers (ok) and failures (error) of the API's GET /queue-status, asked on demand by pages and scrapes; each counted once.", "result")
	descQueueJobs     = desc("api_queue_jobs", "The API's queue by state, from its last GET /queue-status answer.", "state")
	descQueueBacklog  = desc("api_queue_backlog_jobs", "The API's total_backlog, from its last GET /queue-status answer.")
	descQueueAge      = desc("api_queue_oldest_age_seconds", "The API's oldest_age_seconds, from its last GET /queue-status answer.")
	descQueueSuccess  = desc("api_queue_last_success_timestamp_seconds", "When the API last answered GET /queue-status (Unix time).")
	descDesired       = desc("fleet_desired_workers", "Workers the backlog needs: ceil((API queued + retryable at its last answer - jobs leased since + jobs in flight) x distributions per job / slots per worker), at most dragonfly_fleet_max_workers; the API's queue counts 0 while leasing is paused (outbox full or failing, draining).")
	descDistsPerJob   = desc("fleet_distributions_per_job", "Average distributions per job used by dragonfly_fleet_desired_workers: those the last finished jobs queued as tasks (a job failed when admitted, over DRAGONFLY_MAX_DISTRIBUTIONS, counts 0).")
	descMaxWorkers    = desc("fleet_max_workers", "Cap of dragonfly_fleet_desired_workers.")
	descRefusals      = desc("refusals_total", "What the coordinator refused or dropped at its door, by reason: stream (no or a wrong fleet token, or a token sent in the clear), pending_evicted and pending_expired (connections without an authenticated stream closed), conns_over_cap (DRAGONFLY_MAX_WORKERS), sessions_over_identity_cap (DRAGONFLY_MAX_SESSIONS_PER_IDENTITY), results_repeated (dropped), results_rules_unknown (refused, task dispatched again).", "reason")
	collectorDescList = []*prometheus.Desc{descWorkers, descSlots, descSlotsBusy, descInFlight, descBacklog, descBacklogAge,
		descRunning, descDispatched, descRequeued, descCancelled, descLate, descSuperseded, descOutbox, descSpotActive, descQuarantined,
		descRules, descRuleMatches, descQueuePolls, descQueueJobs, descQueueBacklog, descQueueAge, descQueueSuccess, descDesired,
		descDistsPerJob, descMaxWorkers, descRefusals}
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range collectorDescList {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	view := m.queueView(context.Background(), c.src)
	snap := c.src.Snapshot()
	now := m.cfg.Now()
	m.recordQueue(now, view)
	m.rules.setCurrent(snap.RulesHash)
	d := m.derive(now, snap)
	ds := snap.Dispatch
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descWorkers, float64(len(d.workers)))
	gauge(descSlots, float64(ds.SlotsTotal))
	gauge(descSlotsBusy, float64(d.busy))
	gauge(descInFlight, float64(ds.JobsInFlight))
	gauge(descBacklog, float64(ds.TasksWaiting))
	gauge(descBacklogAge, d.oldestWaiting.Seconds())
	gauge(descRunning, float64(ds.TasksRunning))
	counter(descDispatched, ds.Counters.TasksAssigned)
	counter(descRequeued, ds.Counters.TasksRequeued)
	counter(descCancelled, ds.Counters.TasksCancelled)
	counter(descLate, ds.Counters.ResultsLate)
	counter(descSuperseded, ds.Counters.JobsSuperseded)
	gauge(descOutbox, float64(snap.Outbox.Reports))
	gauge(descSpotActive, boolValue(ds.SpotChecks.Active))
	gauge(descQuarantined, float64(len(ds.Quarantined)))
	if snap.RulesHash != "" {
		gauge(descRules, 1, snap.RulesHash)
		for _, r := range m.rules.all(snap.RulesHash) {
			counter(descRuleMatches, r.Matches, r.Rule)
		}
	}
	gauge(descDesired, float64(d.desired))
	gauge(descDistsPerJob, d.distsPerJob)
	gauge(descMaxWorkers, float64(m.cfg.MaxWorkers))
	r := snap.Refusals
	for _, x := range []struct {
		reason string
		n      int64
	}{{"stream", r.Streams}, {"pending_evicted", r.PendingEvicted}, {"pending_expired", r.PendingExpired}, {"conns_over_cap", r.ConnsOverCap},
		{"sessions_over_identity_cap", r.SessionsOverIdentityCap}, {"results_repeated", r.ResultsRepeated}, {"results_rules_unknown", r.ResultsRulesUnknown}} {
		counter(descRefusals, x.n, x.reason)
	}

	m.mu.Lock()
	q, ok, failed := m.queue, m.queueOK, m.queueFailed
	m.mu.Unlock()
	counter(descQueuePolls, ok, "ok")
	counter(descQueuePolls, failed, "error")
	if q == nil {
		return
	}
	for _, s := range []struct {
		state string
		n     int64
	}{{"queued", q.Queued}, {"in_progress", q.InProgress}, {"retryable", q.Retryable}, {"exhausted", q.Exhausted}, {"stranded", q.Stranded}} {
		gauge(descQueueJobs, float64(s.n), s.state)
	}
	gauge(descQueueBacklog, float64(q.TotalBacklog))
	if q.OldestAgeSeconds != nil {
		gauge(descQueueAge, *q.OldestAgeSeconds)
	}
	gauge(descQueueSuccess, float64(q.Fetched.UnixNano())/1e9)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
