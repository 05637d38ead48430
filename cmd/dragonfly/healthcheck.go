package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/healthcheck"
	"github.com/spf13/pflag"
)

// healthcheckFlags registers the settings of one probe, named
// DRAGONFLY_HEALTHCHECK_* (flags without the prefix).
func healthcheckFlags(s *cli.Settings, p *healthcheck.Config, timeout *time.Duration) {
	s.SetNamespace("DRAGONFLY_HEALTHCHECK_")
	s.Var(cli.String(&p.GRPC, ""), "DRAGONFLY_HEALTHCHECK_GRPC", "gRPC address to Check with grpc.health.v1 (host:port)")
	s.Var(cli.String(&p.Service, ""), "DRAGONFLY_HEALTHCHECK_SERVICE", "health service name to check (empty: the whole server)")
	s.Var(cli.String(&p.HTTP, ""), "DRAGONFLY_HEALTHCHECK_HTTP", "URL to GET; healthy on 200")
	s.Var(cli.Duration(timeout, 5*time.Second), "DRAGONFLY_HEALTHCHECK_TIMEOUT", "bound on the whole probe")
	s.Var(cli.Bool(&p.TLS, false), "DRAGONFLY_HEALTHCHECK_TLS", "use TLS for --grpc (implied by --tls-ca/--tls-cert)")
	s.Var(cli.String(&p.TLSFiles.CA, ""), "DRAGONFLY_HEALTHCHECK_TLS_CA", "PEM CA verifying the server (default: system roots)")
	s.Var(cli.String(&p.TLSFiles.Cert, ""), "DRAGONFLY_HEALTHCHECK_TLS_CERT", "PEM client certificate (a coordinator with mutual TLS requires one)")
	s.Var(cli.String(&p.TLSFiles.Key, ""), "DRAGONFLY_HEALTHCHECK_TLS_KEY", "PEM client key")
	s.Var(cli.String(&p.ServerName, ""), "DRAGONFLY_HEALTHCHECK_TLS_SERVER_NAME", "name to verify in the server's certificate (default: the address's host)")
	s.Var(cli.Bool(&p.SkipVerify, false), "DRAGONFLY_HEALTHCHECK_TLS_SKIP_VERIFY", "do not verify the server's certificate (probing localhost by IP)")
}

// runHealthcheck probes once; every failure, bad flags included, exits 1.
func runHealthcheck(ctx context.Context, e *cli.Env, args []string) error {
	var p healthcheck.Config
	var timeout time.Duration
	s := e.Settings("dragonfly healthcheck", help("healthcheck"))
	healthcheckFlags(s, &p, &timeout)
	if err := s.Parse(args, e.Getenv, ""); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return cli.Exit(1, err)
	}
	switch {
	case len(s.Args()) > 0:
		return cli.Exit(1, fmt.Errorf("unexpected arguments: %s", clip.String(strings.Join(s.Args(), " "), 512)))
	case p.GRPC == "" && p.HTTP == "":
		return cli.Exit(1, errors.New("nothing to check: give --grpc ADDR and/or --http URL"))
	case timeout <= 0:
		return cli.Exit(1, errors.New("--timeout must be positive"))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := healthcheck.Run(ctx, p, e.Stdout); err != nil {
		return cli.Exit(1, err)
	}
	return nil
}
