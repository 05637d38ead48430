package coordinator

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// connGate is the coordinator's listener: it admits connections in two
// classes so that peers without the fleet token cannot keep workers out.
//
// A connection is pending from accept until one of its streams passes the
// fleet token (the server's tap handle promotes it); from then on it is
// authenticated until it closes. Pending connections are capped
// (maxPending): when the pool is full, the oldest pending connection of the
// source (pendingSource: an IPv4 address, an IPv6 /64) holding the most
// pending connections is closed to admit the new one. A worker
// authenticates within a few round trips of connecting (more with TLS);
// when any pending connection could be closed, a peer opening more than
// maxPending connections in that time closed every worker's before its
// first stream, whereas now it closes its own. A pending
// connection is closed pendingTimeout after it was accepted. Authenticated
// connections are capped in total (maxAuthed, MaxWorkers), never per peer
// address (workers behind one NAT share it); a stream that would go over the
// cap is refused with ResourceExhausted and its connection stays pending.
type connGate struct {
	net.Listener
	maxPending, maxAuthed int
	pendingTimeout        time.Duration
	counts                *refusalCounters

	mu      sync.Mutex
	pending list.List // *gateConn, oldest first
	authed  int
}

func newConnGate(ln net.Listener, maxPending, maxAuthed int, pendingTimeout time.Duration, counts *refusalCounters) *connGate {
	return &connGate{Listener: ln, maxPending: maxPending, maxAuthed: maxAuthed,
		pendingTimeout: pendingTimeout, counts: counts}
}

type connState int

const (
	connPending connState = iota
	connAuthed
	connClosed
)

// gateConn is a connection the gate admitted.
type gateConn struct {
	net.Conn
	g      *connGate
	addr   *gateAddr
	source string // pendingSource of the peer

	// Under g.mu.
	state connState
	elem  *list.Element // in g.pending while pending
	timer *time.Timer

	closeOnce sync.Once
	closeErr  error
}

// gateAddr is a gated connection's remote address as gRPC reports it
// (peer.Peer.Addr): it leads the server's tap handle back to the connection.
// addrOf unwraps it.
type gateAddr struct {
	net.Addr
	c *gateConn
}

// addrOf returns the network address behind a peer address.
func addrOf(a net.Addr) net.Addr {
	if ga, ok := a.(*gateAddr); ok {
		return ga.Addr
	}
	return a
}

// gateConnOf returns the gated connection behind a peer address (nil when
// the address is not one of the gate's).
func gateConnOf(a net.Addr) *gateConn {
	if ga, ok := a.(*gateAddr); ok {
		return ga.c
	}
	return nil
}

func (c *gateConn) RemoteAddr() net.Addr { return c.addr }

// Accept accepts the next connection as pending, closing the oldest pending
// one if the pool is full.
func (g *connGate) Accept() (net.Conn, error) {
	raw, err := g.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &gateConn{Conn: raw, g: g}
	c.addr = &gateAddr{Addr: raw.RemoteAddr(), c: c}
	c.source = pendingSource(raw.RemoteAddr())
	var evicted *gateConn
	g.mu.Lock()
	c.elem = g.pending.PushBack(c)
	c.timer = time.AfterFunc(g.pendingTimeout, c.expire)
	if g.pending.Len() > g.maxPending {
		evicted = g.victimLocked()
		g.dropPendingLocked(evicted)
	}
	g.mu.Unlock()
	if evicted != nil {
		g.counts.pendingEvicted.Add(1)
		evicted.closeRaw()
	}
	return c, nil
}

// victimLocked is the pending connection to close for a new one: the
// oldest of the source with the most pending connections (the oldest of all
// when every source holds one).
func (g *connGate) victimLocked() *gateConn {
	n := make(map[string]int, g.pending.Len())
	most := 0
	for e := g.pending.Front(); e != nil; e = e.Next() {
		src := e.Value.(*gateConn).source
		n[src]++
		most = max(most, n[src])
	}
	for e := g.pending.Front(); e != nil; e = e.Next() {
		if c := e.Value.(*gateConn); n[c.source] == most {
			return c
		}
	}
	return nil // not reached: the pool is not empty
}

