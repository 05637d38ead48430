package fetch

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

func TestGetOK(t *testing.T) {
	want := body(300_000)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(want)))
		w.Write(want)
	})
	f, _ := newTest(t, Config{}, srv.URL)
	got, st, err := f.GetWithStats(t.Context(), srv.URL+"/pkg-1.0.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("body differs: got %d bytes, want %d", len(got), len(want))
	}
	if cap(got) != len(want) {
		t.Errorf("cap = %d, want %d (one allocation sized from Content-Length)", cap(got), len(want))
	}
	if st.Attempts != 1 || st.Bytes != int64(len(want)) {
		t.Errorf("stats = %+v, want 1 attempt, %d bytes", st, len(want))
	}
}

func TestUserAgentOnEveryHop(t *testing.T) {
	var agents seen[string]
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		agents.add(r.UserAgent())
		if r.URL.Path == "/a" {
			http.Redirect(w, r, "/b", http.StatusFound)
			return
		}
		io.WriteString(w, "ok")
	})
	f, _ := newTest(t, Config{UserAgent: "fleet-test/1"}, srv.URL)
	if _, err := f.Get(t.Context(), srv.URL+"/a"); err != nil {
		t.Fatal(err)
	}
	if got := agents.all(); len(got) != 2 || got[0] != "fleet-test/1" || got[1] != "fleet-test/1" {
		t.Fatalf("User-Agent per hop = %q, want fleet-test/1 twice", got)
	}
}

func TestNotFoundIsFinal(t *testing.T) {
	var hits atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	})
	f, s := newTest(t, Config{}, srv.URL)
	_, st, err := f.GetWithStats(t.Context(), srv.URL+"/x.whl?token=secret")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("err = %v, want *StatusError 404", err)
	}
	if err.Error() != "HTTP 404 Not Found" {
		t.Errorf("message = %q", err.Error())
	}
	if se.URL != srv.URL+"/x.whl" {
		t.Errorf("StatusError.URL = %q, want it without the query", se.URL)
	}
	if Transient(err) {
		t.Error("404 reported transient")
	}
	if st.Attempts != 1 || hits.Load() != 1 || len(s.got()) != 0 {
		t.Errorf("attempts %d, hits %d, sleeps %v: want 1, 1, none", st.Attempts, hits.Load(), s.got())
	}
}

func TestServerErrorRetried(t *testing.T) {
	var hits atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "wheel")
	})
	f, s := newTest(t, Config{}, srv.URL)
	got, st, err := f.GetWithStats(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "wheel" || st.Attempts != 2 || hits.Load() != 2 {
		t.Fatalf("body %q, attempts %d, hits %d: want wheel, 2, 2", got, st.Attempts, hits.Load())
	}
	if d := s.got(); len(d) != 1 || d[0] != DefaultBaseBackoff {
		t.Errorf("delays = %v, want [%v]", d, DefaultBaseBackoff)
	}
}

func TestServerErrorGivesUpWithCappedBackoff(t *testing.T) {
	var hits atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	f, s := newTest(t, Config{Attempts: 5, BaseBackoff: time.Second, MaxBackoff: 3 * time.Second}, srv.URL)
	_, st, err := f.GetWithStats(t.Context(), srv.URL)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 {
		t.Fatalf("err = %v, want *StatusError 503", err)
	}
	if err.Error() != "after 5 attempts: HTTP 503 Service Unavailable" {
		t.Errorf("message = %q", err.Error())
	}
	if st.Attempts != 5 || hits.Load() != 5 {
		t.Errorf("attempts %d, hits %d, want 5", st.Attempts, hits.Load())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
	if d := s.got(); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Errorf("delays = %v, want %v", d, want)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		want         time.Duration
	}{
		{"seconds", "3", 3 * time.Second},
		{"capped at twice MaxBackoff", "120", 2 * DefaultMaxBackoff},
		{"date far ahead capped", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), 2 * DefaultMaxBackoff},
		{"garbage falls back to backoff", "soon", DefaultBaseBackoff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := server(t, func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					w.Header().Set("Retry-After", tc.header)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				io.WriteString(w, "ok")
			})
			f, s := newTest(t, Config{}, srv.URL)
			got, st, err := f.GetWithStats(t.Context(), srv.URL)
			if err != nil || string(got) != "ok" || st.Attempts != 2 {
				t.Fatalf("got %q, %+v, %v: want ok after 2 attempts", got, st, err)
			}
			if d := s.got(); len(d) != 1 || d[0] != tc.want {
				t.Errorf("delays = %v, want [%v]", d, tc.want)
			}
		})
	}
}

