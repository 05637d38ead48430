package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"google.golang.org/protobuf/types/known/durationpb"
)

func success(wall, scan time.Duration) *fleetv1.TaskResult {
	return &fleetv1.TaskResult{
		TaskId:  1,
		Outcome: &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{Score: 5}},
		Stats:   &fleetv1.TaskStats{WallTime: durationpb.New(wall), ScanTime: durationpb.New(scan)},
	}
}

func failure(kind fleetv1.FailureKind, lim string) *fleetv1.TaskResult {
	return &fleetv1.TaskResult{
		TaskId:  2,
		Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{Reason: "x", Kind: kind, Limit: lim}},
		Stats:   &fleetv1.TaskStats{WallTime: durationpb.New(time.Second)},
	}
}

// activity drives every event once or more.
func activity(r *Recorder) {
	r.Downloaded(1000, 200*time.Millisecond, nil)
	r.Downloaded(0, 3*time.Second, errors.New("http 503"))
	r.FileScanned(400, 2*time.Millisecond)
	r.FileScanned(600, 8*time.Millisecond)
	r.TaskDone(success(1500*time.Millisecond, 10*time.Millisecond), "")
	r.TaskDone(failure(fleetv1.FailureKind_FAILURE_KIND_LIMIT, "file_size"), "file_size")
	r.TaskDone(failure(fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, ""), "")
	r.RulesCompiled(300*time.Millisecond, nil)
	r.RulesCompiled(10*time.Millisecond, errors.New("syntax error"))
}

