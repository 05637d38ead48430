package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/score"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestDesiredWorkers(t *testing.T) {
	tests := []struct {
		name       string
		apiWaiting int64
		inFlight   int64
		dpj, spw   float64
		max        int
		want       int
	}{
		{"idle", 0, 0, 3, 2, 100, 0},
		{"in flight only", 0, 4, 3, 2, 100, 6},
		{"backlog and in flight", 10, 2, 2.5, 4, 100, 8}, // 12*2.5/4 = 7.5
		{"rounds up", 1, 0, 1, 4, 100, 1},
		{"capped", 10000, 20, 3, 2, 50, 50},
		{"negative counts ignored", -5, -1, 3, 2, 100, 0},
		{"no distributions", 100, 0, 0, 2, 100, 0},
		{"no slots", 100, 0, 3, 0, 100, 0},
		{"zero max", 100, 0, 3, 2, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DesiredWorkers(tt.apiWaiting, tt.inFlight, tt.dpj, tt.spw, tt.max); got != tt.want {
				t.Errorf("DesiredWorkers(%d, %d, %v, %v, %d) = %d, want %d", tt.apiWaiting, tt.inFlight, tt.dpj, tt.spw, tt.max, got, tt.want)
			}
		})
	}
}

func TestTrouble(t *testing.T) {
	for status, want := range map[int]bool{0: true, 200: false, 302: true, 401: true, 403: true, 404: false, 408: true, 409: false, 422: false, 429: true, 500: true, 503: true} {
		if got := Trouble(status); got != want {
			t.Errorf("Trouble(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestWindow(t *testing.T) {
	c := newClock()
	w := newWindow(15 * time.Minute) // 1-minute slots
	w.add(c.Now(), false)
	w.add(c.Now(), true)
	c.Advance(5 * time.Minute)
	w.add(c.Now(), true)
	if req, errs := w.sum(c.Now()); req != 3 || errs != 2 {
		t.Errorf("sum = %d, %d; want 3, 2", req, errs)
	}
	c.Advance(10*time.Minute + 30*time.Second) // the first slot has left the window
	if req, errs := w.sum(c.Now()); req != 1 || errs != 1 {
		t.Errorf("after 15.5 min: sum = %d, %d; want 1, 1", req, errs)
	}
	c.Advance(time.Hour)
	w.add(c.Now(), false)
	if req, errs := w.sum(c.Now()); req != 1 || errs != 0 {
		t.Errorf("an hour later: sum = %d, %d; want 1, 0", req, errs)
	}
}

func TestRing(t *testing.T) {
	r := newRing[int](3)
	if got := r.list(); len(got) != 0 {
		t.Errorf("empty list = %v", got)
	}
	for i := 1; i <= 5; i++ {
		r.add(i)
	}
	if got := fmt.Sprint(r.list()); got != "[5 4 3]" {
		t.Errorf("list = %s, want [5 4 3]", got)
	}
	if got := fmt.Sprint(r.items()); got != "[3 4 5]" {
		t.Errorf("items = %s, want [3 4 5]", got)
	}
	if p := r.newest(func(v *int) bool { return *v%2 == 0 }); p == nil || *p != 4 {
		t.Errorf("newest even = %v, want 4", p)
	}
	if p := r.newest(func(v *int) bool { return *v > 10 }); p != nil {
		t.Errorf("newest > 10 = %v, want nil", *p)
	}
}

func outcome(name string, dists int, failure string, leased, finished time.Time, sessions ...string) dispatch.Outcome {
	j := dispatch.Job{Name: name, Version: "1.0", Attempt: intp(2), LeasedAt: leased, RulesHash: "h"}
	for i := range dists {
		j.Distributions = append(j.Distributions, fmt.Sprintf("https://files.example/%s-%d.tar.gz", name, i))
	}
	o := dispatch.Outcome{Job: j, Failure: failure, Sessions: sessions, Finished: finished}
	if failure == "" {
		o.Package = score.Aggregate([]score.Distribution{{Score: 12, TopFile: "a/setup.py", TopScore: 12,
			Rules: []score.Hit{{Name: "r1", Weight: 2}, {Name: "r2", Weight: 10}}}})
		o.InspectorURL = "https://inspector.pypi.io/project/" + name + "/1.0/x/a/setup.py"
	}
	return o
}

// TestEvents drives every Observer event without a coordinator and checks
// the metrics and the status document.
func TestEvents(t *testing.T) {
	c := newClock()
	m := New(Config{Now: c.Now, Version: "v9", ErrorWindow: 15 * time.Minute})
	api := m.APIObserver()

	m.SessionStarted(coordinator.SessionInfo{SessionID: "s1-w1", WorkerID: "w1", Host: "h1", Slots: 4})
	m.Leased(0, errors.New("POST /jobs: 503 Service Unavailable"))
	api.Call("POST /jobs", 503, 40*time.Millisecond)
	api.Call("POST /jobs", 0, 10*time.Second)
	c.Advance(time.Second)
	m.Leased(2, nil)
	api.Call("POST /jobs", 200, 30*time.Millisecond)
	start := c.Now()
	c.Advance(4 * time.Second)
	m.JobFinished(outcome("good", 2, "", start, c.Now(), "s1-w1"))
	m.JobFinished(outcome("bad", 1, "distribution bad-0.tar.gz: archive truncated", start, c.Now(), "s1-w1", "s9-gone"))
	m.JobDropped(dispatch.Job{Name: "late", Version: "3"})
	m.Reported(outbox.Report{Name: "good", Version: "1.0", Success: &outbox.Success{Score: 12}}, nil, time.Millisecond)
	api.Call("PUT /package", 200, 20*time.Millisecond)
	m.Reported(outbox.Report{Name: "bad", Version: "1.0", Reason: "x"}, &mainframe.APIError{Endpoint: "PUT /package", Status: 409}, time.Millisecond)
	api.Call("PUT /package", 409, 20*time.Millisecond)
	m.RulesUpdated(true)
	m.RulesUpdated(false)
	api.TokenRefresh(nil)
	api.TokenRefresh(errors.New("token endpoint: 403"))
	m.SessionEnded(coordinator.SessionInfo{SessionID: "s2-w2", WorkerID: "w2", Host: "h2"}, errors.New("worker missed its heartbeats"))
	m.SessionEnded(coordinator.SessionInfo{SessionID: "s1-w1", WorkerID: "w1"}, nil)

	want := map[string]float64{
		`lease_requests_total{result="error"}`:                     1,
		`lease_requests_total{result="jobs"}`:                      1,
		`jobs_leased_total`:                                        2,
		`jobs_scanned_total{result="success"}`:                     1,
		`jobs_scanned_total{result="failure"}`:                     1,
		`jobs_completed_total{outcome="success"}`:                  1,
		`jobs_completed_total{outcome="failure"}`:                  0,
		`jobs_completed_total{outcome="conflict"}`:                 1,
		`jobs_completed_total{outcome="dropped_stale"}`:            1,
		`api_requests_total{endpoint="POST /jobs",status="503"}`:   1,
		`api_requests_total{endpoint="POST /jobs",status="none"}`:  1,
		`api_requests_total{endpoint="PUT /package",status="409"}`: 1,
		`api_token_refreshes_total{result="ok"}`:                   1,
		`api_token_refreshes_total{result="error"}`:                1,
		`rules_updates_total{result="ok"}`:                         1,
		`rules_updates_total{result="error"}`:                      1,
		`sessions_started_total`:                                   1,
		`sessions_ended_total{result="error"}`:                     1,
		`sessions_ended_total{result="clean"}`:                     1,
	}
	got := scrape(t, m)
	for k, v := range want {
		if g, ok := got["dragonfly_"+k]; !ok || g != v {
			t.Errorf("dragonfly_%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if got["dragonfly_job_duration_seconds_count"] != 2 || got["dragonfly_job_duration_seconds_sum"] != 8 {
		t.Errorf("job duration count/sum = %v/%v, want 2/8", got["dragonfly_job_duration_seconds_count"], got["dragonfly_job_duration_seconds_sum"])
	}
	// Unattached: state gauges read zero; no rules_info, no queue gauges.
	if got["dragonfly_workers_connected"] != 0 || got["dragonfly_fleet_desired_workers"] != 0 {
		t.Errorf("unattached gauges: workers %v desired %v", got["dragonfly_workers_connected"], got["dragonfly_fleet_desired_workers"])
	}
	for k := range got {
		if strings.HasPrefix(k, "dragonfly_rules_info") || strings.HasPrefix(k, "dragonfly_api_queue_jobs") {
			t.Errorf("unexpected series %s before rules or queue status", k)
		}
	}

	doc := m.Snapshot()
	if doc.Version != "v9" || !doc.Generated.Equal(c.Now()) {
		t.Errorf("version %q generated %v", doc.Version, doc.Generated)
	}
	if len(doc.Results) != 1 {
		t.Fatalf("results = %+v", doc.Results)
	}
	r := doc.Results[0]
	if r.Name != "good" || r.Score != 12 || r.Report != ReportAccepted || r.Distributions != 2 ||
		r.ElapsedSeconds != 4 || *r.Attempt != 2 || fmt.Sprint(r.Workers) != "[w1]" || !strings.HasPrefix(r.InspectorURL, "https://inspector.pypi.io/") {
		t.Errorf("result = %+v", r)
	}
	if fmt.Sprint(r.Rules) != "[r2 r1]" {
		t.Errorf("result rules = %v, want the heaviest first", r.Rules)
	}
	var kinds []string
	for _, f := range doc.Failures {
		kinds = append(kinds, string(f.Kind)+":"+f.Name+":"+string(f.Report))
	}
	// Newest first: session error, 409 on "bad", dropped "late", scan failure "bad".
	if got, want := strings.Join(kinds, " "), "worker:: report:bad:conflict dropped:late: scan:bad:conflict"; got != want {
		t.Errorf("failures = %q, want %q", got, want)
	}
	if fmt.Sprint(doc.Failures[3].Workers) != "[s9-gone w1]" {
		t.Errorf("scan failure workers = %v (unknown sessions keep their id)", doc.Failures[3].Workers)
	}
	f := doc.Fleet
	if f.JobsLeased != 2 || f.JobsSucceeded != 1 || f.JobsFailed != 1 || f.JobsDropped != 1 || f.ReportsAccepted != 1 || f.ReportsConflicted != 1 {
		t.Errorf("fleet counts = %+v", f)
	}
	if f.DistributionsPerJob != 1.5 {
		t.Errorf("distributions per job = %v, want 1.5", f.DistributionsPerJob)
	}
	a := doc.API
	if !a.LastLease.Equal(start) || !a.LastReport.Equal(c.Now()) {
		t.Errorf("last lease %v report %v", a.LastLease, a.LastReport)
	}
	if a.LastError == nil || a.LastError.Source != "token" {
		t.Errorf("last error = %+v, want the token error", a.LastError)
	}
	eps := map[string]Endpoint{}
	for _, e := range a.Endpoints {
		eps[e.Endpoint] = e
	}
	if e := eps["POST /jobs"]; e.Requests != 3 || e.Errors != 2 || e.LastStatus != 200 {
		t.Errorf("POST /jobs = %+v, want 3 requests, 2 errors", e)
	}
	if e := eps["PUT /package"]; e.Requests != 2 || e.Errors != 0 || e.LastStatus != 409 {
		t.Errorf("PUT /package = %+v, want 2 requests, 0 errors (409 is no API trouble)", e)
	}
	c.Advance(16 * time.Minute)
	for _, e := range m.Snapshot().API.Endpoints {
		if e.Requests != 0 || e.Errors != 0 {
			t.Errorf("after the window %s = %+v, want zero counts", e.Endpoint, e)
		}
	}
}

func TestRetryingReport(t *testing.T) {
	c := newClock()
	m := New(Config{Now: c.Now})
	m.JobFinished(outcome("slow", 1, "", c.Now(), c.Now()))
	m.Reported(outbox.Report{Name: "slow", Version: "1.0", Success: &outbox.Success{}}, errors.New("PUT /package: 502 Bad Gateway"), 0)
	doc := m.Snapshot()
	if doc.Results[0].Report != ReportRetrying {
		t.Errorf("report state = %q, want retrying", doc.Results[0].Report)
	}
	if doc.API.LastError == nil || doc.API.LastError.Source != "report" {
		t.Errorf("last error = %+v", doc.API.LastError)
	}
	got := scrape(t, m)
	for _, o := range []string{"success", "failure", "conflict", "rejected", "dropped_stale"} {
		if v := got[`dragonfly_jobs_completed_total{outcome="`+o+`"}`]; v != 0 {
			t.Errorf("completed %s = %v before the report settled", o, v)
		}
	}
	m.Reported(outbox.Report{Name: "slow", Version: "1.0", Success: &outbox.Success{}}, &mainframe.APIError{Status: 422}, 0)
	if s := m.Snapshot().Results[0].Report; s != ReportRejected {
		t.Errorf("report state = %q, want rejected", s)
	}
	if v := scrape(t, m)[`dragonfly_jobs_completed_total{outcome="rejected"}`]; v != 1 {
		t.Errorf("completed rejected = %v, want 1", v)
	}
}

func TestRingBounds(t *testing.T) {
	c := newClock()
	m := New(Config{Now: c.Now, RecentResults: 5, RecentFailures: 3})
	for i := range 12 {
		m.JobFinished(outcome(fmt.Sprintf("p%02d", i), 1, "", c.Now(), c.Now()))
		m.JobFinished(outcome(fmt.Sprintf("f%02d", i), 1, "boom", c.Now(), c.Now()))
	}
	doc := m.Snapshot()
	if len(doc.Results) != 5 || doc.Results[0].Name != "p11" || doc.Results[4].Name != "p07" {
		t.Errorf("results = %d, first %q", len(doc.Results), doc.Results[0].Name)
	}
	if len(doc.Failures) != 3 || doc.Failures[0].Name != "f11" {
		t.Errorf("failures = %d, first %q", len(doc.Failures), doc.Failures[0].Name)
	}
}

// fakeQueue answers GET /queue-status from a script.
type fakeQueue struct {
	mu    sync.Mutex
	calls int
	next  []func() (mainframe.QueueStatus, error)
}

func (q *fakeQueue) QueueStatus(ctx context.Context) (mainframe.QueueStatus, error) {
	q.mu.Lock()
	q.calls++
	var f func() (mainframe.QueueStatus, error)
	if len(q.next) > 0 {
		f, q.next = q.next[0], q.next[1:]
	}
	q.mu.Unlock()
	if f == nil {
		<-ctx.Done() // a hanging API: the poll's own deadline ends it
		return mainframe.QueueStatus{}, ctx.Err()
	}
	return f()
}

func (q *fakeQueue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.calls
}

func queueOK(queued, retryable, inProgress int64) func() (mainframe.QueueStatus, error) {
	age := 42.5
	return func() (mainframe.QueueStatus, error) {
		return mainframe.QueueStatus{Queued: queued, Retryable: retryable, InProgress: inProgress, Stranded: 1,
			TotalBacklog: queued + retryable + inProgress, OldestAgeSeconds: &age}, nil
	}
}

func TestPollQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQueue{next: []func() (mainframe.QueueStatus, error){
			queueOK(10, 2, 3),
			func() (mainframe.QueueStatus, error) {
				return mainframe.QueueStatus{}, errors.New("GET /queue-status: 404 Not Found")
			},
		}}
		m := New(Config{Now: time.Now, QueuePollInterval: 30 * time.Second, SlotsPerWorker: 4, DistributionsPerJob: 2})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.PollQueue(ctx, q) }()

		synctest.Wait() // the first poll runs at once
		if q.count() != 1 {
			t.Fatalf("polls = %d, want 1", q.count())
		}
		got := scrape(t, m)
		if got[`dragonfly_api_queue_jobs{state="queued"}`] != 10 || got["dragonfly_api_queue_backlog_jobs"] != 15 ||
			got["dragonfly_api_queue_oldest_age_seconds"] != 42.5 || got[`dragonfly_api_queue_jobs{state="stranded"}`] != 1 {
			t.Errorf("queue gauges = %v", got)
		}
		// (10 queued + 2 retryable + 0 in flight) × 2 / 4 = 6.
		if got["dragonfly_fleet_desired_workers"] != 6 {
			t.Errorf("desired = %v, want 6", got["dragonfly_fleet_desired_workers"])
		}
		if qs := m.Snapshot().API.Queue; qs == nil || qs.Queued != 10 || qs.TotalBacklog != 15 {
			t.Errorf("document queue = %+v", qs)
		}
		// Jobs leased since the poll have left the API's queue.
		m.Leased(5, nil)
		if v := scrape(t, m)["dragonfly_fleet_desired_workers"]; v != 4 { // (12 - 5) × 2 / 4 = 3.5
			t.Errorf("desired after leasing 5 = %v, want 4", v)
		}
		m.Leased(20, nil)
		if v := scrape(t, m)["dragonfly_fleet_desired_workers"]; v != 0 {
			t.Errorf("desired after leasing more than the API held = %v, want 0", v)
		}

		time.Sleep(30 * time.Second) // fake time: the second poll fails
		synctest.Wait()
		doc := m.Snapshot()
		if q.count() != 2 || doc.API.QueueError == nil || doc.API.Queue == nil {
			t.Errorf("after a failed poll: polls %d, error %+v, queue kept %v", q.count(), doc.API.QueueError, doc.API.Queue != nil)
		}
		if v := scrape(t, m)[`dragonfly_api_queue_polls_total{result="error"}`]; v != 1 {
			t.Errorf("poll errors = %v", v)
		}

		// The third poll hangs until its own deadline (one interval).
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if q.count() != 3 {
			t.Errorf("polls = %d, want 3", q.count())
		}
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if v := scrape(t, m)[`dragonfly_api_queue_polls_total{result="error"}`]; v != 2 {
			t.Errorf("poll errors after a hung poll = %v, want 2", v)
		}
		// The last success is now over 3 intervals old: the API backlog no
		// longer counts.
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if v := scrape(t, m)["dragonfly_fleet_desired_workers"]; v != 0 {
			t.Errorf("desired with a stale queue status = %v, want 0", v)
		}

		cancel()
		if err := <-done; err != nil {
			t.Errorf("PollQueue = %v, want nil after cancel", err)
		}
	})
}

// scrape gathers the registry into "name{labels}" -> value; histograms give
// name_count and name_sum.
func scrape(t *testing.T, m *Monitor) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case mt.GetCounter() != nil:
				out[key] = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				out[key] = mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				out[strings.Replace(key, mf.GetName(), mf.GetName()+"_count", 1)] = float64(mt.GetHistogram().GetSampleCount())
				out[strings.Replace(key, mf.GetName(), mf.GetName()+"_sum", 1)] = mt.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// TestCoordinator watches a real coordinator with a worker over bufconn.
func TestCoordinator(t *testing.T) {
	f := finishJobs(t, Config{Runtime: true, Version: "v-test"})
	// One more worker that never gets rules work: it shows up idle.
	f.worker("w-beta", 4, nil)

	doc := f.mon.Snapshot()
	if doc.RulesHash != "0123456789abcdef0123" {
		t.Errorf("rules hash = %q", doc.RulesHash)
	}
	if len(doc.Workers) != 2 {
		t.Fatalf("workers = %+v", doc.Workers)
	}
	byID := map[string]Worker{}
	for _, w := range doc.Workers {
		byID[w.WorkerID] = w
	}
	a := byID["w-alpha"]
	if a.Host != "host-w-alpha" || a.Slots != 2 || a.JobsDone != 3 || a.TasksDone != 4 || a.LastHeartbeat.IsZero() ||
		fmt.Sprint(a.RulesHashes) != "[0123456789abcdef0123]" || a.Version != "test-worker" {
		t.Errorf("w-alpha = %+v", a)
	}
	if b := byID["w-beta"]; b.Slots != 4 || b.JobsDone != 0 {
		t.Errorf("w-beta = %+v", b)
	}
	fl := doc.Fleet
	if fl.Workers != 2 || fl.SlotsTotal != 6 || fl.JobsInFlight != 0 || fl.JobsSucceeded != 2 || fl.JobsFailed != 1 ||
		fl.ReportsAccepted != 2 || fl.ReportsConflicted != 1 || fl.TasksDispatched != 4 {
		t.Errorf("fleet = %+v", fl)
	}
	if len(doc.Results) != 2 || len(doc.Failures) != 2 {
		t.Fatalf("results %+v failures %+v", doc.Results, doc.Failures)
	}
	for _, r := range doc.Results {
		if r.Score != 7 || fmt.Sprint(r.Rules) != "[evil_setup]" || fmt.Sprint(r.Workers) != "[w-alpha]" || r.InspectorURL == "" {
			t.Errorf("result = %+v", r)
		}
	}

	got := scrape(t, f.mon)
	for k, want := range map[string]float64{
		"dragonfly_workers_connected":                        2,
		"dragonfly_scanner_slots":                            6,
		"dragonfly_scanner_slots_busy":                       0,
		"dragonfly_jobs_in_flight":                           0,
		"dragonfly_tasks_dispatched_total":                   4,
		"dragonfly_outbox_reports":                           0,
		`dragonfly_rules_info{hash="0123456789abcdef0123"}`:  1,
		`dragonfly_jobs_completed_total{outcome="success"}`:  1,
		`dragonfly_jobs_completed_total{outcome="failure"}`:  1,
		`dragonfly_jobs_completed_total{outcome="conflict"}`: 1,
		`dragonfly_build_info{version="v-test"}`:             1,
		"dragonfly_fleet_distributions_per_job":              4.0 / 3,
		"dragonfly_fleet_max_workers":                        100,
		"dragonfly_fleet_desired_workers":                    0,
		"dragonfly_dispatch_backlog_tasks":                   0,
		"dragonfly_dispatch_backlog_oldest_age_seconds":      0,
		`dragonfly_lease_requests_total{result="jobs"}`:      f.mustPositive(got, `dragonfly_lease_requests_total{result="jobs"}`),
		"dragonfly_jobs_leased_total":                        3,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}

	// The HTTP surface.
	srv := httptest.NewServer(f.mon.Handler())
	defer srv.Close()
	body, ct := httpGet(t, srv.URL+"/status.json")
	if !strings.HasPrefix(ct, "application/json") {
		t.Errorf("/status.json content type %q", ct)
	}
	var fromJSON Document
	if err := json.Unmarshal([]byte(body), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if len(fromJSON.Workers) != 2 || len(fromJSON.Results) != 2 || fromJSON.Fleet.JobsSucceeded != 2 {
		t.Errorf("/status.json = %+v", fromJSON)
	}
	html, ct := httpGet(t, srv.URL+"/status")
	if !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/status content type %q", ct)
	}
	for _, want := range []string{`<meta http-equiv="refresh" content="5">`, "w-alpha", "host-w-beta", "evilpkg", "raced", "evil_setup",
		"https://inspector.pypi.io/project/evilpkg/1.0/", "DRAGONFLY_MAX_FILE_SIZE", `class="state conflict"`, "0123456789ab"} {
		if !strings.Contains(html, want) {
			t.Errorf("/status lacks %q", want)
		}
	}
	if strings.Contains(html, "<script") {
		t.Error("/status has a script")
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/status" {
		t.Errorf("/ = %d %q, want a redirect to /status", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func (f *fleet) mustPositive(got map[string]float64, key string) float64 {
	if got[key] <= 0 {
		f.t.Errorf("%s = %v, want > 0", key, got[key])
	}
	return got[key]
}

func httpGet(t *testing.T, url string) (body, contentType string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d: %s", url, resp.StatusCode, b)
	}
	return string(b), resp.Header.Get("Content-Type")
}

// TestEmptyPage renders a Monitor that has seen nothing.
func TestEmptyPage(t *testing.T) {
	m := New(Config{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	html, _ := httpGet(t, srv.URL+"/status")
	for _, want := range []string{"No worker connected.", "No job finished yet.", "No failure.", "not loaded", "not polled yet"} {
		if !strings.Contains(html, want) {
			t.Errorf("empty /status lacks %q", want)
		}
	}
	body, _ := httpGet(t, srv.URL+"/status.json")
	if !strings.Contains(body, `"workers": []`) || !strings.Contains(body, `"recent_results": []`) {
		t.Errorf("empty /status.json should have empty lists, not null:\n%s", body)
	}
}

// TestPromtool lints the coordinator's exposition after activity.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found in PATH (Debian package prometheus); skipping the lint of the exposition")
	}
	f := finishJobs(t, Config{Runtime: true})
	api := f.mon.APIObserver()
	api.Call("POST /jobs", 200, 15*time.Millisecond)
	api.Call("PUT /package", 0, time.Second)
	api.TokenRefresh(nil)
	f.mon.pollOnce(t.Context(), &fakeQueue{next: []func() (mainframe.QueueStatus, error){queueOK(5, 1, 2)}})
	srv := httptest.NewServer(f.mon.Handler())
	defer srv.Close()
	body, _ := httpGet(t, srv.URL+"/metrics")
	for _, want := range []string{"dragonfly_api_queue_jobs{", "dragonfly_rules_info{", "dragonfly_fleet_desired_workers ", "go_goroutines "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || strings.TrimSpace(out.String()) != "" {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// TestConcurrentUse runs events, scrapes and pages at once (for -race).
func TestConcurrentUse(t *testing.T) {
	f := startFleet(t, &fakeAPI{}, Config{})
	f.worker("w-race", 2, nil)
	srv := httptest.NewServer(f.mon.Handler())
	defer srv.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				name := fmt.Sprintf("p%d-%d", g, i)
				f.mon.Leased(1, nil)
				f.mon.JobFinished(outcome(name, 2, "", time.Now(), time.Now(), "s1-w-race"))
				f.mon.Reported(outbox.Report{Name: name, Version: "1.0", Success: &outbox.Success{}}, nil, 0)
				f.mon.APIObserver().Call("PUT /package", 200, time.Millisecond)
			}
		}()
	}
	for range 20 {
		if _, err := f.mon.Registry().Gather(); err != nil {
			t.Fatal(err)
		}
		httpGet(t, srv.URL+"/status")
		httpGet(t, srv.URL+"/status.json")
	}
	wg.Wait()
	doc := f.mon.Snapshot()
	if doc.Fleet.JobsSucceeded != 800 || doc.Fleet.ReportsAccepted != 800 || len(doc.Results) != 50 {
		t.Errorf("after 800 jobs: %+v, %d results", doc.Fleet, len(doc.Results))
	}
	if len(doc.Workers) != 1 || doc.Workers[0].JobsDone != 800 {
		t.Errorf("workers = %+v", doc.Workers)
	}
}

// TestReportAbandoned: a report given up after the report max age is a final
// outcome of its own, on the metrics, the counts and the release's entry.
func TestReportAbandoned(t *testing.T) {
	c := newClock()
	m := New(Config{Now: c.Now, Version: "v9", ErrorWindow: 15 * time.Minute})
	start := c.Now()
	c.Advance(time.Second)
	m.JobFinished(outcome("slow", 1, "", start, c.Now(), "s1-w1"))
	r := outbox.Report{Name: "slow", Version: "1.0", Success: &outbox.Success{Score: 12}}
	m.Reported(r, errors.New("PUT /package: 503 Service Unavailable"), time.Millisecond)
	m.ReportAbandoned(r, errors.New("PUT /package: 503 Service Unavailable"))

	got := scrape(t, m)
	if v := got[`dragonfly_jobs_completed_total{outcome="abandoned"}`]; v != 1 {
		t.Errorf("abandoned outcome = %v, want 1", v)
	}
	if v := got[`dragonfly_jobs_completed_total{outcome="success"}`]; v != 0 {
		t.Errorf("success outcome = %v, want 0", v)
	}
	doc := m.Snapshot()
	if doc.Fleet.ReportsAbandoned != 1 || doc.Fleet.ReportsAccepted != 0 {
		t.Errorf("fleet counts = %+v", doc.Fleet)
	}
	if len(doc.Results) != 1 || doc.Results[0].Report != ReportAbandoned {
		t.Fatalf("results = %+v, want slow marked abandoned", doc.Results)
	}
	if len(doc.Failures) != 1 || doc.Failures[0].Report != ReportAbandoned ||
		!strings.Contains(doc.Failures[0].Reason, "report max age: PUT /package: 503") {
		t.Fatalf("failures = %+v", doc.Failures)
	}
}
