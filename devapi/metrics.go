package devapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, on its own registry.
type metrics struct {
	requests *prometheus.CounterVec // by route and status code
	reports  *prometheus.CounterVec // PUT /package by kind and status code
	handler  http.Handler
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dragonfly_devapi_requests_total",
			Help: "API requests answered, by route and HTTP status code.",
		}, []string{"route", "code"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dragonfly_devapi_reports_total",
			Help: "PUT /package requests, by kind (success, failure, invalid) and HTTP status code.",
		}, []string{"kind", "code"}),
	}
	reg.MustRegister(m.requests, m.reports, &stateCollector{s: s})
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	return m
}

var (
	descLeases = prometheus.NewDesc("dragonfly_devapi_leases_total",
		"Jobs handed out by POST /jobs (each re-lease counts).", nil, nil)
	descDeadLettered = prometheus.NewDesc("dragonfly_devapi_dead_lettered_total",
		"Scans failed because their last lease expired.", nil, nil)
	descOutcomes = prometheus.NewDesc("dragonfly_devapi_scans_completed_total",
		"Accepted reports, by outcome (finished, failed).", []string{"outcome"}, nil)
	descQueue = prometheus.NewDesc("dragonfly_devapi_queue_jobs",
		"Scans not yet finished or failed, by state (queued, in_progress, retryable, exhausted).", []string{"state"}, nil)
	descStranded = prometheus.NewDesc("dragonfly_devapi_queue_stranded_jobs",
		"Expired leases nobody collected for a whole lease timeout.", nil, nil)
	descOldest = prometheus.NewDesc("dragonfly_devapi_queue_oldest_age_seconds",
		"Age of the oldest scan not yet finished or failed.", nil, nil)
)

// stateCollector reads the queue state once per scrape.
type stateCollector struct{ s *Server }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeases, descDeadLettered, descOutcomes, descQueue, descStranded, descOldest} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	count := c.s.st.count
	q := c.s.st.queueStatus(c.s.now())
	c.s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descLeases, prometheus.CounterValue, float64(count.leases))
	ch <- prometheus.MustNewConstMetric(descDeadLettered, prometheus.CounterValue, float64(count.deadLettered))
	ch <- prometheus.MustNewConstMetric(descOutcomes, prometheus.CounterValue, float64(count.finished), "finished")
	ch <- prometheus.MustNewConstMetric(descOutcomes, prometheus.CounterValue, float64(count.failed), "failed")
	for state, n := range map[string]int{"queued": q.Queued, "in_progress": q.InProgress, "retryable": q.Retryable, "exhausted": q.Exhausted} {
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(descStranded, prometheus.GaugeValue, float64(q.Stranded))
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, q.OldestAgeSeconds)
}
