// Package metrics exports a worker's events as Prometheus metrics and serves
// them, with a liveness endpoint (/healthz) and a readiness endpoint (/readyz:
// connected with rules ready), on the worker's metrics listener.
//
// A Recorder implements worker.Observer (the worker package's interface; it
// is not imported here, so this package builds without libyara). Every metric
// is in its own registry, namespace "dragonfly_worker_":
//
//	dragonfly_worker_build_info{version,revision,goversion}  1
//	dragonfly_worker_scanner_threads                        scanner threads (gauge)
//	dragonfly_worker_tasks_total{outcome}                   distributions finished: success, or the failure kind
//	                                                        (download, host, limit, archive, scan, unspecified)
//	dragonfly_worker_task_duration_seconds                  wall time of one task (one distribution of a package)
//	dragonfly_worker_task_scan_duration_seconds             YARA time of one task (all files of one distribution)
//	dragonfly_worker_file_scan_duration_seconds             YARA time of one file
//	dragonfly_worker_scanned_files_total                    files scanned
//	dragonfly_worker_scanned_bytes_total                    bytes of the files scanned (expanded)
//	dragonfly_worker_skipped_files_total                    files no rule's filetype admits: read and checked, not scanned
//	dragonfly_worker_skipped_bytes_total                    their bytes
//	dragonfly_worker_match_cache_hits_total                 files whose matches came from the match cache (or a scan
//	                                                        of the same bytes in flight): not scanned again
//	dragonfly_worker_match_cache_hit_bytes_total            their bytes (not rescanned)
//	dragonfly_worker_rule_subsets_compiled_total{result}    rule subsets compiled: ok, error (fell back to the whole set)
//	dragonfly_worker_downloads_total{result}                downloads: ok, error
//	dragonfly_worker_download_duration_seconds              time of one distribution download, retries included
//	dragonfly_worker_downloaded_bytes_total                 bytes downloaded
//	dragonfly_worker_limit_violations_total{limit}          tasks failed by a limit (download_size, expanded_size,
//	                                                        file_size, archive_entries, distributions, scan_timeout,
//	                                                        match_memory, time, message_size, xz_dictionary,
//	                                                        string_matches)
//	dragonfly_worker_rules_compilations_total{result}       rule set compilations: ok, error
//	dragonfly_worker_rules_compile_duration_seconds         time of one compilation
//	dragonfly_worker_connected                              1 while a session with a coordinator is open
//	dragonfly_worker_ready                                  1 while connected with rules ready (what /readyz says)
//
// Labels with a known set of values are initialised at zero, so every series
// exists from the first scrape.
package metrics

import (
	"cmp"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a Recorder.
type Config struct {
	// Version is exported as the version label of dragonfly_worker_build_info.
	// Default "unknown".
	Version string
	// Revision is the VCS revision of the build (the revision label).
	// Default "unknown".
	Revision string
	// GoVersion is the Go release that built it (the goversion label).
	// Default runtime.Version().
	GoVersion string
	// Threads is the worker's scanner threads, exported as
	// dragonfly_worker_scanner_threads. Default 0 (not known).
	Threads int
	// Runtime adds the Go runtime and process collectors (go_*, process_*) to
	// the registry. Default false.
	Runtime bool
}

// Histogram buckets, in seconds.
var (
	taskBuckets     = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120}
	fileBuckets     = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10}
	downloadBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90}
	compileBuckets  = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// limitKinds are the limits a task can break (limit.Kind values).
var limitKinds = []limit.Kind{limit.Download, limit.Expanded, limit.File, limit.Entries, limit.Distributions, limit.ScanTimeout, limit.MatchMemory, limit.TaskTime, limit.MessageSize, limit.XzDictionary, limit.StringMatches}

// Recorder records a worker's events. It is safe for concurrent use.
type Recorder struct {
	reg *prometheus.Registry

	tasks         *prometheus.CounterVec
	taskDuration  prometheus.Histogram
	taskScan      prometheus.Histogram
	fileDuration  prometheus.Histogram
	files         prometheus.Counter
	bytes         prometheus.Counter
	skipped       prometheus.Counter
	skippedBytes  prometheus.Counter
	cacheHits     prometheus.Counter
	cacheBytes    prometheus.Counter
	subsets       *prometheus.CounterVec
	downloads     *prometheus.CounterVec
	downloadDur   prometheus.Histogram
	downloadBytes prometheus.Counter
	limits        *prometheus.CounterVec
	compiles      *prometheus.CounterVec
	compileDur    prometheus.Histogram
	connected     prometheus.Gauge
	readyGauge    prometheus.Gauge
	ready         atomic.Bool
}

