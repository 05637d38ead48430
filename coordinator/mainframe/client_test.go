package mainframe

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/protocol"
)

const (
	apiHost  = "api.test"
	authHost = "auth.test"
)

// inProcess returns a client wired to api (and auth, when not nil) through
// hostTransport, for use inside a synctest bubble.
func inProcess(t *testing.T, api *fakeAPI, auth *fakeAuth0, mod func(*Config)) (*Client, *hostTransport) {
	t.Helper()
	tr := &hostTransport{hosts: map[string]http.Handler{apiHost: api}}
	cfg := Config{BaseURL: "http://" + apiHost, UserAgent: "dragonfly-fleet/test", Transport: tr, Timeout: 10 * time.Second}
	if auth != nil {
		tr.hosts[authHost] = auth
		api.auth = auth
		cfg.Auth = Auth{TokenURL: "http://" + authHost + "/oauth/token", ClientID: "cid", ClientSecret: "csecret", Username: "user", Password: "pw"}
	}
	if mod != nil {
		mod(&cfg)
	}
	return mustNew(t, cfg), tr
}

// overTCP returns a client talking to api through a real loopback server.
func overTCP(t *testing.T, h http.Handler, mod func(*Config)) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg := Config{BaseURL: srv.URL + "/", UserAgent: "dragonfly-fleet/test", BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	return mustNew(t, cfg)
}

func TestLeaseEmptyQueue(t *testing.T) {
	api := newFakeAPI()
	c := overTCP(t, api, nil)
	jobs, err := c.Lease(t.Context(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if jobs == nil || len(jobs) != 0 {
		t.Fatalf("jobs = %#v, want empty non-nil slice", jobs)
	}
	reqs := api.recorded()
	if len(reqs) != 1 || reqs[0].method != "POST" || reqs[0].path != "/jobs" {
		t.Fatalf("requests = %+v", reqs)
	}
}

func TestLeaseWithAndWithoutLeaseFields(t *testing.T) {
	for _, fields := range []bool{true, false} {
		t.Run(map[bool]string{true: "with", false: "without"}[fields], func(t *testing.T) {
			api := newFakeAPI()
			api.leaseFields = fields
			api.add("a", "1.0", "https://files.example/a-1.0.tar.gz", "https://files.example/a-1.0-py3-none-any.whl")
			api.add("b", "2.0")
			api.add("c", "3.0")
			var gotQuery string
			c := overTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotQuery = r.URL.RawQuery
				api.ServeHTTP(w, r)
			}), nil)
			jobs, err := c.Lease(t.Context(), 2)
			if err != nil {
				t.Fatal(err)
			}
			if gotQuery != "batch=2" {
				t.Errorf("query = %q, want batch=2", gotQuery)
			}
			if len(jobs) != 2 {
				t.Fatalf("got %d jobs, want 2", len(jobs))
			}
			a, b := jobs[0], jobs[1]
			if a.Name != "a" || a.Version != "1.0" || a.Hash != "rules-1" || len(a.Distributions) != 2 || a.Distributions[1] != "https://files.example/a-1.0-py3-none-any.whl" {
				t.Errorf("job a = %+v", a)
			}
			if b.Distributions == nil || len(b.Distributions) != 0 {
				t.Errorf("job b distributions = %#v, want empty", b.Distributions)
			}
			if fields {
				if a.Attempt == nil || *a.Attempt != 1 || a.AssignmentID == nil || *a.AssignmentID != "00000000-0000-4000-8000-000000000001" {
					t.Errorf("lease fields of a = %v %v", a.Attempt, a.AssignmentID)
				}
			} else if a.Attempt != nil || a.AssignmentID != nil || b.Attempt != nil || b.AssignmentID != nil {
				t.Errorf("absent lease fields must stay nil: %+v %+v", a, b)
			}
		})
	}
}

// leased checks that the jobs leased are those named, in order.
func leased(names ...string) func(t *testing.T, jobs []Job) {
	return func(t *testing.T, jobs []Job) {
		t.Helper()
		got := []string{}
		for _, j := range jobs {
			got = append(got, j.Name)
		}
		if !slices.Equal(got, append([]string{}, names...)) {
			t.Errorf("jobs leased %q, want %q", got, names)
		}
	}
}

