package devapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// fixture is a server under test with a fake clock and deterministic ids.
type fixture struct {
	t     testing.TB
	s     *Server
	clock *testkit.Clock
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	c := testkit.NewClock()
	if cfg.Now == nil {
		cfg.Now = c.Now
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://devapi.test"
	}
	n := 0
	cfg.newID = func() string { // called under the server's lock
		n++
		return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &fixture{t: t, s: s, clock: c}
}

// do sends one request through the handler and returns the answer.
func (f *fixture) do(method, target string, body any, hdr ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			f.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, target, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	f.s.Handler().ServeHTTP(rec, req)
	return rec
}

// job is a leased job as a client decodes it: the server's own fields.
type job = jobJSON

func (f *fixture) lease(batch int, hdr ...string) []job {
	f.t.Helper()
	rec := f.do(http.MethodPost, fmt.Sprintf("/jobs?batch=%d", batch), nil, hdr...)
	if rec.Code != http.StatusOK {
		f.t.Fatalf("POST /jobs: %d %s", rec.Code, rec.Body)
	}
	var jobs []job
	if err := json.Unmarshal(rec.Body.Bytes(), &jobs); err != nil {
		f.t.Fatalf("decode jobs: %v: %s", err, rec.Body)
	}
	return jobs
}

// success is a success report for j.
func success(j job, score int, rules ...string) map[string]any {
	if rules == nil {
		rules = []string{}
	}
	return map[string]any{
		"name": j.Name, "version": j.Version, "attempt": j.Attempt, "assignment_id": j.AssignmentID,
		"score": score, "inspector_url": nil, "rules_matched": rules, "commit": j.Hash,
	}
}

func failure(j job, reason string) map[string]any {
	return map[string]any{"name": j.Name, "version": j.Version, "attempt": j.Attempt, "assignment_id": j.AssignmentID, "reason": reason}
}

func (f *fixture) report(body any) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do(http.MethodPut, "/package", body)
}

func names(jobs []job) string {
	parts := make([]string, len(jobs))
	for i, j := range jobs {
		parts[i] = fmt.Sprintf("%s@%s#%d", j.Name, j.Version, j.Attempt)
	}
	return strings.Join(parts, " ")
}

// sdist is a File whose content is unique to name.
func sdist(name string) File { return File{Name: name, Data: []byte("content of " + name)} }
