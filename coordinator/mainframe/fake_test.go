package mainframe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// fakeAPI behaves like the Dragonfly server for the calls the client makes:
// leases with attempt and assignment_id, the 404/409/422 answers of
// PUT /package, Cloudflare Access redirects and Auth0 token checks. Scripted
// faults answer requests before the normal behaviour.
type fakeAPI struct {
	mu          sync.Mutex
	queue       []*fakeJob // never leased, oldest first
	jobs        map[string]*fakeJob
	leaseFields bool // send attempt and assignment_id
	rulesHash   string
	cfID        string // require this CF-Access-Client-Id (and cfSecret) when set
	cfSecret    string
	auth        *fakeAuth0 // require a bearer token it issued, when set
	faults      map[string][]fault
	requests    []recorded
	nextID      int
}

type fakeJob struct {
	name, version string
	dists         []string
	state         string // queued, pending, finished, failed
	attempt       int
	assignment    string
	report        map[string]any
}

// fault is one scripted answer.
type fault struct {
	status int
	header http.Header
	body   string
	block  bool // wait until the request's context ends, then answer nothing
}

type recorded struct {
	method, path string
	header       http.Header
	body         []byte
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{jobs: map[string]*fakeJob{}, leaseFields: true, rulesHash: "rules-1", faults: map[string][]fault{}}
}

func (f *fakeAPI) add(name, version string, dists ...string) *fakeJob {
	f.mu.Lock()
	defer f.mu.Unlock()
	if dists == nil {
		dists = []string{}
	}
	j := &fakeJob{name: name, version: version, dists: dists, state: "queued"}
	f.jobs[name+"@"+version] = j
	f.queue = append(f.queue, j)
	return j
}

// fail scripts the next answers to endpoint ("PUT /package").
func (f *fakeAPI) fail(endpoint string, fs ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[endpoint] = append(f.faults[endpoint], fs...)
}

func (f *fakeAPI) count(endpoint string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if r.method+" "+r.path == endpoint {
			n++
		}
	}
	return n
}

func (f *fakeAPI) recorded() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func detail(w http.ResponseWriter, status int, text string) {
	writeJSON(w, status, map[string]string{"detail": text})
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	endpoint := r.Method + " " + r.URL.Path
	f.mu.Lock()
	f.requests = append(f.requests, recorded{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body})
	var ft *fault
	if q := f.faults[endpoint]; len(q) > 0 {
		ft, f.faults[endpoint] = &q[0], q[1:]
	}
	f.mu.Unlock()
	if ft != nil {
		if ft.block {
			<-r.Context().Done()
			return
		}
		for k, v := range ft.header {
			w.Header()[k] = v
		}
		w.WriteHeader(ft.status)
		io.WriteString(w, ft.body)
		return
	}
	if f.cfID != "" && (r.Header.Get("CF-Access-Client-Id") != f.cfID || r.Header.Get("CF-Access-Client-Secret") != f.cfSecret) {
		http.Redirect(w, r, "https://team.cloudflareaccess.com/cdn-cgi/access/login/dragonfly.example?redirect_url="+url.QueryEscape(r.URL.Path), http.StatusFound)
		return
	}
	if f.auth != nil && !f.auth.valid(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
		detail(w, http.StatusUnauthorized, "Invalid or expired token")
		return
	}
	switch endpoint {
	case "POST /jobs":
		f.lease(w, r)
	case "PUT /package":
		f.report(w, body)
	case "GET /rules":
		writeJSON(w, 200, map[string]any{"hash": f.rulesHash, "rules": map[string]string{"a": "rule a { condition: true }"}})
	case "GET /":
		writeJSON(w, 200, map[string]string{"server_commit": "srv-1", "rules_commit": f.rulesHash})
	case "GET /queue-status":
		f.mu.Lock()
		n := len(f.queue)
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"queued": n, "in_progress": 0, "retryable": 0, "exhausted": 0, "stranded": 0, "total_backlog": n, "oldest_age_seconds": nil, "workers": 3})
	default:
		detail(w, http.StatusNotFound, "Not Found")
	}
}

