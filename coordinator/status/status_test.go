package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdhtml "html"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/score"
)

// fakeSource is a coordinator as the Monitor reads it: a fixed snapshot and
// a scripted queue status.
type fakeSource struct {
	mu     sync.Mutex
	snap   coordinator.Snapshot
	view   coordinator.QueueView
	asked  int
	maxAge time.Duration
}

func (s *fakeSource) Snapshot() coordinator.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

func (s *fakeSource) QueueStatus(_ context.Context, maxAge time.Duration) coordinator.QueueView {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	s.maxAge = maxAge
	return s.view
}

func (s *fakeSource) set(f func(*coordinator.Snapshot, *coordinator.QueueView)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.snap, &s.view)
}

var errNoQueue = errors.New("GET /queue-status: 404 Not Found")

func emptySource() *fakeSource { return &fakeSource{view: coordinator.QueueView{Err: errNoQueue}} }

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

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                    "0ms",
		850 * time.Millisecond:          "850ms",
		12300 * time.Millisecond:        "12.3s",
		4*time.Minute + 5*time.Second:   "4m05s",
		2*time.Hour + 10*time.Minute:    "2h10m",
		47*time.Hour + 59*time.Minute:   "47h59m",
		3*24*time.Hour + 4*time.Hour:    "3d04h",
		400*24*time.Hour + 23*time.Hour: "400d23h",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := Ago(now, time.Time{}); got != "never" {
		t.Errorf("Ago(zero) = %q", got)
	}
	if got := Ago(now, now.Add(-90*time.Second)); got != "1m30s ago" {
		t.Errorf("Ago(90s) = %q", got)
	}
}

func TestGrade(t *testing.T) {
	for score, want := range map[int64]string{-2: "none", 0: "none", 1: "low", 4: "low", 5: "medium", 9: "medium", 10: "high", 14: "high", 15: "critical", 400: "critical"} {
		if got := Grade(score); got != want {
			t.Errorf("Grade(%d) = %q, want %q", score, got, want)
		}
	}
	// The scale's bands are contiguous and agree with Grade.
	gs := Grades()
	for i, g := range gs {
		if Grade(g.Min) != g.Grade && g.Grade != GradeNone {
			t.Errorf("Grade(%d) = %q, band %q", g.Min, Grade(g.Min), g.Grade)
		}
		if i > 0 && gs[i-1].Max+1 != g.Min {
			t.Errorf("band %q starts at %d, the one before ends at %d", g.Grade, g.Min, gs[i-1].Max)
		}
	}
	if got := fmt.Sprint(gs[1].Label(), " ", gs[4].Label(), " ", gs[0].Label()); got != "1-4 15+ < 1" {
		t.Errorf("labels = %q", got)
	}
}

func TestWindow(t *testing.T) {
	c := testkit.NewClock()
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
	var overwritten []int
	for i := 1; i <= 5; i++ {
		if old, ok := r.add(i); ok {
			overwritten = append(overwritten, old)
		}
	}
	if fmt.Sprint(overwritten) != "[1 2]" {
		t.Errorf("overwritten = %v, want [1 2]", overwritten)
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

// outcome is a finished job: a success scoring 12 (rules r2 w10, r1 w2)
// unless failure is set.
func outcome(name string, dists int, failure string, leased, finished time.Time, sessions ...string) dispatch.Outcome {
	j := dispatch.Job{Name: name, Version: "1.0", Attempt: intp(2), LeasedAt: leased, RulesHash: "h"}
	for i := range dists {
		j.Distributions = append(j.Distributions, fmt.Sprintf("https://files.example/%s-%d.tar.gz", name, i))
	}
	o := dispatch.Outcome{Job: j, Failure: failure, Sessions: sessions, Tasks: dists, Finished: finished}
	for _, s := range sessions {
		o.Identities = append(o.Identities, strings.TrimPrefix(s, "s1-"))
	}
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
	c := testkit.NewClock()
	m := New(Config{Now: c.Now, Version: "v9", ErrorWindow: 15 * time.Minute})
	src := emptySource()
	api := m.APIObserver()

	m.SessionStarted(coordinator.SessionInfo{SessionID: "s1-w1", WorkerID: "w1", Identity: "w1", Host: "h1", Slots: 4})
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
	m.SessionEnded(coordinator.SessionInfo{SessionID: "s2-w2", WorkerID: "w2", Identity: "cert:CN=w2", Host: "h2"}, errors.New("worker missed its heartbeats"))
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
		`api_queue_polls_total{result="error"}`:                    1,
	}
	got := scrape(t, m, src)
	for k, v := range want {
		if g, ok := got["dragonfly_"+k]; !ok || g != v {
			t.Errorf("dragonfly_%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if got["dragonfly_job_duration_seconds_count"] != 2 || got["dragonfly_job_duration_seconds_sum"] != 8 {
		t.Errorf("job duration count/sum = %v/%v, want 2/8", got["dragonfly_job_duration_seconds_count"], got["dragonfly_job_duration_seconds_sum"])
	}
	// An empty snapshot: state gauges read zero; no rules_info, no queue gauges.
	if got["dragonfly_workers_connected"] != 0 || got["dragonfly_fleet_desired_workers"] != 0 {
		t.Errorf("empty snapshot gauges: workers %v desired %v", got["dragonfly_workers_connected"], got["dragonfly_fleet_desired_workers"])
	}
	for k := range got {
		if strings.HasPrefix(k, "dragonfly_rules_info") || strings.HasPrefix(k, "dragonfly_api_queue_jobs") || strings.HasPrefix(k, "dragonfly_rule_matches_total") {
			t.Errorf("unexpected series %s before rules or queue status", k)
		}
	}

	doc := m.Status(t.Context(), src)
	if doc.Version != "v9" || !doc.Generated.Equal(c.Now()) {
		t.Errorf("version %q generated %v", doc.Version, doc.Generated)
	}
	if len(doc.Results) != 1 {
		t.Fatalf("results = %+v", doc.Results)
	}
	r := doc.Results[0]
	if r.Name != "good" || r.Score != 12 || r.Grade != GradeHigh || r.Report != ReportAccepted || r.Distributions != 2 ||
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
	if fmt.Sprint(doc.Failures[0].Workers) != "[cert:CN=w2]" {
		t.Errorf("session failure names %v, want the identity", doc.Failures[0].Workers)
	}
	if fmt.Sprint(doc.Failures[3].Workers) != "[s9-gone w1]" {
		t.Errorf("scan failure identities = %v", doc.Failures[3].Workers)
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
	if a.Queue != nil || a.QueueError == nil || !strings.Contains(a.QueueError.Message, "404") {
		t.Errorf("queue %+v, queue error %+v; want no queue and the 404", a.Queue, a.QueueError)
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
	for _, e := range m.Status(t.Context(), src).API.Endpoints {
		if e.Requests != 0 || e.Errors != 0 {
			t.Errorf("after the window %s = %+v, want zero counts", e.Endpoint, e)
		}
	}
	// The same failed answer seen by more pages counts once.
	if v := scrape(t, m, src)[`dragonfly_api_queue_polls_total{result="error"}`]; v != 1 {
		t.Errorf("queue errors after more scrapes of one failure = %v, want 1", v)
	}
}

func TestRetryingReport(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now})
	src := emptySource()
	m.JobFinished(outcome("slow", 1, "", c.Now(), c.Now()))
	m.Reported(outbox.Report{Name: "slow", Version: "1.0", Success: &outbox.Success{}}, errors.New("PUT /package: 502 Bad Gateway"), 0)
	doc := m.Status(t.Context(), src)
	if doc.Results[0].Report != ReportRetrying {
		t.Errorf("report state = %q, want retrying", doc.Results[0].Report)
	}
	if doc.API.LastError == nil || doc.API.LastError.Source != "report" {
		t.Errorf("last error = %+v", doc.API.LastError)
	}
	got := scrape(t, m, src)
	for _, o := range []string{"success", "failure", "conflict", "rejected", "dropped_stale"} {
		if v := got[`dragonfly_jobs_completed_total{outcome="`+o+`"}`]; v != 0 {
			t.Errorf("completed %s = %v before the report settled", o, v)
		}
	}
	m.Reported(outbox.Report{Name: "slow", Version: "1.0", Success: &outbox.Success{}}, &mainframe.APIError{Status: 422}, 0)
	if s := m.Status(t.Context(), src).Results[0].Report; s != ReportRejected {
		t.Errorf("report state = %q, want rejected", s)
	}
	if v := scrape(t, m, src)[`dragonfly_jobs_completed_total{outcome="rejected"}`]; v != 1 {
		t.Errorf("completed rejected = %v, want 1", v)
	}
}

func TestRingBounds(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now, RecentResults: 5, RecentFailures: 3})
	for i := range 12 {
		m.JobFinished(outcome(fmt.Sprintf("p%02d", i), 1, "", c.Now(), c.Now()))
		m.JobFinished(outcome(fmt.Sprintf("f%02d", i), 1, "boom", c.Now(), c.Now()))
	}
	doc := m.Status(t.Context(), emptySource())
	if len(doc.Results) != 5 || doc.Results[0].Name != "p11" || doc.Results[4].Name != "p07" {
		t.Errorf("results = %d, first %q", len(doc.Results), doc.Results[0].Name)
	}
	if len(doc.Failures) != 3 || doc.Failures[0].Name != "f11" {
		t.Errorf("failures = %d, first %q", len(doc.Failures), doc.Failures[0].Name)
	}
}

// TestNoWorkersWantedWhileLeasingIsPaused: while leasing is paused (the
// outbox full, or its writes failing, or the coordinator draining),
// dragonfly_fleet_desired_workers counts the jobs in flight, not the API's
// queue: it asked the autoscaler for workers that would find nothing to do.
func TestNoWorkersWantedWhileLeasingIsPaused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pause func(*coordinator.Snapshot)
	}{
		{"outbox full", func(s *coordinator.Snapshot) { s.Outbox.Full = true }},
		{"outbox writes failing", func(s *coordinator.Snapshot) { s.Outbox.Health.WriteFailing = true }},
		{"draining", func(s *coordinator.Snapshot) { s.Draining = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testkit.NewClock()
			m := New(Config{Now: c.Now, QueueRefresh: 7 * time.Second, QueueStale: time.Minute, SlotsPerWorker: 4, DistributionsPerJob: 2})
			src := &fakeSource{view: coordinator.QueueView{Fetched: c.Now(), Status: mainframe.QueueStatus{Queued: 10, Retryable: 2, TotalBacklog: 12}}}
			src.set(func(s *coordinator.Snapshot, _ *coordinator.QueueView) { s.Dispatch.JobsInFlight = 4 })
			if v := scrape(t, m, src)["dragonfly_fleet_desired_workers"]; v != 8 { // (12 + 4) × 2 / 4
				t.Fatalf("desired while leasing = %v, want 8", v)
			}
			src.set(func(s *coordinator.Snapshot, _ *coordinator.QueueView) { tc.pause(s) })
			if v := scrape(t, m, src)["dragonfly_fleet_desired_workers"]; v != 2 { // 4 in flight × 2 / 4
				t.Errorf("desired while leasing is paused = %v, want 2, for the jobs in flight only", v)
			}
		})
	}
}