func TestConnectionResetMidBodyRetried(t *testing.T) {
	want := body(1000)
	url := testkit.RawHTTPServer(t, func(conn net.Conn, n int) {
		if n == 1 {
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(want))
			conn.Write(want[:100])
			conn.(*net.TCPConn).SetLinger(0) // close sends RST
			return
		}
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(want))
		conn.Write(want)
	})
	f, s := newTest(t, Config{}, url)
	got, st, err := f.GetWithStats(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) || st.Attempts != 2 || len(s.got()) != 1 {
		t.Fatalf("%d bytes, attempts %d, delays %v: want the body after 2 attempts", len(got), st.Attempts, s.got())
	}
}

func TestConnectionRefusedRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f, s := newTest(t, Config{Attempts: 3}, "http://"+addr)
	_, st, err := f.GetWithStats(t.Context(), "http://"+addr+"/f.tar.gz?token=secret")
	if err == nil || !Transient(err) {
		t.Fatalf("err = %v, want a transient connection error", err)
	}
	if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "f.tar.gz") {
		t.Errorf("message %q carries the URL", err)
	}
	if st.Attempts != 3 || len(s.got()) != 2 {
		t.Errorf("attempts %d, delays %v: want 3 and 2", st.Attempts, s.got())
	}
}

func TestHonestContentLengthOverLimitReadsNothing(t *testing.T) {
	const maxSize = 1 << 20
	const declared = 1 << 30
	written := make(chan int64, 1)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(declared))
		chunk := make([]byte, 64<<10)
		var n int64
		for n < declared {
			m, err := w.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		written <- n
	})
	f, s := newTest(t, Config{MaxSize: maxSize}, srv.URL)
	_, st, err := f.GetWithStats(t.Context(), srv.URL)
	var le *limit.Error
	if !errors.As(err, &le) || le.Kind != limit.Download || le.Max != maxSize {
		t.Fatalf("err = %v, want download limit %d", err, maxSize)
	}
	if st.Bytes != 0 || st.Attempts != 1 || len(s.got()) != 0 {
		t.Errorf("stats %+v, delays %v: want no body read, 1 attempt, no retry", st, s.got())
	}
	n := <-written
	if n >= 64<<20 {
		t.Errorf("server wrote %d bytes before the connection closed, want far below %d", n, declared)
	}
	t.Logf("server wrote %d of %d declared bytes before the client hung up", n, declared)
}

func TestChunkedOverLimitCutAtLimitPlusOne(t *testing.T) {
	const maxSize = 200_000
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := body(10_000)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	f, _ := newTest(t, Config{MaxSize: maxSize}, srv.URL)
	_, st, err := f.GetWithStats(t.Context(), srv.URL)
	var le *limit.Error
	if !errors.As(err, &le) || le.Kind != limit.Download || le.Max != maxSize {
		t.Fatalf("err = %v, want download limit", err)
	}
	if st.Bytes != maxSize+1 || st.Attempts != 1 {
		t.Errorf("stats %+v: want %d bytes read, 1 attempt", st, maxSize+1)
	}
}

func TestChunkedWithinLimit(t *testing.T) {
	want := body(150_000)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(want); i += 10_000 {
			w.Write(want[i : i+10_000])
			w.(http.Flusher).Flush()
		}
	})
	f, _ := newTest(t, Config{MaxSize: 150_000}, srv.URL)
	got, err := f.Get(t.Context(), srv.URL)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, %v: want the %d-byte body", len(got), err, len(want))
	}
}

// A Content-Length frames the message: bytes a server sends past it are not
// body, and net/http never hands them to the reader. The download is the
// declared bytes; the surplus is never read into memory.
func TestLyingContentLengthSurplusNotRead(t *testing.T) {
	want := body(100)
	url := testkit.RawHTTPServer(t, func(conn net.Conn, n int) {
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(want))
		conn.Write(want)
		conn.Write(make([]byte, 2<<20)) // 2 MiB the header did not declare
	})
	f, _ := newTest(t, Config{MaxSize: 1 << 20}, url)
	got, st, err := f.GetWithStats(t.Context(), url)
	if err != nil || !bytes.Equal(got, want) || st.Bytes != int64(len(want)) {
		t.Fatalf("got %d bytes (read %d), %v: want exactly the declared %d", len(got), st.Bytes, err, len(want))
	}
}

