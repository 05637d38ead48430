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
	"sync"
	"sync/atomic"
	"syscall"
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

// serveCapped serves h through Serve on a loopback port with maxConns set
// to max, until the test ends. It returns the address and the listener, which
// counts the connections the server holds open.
func serveCapped(t *testing.T, max int, h http.Handler) (string, *countingListener) {
	t.Helper()
	old := maxConns
	maxConns = max
	t.Cleanup(func() { maxConns = old })
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return inner.Addr().String(), ln
}

// countingListener counts the connections accepted and not closed yet.
type countingListener struct {
	net.Listener
	open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// TestServeCapsConnectionsAndKeepsAProbeIn: a peer without credentials that
// opens connections and leaves them idle after a request, or sends its
// headers slowly, held a descriptor per connection until the process had
// none left (the gRPC listener and the API's client share them: 20000 such
// connections stopped workers from reconnecting). The server holds at most
// maxConns; a new connection closes the oldest one not in a handler, so a
// health probe still gets its answer.
func TestServeCapsConnectionsAndKeepsAProbeIn(t *testing.T) {
	addr, ln := serveCapped(t, 4, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	for i := range 16 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 { // idle after a complete request
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		} else { // slow headers
			io.WriteString(c, "GET / HTTP/1.1\r\n")
		}
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("probe after the flood: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The probe's connection was accepted after the 16 others, and each
	// accept over the cap closed one before it returned.
	if n := ln.open.Load(); n > 4 {
		t.Fatalf("the server holds %d connections after 17 were opened; want at most 4", n)
	}
}

// TestServeCapNeverClosesAConnectionInAHandler: when every held connection
// is in a handler, a new connection is closed, not one whose answer is
// being made.
func TestServeCapNeverClosesAConnectionInAHandler(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	addr, _ := serveCapped(t, 2, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	}))
	type result struct {
		body string
		err  error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				results <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{string(b), err}
		}()
	}
	<-entered
	<-entered
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a connection over the cap while both are busy: read %v, want it closed", err)
	}
	close(release)
	for range 2 {
		if r := <-results; r.err != nil || r.body != "ok" {
			t.Fatalf("a request in a handler: %q, %v; want ok", r.body, r.err)
		}
	}
}

// TestServeCapKeepsAProbeInPastUnsentBodies: a peer that declares a small
// body and never sends it holds its connection busy after the handler
// returned (the server drains the unread rest before the answer goes out,
// for up to bodyTimeout); max such connections kept every health probe out.
func TestServeCapKeepsAProbeInPastUnsentBodies(t *testing.T) {
	old := bodyTimeout
	bodyTimeout = time.Minute
	t.Cleanup(func() { bodyTimeout = old })
	entered := make(chan struct{}, 8)
	addr, _ := serveCapped(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			entered <- struct{}{}
		}
		io.WriteString(w, "ok")
	}))
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	}
	<-entered
	<-entered
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("probe past two unsent bodies: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