// pendingSource is what pending connections are counted by for eviction:
// the peer's IPv4 address, or its IPv6 /64 (one host is handed a /64 and
// may use every address in it); the address itself when it has no IP.
func pendingSource(a net.Addr) string {
	if a == nil {
		return ""
	}
	ip := net.ParseIP(peerIP(a))
	if ip == nil {
		return a.String()
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// dropPendingLocked takes a pending connection out of the pool, closed.
func (g *connGate) dropPendingLocked(c *gateConn) {
	g.pending.Remove(c.elem)
	c.elem = nil
	c.state = connClosed
	c.timer.Stop()
}

// expire closes the connection if it is still pending.
func (c *gateConn) expire() {
	g := c.g
	g.mu.Lock()
	if c.state != connPending {
		g.mu.Unlock()
		return
	}
	g.dropPendingLocked(c)
	g.mu.Unlock()
	g.counts.pendingExpired.Add(1)
	c.closeRaw()
}

// Errors of promote, as the refused stream's status.
var (
	errConnGone = status.Error(codes.Unavailable, "connection closed")
)

// promote marks the connection authenticated (idempotent), or refuses when
// a cap is reached.
func (c *gateConn) promote() error {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	switch c.state {
	case connAuthed:
		return nil
	case connClosed:
		return errConnGone
	}
	if g.authed >= g.maxAuthed {
		return status.Errorf(codes.ResourceExhausted, "the coordinator serves its maximum of %d worker connections (DRAGONFLY_MAX_WORKERS)", g.maxAuthed)
	}
	g.pending.Remove(c.elem)
	c.elem = nil
	c.timer.Stop()
	c.state = connAuthed
	g.authed++
	return nil
}

// Close takes the connection out of the gate's counts and closes it.
func (c *gateConn) Close() error {
	g := c.g
	g.mu.Lock()
	switch c.state {
	case connPending:
		g.dropPendingLocked(c)
	case connAuthed:
		g.authed--
	}
	c.state = connClosed
	g.mu.Unlock()
	return c.closeRaw()
}

func (c *gateConn) closeRaw() error {
	c.closeOnce.Do(func() { c.closeErr = c.Conn.Close() })
	return c.closeErr
}

// gateCounts are the gate's connections by class, for tests and operators.
type gateCounts struct {
	Pending, Authenticated int
}

func (g *connGate) countsNow() gateCounts {
	g.mu.Lock()
	defer g.mu.Unlock()
	return gateCounts{Pending: g.pending.Len(), Authenticated: g.authed}
}

// refusalCounters count what the coordinator refused at its door (see
// Refusals).
type refusalCounters struct {
	streams, pendingEvicted, pendingExpired, overCap, identityCap atomic.Int64
	resultsRepeated, resultsRulesUnknown                          atomic.Int64
}

func (r *refusalCounters) snapshot() Refusals {
	return Refusals{
		Streams: r.streams.Load(), PendingEvicted: r.pendingEvicted.Load(), PendingExpired: r.pendingExpired.Load(),
		ConnsOverCap: r.overCap.Load(), SessionsOverIdentityCap: r.identityCap.Load(),
		ResultsRepeated: r.resultsRepeated.Load(), ResultsRulesUnknown: r.resultsRulesUnknown.Load(),
	}
}

// Refusals count what the coordinator refused or dropped at its door since
// it started.
type Refusals struct {
	// Streams refused before they began: no or a wrong fleet token, a token
	// that crossed the network in the clear (logged at most once per peer
	// address and minute).
	Streams int64
	// PendingEvicted are connections without an authenticated stream closed
	// to admit a newer one (ServerConfig.MaxPendingConns were pending).
	PendingEvicted int64
	// PendingExpired are connections closed because no authenticated stream
	// arrived within ServerConfig.PendingTimeout.
	PendingExpired int64
	// ConnsOverCap are authenticated streams refused because their
	// connection would go over MaxWorkers.
	ConnsOverCap int64
	// SessionsOverIdentityCap are sessions refused because their identity
	// held MaxSessionsPerIdentity sessions.
	SessionsOverIdentityCap int64
	// ResultsRepeated are results for a task the session had answered or
	// handed back already (dropped).
	ResultsRepeated int64
	// ResultsRulesUnknown are results refused because the weights of their
	// task's rules were no longer known (the task is dispatched again).
	ResultsRulesUnknown int64
}