// An endless body is cut at MaxSize+1 whatever its framing: chunked with a
// Content-Length beside it (which HTTP/1.1 ignores), or none at all
// (read to the close).
func TestEndlessBodyCut(t *testing.T) {
	const maxSize = 100_000
	for _, tc := range []struct {
		name, header string
		chunked      bool
	}{
		{"LyingContentLengthWithChunkedCut", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"UnframedBodyCut", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := testkit.RawHTTPServer(t, func(conn net.Conn, n int) {
				io.WriteString(conn, tc.header)
				chunk := make([]byte, 16<<10)
				if tc.chunked {
					chunk = fmt.Appendf(nil, "%x\r\n%s\r\n", len(chunk), chunk)
				}
				for {
					if _, err := conn.Write(chunk); err != nil {
						return
					}
				}
			})
			f, _ := newTest(t, Config{MaxSize: maxSize}, url)
			_, st, err := f.GetWithStats(t.Context(), url)
			var le *limit.Error
			if !errors.As(err, &le) || st.Bytes != maxSize+1 {
				t.Fatalf("err %v, read %d: want download limit after %d bytes", err, st.Bytes, maxSize+1)
			}
		})
	}
}

func TestShortBodyIsTruncation(t *testing.T) {
	url := testkit.RawHTTPServer(t, func(conn net.Conn, n int) {
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
		conn.Write(body(500))
	})
	f, s := newTest(t, Config{Attempts: 2}, url)
	_, st, err := f.GetWithStats(t.Context(), url)
	var tr *TruncatedError
	if !errors.As(err, &tr) || tr.Got != 500 || tr.Want != 1000 {
		t.Fatalf("err = %v, want *TruncatedError 500 of 1000", err)
	}
	if err.Error() != "after 2 attempts: body truncated after 500 of 1000 bytes" {
		t.Errorf("message = %q", err.Error())
	}
	if !Transient(err) || st.Attempts != 2 || len(s.got()) != 1 || st.Bytes != 1000 {
		t.Errorf("transient %v, stats %+v, delays %v: want transient, 2 attempts, 1000 bytes", Transient(err), st, s.got())
	}
}

// TestStallMidBody runs on synctest's clock with an in-memory transport:
// over TCP the 50 ms watchdog, armed when the attempt begins, also covered
// the dial, the request and the first 100 bytes, so a loaded machine's
// slower round trip made a stall before the body (0 bytes read).
func TestStallMidBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hits atomic.Int32
		const stall = 50 * time.Millisecond
		f, s := newTest(t, Config{StallTimeout: stall, Attempts: 2, Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
			hits.Add(1)
			resp := respond(req, 200, nil, io.MultiReader(bytes.NewReader(body(100)), blockUntilDone{req.Context()}))
			resp.ContentLength = 1000
			return resp, nil
		})}, "https://files.example")
		_, st, err := f.GetWithStats(t.Context(), "https://files.example/x-1.0.tar.gz")
		var te *TimeoutError
		if !errors.As(err, &te) || te.Kind != Stall || te.After != stall {
			t.Fatalf("err = %v, want stall timeout", err)
		}
		if !Transient(err) || st.Attempts != 2 || hits.Load() != 2 || len(s.got()) != 1 {
			t.Errorf("transient %v, attempts %d, hits %d, delays %v: want a retried stall", Transient(err), st.Attempts, hits.Load(), s.got())
		}
		if st.Bytes != 200 {
			t.Errorf("bytes = %d, want 200 (100 per attempt)", st.Bytes)
		}
	})
}

// blockUntilDone reads nothing until ctx ends (a server that stopped
// sending).
type blockUntilDone struct{ ctx context.Context }

func (b blockUntilDone) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func TestStallBeforeHeaders(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	f, _ := newTest(t, Config{StallTimeout: 50 * time.Millisecond, Attempts: 1}, srv.URL)
	_, err := f.Get(t.Context(), srv.URL)
	var te *TimeoutError
	if !errors.As(err, &te) || te.Kind != Stall {
		t.Fatalf("err = %v, want stall timeout", err)
	}
}

