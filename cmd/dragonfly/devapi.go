package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/devapi"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/httpserve"
)

// devapiFlags are the settings of dragonfly devapi: the server's Config
// and how to run it.
type devapiFlags struct {
	cfg                 devapi.Config
	listen              string
	useDemo             bool
	logLevel, logFormat string
}

func (f *devapiFlags) register(s *cli.Settings) {
	c := &f.cfg
	// Flags drop the DRAGONFLY_DEVAPI_ prefix: DRAGONFLY_DEVAPI_LISTEN_ADDR
	// is --listen-addr and devapi_listen_addr.
	s.SetNamespace("DRAGONFLY_DEVAPI_")
	s.Var(cli.String(&f.listen, "127.0.0.1:8000"), "DRAGONFLY_DEVAPI_LISTEN_ADDR", "address to serve the API on (loopback by default; \":8000\" serves every interface)").
		DeprecatedFlag("listen").DeprecatedEnv("DRAGONFLY_DEVAPI_LISTEN")
	s.Var(cli.String(&c.PackagesDir, ""), "DRAGONFLY_DEVAPI_PACKAGES", "directory of distribution files (sdists, wheels, eggs) to serve and queue")
	s.Var(cli.String(&c.RulesDir, ""), "DRAGONFLY_DEVAPI_RULES", "directory of YARA rule files (*.yara, *.yar); re-read when they change")
	s.Var(cli.Bool(&f.useDemo, false), "DRAGONFLY_DEVAPI_DEMO", "serve the built-in demo packages and rules")
	s.Var(cli.Duration(&c.LeaseTimeout, 120*time.Second), "DRAGONFLY_DEVAPI_LEASE_TIMEOUT", "how long a lease stays pending before it may be re-leased")
	s.Var(cli.Int(&c.MaxAttempts, 3), "DRAGONFLY_DEVAPI_MAX_ATTEMPTS", "leases per job before it is dead-lettered")
	s.Var(cli.String(&c.Auth, "none"), "DRAGONFLY_DEVAPI_AUTH", "authentication: none, cloudflare (Access service token) or auth0 (bearer tokens from /oauth/token)")
	// The token clients must send has the coordinator's names for the token
	// it sends, so one configuration file serves both.
	s.Var(cli.String(&c.CFClientID, ""), "DRAGONFLY_DEVAPI_CF_ACCESS_CLIENT_ID", "Cloudflare Access service token id clients must send").
		DeprecatedFlag("cf-client-id").DeprecatedEnv("DRAGONFLY_DEVAPI_CF_CLIENT_ID").MarkSecret()
	s.Var(cli.String(&c.CFClientSecret, ""), "DRAGONFLY_DEVAPI_CF_ACCESS_CLIENT_SECRET", "Cloudflare Access service token secret clients must send").
		DeprecatedFlag("cf-client-secret").DeprecatedEnv("DRAGONFLY_DEVAPI_CF_CLIENT_SECRET").MarkSecret()
	s.Var(cli.Pairs(&c.CFServiceTokens), "DRAGONFLY_DEVAPI_CF_SERVICE_TOKENS", "further Cloudflare service tokens, id=secret,... (each id is its own lease owner)").MarkSecret()
	s.Var(cli.String(&c.Auth0ClientID, ""), "DRAGONFLY_DEVAPI_AUTH0_CLIENT_ID", "Auth0 client id accepted by /oauth/token")
	s.Var(cli.String(&c.Auth0ClientSecret, ""), "DRAGONFLY_DEVAPI_AUTH0_CLIENT_SECRET", "Auth0 client secret accepted by /oauth/token").MarkSecret()
	s.Var(cli.String(&c.Auth0Username, ""), "DRAGONFLY_DEVAPI_AUTH0_USERNAME", "username accepted by the password grant")
	s.Var(cli.String(&c.Auth0Password, ""), "DRAGONFLY_DEVAPI_AUTH0_PASSWORD", "password accepted by the password grant").MarkSecret()
	s.Var(cli.Pairs(&c.Auth0Users), "DRAGONFLY_DEVAPI_AUTH0_USERS", "further users for the password grant, name=password,... (each its own lease owner)").MarkSecret()
	s.Var(cli.String(&c.Auth0Audience, "https://dragonfly.vipyrsec.com"), "DRAGONFLY_DEVAPI_AUTH0_AUDIENCE", "audience a token request may name (empty: any)")
	s.Var(cli.Duration(&c.TokenLifetime, time.Hour), "DRAGONFLY_DEVAPI_TOKEN_LIFETIME", "lifetime of issued Auth0 tokens")
	s.Var(cli.String(&c.PublicURL, ""), "DRAGONFLY_DEVAPI_PUBLIC_URL", "base URL of distribution links (default: the scheme and Host of each /jobs request)")
	s.Var(cli.Int(&c.Synthetic, 0), "DRAGONFLY_DEVAPI_SYNTHETIC", "add N tiny synthetic releases (synth-00001 1.0 ...) for load tests")
	s.Var(cli.String(&c.SnapshotPath, ""), "DRAGONFLY_DEVAPI_SNAPSHOT", "JSON file keeping releases, scans and leases across restarts")
	s.Var(cli.Share(&c.Faults.ReportErrorRate, 0), "DRAGONFLY_DEVAPI_REPORT_ERROR_RATE", "share of PUT /package answered 503 without effect, 0..1 (deterministic: 0.25 fails every 4th)")
	s.Var(cli.Duration(&c.Faults.Latency, 0), "DRAGONFLY_DEVAPI_LATENCY", "delay added to every API answer")
	s.Var(cli.String(&f.logLevel, "info"), "DRAGONFLY_DEVAPI_LOG_LEVEL", "log level: debug, info, warn, error").Alias("DRAGONFLY_LOG_LEVEL")
	s.Var(cli.String(&f.logFormat, "auto"), "DRAGONFLY_DEVAPI_LOG_FORMAT", "log format: text, json, or auto (text on a terminal, JSON otherwise)").Alias("DRAGONFLY_LOG_FORMAT")
}