func TestLeaseDecoding(t *testing.T) {
	tests := []struct {
		name, body string
		wantErr    string // substring of the error; "" for success
		check      func(t *testing.T, jobs []Job)
	}{
		{name: "unknown fields tolerated", body: `[{"name":"a","version":"1","distributions":[],"hash":"h","priority":3,"extra":{"x":1}}]`,
			check: func(t *testing.T, jobs []Job) {
				if len(jobs) != 1 || jobs[0].Name != "a" || jobs[0].Attempt != nil {
					t.Errorf("jobs = %+v", jobs)
				}
			}},
		{name: "null lease fields", body: `[{"name":"a","version":"1","distributions":[],"hash":"h","attempt":null,"assignment_id":null}]`,
			check: func(t *testing.T, jobs []Job) {
				if jobs[0].Attempt != nil || jobs[0].AssignmentID != nil {
					t.Errorf("null must decode as nil: %+v", jobs[0])
				}
			}},
		{name: "attempt zero is not absent", body: `[{"name":"a","version":"1","distributions":[],"hash":"h","attempt":0,"assignment_id":""}]`,
			check: func(t *testing.T, jobs []Job) {
				if jobs[0].Attempt == nil || *jobs[0].Attempt != 0 || jobs[0].AssignmentID == nil {
					t.Errorf("present zero values must be kept: %+v", jobs[0])
				}
			}},
		{name: "null body is empty", body: `null`, check: func(t *testing.T, jobs []Job) {
			if jobs == nil || len(jobs) != 0 {
				t.Errorf("jobs = %#v", jobs)
			}
		}},
		// A malformed job is left out (and logged); the others are leased.
		{name: "distributions not an array", body: `[{"name":"a","version":"1","distributions":"https://x/a.tar.gz","hash":"h"}]`, check: leased()},
		{name: "missing name", body: `[{"version":"1","distributions":[],"hash":"h"}]`, check: leased()},
		{name: "missing hash and distributions", body: `[{"name":"a","version":"1"}]`, check: leased()},
		{name: "second job bad", body: `[{"name":"a","version":"1","distributions":[],"hash":"h"},{"name":"","version":"1","distributions":[],"hash":"h"}]`, check: leased("a")},
		{name: "attempt not an integer", body: `[{"name":"a","version":"1","distributions":[],"hash":"h","attempt":"one"},{"name":"b","version":"1","distributions":[],"hash":"h"}]`, check: leased("b")},
		{name: "name or version too long for a task", body: `[{"name":"` + strings.Repeat("n", protocol.MaxTextBytes+1) + `","version":"1","distributions":[],"hash":"h"},{"name":"a","version":"` + strings.Repeat("v", protocol.MaxTextBytes+1) + `","distributions":[],"hash":"h"},{"name":"d","version":"1","distributions":[],"hash":"h"}]`, check: leased("d")},
		{name: "hash or assignment_id too long", body: `[{"name":"a","version":"1","distributions":[],"hash":"` + strings.Repeat("h", 257) + `"},{"name":"b","version":"1","distributions":[],"hash":"h","assignment_id":"` + strings.Repeat("u", 257) + `"},{"name":"d","version":"1","distributions":[],"hash":"h","assignment_id":"` + strings.Repeat("u", 256) + `"}]`, check: leased("d")},
		{name: "null job", body: `[null,{"name":"b","version":"1","distributions":[],"hash":"h"}]`, check: leased("b")},
		{name: "NUL in name or version", body: `[{"name":"a\u0000b","version":"c","distributions":[],"hash":"h"},{"name":"a","version":"b\u0000c","distributions":[],"hash":"h"},{"name":"d","version":"1","distributions":[],"hash":"h"}]`, check: leased("d")},
		{name: "object not array", body: `{"detail":"no jobs"}`, wantErr: "want an array of jobs"},
		{name: "empty distribution", body: `[{"name":"a","version":"1","distributions":[""],"hash":"h"},{"name":"b","version":"1","distributions":["u"],"hash":"h"}]`, check: leased("b")},
		{name: "not JSON", body: `<html>`, wantErr: "malformed response"},
		{name: "truncated", body: `[{"name":"a"`, wantErr: "malformed response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI()
			api.fail("POST /jobs", fault{status: 200, body: tt.body})
			c := overTCP(t, api, nil)
			jobs, err := c.Lease(t.Context(), 1)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if jobs != nil {
					t.Errorf("jobs = %+v on error", jobs)
				}
				if n := api.count("POST /jobs"); n != 1 {
					t.Errorf("%d lease requests, want 1 (a malformed answer is not retried)", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, jobs)
		})
	}
}