// New returns a Recorder with its own registry.
func New(cfg Config) *Recorder {
	cfg.Version = cmp.Or(cfg.Version, "unknown")
	cfg.Revision = cmp.Or(cfg.Revision, "unknown")
	cfg.GoVersion = cmp.Or(cfg.GoVersion, runtime.Version())
	reg := prometheus.NewRegistry()
	m := maker{promauto.With(reg)}
	r := &Recorder{
		reg:           reg,
		tasks:         m.counterVec("tasks_total", "Distributions (tasks) finished, by outcome: success or the failure kind.", "outcome"),
		taskDuration:  m.histogram("task_duration_seconds", "Wall time of one task (one distribution of a package): download, unpack and scan.", taskBuckets),
		taskScan:      m.histogram("task_scan_duration_seconds", "YARA time of one task: all files of one distribution.", taskBuckets),
		fileDuration:  m.histogram("file_scan_duration_seconds", "YARA time of one file.", fileBuckets),
		files:         m.counter("scanned_files_total", "Files scanned."),
		bytes:         m.counter("scanned_bytes_total", "Bytes of the files scanned (expanded from the archives)."),
		skipped:       m.counter("skipped_files_total", "Files no rule's filetype admits: read and checked, not scanned."),
		skippedBytes:  m.counter("skipped_bytes_total", "Bytes of the files no rule's filetype admits."),
		cacheHits:     m.counter("match_cache_hits_total", "Files whose matches came from the match cache or a scan of the same bytes in flight: not scanned again."),
		cacheBytes:    m.counter("match_cache_hit_bytes_total", "Bytes of the files whose matches came from the match cache: bytes not rescanned."),
		subsets:       m.counterVec("rule_subsets_compiled_total", "Rule subsets compiled for filetype pruning, by result (ok, error: the whole set is used instead).", "result"),
		downloads:     m.counterVec("downloads_total", "Distribution downloads, by result (ok, error).", "result"),
		downloadDur:   m.histogram("download_duration_seconds", "Time of one distribution download, retries included.", downloadBuckets),
		downloadBytes: m.counter("downloaded_bytes_total", "Bytes downloaded."),
		limits:        m.counterVec("limit_violations_total", "Tasks failed because they broke a limit, by limit.", "limit"),
		compiles:      m.counterVec("rules_compilations_total", "Rule set compilations, by result (ok, error).", "result"),
		compileDur:    m.histogram("rules_compile_duration_seconds", "Time of one rule set compilation.", compileBuckets),
		connected:     m.gauge("connected", "1 while a session with a coordinator is open.", nil),
		readyGauge:    m.gauge("ready", "1 while connected to a coordinator with rules ready to scan (what /readyz answers).", nil),
	}
	m.gauge("build_info", "Always 1; the labels are the worker's build: version, VCS revision, Go release.",
		prometheus.Labels{"version": cfg.Version, "revision": cfg.Revision, "goversion": cfg.GoVersion}).Set(1)
	m.gauge("scanner_threads", "Scanner threads of this worker (tasks scanned at once).", nil).Set(float64(cfg.Threads))
	if cfg.Runtime {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	r.tasks.WithLabelValues("success")
	for _, v := range fleetv1.FailureKind_value {
		r.tasks.WithLabelValues(kindLabel(fleetv1.FailureKind(v)))
	}
	for _, res := range []string{"ok", "error"} {
		r.downloads.WithLabelValues(res)
		r.compiles.WithLabelValues(res)
		r.subsets.WithLabelValues(res)
	}
	for _, k := range limitKinds {
		r.limits.WithLabelValues(string(k))
	}
	return r
}

// maker makes the worker's metrics, each named dragonfly_worker_<name> and
// registered in the Recorder's registry.
type maker struct{ f promauto.Factory }

const namespace, subsystem = "dragonfly", "worker"

func opts(name, help string, labels prometheus.Labels) prometheus.Opts {
	return prometheus.Opts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, ConstLabels: labels}
}

