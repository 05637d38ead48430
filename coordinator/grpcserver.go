package coordinator

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/fleetauth"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/internal/logthrottle"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// ServerConfig configures the coordinator's gRPC server: who may connect and
// how much each connection may cost.
type ServerConfig struct {
	// Token is the fleet token workers must present (DRAGONFLY_FLEET_TOKEN),
	// at least fleetauth.MinTokenBytes (16) bytes. Required unless Insecure.
	Token string
	// Insecure accepts workers without a token (DRAGONFLY_INSECURE). Only on a
	// loopback or in-memory listener: Serve refuses any other.
	Insecure bool
	// FleetInsecure accepts the token over plaintext from peers that are not
	// on loopback (DRAGONFLY_FLEET_INSECURE). Without it, such a worker is
	// refused: its token crossed the network in the clear.
	FleetInsecure bool
	// TLS are the server's certificate, key and (for mutual TLS) the CA of the
	// workers' certificates. All empty: plaintext.
	TLS fleetauth.TLSFiles
	// MaxWorkers caps the authenticated connections (those that carried a
	// stream with the fleet token) and the worker sessions served at once
	// (DRAGONFLY_MAX_WORKERS). A stream over either cap is refused with
	// ResourceExhausted. Default 1024.
	MaxWorkers int
	// MaxPendingConns caps the connections that have not carried an
	// authenticated stream yet (pending), apart from MaxWorkers: when that
	// many are pending, the oldest pending one of the source (an IPv4
	// address, an IPv6 /64) holding the most is closed to admit a new one,
	// so peers without the token cannot lock workers out. Default 64.
	MaxPendingConns int
	// PendingTimeout closes a pending connection this long after it was
	// accepted. Default 10 s.
	PendingTimeout time.Duration
	// MaxSessionsPerIdentity caps the worker sessions of one identity (see
	// identity) at once (DRAGONFLY_MAX_SESSIONS_PER_IDENTITY); over it, a
	// session is refused with ResourceExhausted. Default 64.
	MaxSessionsPerIdentity int
	// MaxWatchers caps the health Watch streams open at once (over it:
	// ResourceExhausted). Default 32.
	MaxWatchers int
	// MaxStreamsPerConn is HTTP/2's MaxConcurrentStreams per connection.
	// A worker uses one stream. Default 8.
	MaxStreamsPerConn uint32
	// Logger receives refusals. Default: the coordinator's.
	Logger *slog.Logger
}

// Defaults of ServerConfig fields.
const (
	// DefaultMaxWorkers is ServerConfig.MaxWorkers's default (DRAGONFLY_MAX_WORKERS).
	DefaultMaxWorkers = 1024
	// DefaultMaxPendingConns is ServerConfig.MaxPendingConns's default.
	DefaultMaxPendingConns = 64
	// DefaultPendingTimeout is ServerConfig.PendingTimeout's default.
	DefaultPendingTimeout = 10 * time.Second
	// DefaultMaxSessionsPerIdentity is ServerConfig.MaxSessionsPerIdentity's
	// default (DRAGONFLY_MAX_SESSIONS_PER_IDENTITY).
	DefaultMaxSessionsPerIdentity = 64
	// maxHeaderListBytes bounds the header block of a stream, read before
	// the fleet token can be checked (gRPC's default is 16 MB).
	maxHeaderListBytes = 64 << 10
	// refusalLogEvery is how often a refusal is logged per peer address;
	// refusalLogBurst how many refusals are logged per refusalLogEvery over
	// all addresses (a peer with a new address for each try: IPv6 hands
	// out millions).
	refusalLogEvery = time.Minute
	refusalLogBurst = 32
	// stopGrace is how long the sessions left after the drain and the
	// flush get to end before they are cut: the drain timeout bounded the
	// wait for their work already (a result sent now only waits in the
	// outbox for the next run).
	stopGrace = 5 * time.Second
)