func TestLeaseRejectsBadBatch(t *testing.T) {
	api := newFakeAPI()
	c := overTCP(t, api, nil)
	if _, err := c.Lease(t.Context(), 0); err == nil {
		t.Fatal("batch 0 accepted")
	}
	if n := api.count("POST /jobs"); n != 0 {
		t.Fatalf("%d requests for an invalid batch", n)
	}
}

func TestReportOutcomes(t *testing.T) {
	api := newFakeAPI()
	api.add("a", "1")
	api.add("b", "1")
	api.add("c", "1")
	dead := api.add("dead", "1")
	c := overTCP(t, api, nil)
	jobs, err := c.Lease(t.Context(), 3)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("lease: %v %v", jobs, err)
	}
	success := func(j Job) Report {
		return Report{Name: j.Name, Version: j.Version, Attempt: j.Attempt, AssignmentID: j.AssignmentID,
			Success: &Success{Score: 0, RulesMatched: nil, Commit: j.Hash}}
	}
	if err := c.Report(t.Context(), success(jobs[0])); err != nil {
		t.Fatalf("first report: %v", err)
	}
	if err := c.Report(t.Context(), Report{Name: "b", Version: "1", Attempt: jobs[1].Attempt, AssignmentID: jobs[1].AssignmentID, Reason: "download https://x/b.tar.gz: 404 Not Found"}); err != nil {
		t.Fatalf("failure report: %v", err)
	}
	api.mu.Lock()
	dead.state, dead.attempt = "failed", 3
	api.mu.Unlock()

	stale := success(jobs[2])
	stale.AssignmentID = ptr("00000000-0000-4000-8000-999999999999")
	cases := []struct {
		name     string
		r        Report
		status   int
		conflict bool
		notFound bool
	}{
		{"already finished", success(jobs[0]), 409, true, false},
		{"already failed", success(jobs[1]), 409, true, false},
		{"dead-lettered", Report{Name: "dead", Version: "1", Reason: "boom"}, 409, true, false},
		{"stale assignment", stale, 409, true, false},
		{"unknown release", Report{Name: "nope", Version: "9", Reason: "boom"}, 404, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := api.count("PUT /package")
			err := c.Report(t.Context(), tc.r)
			e := apiErr(t, err)
			if e.Status != tc.status || e.Conflict() != tc.conflict || e.NotFound() != tc.notFound || !e.Final() {
				t.Errorf("err = %v: status %d conflict %v notfound %v final %v", e, e.Status, e.Conflict(), e.NotFound(), e.Final())
			}
			if e.Endpoint != "PUT /package" || e.Detail == "" || e.MaybeApplied {
				t.Errorf("err fields = %+v", e)
			}
			if n := api.count("PUT /package") - before; n != 1 {
				t.Errorf("%d tries, want 1: final errors are never retried", n)
			}
		})
	}
	// The stale lease's job is still assigned to its real lease.
	if err := c.Report(t.Context(), success(jobs[2])); err != nil {
		t.Fatalf("report under the standing lease: %v", err)
	}
}

func TestReport422KeepsBody(t *testing.T) {
	const body = `{"detail":[{"type":"missing","loc":["body","commit"],"msg":"Field required","input":{"name":"a","version":"1"}},{"type":"int_type","loc":["body","score"],"msg":"Input should be a valid integer","input":"x"}]}`
	api := newFakeAPI()
	api.fail("PUT /package", fault{status: 422, header: http.Header{"Content-Type": {"application/json"}}, body: body})
	c := overTCP(t, api, nil)
	err := c.Report(t.Context(), Report{Name: "a", Version: "1", Reason: "x"})
	e := apiErr(t, err)
	if e.Status != 422 || !e.Final() || e.Conflict() {
		t.Fatalf("err = %v", e)
	}
	if e.Body != body {
		t.Errorf("body = %q, want it whole", e.Body)
	}
	if want := "body.commit: Field required; body.score: Input should be a valid integer"; e.Detail != want {
		t.Errorf("detail = %q, want %q", e.Detail, want)
	}
	if n := api.count("PUT /package"); n != 1 {
		t.Errorf("%d tries, want 1", n)
	}
}

