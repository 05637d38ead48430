package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/devapi"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/score"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestStatusURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"localhost:9090", "http://localhost:9090/status.json"},
		{":9090", "http://localhost:9090/status.json"},
		{"10.0.0.7:9090", "http://10.0.0.7:9090/status.json"},
		{"[::1]:9090", "http://[::1]:9090/status.json"},
		{"http://coord:9090", "http://coord:9090/status.json"},
		{"http://coord:9090/", "http://coord:9090/status.json"},
		{"http://coord:9090/status", "http://coord:9090/status.json"},
		{"https://ops.example/fleet/status.json", "https://ops.example/fleet/status.json"},
		{"https://ops.example/fleet/", "https://ops.example/fleet/status.json"},
	}
	for _, tt := range tests {
		got, err := statusURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("statusURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "coord", "ftp://coord/x", "http://"} {
		if got, err := statusURL(bad); err == nil {
			t.Errorf("statusURL(%q) = %q, want an error", bad, got)
		}
	}
}

// sampleDocument is a status with every section filled.
func sampleDocument() status.Document {
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	age := 125.0
	return status.Document{
		Generated: now, Version: "1.4.0", Started: now.Add(-3 * time.Hour), RulesHash: "abcdef0123456789abcdef",
		Fleet: status.Fleet{Workers: 1, SlotsTotal: 4, SlotsBusy: 3, JobsInFlight: 2, TasksWaiting: 1, OldestWaitingSeconds: 2.5,
			TasksRunning: 3, OutboxReports: 1, DesiredWorkers: 3, JobsLeased: 40, JobsSucceeded: 35, JobsFailed: 2, ReportsAccepted: 36, ReportsConflicted: 1},
		Workers: []status.Worker{{SessionID: "s1-w1", WorkerID: "w1", Host: "node-a", Version: "1.4.0", Slots: 4, Busy: 3, Held: 4,
			RulesHashes: []string{"abcdef0123456789abcdef"}, Connected: now.Add(-time.Hour), LastHeartbeat: now.Add(-2 * time.Second), JobsDone: 37, TasksDone: 90}},
		API: status.API{LastLease: now.Add(-time.Second), LastReport: now.Add(-3 * time.Second), WindowSeconds: 900,
			Endpoints: []status.Endpoint{{Endpoint: "POST /jobs", Requests: 50, Errors: 2, LastStatus: 200, LastCall: now.Add(-time.Second)}},
			LastError: &status.Error{Time: now.Add(-5 * time.Minute), Source: "lease", Message: "POST /jobs: 503 Service Unavailable"},
			Queue:     &status.Queue{Fetched: now.Add(-10 * time.Second), Queued: 120, InProgress: 4, Retryable: 3, TotalBacklog: 127, OldestAgeSeconds: &age}},
		Results: []status.Result{{Finished: now.Add(-4 * time.Second), Name: "evilpkg", Version: "0.1", Score: 15,
			Rules: []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7"}, InspectorURL: "https://inspector.pypi.io/project/evilpkg/0.1/x/setup.py",
			Workers: []string{"w1"}, ElapsedSeconds: 3.2, Report: status.ReportAccepted}},
		Failures: []status.Failure{{Time: now.Add(-time.Minute), Kind: status.FailureScan, Name: "huge", Version: "9",
			Reason: "distribution huge-9.whl: expanded size exceeds limit DRAGONFLY_MAX_EXPANDED_SIZE", Report: status.ReportQueued}},
	}
}

