package main

import (
	"context"
	"net/http"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker"
	"github.com/dragonfly-fleet/fleet/worker/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// autoscaleFlags shape dragonfly_fleet_desired_workers, the signal the
// Kubernetes autoscaler (KEDA) scales the worker Deployment on.
type autoscaleFlags struct {
	maxWorkers  int
	workerSlots int
}

func (f *autoscaleFlags) register(s *settings) {
	s.Int(&f.maxWorkers, "autoscale-max-workers", 100, "cap of dragonfly_fleet_desired_workers, the workers the backlog needs", "DRAGONFLY_AUTOSCALE_MAX_WORKERS")
	s.Int(&f.workerSlots, "autoscale-worker-slots", 2, "scanner slots per worker that dragonfly_fleet_desired_workers assumes while no worker is connected", "DRAGONFLY_AUTOSCALE_WORKER_SLOTS")
}

func (f *autoscaleFlags) validate() error {
	if f.maxWorkers <= 0 {
		return usageError("DRAGONFLY_AUTOSCALE_MAX_WORKERS=%d: must be positive", f.maxWorkers)
	}
	if f.workerSlots <= 0 {
		return usageError("DRAGONFLY_AUTOSCALE_WORKER_SLOTS=%d: must be positive", f.workerSlots)
	}
	return nil
}

// coordinatorMetrics is the coordinator's operators' view (package status):
// it observes the coordinator and its API client, serves /metrics, /status
// and /status.json, and polls the API's queue status.
type coordinatorMetrics struct {
	*status.Monitor
	// queue is the API client, set once it exists; nil: no polling.
	queue status.QueueSource
	// worker is the in-process worker's metrics (dragonfly local), served
	// on the same /metrics; nil otherwise.
	worker *metrics.Recorder
}

var _ coordinator.Observer = (*coordinatorMetrics)(nil)

func newCoordinatorMetrics(f autoscaleFlags) *coordinatorMetrics {
	return &coordinatorMetrics{Monitor: status.New(status.Config{
		Version: version.String(), Runtime: true,
		MaxWorkers: f.maxWorkers, SlotsPerWorker: float64(f.workerSlots),
	})}
}

// apiObserver is the API client's Observer (mainframe.Config.Observer).
func (m *coordinatorMetrics) apiObserver() mainframe.Observer { return m.APIObserver() }

// attach starts reading the coordinator's state.
func (m *coordinatorMetrics) attach(c *coordinator.Coordinator) { m.Attach(c) }

// withWorker returns the metrics of a worker running in the same process
// (dragonfly local): they are served on the coordinator's /metrics, without
// a second copy of the Go runtime and process metrics.
func (m *coordinatorMetrics) withWorker(threads int) workerMetrics {
	m.worker = metrics.New(metrics.Config{Version: version.String(), Threads: threads})
	return workerMetrics{m.worker}
}

// handler serves /metrics, /status, /status.json, and / (a redirect to
// /status).
func (m *coordinatorMetrics) handler() http.Handler {
	if m.worker == nil {
		return m.Handler()
	}
	mux := http.NewServeMux()
	mux.Handle("/", m.Handler())
	both := prometheus.Gatherers{m.Registry(), m.worker.Registry()}
	mux.Handle("GET /metrics", promhttp.HandlerFor(both, promhttp.HandlerOpts{}))
	return mux
}

// run polls the API's GET /queue-status every 30 s until ctx ends. Without an
// API client it returns at once.
func (m *coordinatorMetrics) run(ctx context.Context) error {
	if m.queue == nil {
		return nil
	}
	return m.PollQueue(ctx, m.queue)
}

// workerMetrics observes a worker for Prometheus (package worker/metrics).
type workerMetrics struct {
	*metrics.Recorder
}

var _ worker.Observer = workerMetrics{}

func newWorkerMetrics(threads int) workerMetrics {
	return workerMetrics{metrics.New(metrics.Config{Version: version.String(), Threads: threads, Runtime: true})}
}

// handler serves /metrics and /healthz.
func (m workerMetrics) handler() http.Handler { return m.Handler() }