// Server owns the coordinator's gRPC server: the fleet service, health and
// reflection behind the fleet token (checked in the tap handle, before a
// stream exists or any of its payload is read; only health Check from a
// local peer goes without it), panic recovery, explicit message limits,
// keepalive enforcement, and a gate on connections (connGate: pending
// connections capped apart from authenticated ones, authenticated ones
// capped in total, never per peer address). Health says SERVING until the
// coordinator drains. Serve it with Run (or Serve and Stop, for tests that
// drive the coordinator themselves).
type Server struct {
	c      *Coordinator
	cfg    ServerConfig
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	tls    bool
	mtls   bool
	// refusals throttles the "worker refused" log per peer address.
	refusals *logthrottle.Throttle
	serving  atomic.Bool
	stopped  atomic.Bool              // Stop was called
	gate     atomic.Pointer[connGate] // the listener being served
}

// NewServer builds the gRPC server for c with every production option.
func NewServer(c *Coordinator, cfg ServerConfig) (*Server, error) {
	if cfg.Token == "" && !cfg.Insecure {
		return nil, errors.New("coordinator: no fleet token (DRAGONFLY_FLEET_TOKEN), and not insecure")
	}
	if cfg.Token != "" && len(cfg.Token) < fleetauth.MinTokenBytes {
		return nil, fmt.Errorf("coordinator: the fleet token (DRAGONFLY_FLEET_TOKEN) has %d bytes; it needs at least %d (e.g. openssl rand -hex 32)",
			len(cfg.Token), fleetauth.MinTokenBytes)
	}
	if err := fleetauth.CheckTokenText(cfg.Token); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	cfg.MaxWorkers = bound.Or(cfg.MaxWorkers, DefaultMaxWorkers)
	cfg.MaxPendingConns = bound.Or(cfg.MaxPendingConns, DefaultMaxPendingConns)
	cfg.PendingTimeout = bound.Or(cfg.PendingTimeout, DefaultPendingTimeout)
	cfg.MaxSessionsPerIdentity = bound.Or(cfg.MaxSessionsPerIdentity, DefaultMaxSessionsPerIdentity)
	cfg.MaxWatchers = bound.Or(cfg.MaxWatchers, 32)
	if cfg.MaxStreamsPerConn == 0 {
		cfg.MaxStreamsPerConn = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = c.log
	}
	s := &Server{c: c, cfg: cfg, log: cfg.Logger, tls: cfg.TLS.Enabled(), mtls: cfg.TLS.CA != "",
		refusals: logthrottle.New(refusalLogEvery, 1024)}
	c.maxSessions.Store(int64(cfg.MaxWorkers))
	c.maxPerIdentity.Store(int64(cfg.MaxSessionsPerIdentity))

	// The tap handle checks every stream before it exists; the interceptors
	// check again what reaches a handler (all but a local health Check).
	needsToken := selector.MatchFunc(func(ctx context.Context, cm interceptors.CallMeta) bool {
		return !tokenExempt(ctx, cm.FullMethod())
	})
	panicked := recovery.WithRecoveryHandler(func(p any) error {
		s.log.Error("panic in a gRPC handler; call ended", "panic", clip.String(fmt.Sprint(p), protocol.MaxTextBytes))
		return status.Error(codes.Internal, "internal error")
	})
	authFn := s.authenticate
	opts := []grpc.ServerOption{
		grpc.InTapHandle(s.tap),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(panicked),
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(authFn), needsToken),
		),
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(panicked),
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(authFn), needsToken),
		),
		// Matched with the worker's send and receive limits (package protocol).
		grpc.MaxRecvMsgSize(protocol.MaxRequestBytes),
		grpc.MaxSendMsgSize(protocol.MaxResponseBytes),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.MaxConcurrentStreams(cfg.MaxStreamsPerConn),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// A connection with no stream for this long is closed (idle
			// workers do not hold a place under MaxWorkers).
			MaxConnectionIdle: 2 * time.Minute,
			Time:              30 * time.Second,
			Timeout:           10 * time.Second,
		}),
	}
	if s.tls {
		creds, err := fleetauth.ServerCredentials(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(creds))
	}
	s.grpc = grpc.NewServer(opts...)
	fleetv1.RegisterFleetServiceServer(s.grpc, c)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, &boundedHealth{Server: s.health, slots: make(chan struct{}, cfg.MaxWatchers)})
	reflection.Register(s.grpc)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(fleetv1.FleetService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	// NOT_SERVING from the drain on, as /readyz says: a worker or a load
	// balancer asking goes elsewhere instead of connecting to be refused.
	// Set as the drain begins, before any session is refused for it.
	c.onDrain(s.health.Shutdown)
	return s, nil
}

