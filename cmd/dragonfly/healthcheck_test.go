package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// runHealth runs `dragonfly healthcheck args...` and returns its exit status
// and output.
func runHealth(t *testing.T, getenv map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: envMap(getenv)}
	code := run(context.Background(), e, append([]string{"healthcheck"}, args...))
	return code, stdout.String(), stderr.String()
}

// healthServer serves grpc.health.v1 on a loopback port until the test ends.
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

func TestHealthcheckGRPC(t *testing.T) {
	addr, h := healthServer(t)
	h.SetServingStatus("dragonfly.fleet.v1.FleetService", healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    int
		wantErr string // substring of stderr
	}{
		{name: "server serving", args: []string{"--grpc", addr}, want: 0},
		{name: "named service serving", args: []string{"--grpc", addr, "--service", "dragonfly.fleet.v1.FleetService"}, want: 0},
		{name: "service not serving", args: []string{"--grpc", addr, "--service", "down"}, want: 1, wantErr: "NOT_SERVING"},
		{name: "unknown service", args: []string{"--grpc", addr, "--service", "nope"}, want: 1, wantErr: "NotFound"},
		{name: "nothing listening", args: []string{"--grpc", closedAddr(t)}, want: 1, wantErr: "unhealthy"},
		{name: "address from env", env: map[string]string{"DRAGONFLY_HEALTHCHECK_GRPC": addr}, want: 0},
		{name: "coordinator TLS env is ignored", args: []string{"--grpc", addr}, env: map[string]string{"DRAGONFLY_TLS_CA": "/nonexistent/ca.pem"}, want: 0},
		{name: "TLS to a plaintext server", args: []string{"--grpc", addr, "--tls-skip-verify"}, want: 1, wantErr: "unhealthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runHealth(t, tt.env, tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.want, stdout, stderr)
			}
			if tt.want == 0 && !strings.Contains(stdout, "healthy: grpc "+addr) {
				t.Errorf("stdout %q does not say healthy", stdout)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantErr)
			}
		})
	}

	// A server that shuts its health service down (as the coordinator does
	// when it starts draining) turns unhealthy.
	h.Shutdown()
	if code, _, stderr := runHealth(t, nil, "--grpc", addr); code != 1 || !strings.Contains(stderr, "NOT_SERVING") {
		t.Fatalf("after Shutdown: exit %d, stderr %q; want 1 and NOT_SERVING", code, stderr)
	}
}

func TestHealthcheckHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "draining", http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	mux.HandleFunc("/hang", func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name    string
		args    []string
		want    int
		wantErr string
	}{
		{name: "200", args: []string{"--http", srv.URL + "/healthz"}, want: 0},
		{name: "503", args: []string{"--http", srv.URL + "/down"}, want: 1, wantErr: "503"},
		{name: "404", args: []string{"--http", srv.URL + "/missing"}, want: 1, wantErr: "404"},
		{name: "redirect not followed", args: []string{"--http", srv.URL + "/moved"}, want: 1, wantErr: "302"},
		{name: "timeout", args: []string{"--http", srv.URL + "/hang", "--timeout", "200ms"}, want: 1, wantErr: "deadline exceeded"},
		{name: "nothing listening", args: []string{"--http", "http://" + closedAddr(t) + "/healthz"}, want: 1, wantErr: "refused"},
		{name: "bad URL", args: []string{"--http", "::not a url"}, want: 1, wantErr: "unhealthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runHealth(t, nil, tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.want, stdout, stderr)
			}
			if tt.want == 0 && !strings.Contains(stdout, "healthy: http ") {
				t.Errorf("stdout %q does not say healthy", stdout)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantErr)
			}
		})
	}
}

func TestHealthcheckBoth(t *testing.T) {
	addr, _ := healthServer(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	if code, stdout, stderr := runHealth(t, nil, "--grpc", addr, "--http", srv.URL+"/ok"); code != 0 {
		t.Fatalf("both healthy: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	// One failing check fails the probe, and the message names it.
	code, _, stderr := runHealth(t, nil, "--grpc", addr, "--http", srv.URL+"/bad")
	if code != 1 || !strings.Contains(stderr, "http "+srv.URL+"/bad") || strings.Contains(stderr, "grpc "+addr) {
		t.Fatalf("http failing: exit %d stderr %q; want 1 naming only the http check", code, stderr)
	}
}

func TestHealthcheckUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    int
		wantErr string
		wantOut string
	}{
		{name: "no check", args: nil, want: 1, wantErr: "nothing to check"},
		{name: "unknown flag", args: []string{"--nope"}, want: 1, wantErr: "nope"},
		{name: "zero timeout", args: []string{"--http", "http://127.0.0.1:1/", "--timeout", "0"}, want: 1, wantErr: "timeout"},
		{name: "stray argument", args: []string{"--http", "http://127.0.0.1:1/", "extra"}, want: 1, wantErr: "unexpected arguments: extra"},
		{name: "help", args: []string{"--help"}, want: 0, wantOut: "DRAGONFLY_HEALTHCHECK_GRPC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runHealth(t, nil, tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.want, stderr)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantErr)
			}
			// Help goes to stdout (exit 0), errors to stderr.
			if !strings.Contains(stdout, tt.wantOut) {
				t.Errorf("stdout %q does not contain %q", stdout, tt.wantOut)
			}
		})
	}
}

// TestHealthcheckTLS probes a TLS health server: verified by a CA file,
// refused without it, accepted with --tls-skip-verify.
func TestHealthcheckTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t, "coordinator.test")
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	addr, _ := healthServer(t, grpc.Creds(creds))

	tests := []struct {
		name string
		args []string
		want int
	}{
		{name: "CA and server name", args: []string{"--grpc", addr, "--tls-ca", caFile, "--tls-server-name", "coordinator.test"}, want: 0},
		{name: "wrong server name", args: []string{"--grpc", addr, "--tls-ca", caFile, "--tls-server-name", "other.test"}, want: 1},
		{name: "system roots do not know it", args: []string{"--grpc", addr, "--tls", "--tls-server-name", "coordinator.test"}, want: 1},
		{name: "skip verify", args: []string{"--grpc", addr, "--tls-skip-verify"}, want: 0},
		{name: "plaintext to a TLS server", args: []string{"--grpc", addr}, want: 1},
		{name: "missing CA file", args: []string{"--grpc", addr, "--tls-ca", filepath.Join(dir, "none.pem")}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runHealth(t, nil, tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.want, stdout, stderr)
			}
		})
	}
}

// selfSigned returns a self-signed server certificate for name and its key.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