// TestTotalTimeout runs on synctest's clock with an in-memory transport:
// over TCP a loaded machine's first byte could come after the 200 ms total
// timeout (0 bytes read).
func TestTotalTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A byte every millisecond: the download never stalls but never
		// ends.
		const total = 200 * time.Millisecond
		f, s := newTest(t, Config{TotalTimeout: total, StallTimeout: time.Hour, Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
			return respond(req, 200, nil, &trickle{ctx: req.Context(), gap: time.Millisecond}), nil
		})}, "https://files.example")
		_, st, err := f.GetWithStats(t.Context(), "https://files.example/x-1.0.tar.gz")
		var te *TimeoutError
		if !errors.As(err, &te) || te.Kind != Total || te.After != total {
			t.Fatalf("err = %v, want total timeout", err)
		}
		if Transient(err) || st.Attempts != 1 || len(s.got()) != 0 || st.Bytes == 0 {
			t.Errorf("transient %v, stats %+v: want final after 1 attempt with bytes read", Transient(err), st)
		}
		// On the bubble's clock the timeout is exact.
		if st.Duration != total {
			t.Errorf("returned after %v, want the %v total timeout", st.Duration, total)
		}
	})
}

func TestCanceledIsNotTimeout(t *testing.T) {
	started := make(chan struct{})
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	f, _ := newTest(t, Config{}, srv.URL)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	_, st, err := f.GetWithStats(ctx, srv.URL)
	var te *TimeoutError
	if !errors.Is(err, context.Canceled) || errors.As(err, &te) || Transient(err) {
		t.Fatalf("err = %v, want context.Canceled, final, no timeout", err)
	}
	if st.Attempts != 1 {
		t.Errorf("attempts = %d, want 1", st.Attempts)
	}
}

func TestHostNotAllowed(t *testing.T) {
	var hits atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	f, _ := newTest(t, Config{AllowedHosts: []string{}}) // default: files.pythonhosted.org
	_, st, err := f.GetWithStats(t.Context(), srv.URL)
	var he *HostError
	if !errors.As(err, &he) || he.Host != "127.0.0.1" {
		t.Fatalf("err = %v, want *HostError 127.0.0.1", err)
	}
	if err.Error() != `host "127.0.0.1" is not in DRAGONFLY_ALLOWED_HOSTS` {
		t.Errorf("message = %q", err.Error())
	}
	if Transient(err) || st.Attempts != 0 || hits.Load() != 0 {
		t.Errorf("transient %v, attempts %d, hits %d: want final, nothing sent", Transient(err), st.Attempts, hits.Load())
	}
}