// tokenExempt reports whether a call goes without the fleet token: a health
// Check from a local peer (the image's `dragonfly healthcheck` runs next to
// the coordinator). Its connection stays pending.
func tokenExempt(ctx context.Context, method string) bool {
	if method != healthpb.Health_Check_FullMethodName {
		return false
	}
	p, ok := peer.FromContext(ctx)
	return !ok || isLocal(addrOf(p.Addr))
}

// tap runs for every stream before gRPC creates it and before any of its
// payload is read: it checks the fleet token (see credentials), then marks
// the stream's connection authenticated within the gate's caps. A refused
// stream costs its header block and nothing else.
func (s *Server) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if tokenExempt(ctx, info.FullMethodName) {
		return ctx, nil
	}
	p, _ := peer.FromContext(ctx)
	if err := s.credentials(ctx, p); err != nil {
		s.refused(p, err)
		return ctx, err
	}
	if p != nil {
		if c := gateConnOf(p.Addr); c != nil {
			if err := c.promote(); err != nil {
				if status.Code(err) == codes.ResourceExhausted {
					s.c.refusals.overCap.Add(1)
					s.logRefusal(p, err)
				}
				return ctx, err
			}
		}
	}
	return ctx, nil
}

// credentials checks the fleet token of a call (in its incoming metadata),
// and that it did not cross the network in the clear.
func (s *Server) credentials(ctx context.Context, p *peer.Peer) error {
	if s.cfg.Token != "" && !s.tls && !s.cfg.FleetInsecure && p != nil && !isLocal(addrOf(p.Addr)) {
		return status.Error(codes.PermissionDenied,
			"the fleet token was sent over plaintext from a non-loopback address: use TLS, or set DRAGONFLY_FLEET_INSECURE=true on the coordinator and the worker")
	}
	_, err := fleetauth.CheckToken(s.cfg.Token)(ctx)
	return err
}

// authenticate is the interceptors' check (the tap handle checked the
// stream already).
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	p, _ := peer.FromContext(ctx)
	if err := s.credentials(ctx, p); err != nil {
		s.refused(p, err)
		return nil, err
	}
	return ctx, nil
}

// refused counts a refused stream and logs it (throttled).
func (s *Server) refused(p *peer.Peer, err error) {
	s.c.refusals.streams.Add(1)
	s.logRefusal(p, err)
}

// logRefusal logs a refusal at most once per peer address and
// refusalLogEvery, and refusalLogBurst times per refusalLogEvery in all,
// with how many were held back since.
func (s *Server) logRefusal(p *peer.Peer, err error) {
	key := "unknown"
	if p != nil && p.Addr != nil {
		a := addrOf(p.Addr)
		if key = peerIP(a); key == "" {
			key = clip.String(a.String(), 128)
		}
	}
	if ok, held := s.refusals.AllowIn("refusal", refusalLogBurst, key, 1, s.c.cfg.Now()); ok {
		s.log.Warn("worker refused", "peer", peerString(p), "reason", clip.String(status.Convert(err).Message(), protocol.MaxTextBytes),
			"code", status.Code(err).String(), "suppressed", held)
	}
}

func peerString(p *peer.Peer) string {
	if p == nil || p.Addr == nil {
		return ""
	}
	return clip.String(addrOf(p.Addr).String(), 256)
}

// isLocal reports whether a peer address is loopback or in memory (bufconn,
// unix sockets).
func isLocal(a net.Addr) bool {
	switch a := addrOf(a).(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	case nil:
		return true
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		// Not a host:port: an in-memory address ("bufconn").
		return a.Network() != "tcp" && a.Network() != "tcp4" && a.Network() != "tcp6"
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// peerIP is the IP address of a TCP peer, without port or zone ("" for an
// address that has none).
func peerIP(a net.Addr) string {
	switch a := addrOf(a).(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return ""
	default:
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return ""
		}
		host, _, _ = strings.Cut(host, "%")
		if ip := net.ParseIP(host); ip != nil {
			return ip.String()
		}
		return ""
	}
}

// identity is who a session is for limits, refusals, spot checks, backups
// and quarantine: the subject of a verified client certificate under mutual
// TLS ("cert:<subject>"), else the worker's own id. Never a bare peer
// address: workers behind one NAT, proxy or service-mesh sidecar share it.
// Only a certificate identity cannot be changed by reconnecting; a worker
// holding the token names itself, and the dispatcher and the caps on
// sessions and credits per identity are built for identities that cost
// nothing to make (README, "what a worker identity is").
func identity(ctx context.Context, workerID string) string {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			if cert := verifiedLeaf(ti); cert != nil {
				return "cert:" + clip.String(cert.Subject.String(), protocol.MaxIDBytes)
			}
		}
	}
	return workerID
}

