package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/fleetauth"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func init() {
	program.Register(cli.Command{
		Name: "healthcheck", Summary: "probe a coordinator (gRPC health) or an HTTP endpoint; exit 0 if healthy, 1 if not",
		Flags: func(s *cli.Settings) { new(healthcheckFlags).register(s) }, Run: runHealthcheck,
	})
}

const healthcheckUsage = `usage: dragonfly healthcheck [--grpc ADDR] [--http URL] [flags]

Probes once and exits 0 when every given check passes, 1 otherwise (bad
flags also exit 1, as container health checks reserve other codes). For
container images without a shell (Docker HEALTHCHECK, compose healthcheck,
Kubernetes exec probes).

  --grpc ADDR  grpc.health.v1 Check on ADDR (host:port); healthy when the
               status of --service is SERVING. The coordinator serves health
               without the fleet token.
  --http URL   GET URL; healthy on 200 (redirects are not followed).

Environment variables are DRAGONFLY_HEALTHCHECK_*, not the coordinator's or
worker's own DRAGONFLY_TLS_*, so a probe run inside their container does not
pick up the server's certificate by accident.`

// healthcheckFlags are the settings of one probe.
type healthcheckFlags struct {
	grpcAddr   string
	service    string
	httpURL    string
	timeout    time.Duration
	useTLS     bool
	tlsFiles   fleetauth.TLSFiles
	serverName string
	skipVerify bool
}

// register registers the settings of one probe, named
// DRAGONFLY_HEALTHCHECK_* (flags without the prefix).
func (f *healthcheckFlags) register(s *cli.Settings) {
	s.SetNamespace("DRAGONFLY_HEALTHCHECK_")
	s.Var(cli.String(&f.grpcAddr, ""), "DRAGONFLY_HEALTHCHECK_GRPC", "gRPC address to Check with grpc.health.v1 (host:port)")
	s.Var(cli.String(&f.service, ""), "DRAGONFLY_HEALTHCHECK_SERVICE", "health service name to check (empty: the whole server)")
	s.Var(cli.String(&f.httpURL, ""), "DRAGONFLY_HEALTHCHECK_HTTP", "URL to GET; healthy on 200")
	s.Var(cli.Duration(&f.timeout, 5*time.Second), "DRAGONFLY_HEALTHCHECK_TIMEOUT", "bound on the whole probe")
	s.Var(cli.Bool(&f.useTLS, false), "DRAGONFLY_HEALTHCHECK_TLS", "use TLS for --grpc (implied by --tls-ca/--tls-cert)")
	s.Var(cli.String(&f.tlsFiles.CA, ""), "DRAGONFLY_HEALTHCHECK_TLS_CA", "PEM CA verifying the server (default: system roots)")
	s.Var(cli.String(&f.tlsFiles.Cert, ""), "DRAGONFLY_HEALTHCHECK_TLS_CERT", "PEM client certificate (a coordinator with mutual TLS requires one)")
	s.Var(cli.String(&f.tlsFiles.Key, ""), "DRAGONFLY_HEALTHCHECK_TLS_KEY", "PEM client key")
	s.Var(cli.String(&f.serverName, ""), "DRAGONFLY_HEALTHCHECK_TLS_SERVER_NAME", "name to verify in the server's certificate (default: the address's host)")
	s.Var(cli.Bool(&f.skipVerify, false), "DRAGONFLY_HEALTHCHECK_TLS_SKIP_VERIFY", "do not verify the server's certificate (probing localhost by IP)")
}

func runHealthcheck(ctx context.Context, e *cli.Env, args []string) error {
	var f healthcheckFlags
	s := e.Settings("dragonfly healthcheck", healthcheckUsage)
	f.register(s)
	if err := s.Parse(args, e.Getenv, ""); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return cli.Exit(1, err)
	}
	if len(s.Args()) > 0 {
		return cli.Exit(1, fmt.Errorf("unexpected arguments: %s", clip.String(strings.Join(s.Args(), " "), 512)))
	}
	if f.grpcAddr == "" && f.httpURL == "" {
		return cli.Exit(1, errors.New("nothing to check: give --grpc ADDR and/or --http URL"))
	}
	if f.timeout <= 0 {
		return cli.Exit(1, errors.New("--timeout must be positive"))
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()

	var errs []error
	if f.grpcAddr != "" {
		if err := checkGRPC(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("grpc %s: %w", f.grpcAddr, err))
		} else {
			fmt.Fprintf(e.Stdout, "healthy: grpc %s\n", f.grpcAddr)
		}
	}
	if f.httpURL != "" {
		if err := checkHTTP(ctx, f.httpURL); err != nil {
			errs = append(errs, fmt.Errorf("http %s: %w", f.httpURL, err))
		} else {
			fmt.Fprintf(e.Stdout, "healthy: http %s\n", f.httpURL)
		}
	}
	if len(errs) > 0 {
		return cli.Exit(1, fmt.Errorf("unhealthy: %w", errors.Join(errs...)))
	}
	return nil
}

// checkGRPC asks the grpc.health.v1 service at f.grpcAddr for f.service.
func checkGRPC(ctx context.Context, f healthcheckFlags) error {
	var creds credentials.TransportCredentials
	if f.useTLS || f.tlsFiles.Enabled() || f.skipVerify {
		c, err := healthcheckTLS(f)
		if err != nil {
			return err
		}
		creds = c
	} else {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(f.grpcAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: f.service})
	if err != nil {
		return err
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s", st)
	}
	return nil
}

func healthcheckTLS(f healthcheckFlags) (credentials.TransportCredentials, error) {
	if !f.skipVerify {
		return fleetauth.ClientCredentials(f.tlsFiles, f.serverName)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // asked for by --tls-skip-verify
	if f.tlsFiles.Cert != "" || f.tlsFiles.Key != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsFiles.Cert, f.tlsFiles.Key)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// checkHTTP GETs target and wants a 200.
func checkHTTP(ctx context.Context, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err // the URL is already in the caller's context
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}
