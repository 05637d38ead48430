// Package worker is a fleet worker: it connects to the coordinator, receives
// distribution tasks, downloads and scans them with the scan engine, and
// streams the results back. It holds no secrets.
//
// Shape: Run is the loop (reconnect forever with capped, jittered backoff,
// reset after a healthy session); a session serves one stream until it breaks,
// the coordinator drains it, or the worker stops.
//
// The coordinator is not trusted with the worker's resources: every value it
// sends that sizes or paces the worker is bounded here.
//   - Time of a task: at most Config.MaxTaskTime from its arrival; then its
//     context ends (the download stops at once, the scan before its next
//     file: a YARA scan in flight ends within the scan timeout) and it fails
//     as a broken limit named "time". A task whose bound passes while it
//     waits for a slot is handed back, not failed.
//   - Heartbeat interval (Welcome): kept within [MinHeartbeat, MaxHeartbeat];
//     none (zero or negative): 5 s. A coordinator silent for 3 intervals,
//     or that leaves one of the worker's sends blocked for 3 intervals
//     (it stopped reading), is dropped, also while the worker drains.
//   - Message limit (Welcome.max_request_bytes): kept within
//     [MinRequestBytes, protocol.MaxRequestBytes]; none (0):
//     protocol.LegacyRequestBytes.
//   - Tasks held: at most Threads + Config.MaxPrefetch (queued and running);
//     tasks beyond are handed back at once. Downloads: one per running task,
//     and one ahead for each of the first Threads queued tasks (so a freed
//     slot scans at once): at most 2 x Threads distributions in memory, however
//     many tasks the coordinator assigns.
//   - Rule sets: one compile at a time and one set waiting; a newer set
//     replaces the waiting one, which is reported evicted. At most
//     keepRules compiled sets held: past that the least recently used is
//     evicted, one no queued task names first, else one that is (its
//     queued tasks are handed back).
//   - Messages: checked before they are decoded (checkResponse): an Assign
//     of more than 65,536 tasks, or a Welcome, Heartbeat or Drain over
//     64 KiB, ends the session (decoded, one of 33 MiB cost up to 500 MiB).
//     A task's URL over protocol.MaxURLBytes fails the task at once; a
//     queued task holds its id, URL, rules hash and job name and version
//     cut for the logs, nothing else of the message.
//   - Text: what the coordinator says (Welcome's ids, a status message) is
//     cut before it reaches a log line or Run's error.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/fleetauth"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/internal/logthrottle"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/retry"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
	"github.com/dragonfly-fleet/fleet/worker/verdict"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Defaults of Config.
const (
	// DefaultGrace is Config.Grace's default (DRAGONFLY_DRAIN_GRACE).
	DefaultGrace = 25 * time.Second
	// DefaultMaxTaskTime is Config.MaxTaskTime's default.
	DefaultMaxTaskTime = 10 * time.Minute
	// DefaultMaxPrefetch is Config.MaxPrefetch's default.
	DefaultMaxPrefetch = protocol.MaxPrefetch
)

// Bounds on the coordinator's Welcome.
const (
	// MinHeartbeat and MaxHeartbeat bound the heartbeat interval a
	// coordinator may set: a shorter one would make the worker busy-loop, a
	// longer one would keep it on a dead coordinator for hours.
	MinHeartbeat = time.Second
	MaxHeartbeat = 5 * time.Minute
	// MinRequestBytes is the smallest message limit a coordinator may set:
	// below it ordinary results would turn into message_size failures. The
	// largest is protocol.MaxRequestBytes.
	MinRequestBytes = 64 << 10
)

// MaxThreads is the most scanner threads a worker takes
// (DRAGONFLY_THREADS): each holds a libyara scanner and a task's bytes,
// and the worker's Hello claims them as slots.
const MaxThreads = 1024

// DefaultThreads is the default of Config.Threads (DRAGONFLY_THREADS): the
// CPUs available (runtime.GOMAXPROCS, which follows a container's CPU
// limit, as the reference client counts them), at most MaxThreads. Not
// cut, a machine of more CPUs (or GOMAXPROCS set above the bound) refused
// its own default at start.
func DefaultThreads() int { return min(runtime.GOMAXPROCS(0), MaxThreads) }

