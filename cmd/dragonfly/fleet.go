package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/fleetauth"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// fleetServer is the coordinator's gRPC server: the fleet service behind the
// fleet-token check, plus health and reflection (no token needed, for probes).
type fleetServer struct {
	grpc   *grpc.Server
	health *health.Server
}

func newFleetServer(c *coordinator.Coordinator, token string, tlsFiles fleetauth.TLSFiles, log *slog.Logger) (*fleetServer, error) {
	onlyFleet := selector.MatchFunc(func(_ context.Context, cm interceptors.CallMeta) bool {
		return cm.Service == fleetv1.FleetService_ServiceDesc.ServiceName
	})
	panicked := recovery.WithRecoveryHandler(func(p any) error {
		log.Error("panic in a gRPC handler; session ended", "panic", fmt.Sprint(p))
		return status.Error(codes.Internal, "internal error")
	})
	authFn := fleetauth.CheckToken(token)
	logged := func(ctx context.Context) (context.Context, error) {
		ctx, err := authFn(ctx)
		if err != nil {
			log.Warn("worker refused", "reason", status.Convert(err).Message())
		}
		return ctx, err
	}
	opts := []grpc.ServerOption{
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(panicked),
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(logged), onlyFleet),
		),
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(panicked),
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(logged), onlyFleet),
		),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if tlsFiles.Enabled() {
		creds, err := fleetauth.ServerCredentials(tlsFiles)
		if err != nil {
			return nil, usageError("%v", err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	fleetv1.RegisterFleetServiceServer(s, c)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus(fleetv1.FleetService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return &fleetServer{grpc: s, health: h}, nil
}

// stop stops the server gracefully, or at once after timeout.
func (s *fleetServer) stop(timeout time.Duration) {
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

// httpServer serves metrics, status and (optionally) pprof.
func newHTTPServer(addr string, handler http.Handler, withPprof bool) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/", handler)
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// serveHTTP runs srv on ln until ctx ends, then shuts it down (bounded).
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// noTLS is a plaintext configuration (in-memory connections).
var noTLS fleetauth.TLSFiles
