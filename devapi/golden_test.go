package devapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current answers")

// step is one request of the golden conversation.
type step struct {
	Name        string          `json:"step"`
	Method      string          `json:"method"`
	Target      string          `json:"target"`
	Body        string          `json:"body,omitempty"`
	Status      int             `json:"status"`
	ContentType string          `json:"content_type"`
	Answer      json.RawMessage `json:"answer,omitempty"` // a JSON answer
	Text        string          `json:"text,omitempty"`   // any other answer
	prepare     func(f *fixture)
}

// TestGoldenConversation plays a fixed conversation (leases, every report
// outcome, lookups, queue status, errors) against a server with a fake clock
// and deterministic ids, and compares every status and body with
// testdata/api.golden.json, which was checked by hand against
// /work/shared/dragonfly-api.md (field names, 200 null, {"detail": text},
// 422 {"detail": [{type, loc, msg, input}]}) and the real server's sources
// (vipyrsec/dragonfly-mainframe 2026-08: endpoints/job.py and package.py
// for the details and codes, models/schemas.py for the body models, whose
// union explains the paired 422 errors; Starlette's plain-text 500).
func TestGoldenConversation(t *testing.T) {
	f := newFixture(t, Config{
		Files: []File{sdist("alpha-1.0.tar.gz"), sdist("alpha-1.0-py3-none-any.whl"), sdist("beta-2.0.tar.gz")},
		Rules: map[string]string{"demo": "rule r1 { condition: true }"},
	})
	steps := []step{
		{Name: "lease two", Method: "POST", Target: "/jobs?batch=2"},
		{Name: "lease from empty queue", Method: "POST", Target: "/jobs"},
		{Name: "batch zero: nothing, no error", Method: "POST", Target: "/jobs?batch=0"},
		{Name: "batch negative: the database refuses the LIMIT", Method: "POST", Target: "/jobs?batch=-1"},
		{Name: "batch not an integer", Method: "POST", Target: "/jobs?batch=ten"},
		{Name: "rules", Method: "GET", Target: "/rules"},
		{Name: "success report", Method: "PUT", Target: "/package", Body: `{"name":"alpha","version":"1.0","attempt":1,"assignment_id":"00000000-0000-4000-8000-000000000003","score":10,"inspector_url":"https://inspector.pypi.io/project/alpha/1.0/packages/aa/bb/cc/alpha-1.0.tar.gz/alpha-1.0/setup.py","rules_matched":["rule_a","rule_b"],"commit":"c0ffee"}`},
		{Name: "report again: finished", Method: "PUT", Target: "/package", Body: `{"name":"alpha","version":"1.0","attempt":1,"assignment_id":"00000000-0000-4000-8000-000000000003","reason":"late"}`},
		{Name: "report unknown release", Method: "PUT", Target: "/package", Body: `{"name":"gamma","version":"9","reason":"x"}`},
		{Name: "report with another lease's id", Method: "PUT", Target: "/package", Body: `{"name":"beta","version":"2.0","attempt":1,"assignment_id":"00000000-0000-4000-8000-000000000099","reason":"x"}`},
		{Name: "report with duplicate rules", Method: "PUT", Target: "/package", Body: `{"name":"beta","version":"2.0","score":1,"rules_matched":["r","r"],"commit":"c"}`},
		{Name: "report missing fields", Method: "PUT", Target: "/package", Body: `{"score":1}`},
		{Name: "report wrong types", Method: "PUT", Target: "/package", Body: `{"name":1,"version":"2.0","attempt":"one","score":1.5,"rules_matched":"r","commit":null}`},
		{Name: "report with neither commit nor reason", Method: "PUT", Target: "/package", Body: `{"name":"beta","version":"2.0"}`},
		{Name: "report attempt zero", Method: "PUT", Target: "/package", Body: `{"name":"beta","version":"2.0","attempt":0,"reason":"x"}`},
		{Name: "report attempt without assignment id", Method: "PUT", Target: "/package", Body: `{"name":"beta","version":"2.0","attempt":1,"reason":"x"}`},
		{Name: "report by a PEP 503 spelling of the name", Method: "PUT", Target: "/package", Body: `{"name":"Beta","version":"2.0","reason":"x"}`},
		{Name: "report bad assignment id", Method: "PUT", Target: "/package", Body: `{"name":"beta","version":"2.0","assignment_id":"nope","reason":"x"}`},
		{Name: "report not JSON", Method: "PUT", Target: "/package", Body: `{"name":`},
		{Name: "report not an object", Method: "PUT", Target: "/package", Body: `[1]`},
		{Name: "failure report", Method: "PUT", Target: "/package", Body: `{"name":"beta","version":"2.0","attempt":1,"assignment_id":"00000000-0000-4000-8000-000000000004","reason":"limit: expanded size over 512 MiB"}`},
		{Name: "lookup", Method: "GET", Target: "/package?name=alpha&version=1.0"},
		{Name: "lookup failed", Method: "GET", Target: "/package?name=beta&version=2.0"},
		{Name: "lookup without parameters", Method: "GET", Target: "/package"},
		{Name: "queue again: the release has its row", Method: "POST", Target: "/package", Body: `{"name":"alpha","version":"1.0"}`},
		{Name: "queue unknown", Method: "POST", Target: "/package", Body: `{"name":"gamma","version":"1"}`},
		{Name: "queue status", Method: "GET", Target: "/queue-status", prepare: func(f *fixture) {
			f.s.Add("gamma", "0.1", []File{sdist("gamma-0.1.tar.gz")})
			f.clock.Advance(30 * time.Second)
		}},
		{Name: "unknown route", Method: "GET", Target: "/nope"},
		{Name: "wrong method", Method: "DELETE", Target: "/jobs"},
		{Name: "outage", Method: "POST", Target: "/jobs", prepare: func(f *fixture) { f.s.Unavailable(time.Minute) }},
	}
	for i := range steps {
		st := &steps[i]
		if st.prepare != nil {
			st.prepare(f)
		}
		var body any
		if st.Body != "" {
			body = st.Body
		}
		rec := f.do(st.Method, st.Target, body)
		st.Status = rec.Code
		st.ContentType = rec.Header().Get("Content-Type")
		isJSON := st.ContentType == "application/json"
		if isJSON != json.Valid(rec.Body.Bytes()) {
			t.Fatalf("step %q: Content-Type %q for %q", st.Name, st.ContentType, rec.Body)
		}
		if isJSON {
			st.Answer = json.RawMessage(rec.Body.Bytes())
		} else {
			st.Text = rec.Body.String()
		}
	}
	got, err := json.MarshalIndent(steps, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var canon bytes.Buffer
	if err := json.Indent(&canon, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "api.golden.json")
	if *update {
		if err := os.WriteFile(path, append(canon.Bytes(), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if strings.TrimSpace(canon.String()) != strings.TrimSpace(string(want)) {
		t.Errorf("answers differ from %s; got:\n%s", path, canon.String())
	}
}

// TestJobShapeMatchesSpec checks the exact key set of a leased job and of
// a 422 error item, as documented.
func TestJobShapeMatchesSpec(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("alpha-1.0.tar.gz")}})
	rec := f.do(http.MethodPost, "/jobs?batch=1", nil)
	var jobs []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %s: %v", rec.Body, err)
	}
	if got, want := keys(jobs[0]), "assignment_id attempt distributions hash name version"; got != want {
		t.Errorf("job keys = %q, want %q", got, want)
	}
	rec = f.report(map[string]any{"name": "alpha"})
	var ve struct {
		Detail []map[string]any `json:"detail"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ve); err != nil || rec.Code != http.StatusUnprocessableEntity || len(ve.Detail) == 0 {
		t.Fatalf("422 %d %s: %v", rec.Code, rec.Body, err)
	}
	for _, item := range ve.Detail {
		if got, want := keys(item), "input loc msg type"; got != want {
			t.Errorf("422 item keys = %q, want %q", got, want)
		}
	}
}

func keys(m map[string]any) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