// TestQueueOnDemand: pages and scrapes ask the source for the API's queue
// status with maxAge Config.QueueRefresh; new answers feed the gauges, the
// page and DesiredWorkers, each answer and failure counted once.
func TestQueueOnDemand(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now, QueueRefresh: 7 * time.Second, QueueStale: time.Minute, SlotsPerWorker: 4, DistributionsPerJob: 2})
	age := 42.5
	src := &fakeSource{view: coordinator.QueueView{Fetched: c.Now(), Status: mainframe.QueueStatus{
		Queued: 10, Retryable: 2, InProgress: 3, Stranded: 1, TotalBacklog: 15, OldestAgeSeconds: &age}}}

	got := scrape(t, m, src)
	if src.asked != 1 || src.maxAge != 7*time.Second {
		t.Errorf("scrape asked %d times with maxAge %v, want once with 7s", src.asked, src.maxAge)
	}
	if got[`dragonfly_api_queue_jobs{state="queued"}`] != 10 || got["dragonfly_api_queue_backlog_jobs"] != 15 ||
		got["dragonfly_api_queue_oldest_age_seconds"] != 42.5 || got[`dragonfly_api_queue_jobs{state="stranded"}`] != 1 {
		t.Errorf("queue gauges = %v", got)
	}
	// (10 queued + 2 retryable + 0 in flight) × 2 / 4 = 6.
	if got["dragonfly_fleet_desired_workers"] != 6 {
		t.Errorf("desired = %v, want 6", got["dragonfly_fleet_desired_workers"])
	}
	doc := m.Status(t.Context(), src)
	if src.asked != 2 || doc.API.Queue == nil || doc.API.Queue.Queued != 10 || doc.API.Queue.TotalBacklog != 15 {
		t.Errorf("asked %d; document queue = %+v", src.asked, doc.API.Queue)
	}
	if v := scrape(t, m, src)[`dragonfly_api_queue_polls_total{result="ok"}`]; v != 1 {
		t.Errorf("ok answers = %v, want 1: one answer seen by three askers", v)
	}
	// Jobs leased since the answer have left the API's queue.
	m.Leased(5, nil)
	if v := scrape(t, m, src)["dragonfly_fleet_desired_workers"]; v != 4 { // (12 - 5) × 2 / 4 = 3.5
		t.Errorf("desired after leasing 5 = %v, want 4", v)
	}
	m.Leased(20, nil)
	if v := scrape(t, m, src)["dragonfly_fleet_desired_workers"]; v != 0 {
		t.Errorf("desired after leasing more than the API held = %v, want 0", v)
	}

	// A newer answer replaces it; leases before it no longer count.
	c.Advance(10 * time.Second)
	src.set(func(_ *coordinator.Snapshot, v *coordinator.QueueView) {
		v.Fetched, v.Status = c.Now(), mainframe.QueueStatus{Queued: 4, TotalBacklog: 4}
	})
	if v := scrape(t, m, src)["dragonfly_fleet_desired_workers"]; v != 2 { // 4 × 2 / 4
		t.Errorf("desired after a new answer = %v, want 2", v)
	}
	// A failure keeps the last answer beside the error.
	c.Advance(10 * time.Second)
	fail := errors.New("GET /queue-status: 503 Service Unavailable")
	src.set(func(_ *coordinator.Snapshot, v *coordinator.QueueView) { v.Err = fail })
	doc = m.Status(t.Context(), src)
	if doc.API.Queue == nil || doc.API.Queue.Queued != 4 || doc.API.QueueError == nil || !strings.Contains(doc.API.QueueError.Message, "503") {
		t.Errorf("after a failure: queue %+v, error %+v", doc.API.Queue, doc.API.QueueError)
	}
	got = scrape(t, m, src)
	if got[`dragonfly_api_queue_polls_total{result="error"}`] != 1 || got[`dragonfly_api_queue_polls_total{result="ok"}`] != 2 {
		t.Errorf("polls: ok %v error %v, want 2 and 1", got[`dragonfly_api_queue_polls_total{result="ok"}`], got[`dragonfly_api_queue_polls_total{result="error"}`])
	}
	html := renderPage(t, m, src)
	if !strings.Contains(html, `id="api-backlog">4<`) || !strings.Contains(html, "as of 10.0s ago") || !strings.Contains(html, "503 Service Unavailable") {
		t.Errorf("page does not show the backlog with its age and the failure:\n%s", section(t, html, `id="summary"`))
	}
	// An answer older than QueueStale no longer counts.
	c.Advance(time.Minute)
	if v := scrape(t, m, src)["dragonfly_fleet_desired_workers"]; v != 0 {
		t.Errorf("desired with a stale answer = %v, want 0", v)
	}
}

