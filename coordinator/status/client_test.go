package status

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"
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

// TestFetchRedirectKeepsToken: a redirect to another origin (here the same
// host on another port; in practice https to http, or another service on
// the coordinator's host) must not carry the status token there. Go's
// client keeps Authorization for any port and scheme of the same host.
func TestFetchRedirectKeepsToken(t *testing.T) {
	got := make(chan string, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("Authorization"):
		default:
		}
		w.Write([]byte("{}"))
	}))
	defer other.Close()
	coord := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/status.json", http.StatusFound)
	}))
	defer coord.Close()

	_, err := Fetch(t.Context(), coord.URL+"/status.json", "s3cret", 5*time.Second)
	select {
	case auth := <-got:
		if auth != "" {
			t.Errorf("the status token went to %s after a redirect: Authorization %q", other.URL, auth)
		}
	default:
	}
	if err == nil {
		t.Error("a redirect to another origin with a token: no error")
	}
}

// TestFetchRedirectSameOrigin: a redirect within the coordinator's origin
// (a proxy normalising the path) still works with the token.
func TestFetchRedirectSameOrigin(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fleet/status.json" {
			http.Redirect(w, r, "/fleet/status.json", http.StatusMovedPermanently)
			return
		}
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	if _, err := Fetch(t.Context(), srv.URL+"/status.json", "s3cret", 5*time.Second); err != nil {
		t.Errorf("same-origin redirect: %v", err)
	}
}

// TestFetchStatusControl: the status line of the answer is the server's
// text; it reaches the operator's terminal in the error (dragonfly status
// prints it, and --watch every interval), so it must carry no escape
// sequence.
func TestFetchStatusControl(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "HTTP/1.1 500 \x1b]0;pwned\x07\x1b[2J\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}()
	_, err = Fetch(t.Context(), "http://"+ln.Addr().String()+"/status.json", "", 5*time.Second)
	<-done
	if err == nil {
		t.Fatal("status 500: no error")
	}
	if strings.ContainsAny(err.Error(), "\x1b\x07") {
		t.Errorf("error carries the server's control characters: %q", err.Error())
	}
}

// TestViewJSONIsTerminalSafe: --format json writes the document the
// coordinator sent, whose strings come from packages and workers;
// encoding/json leaves C1 controls (U+009B: a CSI to some terminals), bidi
// controls, line separators and zero-width characters (a worker "w1"
// and another "w1\u200b" read alike) raw. They reach the terminal escaped, with
// the same meaning to a JSON reader; a body that is not JSON is refused.
func TestViewJSONIsTerminalSafe(t *testing.T) {
	body := "{\"name\":\"a\u009b2Jb\u202ec\u2028d\xffe\uFFFDf\u200bg\u2060\U000e0041h\u034fi\u3164\"}"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad/status.json" {
			io.WriteString(w, "\x1b[2J not json")
			return
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	for _, every := range []time.Duration{0, time.Hour} {
		ctx, cancel := context.WithCancel(t.Context())
		var out bytes.Buffer
		v := View{URL: srv.URL + "/status.json", Timeout: 5 * time.Second, JSON: true, Every: every,
			After: func(time.Duration) <-chan time.Time { cancel(); return nil }}
		if err := v.Run(ctx, &out); err != nil {
			t.Fatal(err)
		}
		cancel()
		if i := strings.IndexFunc(out.String(), func(r rune) bool {
			return r >= 0x80 && r <= 0x9f || r == '\u2028' || unicode.Is(unicode.Bidi_Control, r) || r == '\u200b' || r == '\u2060' || r == '\U000e0041' || r == '\u034f' || r == '\u3164'
		}); i >= 0 {
			t.Errorf("every %s: raw control at %d: %q", every, i, out.String())
		}
		var doc struct{ Name string }
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("every %s: output is not JSON: %v: %q", every, err, out.String())
		}
		if want := "a\u009b2Jb\u202ec\u2028d\uFFFDe\uFFFDf\u200bg\u2060\U000e0041h\u034fi\u3164"; doc.Name != want {
			t.Errorf("every %s: name %q, want %q", every, doc.Name, want)
		}
	}
	var out bytes.Buffer
	v := View{URL: srv.URL + "/bad/status.json", Timeout: 5 * time.Second, JSON: true}
	if err := v.Run(t.Context(), &out); err == nil || out.Len() > 0 {
		t.Errorf("a body that is not JSON: err %v, wrote %q", err, out.String())
	}
}