// Entries without a scheme allow https only, on their port (443 unless
// named); an origin entry allows exactly its scheme, host and port. The
// servers are plain http on loopback, reached through origin entries or
// refused before connecting.
func TestSchemeAndPortEnforced(t *testing.T) {
	var hits atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	})
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	other := port + 1
	if other > 65535 {
		other = port - 1
	}
	for _, tc := range []struct {
		name    string
		allowed []string
		url     string
		ok      bool
		msg     string // "" when ok
	}{
		{"origin allows its origin", []string{srv.URL}, srv.URL + "/x", true, ""},
		{"origin: host case and trailing dot ignored", []string{fmt.Sprintf("HTTP://LocalHost.:%d", port)}, fmt.Sprintf("http://LOCALHOST:%d/x", port), true, ""},
		{"origin: another port refused", []string{fmt.Sprintf("http://127.0.0.1:%d", other)}, srv.URL,
			false, fmt.Sprintf("http://127.0.0.1:%d is not in DRAGONFLY_ALLOWED_HOSTS (an entry without a scheme allows https only, on port 443 unless it names one)", port)},
		{"origin: another scheme refused", []string{fmt.Sprintf("https://127.0.0.1:%d", port)}, srv.URL, false, ""},
		{"origin: default port is the scheme's", []string{"http://127.0.0.1"}, srv.URL, false, ""},
		{"bare host: http refused", []string{"files.example"}, "http://files.example/x.whl", false,
			"http://files.example:80 is not in DRAGONFLY_ALLOWED_HOSTS (an entry without a scheme allows https only, on port 443 unless it names one)"},
		{"bare host: another https port refused", []string{"files.example"}, "https://files.example:8443/x.whl", false, ""},
		{"host:port: http refused", []string{fmt.Sprintf("localhost.example:%d", port)}, fmt.Sprintf("http://localhost.example:%d/", port), false, ""},
		{"host:port: another port refused", []string{"files.example:8443"}, "https://files.example/x.whl", false, ""},
		{"wildcard: http refused", []string{"*"}, srv.URL, false, ""},
		{"wildcard: another port refused", []string{"*"}, "https://files.example:8443/", false, ""},
		{"other host", []string{"files.pythonhosted.org"}, srv.URL, false, `host "127.0.0.1" is not in DRAGONFLY_ALLOWED_HOSTS`},
		{"suffix is not a match", []string{"http://host:80"}, "http://localhost/", false, `host "localhost" is not in DRAGONFLY_ALLOWED_HOSTS`},
		{"bad URL port", []string{"*"}, "https://files.example:99999/", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			f, _ := newTest(t, Config{AllowedHosts: tc.allowed, Attempts: 1})
			got, st, err := f.GetWithStats(t.Context(), tc.url)
			if tc.ok {
				if err != nil || string(got) != "ok" || hits.Load() != 1 {
					t.Fatalf("got %q, %v, %d hits: want ok", got, err, hits.Load())
				}
				return
			}
			var he *HostError
			if !errors.As(err, &he) || Transient(err) || st.Attempts != 0 || hits.Load() != 0 {
				t.Fatalf("err = %v (transient %v), %d attempts, %d hits: want a final *HostError before connecting", err, Transient(err), st.Attempts, hits.Load())
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message = %q\nwant      %q", err.Error(), tc.msg)
			}
		})
	}
}

func TestSchemeRefused(t *testing.T) {
	f, _ := newTest(t, Config{AllowedHosts: []string{"*"}})
	_, err := f.Get(t.Context(), "ftp://127.0.0.1/x.tar.gz")
	var se *SchemeError
	if !errors.As(err, &se) || se.Scheme != "ftp" || Transient(err) {
		t.Fatalf("err = %v, want final *SchemeError ftp", err)
	}
	_, err = f.Get(t.Context(), "http://127.0.0.1/x?token=secret\x7f")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v, want an invalid URL error without the token", err)
	}
}

func TestRedirectToDisallowedHost(t *testing.T) {
	var otherHits atomic.Int32
	other := server(t, func(w http.ResponseWriter, r *http.Request) { otherHits.Add(1) })
	port := other.Listener.Addr().(*net.TCPAddr).Port
	var hits atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, fmt.Sprintf("http://localhost:%d/evil?token=secret", port), http.StatusFound)
	})
	f, _ := newTest(t, Config{}, srv.URL)
	_, st, err := f.GetWithStats(t.Context(), srv.URL)
	var he *HostError
	if !errors.As(err, &he) || he.Host != "localhost" {
		t.Fatalf("err = %v, want *HostError localhost", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("message %q carries the query", err)
	}
	if st.Attempts != 1 || hits.Load() != 1 || otherHits.Load() != 0 {
		t.Errorf("attempts %d, hits %d, other hits %d: want 1, 1, 0", st.Attempts, hits.Load(), otherHits.Load())
	}
}

func TestRedirectToAllowedHostFollowed(t *testing.T) {
	other := server(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Host, "localhost:") {
			http.Error(w, "wrong host", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "from files host")
	})
	port := other.Listener.Addr().(*net.TCPAddr).Port
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("http://localhost:%d/pkg.whl", port), http.StatusMovedPermanently)
	})
	f, _ := newTest(t, Config{}, srv.URL, fmt.Sprintf("http://localhost:%d", port))
	got, err := f.Get(t.Context(), srv.URL)
	if err != nil || string(got) != "from files host" {
		t.Fatalf("got %q, %v: want the redirect target's body", got, err)
	}
}