// Config bounds a worker.
type Config struct {
	// Target is the coordinator's gRPC address (DRAGONFLY_COORDINATOR_ADDR),
	// in grpc.NewClient syntax. Required.
	Target string
	// Token is the fleet token (DRAGONFLY_FLEET_TOKEN), sent with every call.
	// Without TLS it is sent only to a loopback coordinator, or with
	// FleetInsecure.
	Token string
	// TLS are the CA that verifies the coordinator and, for mutual TLS, this
	// worker's certificate and key. All empty: plaintext.
	TLS fleetauth.TLSFiles
	// ServerName is the name checked in the coordinator's certificate
	// (DRAGONFLY_TLS_SERVER_NAME). Default: the target's host.
	ServerName string
	// FleetInsecure allows sending the token over plaintext to a coordinator
	// that is not on loopback (DRAGONFLY_FLEET_INSECURE). Development only.
	FleetInsecure bool
	// DialOptions are extra options for the connection (an in-memory dialer,
	// say). Transport credentials, the token, message limits, keepalive and
	// reconnect backoff are set by the worker itself.
	DialOptions []grpc.DialOption
	// InMemory says Target is an in-process coordinator (dragonfly local):
	// plaintext without a token is expected there.
	InMemory bool
	// WorkerID identifies the worker (default: host name + random suffix).
	WorkerID string
	// Host is the host name reported to the coordinator (default: os.Hostname).
	Host string
	// Version is this build's version.
	Version string
	// Threads is the number of scanner threads and of tasks run at once
	// (DRAGONFLY_THREADS). Default DefaultThreads; at most MaxThreads.
	Threads int
	// Limits bound each task (DRAGONFLY_MAX_*). Zero fields take the defaults.
	Limits limit.Limits
	// Fetch configures downloads: allowed hosts (DRAGONFLY_ALLOWED_HOSTS),
	// timeouts, retries. Its MaxSize is taken from Limits.Download.
	Fetch fetch.Config
	// Grace bounds the wait for started tasks when stopping
	// (DRAGONFLY_DRAIN_GRACE). Default DefaultGrace.
	Grace time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay. Defaults 500 ms, 30 s.
	BackoffMin, BackoffMax time.Duration
	// Logger receives the worker's logs. Default: discard.
	Logger *slog.Logger
	// Engine scans distributions. Default: a new engine with Threads threads
	// and MatchCacheSize.
	Engine *scan.Engine
	// MatchCacheSize bounds the default engine's match cache, in bytes
	// (DRAGONFLY_MATCH_CACHE_SIZE; see scan.Config.MatchCacheSize): the
	// matches of files already scanned, by content and rules, so a
	// release's sdist and wheel, or a new release's unchanged files, are
	// not scanned again. Zero or negative: the engine's default (32 MiB).
	MatchCacheSize int64
	// NoMatchCache turns the default engine's match cache off
	// (DRAGONFLY_MATCH_CACHE_SIZE=0). Default false.
	NoMatchCache bool
	// Observer receives events for metrics. Optional.
	Observer Observer
	// AuthFailures is how many sessions in a row the coordinator may refuse as
	// Unauthenticated, PermissionDenied or FailedPrecondition (a wrong
	// token, TLS identity, mode or protocol version: a configuration error)
	// before Run gives up with an error, so the process exits non-zero
	// instead of looking healthy. Default 3.
	AuthFailures int
	// MaxTaskTime bounds the time of one task from its arrival: download,
	// unpacking and scan (DRAGONFLY_MAX_TASK_TIME). A task past it fails as
	// the limit "time". Not the task's lease deadline: the coordinator still
	// reports a job whose copies run past its lease, up to its MaxJobAge.
	// Default DefaultMaxTaskTime (10 min, below the coordinator's 15 min
	// MaxJobAge).
	MaxTaskTime time.Duration
	// MaxPrefetch bounds the tasks held beyond Threads, waiting for a slot:
	// tasks a coordinator assigns beyond Threads + MaxPrefetch are handed
	// back at once. The first Threads of them download while they wait. Default DefaultMaxPrefetch (protocol.MaxPrefetch, the
	// most a coordinator assigns beyond a session's slots).
	MaxPrefetch int

	// compileRules compiles a pushed rule set. Default rules.Compile
	// (the compiled rules in buffers of their own size, not the compiler's
	// 1 MiB per section: about 7 MiB less per set held); tests
	// hold compiles to observe their order.
	compileRules func(rules.Set) (*rules.Compiled, error)
}