func TestRecorderCounts(t *testing.T) {
	r := New(Config{Version: "1.2.3", Revision: "0123abcd", GoVersion: "go1.99", Threads: 4})
	activity(r)
	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"downloads ok", testutil.ToFloat64(r.downloads.WithLabelValues("ok")), 1},
		{"downloads error", testutil.ToFloat64(r.downloads.WithLabelValues("error")), 1},
		{"downloaded bytes", testutil.ToFloat64(r.downloadBytes), 1000},
		{"files", testutil.ToFloat64(r.files), 2},
		{"bytes", testutil.ToFloat64(r.bytes), 1000},
		{"tasks success", testutil.ToFloat64(r.tasks.WithLabelValues("success")), 1},
		{"tasks limit", testutil.ToFloat64(r.tasks.WithLabelValues("limit")), 1},
		{"tasks download", testutil.ToFloat64(r.tasks.WithLabelValues("download")), 1},
		{"tasks scan", testutil.ToFloat64(r.tasks.WithLabelValues("scan")), 0},
		{"limit file_size", testutil.ToFloat64(r.limits.WithLabelValues("file_size")), 1},
		{"limit scan_timeout", testutil.ToFloat64(r.limits.WithLabelValues("scan_timeout")), 0},
		{"compiles ok", testutil.ToFloat64(r.compiles.WithLabelValues("ok")), 1},
		{"compiles error", testutil.ToFloat64(r.compiles.WithLabelValues("error")), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Histograms: every bucket, sum and count.
	want := histogramText("task_duration_seconds", "Wall time of one task (one distribution of a package): download, unpack and scan.",
		taskLE, []int{0, 0, 0, 0, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3}, "3.5") +
		histogramText("task_scan_duration_seconds", "YARA time of one task: all files of one distribution.",
			taskLE, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, "0.01") + `
# HELP dragonfly_worker_build_info Always 1; the labels are the worker's build: version, VCS revision, Go release.
# TYPE dragonfly_worker_build_info gauge
dragonfly_worker_build_info{goversion="go1.99",revision="0123abcd",version="1.2.3"} 1
# HELP dragonfly_worker_scanner_threads Scanner threads of this worker (tasks scanned at once).
# TYPE dragonfly_worker_scanner_threads gauge
dragonfly_worker_scanner_threads 4
`
	if err := testutil.GatherAndCompare(r.Registry(), strings.NewReader(want), "dragonfly_worker_task_duration_seconds",
		"dragonfly_worker_task_scan_duration_seconds", "dragonfly_worker_build_info", "dragonfly_worker_scanner_threads"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(r.fileDuration); n != 1 {
		t.Errorf("file histogram series = %d, want 1", n)
	}
}

// taskLE are the upper bounds of the task histograms' buckets.
var taskLE = []string{"0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "20", "30", "60", "90", "120", "+Inf"}

// histogramText is the exposition of the histogram dragonfly_worker_<name>:
// counts[i] observations at or below le[i] (the last is +Inf, the count),
// and their sum.
func histogramText(name, help string, le []string, counts []int, sum string) string {
	name = "dragonfly_worker_" + name
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for i, c := range counts {
		fmt.Fprintf(&b, "%s_bucket{le=%q} %d\n", name, le[i], c)
	}
	fmt.Fprintf(&b, "%s_sum %s\n%s_count %d\n", name, sum, name, counts[len(counts)-1])
	return b.String()
}

// TestBuildInfoDefaults: without a build's details the labels say so, and
// goversion is the running Go release.
func TestBuildInfoDefaults(t *testing.T) {
	want := `
# HELP dragonfly_worker_build_info Always 1; the labels are the worker's build: version, VCS revision, Go release.
# TYPE dragonfly_worker_build_info gauge
dragonfly_worker_build_info{goversion="` + runtime.Version() + `",revision="unknown",version="unknown"} 1
`
	if err := testutil.GatherAndCompare(New(Config{}).Registry(), strings.NewReader(want), "dragonfly_worker_build_info"); err != nil {
		t.Error(err)
	}
}

func TestSeriesExistBeforeEvents(t *testing.T) {
	r := New(Config{})
	// Every outcome, limit and result label exists at zero.
	if n := testutil.CollectAndCount(r.tasks); n != len(fleetv1.FailureKind_value)+1 {
		t.Errorf("task outcome series = %d, want %d", n, len(fleetv1.FailureKind_value)+1)
	}
	if n := testutil.CollectAndCount(r.limits); n != len(limitKinds) {
		t.Errorf("limit series = %d, want %d", n, len(limitKinds))
	}
	if got := testutil.ToFloat64(r.tasks.WithLabelValues("unspecified")); got != 0 {
		t.Errorf("unspecified = %v", got)
	}
}

func TestHandler(t *testing.T) {
	r := New(Config{Version: "v", Runtime: true})
	activity(r)
	h := r.Handler()

	body, code := get(h, "/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	body, code = get(h, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`dragonfly_worker_tasks_total{outcome="limit"} 1`,
		`dragonfly_worker_limit_violations_total{limit="file_size"} 1`,
		`dragonfly_worker_downloaded_bytes_total 1000`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if _, code := get(h, "/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing = %d, want 404", code)
	}
}

// TestReadiness: /healthz is liveness (200 whatever the session), /readyz
// answers 200 only while connected with rules ready, and the gauges follow.
func TestReadiness(t *testing.T) {
	r := New(Config{Version: "v"})
	h := r.Handler()
	for _, step := range []struct {
		connected, rules bool
		ready            int
		gauge            float64
	}{
		{false, false, http.StatusServiceUnavailable, 0},
		{true, false, http.StatusServiceUnavailable, 0},
		{true, true, http.StatusOK, 1},
		{false, true, http.StatusServiceUnavailable, 0}, // the coordinator went away
	} {
		r.Connection(step.connected, step.rules)
		if _, code := get(h, "/readyz"); code != step.ready {
			t.Errorf("connected=%v rules=%v: /readyz = %d, want %d", step.connected, step.rules, code, step.ready)
		}
		if _, code := get(h, "/healthz"); code != http.StatusOK {
			t.Errorf("connected=%v rules=%v: /healthz = %d, want 200 (liveness)", step.connected, step.rules, code)
		}
		if got := testutil.ToFloat64(r.readyGauge); got != step.gauge {
			t.Errorf("ready gauge = %v, want %v", got, step.gauge)
		}
		if got, want := testutil.ToFloat64(r.connected), boolGauge(step.connected); got != want {
			t.Errorf("connected gauge = %v, want %v", got, want)
		}
	}
}

// get serves GET path from h: the body and the status code.
func get(h http.Handler, path string) (string, int) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Body.String(), rec.Code
}

// TestPromtool lints the exposition as `promtool check metrics` does, with
// its linter (promlint).
func TestPromtool(t *testing.T) {
	r := New(Config{Version: "v", Threads: 2, Runtime: true})
	activity(r)
	body, _ := get(r.Handler(), "/metrics")
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %v", err, problems)
	}
}