func TestRedirectLoopAndTooMany(t *testing.T) {
	var hits atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch {
		case r.URL.Path == "/a":
			http.Redirect(w, r, "/b", http.StatusFound)
		case r.URL.Path == "/b":
			http.Redirect(w, r, "/a", http.StatusFound)
		default: // /n/K -> /n/K+1
			k, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/n/"))
			http.Redirect(w, r, "/n/"+strconv.Itoa(k+1), http.StatusFound)
		}
	})
	f, _ := newTest(t, Config{}, srv.URL)
	_, err := f.Get(t.Context(), srv.URL+"/a")
	var re *RedirectError
	if !errors.As(err, &re) || re.Kind != RedirectLoop || err.Error() != "redirect loop" || Transient(err) {
		t.Fatalf("err = %v, want final redirect loop", err)
	}
	if hits.Load() != 2 {
		t.Errorf("hits = %d, want 2 (/a, /b)", hits.Load())
	}
	hits.Store(0)
	_, err = f.Get(t.Context(), srv.URL+"/n/0")
	if !errors.As(err, &re) || re.Kind != TooManyRedirects || err.Error() != "stopped after 5 redirects" {
		t.Fatalf("err = %v, want too many redirects", err)
	}
	if hits.Load() != DefaultMaxRedirects+1 {
		t.Errorf("hits = %d, want %d", hits.Load(), DefaultMaxRedirects+1)
	}
}

func TestRedirectSchemes(t *testing.T) {
	var plainHits atomic.Int32
	plain := server(t, func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		if r.URL.Path == "/up" {
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
			return
		}
		io.WriteString(w, "plain")
	})
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Redirect(w, r, plain.URL+"/file", http.StatusFound)
			return
		}
		io.WriteString(w, "secure")
	}))
	t.Cleanup(tlsSrv.Close)
	f, _ := newTest(t, Config{Transport: tlsSrv.Client().Transport}, plain.URL, tlsSrv.URL)

	_, err := f.Get(t.Context(), tlsSrv.URL+"/down")
	var re *RedirectError
	if !errors.As(err, &re) || re.Kind != Downgrade || Transient(err) {
		t.Fatalf("err = %v, want final https->http refusal", err)
	}
	if plainHits.Load() != 0 {
		t.Fatalf("the http server got %d requests after a refused downgrade", plainHits.Load())
	}
	got, err := f.Get(t.Context(), plain.URL+"/up?to="+tlsSrv.URL+"/file")
	if err != nil || string(got) != "secure" {
		t.Fatalf("http->https: got %q, %v: want secure", got, err)
	}
}

func TestNoCredentialsReachServer(t *testing.T) {
	type request struct{ path, auth, cookie, proxyAuth string }
	var seenReqs seen[request]
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		seenReqs.add(request{r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Header.Get("Proxy-Authorization")})
		switch r.URL.Path {
		case "/first":
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "s3cret", Path: "/"})
			// A redirect carrying user info must not become Basic auth.
			http.Redirect(w, r, "http://user:pw@"+r.Host+"/second", http.StatusFound)
		case "/second":
			http.Redirect(w, r, "/third", http.StatusFound)
		default:
			io.WriteString(w, "done")
		}
	})
	f, _ := newTest(t, Config{}, srv.URL)
	u := strings.Replace(srv.URL, "http://", "http://admin:hunter2@", 1) + "/first"
	got, err := f.Get(t.Context(), u)
	if err != nil || string(got) != "done" {
		t.Fatalf("got %q, %v", got, err)
	}
	reqs := seenReqs.all()
	if len(reqs) != 3 {
		t.Fatalf("requests = %+v, want 3 hops", reqs)
	}
	for _, r := range reqs {
		if r.auth != "" || r.cookie != "" || r.proxyAuth != "" {
			t.Errorf("%s received credentials: %+v", r.path, r)
		}
	}
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("x"), false},
		{&StatusError{Code: 500}, true},
		{&StatusError{Code: 502}, true},
		{&StatusError{Code: 429}, true},
		{&StatusError{Code: 408}, true},
		{&StatusError{Code: 404}, false},
		{&StatusError{Code: 403}, false},
		{&StatusError{Code: 204}, false},
		{&TimeoutError{Kind: Stall}, true},
		{&TimeoutError{Kind: Total}, false},
		{&TruncatedError{Got: 1, Want: 2}, true},
		{&HostError{Host: "evil.example"}, false},
		{&SchemeError{Scheme: "ftp"}, false},
		{&RedirectError{Kind: RedirectLoop}, false},
		{&limit.Error{Kind: limit.Download, Max: 1}, false},
		{fmt.Errorf("after 3 attempts: %w", &StatusError{Code: 503}), true},
		{context.Canceled, false},
		{&netError{err: context.DeadlineExceeded}, false},
		{&netError{err: errors.New("http2: server sent GOAWAY")}, true},
		{&netError{err: &net.DNSError{Err: "no such host", IsNotFound: true}}, false},
		{&netError{err: &net.DNSError{Err: "timeout", IsTimeout: true}}, true},
		{io.ErrUnexpectedEOF, true},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A download URL may carry a token in its query (a signed URL): a redirect
