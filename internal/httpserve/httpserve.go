// Package httpserve serves the HTTP sides of dragonfly's long-running
// commands (metrics, status and health; Go's profiles; the development API)
// with bounded servers: request headers read within 10 s, a request's body
// within 10 s more, idle connections closed after 2 min, at most 512
// connections at once (see connCap), and a shutdown that waits at most 5 s for
// requests in flight before it closes the rest.
package httpserve

import (
	"container/list"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"
)

// shutdownTimeout bounds how long a stopping server waits for requests in
// flight.
const shutdownTimeout = 5 * time.Second

// bodyTimeout bounds the reading of a request's body (a variable for tests).
var bodyTimeout = 10 * time.Second

// maxConns caps the connections a server holds at once (a variable for
// tests): far below a process's file descriptors, which the gRPC listener
// and the API's client share.
var maxConns = 512

// Serve serves h on ln until ctx ends, then shuts the server down
// (bounded). It returns early with the error when serving fails.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	cc := &connCap{Listener: ln, max: maxConns}
	srv := &http.Server{Handler: cc.busy(boundBody(h)), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ConnContext: cc.connContext, ConnState: cc.connState}
	ln = cc
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// boundBody gives a request with a body bodyTimeout to send it. Past the
// headers the server sets no read deadline, and before a handler's answer
// goes out it reads what is left of an unread body: a client that declares a
// body and never sends it would hold the handler, and the response it wrote
// (a rendered status page), for as long as it keeps the connection. The
// deadline ends once the handler read the body to its end, so a handler that
// then takes long (a long poll) keeps its context; a request without a body
// gets none (the server's ReadTimeout would end such a handler's context,
// Go's profiles included).
func boundBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(bodyTimeout)) == nil {
				// On a copy: the server looks at its request's own body
				// (its type) to decide what to do with an unread rest
				// before the answer (too large to drain, or an unanswered
				// 100-continue: close after it, at once) and whether a
				// body closed early leaves the connection unusable.
				r2 := *r
				r2.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
				r = &r2
			}
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once its body was read to the end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	once sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(func() { b.rc.SetReadDeadline(time.Time{}) })
	}
	return n, err
}

// Group serves handlers beside a command's main work and stops them after
// it: its servers run until Stop, not until the command's context ends, so
// metrics and health stay up while the work drains.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	mu     sync.Mutex
	err    error // the first serving error
}

// NewGroup returns a Group; its servers keep ctx's values, not its end.
func NewGroup(ctx context.Context) *Group {
	g := &Group{}
	g.ctx, g.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return g
}

// Listen listens on addr and serves h there until Stop. It returns the
// address listened on.
func (g *Group) Listen(addr string, h http.Handler) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := Serve(g.ctx, ln, h); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
			}
			g.mu.Unlock()
		}
	}()
	return ln.Addr(), nil
}

// Stop shuts every server down (each bounded), waits for them, and returns
// the first error a server failed with. Calling it again returns the same.
func (g *Group) Stop() error {
	g.once.Do(func() {
		g.cancel()
		g.wg.Wait()
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Pprof serves Go's profiles under /debug/pprof/. It never serves the
// process's command line (pprof.Cmdline: flags may carry secrets) or its
// environment.
func Pprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/cmdline") {
			http.NotFound(w, r)
			return
		}
		pprof.Index(w, r)
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// connCap is a listener that holds at most max connections. Without it,
// anyone who reaches the port (metrics and health are open) holds a
// descriptor per connection for as long as the server waits on it (10 s for
// headers, 2 min idle after a request) and can use up the process's file
// descriptors: then the gRPC listener accepts no worker, and the API's
// client dials nothing. When max are held, a new connection closes the oldest
// one that is not in a handler (idle, or still sending its headers), so a
// flood of idle or slow connections cannot keep a health probe out; when
// every one is in a handler, the new one is closed at once.
type connCap struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns list.List // *cappedConn, oldest first
}

// cappedConn is a connection connCap holds.
type cappedConn struct {
	net.Conn
	cc *connCap

	// Under cc.mu.
	elem *list.Element // nil once closed
	busy bool          // a handler runs on it
}

type connKey struct{}

func (l *connCap) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var victim *cappedConn
		l.mu.Lock()
		if l.conns.Len() >= l.max {
			for e := l.conns.Front(); e != nil; e = e.Next() {
				if c := e.Value.(*cappedConn); !c.busy {
					victim = c
					break
				}
			}
			if victim == nil {
				l.mu.Unlock()
				raw.Close()
				continue
			}
			l.removeLocked(victim)
		}
		c := &cappedConn{Conn: raw, cc: l}
		c.elem = l.conns.PushBack(c)
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close()
		}
		return c, nil
	}
}

func (l *connCap) removeLocked(c *cappedConn) {
	if c.elem != nil {
		l.conns.Remove(c.elem)
		c.elem = nil
	}
}

func (c *cappedConn) Close() error {
	c.cc.mu.Lock()
	c.cc.removeLocked(c)
	c.cc.mu.Unlock()
	return c.Conn.Close()
}

// connContext keeps the connection in its requests' context, for busy.
func (l *connCap) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// busy marks a request's connection busy while its handler runs, and no
// longer: after it the server drains what is left of an unread body before
// the answer goes out (for up to bodyTimeout), and connections that declared
// a body and never sent it, held busy there, kept every new one out.
func (l *connCap) busy(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := r.Context().Value(connKey{}).(*cappedConn)
		if ok {
			l.mu.Lock()
			c.busy = true
			l.mu.Unlock()
			defer func() {
				l.mu.Lock()
				c.busy = false
				l.mu.Unlock()
			}()
		}
		h.ServeHTTP(w, r)
	})
}

func (l *connCap) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*cappedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateIdle:
		c.busy = false
	case http.StateHijacked, http.StateClosed:
		l.removeLocked(c)
	}
}
