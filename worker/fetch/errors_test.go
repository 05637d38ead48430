package fetch

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

func TestStripQuoted(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"no quotes", "no quotes"},
		{`malformed HTTP response "garbage"`, `malformed HTTP response "…"`},
		{`a "x" b "y" c`, `a "…" b "…" c`},
		{`escaped "a\"b\\" tail`, `escaped "…" tail`},
		{`unterminated "rest of the bytes`, `unterminated "…"`},
		{`trailing backslash "abc\`, `trailing backslash "…"`},
		{`""`, `"…"`},
	} {
		if got := stripQuoted(tc.in); got != tc.want {
			t.Errorf("stripQuoted(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Transport errors quote what the server sent; the message keeps the
// error's words and drops the server's bytes, bounded.
func TestErrorTextCarriesNoResponseBytes(t *testing.T) {
	huge := strings.Repeat("SECRET", 20_000)
	for _, tc := range []struct {
		name, response string
		want           string // a part of the message
	}{
		{"garbage status line", "garbageSECRET\r\n\r\n", "malformed HTTP response"},
		{"bad status code", "HTTP/1.1 SECRET200 OK\r\n\r\n", "malformed HTTP status code"},
		{"bad version", "HTTP/SECRET 200 OK\r\n\r\n", "malformed HTTP version"},
		{"header line without colon", "HTTP/1.1 200 OK\r\nSECRET header\r\n\r\n", "malformed MIME header"},
		{"huge status line", "HTTP/1.1 " + huge + "\r\n\r\n", "malformed HTTP status code"},
		{"bad Location", "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/%zzSECRET" + huge + "\r\nContent-Length: 0\r\n\r\n", "failed to parse Location header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := testkit.RawHTTPServer(t, func(conn net.Conn, n int) { io.WriteString(conn, tc.response) })
			f, _ := newTest(t, Config{Attempts: 1}, url)
			_, err := f.Get(t.Context(), url+"/x.whl")
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "SECRET") || len(msg) > maxErrorText {
				t.Errorf("message of %d bytes carries response bytes: %.300q", len(msg), msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not say %q", msg, tc.want)
			}
		})
	}
}

func TestInvalidURLTextBounded(t *testing.T) {
	f, _ := newTest(t, Config{}, "http://127.0.0.1:8000")
	for _, raw := range []string{
		"http://127.0.0.1:" + strings.Repeat("9x", 1<<19) + "/?token=SECRET",
		"http://127.0.0.1:8000/%zzSECRET",
		"http://SECRET host/",
	} {
		_, err := f.Get(t.Context(), raw)
		if err == nil || !strings.HasPrefix(err.Error(), "invalid download URL: ") {
			t.Fatalf("err = %.200v, want an invalid URL error", err)
		}
		if strings.Contains(err.Error(), "SECRET") || len(err.Error()) > maxErrorText+64 {
			t.Errorf("message of %d bytes: %.300q", len(err.Error()), err)
		}
		if Transient(err) {
			t.Errorf("%v is transient", err)
		}
	}
}

func TestSafeTextCertificateNames(t *testing.T) {
	raw := hostnameError()
	if !strings.Contains(raw.Error(), "SECRET") {
		t.Fatalf("x509 message %q lists no names: the test proves nothing", raw)
	}
	err := &netError{err: fmt.Errorf("tls: %w", raw)}
	if got := err.Error(); got != "tls: certificate is not valid for files.example" {
		t.Errorf("message = %q", got)
	}
	if Transient(err) {
		t.Error("a certificate error is transient")
	}
	var ne *netError
	if !errors.As(error(err), &ne) {
		t.Error("not a netError")
	}
}

func hostnameError() error {
	cert := &x509.Certificate{DNSNames: []string{"SECRET-1.example", "SECRET-2.example"}}
	return x509.HostnameError{Certificate: cert, Host: "files.example"}
}
