package status

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDocumentURL: host:port or a URL of the status page, with or without
// the path, name the status document.
func TestDocumentURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"localhost:10179", "http://localhost:10179/status.json"},
		{":10179", "http://localhost:10179/status.json"},
		{"10.0.0.7:10179", "http://10.0.0.7:10179/status.json"},
		{"[::1]:10179", "http://[::1]:10179/status.json"},
		{"http://coord:10179", "http://coord:10179/status.json"},
		{"http://coord:10179/", "http://coord:10179/status.json"},
		{"http://coord:10179/status", "http://coord:10179/status.json"},
		{"https://ops.example/fleet/status.json", "https://ops.example/fleet/status.json"},
		{"https://ops.example/fleet/", "https://ops.example/fleet/status.json"},
	}
	for _, tt := range tests {
		got, err := DocumentURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("DocumentURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "coord", "ftp://coord/x", "http://"} {
		if got, err := DocumentURL(bad); err == nil {
			t.Errorf("DocumentURL(%q) = %q, want an error", bad, got)
		}
	}
}

// TestProtect: the status paths need the token; the others stay open.
func TestProtect(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	h := Protect("s3cret", ok)
	for _, tc := range []struct {
		path, auth string
		code       int
	}{
		{"/status", "", http.StatusUnauthorized},
		{"/status", "Bearer wrong", http.StatusUnauthorized},
		{"/status", "Bearer s3cret", http.StatusOK},
		{"/status.json", "", http.StatusUnauthorized},
		{"/", "Bearer s3cret ", http.StatusUnauthorized},
		{"/metrics", "", http.StatusOK},
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
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
	rec := httptest.NewRecorder()
	Protect("", ok).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("no token: %d", rec.Code)
	}
}