func TestReportValidation(t *testing.T) {
	api := newFakeAPI()
	c := overTCP(t, api, nil)
	for _, r := range []Report{
		{Name: "a", Version: "1"},
		{Name: "a", Version: "1", Reason: " \n\t "},
		{Name: "", Version: "1", Reason: "x"},
		{Name: "a", Version: "1", Reason: "x", Success: &Success{Commit: "h"}},
		{Name: "a", Version: "1", Success: &Success{}},
	} {
		if err := c.Report(t.Context(), r); err == nil {
			t.Errorf("report %+v accepted", r)
		}
	}
	if n := api.count("PUT /package"); n != 0 {
		t.Errorf("%d invalid reports sent", n)
	}
}

func TestRetryServerErrorsThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		api.fail("GET /rules", fault{status: 500}, fault{status: 502, body: "<html>bad gateway</html>"}, fault{status: 503})
		c, _ := inProcess(t, api, nil, nil)
		start := time.Now()
		rs, err := c.Rules(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if rs.Hash != "rules-1" || rs.Rules["a"] == "" {
			t.Errorf("rules = %+v", rs)
		}
		if n := api.count("GET /rules"); n != 4 {
			t.Errorf("%d tries, want 4", n)
		}
		// Full jitter: the waits are at most 0.5 s, 1 s and 2 s.
		if d := time.Since(start); d > 3500*time.Millisecond {
			t.Errorf("took %v, want at most 3.5s of backoff", d)
		}
	})
}

func TestRetryGivesUpAfterAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		for range 10 {
			api.fail("PUT /package", fault{status: 503, body: `{"detail":"maintenance"}`})
		}
		c, _ := inProcess(t, api, nil, func(c *Config) { c.Attempts = 4; c.BaseBackoff = time.Second; c.MaxBackoff = 2 * time.Second })
		start := time.Now()
		err := c.Report(t.Context(), Report{Name: "a", Version: "1", Reason: "x"})
		e := apiErr(t, err)
		if e.Status != 503 || e.Final() || e.Detail != "maintenance" {
			t.Errorf("err = %v", e)
		}
		if !strings.Contains(err.Error(), "gave up after 4 tries") {
			t.Errorf("err = %v", err)
		}
		if n := api.count("PUT /package"); n != 4 {
			t.Errorf("%d tries, want 4", n)
		}
		if d := time.Since(start); d > 5*time.Second { // 1 + 2 + 2
			t.Errorf("took %v, want at most 5s", d)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header func(now time.Time) string
		want   time.Duration
	}{
		{"429 seconds", 429, func(time.Time) string { return "7" }, 7 * time.Second},
		{"503 http date", 503, func(now time.Time) string { return now.Add(12 * time.Second).UTC().Format(http.TimeFormat) }, 12 * time.Second},
		{"capped at MaxBackoff", 429, func(time.Time) string { return "3600" }, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				api := newFakeAPI()
				api.fail("GET /", fault{status: tt.status, header: http.Header{"Retry-After": {tt.header(time.Now())}}})
				c, _ := inProcess(t, api, nil, nil)
				start := time.Now()
				m, err := c.Metadata(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if m.ServerCommit != "srv-1" || m.RulesCommit != "rules-1" {
					t.Errorf("metadata = %+v", m)
				}
				if d := time.Since(start); d != tt.want {
					t.Errorf("waited %v, want %v", d, tt.want)
				}
			})
		})
	}
}

