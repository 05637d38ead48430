package devapi

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestDownloads(t *testing.T) {
	data := []byte("the sdist bytes")
	f := newFixture(t, Config{Files: []File{{Name: "pkg-1.0.tar.gz", Data: data}}})
	u, err := url.Parse(f.lease(1)[0].Distributions[0])
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/packages/"), "/")
	if len(parts) != 4 || len(parts[0]) != 2 || len(parts[1]) != 2 || len(parts[2]) != 60 || parts[3] != "pkg-1.0.tar.gz" {
		t.Fatalf("URL path %q is not /packages/h2/h2/h60/file", u.Path)
	}
	rec := f.do(http.MethodGet, u.Path, nil)
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), data) || rec.Header().Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Fatalf("GET: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	rec = f.do(http.MethodHead, u.Path, nil)
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Fatalf("HEAD: %d %v", rec.Code, rec.Header())
	}
	if rec := f.do(http.MethodGet, "/packages/00/00/00/pkg-1.0.tar.gz", nil); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown file: %d", rec.Code)
	}
	if rec := f.do(http.MethodPut, u.Path, "x"); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("PUT file: %d", rec.Code)
	}
}

// TestPublicURLFromRequest: without PublicURL, distribution URLs use the
// request's scheme and Host, so they work from wherever the client is.
func TestPublicURLFromRequest(t *testing.T) {
	s, err := New(Config{Files: []File{sdist("pkg-1.0.tar.gz")}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/jobs", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []job
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(jobs) != 1 || !strings.HasPrefix(jobs[0].Distributions[0], srv.URL+"/packages/") {
		t.Fatalf("jobs = %+v, want URLs under %s", jobs, srv.URL)
	}
	dl, err := http.Get(jobs[0].Distributions[0])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(dl.Body)
	dl.Body.Close()
	if dl.StatusCode != http.StatusOK || string(body) != "content of pkg-1.0.tar.gz" {
		t.Fatalf("download: %d %q", dl.StatusCode, body)
	}
	req := httptest.NewRequest(http.MethodPost, "/jobs", nil)
	req.Host = "devapi:8000"
	req.Header.Set("X-Forwarded-Proto", "https")
	if got := s.baseURL(req); got != "https://devapi:8000" {
		t.Fatalf("baseURL = %q", got)
	}
}

func TestQueueStatusDefinitions(t *testing.T) {
	var files []File
	for i := 0; i < 6; i++ {
		files = append(files, sdist(fmt.Sprintf("p%d-1.0.tar.gz", i)))
	}
	f := newFixture(t, Config{Files: files, LeaseTimeout: time.Minute, MaxAttempts: 2})
	f.lease(2)                        // p0, p1 at t0 (attempt 1)
	f.clock.Advance(61 * time.Second) // p0, p1 expired
	f.lease(3)                        // p2, p3, p4 (never leased first) at t0+61
	f.clock.Advance(61 * time.Second) // p2..p4 expired; p0, p1 expired 61s ago (> 60: stranded)
	f.lease(4)                        // p5 (never leased), then p0, p1 again (attempt 2), p2 (attempt 2)
	f.clock.Advance(30 * time.Second) // t0+152: p3, p4 expired 31s ago at attempt 1
	want := QueueStatus{
		Queued: 0, InProgress: 4, Retryable: 2, Exhausted: 0, Stranded: 0,
		TotalBacklog: 6, OldestAgeSeconds: 152,
	}
	rec := f.do(http.MethodGet, "/queue-status", nil)
	var got QueueStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("queue status = %+v, want %+v", got, want)
	}
	f.clock.Advance(time.Minute) // t0+212: all expired; p0-p2 at attempt 2 exhausted; p3,p4 expired 91s ago: stranded
	got = f.s.Stats().Queue
	want = QueueStatus{Queued: 0, InProgress: 0, Retryable: 3, Exhausted: 3, Stranded: 2, TotalBacklog: 6, OldestAgeSeconds: 212}
	if got != want {
		t.Fatalf("queue status later = %+v, want %+v", got, want)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("a-1.tar.gz"), sdist("b-1.tar.gz")}})
	jobs := f.lease(2)
	f.report(success(jobs[0], 1))
	f.report(map[string]any{"name": "zzz", "version": "1", "reason": "x"})
	rec := f.do(http.MethodGet, "/metrics", nil)
	body := rec.Body.String()
	for _, want := range []string{
		"dragonfly_devapi_leases_total 2",
		`dragonfly_devapi_reports_total{code="200",kind="success"} 1`,
		`dragonfly_devapi_reports_total{code="404",kind="failure"} 1`,
		`dragonfly_devapi_requests_total{code="200",route="POST /jobs"} 1`,
		`dragonfly_devapi_queue_jobs{state="in_progress"} 1`,
		`dragonfly_devapi_scans_completed_total{outcome="finished"} 1`,
		"dragonfly_devapi_dead_lettered_total 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestDevStatsAndReports(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("a-1.tar.gz")}})
	j := f.lease(1)[0]
	f.report(map[string]any{"name": "a"})
	f.report(success(j, 3, "x"))
	var st Stats
	if err := json.Unmarshal(f.do(http.MethodGet, "/_dev/stats", nil).Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Leases != 1 || st.Reports != 2 || st.ReportsAccepted != 1 || st.Status422 != 1 || st.Finished != 1 {
		t.Fatalf("stats = %+v", st)
	}
	var reps []ReportRecord
	if err := json.Unmarshal(f.do(http.MethodGet, "/_dev/reports", nil).Body.Bytes(), &reps); err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || reps[0].Status != 422 || reps[0].Kind != "" || reps[1].Status != 200 || reps[1].Kind != "success" ||
		*reps[1].Score != 3 || reps[1].AssignmentID != j.AssignmentID || *reps[1].Attempt != 1 {
		t.Fatalf("reports = %+v", reps)
	}
	if !strings.Contains(reps[0].Detail, "missing") {
		t.Fatalf("422 record detail = %q", reps[0].Detail)
	}
}

func TestReportLogLimit(t *testing.T) {
	f := newFixture(t, Config{ReportLogLimit: 3})
	for i := 0; i < 5; i++ {
		f.report(map[string]any{"name": "n", "version": strconv.Itoa(i), "reason": "r"})
	}
	reps := f.s.Reports()
	if len(reps) != 3 || reps[0].Seq != 3 || reps[2].Seq != 5 || f.s.Stats().Reports != 5 {
		t.Fatalf("reports = %+v", reps)
	}
}

func TestSyntheticReleases(t *testing.T) {
	f := newFixture(t, Config{Synthetic: 3, Files: []File{sdist("zzz-1.0.tar.gz")}})
	jobs := f.lease(10)
	if got, want := names(jobs), "zzz@1.0#1 synth-00001@1.0#1 synth-00002@1.0#1 synth-00003@1.0#1"; got != want {
		t.Fatalf("releases = %q, want %q", got, want)
	}
	u, _ := url.Parse(jobs[1].Distributions[0])
	rec := f.do(http.MethodGet, u.Path, nil)
	if !strings.HasSuffix(u.Path, "/synth-00001-1.0.tar.gz") || rec.Code != http.StatusOK {
		t.Fatalf("synthetic download %s: %d", u.Path, rec.Code)
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var paths []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, h.Name)
	}
	if fmt.Sprint(paths) != "[synth-00001-1.0/PKG-INFO synth-00001-1.0/setup.py]" {
		t.Fatalf("synthetic sdist holds %v", paths)
	}
	// Deterministic: another server builds the same bytes.
	f2 := newFixture(t, Config{Synthetic: 1})
	if got := f2.lease(1)[0].Distributions[0]; got != jobs[1].Distributions[0] {
		t.Fatalf("synthetic URL differs between servers: %s vs %s", got, jobs[1].Distributions[0])
	}
}

