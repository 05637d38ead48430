package main

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/dragonfly-fleet/fleet/fleetauth"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/httpserve"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// workerFlags are the settings of a worker (also used by local): its
// Config (Limits resolved by validate), and how the limits were read.
type workerFlags struct {
	cfg         worker.Config
	limitSet    limitSettings
	sizes       limit.Resolution
	memoryLimit int64
	matchCache  int64
}

func (f *workerFlags) register(s *cli.Settings) {
	c := &f.cfg
	s.Var(cli.Int(&c.Threads, worker.DefaultThreads()), "DRAGONFLY_THREADS", "scanner threads (and tasks scanned at once)").DefaultText("number of CPUs available")
	limitFlags(s, &f.limitSet)
	s.Var(cli.List(&c.Fetch.AllowedHosts, []string{"files.pythonhosted.org"}), "DRAGONFLY_ALLOWED_HOSTS", "where distributions may be downloaded from, comma-separated: a bare host (https on 443, public addresses only), host:port (https on that port, public addresses only), an origin (http://devapi:8000: exactly that, any address), or * (any host, https on 443, public addresses only)")
	downloadFlags(s, &c.Fetch)
	s.Var(cli.Duration(&c.Grace, worker.DefaultGrace), "DRAGONFLY_DRAIN_GRACE", "on SIGTERM, how long started tasks may run")
	s.Var(cli.Duration(&c.MaxTaskTime, worker.DefaultMaxTaskTime), "DRAGONFLY_MAX_TASK_TIME", "longest a task (download, unpacking, scan) may run; past it the distribution fails as the limit \"time\" (keep it below the coordinator's 15 min job age)")
	s.Var(cli.SizeOrOff(&f.matchCache, scan.DefaultMatchCacheSize), "DRAGONFLY_MATCH_CACHE_SIZE", "memory for the match cache: matches of files already scanned, by content and rules, so an sdist and its wheel or a release's unchanged files are not scanned twice (0: off)")
	s.Var(cli.Size(&f.memoryLimit, 0), "DRAGONFLY_MEMORY_LIMIT", "soft memory limit for the Go runtime (as GOMEMLIMIT), e.g. 384MiB").DefaultText("none")
	s.Var(cli.String(&c.WorkerID, ""), "DRAGONFLY_WORKER_ID", "worker id (default: host name + random suffix)")
}

func (f *workerFlags) validate() error {
	if f.cfg.Threads <= 0 {
		return atLeast("DRAGONFLY_THREADS", f.cfg.Threads, 1)
	}
	if f.cfg.Threads > worker.MaxThreads {
		return atMost("DRAGONFLY_THREADS", f.cfg.Threads, worker.MaxThreads)
	}
	if len(f.cfg.Fetch.AllowedHosts) == 0 {
		return cli.Usage("DRAGONFLY_ALLOWED_HOSTS: empty")
	}
	if _, err := fetch.ParseAllowedHosts(f.cfg.Fetch.AllowedHosts); err != nil {
		return cli.Usage("DRAGONFLY_ALLOWED_HOSTS: %v", err)
	}
	if f.cfg.MaxTaskTime <= 0 {
		return cli.Usage("DRAGONFLY_MAX_TASK_TIME=%s: must be positive", f.cfg.MaxTaskTime)
	}
	if err := checkDownloads(&f.cfg.Fetch); err != nil {
		return err
	}
	if err := positive(durationSetting{"DRAGONFLY_DRAIN_GRACE", f.cfg.Grace}); err != nil {
		return err
	}
	var err error
	f.cfg.Limits, f.sizes, err = f.limitSet.resolve()
	return err
}

// config builds the worker configuration (without target and dial options)
// and sets the Go runtime's memory limit.
func (f *workerFlags) config(log *slog.Logger) worker.Config {
	if f.memoryLimit > 0 {
		debug.SetMemoryLimit(f.memoryLimit)
	}
	cfg := f.cfg
	cfg.Version, cfg.Logger, cfg.MatchCacheSize, cfg.NoMatchCache, cfg.Fetch.UserAgent = version.String(), log, f.matchCache, f.matchCache <= 0, version.UserAgent()
	return cfg
}

// workerCmd are the settings of dragonfly worker.
type workerCmd struct {
	f                   workerFlags
	metrics             string
	logLevel, logFormat string
}

func (c *workerCmd) register(s *cli.Settings) {
	w := &c.f.cfg
	s.Var(cli.String(&w.Target, ""), "DRAGONFLY_COORDINATOR_ADDR", "the coordinator's gRPC address, host:port (required)").DeprecatedFlag("coordinator")
	s.Var(cli.String(&w.Token, ""), "DRAGONFLY_FLEET_TOKEN", "the fleet's shared secret").MarkSecret()
	fleetInsecureFlag(s, &w.FleetInsecure)
	tlsFlags(s, &w.TLS)
	s.Var(cli.String(&w.ServerName, ""), "DRAGONFLY_TLS_SERVER_NAME", "name to verify in the coordinator's certificate (default: the address's host)")
	c.f.register(s)
	s.Var(cli.String(&c.metrics, ""), "DRAGONFLY_WORKER_METRICS_ADDR", "address for the worker's /metrics, /healthz (liveness) and /readyz (connected with rules ready) (empty: off)").DeprecatedFlag("metrics-addr")
	cli.LogFlags(s, &c.logLevel, &c.logFormat)
}

func runWorker(ctx context.Context, e *cli.Env, c *workerCmd, s *cli.Settings) error {
	f := &c.f
	if f.cfg.Target == "" {
		return cli.Usage("no coordinator address: set DRAGONFLY_COORDINATOR_ADDR or --coordinator-addr")
	}
	if n := len(f.cfg.Token); n > 0 && n < fleetauth.MinTokenBytes {
		// The coordinator's own token has at least as many: this one can
		// only be refused, on every connection.
		return cli.Usage("DRAGONFLY_FLEET_TOKEN: %d bytes, and a coordinator takes only tokens of at least %d (e.g. openssl rand -hex 32)", n, fleetauth.MinTokenBytes)
	}
	if err := fleetauth.CheckTokenText(f.cfg.Token); err != nil {
		// It could not be sent: every connection would fail at once.
		return cli.Usage("%v", err)
	}
	if err := f.validate(); err != nil {
		return err
	}
	log, err := startLog(e, s, c.logLevel, c.logFormat)
	if err != nil {
		return err
	}
	f.sizes.Log(log, f.cfg.Limits)
	if !f.cfg.TLS.Enabled() {
		log.Warn("plaintext gRPC to the coordinator: set DRAGONFLY_TLS_CA to use TLS (the fleet token is sent in plaintext only to a loopback coordinator or with DRAGONFLY_FLEET_INSECURE)")
	}
	cfg := f.config(log)
	wm := newWorkerMetrics(cfg.Threads)
	cfg.Observer = wm
	web := httpserve.NewGroup(ctx)
	defer web.Stop()
	if c.metrics != "" {
		if _, err := web.Listen(c.metrics, wm.Handler()); err != nil {
			return err
		}
	}
	log.Info("worker started", "coordinator", cfg.Target, "threads", cfg.Threads, "allowed_hosts", cfg.Fetch.AllowedHosts, "version", version.String())
	err = worker.Run(ctx, cfg)
	log.Info("worker stopped")
	return err
}