// config checks the settings and returns the server's Config.
func (f *devapiFlags) config() (devapi.Config, error) {
	cfg := f.cfg
	cfg.Auth = strings.ToLower(cfg.Auth)
	switch {
	case cfg.LeaseTimeout <= 0:
		return cfg, cli.Usage("DRAGONFLY_DEVAPI_LEASE_TIMEOUT: must be positive")
	case cfg.MaxAttempts <= 0:
		return cfg, cli.Usage("DRAGONFLY_DEVAPI_MAX_ATTEMPTS=%d: must be positive", cfg.MaxAttempts)
	case cfg.TokenLifetime <= 0:
		return cfg, cli.Usage("DRAGONFLY_DEVAPI_TOKEN_LIFETIME: must be positive")
	case cfg.Synthetic < 0:
		return cfg, cli.Usage("DRAGONFLY_DEVAPI_SYNTHETIC=%d: must not be negative", cfg.Synthetic)
	}
	switch cfg.Auth {
	case devapi.AuthNone, devapi.AuthCloudflare, devapi.AuthAuth0:
	default:
		return cfg, cli.Usage("DRAGONFLY_DEVAPI_AUTH=%q: not one of none, cloudflare, auth0", f.cfg.Auth)
	}
	if f.useDemo {
		files, err := devapi.DemoFiles()
		if err != nil {
			return cfg, err
		}
		cfg.Files, cfg.Rules = files, demo.Rules()
	}
	return cfg, nil
}

func runDevAPI(ctx context.Context, e *cli.Env, f *devapiFlags, _ *cli.Settings) error {
	log, err := cli.NewLogger(e.Stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	cfg.Logger = log
	dev, err := devapi.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), dev.Close())
	}
	st := dev.Stats()
	log.Info("devapi listening", "addr", ln.Addr().String(), "auth", cfg.Auth,
		"queued", st.Queue.Queued, "backlog", st.Queue.TotalBacklog, "rules_hash", dev.RulesHash())
	if devapi.OpenToAll(ln.Addr(), cfg.Auth) {
		log.Warn("devapi serves beyond loopback without authentication: anyone who reaches it can lease, report and change its faults",
			"addr", ln.Addr().String())
	}
	defer context.AfterFunc(ctx, dev.EndWaits)()    // waiting /_dev/stats requests answer at shutdown
	serr := httpserve.Serve(ctx, ln, dev.Handler()) // bounded Shutdown when ctx ends
	cerr := dev.Close()                             // flush the snapshot
	log.Info("devapi stopped")
	return errors.Join(serr, cerr)
}
