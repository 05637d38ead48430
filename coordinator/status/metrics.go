package status

import (
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

// metrics are the Monitor's event metrics plus the state collector.
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
	queuePolls      *prometheus.CounterVec
	dispatchEvents  *prometheus.CounterVec
	outboxFailing   prometheus.Gauge
	outboxVolatile  prometheus.Gauge
	outboxFailures  prometheus.Gauge
}

const ns = "dragonfly"

func newMetrics(m *Monitor, cfg Config) *metrics {
	x := &metrics{
		reg: prometheus.NewRegistry(),
		leaseRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "lease_requests_total",
			Help: "Lease requests (POST /jobs) by result: jobs, empty, error."}, []string{"result"}),
		jobsLeased: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "jobs_leased_total",
			Help: "Jobs leased from the API."}),
		jobsScanned: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jobs_scanned_total",
			Help: "Jobs whose scan finished, by result: success, failure."}, []string{"result"}),
		jobsCompleted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jobs_completed_total",
			Help: "Jobs at their final fate, by outcome: success and failure (report accepted), conflict (the API answered 409 to the report), rejected (another final 4xx), abandoned (not accepted within the report max age), dropped_stale (lease ended before dispatch)."},
			[]string{"outcome"}),
		jobDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "job_duration_seconds",
			Help: "Time from a job's lease to its last result.", Buckets: jobBuckets}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "api_requests_total",
			Help: "HTTP tries against the Dragonfly API, by endpoint and status (none: no response)."}, []string{"endpoint", "status"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "api_request_duration_seconds",
			Help: "Duration of one HTTP try against the Dragonfly API, by endpoint.", Buckets: apiBuckets}, []string{"endpoint"}),
		tokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "api_token_refreshes_total",
			Help: "Auth0 token requests, by result: ok, error."}, []string{"result"}),
		rulesUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rules_updates_total",
			Help: "Rule fetches that changed the rules or failed, by result: ok, error."}, []string{"result"}),
		sessionsStarted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "sessions_started_total",
			Help: "Worker sessions started."}),
		sessionsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sessions_ended_total",
			Help: "Worker sessions ended, by result: clean, error."}, []string{"result"}),
		queuePolls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "api_queue_polls_total",
			Help: "Polls of the API's GET /queue-status, by result: ok, error."}, []string{"result"}),
		dispatchEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "dispatch_events_total",
			Help: "Dispatcher events about slow, lost or lying workers, by kind: backup_dispatched, backup_won, result_dropped, task_lost, lost_failed, verify_picked, verify_agreed, verify_mismatch, verify_inconclusive, verify_decided, verify_skipped, quarantine."},
			[]string{"kind"}),
		outboxFailing: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "outbox_write_failing",
			Help: "1 while the outbox's writes fail (reports kept in memory only; leasing paused)."}),
		outboxVolatile: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "outbox_not_durable_reports",
			Help: "Reports held in memory only: their outbox write failed and is being retried."}),
		outboxFailures: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "outbox_write_failures",
			Help: "Failed outbox write transactions since the coordinator started."}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
		Help: "Always 1; the version label is the coordinator's build.", ConstLabels: prometheus.Labels{"version": cfg.Version}})
	info.Set(1)
	x.reg.MustRegister(info, x.leaseRequests, x.jobsLeased, x.jobsScanned, x.jobsCompleted, x.jobDuration,
		x.apiRequests, x.apiDuration, x.tokenRefreshes, x.rulesUpdates, x.sessionsStarted, x.sessionsEnded,
		x.queuePolls, x.dispatchEvents, x.outboxFailing, x.outboxVolatile, x.outboxFailures, &collector{m: m})
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
		x.queuePolls.WithLabelValues(r)
	}
	for _, r := range []string{"clean", "error"} {
		x.sessionsEnded.WithLabelValues(r)
	}
	for _, e := range knownEndpoints {
		x.apiDuration.WithLabelValues(e)
	}
	return x
}

// collector reads the coordinator's state at scrape time.
type collector struct{ m *Monitor }

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
	descLate          = desc("results_late_total", "Results for tasks no longer assigned to the worker that sent them.")
	descSuperseded    = desc("jobs_superseded_total", "Re-leases merged into a job already in flight.")
	descOutbox        = desc("outbox_reports", "Reports waiting for the API to accept them.")
	descRules         = desc("rules_info", "1 for the rules in use, by hash.", "hash")
	descQueueJobs     = desc("api_queue_jobs", "The API's queue by state, from the last successful GET /queue-status.", "state")
	descQueueBacklog  = desc("api_queue_backlog_jobs", "The API's total_backlog, from the last successful GET /queue-status.")
	descQueueAge      = desc("api_queue_oldest_age_seconds", "The API's oldest_age_seconds, from the last successful GET /queue-status.")
	descQueueSuccess  = desc("api_queue_last_success_timestamp_seconds", "When GET /queue-status last succeeded (Unix time).")
	descDesired       = desc("fleet_desired_workers", "Workers the backlog needs: ceil((API queued + retryable at the last poll - jobs leased since + jobs in flight) x distributions per job / slots per worker), at most dragonfly_fleet_max_workers.")
	descDistsPerJob   = desc("fleet_distributions_per_job", "Average distributions per job used by dragonfly_fleet_desired_workers.")
	descMaxWorkers    = desc("fleet_max_workers", "Cap of dragonfly_fleet_desired_workers.")
	collectorDescList = []*prometheus.Desc{descWorkers, descSlots, descSlotsBusy, descInFlight, descBacklog, descBacklogAge,
		descRunning, descDispatched, descRequeued, descLate, descSuperseded, descOutbox, descRules, descQueueJobs,
		descQueueBacklog, descQueueAge, descQueueSuccess, descDesired, descDistsPerJob, descMaxWorkers}
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range collectorDescList {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	now := m.cfg.Now()
	st := m.state(now)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descWorkers, float64(len(st.workers)))
	gauge(descSlots, float64(st.snap.SlotsTotal))
	gauge(descSlotsBusy, float64(st.busy))
	gauge(descInFlight, float64(st.snap.JobsInFlight))
	gauge(descBacklog, float64(st.snap.TasksWaiting))
	gauge(descBacklogAge, st.oldestWaiting.Seconds())
	gauge(descRunning, float64(st.snap.TasksRunning))
	counter(descDispatched, st.snap.Counters.TasksAssigned)
	counter(descRequeued, st.snap.Counters.TasksRequeued)
	counter(descLate, st.snap.Counters.ResultsLate)
	counter(descSuperseded, st.snap.Counters.JobsSuperseded)
	gauge(descOutbox, float64(st.outbox))
	if st.rulesHash != "" {
		gauge(descRules, 1, st.rulesHash)
	}
	gauge(descDesired, float64(st.desired))
	gauge(descDistsPerJob, st.distsPerJob)
	gauge(descMaxWorkers, float64(m.cfg.MaxWorkers))

	m.mu.Lock()
	q := m.queue
	m.mu.Unlock()
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
