package httpserve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestPprofNeverServesTheCommandLine: flags may carry secrets
// (--fleet-token), so the profiling handler answers 404 for the command line
// while it serves the profiles.
func TestPprofNeverServesTheCommandLine(t *testing.T) {
	srv := httptest.NewServer(Pprof())
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

// TestGroupStopsAfterTheWork: a group's servers answer until Stop, after
// the context they came from has ended; Stop shuts them down and says why
// one failed.
func TestGroupStopsAfterTheWork(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	g := NewGroup(ctx)
	addr, err := g.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the command's work is ending; its metrics still answer
	resp, err := http.Get("http://" + addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr.String() + "/"); err == nil {
		t.Error("still serving after Stop")
	}
	if err := g.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := NewGroup(t.Context()).Listen(addr.String()+"x", http.NotFoundHandler()); err == nil {
		t.Error("a bad address listened")
	}
}

// TestServeReturnsWhenServingFails: a listener that fails ends Serve with
// its error before the context ends.
func TestServeReturnsWhenServingFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := Serve(t.Context(), ln, http.NotFoundHandler()); err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Errorf("err = %v", err)
	}
}

// TestServeBoundsARequestBody: a client that declares a body and never
// sends it must not hold a handler: before a handler's answer goes out the
// server reads what is left of the body (up to 256 KiB), and with no read
// deadline past the headers it waits for ever, keeping the handler's
// response (a rendered status page) in memory, once per connection.
func TestServeBoundsARequestBody(t *testing.T) {
	defer func(d time.Duration) { bodyTimeout = d }(bodyTimeout)
	bodyTimeout = 200 * time.Millisecond
	done := make(chan struct{})
	addr := serveTest(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		defer close(done)
		w.Write(make([]byte, 64<<10)) // a page: more than the server buffers before answering
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n") // and no body
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a handler is still held by a request body that never comes")
	}
}

// TestServeBodyReadKeepsContext: a handler that read its whole body may
// then take longer than the body's bound (a long poll) without its context
// ending.
func TestServeBodyReadKeepsContext(t *testing.T) {
	defer func(d time.Duration) { bodyTimeout = d }(bodyTimeout)
	bodyTimeout = 100 * time.Millisecond
	srvErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err == nil && string(b) != "hello" {
			err = errors.New("body " + string(b))
		}
		if err == nil {
			select {
			case <-r.Context().Done():
				err = errors.New("context ended after the body was read")
			case <-time.After(4 * bodyTimeout):
			}
		}
		srvErr <- err
		io.WriteString(w, "ok")
	})
	addr := serveTest(t, h)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Post("http://"+addr+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-srvErr; err != nil {
		t.Error(err)
	}
}

// serveTest serves h with Serve on a loopback port until the test ends and
// returns the address.
func serveTest(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return ln.Addr().String()
}

// TestServeAnswersAtOnceWhatItNeverDrains: the body bound must not change
// what the server does with a body the handler leaves unread. One too large
// to drain (past 256 KiB), or one sent with "Expect: 100-continue" and never
// asked for, is not read before the answer: the server answers at once (and
// closes the connection the large body was coming on). Seen through a
// replaced body, the server read both until the bound ran out, holding the
// handler and its page that long.
func TestServeAnswersAtOnceWhatItNeverDrains(t *testing.T) {
	defer func(d time.Duration) { bodyTimeout = d }(bodyTimeout)
	bodyTimeout = time.Minute
	addr := serveTest(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(make([]byte, 64<<10)) // a page: more than the server buffers before answering
	}))
	for name, head := range map[string]string{
		"too large to drain": "GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
		"100-continue":       "GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, head) // and no body
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer while the body is not sent: %v", err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("answer %d, body read: %v; want the page", resp.StatusCode, err)
			}
			resp.Body.Close()
			if name == "100-continue" {
				// Never asked for, the body is not coming: the
				// connection may serve another request.
				return
			}
			// The unread body is not waited for: the server closes.
			if !resp.Close {
				t.Errorf("the answer keeps the connection open (no Connection: close)")
			}
			if n, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after the answer: read %d bytes, %v; want the connection closed", n, err)
			}
		})
	}
}
