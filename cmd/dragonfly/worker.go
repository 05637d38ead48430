package main

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/dragonfly-fleet/fleet/fleetauth"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

func init() {
	register(command{name: "worker", summary: "download, unpack and scan distributions for a coordinator", run: runWorker})
}

const workerUsage = `usage: dragonfly worker [flags]

Connects to a coordinator, scans the distributions it assigns and streams the
results back. Holds no API credentials. Reconnects forever; on SIGTERM it hands
back unstarted tasks and finishes started ones within --drain-grace.`

// workerFlags are the settings of a worker (also used by local).
type workerFlags struct {
	threads      int
	limits       limit.Limits
	allowedHosts []string
	stall        time.Duration
	total        time.Duration
	grace        time.Duration
	memoryLimit  int64
	instant      bool
	workerID     string
}

func (f *workerFlags) register(s *settings) {
	s.Int(&f.threads, "threads", runtime.NumCPU(), "scanner threads (and tasks scanned at once)", "DRAGONFLY_THREADS")
	limitFlags(s, &f.limits)
	s.List(&f.allowedHosts, "allowed-hosts", []string{"files.pythonhosted.org"}, "hosts distributions may be downloaded from (comma-separated; port ignored)", "DRAGONFLY_ALLOWED_HOSTS")
	s.Duration(&f.stall, "download-stall-timeout", 30*time.Second, "abort a download with no progress for this long", "DRAGONFLY_DOWNLOAD_STALL_TIMEOUT")
	s.Duration(&f.total, "download-timeout", 90*time.Second, "cap on one distribution's download, retries included", "DRAGONFLY_DOWNLOAD_TIMEOUT")
	s.Duration(&f.grace, "drain-grace", 25*time.Second, "on SIGTERM, how long started tasks may run", "DRAGONFLY_DRAIN_GRACE")
	s.Size(&f.memoryLimit, "memory-limit", 1<<62, "soft memory limit for the Go runtime (GOMEMLIMIT), e.g. 384MiB", "DRAGONFLY_MEMORY_LIMIT")
	s.Bool(&f.instant, "bench-instant-results", false, "BENCHMARK ONLY: answer every task with a clean result without downloading or scanning", "DRAGONFLY_BENCH_INSTANT_RESULTS")
	s.String(&f.workerID, "worker-id", "", "worker id (default: host name + random suffix)", "DRAGONFLY_WORKER_ID")
}

func (f *workerFlags) validate() error {
	if f.threads <= 0 {
		return usageError("DRAGONFLY_THREADS=%d: must be positive", f.threads)
	}
	if len(f.allowedHosts) == 0 {
		return usageError("DRAGONFLY_ALLOWED_HOSTS: empty")
	}
	return validateLimits(f.limits)
}

// config builds the worker configuration (without target and dial options).
func (f *workerFlags) config(log *slog.Logger) worker.Config {
	if f.memoryLimit < 1<<62 {
		debug.SetMemoryLimit(f.memoryLimit)
	}
	return worker.Config{
		WorkerID: f.workerID, Version: version.String(), Threads: f.threads, Limits: f.limits,
		Fetch: fetch.Config{
			AllowedHosts: f.allowedHosts, StallTimeout: f.stall, TotalTimeout: f.total,
			UserAgent: version.UserAgent(),
		},
		Grace: f.grace, Logger: log, Instant: f.instant,
	}
}

func runWorker(ctx context.Context, e *env, args []string) error {
	var (
		f          workerFlags
		target     string
		token      string
		tlsFiles   fleetauth.TLSFiles
		serverName string
		metrics    string
		logLevel   string
		logFormat  string
	)
	s := newSettings("dragonfly worker", workerUsage)
	s.String(&target, "coordinator", "", "the coordinator's gRPC address, host:port (required)", "DRAGONFLY_COORDINATOR_ADDR")
	s.String(&token, "fleet-token", "", "the fleet's shared secret", "DRAGONFLY_FLEET_TOKEN")
	tlsFlags(s, &tlsFiles)
	s.String(&serverName, "tls-server-name", "", "name to verify in the coordinator's certificate (default: the address's host)", "DRAGONFLY_TLS_SERVER_NAME")
	f.register(s)
	s.String(&metrics, "metrics-addr", "", "address for the worker's /metrics (empty: off)", "DRAGONFLY_WORKER_METRICS_ADDR")
	logFlags(s, &logLevel, &logFormat)
	if err := s.Parse(args, e.getenv, e.dir); err != nil {
		return err
	}
	if target == "" {
		return usageError("no coordinator address: set DRAGONFLY_COORDINATOR_ADDR or --coordinator")
	}
	if err := f.validate(); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	opts := []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// gRPC's own reconnect backoff grows to 120 s by default: a worker
		// cut off for a minute would then idle long after the coordinator is
		// back. Cap it like the session backoff.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 10 * time.Second},
			MinConnectTimeout: 10 * time.Second,
		}),
	}
	if tlsFiles.Enabled() {
		creds, err := fleetauth.ClientCredentials(tlsFiles, serverName)
		if err != nil {
			return usageError("%v", err)
		}
		opts = append(opts, grpc.WithTransportCredentials(creds))
	} else {
		log.Warn("plaintext gRPC to the coordinator: the fleet token crosses the network unencrypted; set DRAGONFLY_TLS_CA to use TLS")
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(fleetauth.Token{Value: token, AllowInsecure: !tlsFiles.Enabled()}))
	}
	cfg := f.config(log)
	cfg.Target, cfg.DialOptions = target, opts
	wm := newWorkerMetrics(f.threads)
	cfg.Observer = wm
	if metrics != "" {
		ln, err := net.Listen("tcp", metrics)
		if err != nil {
			return err
		}
		httpCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		defer stop()
		done := make(chan error, 1)
		go func() { done <- serveHTTP(httpCtx, newHTTPServer(metrics, wm.handler(), false), ln) }()
		defer func() { stop(); <-done }()
	}
	log.Info("worker started", "coordinator", target, "threads", f.threads, "allowed_hosts", f.allowedHosts, "version", version.String())
	err = worker.Run(ctx, cfg)
	log.Info("worker stopped")
	return err
}