// TestQueueSingleFlight: however many pages and scrapes at once, the API is
// asked once per QueueRefresh (the coordinator's cache, given our maxAge).
func TestQueueSingleFlight(t *testing.T) {
	api := newFakeAPI()
	f := startFleet(t, api, Config{QueueRefresh: time.Hour})
	h := f.handler()
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			path := []string{"/status", "/status.json", "/metrics"}[i%3]
			serve(h, path)
		})
	}
	wg.Wait()
	if n := api.QueueStatusCalls(); n != 1 {
		t.Errorf("GET /queue-status calls = %d for 24 concurrent requests, want 1", n)
	}
}

// TestQuarantineReleases: a quarantined identity is listed with its reason,
// since when, and the releases of the hour before its quarantine (bounded),
// with the way to queue them again.
func TestQuarantineReleases(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now, ReleaseWindow: time.Hour, ReleasesPerIdentity: 4, Identities: 3})
	liar, honest := "cert:CN=liar", "cert:CN=honest"
	finish := func(name string, failed bool, ids ...string) {
		o := dispatch.Outcome{Job: dispatch.Job{Name: name, Version: "1.0", LeasedAt: c.Now()}, Identities: ids, Finished: c.Now()}
		if failed {
			o.Failure = "boom"
		}
		m.JobFinished(o)
	}
	finish("ancient", false, liar, honest) // more than an hour before the quarantine
	c.Advance(90 * time.Minute)
	finish("alpha", false, liar, honest)
	c.Advance(time.Minute)
	finish("beta", true, liar)
	c.Advance(time.Minute)
	finish("gamma", false, honest)
	since := c.Now()
	m.DispatchEvent(dispatch.Event{Kind: dispatch.EventVerifyDecided, Time: since, Name: "beta", Version: "1.0",
		Identities: []string{liar, honest, "cert:CN=third"}, Quarantined: []string{liar}, Reason: "majority of 3 disagrees with cert:CN=liar"})
	m.DispatchEvent(dispatch.Event{Kind: dispatch.EventQuarantine, Time: since, Identity: liar, Reason: "lied in a spot check of beta 1.0"})
	src := emptySource()
	src.snap.Dispatch.Quarantined = []dispatch.QuarantineInfo{{Identity: liar, Reason: "lied in a spot check of beta 1.0", Since: since}}

	// Hours later the list still covers the hour before the quarantine.
	c.Advance(3 * time.Hour)
	finish("later", false, honest)
	doc := m.Status(t.Context(), src)
	if len(doc.Quarantined) != 1 {
		t.Fatalf("quarantined = %+v", doc.Quarantined)
	}
	q := doc.Quarantined[0]
	var rels []string
	for _, r := range q.Releases {
		rels = append(rels, fmt.Sprintf("%s:%v", r.Name, r.Failed))
	}
	if q.Identity != liar || !q.Since.Equal(since) || q.Reason == "" || !q.Complete || q.WindowSeconds != 3600 ||
		strings.Join(rels, " ") != "beta:true alpha:false" {
		t.Errorf("quarantined = %+v, releases %v; want beta and alpha, not ancient", q, rels)
	}
	if got := scrape(t, m, src)["dragonfly_quarantined_workers"]; got != 1 {
		t.Errorf("dragonfly_quarantined_workers = %v", got)
	}
	if len(doc.Alerts) == 0 || !strings.Contains(doc.Alerts[0].Title, "1 worker identity quarantined") {
		t.Errorf("alerts = %+v", doc.Alerts)
	}
	// The quarantine is a failure too, naming the identity (what e2e reads).
	if len(doc.Failures) == 0 || doc.Failures[0].Kind != FailureQuarantine || fmt.Sprint(doc.Failures[0].Workers) != "[cert:CN=liar]" {
		t.Errorf("failures = %+v, want the quarantine first", doc.Failures)
	}
	if len(doc.SpotChecks.Recent) != 2 || doc.SpotChecks.Recent[0].Kind != SpotQuarantine || doc.SpotChecks.Recent[1].Kind != SpotDecided ||
		fmt.Sprint(doc.SpotChecks.Recent[1].Quarantined) != "[cert:CN=liar]" {
		t.Errorf("spot check events = %+v", doc.SpotChecks.Recent)
	}

	html := renderPage(t, m, src)
	qs := section(t, html, `<table id="quarantined"`)
	for _, want := range []string{"cert:CN=liar", "lied in a spot check of beta 1.0", "2 releases", "beta==1.0 (failed)\nalpha==1.0\n", "2026-08-01 13:32:00 UTC"} {
		if !strings.Contains(qs, want) {
			t.Errorf("quarantine table lacks %q:\n%s", want, qs)
		}
	}
	if strings.Contains(qs, "ancient") || strings.Contains(qs, "gamma") {
		t.Errorf("quarantine table lists releases it should not:\n%s", qs)
	}
	if !strings.Contains(html, "<code>POST /package</code>") {
		t.Error("page does not say how to queue the releases again")
	}

	// Bounds: more releases than kept per identity make the list incomplete;
	// a new identity beyond the bound evicts an idle one, not the quarantined.
	for i := range 5 {
		c.Advance(time.Second)
		finish(fmt.Sprintf("late%d", i), false, liar)
	}
	doc = m.Status(t.Context(), src)
	if q := doc.Quarantined[0]; q.Complete || len(q.Releases) != 4 || q.Releases[0].Name != "late4" {
		t.Errorf("after 5 more: complete %v, %d releases, newest %q; want incomplete, 4, late4", q.Complete, len(q.Releases), q.Releases[0].Name)
	}
	if html := renderPage(t, m, src); !strings.Contains(html, "only the newest kept") {
		t.Error("page does not say the list is cut")
	}
	finish("x", false, "cert:CN=new1")
	finish("y", false, "cert:CN=new2")
	m.mu.Lock()
	_, liarKept := m.releases.byID[liar]
	_, honestKept := m.releases.byID[honest]
	n := len(m.releases.byID)
	m.mu.Unlock()
	if n != 3 || !liarKept || honestKept {
		t.Errorf("identities kept: %d, liar %v, honest %v; want 3, the quarantined kept, the idle one evicted", n, liarKept, honestKept)
	}
}

