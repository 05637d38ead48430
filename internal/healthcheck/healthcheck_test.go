package healthcheck

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/fleetauth"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// probe runs the checks of cfg under a 5 s bound (or timeout) and returns
// what they wrote and their error.
func probe(t *testing.T, cfg Config, timeout ...time.Duration) (string, error) {
	t.Helper()
	d := 5 * time.Second
	if len(timeout) > 0 {
		d = timeout[0]
	}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, cfg, &out)
	return out.String(), err
}

// healthServer serves the standard grpc.health.v1 server on a loopback port
// until the test ends.
func healthServer(t *testing.T, opts ...grpc.ServerOption) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return ln.Addr().String(), h
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestGRPC(t *testing.T) {
	addr, h := healthServer(t)
	h.SetServingStatus("dragonfly.fleet.v1.FleetService", healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)

	tests := []struct {
		name    string
		cfg     Config
		healthy bool
		wantErr string // substring of the error
	}{
		{name: "server serving", cfg: Config{GRPC: addr}, healthy: true},
		{name: "named service serving", cfg: Config{GRPC: addr, Service: "dragonfly.fleet.v1.FleetService"}, healthy: true},
		{name: "service not serving", cfg: Config{GRPC: addr, Service: "down"}, wantErr: "NOT_SERVING"},
		{name: "unknown service", cfg: Config{GRPC: addr, Service: "nope"}, wantErr: "NotFound"},
		{name: "nothing listening", cfg: Config{GRPC: closedAddr(t)}, wantErr: "unhealthy"},
		{name: "TLS to a plaintext server", cfg: Config{GRPC: addr, SkipVerify: true}, wantErr: "unhealthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := probe(t, tt.cfg)
			if (err == nil) != tt.healthy {
				t.Fatalf("err %v, want healthy %v; out %q", err, tt.healthy, out)
			}
			if tt.healthy && out != "healthy: grpc "+addr+"\n" {
				t.Errorf("out %q does not say healthy", out)
			}
			if err != nil && (!strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "unhealthy: grpc "+tt.cfg.GRPC+": ")) {
				t.Errorf("err %q does not name the check and %q", err, tt.wantErr)
			}
		})
	}

	// A server that shuts its health service down (as the coordinator does
	// when it stops) turns unhealthy.
	h.Shutdown()
	if _, err := probe(t, Config{GRPC: addr}); err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Fatalf("after Shutdown: %v; want NOT_SERVING", err)
	}
}

func TestHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "draining", http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	mux.HandleFunc("/hang", func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		wantErr string // "": healthy
	}{
		{name: "200", url: srv.URL + "/healthz"},
		{name: "503", url: srv.URL + "/down", wantErr: "503"},
		{name: "404", url: srv.URL + "/missing", wantErr: "404"},
		{name: "redirect not followed", url: srv.URL + "/moved", wantErr: "302"},
		{name: "timeout", url: srv.URL + "/hang", timeout: 200 * time.Millisecond, wantErr: "deadline exceeded"},
		{name: "nothing listening", url: "http://" + closedAddr(t) + "/healthz", wantErr: "refused"},
		{name: "bad URL", url: "::not a url", wantErr: "unhealthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := 5 * time.Second
			if tt.timeout > 0 {
				timeout = tt.timeout
			}
			out, err := probe(t, Config{HTTP: tt.url}, timeout)
			if (err == nil) != (tt.wantErr == "") {
				t.Fatalf("err %v, want %q; out %q", err, tt.wantErr, out)
			}
			if err == nil && out != "healthy: http "+tt.url+"\n" {
				t.Errorf("out %q does not say healthy", out)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestBoth(t *testing.T) {
	addr, _ := healthServer(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	if out, err := probe(t, Config{GRPC: addr, HTTP: srv.URL + "/ok"}); err != nil || out != "healthy: grpc "+addr+"\nhealthy: http "+srv.URL+"/ok\n" {
		t.Fatalf("both healthy: %v, out %q", err, out)
	}
	// One failing check fails the probe, and the message names it.
	_, err := probe(t, Config{GRPC: addr, HTTP: srv.URL + "/bad"})
	if err == nil || !strings.Contains(err.Error(), "http "+srv.URL+"/bad") || strings.Contains(err.Error(), "grpc "+addr) {
		t.Fatalf("http failing: %v; want an error naming only the http check", err)
	}
}

// TestTLS probes a TLS health server: verified by a CA file,
// refused without it, accepted with --tls-skip-verify.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	leaf := testkit.NewCA(t, "test CA").Issue(t, "coordinator.test", x509.ExtKeyUsageServerAuth, "coordinator.test")
	caFile := leaf.WriteFiles(t, dir, "").CA
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12})
	addr, _ := healthServer(t, grpc.Creds(creds))

	tests := []struct {
		name    string
		cfg     Config
		healthy bool
	}{
		{name: "CA and server name", cfg: Config{GRPC: addr, TLSFiles: fleetauth.TLSFiles{CA: caFile}, ServerName: "coordinator.test"}, healthy: true},
		{name: "wrong server name", cfg: Config{GRPC: addr, TLSFiles: fleetauth.TLSFiles{CA: caFile}, ServerName: "other.test"}},
		{name: "system roots do not know it", cfg: Config{GRPC: addr, TLS: true, ServerName: "coordinator.test"}},
		{name: "skip verify", cfg: Config{GRPC: addr, SkipVerify: true}, healthy: true},
		{name: "plaintext to a TLS server", cfg: Config{GRPC: addr}},
		{name: "missing CA file", cfg: Config{GRPC: addr, TLSFiles: fleetauth.TLSFiles{CA: filepath.Join(dir, "none.pem")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := probe(t, tt.cfg); (err == nil) != tt.healthy {
				t.Fatalf("err %v, want healthy %v; out %q", err, tt.healthy, out)
			}
		})
	}
}
