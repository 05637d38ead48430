package devapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// assertDetail checks a {"detail": text} answer's exact text.
func assertDetail(t *testing.T, rec *httptest.ResponseRecorder, want string) {
	t.Helper()
	var d struct {
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatalf("detail body %s: %v", rec.Body, err)
	}
	if d.Detail != want {
		t.Fatalf("detail %q, want %q", d.Detail, want)
	}
}

func lookup(t *testing.T, f *fixture, name, version string, hdr ...string) []scanJSON {
	t.Helper()
	rec := f.do(http.MethodGet, "/package?name="+url.QueryEscape(name)+"&version="+url.QueryEscape(version), nil, hdr...)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /package: %d %s", rec.Code, rec.Body)
	}
	var out []scanJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