// TestRetryAfterZeroOrPastStillBacksOff: "Retry-After: 0", or an HTTP date
// already past (a server clock behind ours), is no wait asked for, and the
// backoff applies, as in retry.Policy and the worker's downloads. The client
// retried at once instead: every try of a call at the same instant, in step
// with every other client, and with a backlog of reports eight senders
// walking through it with no pause at all, hammering the struggling API.
func TestRetryAfterZeroOrPastStillBacksOff(t *testing.T) {
	for name, header := range map[string]func(now time.Time) string{
		"zero":             func(time.Time) string { return "0" },
		"date in the past": func(now time.Time) string { return now.Add(-time.Hour).UTC().Format(http.TimeFormat) },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				api := newFakeAPI()
				api.add("a", "1")
				for range 4 {
					api.fail("PUT /package", fault{status: 503, header: http.Header{"Retry-After": {header(time.Now())}}})
				}
				c, _ := inProcess(t, api, nil, nil)
				start := time.Now()
				if err := c.Report(t.Context(), Report{Name: "a", Version: "1", Reason: "x"}); err != nil {
					t.Fatal(err)
				}
				// Full jitter below 0.5 s, 1 s, 2 s and 4 s: all four draws
				// being 0 has a probability below 1e-35.
				if d := time.Since(start); d == 0 || d > 7500*time.Millisecond {
					t.Errorf("5 tries in %v, want a backoff in (0, 7.5s]", d)
				}
			})
		})
	}
}

// TestAPIErrorCarriesTheLastRetryAfter: when the client's own tries end
// on a refusal with a Retry-After, the error carries it, so that whoever
// retries the call later (the report sender) waits as asked; without one
// (or with 0) it is 0.
func TestAPIErrorCarriesTheLastRetryAfter(t *testing.T) {
	for header, want := range map[string]time.Duration{"7": 7 * time.Second, "": 0, "0": 0} {
		t.Run("Retry-After "+header, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				api := newFakeAPI()
				api.add("a", "1")
				h := http.Header{}
				if header != "" {
					h.Set("Retry-After", header)
				}
				api.fail("PUT /package", fault{status: 503, header: h})
				c, _ := inProcess(t, api, nil, func(c *Config) { c.Attempts = 1 })
				err := c.Report(t.Context(), Report{Name: "a", Version: "1", Reason: "x"})
				if e := apiErr(t, err); e.Status != 503 || e.RetryAfter != want {
					t.Errorf("error %v with RetryAfter %v, want 503 with %v", e, e.RetryAfter, want)
				}
			})
		})
	}
}

func TestContextEndsDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		api.fail("GET /rules", fault{status: 503, header: http.Header{"Retry-After": {"20"}}})
		c, _ := inProcess(t, api, nil, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.Rules(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
		if e := apiErr(t, err); e.Status != 503 {
			t.Errorf("last try = %v", e)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("returned after %v, want 5s", d)
		}
	})
}

func TestTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		for range 5 {
			api.fail("GET /rules", fault{block: true})
		}
		c, _ := inProcess(t, api, nil, func(c *Config) { c.Timeout = 2 * time.Second; c.Attempts = 3 })
		start := time.Now()
		_, err := c.Rules(t.Context())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a timeout", err)
		}
		if n := api.count("GET /rules"); n != 3 {
			t.Errorf("%d tries, want 3", n)
		}
		// Three tries of exactly 2 s plus two backoffs of at most 0.5 s and 1 s.
		if d := time.Since(start); d < 6*time.Second || d > 7500*time.Millisecond {
			t.Errorf("took %v", d)
		}

		// A report whose first try timed out and whose retry meets a 409 may
		// have been accepted by the first try.
		api.add("a", "1")
		api.fail("PUT /package", fault{block: true}, fault{status: 409, body: `{"detail":"Package is already finished"}`})
		e := apiErr(t, c.Report(t.Context(), Report{Name: "a", Version: "1", Reason: "x"}))
		if !e.Conflict() || !e.MaybeApplied {
			t.Errorf("err = %+v, want a 409 with MaybeApplied", e)
		}
		for status, want := range map[int]bool{504: true, 502: true, 500: true, 503: false, 429: false} {
			api.fail("PUT /package", fault{status: status}, fault{status: 409, body: `{"detail":"Package is already finished"}`})
			e := apiErr(t, c.Report(t.Context(), Report{Name: "a", Version: "1", Reason: "x"}))
			if !e.Conflict() || e.MaybeApplied != want {
				t.Errorf("%d then 409: %+v, want MaybeApplied %v", status, e, want)
			}
		}
	})
}

