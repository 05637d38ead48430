package devapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestReportErrorRateExactCounts: with rate 0.25, exactly every 4th PUT is
// answered 503 and leaves the job pending, so a retry succeeds.
func TestReportErrorRateExactCounts(t *testing.T) {
	var files []File
	for i := 0; i < 40; i++ {
		files = append(files, sdist(fmt.Sprintf("p%02d-1.0.tar.gz", i)))
	}
	f := newFixture(t, Config{Files: files, Faults: Faults{ReportErrorRate: 0.25}})
	jobs := f.lease(40)
	var failedAt []int
	var retry []job
	for i, j := range jobs {
		rec := f.report(success(j, 0))
		switch rec.Code {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			failedAt = append(failedAt, i+1)
			retry = append(retry, j)
		default:
			t.Fatalf("report %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if want := "[4 8 12 16 20 24 28 32 36 40]"; fmt.Sprint(failedAt) != want {
		t.Fatalf("503 at reports %v, want %s", failedAt, want)
	}
	st := f.s.Stats()
	if st.Status503 != 10 || st.ReportsAccepted != 30 || st.Finished != 30 || st.Queue.InProgress != 10 {
		t.Fatalf("stats = %+v", st)
	}
	f.s.SetFaults(Faults{}) // off: retries all succeed
	for _, j := range retry {
		if rec := f.report(success(j, 0)); rec.Code != http.StatusOK {
			t.Fatalf("retry: %d %s", rec.Code, rec.Body)
		}
	}
	if st := f.s.Stats(); st.Finished != 40 || st.Reports != 50 {
		t.Fatalf("after retries: %+v", st)
	}
	// The report log has every PUT in order with its answer.
	reps := f.s.Reports()
	if len(reps) != 50 || reps[3].Status != 503 || reps[3].Name != jobs[3].Name || reps[4].Status != 200 || reps[49].Seq != 50 {
		t.Fatalf("reports log: %d entries, [3]=%+v [4]=%+v", len(reps), reps[3], reps[4])
	}
}

func TestReportErrorRateFractions(t *testing.T) {
	for _, tt := range []struct {
		rate float64
		n    int
		want int
	}{{0, 100, 0}, {1, 7, 7}, {0.1, 100, 10}, {1.0 / 3, 99, 33}, {0.01, 1000, 10}} {
		s, err := New(Config{Faults: Faults{ReportErrorRate: tt.rate}})
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for i := 0; i < tt.n; i++ {
			if s.reportFault() {
				got++
			}
		}
		if got != tt.want {
			t.Errorf("rate %v over %d reports: %d faults, want %d", tt.rate, tt.n, got, tt.want)
		}
	}
}

func TestUnavailableWindow(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz")}})
	f.s.Unavailable(30 * time.Second)
	for _, r := range []struct{ method, target string }{{"POST", "/jobs"}, {"GET", "/rules"}, {"PUT", "/package"}, {"GET", "/queue-status"}, {"GET", "/"}} {
		rec := f.do(r.method, r.target, nil)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "30" {
			t.Fatalf("%s %s during outage: %d Retry-After %q", r.method, r.target, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	// Downloads, metrics and /_dev/ are not part of the outage.
	if rec := f.do(http.MethodGet, "/metrics", nil); rec.Code != http.StatusOK {
		t.Fatalf("metrics during outage: %d", rec.Code)
	}
	f.clock.Advance(30 * time.Second)
	if got := f.lease(1); len(got) != 1 {
		t.Fatalf("lease after outage = %+v", got)
	}
	st := f.s.Stats()
	if st.Status503 != 5 || st.Leases != 1 {
		t.Fatalf("stats = %+v", st)
	}
	// The outage PUT is in the report log.
	if reps := f.s.Reports(); len(reps) != 1 || reps[0].Status != 503 {
		t.Fatalf("reports = %+v", reps)
	}
}

func TestDevFaultsEndpoint(t *testing.T) {
	f := newFixture(t, Config{})
	rec := f.do(http.MethodPost, "/_dev/faults", `{"report_error_rate":0.5,"latency_ms":1.5,"download_latency_ms":100,"unavailable_seconds":10,"token_lifetime_seconds":60}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /_dev/faults: %d %s", rec.Code, rec.Body)
	}
	var st devFaultsState
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.ReportErrorRate != 0.5 || st.LatencyMS != 1.5 || st.DownloadLatencyMS != 100 || st.UnavailableUntil == nil || !st.UnavailableUntil.Equal(f.clock.Now().Add(10*time.Second)) || st.TokenLifetimeSeconds != 60 {
		t.Fatalf("fault state = %+v", st)
	}
	// Absent fields stay; 0 ends the outage.
	rec = f.do(http.MethodPost, "/_dev/faults", `{"unavailable_seconds":0}`)
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.UnavailableUntil != nil || st.ReportErrorRate != 0.5 {
		t.Fatalf("after ending outage = %+v", st)
	}
	for _, bad := range []string{`{"report_error_rate":2}`, `{"latency_ms":-1}`, `{"download_latency_ms":-1}`, `{"token_lifetime_seconds":0}`, `{"typo":1}`, `nope`} {
		if rec := f.do(http.MethodPost, "/_dev/faults", bad); rec.Code != http.StatusBadRequest {
			t.Errorf("POST /_dev/faults %s: %d", bad, rec.Code)
		}
	}
	if rec := f.do(http.MethodGet, "/_dev/faults", nil); !strings.Contains(rec.Body.String(), `"report_error_rate":0.5`) {
		t.Fatalf("GET /_dev/faults: %s", rec.Body)
	}
}

// TestLatency: every API answer waits exactly the configured latency;
// downloads, metrics and /_dev/ do not; a client that gives up during the
// wait gets nothing and leases nothing. It runs in a synctest bubble, so
// durations are exact, not wall-clock measurements.
func TestLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 30 * time.Millisecond
		f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz"), sdist("other-1.0.tar.gz")}, Faults: Faults{Latency: latency}})
		timed := func(method, target string, body any) time.Duration {
			start := time.Now()
			f.do(method, target, body)
			return time.Since(start)
		}
		for _, r := range []struct{ method, target string }{
			{http.MethodGet, "/rules"}, {http.MethodPut, "/package"}, {http.MethodGet, "/queue-status"},
			{http.MethodGet, "/"}, {http.MethodGet, "/package?name=pkg"}, {http.MethodGet, "/nope"},
		} {
			if d := timed(r.method, r.target, nil); d != latency {
				t.Errorf("%s %s answered after %v, want %v", r.method, r.target, d, latency)
			}
		}
		start := time.Now()
		jobs := f.lease(1)
		if d := time.Since(start); d != latency || len(jobs) != 1 {
			t.Fatalf("lease answered after %v with %+v, want one job after %v", d, jobs, latency)
		}
		u, _ := url.Parse(jobs[0].Distributions[0])
		for _, target := range []string{u.Path, "/metrics", "/_dev/stats", "/_dev/faults"} {
			if d := timed(http.MethodGet, target, nil); d != 0 {
				t.Errorf("GET %s answered after %v, want at once", target, d)
			}
		}

		// A client that stops waiting before the latency is over.
		ctx, cancel := context.WithTimeout(t.Context(), latency/3)
		defer cancel()
		req := httptest.NewRequest(http.MethodPost, "/jobs?batch=1", nil).WithContext(ctx)
		rec := httptest.NewRecorder()
		start = time.Now()
		f.s.Handler().ServeHTTP(rec, req)
		if d := time.Since(start); d != latency/3 || rec.Body.Len() != 0 {
			t.Errorf("abandoned lease returned after %v with %q, want nothing after %v", d, rec.Body, latency/3)
		}
		if st := f.s.Stats(); st.Leases != 1 {
			t.Errorf("%d leases, want 1: the abandoned call leased", st.Leases)
		}

		f.s.SetFaults(Faults{})
		start = time.Now()
		if jobs := f.lease(1); len(jobs) != 1 || time.Since(start) != 0 {
			t.Errorf("lease without latency: %+v after %v", jobs, time.Since(start))
		}

		// A download latency delays downloads (also of a missing file), and
		// nothing else.
		const dl = 100 * time.Millisecond
		f.s.SetFaults(Faults{DownloadLatency: dl})
		for _, target := range []string{u.Path, u.Path + ".missing"} {
			if d := timed(http.MethodGet, target, nil); d != dl {
				t.Errorf("GET %s with a download latency answered after %v, want %v", target, d, dl)
			}
		}
		for _, target := range []string{"/rules", "/queue-status", "/_dev/stats"} {
			if d := timed(http.MethodGet, target, nil); d != 0 {
				t.Errorf("GET %s with a download latency answered after %v, want at once", target, d)
			}
		}
	})
}