// TestOutboxAlerts: outbox trouble is an alert box at the top of the page.
func TestOutboxAlerts(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now})
	src := emptySource()
	src.snap.Outbox = coordinator.OutboxState{
		Reports: 7,
		Health:  outbox.Health{WriteFailing: true, Since: c.Now().Add(-time.Minute), LastError: "write /var/lib/dragonfly/outbox.db: no space left on device", NotDurable: 3, Failures: 12},
		Recovery: outbox.Recovery{CorruptPath: "/var/lib/dragonfly/outbox.db.corrupt-20260801T110000", CorruptCause: "page 4: checksum mismatch", Salvaged: 2,
			Unreadable: 1, UnreadableRecords: []outbox.UnreadableRecord{{Key: `"k1"`, Cause: "not JSON"}}, UnreadableKept: 1},
	}
	doc := m.Status(t.Context(), src)
	var titles []string
	for _, a := range doc.Alerts {
		titles = append(titles, a.Level+": "+a.Title)
	}
	if got := strings.Join(titles, "; "); got != "error: Outbox writes are failing; error: Outbox file was corrupt at startup; error: Unreadable outbox records at startup" {
		t.Errorf("alerts = %q", got)
	}
	if d := doc.Alerts[0].Detail; !strings.Contains(d, "3 reports are held in memory only") || !strings.Contains(d, "no space left on device") || !strings.Contains(d, "2026-08-01T11:59:00Z") {
		t.Errorf("write alert = %q", d)
	}
	if o := doc.Outbox; !o.WriteFailing || o.NotDurable != 3 || o.WriteFailures != 12 || o.Recovery == nil || o.Recovery.Salvaged != 2 || len(o.Recovery.UnreadableRecords) != 1 {
		t.Errorf("outbox = %+v", o)
	}
	html := renderPage(t, m, src)
	alertsAt, summaryAt := strings.Index(html, `<section id="alerts">`), strings.Index(html, `id="summary"`)
	if alertsAt < 0 || alertsAt > summaryAt {
		t.Fatalf("alerts at %d, summary at %d: want the alerts first", alertsAt, summaryAt)
	}
	alerts := html[alertsAt:summaryAt]
	for _, want := range []string{`class="alert error"`, "Outbox writes are failing", "held in memory only", "leasing is paused",
		"moved aside to /var/lib/dragonfly/outbox.db.corrupt-20260801T110000", "checksum mismatch", "1 record in the outbox are not reports"} {
		if !strings.Contains(alerts, want) {
			t.Errorf("alert box lacks %q:\n%s", want, alerts)
		}
	}
	if !strings.Contains(section(t, html, `id="summary"`), "writes failing") {
		t.Error("outbox card does not say writes fail")
	}

	// Healthy: no alert at all.
	m2 := New(Config{Now: c.Now})
	if doc := m2.Status(t.Context(), emptySource()); len(doc.Alerts) != 0 {
		t.Errorf("healthy alerts = %+v", doc.Alerts)
	}
	if strings.Contains(renderPage(t, m2, emptySource()), `class="alert`) {
		t.Error("healthy page shows an alert")
	}
}

// TestBadgesAndGrades renders results of every grade and failures whose
// reports stand in every state, and checks the classes the page gives them.
func TestBadgesAndGrades(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now})
	for _, s := range []int64{0, 4, 7, 14, 15} {
		o := outcome(fmt.Sprintf("score%d", s), 1, "", c.Now(), c.Now(), "s1-w1")
		o.Package.Score = s
		m.JobFinished(o)
		m.Reported(outbox.Report{Name: o.Job.Name, Version: "1.0", Success: &outbox.Success{Score: s}}, nil, 0)
	}
	m.JobFinished(outcome("failedok", 1, "archive truncated", c.Now(), c.Now(), "s1-w1"))
	m.Reported(outbox.Report{Name: "failedok", Version: "1.0", Reason: "archive truncated"}, nil, 0)
	m.JobFinished(outcome("failedq", 1, "limit", c.Now(), c.Now(), "s1-w1"))
	m.JobFinished(outcome("refused", 1, "", c.Now(), c.Now(), "s1-w1"))
	m.Reported(outbox.Report{Name: "refused", Version: "1.0", Success: &outbox.Success{}}, &mainframe.APIError{Status: 409}, 0)

	html := renderPage(t, m, emptySource())
	results := section(t, html, `<table id="results"`)
	scoreRE := regexp.MustCompile(`<span class="score (\w+)" title="\w+">(-?\d+)</span>`)
	grades := map[string]string{}
	for _, mt := range scoreRE.FindAllStringSubmatch(results, -1) {
		grades[mt[2]] = mt[1]
	}
	if fmt.Sprint(grades) != "map[0:none 12:high 14:high 15:critical 4:low 7:medium]" {
		t.Errorf("score classes = %v", grades)
	}
	if grades["4"] == grades["14"] {
		t.Error("4 and 14 wear the same grade")
	}
	// Each grade has its own colours in the stylesheet.
	css := map[string]string{}
	for _, g := range Grades() {
		re := regexp.MustCompile(`\.score\.` + g.Grade + ` \{ ([^}]*)\}`)
		mt := re.FindStringSubmatch(html)
		if mt == nil {
			t.Fatalf("no style for grade %s", g.Grade)
		}
		for other, style := range css {
			if style == mt[1] {
				t.Errorf("grades %s and %s look alike: %s", other, g.Grade, style)
			}
		}
		css[g.Grade] = mt[1]
	}
	legend := stdhtml.UnescapeString(section(t, html, `id="score-legend"`))
	for _, want := range []string{`class="score low" title="low">1-4<`, `class="score high" title="high">10-14<`, `class="score critical" title="critical">15+<`} {
		if !strings.Contains(legend, want) {
			t.Errorf("legend lacks %s", want)
		}
	}

	failures := section(t, html, `<table id="failures"`)
	rowOf := func(name string) string {
		for _, row := range strings.Split(failures, "<tr>") {
			if strings.Contains(row, "<b>"+name+"</b>") {
				return row
			}
		}
		t.Fatalf("no failure row for %s", name)
		return ""
	}
	if row := rowOf("failedok"); strings.Contains(row, `class="state accepted"`) || !strings.Contains(row, `class="state failure-reported">failure reported<`) {
		t.Errorf("accepted failure report row:\n%s", row)
	}
	if row := rowOf("failedq"); !strings.Contains(row, `class="state failure-queued">failure queued<`) {
		t.Errorf("queued failure report row:\n%s", row)
	}
	if row := rowOf("refused"); !strings.Contains(row, `class="state conflict">conflict<`) {
		t.Errorf("refused report row:\n%s", row)
	}
	if !strings.Contains(results, `class="state accepted">accepted<`) {
		t.Error("an accepted success does not wear the accepted badge")
	}
	acceptedCSS := regexp.MustCompile(`\.state\.accepted \{ ([^}]*)\}`).FindStringSubmatch(html)
	failureCSS := regexp.MustCompile(`\.state\.failure-reported \{ ([^}]*)\}`).FindStringSubmatch(html)
	if acceptedCSS == nil || failureCSS == nil || acceptedCSS[1] == failureCSS[1] {
		t.Errorf("accepted %v and failure-reported %v styles must differ", acceptedCSS, failureCSS)
	}
}

// TestPlurals: one of a thing is singular on the page.
func TestPlurals(t *testing.T) {
	m := New(Config{})
	src := emptySource()
	now := time.Now()
	src.snap.Sessions = []coordinator.SessionState{{SessionInfo: coordinator.SessionInfo{SessionID: "s1", WorkerID: "w1", Identity: "w1", Started: now}, LastSeen: now}}
	src.snap.Dispatch.Sessions = []dispatch.SessionLoad{{ID: "s1", Identity: "w1", Slots: 2, Outstanding: 1}}
	src.snap.Dispatch.JobsInFlight, src.snap.Dispatch.TasksRunning = 1, 1
	src.snap.Dispatch.SpotChecks = dispatch.SpotChecks{Rate: 0.02, Identities: 1}
	html := renderPage(t, m, src)
	for _, want := range []string{"<title>Dragonfly Fleet · 1 worker · 1 job in flight</title>", "1 worker connected", "1 task running",
		"off: fewer than two workers (rate 2%, 1 identity ready)"} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"1 workers", "1 jobs", "1 tasks", "1 identities"} {
		if strings.Contains(html, bad) {
			t.Errorf("page says %q", bad)
		}
	}
}