func (m maker) counter(name, help string) prometheus.Counter {
	return m.f.NewCounter(prometheus.CounterOpts(opts(name, help, nil)))
}

func (m maker) counterVec(name, help, label string) *prometheus.CounterVec {
	return m.f.NewCounterVec(prometheus.CounterOpts(opts(name, help, nil)), []string{label})
}

func (m maker) gauge(name, help string, labels prometheus.Labels) prometheus.Gauge {
	return m.f.NewGauge(prometheus.GaugeOpts(opts(name, help, labels)))
}

func (m maker) histogram(name, help string, buckets []float64) prometheus.Histogram {
	return m.f.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets})
}

// kindLabel turns FAILURE_KIND_DOWNLOAD into "download".
func kindLabel(k fleetv1.FailureKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "FAILURE_KIND_"))
}

func resultLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Registry is the registry holding the worker's metrics.
func (r *Recorder) Registry() *prometheus.Registry { return r.reg }

// Downloaded records a distribution download (worker.Observer).
func (r *Recorder) Downloaded(bytes int64, took time.Duration, err error) {
	r.downloads.WithLabelValues(resultLabel(err)).Inc()
	r.downloadDur.Observe(took.Seconds())
	if bytes > 0 {
		r.downloadBytes.Add(float64(bytes))
	}
}

// FileScanned records one file's scan (worker.Observer).
func (r *Recorder) FileScanned(size int, took time.Duration) {
	r.files.Inc()
	if size > 0 {
		r.bytes.Add(float64(size))
	}
	r.fileDuration.Observe(took.Seconds())
}

// FileSkipped records a file no rule's filetype admits (scan.Config.OnSkip).
func (r *Recorder) FileSkipped(size int) {
	r.skipped.Inc()
	if size > 0 {
		r.skippedBytes.Add(float64(size))
	}
}

// MatchCacheHit records a file whose matches came from the match cache
// (scan.Config.OnCacheHit).
func (r *Recorder) MatchCacheHit(size int) {
	r.cacheHits.Inc()
	if size > 0 {
		r.cacheBytes.Add(float64(size))
	}
}

// SubsetCompiled records a rule subset compilation (scan.Config.OnSubset).
func (r *Recorder) SubsetCompiled(_ time.Duration, err error) {
	r.subsets.WithLabelValues(resultLabel(err)).Inc()
}

// TaskDone records a finished task; lim names the limit a failure broke, ""
// otherwise (worker.Observer).
func (r *Recorder) TaskDone(res *fleetv1.TaskResult, lim string) {
	outcome := "success"
	if f := res.GetFailure(); f != nil {
		outcome = kindLabel(f.GetKind())
	}
	r.tasks.WithLabelValues(outcome).Inc()
	if lim != "" {
		r.limits.WithLabelValues(lim).Inc()
	}
	st := res.GetStats()
	if st.GetWallTime() != nil {
		r.taskDuration.Observe(st.GetWallTime().AsDuration().Seconds())
	}
	if st.GetScanTime() != nil {
		r.taskScan.Observe(st.GetScanTime().AsDuration().Seconds())
	}
}

// RulesCompiled records a rule set compilation (worker.Observer).
func (r *Recorder) RulesCompiled(took time.Duration, err error) {
	r.compiles.WithLabelValues(resultLabel(err)).Inc()
	r.compileDur.Observe(took.Seconds())
}

// Connection records the session state (worker.Observer).
func (r *Recorder) Connection(connected, rulesReady bool) {
	r.connected.Set(boolGauge(connected))
	ready := connected && rulesReady
	r.readyGauge.Set(boolGauge(ready))
	r.ready.Store(ready)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Ready reports whether the worker is connected with rules ready.
func (r *Recorder) Ready() bool { return r.ready.Load() }

// Handler serves /metrics (Prometheus text format), /healthz (200 "ok" for
// as long as the worker process serves it: liveness; a coordinator restart
// must not get workers killed) and /readyz (200 only while connected to a
// coordinator with rules ready; 503 otherwise: readiness).
func (r *Recorder) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !r.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: not connected to a coordinator with rules ready\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}