func TestPrintStatus(t *testing.T) {
	var out bytes.Buffer
	if err := printStatus(&out, sampleDocument()); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"Coordinator 1.4.0 · rules abcdef012345 · up 3h00m",
		"workers 1 (desired 3) · slots busy 3/4 · jobs in flight 2",
		"tasks waiting 1 (oldest 2.5s)",
		"WORKERS (1)",
		"w1", "node-a", "2.0s ago", "1h00m ago",
		"last lease 1.0s ago · last report 3.0s ago",
		"last error (lease, 5m00s ago): POST /jobs: 503 Service Unavailable",
		"queue: 120 queued · 4 in progress · 3 retryable · 0 exhausted · 0 stranded · backlog 127, oldest 2m05s (fetched 10.0s ago)",
		"REQUESTS (15m00s)",
		"RECENT RESULTS (1)", "evilpkg", "r1,r2,r3,r4,r5,+2", "accepted", "https://inspector.pypi.io/project/evilpkg/0.1/x/setup.py",
		"RECENT FAILURES (1)", "DRAGONFLY_MAX_EXPANDED_SIZE",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// Columns line up: the worker row has as many fields as its header.
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "  WORKER") {
			if n := len(strings.Fields(line)); n != 12 { // LAST HEARTBEAT is two words
				t.Errorf("worker header has %d fields: %q", n, line)
			}
		}
	}

	out.Reset()
	if err := printStatus(&out, status.Document{Generated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rules not loaded", "none connected", "queue: not polled yet", "none yet", "last lease never"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("empty status lacks %q:\n%s", want, out.String())
		}
	}
}

func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	env := &env{stdout: &o, stderr: &e, getenv: envMap(nil), dir: t.TempDir()}
	code = run(t.Context(), env, args)
	return o.String(), e.String(), code
}