// TestConcurrentLeasesAndReports: many goroutines leasing and reporting at
// once hand out every job exactly once (run with -race).
func TestConcurrentLeasesAndReports(t *testing.T) {
	f := newFixture(t, Config{Synthetic: 400})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for {
				req := httptest.NewRequest(http.MethodPost, "/jobs?batch=7", nil)
				rec := httptest.NewRecorder()
				f.s.Handler().ServeHTTP(rec, req)
				var jobs []job
				if err := json.Unmarshal(rec.Body.Bytes(), &jobs); err != nil || len(jobs) == 0 {
					return
				}
				for _, j := range jobs {
					mu.Lock()
					seen[j.Name]++
					mu.Unlock()
					body, _ := json.Marshal(success(j, 0))
					req := httptest.NewRequest(http.MethodPut, "/package", bytes.NewReader(body))
					rec := httptest.NewRecorder()
					f.s.Handler().ServeHTTP(rec, req)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != 400 {
		t.Fatalf("%d distinct jobs leased, want 400", len(seen))
	}
	for name, n := range seen {
		if n != 1 {
			t.Fatalf("%s leased %d times", name, n)
		}
	}
	if st := f.s.Stats(); st.Finished != 400 || st.ReportsAccepted != 400 || st.Queue.TotalBacklog != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestOversizedReportIs413(t *testing.T) {
	f := newFixture(t, Config{})
	body := `{"name":"n","version":"1","reason":"` + strings.Repeat("x", maxBody) + `"}`
	rec := f.report(body)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized report: %d", rec.Code)
	}
	if reps := f.s.Reports(); len(reps) != 1 || reps[0].Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("reports = %+v", reps)
	}
}

func TestRootAndLookupVariants(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("a-1.tar.gz"), sdist("a-2.tar.gz"), sdist("b-1.tar.gz")}, Rules: map[string]string{"x": "rule x { condition: true }"}})
	var root map[string]string
	if err := json.Unmarshal(f.do(http.MethodGet, "/", nil).Body.Bytes(), &root); err != nil {
		t.Fatal(err)
	}
	if root["rules_commit"] != f.s.RulesHash() || root["server_commit"] == "" || len(root) != 2 {
		t.Fatalf("GET / = %v", root)
	}
	jobs := f.lease(3)
	f.clock.Advance(time.Minute)
	f.report(success(jobs[2], 1)) // b-1 finished at t0+1m
	// name only: every version of a, the name compared exactly.
	rec := f.do(http.MethodGet, "/package?name=a", nil)
	var recs []scanJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &recs); err != nil || len(recs) != 2 || recs[0].Version != "1" || recs[1].Version != "2" {
		t.Fatalf("lookup by name: %s", rec.Body)
	}
	if rec := f.do(http.MethodGet, "/package?name=A", nil); rec.Body.String() != "[]" {
		t.Fatalf("lookup by another spelling: %s", rec.Body)
	}
	// version with since, or neither name nor since: 400.
	for _, target := range []string{"/package?version=1&since=0", "/package?name=a&version=1&since=0", "/package?version=1"} {
		rec := f.do(http.MethodGet, target, nil)
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
		assertDetail(t, rec, "Bad Request")
	}
	// since: scans finished at or after the time.
	since := f.clock.Now().Unix()
	rec = f.do(http.MethodGet, "/package?since="+strconv.FormatInt(since, 10), nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &recs); err != nil || len(recs) != 1 || recs[0].Name != "b" {
		t.Fatalf("lookup since: %s", rec.Body)
	}
	rec = f.do(http.MethodGet, "/package?since="+strconv.FormatInt(since+1, 10), nil)
	if rec.Body.String() != "[]" {
		t.Fatalf("lookup since later: %s", rec.Body)
	}
	if rec := f.do(http.MethodGet, "/package?since=soon", nil); rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("bad since: %d", rec.Code)
	}
	if rec := f.do(http.MethodGet, "/package?name=zzz&version=1", nil); rec.Code != http.StatusOK || rec.Body.String() != "[]" {
		t.Fatalf("unknown release lookup: %d %s", rec.Code, rec.Body)
	}
}

