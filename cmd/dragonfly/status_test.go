package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/devapi"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/score"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fixedSource is a coordinator's state without a coordinator.
type fixedSource struct{ snap coordinator.Snapshot }

func (s fixedSource) Snapshot() coordinator.Snapshot { return s.snap }
func (s fixedSource) QueueStatus(context.Context, time.Duration) coordinator.QueueView {
	return coordinator.QueueView{Err: errors.New("GET /queue-status: 404 Not Found")}
}

// TestStatusCommand runs `dragonfly status` against a coordinator's HTTP
// surface (a Monitor that saw a job finish) behind a status token.
func TestStatusCommand(t *testing.T) {
	m := newCoordinatorMetrics(&coordinatorFlags{autoscaleMax: 10, autoscaleSlots: 2})
	now := time.Now()
	m.JobFinished(dispatch.Outcome{
		Job:          dispatch.Job{Name: "evilpkg", Version: "0.1", Distributions: []string{"https://files.example/evilpkg-0.1.tar.gz"}, LeasedAt: now.Add(-time.Second)},
		Package:      score.Package{Score: 10, RulesMatched: []string{"evil_rule"}, TopFile: "evilpkg-0.1/setup.py"},
		InspectorURL: "https://inspector.pypi.io/project/evilpkg/0.1/evilpkg-0.1.tar.gz/evilpkg-0.1/setup.py", Finished: now,
		Identities: []string{"cert:CN=w1"},
	})
	m.Reported(outbox.Report{Name: "evilpkg", Version: "0.1", Success: &outbox.Success{Score: 10}}, nil, time.Millisecond)
	srv := httptest.NewServer(m.handler(fixedSource{}, func() bool { return true }, "s3cret-status"))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	code, out, errOut := runCLI(t, nil, "status", "--coordinator", addr, "--token", "s3cret-status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"RECENT RESULTS (1)", "evilpkg", "evil_rule", "accepted", "cert:CN=w1", "WORKERS (0)", "off: DRAGONFLY_VERIFY_RATE is 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runCLI(t, map[string]string{"DRAGONFLY_STATUS_TOKEN": "s3cret-status"}, "status", "--format", "json", "--coordinator", srv.URL+"/status")
	if code != 0 {
		t.Fatalf("--format json exit %d: %s", code, errOut)
	}
	var doc status.Document
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--format json output is not JSON: %v\n%s", err, out)
	}
	if len(doc.Results) != 1 || doc.Results[0].Name != "evilpkg" || doc.Fleet.ReportsAccepted != 1 ||
		doc.Results[0].InspectorURL != "https://inspector.pypi.io/project/evilpkg/0.1/evilpkg-0.1.tar.gz/evilpkg-0.1/setup.py" {
		t.Errorf("--format json document = %+v", doc)
	}
	if code, out2, _ := runCLI(t, map[string]string{"DRAGONFLY_STATUS_TOKEN": "s3cret-status"}, "status", "--json", "--coordinator", addr); code != 0 || !json.Valid([]byte(out2)) {
		t.Errorf("--json: exit %d, valid JSON %v", code, json.Valid([]byte(out2)))
	}

	// Without the token, or with a wrong one: refused, saying why, exit 1.
	code, _, errOut = runCLI(t, nil, "status", "--coordinator", addr)
	if code != 1 || !strings.Contains(errOut, "401 Unauthorized") || !strings.Contains(errOut, "DRAGONFLY_STATUS_TOKEN") {
		t.Errorf("without the token: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "status", "--coordinator", addr, "--token", "wrong")
	if code != 1 || !strings.Contains(errOut, "refused the status token") || strings.Contains(errOut, "wrong") {
		t.Errorf("with a wrong token: exit %d, %q", code, errOut)
	}

	// Not a coordinator: a clear error, exit 1.
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	code, _, errOut = runCLI(t, nil, "status", "--coordinator", other.URL)
	if code != 1 || !strings.Contains(errOut, "404 Not Found") {
		t.Errorf("against a 404: exit %d, %q", code, errOut)
	}
	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"--coordinator", "no-port"}, "want host:port or a URL"},
		{[]string{"--format", "yaml"}, `--format="yaml": not one of table, json`},
		{[]string{"--format", "table", "--json"}, "--json and --format table disagree"},
		{[]string{"--watch", "--interval", "100ms"}, "at least 1s"},
	} {
		code, _, errOut = runCLI(t, nil, append([]string{"status"}, tt.args...)...)
		if code != 2 || !strings.Contains(errOut, tt.err) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tt.args, code, errOut, tt.err)
		}
	}
}