func (c Config) withDefaults() (Config, error) {
	if c.Target == "" {
		return c, errors.New("worker: no coordinator address (DRAGONFLY_COORDINATOR_ADDR)")
	}
	c.Threads = bound.Or(c.Threads, DefaultThreads())
	if c.Threads > MaxThreads {
		return c, fmt.Errorf("worker: %d threads (DRAGONFLY_THREADS); at most %d", c.Threads, MaxThreads)
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.WorkerID == "" {
		c.WorkerID = fmt.Sprintf("%s-%06x", c.Host, rand.Uint32()&0xffffff)
	}
	d := limit.Defaults()
	c.Limits.Download = bound.Or(c.Limits.Download, d.Download)
	c.Limits.Distributions = bound.Or(c.Limits.Distributions, d.Distributions)
	c.Fetch.MaxSize = c.Limits.Download
	c.Grace = bound.Or(c.Grace, DefaultGrace)
	c.BackoffMin = bound.Or(c.BackoffMin, 500*time.Millisecond)
	c.BackoffMax = bound.Or(c.BackoffMax, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	c.AuthFailures = bound.Or(c.AuthFailures, 3)
	c.MaxTaskTime = bound.Or(c.MaxTaskTime, DefaultMaxTaskTime)
	c.MaxPrefetch = bound.Or(c.MaxPrefetch, DefaultMaxPrefetch)
	if c.compileRules == nil {
		c.compileRules = rules.Compile
	}
	return c, nil
}

// dialOptions builds the connection's options: transport security and the
// token (refused in plaintext to a coordinator not on loopback, unless
// FleetInsecure), message limits matched with the coordinator's (package
// protocol), keepalive, and a reconnect backoff capped like the session's.
func (c Config) dialOptions() ([]grpc.DialOption, error) {
	opts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(protocol.MaxResponseBytes),
			grpc.MaxCallSendMsgSize(protocol.MaxRequestBytes),
			// A coordinator message is checked before it is decoded
			// (checkResponse): within the receive limit, one could cost
			// hundreds of MiB decoded.
			grpc.ForceCodecV2(newResponseCodec()),
		),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// gRPC's own reconnect backoff grows to 120 s by default: a worker
		// cut off for a minute would then idle long after the coordinator is
		// back. Cap it like the session backoff.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 10 * time.Second},
			MinConnectTimeout: 10 * time.Second,
		}),
	}
	secure := c.TLS.Enabled()
	if secure {
		creds, err := fleetauth.ClientCredentials(c.TLS, c.ServerName)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(creds))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if c.Token != "" {
		if err := fleetauth.CheckTokenText(c.Token); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		plainOK := secure || c.FleetInsecure || c.InMemory || loopbackTarget(c.Target)
		if !plainOK {
			return nil, fmt.Errorf("worker: the fleet token would cross the network in plaintext to %s: set DRAGONFLY_TLS_CA (TLS), or DRAGONFLY_FLEET_INSECURE=true for a development network", c.Target)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(fleetauth.Token{Value: c.Token, AllowInsecure: !secure}))
	}
	return append(opts, c.DialOptions...), nil
}

// loopbackTarget reports whether a gRPC target names a loopback host
// ("localhost", 127.0.0.0/8, ::1), with or without a dns:/// scheme.
func loopbackTarget(target string) bool {
	t := target
	if i := strings.Index(t, ":///"); i >= 0 {
		t = t[i+4:]
	}
	host := t
	if h, _, err := net.SplitHostPort(t); err == nil {
		host = h
	}
	return fleetauth.LoopbackHost(strings.Trim(host, "[]"))
}

// Worker runs sessions with a coordinator.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	client  fleetv1.FleetServiceClient
	verdict *verdict.Scanner
	obs     Observer
	// logs throttles the lines a coordinator's messages cause (throttle.go).
	logs *logthrottle.Throttle
}

