package main

import (
	"net/http"
	"runtime"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// coordinatorMetrics is the coordinator's operators' view (package status):
// it observes the coordinator and its API client, so it is built before
// both; handler then serves what it saw and what the coordinator's
// snapshots show.
type coordinatorMetrics struct {
	*status.Monitor
	// worker is the in-process worker's metrics (dragonfly local), served
	// on the same /metrics; nil otherwise.
	worker *metrics.Recorder
}

var _ coordinator.Observer = (*coordinatorMetrics)(nil)

func newCoordinatorMetrics(f *coordinatorFlags) *coordinatorMetrics {
	return &coordinatorMetrics{Monitor: status.New(status.Config{
		Version: version.String(), Revision: buildRevision(), GoVersion: runtime.Version(), Runtime: true,
		MaxWorkers: f.autoscaleMax, SlotsPerWorker: float64(f.autoscaleSlots),
	})}
}

// withWorker returns the metrics of a worker running in the same process
// (dragonfly local): they are served on the coordinator's /metrics, without
// a second copy of the Go runtime and process metrics.
func (m *coordinatorMetrics) withWorker(threads int) *metrics.Recorder {
	m.worker = metrics.New(metrics.Config{Version: version.String(), Revision: buildRevision(), GoVersion: runtime.Version(), Threads: threads})
	return m.worker
}

// handler serves the coordinator's HTTP surface for src (see
// status.Monitor.Handler, the in-process worker's metrics with them), the
// status behind statusToken when set (status.Protect).
func (m *coordinatorMetrics) handler(src status.Source, ready func() bool, statusToken string) http.Handler {
	var extra []prometheus.Gatherer
	if m.worker != nil {
		extra = append(extra, m.worker.Registry())
	}
	return status.Protect(statusToken, m.Handler(src, ready, extra...))
}

// newWorkerMetrics observes a worker for Prometheus (package worker/metrics;
// its Handler serves /metrics, /healthz and /readyz).
func newWorkerMetrics(threads int) *metrics.Recorder {
	return metrics.New(metrics.Config{Version: version.String(), Revision: buildRevision(), GoVersion: runtime.Version(), Threads: threads, Runtime: true})
}

// buildRevision is the VCS revision of this binary for build_info:
// "unknown" when the toolchain recorded none, "-dirty" for a modified tree.
func buildRevision() string {
	rev, modified := version.Revision()
	if rev == "" {
		return "unknown"
	}
	if modified {
		rev += "-dirty"
	}
	return rev
}
