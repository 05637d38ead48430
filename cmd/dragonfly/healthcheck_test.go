package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/internal/fakeapi"
)

// runHealth runs `dragonfly healthcheck args...` and returns its exit status
// and output.
func runHealth(t *testing.T, getenv map[string]string, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, getenv, append([]string{"healthcheck"}, args...)...)
}

// coordinatorHealth serves a coordinator's production gRPC server
// (coordinator.NewServer: health among its services) on a loopback port
// until the test ends.
func coordinatorHealth(t *testing.T) string {
	t.Helper()
	c, err := coordinator.New(coordinator.Config{API: fakeapi.New(mainframe.RuleSet{Hash: "h", Rules: map[string]string{"r": "rule r { condition: true }"}})})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := coordinator.NewServer(c, coordinator.ServerConfig{Token: "fleet-token-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop(time.Second)
		<-done
		c.WaitSessions()
	})
	return ln.Addr().String()
}

// TestHealthcheckCommand probes a coordinator (gRPC health, no fleet token
// from a local peer) and HTTP endpoints with dragonfly healthcheck: exit 0
// and "healthy: ..." on stdout, 1 and the failed checks on stderr; its
// settings are DRAGONFLY_HEALTHCHECK_*, not the coordinator's own.
func TestHealthcheckCommand(t *testing.T) {
	addr := coordinatorHealth(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.Error(w, "draining", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    int
		wantOut string
		wantErr string // substring of stderr
	}{
		{name: "coordinator serving", args: []string{"--grpc", addr}, wantOut: "healthy: grpc " + addr + "\n"},
		{name: "the fleet service", args: []string{"--grpc", addr, "--service", "dragonfly.fleet.v1.FleetService"}, wantOut: "healthy: grpc " + addr + "\n"},
		{name: "unknown service", args: []string{"--grpc", addr, "--service", "nope"}, want: 1, wantErr: "NotFound"},
		{name: "address from env", env: map[string]string{"DRAGONFLY_HEALTHCHECK_GRPC": addr}, wantOut: "healthy: grpc " + addr + "\n"},
		{name: "coordinator TLS env is ignored", args: []string{"--grpc", addr}, env: map[string]string{"DRAGONFLY_TLS_CA": "/nonexistent/ca.pem"}, wantOut: "healthy: grpc " + addr + "\n"},
		{name: "TLS to a plaintext server", args: []string{"--grpc", addr, "--tls-skip-verify"}, want: 1, wantErr: "unhealthy: grpc " + addr},
		{name: "both", args: []string{"--grpc", addr, "--http", srv.URL + "/ok"}, wantOut: "healthy: grpc " + addr + "\nhealthy: http " + srv.URL + "/ok\n"},
		{name: "one failing names it", args: []string{"--grpc", addr, "--http", srv.URL + "/down"}, want: 1, wantOut: "healthy: grpc " + addr + "\n",
			wantErr: "dragonfly healthcheck: unhealthy: http " + srv.URL + "/down: status 503 Service Unavailable\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runHealth(t, tt.env, tt.args...)
			if code != tt.want || stdout != tt.wantOut || !strings.Contains(stderr, tt.wantErr) || tt.wantErr == "" && stderr != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout, stderr, tt.want, tt.wantOut, tt.wantErr)
			}
		})
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
