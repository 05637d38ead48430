package mainframe

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// TestRedirectHostIsBounded: an API (or whoever answers as it) that
// redirects to a host of megabytes (Go's client reads 10 MB of response
// header) gets an error naming a host of at most 256 bytes: the error is
// logged at every lease try and kept by the status page. It was the whole
// host, a log line of 4 MiB per try.
func TestRedirectHostIsBounded(t *testing.T) {
	huge := strings.Repeat("a", 4<<20) + ".example"
	c := overTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://"+huge+"/login")
		w.WriteHeader(http.StatusFound)
	}), nil)
	_, err := c.Lease(t.Context(), 1)
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %T %.200v, want *AuthError", err, err)
	}
	t.Logf("error of %d bytes", len(err.Error()))
	if n := len(err.Error()); n > 1024 {
		t.Fatalf("redirect error of %d bytes, want at most 1 KiB", n)
	}
	if !strings.HasPrefix(ae.Host, "aaaa") {
		t.Fatalf("host %.40q, want its start", ae.Host)
	}
}

// TestTokenErrorCodeIsBounded: a token endpoint (or whoever answers as it)
// whose "error" field is a string of a MiB gets an error of at most a few
// hundred bytes; the code went whole into the error, logged at every lease
// try and report retry.
func TestTokenErrorCodeIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		auth := newFakeAuth0(passwordWant(), 3600)
		auth.faults = []fault{{status: 403, body: `{"error":"` + strings.Repeat("x", 1<<20-64) + `","error_description":"no"}`}}
		c, _ := inProcess(t, api, auth, nil)
		_, err := c.Lease(t.Context(), 1)
		var te *TokenError
		if !errors.As(err, &te) || te.Status != 403 {
			t.Fatalf("err = %.200v", err)
		}
		t.Logf("error of %d bytes", len(err.Error()))
		if n := len(err.Error()); n > 1024 {
			t.Fatalf("token error of %d bytes, want at most 1 KiB", n)
		}
	})
}

// hugeStatusLine serves HTTP on loopback answering every request with a
// status line of 4 MiB, which Go's transport quotes whole in its error
// ("malformed HTTP status code"); it returns the server's address.
func hugeStatusLine(t *testing.T) string {
	t.Helper()
	url := testkit.RawHTTPServer(t, func(c net.Conn, _ int) {
		c.Write([]byte("HTTP/1.1 2" + strings.Repeat("x", 4<<20) + " OK\r\nContent-Length: 0\r\n\r\n"))
	})
	return strings.TrimPrefix(url, "http://")
}

// TestTransportErrorsAreBounded: an API or token endpoint (or whoever
// answers as them) whose status line is 4 MiB gets errors of at most a few
// KiB, and so log lines: every try of a call logged the whole line (4 lines
// of 4 MiB for one GET /rules), and the caller logged it once more.
func TestTransportErrorsAreBounded(t *testing.T) {
	addr := hugeStatusLine(t)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"api", Config{BaseURL: "http://" + addr + "/"}},
		{"token endpoint", Config{BaseURL: "http://" + addr + "/", Auth: Auth{TokenURL: "http://" + addr + "/oauth/token",
			ClientID: "cid", ClientSecret: "csecret", Username: "u", Password: "p"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log testkit.SyncBuffer
			cfg := tc.cfg
			cfg.UserAgent, cfg.BaseBackoff, cfg.MaxBackoff = "t", time.Millisecond, 5*time.Millisecond
			cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
			c := mustNew(t, cfg)
			_, err := c.Rules(t.Context())
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error of %d bytes; %d bytes of log in %d lines", len(err.Error()), len(log.String()), strings.Count(log.String(), "\n"))
			if n := len(err.Error()); n > 8<<10 {
				t.Fatalf("error of %d bytes, want at most 8 KiB", n)
			}
			if n := len(log.String()); n > 64<<10 {
				t.Fatalf("%d bytes of log for one call, want at most 64 KiB", n)
			}
		})
	}
}
