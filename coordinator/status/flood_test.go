package status

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// TestBrokenSessionsKeepJobFailuresListed: a token holder that ends its
// sessions at once, again and again (under as many worker ids as it likes),
// cannot push a job's failure or a quarantine off the page's recent
// failures: broken sessions are kept apart, a fifth as many. Each used to
// take a place of the 50, and 50 sessions (a second's work) emptied the list
// of everything else.
func TestBrokenSessionsKeepJobFailuresListed(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now})
	start := c.Now()
	m.JobFinished(outcome("bad", 1, "distribution bad-0.tar.gz: archive truncated", start, c.Now(), "s1-w1"))
	m.DispatchEvent(dispatch.Event{Kind: dispatch.EventQuarantine, Time: c.Now(), Identity: "liar", Reason: "disagreed"})
	for i := range 1000 {
		c.Advance(1)
		m.SessionEnded(coordinator.SessionInfo{SessionID: fmt.Sprint("s", i), WorkerID: fmt.Sprint("churner-", i), Identity: fmt.Sprint("churner-", i)},
			errors.New("hello sent twice"))
	}
	doc := m.Status(t.Context(), emptySource())
	kinds := map[FailureKind]int{}
	for _, f := range doc.Failures {
		kinds[f.Kind]++
	}
	t.Logf("listed after 1000 broken sessions: %v", kinds)
	if kinds[FailureScan] != 1 || kinds[FailureQuarantine] != 1 {
		t.Fatalf("failures listed %v: the scan failure and the quarantine were pushed off", kinds)
	}
	if n := kinds[FailureWorker]; n != 10 {
		t.Fatalf("%d broken sessions listed, want 10 (a fifth of RecentFailures)", n)
	}
	if doc.Failures[0].Kind != FailureWorker || doc.Failures[0].Workers[0] != "churner-999" {
		t.Fatalf("newest failure %+v, want the last broken session first", doc.Failures[0])
	}
}

// TestAPIStatusSeriesBounded: an API (or whoever answers as it) that gives
// every try another HTTP status (Go's client takes any three digits) makes
// no more series than the statuses HTTP defines, plus one per class; each
// status was a series of its own, 800 per endpoint.
func TestAPIStatusSeriesBounded(t *testing.T) {
	m := New(Config{})
	api := m.APIObserver()
	for code := 200; code <= 999; code++ {
		api.Call("POST /jobs", code, time.Millisecond)
	}
	series, total := 0, 0.0
	for k, v := range scrape(t, m, emptySource()) {
		if strings.HasPrefix(k, "dragonfly_api_requests_total{") {
			series++
			total += v
		}
	}
	t.Logf("800 statuses: %d series", series)
	if total != 800 {
		t.Fatalf("%v tries counted, want 800", total)
	}
	if series > 80 {
		t.Fatalf("800 statuses made %d series of dragonfly_api_requests_total, want at most 80", series)
	}
	got := scrape(t, m, emptySource())
	for _, k := range []string{`status="503"`, `status="409"`, `status="7xx"`} {
		if got[`dragonfly_api_requests_total{endpoint="POST /jobs",`+k+`}`] == 0 {
			t.Errorf("no series with %s", k)
		}
	}
}

// TestAPIStatusBelow100Bounded: Go's client also takes "000" to "099" as a
// status line's code (any three digits, read as a number: 0 to 99), and
// the client returns such a response like any other. They are counted as
// one class, not a series each (99 more per endpoint), and none of them as
// "none" (no response).
func TestAPIStatusBelow100Bounded(t *testing.T) {
	m := New(Config{})
	api := m.APIObserver()
	for code := 1; code <= 99; code++ {
		api.Call("POST /jobs", code, time.Millisecond)
	}
	series := 0
	got := scrape(t, m, emptySource())
	for k := range got {
		if strings.HasPrefix(k, "dragonfly_api_requests_total{") {
			series++
		}
	}
	if series != 1 || got[`dragonfly_api_requests_total{endpoint="POST /jobs",status="0xx"}`] != 99 {
		t.Fatalf("statuses 1 to 99 made %d series, want the one of status 0xx", series)
	}
}

// TestRenderingsAreRateLimited: /metrics is open, and each rendering takes
// the coordinator's and the dispatcher's locks for a snapshot; a flood of
// scrapes (32 clients, ~1000 a second) slowed a worker's reports from ~1800
// to ~60 a second. Renderings are bounded per second (/metrics apart from the
// status pages), over that 503 with Retry-After; health answers regardless.
func TestRenderingsAreRateLimited(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now})
	src := &countingSource{Source: emptySource()}
	h := m.Handler(src, func() bool { return true })
	get := func(path string) *http.Response {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Result()
	}
	served := 0
	for range 200 {
		switch resp := get("/metrics"); resp.StatusCode {
		case http.StatusOK:
			served++
		case http.StatusServiceUnavailable:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		default:
			t.Fatalf("/metrics: %d", resp.StatusCode)
		}
	}
	if served != renderBurst {
		t.Fatalf("%d of 200 scrapes in one instant rendered (%d snapshots); want %d", served, src.n.Load(), renderBurst)
	}
	if code := get("/status.json").StatusCode; code != http.StatusOK {
		t.Fatalf("/status.json during a /metrics flood: %d, want 200 (its own budget)", code)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code := get(p).StatusCode; code != http.StatusOK {
			t.Fatalf("%s during the flood: %d", p, code)
		}
	}
	c.Advance(time.Second)
	if code := get("/metrics").StatusCode; code != http.StatusOK {
		t.Fatalf("/metrics a second later: %d, want 200", code)
	}
}

// countingSource counts snapshots taken.
type countingSource struct {
	Source
	n atomic.Int64
}

func (s *countingSource) Snapshot() coordinator.Snapshot {
	s.n.Add(1)
	return s.Source.Snapshot()
}

// TestFetchSaysARenderLimit: past the render limit, dragonfly status said
// only "503 Service Unavailable", as for a coordinator that is down or
// draining; it says that other clients used the renderings.
func TestFetchSaysARenderLimit(t *testing.T) {
	c := testkit.NewClock()
	m := New(Config{Now: c.Now})
	srv := httptest.NewServer(m.Handler(emptySource(), nil))
	defer srv.Close()
	for range renderBurst {
		if _, err := Fetch(t.Context(), srv.URL+"/status.json", "", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Fetch(t.Context(), srv.URL+"/status.json", "", 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "times a second") {
		t.Fatalf("a fetch past the render limit: %v; want it to say the limit", err)
	}
}