// TestReportLogBoundsInput: the report log keeps a hostile report's strings
// cut with a marker and at most 1,024 rule names.
func TestReportLogBoundsInput(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz"), sdist("big-1.0.tar.gz")}})
	jobs := f.lease(2)
	long := strings.Repeat("x", 64<<10)
	f.mustReport(failure(jobs[1], long)) // pkg
	rules := make([]string, 1200)
	for i := range rules {
		rules[i] = fmt.Sprintf("rule_%d_%s", i, strings.Repeat("y", 3000))
	}
	f.mustReport(success(jobs[0], 1, rules...)) // big
	reps := f.s.Reports()
	if len(reps) != 2 || len(reps[0].Reason) > 2048 || !strings.Contains(reps[0].Reason, "…[cut ") {
		t.Fatalf("reason kept as %d bytes", len(reps[0].Reason))
	}
	if got := reps[1].RulesMatched; len(got) != 1024 || len(got[0]) > 2048 || !strings.HasPrefix(got[0], "rule_0_") || !strings.Contains(got[0], "…[cut ") {
		t.Fatalf("rules kept: %d, first %d bytes", len(got), len(got[0]))
	}
	// The scan itself holds what was reported.
	if recs := lookup(t, f, "big", "1.0"); len(recs[0].Rules) != 1200 {
		t.Fatalf("scan holds %d rules", len(recs[0].Rules))
	}
}