// TestStatusCommand runs `dragonfly status` against a coordinator's status
// handler (a Monitor that saw a job finish).
func TestStatusCommand(t *testing.T) {
	m := newCoordinatorMetrics(autoscaleFlags{maxWorkers: 10, workerSlots: 2})
	now := time.Now()
	m.JobFinished(dispatch.Outcome{
		Job:          dispatch.Job{Name: "evilpkg", Version: "0.1", Distributions: []string{"https://files.example/evilpkg-0.1.tar.gz"}, LeasedAt: now.Add(-time.Second)},
		Package:      score.Package{Score: 10, RulesMatched: []string{"evil_rule"}, TopFile: "evilpkg-0.1/setup.py"},
		InspectorURL: "https://inspector.pypi.io/project/evilpkg/0.1/evilpkg-0.1.tar.gz/evilpkg-0.1/setup.py", Finished: now,
	})
	m.Reported(outbox.Report{Name: "evilpkg", Version: "0.1", Success: &outbox.Success{Score: 10}}, nil, time.Millisecond)
	srv := httptest.NewServer(m.handler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	out, errOut, code := runCmd(t, "status", "--coordinator", addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"RECENT RESULTS (1)", "evilpkg", "evil_rule", "accepted", "WORKERS (0)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = runCmd(t, "status", "--json", "--coordinator", srv.URL+"/status")
	if code != 0 {
		t.Fatalf("--json exit %d: %s", code, errOut)
	}
	var doc status.Document
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if len(doc.Results) != 1 || doc.Results[0].Name != "evilpkg" || doc.Fleet.ReportsAccepted != 1 {
		t.Errorf("--json document = %+v", doc)
	}

	// Not a coordinator: a clear error, exit 1.
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	_, errOut, code = runCmd(t, "status", "--coordinator", other.URL)
	if code != 1 || !strings.Contains(errOut, "404 Not Found") {
		t.Errorf("against a 404: exit %d, %q", code, errOut)
	}
	_, errOut, code = runCmd(t, "status", "--coordinator", "no-port")
	if code != 2 || !strings.Contains(errOut, "want host:port or a URL") {
		t.Errorf("bad address: exit %d, %q", code, errOut)
	}
}

// signalQueue reports every GET /queue-status call.
type signalQueue struct {
	src   status.QueueSource
	calls chan struct{}
}

func (q *signalQueue) QueueStatus(ctx context.Context) (mainframe.QueueStatus, error) {
	select {
	case q.calls <- struct{}{}:
	case <-ctx.Done():
	}
	return q.src.QueueStatus(ctx)
}

// TestCoordinatorMetricsWiring checks the API client hooks and the queue
// poller against the development API.
func TestCoordinatorMetricsWiring(t *testing.T) {
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	var df []devapi.File
	for _, f := range files {
		df = append(df, devapi.File{Name: f.Name, Data: f.Data})
	}
	dev, err := devapi.New(devapi.Config{Files: df, Rules: demo.Rules()})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	hs := httptest.NewServer(dev.Handler())
	defer hs.Close()

	m := &coordinatorMetrics{Monitor: status.New(status.Config{QueuePollInterval: 20 * time.Millisecond, Runtime: true})}
	api, err := mainframe.New(mainframe.Config{BaseURL: hs.URL, Observer: m.apiObserver()})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := api.Lease(t.Context(), 2)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("lease: %d jobs, %v", len(jobs), err)
	}
	sq := &signalQueue{src: api, calls: make(chan struct{})}
	m.queue = sq
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.run(ctx) }()
	<-sq.calls // first poll
	<-sq.calls // second poll: the first one is recorded
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}

	srv := httptest.NewServer(m.handler())
	defer srv.Close()
	body := statusGet(t, srv.URL+"/metrics")
	for _, want := range []string{
		`dragonfly_api_requests_total{endpoint="POST /jobs",status="200"} 1`,
		`dragonfly_api_requests_total{endpoint="GET /queue-status",status="200"}`,
		`dragonfly_api_queue_jobs{state="in_progress"} 2`,
		`dragonfly_api_queue_polls_total{result="ok"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	q := m.Snapshot().API.Queue
	if q == nil || q.InProgress != 2 || q.TotalBacklog != int64(dev.Stats().Queue.TotalBacklog) {
		t.Errorf("queue status = %+v, devapi %+v", q, dev.Stats().Queue)
	}
}

func statusGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return b.String()
}

// TestMetricsPromtool lints both registries as the commands serve them.
func TestMetricsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found in PATH (Debian package prometheus); skipping the lint of the expositions")
	}
	cm := newCoordinatorMetrics(autoscaleFlags{maxWorkers: 10, workerSlots: 2})
	cm.SessionStarted(coordinator.SessionInfo{SessionID: "s1-w", WorkerID: "w"})
	cm.Leased(3, nil)
	cm.JobDropped(dispatch.Job{Name: "a", Version: "1"})
	cm.apiObserver().Call("POST /jobs", 200, time.Millisecond)
	cm.Reported(outbox.Report{Name: "a", Version: "1", Reason: "x"}, errors.New("PUT /package: 502 Bad Gateway"), time.Millisecond)
	wm := newWorkerMetrics(4)
	wm.Downloaded(100, time.Millisecond, nil)
	wm.FileScanned(100, time.Microsecond)
	wm.TaskDone(&fleetv1.TaskResult{Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT}},
		Stats: &fleetv1.TaskStats{WallTime: durationpb.New(time.Second)}}, "scan_timeout")
	wm.RulesCompiled(time.Second, nil)
	// dragonfly local serves both on one /metrics.
	local := newCoordinatorMetrics(autoscaleFlags{maxWorkers: 10, workerSlots: 2})
	lw := local.withWorker(2)
	lw.FileScanned(10, time.Millisecond)
	localSrv := httptest.NewServer(local.handler())
	defer localSrv.Close()
	localBody := statusGet(t, localSrv.URL+"/metrics")
	for _, want := range []string{"dragonfly_workers_connected ", "dragonfly_worker_scanned_files_total 1", "dragonfly_build_info{", "dragonfly_worker_build_info{", "go_goroutines "} {
		if !strings.Contains(localBody, want) {
			t.Errorf("local /metrics lacks %q", want)
		}
	}
	if _, code := runCmdStatus(t, local.handler()); code != http.StatusOK {
		t.Errorf("local /status.json = %d", code)
	}
	for name, h := range map[string]http.Handler{"coordinator": cm.handler(), "worker": wm.handler(), "local": local.handler()} {
		srv := httptest.NewServer(h)
		body := statusGet(t, srv.URL+"/metrics")
		srv.Close()
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil || strings.TrimSpace(out.String()) != "" {
			t.Errorf("%s: promtool check metrics: %v\n%s", name, err, out.String())
		}
	}
}

// runCmdStatus fetches /status.json from h.
func runCmdStatus(t *testing.T, h http.Handler) (string, int) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String(), resp.StatusCode
}