func (f *fakeAPI) lease(w http.ResponseWriter, r *http.Request) {
	batch, err := strconv.Atoi(r.URL.Query().Get("batch"))
	if err != nil {
		writeJSON(w, 422, map[string]any{"detail": []map[string]any{{"type": "int_parsing", "loc": []any{"query", "batch"}, "msg": "Input should be a valid integer"}}})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []map[string]any{}
	for len(out) < batch && len(f.queue) > 0 {
		j := f.queue[0]
		f.queue = f.queue[1:]
		j.state = "pending"
		j.attempt++
		f.nextID++
		j.assignment = fmt.Sprintf("00000000-0000-4000-8000-%012d", f.nextID)
		m := map[string]any{"name": j.name, "version": j.version, "distributions": j.dists, "hash": f.rulesHash}
		if f.leaseFields {
			m["attempt"] = j.attempt
			m["assignment_id"] = j.assignment
		}
		out = append(out, m)
	}
	writeJSON(w, 200, out)
}

// report validates a PUT /package body like the server's pydantic models.
func (f *fakeAPI) report(w http.ResponseWriter, body []byte) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		writeJSON(w, 422, map[string]any{"detail": []map[string]any{{"type": "json_invalid", "loc": []any{"body"}, "msg": "JSON decode error", "input": string(body)}}})
		return
	}
	var bad []map[string]any
	need := func(k string, ok func(any) bool) {
		if v, present := m[k]; !present || !ok(v) {
			bad = append(bad, map[string]any{"type": "invalid", "loc": []any{"body", k}, "msg": "Field invalid or missing", "input": m})
		}
	}
	isString := func(v any) bool { _, ok := v.(string); return ok }
	need("name", isString)
	need("version", isString)
	if _, failure := m["reason"]; failure {
		need("reason", isString)
	} else {
		need("score", func(v any) bool { _, ok := v.(float64); return ok })
		need("commit", isString)
		need("inspector_url", func(v any) bool { return v == nil || isString(v) })
		need("rules_matched", func(v any) bool { _, ok := v.([]any); return ok })
	}
	if len(bad) > 0 {
		writeJSON(w, 422, map[string]any{"detail": bad})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[m["name"].(string)+"@"+m["version"].(string)]
	switch {
	case j == nil:
		detail(w, 404, "Package not found")
		return
	case j.state == "finished":
		detail(w, 409, "Package is already finished")
		return
	case j.state == "failed" && j.attempt >= 3:
		detail(w, 409, "Package was dead-lettered after 3 attempts")
		return
	case j.state == "failed":
		detail(w, 409, "Package has already failed")
		return
	}
	if a, ok := m["assignment_id"]; ok && a != j.assignment {
		detail(w, 409, "Package is no longer assigned to this worker lease")
		return
	}
	j.report = m
	j.state = "finished"
	if _, failure := m["reason"]; failure {
		j.state = "failed"
	}
	writeJSON(w, 200, nil)
}

// fakeAuth0 is an Auth0 token endpoint issuing tok-1, tok-2, ... that live
// lifetime seconds. It accepts a JSON body (what the client sends for both
// grants) and a form body (what Auth0 also takes).
type fakeAuth0 struct {
	mu       sync.Mutex
	want     map[string]string // required request fields
	lifetime int
	issued   int
	valid_   map[string]time.Time // token -> expiry
	faults   []fault
	requests []map[string]string
	agents   []string
	types    []string // Content-Type of each request
}

func newFakeAuth0(want map[string]string, lifetime int) *fakeAuth0 {
	return &fakeAuth0{want: want, lifetime: lifetime, valid_: map[string]time.Time{}}
}

func (a *fakeAuth0) valid(tok string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.valid_[tok]
	return ok && time.Now().Before(exp)
}

func (a *fakeAuth0) revokeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.valid_)
}

func (a *fakeAuth0) fetches() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.requests)
}

func (a *fakeAuth0) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got := map[string]string{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		for k, v := range m {
			got[k] = fmt.Sprint(v)
		}
	} else {
		_ = r.ParseForm()
		for k := range r.PostForm {
			got[k] = r.PostForm.Get(k)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, got)
	a.agents = append(a.agents, r.Header.Get("User-Agent"))
	a.types = append(a.types, r.Header.Get("Content-Type"))
	if len(a.faults) > 0 {
		ft := a.faults[0]
		a.faults = a.faults[1:]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ft.status)
		io.WriteString(w, ft.body)
		return
	}
	for k, v := range a.want {
		if got[k] != v {
			writeJSON(w, 403, map[string]string{"error": "access_denied", "error_description": "Unauthorized: bad " + k})
			return
		}
	}
	if len(got) != len(a.want) {
		writeJSON(w, 400, map[string]string{"error": "invalid_request", "error_description": "unexpected fields"})
		return
	}
	a.issued++
	tok := fmt.Sprintf("tok-%d", a.issued)
	a.valid_[tok] = time.Now().Add(time.Duration(a.lifetime) * time.Second)
	writeJSON(w, 200, map[string]any{"access_token": tok, "expires_in": a.lifetime, "token_type": "Bearer"})
}

// hostTransport runs requests in process: it routes them by host to
// handlers, so tests can run inside a synctest bubble (no sockets). It calls
// the WroteRequest trace hook like a real transport, answers ctx
// cancellation like one, and can refuse connections.
type hostTransport struct {
	hosts map[string]http.Handler
	mu    sync.Mutex
	// refuse makes the next n requests fail as "connection refused" before
	// anything is written.
	refuse int
}

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h, ok := t.hosts[req.URL.Host]
	if !ok {
		return nil, fmt.Errorf("dial tcp %s: %w", req.URL.Host, syscall.ECONNREFUSED)
	}
	t.mu.Lock()
	refuse := t.refuse > 0
	if refuse {
		t.refuse--
	}
	t.mu.Unlock()
	if refuse {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteRequest != nil {
		tr.WroteRequest(httptrace.WroteRequestInfo{})
	}
	in := req.Clone(req.Context())
	in.Body = io.NopCloser(bytes.NewReader(body))
	in.RequestURI = req.URL.RequestURI()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, in)
	}()
	select {
	case <-done:
		resp := rec.Result()
		resp.Request = req
		return resp, nil
	case <-req.Context().Done():
		<-done // the handlers end when the request context does
		return nil, req.Context().Err()
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer = testkit.SyncBuffer

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// mustNew builds a client or fails the test.
func mustNew(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// apiErr extracts a *APIError or fails the test.
func apiErr(t testing.TB, err error) *APIError {
	t.Helper()
	var e *APIError
	if !errors.As(err, &e) {
		t.Fatalf("want *APIError, got %T: %v", err, err)
	}
	return e
}
