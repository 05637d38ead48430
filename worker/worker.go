// Package worker is a fleet worker: it connects to the coordinator, receives
// distribution tasks, downloads and scans them with the scan engine, and
// streams the results back. It holds no secrets.
//
// Shape: Run is the loop (reconnect forever with capped, jittered backoff,
// reset after a healthy session); a session serves one stream until it breaks,
// the coordinator drains it, or the worker stops.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
	"google.golang.org/grpc"
)

// Config bounds a worker.
type Config struct {
	// Target is the coordinator's gRPC address (DRAGONFLY_COORDINATOR_ADDR),
	// in grpc.NewClient syntax. Required.
	Target string
	// DialOptions carry transport credentials and the fleet token. Required
	// to include transport credentials.
	DialOptions []grpc.DialOption
	// WorkerID identifies the worker (default: host name + random suffix).
	WorkerID string
	// Host is the host name reported to the coordinator (default: os.Hostname).
	Host string
	// Version is this build's version.
	Version string
	// Threads is the number of scanner threads and of tasks run at once
	// (DRAGONFLY_THREADS). Default: available CPUs.
	Threads int
	// Limits bound each task (DRAGONFLY_MAX_*). Zero fields take the defaults.
	Limits limit.Limits
	// Fetch configures downloads: allowed hosts (DRAGONFLY_ALLOWED_HOSTS),
	// timeouts, retries. Its MaxSize is taken from Limits.Download.
	Fetch fetch.Config
	// Grace bounds the wait for started tasks when stopping
	// (DRAGONFLY_DRAIN_GRACE). Default 25 s.
	Grace time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay. Defaults 500 ms, 30 s.
	BackoffMin, BackoffMax time.Duration
	// Logger receives the worker's logs. Default: discard.
	Logger *slog.Logger
	// Engine scans distributions. Default: a new engine with Threads threads.
	Engine *scan.Engine
	// Observer receives events for metrics. Optional.
	Observer Observer
	// Instant answers every task at once with a clean result, without
	// downloading or scanning. For measuring the coordinator only.
	Instant bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Target == "" {
		return c, errors.New("worker: no coordinator address (DRAGONFLY_COORDINATOR_ADDR)")
	}
	if c.Threads <= 0 {
		c.Threads = runtime.NumCPU()
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.WorkerID == "" {
		c.WorkerID = fmt.Sprintf("%s-%06x", c.Host, rand.Uint32()&0xffffff)
	}
	d := limit.Defaults()
	if c.Limits.Download <= 0 {
		c.Limits.Download = d.Download
	}
	if c.Limits.Distributions <= 0 {
		c.Limits.Distributions = d.Distributions
	}
	c.Fetch.MaxSize = c.Limits.Download
	if c.Grace <= 0 {
		c.Grace = 25 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 500 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c, nil
}

// Worker runs sessions with a coordinator.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	client  fleetv1.FleetServiceClient
	engine  *scan.Engine
	fetcher *fetch.Fetcher
	obs     Observer
}

// Run connects to the coordinator and serves tasks until ctx ends; then it
// drains (hands back unstarted tasks, finishes started ones within Grace) and
// returns nil.
func Run(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(cfg.Target, cfg.DialOptions...)
	if err != nil {
		return fmt.Errorf("worker: coordinator address %q: %w", cfg.Target, err)
	}
	defer conn.Close()
	engine := cfg.Engine
	if engine == nil {
		engine = scan.New(scan.Config{Threads: cfg.Threads, Limits: cfg.Limits, OnFile: cfg.Observer.FileScanned})
		defer engine.Close()
	}
	w := &Worker{
		cfg: cfg, log: cfg.Logger.With("worker_id", cfg.WorkerID),
		client: fleetv1.NewFleetServiceClient(conn), engine: engine,
		fetcher: fetch.New(cfg.Fetch), obs: cfg.Observer,
	}
	return w.loop(ctx)
}

// healthy is how long a session must last for the backoff to reset.
const healthy = 10 * time.Second

func (w *Worker) loop(ctx context.Context) error {
	delay := w.cfg.BackoffMin
	for {
		start := time.Now()
		err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > healthy {
			delay = w.cfg.BackoffMin
		}
		wait := delay/2 + rand.N(delay/2+1)
		w.log.Warn("coordinator session ended; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, w.cfg.BackoffMax)
	}
}