// TestSpotCheckState: the page and metrics say whether spot checks run, and
// why not.
func TestSpotCheckState(t *testing.T) {
	for _, tt := range []struct {
		sc     dispatch.SpotChecks
		state  string
		active float64
	}{
		{dispatch.SpotChecks{Rate: 0.02, Identities: 3, Active: true}, "on", 1},
		{dispatch.SpotChecks{Rate: 0.02, Identities: 1}, "off: fewer than two workers", 0},
		{dispatch.SpotChecks{Rate: -1, Identities: 5}, "off: DRAGONFLY_VERIFY_RATE is 0", 0},
	} {
		m := New(Config{})
		src := emptySource()
		src.snap.Dispatch.SpotChecks = tt.sc
		src.snap.Dispatch.Counters = dispatch.Counters{VerifyPicked: 9, VerifyAgreed: 7, VerifyMismatch: 1, VerifyDecided: 1}
		m.DispatchEvent(dispatch.Event{Kind: dispatch.EventVerifyMismatch, Name: "p", Version: "1", Identities: []string{"a", "b"}, Reason: "scores 0 and 15 differ"})
		m.DispatchEvent(dispatch.Event{Kind: dispatch.EventVerifyPicked})
		doc := m.Status(t.Context(), src)
		s := doc.SpotChecks
		if s.State != tt.state || s.Active != (tt.active == 1) || s.Picked != 9 || s.Mismatches != 1 || len(s.Recent) != 1 || s.Recent[0].Kind != SpotMismatch {
			t.Errorf("%+v: spot checks = %+v", tt.sc, s)
		}
		got := scrape(t, m, src)
		if got["dragonfly_spot_checks_active"] != tt.active || got[`dragonfly_dispatch_events_total{kind="verify_mismatch"}`] != 1 ||
			got[`dragonfly_dispatch_events_total{kind="verify_picked"}`] != 1 {
			t.Errorf("%+v: active %v, events %v", tt.sc, got["dragonfly_spot_checks_active"], got)
		}
		html := renderPage(t, m, src)
		if !strings.Contains(html, `id="spot-state">`+map[float64]string{1: "on", 0: "off"}[tt.active]+`<`) {
			t.Errorf("%+v: summary card wrong", tt.sc)
		}
		table := section(t, html, `<table id="spot-checks"`)
		if !strings.Contains(table, "scores 0 and 15 differ") || !strings.Contains(table, `class="kind mismatch"`) {
			t.Errorf("spot check table lacks the mismatch:\n%s", table)
		}
	}
}