// TestStatusWatch: --watch redraws every interval (the test's timer fires at
// once, three times) and a failed fetch is shown without ending the watch.
func TestStatusWatch(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 2 {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(status.Document{Version: fmt.Sprintf("frame-%d", n), Generated: time.Now()})
	}))
	defer srv.Close()

	for _, tt := range []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"table", func(t *testing.T, out string) {
			if n := strings.Count(out, "every 7.0s · Ctrl-C to stop"); n != 2 {
				t.Errorf("%d frames drawn, want 2 (and a failure between):\n%s", n, out)
			}
			i1, i3 := strings.Index(out, "Coordinator frame-1"), strings.Index(out, "Coordinator frame-3")
			fail := strings.Index(out, "503 Service Unavailable (trying again in 7.0s)")
			if i1 < 0 || fail < i1 || i3 < fail || strings.Contains(out, "\x1b[") {
				t.Errorf("frames out of order or a screen clear off a terminal (frame 1 at %d, failure at %d, frame 3 at %d):\n%s", i1, fail, i3, out)
			}
		}},
		{"json", func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !strings.Contains(lines[0], `"version":"frame-`) || !strings.Contains(lines[1], "503") || !json.Valid([]byte(lines[2])) {
				t.Errorf("json watch: want a document, the failure, a document, one per line:\n%s", out)
			}
		}},
	} {
		t.Run(tt.format, func(t *testing.T) {
			mu.Lock()
			calls = 0
			mu.Unlock()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			waits := 0
			after := func(d time.Duration) <-chan time.Time {
				if d != 7*time.Second {
					t.Errorf("waits %v, want the interval 7s", d)
				}
				waits++
				if waits == 3 {
					cancel() // the third draw was the last
					return nil
				}
				c := make(chan time.Time, 1)
				c <- time.Time{}
				return c
			}
			var o, e bytes.Buffer
			env := &cli.Env{Stdout: &o, Stderr: &e, Getenv: clitest.Env(nil), Dir: t.TempDir()}
			if err := statusCommand(after).Run(ctx, env, []string{"--coordinator", srv.URL, "--watch", "--interval", "7s", "--format", tt.format}); err != nil {
				t.Fatalf("watch: %v (stderr %s)", err, e.String())
			}
			tt.check(t, o.String())
		})
	}
}

// TestCoordinatorHTTP builds the monitor, API client and coordinator as
// dragonfly coordinator does (newCoordinator, no attach step) against the
// development API, and checks its HTTP surface: the API client's hooks,
// the on-demand queue status, health, and the status token.
func TestCoordinatorHTTP(t *testing.T) {
	files, err := devapi.DemoFiles()
	if err != nil {
		t.Fatal(err)
	}
	dev, err := devapi.New(devapi.Config{Files: files, Rules: demo.Rules()})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	api := httptest.NewServer(dev.Handler())
	defer api.Close()

	var cf coordinatorFlags
	s := program.Settings("dragonfly coordinator", "")
	cf.register(s)
	if err := s.Parse([]string{"--base-url", api.URL, "--status-token", "tok"}, clitest.Env(nil), ""); err != nil {
		t.Fatal(err)
	}
	m := newCoordinatorMetrics(&cf)
	c, ob, err := cf.newCoordinator(slog.New(slog.DiscardHandler), m)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	srv, err := coordinator.NewServer(c, coordinator.ServerConfig{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(m.handler(c, srv.Ready, cf.statusToken))
	defer hs.Close()

	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/status", "/status.json", "/"} {
		if code, _ := get(path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token = %d, want 401", path, code)
		}
		if code, _ := get(path, "nope"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token = %d, want 401", path, code)
		}
	}
	if code, body := get("/healthz", ""); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz", ""); code != 503 || !strings.Contains(body, "not serving") {
		t.Errorf("/readyz before the gRPC server serves = %d %q", code, body)
	}

	// A page asks the API for its queue status on demand.
	code, body := get("/status.json", "tok")
	if code != 200 {
		t.Fatalf("/status.json with the token = %d", code)
	}
	var doc status.Document
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.API.Queue == nil || doc.API.Queue.TotalBacklog != int64(dev.Stats().Queue.TotalBacklog) || doc.API.Queue.TotalBacklog == 0 {
		t.Errorf("queue status = %+v, devapi %+v", doc.API.Queue, dev.Stats().Queue)
	}
	if code, _ := get("/status", "tok"); code != 200 {
		t.Errorf("/status with the token = %d", code)
	}
	code, metricsBody := get("/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics without a token = %d, want 200", code)
	}
	for _, want := range []string{
		`dragonfly_api_requests_total{endpoint="GET /queue-status",status="200"} 1`,
		`dragonfly_api_queue_jobs{state="queued"} ` + fmt.Sprint(dev.Stats().Queue.Queued),
		`dragonfly_api_queue_polls_total{result="ok"} 1`,
		`dragonfly_build_info{goversion="`,
	} {
		if !strings.Contains(metricsBody, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metricsBody, "tok") && strings.Contains(metricsBody, `"tok"`) {
		t.Error("/metrics shows the status token")
	}
}

