package coordinator

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/fleetauth"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
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
)

// ServerConfig configures the coordinator's gRPC server: who may connect and
// how much each connection may cost.
type ServerConfig struct {
	// Token is the fleet token workers must present (DRAGONFLY_FLEET_TOKEN).
	// Required unless Insecure.
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
	// MaxWorkers caps the connections served at once and the worker sessions
	// (DRAGONFLY_MAX_WORKERS). Connections over the cap are closed at once;
	// sessions over it are refused with ResourceExhausted. Default 1024.
	MaxWorkers int
	// MaxWatchers caps the unauthenticated health Watch streams open at once
	// (over it: ResourceExhausted). Default 32.
	MaxWatchers int
	// MaxStreamsPerConn is HTTP/2's MaxConcurrentStreams per connection.
	// A worker uses one stream. Default 8.
	MaxStreamsPerConn uint32
	// Logger receives refusals. Default: the coordinator's.
	Logger *slog.Logger
}

// Server owns the coordinator's gRPC server: the fleet service behind the
// fleet token, health (Check unauthenticated, Watch bounded), reflection
// behind the token, panic recovery, explicit message limits, keepalive
// enforcement and a cap on connections. Serve it with Run (or Serve and
// Stop, for tests that drive the coordinator themselves).
type Server struct {
	c      *Coordinator
	cfg    ServerConfig
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	tls    bool
	mtls   bool
	// refusedConns counts connections closed for MaxWorkers.
	refusedConns atomic.Int64
	serving      atomic.Bool
}

// NewServer builds the gRPC server for c with every production option.
func NewServer(c *Coordinator, cfg ServerConfig) (*Server, error) {
	if cfg.Token == "" && !cfg.Insecure {
		return nil, errors.New("coordinator: no fleet token (DRAGONFLY_FLEET_TOKEN), and not insecure")
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = DefaultMaxWorkers
	}
	if cfg.MaxWatchers <= 0 {
		cfg.MaxWatchers = 32
	}
	if cfg.MaxStreamsPerConn == 0 {
		cfg.MaxStreamsPerConn = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = c.log
	}
	s := &Server{c: c, cfg: cfg, log: cfg.Logger, tls: cfg.TLS.Enabled(), mtls: cfg.TLS.CA != ""}
	c.maxSessions.Store(int64(cfg.MaxWorkers))

	// Everything but the health checks needs the token: the fleet service,
	// reflection, health List.
	needsToken := selector.MatchFunc(func(_ context.Context, cm interceptors.CallMeta) bool {
		return cm.FullMethod() != healthpb.Health_Check_FullMethodName &&
			cm.FullMethod() != healthpb.Health_Watch_FullMethodName
	})
	panicked := recovery.WithRecoveryHandler(func(p any) error {
		s.log.Error("panic in a gRPC handler; call ended", "panic", clip.String(fmt.Sprint(p), protocol.MaxTextBytes))
		return status.Error(codes.Internal, "internal error")
	})
	authFn := s.authenticate
	opts := []grpc.ServerOption{
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
		grpc.MaxConcurrentStreams(cfg.MaxStreamsPerConn),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// A connection with no stream for this long is closed (probes
			// and idle peers do not hold a place under MaxWorkers).
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
	return s, nil
}

// DefaultMaxWorkers is ServerConfig.MaxWorkers's default (DRAGONFLY_MAX_WORKERS).
const DefaultMaxWorkers = 1024

// authenticate checks the fleet token, and that it did not cross the network
// in the clear.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	p, _ := peer.FromContext(ctx)
	if s.cfg.Token != "" && !s.tls && !s.cfg.FleetInsecure && p != nil && !isLocal(p.Addr) {
		s.log.Warn("worker refused", "peer", peerString(p), "reason", "fleet token over plaintext from a non-loopback peer")
		return nil, status.Error(codes.PermissionDenied,
			"the fleet token was sent over plaintext from a non-loopback address: use TLS, or set DRAGONFLY_FLEET_INSECURE=true on the coordinator and the worker")
	}
	ctx, err := fleetauth.CheckToken(s.cfg.Token)(ctx)
	if err != nil {
		s.log.Warn("worker refused", "peer", peerString(p), "reason", status.Convert(err).Message())
		return nil, err
	}
	return ctx, nil
}

func peerString(p *peer.Peer) string {
	if p == nil || p.Addr == nil {
		return ""
	}
	return p.Addr.String()
}

// isLocal reports whether a peer address is loopback or in memory (bufconn,
// unix sockets).
func isLocal(a net.Addr) bool {
	switch a := a.(type) {
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

// identity is who a session is for limits, refusals and quarantine: the
// subject of a verified client certificate (mutual TLS), else the worker's
// own id. Never a bare peer address: workers behind one NAT share it.
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

// Serve serves workers on ln until Stop. An insecure server (no token)
// serves only on a loopback or in-memory listener. Connections beyond
// MaxWorkers are closed as soon as they are accepted.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.Token == "" && !isLocalListener(ln) {
		return fmt.Errorf("coordinator: insecure mode (no fleet token) listens only on a loopback address, not %s", ln.Addr())
	}
	s.serving.Store(true)
	defer s.serving.Store(false)
	return s.grpc.Serve(&capListener{Listener: ln, max: int64(s.cfg.MaxWorkers), refused: &s.refusedConns})
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
// reports (Coordinator.Run), then the gRPC server stops (gracefully, bounded),
// then the sessions' goroutines are waited for.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve(ln) }()
	runErr := make(chan error, 1)
	go func() { runErr <- s.c.Run(ctx) }()
	var err error
	select {
	case err = <-runErr:
		s.Stop(s.c.cfg.DrainTimeout + 5*time.Second)
		if serr := <-serveErr; serr != nil && err == nil {
			err = fmt.Errorf("grpc: %w", serr)
		}
	case serr := <-serveErr:
		// The listener failed: nothing can reach the coordinator.
		err = fmt.Errorf("grpc: %w", serr)
		s.Stop(0)
		if rerr := s.waitRun(ctx, runErr); rerr != nil && err == nil {
			err = rerr
		}
	}
	s.c.WaitSessions()
	return err
}

// waitRun waits for the coordinator's Run after the server failed: it stops
// when ctx ends (the caller's process is going down).
func (s *Server) waitRun(ctx context.Context, runErr <-chan error) error {
	select {
	case err := <-runErr:
		return err
	case <-ctx.Done():
		return <-runErr
	}
}

// RefusedConnections counts connections closed because MaxWorkers were open.
func (s *Server) RefusedConnections() int64 { return s.refusedConns.Load() }

// capListener closes accepted connections beyond max open ones.
type capListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused *atomic.Int64
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			c.Close()
			continue
		}
		return &capConn{Conn: c, l: l}, nil
	}
}

type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// boundedHealth is the health service with a cap on Watch streams (they are
// served without the token).
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