// TestRuleMatches: dragonfly_rule_matches_total counts the current rule
// set's rules only, and starts over when the set changes.
func TestRuleMatches(t *testing.T) {
	m := New(Config{MaxRules: 3, TopRules: 2})
	src := emptySource()
	finish := func(hash string, rules ...string) {
		m.JobFinished(dispatch.Outcome{Job: dispatch.Job{Name: "p", Version: "1", RulesHash: hash}, Package: score.Package{RulesMatched: rules}})
	}
	finish("A", "r1", "r2")
	finish("A", "r1")
	finish("A", "r1", "r2", "r3", "r4") // r4: beyond MaxRules
	m.JobFinished(dispatch.Outcome{Job: dispatch.Job{Name: "f", RulesHash: "A"}, Failure: "x", Package: score.Package{RulesMatched: []string{"r1"}}})
	src.snap.RulesHash = "A"
	got := scrape(t, m, src)
	series := func(got map[string]float64) string {
		var out []string
		for k, v := range got {
			if strings.HasPrefix(k, "dragonfly_rule_matches_total") {
				out = append(out, fmt.Sprintf("%s=%v", strings.TrimPrefix(k, "dragonfly_rule_matches_total"), v))
			}
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	if s := series(got); s != `{rule="r1"}=3 {rule="r2"}=2 {rule="r3"}=1` {
		t.Errorf("rule A series = %s", s)
	}
	doc := m.Status(t.Context(), src)
	if fmt.Sprint(doc.TopRules) != "[{r1 3} {r2 2}]" {
		t.Errorf("top rules = %v", doc.TopRules)
	}
	if top := section(t, renderPage(t, m, src), `<table id="top-rules"`); !strings.Contains(top, "r1</td><td class=\"num\">3<") {
		t.Errorf("top rules table:\n%s", top)
	}

	// The rules change: A's series go, B's start from zero; a job scanned
	// with A that finishes late does not count for B.
	src.snap.RulesHash = "B"
	if s := series(scrape(t, m, src)); s != "" {
		t.Errorf("after the change, before a match: %s", s)
	}
	finish("B", "r1", "r9")
	finish("A", "r2")
	if s := series(scrape(t, m, src)); s != `{rule="r1"}=1 {rule="r9"}=1` {
		t.Errorf("rule B series = %s", s)
	}
	if doc := m.Status(t.Context(), src); fmt.Sprint(doc.TopRules) != "[{r1 1} {r9 1}]" {
		t.Errorf("top rules of B = %v", doc.TopRules)
	}
	// Rule sets counted are bounded: the least recently matched is forgotten.
	for _, h := range []string{"C", "D", "E"} {
		finish(h, "x")
	}
	m.rules.mu.Lock()
	_, keptA := m.rules.byHash["A"]
	n := len(m.rules.byHash)
	m.rules.mu.Unlock()
	if n != 4 || keptA {
		t.Errorf("rule sets kept %d (A kept %v); want 4, A forgotten", n, keptA)
	}
}

// TestBuildInfo: dragonfly_build_info carries version, revision and Go
// release.
func TestBuildInfo(t *testing.T) {
	got := scrape(t, New(Config{Version: "v1.2.3", Revision: "0123abcd", GoVersion: "go1.99"}), emptySource())
	if v, ok := got[`dragonfly_build_info{goversion="go1.99",revision="0123abcd",version="v1.2.3"}`]; !ok || v != 1 {
		t.Errorf("build_info with the given labels missing: %v", got)
	}
	got = scrape(t, New(Config{}), emptySource())
	key := `dragonfly_build_info{goversion="` + runtime.Version() + `",revision="unknown",version="unknown"}`
	if v, ok := got[key]; !ok || v != 1 {
		t.Errorf("default build_info %s missing", key)
	}
}

// TestHealthEndpoints: /healthz answers while HTTP is served; /readyz only
// while the gRPC server serves and the coordinator is not draining.
func TestHealthEndpoints(t *testing.T) {
	api := newFakeAPI()
	mon := New(Config{})
	obs := &eventObserver{Monitor: mon, reported: make(chan outbox.Report, 100)}
	c, err := coordinator.New(coordinator.Config{
		API: api, LoadDuration: 10 * time.Millisecond, HeartbeatInterval: time.Minute,
		DrainTimeout: 5 * time.Second, FlushTimeout: time.Second, Observer: obs,
		Prefetch: coordinator.DefaultPrefetch, VerifyRate: coordinator.DefaultVerifyRate,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := coordinator.NewServer(c, coordinator.ServerConfig{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	h := mon.Handler(c, srv.Ready)
	probe := func(path string) (int, string) {
		rec := serve(h, path)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	if code, body := probe("/healthz"); code != 200 || body != "ok" {
		t.Errorf("/healthz before Serve = %d %q", code, body)
	}
	if code, body := probe("/readyz"); code != 503 || body != "not ready: not serving workers" {
		t.Errorf("/readyz before Serve = %d %q, want 503", code, body)
	}

	f := &fleet{t: t, c: c, mon: mon, obs: obs, api: api, lis: newBufListener(), srv: srv}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(f.lis)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		srv.Stop(0)
		<-served
		c.WaitSessions()
	}()
	w := f.worker("w-probe", 1, nil) // connected: Serve runs
	if code, body := probe("/readyz"); code != 200 || body != "ready" {
		t.Errorf("/readyz while serving = %d %q", code, body)
	}
	// API trouble does not make it unready.
	mon.APIObserver().Call("POST /jobs", 503, time.Millisecond)
	mon.Leased(0, errors.New("POST /jobs: 503"))
	if code, _ := probe("/readyz"); code != 200 {
		t.Errorf("/readyz with API errors = %d, want 200", code)
	}
	cancel() // shutdown begins: the coordinator drains its workers
	<-w.drained
	if code, body := probe("/readyz"); code != 503 || body != "not ready: draining" {
		t.Errorf("/readyz while draining = %d %q", code, body)
	}
	if code, _ := probe("/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d", code)
	}
	if doc := mon.Status(t.Context(), c); !doc.Draining || !strings.Contains(fmt.Sprint(doc.Alerts), "Draining") {
		t.Errorf("document while draining: draining %v, alerts %+v", doc.Draining, doc.Alerts)
	}
}

// scrape gathers the Monitor's metrics with src's state into
// "name{labels}" -> value; histograms give name_count and name_sum.
func scrape(t *testing.T, m *Monitor, src Source) map[string]float64 {
	t.Helper()
	mfs, err := m.Gatherer(src).Gather()
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

// renderPage fetches /status of the Monitor over src.
func renderPage(t *testing.T, m *Monitor, src Source) string {
	t.Helper()
	html, ct := get(t, m.Handler(src, nil), "/status")
	if !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/status content type %q", ct)
	}
	return html
}

// TestCoordinator watches a real coordinator with a worker over bufconn.
func TestCoordinator(t *testing.T) {
	f := finishJobs(t, Config{Runtime: true, Version: "v-test", QueueRefresh: time.Hour})
	// One more worker that never gets rules work: it shows up idle.
	f.worker("w-beta", 4, nil)

	doc := f.status()
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
	if a.Host != "host-w-alpha" || a.Identity != "w-alpha" || a.Slots != 2 || a.JobsDone != 3 || a.TasksDone != 4 || a.LastHeartbeat.IsZero() ||
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
		if r.Score != 7 || r.Grade != GradeMedium || fmt.Sprint(r.Rules) != "[evil_setup]" || fmt.Sprint(r.Workers) != "[w-alpha]" || r.InspectorURL == "" {
			t.Errorf("result = %+v", r)
		}
	}
	// w-beta's rules may not be ready yet: the state agrees with the
	// workers of the same snapshot.
	ready := 0
	for _, w := range doc.Workers {
		if len(w.RulesHashes) > 0 {
			ready++
		}
	}
	if sc := doc.SpotChecks; sc.Identities != ready || sc.Active != (ready >= 2) || (sc.State == "on") != sc.Active || sc.Rate != 0.02 {
		t.Errorf("spot checks = %+v with %d workers ready", sc, ready)
	}
	if fmt.Sprint(doc.TopRules) != "[{evil_setup 2}]" {
		t.Errorf("top rules = %v", doc.TopRules)
	}
	if doc.API.Queue == nil || doc.API.Queue.TotalBacklog != 0 {
		t.Errorf("queue = %+v", doc.API.Queue)
	}

	got := scrape(t, f.mon, f.c)
	for k, want := range map[string]float64{
		"dragonfly_workers_connected":                        2,
		"dragonfly_scanner_slots":                            6,
		"dragonfly_scanner_slots_busy":                       0,
		"dragonfly_jobs_in_flight":                           0,
		"dragonfly_tasks_dispatched_total":                   4,
		"dragonfly_outbox_reports":                           0,
		"dragonfly_quarantined_workers":                      0,
		`dragonfly_rules_info{hash="0123456789abcdef0123"}`:  1,
		`dragonfly_rule_matches_total{rule="evil_setup"}`:    2,
		`dragonfly_jobs_completed_total{outcome="success"}`:  1,
		`dragonfly_jobs_completed_total{outcome="failure"}`:  1,
		`dragonfly_jobs_completed_total{outcome="conflict"}`: 1,
		"dragonfly_fleet_distributions_per_job":              4.0 / 3,
		"dragonfly_fleet_max_workers":                        100,
		"dragonfly_fleet_desired_workers":                    0,
		"dragonfly_dispatch_backlog_tasks":                   0,
		"dragonfly_dispatch_backlog_oldest_age_seconds":      0,
		`dragonfly_lease_requests_total{result="jobs"}`:      f.mustPositive(got, `dragonfly_lease_requests_total{result="jobs"}`),
		"dragonfly_jobs_leased_total":                        3,
		`dragonfly_api_queue_jobs{state="queued"}`:           0,
		`dragonfly_api_queue_polls_total{result="ok"}`:       1,
		`dragonfly_build_info{goversion="` + runtime.Version() + `",revision="unknown",version="v-test"}`: 1,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}

	// The HTTP surface.
	h := f.handler()
	body, ct := get(t, h, "/status.json")
	if !strings.HasPrefix(ct, "application/json") {
		t.Errorf("/status.json content type %q", ct)
	}
	var fromJSON Document
	if err := json.Unmarshal([]byte(body), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if len(fromJSON.Workers) != 2 || len(fromJSON.Results) != 2 || fromJSON.Fleet.JobsSucceeded != 2 || fromJSON.Results[0].Workers[0] != "w-alpha" {
		t.Errorf("/status.json = %+v", fromJSON)
	}
	html, ct := get(t, h, "/status")
	if !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/status content type %q", ct)
	}
	for _, want := range []string{`<meta http-equiv="refresh" content="5">`, "w-alpha", "host-w-beta", "evilpkg", "raced", "evil_setup",
		"https://inspector.pypi.io/project/evilpkg/1.0/", "DRAGONFLY_MAX_FILE_SIZE", `class="state conflict"`, "0123456789ab", "2 workers connected"} {
		if !strings.Contains(html, want) {
			t.Errorf("/status lacks %q", want)
		}
	}
	if strings.Contains(html, "<script") {
		t.Error("/status has a script")
	}
	if rec := serve(h, "/"); rec.Code != http.StatusFound || rec.Header().Get("Location") != "/status" {
		t.Errorf("/ = %d %q, want a redirect to /status", rec.Code, rec.Header().Get("Location"))
	}
	if body, _ := get(t, h, "/readyz"); strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz = %q", body)
	}
}

func (f *fleet) mustPositive(got map[string]float64, key string) float64 {
	if got[key] <= 0 {
		f.t.Errorf("%s = %v, want > 0", key, got[key])
	}
	return got[key]
}

// serve answers GET path from h, without a network.
func serve(h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// get serves a page that must answer 200: its body and content type.
func get(t *testing.T, h http.Handler, path string) (body, contentType string) {
	t.Helper()
	rec := serve(h, path)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s = %d: %s", path, rec.Code, rec.Body)
	}
	return rec.Body.String(), rec.Header().Get("Content-Type")
}

// TestEmptyPage renders a Monitor that has seen nothing.
func TestEmptyPage(t *testing.T) {
	m := New(Config{})
	h := m.Handler(&fakeSource{}, nil)
	html, _ := get(t, h, "/status")
	for _, want := range []string{"No worker connected.", "No job finished yet.", "No failure.", "No mismatch.", "No rule matched yet.", "not loaded", "not asked yet",
		"off: DRAGONFLY_VERIFY_RATE is 0"} {
		if !strings.Contains(html, want) {
			t.Errorf("empty /status lacks %q", want)
		}
	}
	body, _ := get(t, h, "/status.json")
	for _, want := range []string{`"workers": []`, `"recent_results": []`, `"alerts": []`, `"quarantined": []`, `"top_rules": []`, `"recent": []`} {
		if !strings.Contains(body, want) {
			t.Errorf("empty /status.json should have empty lists, not null (%s):\n%s", want, body)
		}
	}
}

// TestPromtool lints the coordinator's exposition after activity. promtool
// comes with make setup-test: without it the test fails.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found in PATH: run make setup-test (Debian package prometheus)")
	}
	f := finishJobs(t, Config{Runtime: true})
	api := f.mon.APIObserver()
	api.Call("POST /jobs", 200, 15*time.Millisecond)
	api.Call("PUT /package", 0, time.Second)
	api.TokenRefresh(nil)
	f.mon.DispatchEvent(dispatch.Event{Kind: dispatch.EventQuarantine, Identity: "w-x", Reason: "lied"})
	h := f.handler()
	body, _ := get(t, h, "/metrics")
	for _, want := range []string{"dragonfly_api_queue_jobs{", "dragonfly_rules_info{", "dragonfly_rule_matches_total{", "dragonfly_fleet_desired_workers ",
		"dragonfly_spot_checks_active ", "dragonfly_quarantined_workers ", "dragonfly_build_info{goversion=", "go_goroutines "} {
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
	f := startFleet(t, newFakeAPI(), Config{})
	f.worker("w-race", 2, nil)
	h := f.handler()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				name := fmt.Sprintf("p%d-%d", g, i)
				f.mon.Leased(1, nil)
				f.mon.JobFinished(outcome(name, 2, "", time.Now(), time.Now(), "s1-w-race"))
				f.mon.Reported(outbox.Report{Name: name, Version: "1.0", Success: &outbox.Success{}}, nil, 0)
				f.mon.APIObserver().Call("PUT /package", 200, time.Millisecond)
				f.mon.DispatchEvent(dispatch.Event{Kind: dispatch.EventVerifyMismatch, Name: name, Identities: []string{"w-race", "x"}})
			}
		})
	}
	for range 20 {
		get(t, h, "/metrics")
		get(t, h, "/status")
		get(t, h, "/status.json")
	}
	wg.Wait()
	doc := f.status()
	if doc.Fleet.JobsSucceeded != 800 || doc.Fleet.ReportsAccepted != 800 || len(doc.Results) != 50 || len(doc.SpotChecks.Recent) != 50 {
		t.Errorf("after 800 jobs: %+v, %d results", doc.Fleet, len(doc.Results))
	}
	if len(doc.Workers) != 1 || doc.Workers[0].JobsDone != 800 {
		t.Errorf("workers = %+v", doc.Workers)
	}
}