// TestDevStatsWaitsForAccepted: GET /_dev/stats?accepted=N answers once N
// reports were accepted (a refused one does not count), after its wait when
// they were not, at once without accepted; bad values are refused. It runs
// in a synctest bubble: "blocked" and the waits are exact.
func TestDevStatsWaitsForAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{Files: []File{sdist("a-1.tar.gz"), sdist("b-1.tar.gz")}})
		jobs := f.lease(2)
		stats := func(rec *httptest.ResponseRecorder) Stats {
			t.Helper()
			var st Stats
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /_dev/stats: %d %s", rec.Code, rec.Body)
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatal(err)
			}
			return st
		}
		var got *httptest.ResponseRecorder
		answered := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(answered)
			got = f.do(http.MethodGet, "/_dev/stats?accepted=2&wait=10m", nil)
		}()
		synctest.Wait()
		select {
		case <-answered:
			t.Fatal("answered before any report was accepted")
		default:
		}
		f.report(success(jobs[0], 1))
		f.report(map[string]any{"name": "b"}) // 422: not accepted
		synctest.Wait()
		select {
		case <-answered:
			t.Fatal("answered after one accepted report of two")
		default:
		}
		f.report(success(jobs[1], 2))
		<-answered
		if st := stats(got); st.ReportsAccepted != 2 || time.Since(start) != 0 {
			t.Errorf("answered after %v with %d accepted, want 2 at once", time.Since(start), st.ReportsAccepted)
		}

		start = time.Now()
		if st := stats(f.do(http.MethodGet, "/_dev/stats?accepted=3&wait=2s", nil)); st.ReportsAccepted != 2 || time.Since(start) != 2*time.Second {
			t.Errorf("accepted=3&wait=2s answered after %v with %d accepted, want 2 after 2s", time.Since(start), st.ReportsAccepted)
		}
		start = time.Now()
		if stats(f.do(http.MethodGet, "/_dev/stats?accepted=3&wait=2h", nil)); time.Since(start) != maxStatsWait {
			t.Errorf("wait=2h answered after %v, want the bound %v", time.Since(start), maxStatsWait)
		}
		start = time.Now()
		if stats(f.do(http.MethodGet, "/_dev/stats?accepted=3", nil)); time.Since(start) != maxStatsWait {
			t.Errorf("accepted=3 without wait answered after %v, want %v", time.Since(start), maxStatsWait)
		}
		start = time.Now()
		if stats(f.do(http.MethodGet, "/_dev/stats?wait=5s", nil)); time.Since(start) != 0 {
			t.Errorf("wait without accepted answered after %v, want at once", time.Since(start))
		}

		// Waiters are bounded: one more than maxStatsWaits is refused at once.
		var waiting sync.WaitGroup
		for range maxStatsWaits {
			waiting.Go(func() {
				if rec := f.do(http.MethodGet, "/_dev/stats?accepted=3&wait=1m", nil); rec.Code != http.StatusOK {
					t.Errorf("a waiter within the bound: %d %s", rec.Code, rec.Body)
				}
			})
		}
		synctest.Wait()
		if rec := f.do(http.MethodGet, "/_dev/stats?accepted=3&wait=1m", nil); rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "more than 64") {
			t.Errorf("waiter %d: %d %s, want 429", maxStatsWaits+1, rec.Code, rec.Body)
		}
		if st := stats(f.do(http.MethodGet, "/_dev/stats", nil)); st.ReportsAccepted != 2 || st.StatsWaiting != maxStatsWaits {
			t.Errorf("plain GET /_dev/stats while the waiters wait: %d accepted, %d waiting, want 2 and %d", st.ReportsAccepted, st.StatsWaiting, maxStatsWaits)
		}
		waiting.Wait()
		if rec := f.do(http.MethodGet, "/_dev/stats?accepted=2&wait=1m", nil); rec.Code != http.StatusOK {
			t.Errorf("a waiter after the others left: %d %s", rec.Code, rec.Body)
		}

		for _, q := range []string{"accepted=-1", "accepted=two", "accepted=1&wait=-1s", "accepted=1&wait=soon"} {
			if rec := f.do(http.MethodGet, "/_dev/stats?"+q, nil); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "must be") {
				t.Errorf("?%s: %d %s, want 400 saying what it must be", q, rec.Code, rec.Body)
			}
		}

		// EndWaits (a server shutting down) answers a waiter at once, and
		// every later one.
		ended := make(chan *httptest.ResponseRecorder)
		go func() { ended <- f.do(http.MethodGet, "/_dev/stats?accepted=9&wait=1m", nil) }()
		synctest.Wait()
		start = time.Now()
		f.s.EndWaits()
		if st := stats(<-ended); st.ReportsAccepted != 2 || time.Since(start) != 0 {
			t.Errorf("a waiter at EndWaits answered after %v with %d accepted, want 2 at once", time.Since(start), st.ReportsAccepted)
		}
		f.s.EndWaits() // twice is harmless
		if stats(f.do(http.MethodGet, "/_dev/stats?accepted=9&wait=1m", nil)); time.Since(start) != 0 {
			t.Errorf("a waiter after EndWaits answered after %v, want at once", time.Since(start))
		}
	})
}
