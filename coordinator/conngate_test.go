package coordinator

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pipeListener accepts the server ends of net.Pipe connections from the
// addresses dial chooses.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { close(l.done); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// dial returns the client end of a connection the gate accepts from ip
// (empty: a local peer).
func (l *pipeListener) dial(t *testing.T, g *connGate, ip string) (client net.Conn, server *gateConn) {
	t.Helper()
	c, s := net.Pipe()
	var remote net.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	if ip != "" {
		remote = &net.TCPAddr{IP: net.ParseIP(ip), Port: 2}
	}
	go func() { l.conns <- addrConn{Conn: s, remote: remote} }()
	sc, err := g.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, sc.(*gateConn)
}

// closed reports whether the server closed the client's connection.
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
}

// TestConnGate: pending connections are capped apart from authenticated
// ones (the oldest closed for a new one) and closed after the pending
// timeout; authenticated ones are capped in total, never per address, and
// a closed one frees its place.
func TestConnGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var counts refusalCounters
		l := newPipeListener()
		g := newConnGate(l, 3, 2, 10*time.Second, &counts)
		defer g.Close()
		c1, s1 := l.dial(t, g, "10.0.0.1")
		c2, s2 := l.dial(t, g, "10.0.0.1")
		c3, s3 := l.dial(t, g, "")
		if err := s1.promote(); err != nil {
			t.Fatal(err)
		}
		if err := s1.promote(); err != nil {
			t.Fatalf("promote twice: %v", err)
		}
		if err := s2.promote(); err != nil {
			t.Fatal(err)
		}
		// Three pending fit (c3, c4, c5); each further one closes the
		// oldest pending (c3, then c4: c1 and c2 are authenticated).
		c4, _ := l.dial(t, g, "10.0.0.2")
		c5, _ := l.dial(t, g, "10.0.0.2")
		c6, s6 := l.dial(t, g, "10.0.0.1")
		c7, _ := l.dial(t, g, "10.0.0.3")
		synctest.Wait()
		if !closed(c3) || !closed(c4) || closed(c1) || closed(c2) || closed(c5) {
			t.Fatal("the oldest pending connections were not the ones closed")
		}
		if got := g.countsNow(); got.Pending != 3 || got.Authenticated != 2 || counts.pendingEvicted.Load() != 2 {
			t.Fatalf("counts %+v, evicted %d", got, counts.pendingEvicted.Load())
		}
		if err := s3.promote(); status.Code(err) != codes.Unavailable {
			t.Fatalf("promote of an evicted connection: %v", err)
		}
		// The total cap (2) is reached: a third is refused, whatever its
		// address.
		if err := s6.promote(); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("over MaxWorkers: %v, want ResourceExhausted", err)
		}
		// Closing one frees its place.
		s2.Close()
		if err := s6.promote(); err != nil {
			t.Fatalf("after a close: %v", err)
		}
		// The pending ones are closed 10 s after they were accepted; the
		// authenticated ones stay.
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		if !closed(c5) || !closed(c7) || closed(c1) || closed(c6) {
			t.Fatal("pending connections not closed after the timeout, or authenticated ones closed")
		}
		if n := counts.pendingExpired.Load(); n != 2 {
			t.Fatalf("%d expired, want 2", n)
		}
		if got := g.countsNow(); got.Pending != 0 || got.Authenticated != 2 {
			t.Fatalf("counts %+v", got)
		}
		// Another address is no way around the total cap.
		_, s8 := l.dial(t, g, "10.0.0.9")
		if err := s8.promote(); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("over MaxWorkers from another address: %v, want ResourceExhausted", err)
		}
		// Two connections from one address are fine while the total allows:
		// workers behind one NAT share it.
		s1.Close()
		_, s9 := l.dial(t, g, "10.0.0.1")
		if err := s9.promote(); err != nil {
			t.Fatalf("second connection of an address: %v", err)
		}
		for _, c := range []net.Conn{c1, c2, c6} {
			c.Close()
		}
		s6.Close()
		s8.Close()
		s9.Close()
		if got := g.countsNow(); got.Pending != 0 || got.Authenticated != 0 {
			t.Fatalf("counts after closing everything %+v", got)
		}
	})
}

// TestConnGateFloodClosesTheFloodersConnections: a peer without the token
// opening connections faster than a worker's first stream arrives (64 in a
// worker's few round trips) closed the worker's pending connection, again
// at each reconnect: one process on loopback kept a worker out for as long
// as it ran (0 reports a second). The pending connection closed for a new
// one is now the oldest of the source holding the most; a worker's from
// another address stays until it authenticates, and an IPv6 peer varying its
// address within its /64 is one source.
func TestConnGateFloodClosesTheFloodersConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var counts refusalCounters
		l := newPipeListener()
		g := newConnGate(l, 4, 8, 10*time.Second, &counts)
		defer g.Close()
		worker, sw := l.dial(t, g, "10.0.0.1")
		worker6, sw6 := l.dial(t, g, "2001:db8:1::5")
		var flood []net.Conn
		for i := range 50 {
			ip := "192.0.2.7"
			if i%2 == 1 {
				ip = fmt.Sprintf("2001:db8:2::%x", i) // one /64
			}
			c, _ := l.dial(t, g, ip)
			flood = append(flood, c)
		}
		synctest.Wait()
		if closed(worker) || closed(worker6) {
			t.Fatal("a flood of pending connections from other sources closed a worker's")
		}
		if err := sw.promote(); err != nil {
			t.Fatalf("the worker's stream after the flood: %v", err)
		}
		if err := sw6.promote(); err != nil {
			t.Fatalf("the IPv6 worker's stream after the flood: %v", err)
		}
		if got := g.countsNow(); got.Pending != 2 || got.Authenticated != 2 || counts.pendingEvicted.Load() != 48 {
			t.Fatalf("counts %+v, evicted %d; want 2 pending of the flood, 2 authenticated, 48 evicted", got, counts.pendingEvicted.Load())
		}
		for _, c := range append(flood, worker, worker6) {
			c.Close()
		}
		sw.Close()
		sw6.Close()
	})
}