// Run connects to the coordinator and serves tasks until ctx ends; then it
// drains (hands back unstarted tasks, finishes started ones within Grace) and
// returns nil.
func Run(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	opts, err := cfg.dialOptions()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(cfg.Target, opts...)
	if err != nil {
		return fmt.Errorf("worker: coordinator address %q: %w", cfg.Target, err)
	}
	defer conn.Close()
	engine := cfg.Engine
	if engine == nil {
		// Match data is not part of a verdict: keep one byte per match, so
		// the match-memory bound counts matches, not their text. Of the
		// matched files only the top one is reported, and only it is kept.
		o := cfg.Observer
		engine = scan.New(scan.Config{Threads: cfg.Threads, Limits: cfg.Limits, MaxMatchData: 1, MatchCacheSize: cfg.MatchCacheSize, NoMatchCache: cfg.NoMatchCache, TopFileOnly: true,
			OnFile: o.FileScanned, OnSkip: o.FileSkipped, OnCacheHit: o.MatchCacheHit, OnSubset: o.SubsetCompiled})
		defer engine.Close()
	}
	w, err := newWorker(cfg, fleetv1.NewFleetServiceClient(conn), engine)
	if err != nil {
		return err
	}
	// Every download has ended when loop returns (a session waits for its
	// tasks and downloads ahead): its keep-alive connections, and their
	// goroutines, go with Run instead of lingering for the idle timeout.
	defer w.verdict.Fetcher.CloseIdleConnections()
	return w.loop(ctx)
}

// newWorker is the worker of cfg (defaults applied) that talks to the
// coordinator through client and scans with engine.
func newWorker(cfg Config, client fleetv1.FleetServiceClient, engine *scan.Engine) (*Worker, error) {
	fetcher, err := fetch.New(cfg.Fetch)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return &Worker{
		cfg: cfg, log: cfg.Logger.With("worker_id", cfg.WorkerID),
		client:  client,
		verdict: &verdict.Scanner{Engine: engine, Fetcher: fetcher, Limits: cfg.Limits},
		obs:     cfg.Observer,
		logs:    logthrottle.New(coordLogEvery, maxLogKinds),
	}, nil
}

// configError reports whether the coordinator refused the session as a
// configuration error of this worker: Unauthenticated (token),
// PermissionDenied (plaintext token, mode) or FailedPrecondition (a protocol
// version the coordinator does not speak: a release more than one apart,
// which no retry mends). Load and misbehaviour refusals are
// ResourceExhausted or Unavailable and are retried.
func configError(err error) bool {
	if err == nil {
		return false
	}
	st, ok := status.FromError(err)
	if !ok {
		var se interface{ GRPCStatus() *status.Status }
		if !errors.As(err, &se) {
			return false
		}
		st = se.GRPCStatus()
	}
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition:
		return true
	}
	return false
}

// boundedError is err with its text cut to protocol.MaxTextBytes; it
// unwraps to err (configError reads its status).
type boundedError struct{ err error }

func (e boundedError) Error() string { return clip.Error(e.err, protocol.MaxTextBytes) }
func (e boundedError) Unwrap() error { return e.err }

// healthy is how long a session must last for the backoff to reset.
const healthy = 10 * time.Second

func (w *Worker) loop(ctx context.Context) error {
	b := retry.Backoff{Policy: retry.Policy{Base: w.cfg.BackoffMin, Max: w.cfg.BackoffMax}}
	refused := 0
	for {
		start := time.Now()
		err := w.session(ctx)
		if err != nil {
			// Its text may be the coordinator's (a status message of up
			// to 16 MiB): logged and returned cut.
			err = boundedError{err}
		}
		w.obs.Connection(false, false)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > healthy {
			b.Reset()
		}
		if configError(err) {
			refused++
			if refused >= w.cfg.AuthFailures {
				w.log.Error("the coordinator refused this worker: a configuration error (fleet token, TLS identity, worker mode or protocol version); giving up",
					"tries", refused, "err", err)
				return fmt.Errorf("coordinator refused the worker %d times: %w", refused, err)
			}
		} else {
			refused = 0
		}
		wait := b.Next(0)
		w.log.Warn("coordinator session ended; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		if retry.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}