// TestReportAbandoned: a report given up after the report max age is a final
// outcome of its own, on the metrics, the counts and the release's entry.
func TestReportAbandoned(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now, Version: "v9", ErrorWindow: 15 * time.Minute})
	src := emptySource()
	start := c.Now()
	c.Advance(time.Second)
	m.JobFinished(outcome("slow", 1, "", start, c.Now(), "s1-w1"))
	r := outbox.Report{Name: "slow", Version: "1.0", Success: &outbox.Success{Score: 12}}
	m.Reported(r, errors.New("PUT /package: 503 Service Unavailable"), time.Millisecond)
	m.ReportAbandoned(r, errors.New("PUT /package: 503 Service Unavailable"))

	got := scrape(t, m, src)
	if v := got[`dragonfly_jobs_completed_total{outcome="abandoned"}`]; v != 1 {
		t.Errorf("abandoned outcome = %v, want 1", v)
	}
	if v := got[`dragonfly_jobs_completed_total{outcome="success"}`]; v != 0 {
		t.Errorf("success outcome = %v, want 0", v)
	}
	doc := m.Status(t.Context(), src)
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

// TestHostileStrings: strings from workers and the API are bounded before
// they are kept.
func TestHostileStrings(t *testing.T) {
	m := New(Config{})
	huge := strings.Repeat("x", 1<<20)
	m.DispatchEvent(dispatch.Event{Kind: dispatch.EventVerifyMismatch, Reason: huge})
	m.JobFinished(dispatch.Outcome{Job: dispatch.Job{Name: "p"}, Failure: huge})
	m.Reported(outbox.Report{Name: "q"}, &mainframe.APIError{Status: 409, Detail: huge}, 0)
	m.Leased(0, errors.New(huge))
	m.SessionEnded(coordinator.SessionInfo{SessionID: "s"}, errors.New(huge))
	src := emptySource()
	src.set(func(_ *coordinator.Snapshot, v *coordinator.QueueView) { v.Err = errors.New(huge) })
	doc := m.Status(t.Context(), src)
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > 64<<10 {
		t.Errorf("status document of %d bytes from hostile strings; want them cut", len(body))
	}
	if !strings.Contains(doc.SpotChecks.Recent[0].Reason, "…[cut ") {
		t.Errorf("reason not marked as cut: %q", doc.SpotChecks.Recent[0].Reason[len(doc.SpotChecks.Recent[0].Reason)-40:])
	}
}

// TestRefusalMetrics: what the coordinator refused at its door is one
// counter by reason, every reason present from the start.
func TestRefusalMetrics(t *testing.T) {
	m := New(Config{Now: time.Now})
	src := emptySource()
	got := scrape(t, m, src)
	for _, r := range []string{"stream", "pending_evicted", "pending_expired", "conns_over_cap", "sessions_over_identity_cap", "results_repeated", "results_rules_unknown"} {
		if v, ok := got[`dragonfly_refusals_total{reason="`+r+`"}`]; !ok || v != 0 {
			t.Errorf("refusals %s = %v (present %v), want 0", r, v, ok)
		}
	}
	src.set(func(s *coordinator.Snapshot, _ *coordinator.QueueView) {
		s.Refusals = coordinator.Refusals{Streams: 7, PendingEvicted: 3, SessionsOverIdentityCap: 2, ResultsRulesUnknown: 1}
	})
	got = scrape(t, m, src)
	for r, want := range map[string]float64{"stream": 7, "pending_evicted": 3, "pending_expired": 0, "sessions_over_identity_cap": 2, "results_rules_unknown": 1} {
		if v := got[`dragonfly_refusals_total{reason="`+r+`"}`]; v != want {
			t.Errorf("refusals %s = %v, want %v", r, v, want)
		}
	}
}

// TestJobFailedAtAdmissionNeedsNoSlots: a release with more distributions
// than DRAGONFLY_MAX_DISTRIBUTIONS fails when admitted, without a task; its
// distributions do not count in the average dragonfly_fleet_desired_workers
// uses (one such job among two made the average 65 and asked for the
// fleet's cap for a backlog of 10 one-wheel jobs).
func TestJobFailedAtAdmissionNeedsNoSlots(t *testing.T) {
	api := newFakeAPI()
	f := startFleet(t, api, Config{QueueRefresh: time.Hour})
	f.worker("w-alpha", 2, nil)
	var wheels []string
	for i := range coordinator.DefaultMaxDistributions + 1 {
		wheels = append(wheels, fmt.Sprintf("https://files.example/wheels-1.0-%d.whl", i))
	}
	api.Add(testJob("wheels", wheels...), testJob("small", "https://files.example/small-1.0.tar.gz"))
	f.waitReports(2)

	doc := f.status()
	if doc.Fleet.JobsFailed != 1 || doc.Fleet.JobsSucceeded != 1 {
		t.Fatalf("fleet = %+v, want the wheels job failed and small scanned", doc.Fleet)
	}
	// One task over two jobs.
	if got := doc.Fleet.DistributionsPerJob; got != 0.5 {
		t.Errorf("distributions per job = %v, want 0.5 (the failed job queued no task)", got)
	}
	// 10 jobs waiting at the API, each of about half a task, on workers of
	// 2 slots: 3 workers.
	src := &fakeSource{view: coordinator.QueueView{Fetched: time.Now(), Status: mainframe.QueueStatus{Queued: 10, TotalBacklog: 10}}}
	got := scrape(t, f.mon, src)
	if d := got["dragonfly_fleet_desired_workers"]; d != 3 {
		t.Errorf("dragonfly_fleet_desired_workers = %v, want 3", d)
	}
	if d := got["dragonfly_fleet_distributions_per_job"]; d != 0.5 {
		t.Errorf("dragonfly_fleet_distributions_per_job = %v, want 0.5", d)
	}
}

// releaseWhileReporting holds the first report until the test lets it
// through; the test does once the API has leased its release again and the
// coordinator has taken that lease in (it asked for the next one).
type releaseWhileReporting struct {
	*fakeAPI
	held     chan struct{} // closed when the first report is held
	release  chan struct{} // closed by the test to let it through
	reLeased chan struct{} // closed once the re-lease was taken in
	first    sync.Once
	signal   sync.Once
	mu       sync.Mutex
	leased   bool // the re-lease (attempt 2) was handed out
}