func TestLeaseRetryPolicy(t *testing.T) {
	tests := []struct {
		name    string
		fault   *fault
		refuse  bool
		retried bool
	}{
		{name: "connection refused", refuse: true, retried: true},
		{name: "429", fault: &fault{status: 429}, retried: true},
		{name: "503", fault: &fault{status: 503}, retried: true},
		{name: "408", fault: &fault{status: 408}, retried: true},
		{name: "500", fault: &fault{status: 500}, retried: false},
		{name: "502", fault: &fault{status: 502}, retried: false},
		{name: "504", fault: &fault{status: 504}, retried: false},
		{name: "timeout after sending", fault: &fault{block: true}, retried: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				api := newFakeAPI()
				api.add("a", "1")
				if tt.fault != nil {
					api.fail("POST /jobs", *tt.fault)
				}
				c, tr := inProcess(t, api, nil, nil)
				if tt.refuse {
					tr.refuse = 1
				}
				jobs, err := c.Lease(t.Context(), 1)
				served := api.count("POST /jobs")
				if tt.retried {
					if err != nil || len(jobs) != 1 {
						t.Fatalf("lease = %v, %v; want the retry to lease the job", jobs, err)
					}
					if want := map[bool]int{true: 1, false: 2}[tt.refuse]; served != want {
						t.Errorf("server saw %d leases, want %d", served, want)
					}
					return
				}
				if err == nil {
					t.Fatalf("lease succeeded (%v), want the error returned unretried", jobs)
				}
				if served != 1 {
					t.Errorf("server saw %d leases, want 1 (no blind retry)", served)
				}
			})
		})
	}

	// Other calls retry the same failures.
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		api.fail("GET /rules", fault{status: 500}, fault{status: 504}, fault{block: true})
		c, _ := inProcess(t, api, nil, nil)
		if _, err := c.Rules(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := api.count("GET /rules"); n != 4 {
			t.Errorf("%d tries, want 4", n)
		}
	})
}

func TestLeaseRetriesConnectionRefusedOverTCP(t *testing.T) {
	// A port nobody listens on: the request is never sent, so a lease may be
	// retried; every try fails the same way.
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	var tries int
	var mu sync.Mutex
	c := mustNew(t, Config{BaseURL: addr, Attempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		Observer: Observer{Call: func(endpoint string, status int, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if endpoint == "POST /jobs" && status == 0 {
				tries++
			}
		}}})
	_, err := c.Lease(t.Context(), 1)
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 tries") {
		t.Fatalf("err = %v", err)
	}
	if tries != 3 {
		t.Errorf("%d tries, want 3", tries)
	}
}

func TestRedirectRefused(t *testing.T) {
	var loginHits int
	var mu sync.Mutex
	login := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		loginHits++
		mu.Unlock()
		w.Write([]byte("<html>sign in</html>"))
	}))
	defer login.Close()
	api := newFakeAPI()
	api.cfID, api.cfSecret = "cf-id", "cf-secret"
	loginURL, _ := url.Parse(login.URL)

	// No or wrong credentials: the API redirects to the login page.
	for _, auth := range []Auth{{}, {CFClientID: "cf-id", CFClientSecret: "wrong"}} {
		c := overTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("CF-Access-Client-Secret") != api.cfSecret {
				http.Redirect(w, r, login.URL+"/cdn-cgi/access/login", http.StatusFound)
				return
			}
			api.ServeHTTP(w, r)
		}), func(c *Config) { c.Auth = auth })
		_, err := c.Lease(t.Context(), 1)
		var ae *AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("err = %T %v, want *AuthError", err, err)
		}
		if ae.Host != loginURL.Host || ae.Status != 302 || ae.Endpoint != "POST /jobs" {
			t.Errorf("auth error = %+v", ae)
		}
		if !strings.Contains(err.Error(), "redirected to "+loginURL.Host+" (login page?): check Cloudflare Access credentials") {
			t.Errorf("message = %q", err)
		}
	}
	if loginHits != 0 {
		t.Errorf("the login page was fetched %d times: redirects must not be followed", loginHits)
	}

	// The fake's own redirect, and the right credentials.
	c := overTCP(t, api, nil)
	var ae *AuthError
	if _, err := c.Rules(t.Context()); !errors.As(err, &ae) || ae.Host != "team.cloudflareaccess.com" {
		t.Fatalf("err = %v", err)
	}
	c = overTCP(t, api, func(c *Config) { c.Auth = Auth{CFClientID: "cf-id", CFClientSecret: "cf-secret"} })
	if _, err := c.Rules(t.Context()); err != nil {
		t.Fatalf("with credentials: %v", err)
	}
}

func TestUserAgentAndHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		api.add("a", "1")
		auth := newFakeAuth0(map[string]string{"client_id": "cid", "client_secret": "csecret", "audience": DefaultAudience, "grant_type": "password", "username": "user", "password": "pw"}, 3600)
		c, _ := inProcess(t, api, auth, func(c *Config) { c.Auth.CFClientID, c.Auth.CFClientSecret = "cf-id", "cf-secret" })
		ctx := t.Context()
		if _, err := c.Lease(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if err := c.Report(ctx, Report{Name: "a", Version: "1", Reason: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Rules(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.QueueStatus(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range api.recorded() {
			h := r.header
			if h.Get("User-Agent") != "dragonfly-fleet/test" || h.Get("CF-Access-Client-Id") != "cf-id" || h.Get("CF-Access-Client-Secret") != "cf-secret" || h.Get("Authorization") != "Bearer tok-1" {
				t.Errorf("%s %s headers = %v", r.method, r.path, h)
			}
			if (r.method == "PUT") != (h.Get("Content-Type") == "application/json") {
				t.Errorf("%s %s content type %q", r.method, r.path, h.Get("Content-Type"))
			}
		}
		if len(auth.agents) != 1 || auth.agents[0] != "dragonfly-fleet/test" {
			t.Errorf("token endpoint user agents = %q", auth.agents)
		}
	})
}

func TestMetadataAndQueueStatus(t *testing.T) {
	api := newFakeAPI()
	api.add("a", "1")
	c := overTCP(t, api, nil)
	m, err := c.Metadata(t.Context())
	if err != nil || m != (Metadata{ServerCommit: "srv-1", RulesCommit: "rules-1"}) {
		t.Fatalf("metadata = %+v, %v", m, err)
	}
	q, err := c.QueueStatus(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if q.Queued != 1 || q.TotalBacklog != 1 || q.OldestAgeSeconds != nil || string(q.Fields["workers"]) != "3" {
		t.Errorf("queue status = %+v", q)
	}
}

func TestMalformedRules(t *testing.T) {
	for _, body := range []string{`{"hash":"h"}`, `{"rules":{}}`, `{"hash":"h","rules":[]}`, `[]`} {
		api := newFakeAPI()
		api.fail("GET /rules", fault{status: 200, body: body})
		c := overTCP(t, api, nil)
		if rs, err := c.Rules(t.Context()); err == nil {
			t.Errorf("body %s: got %+v, want an error", body, rs)
		}
	}
}

func TestResponseTooLarge(t *testing.T) {
	api := newFakeAPI()
	api.fail("GET /rules", fault{status: 200, body: `{"hash":"h","rules":{"a":"` + strings.Repeat("x", 2000) + `"}}`})
	c := overTCP(t, api, func(c *Config) { c.MaxResponseBytes = 1000 })
	_, err := c.Rules(t.Context())
	if !errors.Is(err, bound.ErrTooLarge) || !strings.Contains(err.Error(), "response body larger than 1000 bytes") {
		t.Fatalf("err = %v", err)
	}
	if n := api.count("GET /rules"); n != 1 {
		t.Errorf("%d tries, want 1", n)
	}
}

func TestObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type obs struct {
			endpoint string
			status   int
		}
		var calls []obs
		var refreshes []error
		api := newFakeAPI()
		api.fail("GET /rules", fault{status: 503})
		auth := newFakeAuth0(map[string]string{"client_id": "cid", "client_secret": "csecret", "audience": DefaultAudience, "grant_type": "password", "username": "user", "password": "pw"}, 3600)
		auth.faults = []fault{{status: 500, body: `{"error":"server_error"}`}}
		c, _ := inProcess(t, api, auth, func(c *Config) {
			c.Observer = Observer{
				Call:         func(e string, s int, _ time.Duration) { calls = append(calls, obs{e, s}) },
				TokenRefresh: func(err error) { refreshes = append(refreshes, err) },
			}
		})
		if _, err := c.Rules(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Token failure (no API call), then 503, then 200.
		want := []obs{{"GET /rules", 503}, {"GET /rules", 200}}
		if len(calls) != len(want) || calls[0] != want[0] || calls[1] != want[1] {
			t.Errorf("calls = %v, want %v", calls, want)
		}
		var te *TokenError
		if len(refreshes) != 2 || !errors.As(refreshes[0], &te) || te.Status != 500 || refreshes[1] != nil {
			t.Errorf("refreshes = %v", refreshes)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	api := newFakeAPI()
	for i := range 40 {
		api.add("p"+string(rune('a'+i%26))+strings.Repeat("x", i/26), "1")
	}
	auth := newFakeAuth0(map[string]string{"client_id": "cid", "client_secret": "csecret", "audience": DefaultAudience, "grant_type": "password", "username": "user", "password": "pw"}, 3600)
	api.auth = auth
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", auth)
	mux.Handle("/", api)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := mustNew(t, Config{BaseURL: srv.URL, Auth: Auth{TokenURL: srv.URL + "/oauth/token", ClientID: "cid", ClientSecret: "csecret", Username: "user", Password: "pw"}})
	// Warm the token, then revoke it: every goroutine meets a 401 with the
	// same token, and one refresh serves them all.
	if _, err := c.Metadata(t.Context()); err != nil {
		t.Fatal(err)
	}
	auth.revokeAll()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				jobs, err := c.Lease(t.Context(), 2)
				if err != nil {
					errs <- err
					return
				}
				if len(jobs) == 0 {
					return
				}
				for _, j := range jobs {
					if err := c.Report(t.Context(), Report{Name: j.Name, Version: j.Version, Attempt: j.Attempt, AssignmentID: j.AssignmentID, Success: &Success{Commit: j.Hash}}); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	for k, j := range api.jobs {
		if j.state != "finished" {
			t.Errorf("%s: %s", k, j.state)
		}
	}
	if f := auth.fetches(); f != 2 {
		t.Errorf("%d token fetches, want 2 (one refresh for all the 401s)", f)
	}
}

func TestBackoffBounds(t *testing.T) {
	c := mustNew(t, Config{BaseBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	for n := 1; n <= 8; n++ {
		ceil := min(100*time.Millisecond<<(n-1), time.Second)
		var maxSeen time.Duration
		for range 500 {
			d := c.backoff(n, 0, false)
			if d < 0 || d > ceil {
				t.Fatalf("retry %d: backoff %v outside [0, %v]", n, d, ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceil/2 {
			t.Errorf("retry %d: largest of 500 waits %v, want jitter over [0, %v]", n, maxSeen, ceil)
		}
	}
	if d := c.backoff(1, 5*time.Second, true); d != time.Second {
		t.Errorf("Retry-After 5s with MaxBackoff 1s: %v", d)
	}
	if d := c.backoff(3, 200*time.Millisecond, true); d != 200*time.Millisecond {
		t.Errorf("Retry-After 200ms: %v", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 120 ", 120 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"Sat, 01 Aug 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Sat, 01 Aug 2026 11:00:00 GMT", 0, true},
		{"99999999999999999", time.Duration(1<<62) / time.Second * time.Second, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestLeaseLogsFewMalformedJobs: an answer of many malformed jobs writes a
// few lines and a count, not a line each; the good job is leased.
func TestLeaseLogsFewMalformedJobs(t *testing.T) {
	body := "[" + strings.Repeat("null,", 1000) + `{"name":"b","version":"1","distributions":[],"hash":"h"}]`
	lines := strings.Split(strings.TrimSpace(leaseLogged(t, body, "b")), "\n")
	if len(lines) != maxSkippedLogged+1 || !strings.Contains(lines[len(lines)-1], "more=995") {
		t.Fatalf("%d log lines, last %q; want %d and a count of the rest", len(lines), lines[len(lines)-1], maxSkippedLogged+1)
	}
}
