package devapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// benchServer holds n queued releases of one small sdist each.
func benchServer(b *testing.B, n int) *Server {
	b.Helper()
	s, err := New(Config{PublicURL: "http://devapi:8000", Rules: map[string]string{"r": "rule r { condition: true }"}})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("bench-%07d", i)
		s.Add(name, "1.0", []File{{Name: name + "-1.0.tar.gz", Data: []byte(name)}})
	}
	return s
}

// BenchmarkLease: POST /jobs?batch=1 through the handler, one job per op.
// Run with -cpu 1 to see one core's rate (reported as leases/s).
func BenchmarkLease(b *testing.B) {
	s := benchServer(b, b.N)
	h := s.Handler()
	benchRate(b, "leases/s", func(i int) { benchLease(b, h, i) })
}

// BenchmarkLeaseExpired: every op re-leases an expired lease (the pending
// list path), batch=1.
func BenchmarkLeaseExpired(b *testing.B) {
	c := testkit.NewClock()
	s, err := New(Config{PublicURL: "http://devapi:8000", Now: c.Now, MaxAttempts: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10000; i++ {
		s.Add(fmt.Sprintf("p%d", i), "1", []File{{Name: fmt.Sprintf("p%d-1.tar.gz", i), Data: []byte{byte(i)}}})
	}
	h := s.Handler()
	benchRate(b, "leases/s", func(i int) {
		if i%10000 == 0 {
			c.Advance(time.Hour) // every lease so far expires
		}
		benchLease(b, h, i)
	})
}

// BenchmarkReport: PUT /package success reports through the handler, one
// accepted report per op.
func BenchmarkReport(b *testing.B) {
	s := benchServer(b, b.N)
	s.mu.Lock()
	leases := s.st.lease(b.N, s.now(), "")
	s.mu.Unlock()
	bodies := make([][]byte, len(leases))
	for i, l := range leases {
		bodies[i], _ = json.Marshal(map[string]any{
			"name": l.name, "version": l.version, "attempt": l.attempt, "assignment_id": l.assignment,
			"score": 12, "inspector_url": "https://inspector.pypi.io/project/" + l.name + "/1.0/packages/aa/bb/cc/x.tar.gz/x/setup.py",
			"rules_matched": []string{"rule_a", "rule_b"}, "commit": "0123456789abcdef0123456789abcdef01234567",
		})
	}
	h := s.Handler()
	benchRate(b, "reports/s", func(i int) { benchReport(b, h, bodies[i], i) })
}

// BenchmarkLeaseAndReport: one POST /jobs?batch=1 and one accepted PUT
// /package per op, through the handler (the cycle a scanner runs per job).
func BenchmarkLeaseAndReport(b *testing.B) {
	s := benchServer(b, b.N)
	h := s.Handler()
	benchRate(b, "jobs/s", func(i int) {
		var jobs []job
		if err := json.Unmarshal(benchLease(b, h, i), &jobs); err != nil || len(jobs) != 1 {
			b.Fatalf("lease %d: %v %d jobs", i, err, len(jobs))
		}
		body, _ := json.Marshal(success(jobs[0], 1, "rule_a"))
		benchReport(b, h, body, i)
	})
}

// benchRate runs op(i) for i below b.N and reports the ops per second as
// unit.
func benchRate(b *testing.B, unit string, op func(i int)) {
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		op(i)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}

// benchLease leases one job (POST /jobs?batch=1) through h and returns the
// answer's body; b fails unless it is a job.
func benchLease(b *testing.B, h http.Handler, i int) []byte {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/jobs?batch=1", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() < 100 {
		b.Fatalf("lease %d: %d %s", i, rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

// benchReport sends one report (PUT /package) through h; b fails unless it
// is accepted.
func benchReport(b *testing.B, h http.Handler, body []byte, i int) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/package", bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		b.Fatalf("report %d: %d %s", i, rec.Code, rec.Body)
	}
}

// TestManyLeasesAndReports: 5,000 lease and report cycles one after the
// other each lease the next release in queueing order, once, and every
// report is accepted; the never-leased FIFO gives back its popped slots on
// the way (past 1,024 pops) and ends empty. How fast this runs is the
// benchmarks' business, not this test's.
func TestManyLeasesAndReports(t *testing.T) {
	const n = 5000
	f := newFixture(t, Config{})
	for i := 0; i < n; i++ {
		f.s.Add(fmt.Sprintf("p%d", i), "1", nil)
	}
	for i := 0; i < n; i++ {
		j := f.lease(1)
		if len(j) != 1 || j[0].Name != fmt.Sprintf("p%d", i) || j[0].Attempt != 1 {
			t.Fatalf("lease %d = %+v", i, j)
		}
		if rec := f.report(success(j[0], 0)); rec.Code != http.StatusOK {
			t.Fatalf("report %d: %d %s", i, rec.Code, rec.Body)
		}
		if i == n*3/5 {
			f.s.mu.Lock()
			kept := len(f.s.st.queue.items)
			f.s.mu.Unlock()
			if kept > n/2 {
				t.Fatalf("after %d pops the FIFO still holds %d slots", i+1, kept)
			}
		}
	}
	if j := f.lease(1); len(j) != 0 {
		t.Fatalf("lease after the last = %+v", j)
	}
	st := f.s.Stats()
	if st.Leases != n || st.Finished != n || st.ReportsAccepted != n || st.Queue.TotalBacklog != 0 || st.Queue.Finished != n {
		t.Fatalf("stats = %+v", st)
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if q := &f.s.st.queue; q.len() != 0 || len(q.items) != 0 || q.head != 0 {
		t.Fatalf("queue holds %d items (head %d, len %d) after draining", len(q.items), q.head, q.len())
	}
}