func (a *releaseWhileReporting) Report(ctx context.Context, r mainframe.Report) error {
	first := false
	a.first.Do(func() { first = true })
	if first {
		close(a.held)
		<-a.release
	}
	return a.fakeAPI.Report(ctx, r)
}

func (a *releaseWhileReporting) Lease(ctx context.Context, n int) ([]mainframe.Job, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.leased {
		// The loader asks again only after it admitted the last answer.
		a.signal.Do(func() { close(a.reLeased) })
	}
	jobs, err := a.fakeAPI.Lease(ctx, n)
	for _, j := range jobs {
		if j.Attempt != nil && *j.Attempt == 2 {
			a.leased = true
		}
	}
	return jobs, err
}

// TestReportSupersededWhileSendingCountsOnce: a report whose release the API
// leased again while the report was being sent is sent again under the new
// lease; the job reaches its final fate once, so it counts once in
// dragonfly_jobs_completed_total and in the status document (it counted
// twice: the superseded attempt, and the one that stands).
func TestReportSupersededWhileSendingCountsOnce(t *testing.T) {
	api := newFakeAPI()
	over := &releaseWhileReporting{fakeAPI: api, held: make(chan struct{}), release: make(chan struct{}), reLeased: make(chan struct{})}
	f := startFleetOver(t, api, over, Config{QueueRefresh: time.Hour})
	f.worker("w-alpha", 1, nil)
	const url = "https://files.example/p-1.0.tar.gz"
	api.Add(testJob("p", url))
	<-over.held
	again := testJob("p", url)
	again.Attempt, again.AssignmentID = intp(2), strp("as-p-2")
	api.Add(again)
	<-over.reLeased
	close(over.release)

	reports := api.WaitReports(t, 2)
	if a := reports[1].AssignmentID; a == nil || *a != "as-p-2" {
		t.Fatalf("second report under assignment %v, want as-p-2 (the new lease)", a)
	}
	f.waitReports(1)
	f.stop() // every report attempt observed
	if n := len(f.obs.reported); n != 0 {
		t.Errorf("%d more report attempts observed, want 1 in all: the superseded one's outcome does not stand", n)
	}
	got := scrape(t, f.mon, f.c)
	total := 0.0
	for _, o := range []string{"success", "failure", "conflict", "rejected", "abandoned", "dropped_stale"} {
		total += got[`dragonfly_jobs_completed_total{outcome="`+o+`"}`]
	}
	if total != 1 || got[`dragonfly_jobs_completed_total{outcome="success"}`] != 1 {
		t.Errorf("dragonfly_jobs_completed_total: %v in all, %v success; want the one job once, success",
			total, got[`dragonfly_jobs_completed_total{outcome="success"}`])
	}
	if fl := f.status().Fleet; fl.ReportsAccepted != 1 || fl.JobsSucceeded != 1 {
		t.Errorf("fleet = %+v, want 1 report accepted for 1 job", fl)
	}
}

// TestJobsCompletedHelpNamesEveryDrop: the coordinator reports a job
// abandoned past the max job age (workers held its tasks) through
// JobDropped, as one whose lease ended with a distribution waiting; both
// count as dropped_stale, and its HELP says so (it said "lease ended before
// dispatch": an operator would look for idle workers, not for stuck ones).
func TestJobsCompletedHelpNamesEveryDrop(t *testing.T) {
	mfs, err := New(Config{}).Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dragonfly_jobs_completed_total" {
			continue
		}
		help := mf.GetHelp()
		for _, want := range []string{"distribution still waiting for a worker", "past the max job age", "cannot be encoded"} {
			if !strings.Contains(help, want) {
				t.Errorf("HELP %q lacks %q", help, want)
			}
		}
		return
	}
	t.Fatal("no dragonfly_jobs_completed_total")
}

// TestDispatcherCountersAreExported: each of the dispatcher's task counters
// is its own series, read from the snapshot at the scrape.
func TestDispatcherCountersAreExported(t *testing.T) {
	m := New(Config{Now: testkit.NewClock().Now})
	src := emptySource()
	src.set(func(s *coordinator.Snapshot, _ *coordinator.QueueView) {
		s.Dispatch.Counters.TasksAssigned = 11
		s.Dispatch.Counters.TasksRequeued = 7
		s.Dispatch.Counters.TasksCancelled = 5
		s.Dispatch.Counters.ResultsLate = 3
	})
	got := scrape(t, m, src)
	for k, want := range map[string]float64{
		"dragonfly_tasks_dispatched_total": 11,
		"dragonfly_tasks_requeued_total":   7,
		"dragonfly_tasks_cancelled_total":  5,
		"dragonfly_results_late_total":     3,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

// TestPageShowsHostileRunes: a worker id, host or version (from a token
// holder's Hello) and a package name (from the API) reach the page with
// their control, bidi and invisible runes escaped (\x1b, \u202e, \u200b):
// a right-to-left override reordered the rest of its cell ("w3\u202egnp.exe"
// read "w3exe.png", and a result's workers "x\u202e, w1" read "1w ,x"), a
// zero-width space made a second "w1", and raw controls reached the page.
// The JSON document keeps the real bytes.
func TestPageShowsHostileRunes(t *testing.T) {
	m := New(Config{})
	src := emptySource()
	now := time.Now()
	id := "w3\x1b]0;t\x07\r\u202egnp.exe\u200b"
	src.snap.Sessions = []coordinator.SessionState{{SessionInfo: coordinator.SessionInfo{SessionID: "s1-" + id, WorkerID: id, Identity: id,
		Host: "h\u2066ost", Version: "v\u00ad1", Started: now}, LastSeen: now}}
	src.snap.Dispatch.Sessions = []dispatch.SessionLoad{{ID: "s1-" + id, Identity: id, Slots: 2}}
	m.JobFinished(dispatch.Outcome{Job: dispatch.Job{Name: "pkg\u202e", Version: "1.0"}, Identities: []string{id, "w1"}, Finished: now})
	html := renderPage(t, m, src)
	if i := strings.IndexFunc(html, func(r rune) bool {
		return r != '\n' && r != '\t' && r != '\r' && !strconv.IsPrint(r)
	}); i >= 0 {
		t.Errorf("page carries %q at %d: %q", html[i:i+3], i, html[max(i-40, 0):min(i+40, len(html))])
	}
	for _, want := range []string{`w3\x1b]0;t\a\r\u202egnp.exe\u200b`, `h\u2066ost`, `v\u00ad1`, `pkg\u202e`} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	body, _ := get(t, m.Handler(src, nil), "/status.json")
	var doc Document
	if err := json.Unmarshal([]byte(body), &doc); err != nil || len(doc.Workers) != 1 || doc.Workers[0].WorkerID != id {
		t.Errorf("status.json workers = %+v (%v), want the id's real bytes", doc.Workers, err)
	}
}

// TestPageShowsIgnorableRunes: a worker id ending in a rune that
// strconv.IsPrint calls printable but a browser draws as nothing (a
// combining grapheme joiner, a Hangul filler, a variation selector) is
// shown escaped: it does not read as the worker "w1".
func TestPageShowsIgnorableRunes(t *testing.T) {
	m := New(Config{})
	src := emptySource()
	now := time.Now()
	id := "w1\u034f\u3164\ufe0f"
	src.snap.Sessions = []coordinator.SessionState{{SessionInfo: coordinator.SessionInfo{SessionID: "s1", WorkerID: id, Identity: id, Started: now}, LastSeen: now}}
	src.snap.Dispatch.Sessions = []dispatch.SessionLoad{{ID: "s1", Identity: id, Slots: 2}}
	html := renderPage(t, m, src)
	if strings.ContainsAny(html, "\u034f\u3164\ufe0f") || !strings.Contains(html, `w1\u034f\u3164\ufe0f`) {
		t.Errorf("page shows worker %q raw (or lost it)", id)
	}
}
