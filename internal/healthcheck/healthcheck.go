// Package healthcheck probes once, for container health checks without a
// shell (dragonfly healthcheck): a gRPC health service (grpc.health.v1
// Check; healthy when the service's status is SERVING), an HTTP endpoint
// (GET; healthy on 200, redirects not followed), or both.
//
// The caller bounds the probe with its context. An HTTP answer's body is
// read to at most 64 KiB and dropped.
package healthcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/dragonfly-fleet/fleet/fleetauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Config names the checks of one probe.
type Config struct {
	// GRPC is the address (host:port) of a grpc.health.v1 service to Check;
	// "" checks none.
	GRPC string
	// Service is the health service name to check; "" the whole server.
	Service string
	// HTTP is the URL to GET; "" checks none.
	HTTP string
	// TLS uses TLS for GRPC (implied by TLSFiles or SkipVerify): the server
	// is verified by TLSFiles.CA, else the system's roots, and TLSFiles.Cert
	// and Key are the client certificate (mutual TLS).
	TLS        bool
	TLSFiles   fleetauth.TLSFiles
	ServerName string // name to verify in the server's certificate; default the address's host
	SkipVerify bool   // do not verify the server's certificate
}

// Run runs every check of cfg, writing "healthy: grpc ADDR" or "healthy:
// http URL" to w for each that passes. The error ("unhealthy: ...") names
// each check that failed.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	var errs []error
	if cfg.GRPC != "" {
		if err := GRPC(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("grpc %s: %w", cfg.GRPC, err))
		} else {
			fmt.Fprintf(w, "healthy: grpc %s\n", cfg.GRPC)
		}
	}
	if cfg.HTTP != "" {
		if err := HTTP(ctx, cfg.HTTP); err != nil {
			errs = append(errs, fmt.Errorf("http %s: %w", cfg.HTTP, err))
		} else {
			fmt.Fprintf(w, "healthy: http %s\n", cfg.HTTP)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("unhealthy: %w", errors.Join(errs...))
	}
	return nil
}

// GRPC asks the grpc.health.v1 service at cfg.GRPC for cfg.Service.
func GRPC(ctx context.Context, cfg Config) error {
	var creds credentials.TransportCredentials
	if cfg.TLS || cfg.TLSFiles.Enabled() || cfg.SkipVerify {
		c, err := clientTLS(cfg)
		if err != nil {
			return err
		}
		creds = c
	} else {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(cfg.GRPC, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: cfg.Service})
	if err != nil {
		return err
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s", st)
	}
	return nil
}

func clientTLS(cfg Config) (credentials.TransportCredentials, error) {
	if !cfg.SkipVerify {
		return fleetauth.ClientCredentials(cfg.TLSFiles, cfg.ServerName)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // asked for by SkipVerify
	if cfg.TLSFiles.Cert != "" || cfg.TLSFiles.Key != "" {
		cert, err := fleetauth.LoadKeyPair(cfg.TLSFiles.Cert, cfg.TLSFiles.Key)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(tc), nil
}

// HTTP GETs target and wants a 200.
func HTTP(ctx context.Context, target string) error {
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
