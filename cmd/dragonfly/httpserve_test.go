package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestPprofNeverServesTheCommandLine: flags may carry secrets
// (--fleet-token), so the profiling handler answers 404 for the command line
// while it serves the profiles.
func TestPprofNeverServesTheCommandLine(t *testing.T) {
	srv := httptest.NewServer(pprofHandler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/debug/pprof/cmdline", "/debug/pprof/cmdline?debug=1"} {
		if code, body := get(p); code != http.StatusNotFound || strings.Contains(body, os.Args[0]) {
			t.Errorf("%s: %d, want 404 without the command line", p, code)
		}
	}
	if code, _ := get("/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Errorf("goroutine profile: %d, want 200", code)
	}
}

// TestBearerOnly: the paths it protects need the token; the others stay open.
func TestBearerOnly(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	h := bearerOnly("s3cret", func(p string) bool { return p == "/status" }, ok)
	for _, tc := range []struct {
		path, auth string
		code       int
	}{
		{"/status", "", http.StatusUnauthorized},
		{"/status", "Bearer wrong", http.StatusUnauthorized},
		{"/status", "Bearer s3cret", http.StatusOK},
		{"/metrics", "", http.StatusOK},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("%s %q: %d, want %d", tc.path, tc.auth, rec.Code, tc.code)
		}
	}
	if bearerOnly("", func(string) bool { return true }, ok) == nil {
		t.Fatal("nil handler")
	}
}