// TestMetricsPromtool lints both registries as the commands serve them.
// promtool comes with make setup-test: without it the test fails.
func TestMetricsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found in PATH: run make setup-test (Debian package prometheus)")
	}
	src := fixedSource{snap: coordinator.Snapshot{RulesHash: "abc"}}
	cm := newCoordinatorMetrics(&coordinatorFlags{autoscaleMax: 10, autoscaleSlots: 2})
	cm.SessionStarted(coordinator.SessionInfo{SessionID: "s1-w", WorkerID: "w"})
	cm.Leased(3, nil)
	cm.JobDropped(dispatch.Job{Name: "a", Version: "1"})
	cm.JobFinished(dispatch.Outcome{Job: dispatch.Job{Name: "b", Version: "1", RulesHash: "abc"}, Package: score.Package{RulesMatched: []string{"r1"}}})
	cm.APIObserver().Call("POST /jobs", 200, time.Millisecond)
	cm.Reported(outbox.Report{Name: "a", Version: "1", Reason: "x"}, errors.New("PUT /package: 502 Bad Gateway"), time.Millisecond)
	wm := newWorkerMetrics(4)
	wm.Downloaded(100, time.Millisecond, nil)
	wm.FileScanned(100, time.Microsecond)
	wm.TaskDone(&fleetv1.TaskResult{Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT}},
		Stats: &fleetv1.TaskStats{WallTime: durationpb.New(time.Second)}}, "scan_timeout")
	wm.RulesCompiled(time.Second, nil)
	// dragonfly local serves both on one /metrics.
	local := newCoordinatorMetrics(&coordinatorFlags{autoscaleMax: 10, autoscaleSlots: 2})
	lw := local.withWorker(2)
	lw.FileScanned(10, time.Millisecond)
	localSrv := httptest.NewServer(local.handler(src, nil, ""))
	defer localSrv.Close()
	localBody := testkit.Get(t, localSrv.URL+"/metrics")
	for _, want := range []string{"dragonfly_workers_connected ", "dragonfly_worker_scanned_files_total 1", "dragonfly_build_info{", "dragonfly_worker_build_info{goversion=", "go_goroutines "} {
		if !strings.Contains(localBody, want) {
			t.Errorf("local /metrics lacks %q", want)
		}
	}
	if body := testkit.Get(t, localSrv.URL+"/status.json"); !json.Valid([]byte(body)) {
		t.Errorf("local /status.json is not JSON")
	}
	for name, h := range map[string]http.Handler{"coordinator": cm.handler(src, nil, ""), "worker": wm.Handler(), "local": local.handler(src, nil, "")} {
		srv := httptest.NewServer(h)
		body := testkit.Get(t, srv.URL+"/metrics")
		srv.Close()
		if name == "coordinator" && !strings.Contains(body, `dragonfly_rule_matches_total{rule="r1"} 1`) {
			t.Errorf("coordinator /metrics lacks the rule matches")
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil || strings.TrimSpace(out.String()) != "" {
			t.Errorf("%s: promtool check metrics: %v\n%s", name, err, out.String())
		}
	}
}
