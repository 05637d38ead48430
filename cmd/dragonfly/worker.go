package main

import (
	"context"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/httpserve"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/dragonfly-fleet/fleet/fleetauth"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

func init() {
	program.Register(cli.Command{
		Name: "worker", Summary: "download, unpack and scan distributions for a coordinator",
		Flags: func(s *cli.Settings) { new(workerCmd).register(s) }, Run: runWorker,
	})
}

const workerUsage = `usage: dragonfly worker [flags]

Connects to a coordinator, scans the distributions it assigns and streams the
results back. Holds no API credentials. Reconnects forever; on SIGTERM it hands
back unstarted tasks and finishes started ones within --drain-grace.`

// workerFlags are the settings of a worker (also used by local).
type workerFlags struct {
	threads      int
	limitSet     limitSettings
	limits       limit.Limits     // resolved from limitSet by validate
	sizes        limit.Resolution // how the size settings were read
	allowedHosts []string
	download     downloadSettings
	grace        time.Duration
	memoryLimit  int64
	matchCache   int64
	workerID     string
}

func (f *workerFlags) register(s *cli.Settings) {
	s.Var(cli.Int(&f.threads, runtime.NumCPU()), "DRAGONFLY_THREADS", "scanner threads (and tasks scanned at once)").DefaultText("number of CPUs")
	limitFlags(s, &f.limitSet)
	s.Var(cli.List(&f.allowedHosts, []string{"files.pythonhosted.org"}), "DRAGONFLY_ALLOWED_HOSTS", "where distributions may be downloaded from, comma-separated: a bare host (https on 443, public addresses only), host:port (https on that port, public addresses only), an origin (http://devapi:8000: exactly that, any address), or * (any host, https on 443, public addresses only)")
	downloadFlags(s, &f.download)
	s.Var(cli.Duration(&f.grace, worker.DefaultGrace), "DRAGONFLY_DRAIN_GRACE", "on SIGTERM, how long started tasks may run")
	s.Var(cli.SizeOrOff(&f.matchCache, scan.DefaultMatchCacheSize), "DRAGONFLY_MATCH_CACHE_SIZE", "memory for the match cache: matches of files already scanned, by content and rules, so an sdist and its wheel or a release's unchanged files are not scanned twice (0: off)")
	s.Var(cli.Size(&f.memoryLimit, 0), "DRAGONFLY_MEMORY_LIMIT", "soft memory limit for the Go runtime (as GOMEMLIMIT), e.g. 384MiB").DefaultText("none")
	s.Var(cli.String(&f.workerID, ""), "DRAGONFLY_WORKER_ID", "worker id (default: host name + random suffix)")
}

func (f *workerFlags) validate() error {
	if f.threads <= 0 {
		return cli.Usage("DRAGONFLY_THREADS=%d: must be positive", f.threads)
	}
	if len(f.allowedHosts) == 0 {
		return cli.Usage("DRAGONFLY_ALLOWED_HOSTS: empty")
	}
	if _, err := fetch.ParseAllowedHosts(f.allowedHosts); err != nil {
		return cli.Usage("DRAGONFLY_ALLOWED_HOSTS: %v", err)
	}
	if err := f.download.validate(); err != nil {
		return err
	}
	var err error
	f.limits, f.sizes, err = f.limitSet.resolve()
	return err
}

// config builds the worker configuration (without target and dial options).
func (f *workerFlags) config(log *slog.Logger) worker.Config {
	if f.memoryLimit > 0 {
		debug.SetMemoryLimit(f.memoryLimit)
	}
	return worker.Config{
		WorkerID: f.workerID, Version: version.String(), Threads: f.threads, Limits: f.limits,
		Fetch: f.download.config(f.allowedHosts),
		Grace: f.grace, Logger: log, MatchCacheSize: matchCacheSize(f.matchCache),
	}
}

// downloadSettings bound downloads (worker and scan).
type downloadSettings struct {
	stall, total time.Duration
	attempts     int
}

func downloadFlags(s *cli.Settings, d *downloadSettings) {
	s.Var(cli.Duration(&d.stall, fetch.DefaultStallTimeout), "DRAGONFLY_DOWNLOAD_STALL_TIMEOUT", "abort a download with no progress for this long")
	s.Var(cli.Duration(&d.total, fetch.DefaultTotalTimeout), "DRAGONFLY_DOWNLOAD_TIMEOUT", "cap on one distribution's download, retries included")
	s.Var(cli.Int(&d.attempts, fetch.DefaultAttempts), "DRAGONFLY_DOWNLOAD_ATTEMPTS", "requests per download when trouble is transient (timeouts, 5xx, 429, resets)")
}

func (d downloadSettings) validate() error {
	if d.attempts <= 0 {
		return cli.Usage("DRAGONFLY_DOWNLOAD_ATTEMPTS=%d: must be positive", d.attempts)
	}
	return nil
}

// config is the fetch configuration for hosts.
func (d downloadSettings) config(hosts []string) fetch.Config {
	return fetch.Config{AllowedHosts: hosts, StallTimeout: d.stall, TotalTimeout: d.total, Attempts: d.attempts, UserAgent: version.UserAgent()}
}

// workerCmd are the settings of dragonfly worker.
type workerCmd struct {
	f             workerFlags
	target        string
	token         string
	fleetInsecure bool
	tlsFiles      fleetauth.TLSFiles
	serverName    string
	metrics       string
	logLevel      string
	logFormat     string
}

func (c *workerCmd) register(s *cli.Settings) {
	s.Var(cli.String(&c.target, ""), "DRAGONFLY_COORDINATOR_ADDR", "the coordinator's gRPC address, host:port (required)").DeprecatedFlag("coordinator")
	s.Var(cli.String(&c.token, ""), "DRAGONFLY_FLEET_TOKEN", "the fleet's shared secret").MarkSecret()
	fleetInsecureFlag(s, &c.fleetInsecure)
	tlsFlags(s, &c.tlsFiles)
	s.Var(cli.String(&c.serverName, ""), "DRAGONFLY_TLS_SERVER_NAME", "name to verify in the coordinator's certificate (default: the address's host)")
	c.f.register(s)
	s.Var(cli.String(&c.metrics, ""), "DRAGONFLY_WORKER_METRICS_ADDR", "address for the worker's /metrics, /healthz (liveness) and /readyz (connected with rules ready) (empty: off)").DeprecatedFlag("metrics-addr")
	cli.LogFlags(s, &c.logLevel, &c.logFormat)
}

func runWorker(ctx context.Context, e *cli.Env, args []string) error {
	var c workerCmd
	s := e.Settings("dragonfly worker", workerUsage)
	c.register(s)
	if err := s.Parse(args, e.Getenv, e.Dir); err != nil {
		return err
	}
	if len(s.Args()) > 0 {
		return cli.UnexpectedArgs(s.Args())
	}
	f, target, token, tlsFiles, serverName, metrics := &c.f, c.target, c.token, c.tlsFiles, c.serverName, c.metrics
	if target == "" {
		return cli.Usage("no coordinator address: set DRAGONFLY_COORDINATOR_ADDR or --coordinator-addr")
	}
	if err := f.validate(); err != nil {
		return err
	}
	log, err := cli.NewLogger(e.Stderr, c.logLevel, c.logFormat)
	if err != nil {
		return err
	}
	s.LogConfig(log)
	f.sizes.Log(log, f.limits)
	if !tlsFiles.Enabled() {
		log.Warn("plaintext gRPC to the coordinator: set DRAGONFLY_TLS_CA to use TLS (the fleet token is sent in plaintext only to a loopback coordinator or with DRAGONFLY_FLEET_INSECURE)")
	}
	cfg := f.config(log)
	cfg.Target, cfg.Token, cfg.TLS, cfg.ServerName, cfg.FleetInsecure = target, token, tlsFiles, serverName, c.fleetInsecure
	wm := newWorkerMetrics(f.threads)
	cfg.Observer = wm
	web := httpserve.NewGroup(ctx)
	defer web.Stop()
	if metrics != "" {
		if _, err := web.Listen(metrics, wm.handler()); err != nil {
			return err
		}
	}
	log.Info("worker started", "coordinator", target, "threads", f.threads, "allowed_hosts", f.allowedHosts, "version", version.String())
	err = worker.Run(ctx, cfg)
	log.Info("worker stopped")
	return err
}