func verifiedLeaf(ti credentials.TLSInfo) *x509.Certificate {
	if len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
		return ti.State.VerifiedChains[0][0]
	}
	return nil
}

// Serve serves workers on ln until Stop, through the connection gate (see
// connGate and ServerConfig). An insecure server (no token) serves only on
// a loopback or in-memory listener.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.Token == "" && !isLocalListener(ln) {
		return fmt.Errorf("coordinator: insecure mode (no fleet token) listens only on a loopback address, not %s", ln.Addr())
	}
	g := newConnGate(ln, s.cfg.MaxPendingConns, s.cfg.MaxWorkers, s.cfg.PendingTimeout, &s.c.refusals)
	s.gate.Store(g)
	s.serving.Store(!s.stopped.Load())
	defer s.serving.Store(false)
	if err := s.grpc.Serve(g); !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	// Stopped before it began (a shutdown right at the start): nothing was
	// served, and gRPC closed the listener.
	return nil
}

// Ready reports whether the server serves workers and the coordinator is not
// draining: what a readiness probe (/readyz) asks. API or outbox trouble
// does not make it unready (taking the coordinator out of its Service during
// an API outage would cut its own workers off).
func (s *Server) Ready() bool { return s.serving.Load() && !s.c.isDraining() }

func isLocalListener(ln net.Listener) bool {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return a.IP.IsLoopback()
	}
	return isLocal(ln.Addr())
}

// Stop marks the server not serving, stops it gracefully, and after timeout
// at once.
func (s *Server) Stop(timeout time.Duration) {
	s.stopped.Store(true)
	s.serving.Store(false)
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.grpc.Stop()
		<-done
	}
}

// Run runs the coordinator and serves workers on ln until ctx ends, then shuts
// down in order: the coordinator stops leasing, drains workers and flushes its
// reports (Coordinator.Run), then the gRPC server stops (gracefully, for at
// most stopGrace: the drain was bounded already), then the sessions'
// goroutines are waited for. When the server cannot serve (the listener
// failed, or an insecure server was given a non-loopback one), no worker can
// reach the coordinator: it is stopped the same way and Run returns the
// server's error.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve(ln) }()
	runErr := make(chan error, 1)
	go func() { runErr <- s.c.Run(runCtx) }()
	var err error
	select {
	case err = <-runErr:
		s.Stop(stopGrace)
		if serr := <-serveErr; serr != nil && err == nil {
			err = fmt.Errorf("grpc: %w", serr)
		}
	case serr := <-serveErr:
		// The listener failed (or Stop was called): nothing can reach the
		// coordinator.
		if serr != nil {
			err = fmt.Errorf("grpc: %w", serr)
		}
		s.Stop(0)
		stopRun()
		if rerr := <-runErr; rerr != nil && err == nil {
			err = rerr
		}
	}
	s.c.WaitSessions()
	return err
}

// RefusedConnections counts connections closed without an authenticated
// stream: evicted from a full pending pool, or pending past PendingTimeout.
func (s *Server) RefusedConnections() int64 {
	r := s.c.refusals.snapshot()
	return r.PendingEvicted + r.PendingExpired
}

// connCounts are the served connections by class (zero before Serve).
func (s *Server) connCounts() gateCounts {
	if g := s.gate.Load(); g != nil {
		return g.countsNow()
	}
	return gateCounts{}
}

// boundedHealth is the health service with a cap on Watch streams (each
// holds a goroutine for as long as the peer likes).
type boundedHealth struct {
	*health.Server
	slots chan struct{}
}

func (h *boundedHealth) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	select {
	case h.slots <- struct{}{}:
	default:
		return status.Error(codes.ResourceExhausted, "too many health watchers; use Check")
	}
	defer func() { <-h.slots }()
	return h.Server.Watch(in, stream)
}