// must not hand it to the next host in a Referer header.
func TestRedirectSendsNoReferer(t *testing.T) {
	var referers seen[string]
	other := server(t, func(w http.ResponseWriter, r *http.Request) {
		referers.add(r.Header.Get("Referer"))
		io.WriteString(w, "from files host")
	})
	port := other.Listener.Addr().(*net.TCPAddr).Port
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("http://localhost:%d/pkg.whl", port), http.StatusFound)
	})
	f, _ := newTest(t, Config{}, srv.URL, fmt.Sprintf("http://localhost:%d", port))
	got, err := f.Get(t.Context(), srv.URL+"/pkg.whl?token=s3cret")
	if err != nil || string(got) != "from files host" {
		t.Fatalf("got %q, %v: want the redirect target's body", got, err)
	}
	for _, ref := range referers.all() {
		if ref != "" {
			t.Errorf("redirect target got Referer %q", ref)
		}
	}
}

// An HTTP/1.0 answer is refused, whatever its framing: Go ignores
// Transfer-Encoding on HTTP/1.0 and reads to the close, while pip's
// http.client and urllib3 decode "Transfer-Encoding: chunked" whatever the
// version. A hostile host could so hand the worker the chunk framing, with
// a benign zip hidden in the trailer lines, and pip the decoded chunks: a
// malicious sdist, scanned as the benign zip and reported clean.
func TestHTTP10Refused(t *testing.T) {
	inner := []byte("the bytes pip would install")
	for _, tc := range []struct{ name, response string }{
		{"ChunkedPipDecodes", fmt.Sprintf("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\nX-Trailer: benign zip here\r\n\r\n", len(inner), inner)},
		{"ChunkedWithContentLength", fmt.Sprintf("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(inner), inner)},
		{"Unframed", "HTTP/1.0 200 OK\r\n\r\nsome bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := testkit.RawHTTPServer(t, func(conn net.Conn, n int) { io.WriteString(conn, tc.response) })
			f, s := newTest(t, Config{}, url)
			got, st, err := f.GetWithStats(t.Context(), url)
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Proto != "HTTP/1.0" || got != nil {
				t.Fatalf("got %q, %v: want *ProtocolError for HTTP/1.0 and no bytes", got, err)
			}
			if want := "HTTP/1.0 response refused: its framing is read differently by pip; want HTTP/1.1 or later"; err.Error() != want {
				t.Errorf("message = %q, want %q", err.Error(), want)
			}
			if Transient(err) || st.Attempts != 1 || len(s.got()) != 0 || st.Bytes != 0 {
				t.Errorf("transient %v, stats %+v, delays %v: want final, 1 attempt, nothing read", Transient(err), st, s.got())
			}
		})
	}
}

// TestGzipDownloadReadRawWithAnyTransport: pip downloads with
// "Accept-Encoding: identity" and does not decode (decode_content=False), so
// the bytes scanned must be the raw body even through a Transport that
// decodes gzip when it asked for it (Config.Transport is used as is).
func TestGzipDownloadReadRawWithAnyTransport(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("the bytes a decoding client would scan"))
	zw.Close()
	var gotAE string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAE = r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz.Bytes())
	}))
	defer srv.Close()
	f, _ := newTest(t, Config{Transport: &http.Transport{}}, srv.URL)
	got, err := f.Get(t.Context(), srv.URL+"/foo-1.0.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, gz.Bytes()) || gotAE != "identity" {
		t.Fatalf("got %q with Accept-Encoding %q; want the raw gzip body %q, asked as identity (as pip)", got, gotAE, gz.Bytes())
	}
}
