package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/fleetauth"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/httpserve"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker"
)

// coordinatorFlags are the settings of a coordinator (also used by local):
// the Configs of the API client, the coordinator and its outbox, and its
// HTTP side.
type coordinatorFlags struct {
	api                 mainframe.Config
	coord               coordinator.Config
	outbox              outbox.Config
	metricsAddr         string
	pprof               bool
	pprofAddr           string
	statusToken         string
	logLevel, logFormat string
	// autoscale shapes dragonfly_fleet_desired_workers, the signal the
	// Kubernetes autoscaler (KEDA) scales the worker Deployment on.
	autoscaleMax, autoscaleSlots int
}

func (f *coordinatorFlags) register(s *cli.Settings) {
	c := &f.coord
	apiFlags(s, &f.api)
	s.Var(cli.Int(&c.BulkSize, coordinator.DefaultBulkSize), "DRAGONFLY_BULK_SIZE", "most jobs leased per request")
	s.Var(cli.Duration(&c.LoadDuration, coordinator.DefaultLoadDuration), "DRAGONFLY_LOAD_DURATION", "wait after an empty queue or an API error (seconds or a duration)")
	s.Var(cli.Duration(&c.LeaseTimeout, coordinator.DefaultLeaseTimeout), "DRAGONFLY_LEASE_TIMEOUT", "the API's lease length (its JOB_TIMEOUT)")
	s.Var(cli.Int(&c.Prefetch, coordinator.DefaultPrefetch), "DRAGONFLY_PREFETCH", "tasks a worker may hold beyond its scanner slots (at most 16, what a worker holds); the next one per slot downloads while it waits")
	s.Var(cli.Duration(&c.HeartbeatInterval, coordinator.DefaultHeartbeatInterval), "DRAGONFLY_HEARTBEAT_INTERVAL", "heartbeat interval (1s to 5m, what a worker accepts); a worker silent for 3 intervals is dropped and its tasks re-dispatched").DeprecatedFlag("heartbeat")
	s.Var(cli.Duration(&c.DrainTimeout, coordinator.DefaultDrainTimeout), "DRAGONFLY_DRAIN_TIMEOUT", "on shutdown, how long to wait for jobs in flight")
	s.Var(cli.String(&f.outbox.Path, ""), "DRAGONFLY_OUTBOX_PATH", "file keeping unsent reports across restarts (bbolt); empty: memory only").DeprecatedFlag("outbox")
	s.Var(cli.Int(&f.outbox.Capacity, outbox.DefaultCapacity), "DRAGONFLY_OUTBOX_SIZE", "unsent reports above which leasing pauses")
	s.Var(cli.Int(&c.MaxDistributions, coordinator.DefaultMaxDistributions), "DRAGONFLY_MAX_DISTRIBUTIONS", "maximum distributions of one job (more fails the job)")
	s.Var(cli.String(&f.metricsAddr, ":"+coordinator.DefaultMetricsPort), "DRAGONFLY_METRICS_ADDR", "address for /metrics, /status, /status.json, /healthz and /readyz (empty: off)")
	s.Var(cli.String(&f.statusToken, ""), "DRAGONFLY_STATUS_TOKEN", "bearer token /status and /status.json require (empty: none; /metrics never needs one and carries no secret)").MarkSecret()
	s.Var(cli.Int(&c.MaxWorkerSlots, coordinator.DefaultMaxWorkerSlots), "DRAGONFLY_MAX_WORKER_SLOTS", "most scanner slots one worker may claim (larger claims are capped)")
	s.Var(cli.Share(&c.VerifyRate, coordinator.DefaultVerifyRate), "DRAGONFLY_VERIFY_RATE", "share of tasks scanned again by a second worker and compared before reporting (0: no spot checks)")
	s.Var(cli.Int(&f.autoscaleMax, 100), "DRAGONFLY_AUTOSCALE_MAX_WORKERS", "cap of dragonfly_fleet_desired_workers, the workers the backlog needs")
	s.Var(cli.Int(&f.autoscaleSlots, 2), "DRAGONFLY_AUTOSCALE_WORKER_SLOTS", "scanner slots per worker that dragonfly_fleet_desired_workers assumes while no worker is connected")
	s.Var(cli.Bool(&f.pprof, false), "DRAGONFLY_PPROF", "serve Go profiling under /debug/pprof/ on --pprof-addr")
	s.Var(cli.String(&f.pprofAddr, "127.0.0.1:6060"), "DRAGONFLY_PPROF_ADDR", "address for /debug/pprof/ when --pprof is on (loopback by default: profiles are for operators)")
	cli.LogFlags(s, &f.logLevel, &f.logFormat)
}

// minLoadDuration is the wait DRAGONFLY_LOAD_DURATION=0 comes to.
const minLoadDuration = time.Second

func (f *coordinatorFlags) validate() error {
	for _, v := range []struct {
		env string
		n   int
		min int
	}{
		{"DRAGONFLY_BULK_SIZE", f.coord.BulkSize, 1}, {"DRAGONFLY_OUTBOX_SIZE", f.outbox.Capacity, 1},
		{"DRAGONFLY_MAX_DISTRIBUTIONS", f.coord.MaxDistributions, 1}, {"DRAGONFLY_PREFETCH", f.coord.Prefetch, 0},
		{"DRAGONFLY_MAX_WORKER_SLOTS", f.coord.MaxWorkerSlots, 1}, {"DRAGONFLY_AUTOSCALE_MAX_WORKERS", f.autoscaleMax, 1},
		{"DRAGONFLY_AUTOSCALE_WORKER_SLOTS", f.autoscaleSlots, 1},
	} {
		if v.n < v.min {
			return atLeast(v.env, v.n, v.min)
		}
	}
	if f.coord.MaxWorkerSlots > coordinator.MaxWorkerSlotsBound {
		return atMost("DRAGONFLY_MAX_WORKER_SLOTS", f.coord.MaxWorkerSlots, coordinator.MaxWorkerSlotsBound)
	}
	if f.pprof && strings.TrimSpace(f.pprofAddr) == "" {
		// net.Listen reads "" as every interface on a random port: the
		// profiles, loopback by default, would be served to the network.
		return cli.Usage("DRAGONFLY_PPROF_ADDR: empty: set an address (127.0.0.1:6060 by default) or leave DRAGONFLY_PPROF off")
	}
	if f.coord.LoadDuration == 0 {
		// The reference client reads 0 as no wait (it polls again at
		// once): a drop-in configuration may say so. Polled in a loop, an
		// empty queue or an API in trouble would be asked as fast as it
		// answers; the coordinator waits minLoadDuration, as its effective
		// configuration says.
		f.coord.LoadDuration = minLoadDuration
	}
	if err := positive(
		durationSetting{"DRAGONFLY_API_TIMEOUT", f.api.Timeout},
		durationSetting{"DRAGONFLY_LOAD_DURATION", f.coord.LoadDuration},
		durationSetting{"DRAGONFLY_DRAIN_TIMEOUT", f.coord.DrainTimeout}); err != nil {
		return err
	}
	if hb := f.coord.HeartbeatInterval; hb < worker.MinHeartbeat || hb > worker.MaxHeartbeat {
		// A worker clamps the interval into these bounds, and the two
		// sides then disagree on when a session is silent: below 1/3 s
		// every idle session was dropped as silent, above 15 min every
		// worker left an idle coordinator as silent, and from 3,074,457,346 s
		// the silence (3 intervals) wrapped negative: every Hello timed out
		// at once and no worker could connect.
		return cli.Usage("DRAGONFLY_HEARTBEAT_INTERVAL=%s: between %s and %s, the interval a worker accepts", cli.FormatDuration(hb), cli.FormatDuration(worker.MinHeartbeat), cli.FormatDuration(worker.MaxHeartbeat))
	}
	if lt := f.coord.LeaseTimeout; lt < coordinator.MinLeaseTimeout || lt > coordinator.MaxLeaseTimeout {
		return cli.Usage("DRAGONFLY_LEASE_TIMEOUT=%s: between %s and %s (the API's JOB_TIMEOUT; 2m by default)", cli.FormatDuration(lt), cli.FormatDuration(coordinator.MinLeaseTimeout), cli.FormatDuration(coordinator.MaxLeaseTimeout))
	}
	if f.coord.Prefetch > protocol.MaxPrefetch {
		return cli.Usage("DRAGONFLY_PREFETCH=%d: at most %d (a worker hands back tasks beyond its threads plus %d)", f.coord.Prefetch, protocol.MaxPrefetch, protocol.MaxPrefetch)
	}
	return nil
}

// newCoordinator builds a coordinator, its API client and its outbox from
// the flags.
func (f *coordinatorFlags) newCoordinator(log *slog.Logger, obs *coordinatorMetrics) (*coordinator.Coordinator, *outbox.Outbox, error) {
	cred, err := resolveAPI(&f.api)
	if err != nil {
		return nil, nil, err
	}
	f.api.Logger, f.api.UserAgent, f.api.Observer = log, version.UserAgent(), obs.APIObserver()
	api, err := mainframe.New(f.api)
	if err != nil {
		return nil, nil, cli.Usage("%v", err)
	}
	// Logged once New has checked it: a URL it refuses may hold credentials.
	log.Info("dragonfly api", "base_url", api.BaseURL(), "credentials", cred.String())
	for _, env := range plaintextCredentialURLs(f.api, cred) {
		log.Warn("the API credentials cross the network in plaintext: "+env+" is an http:// URL of a host that is not loopback; use https (http only for a development API)", "setting", env)
	}
	ob, err := outbox.Open(f.outbox)
	if err != nil {
		return nil, nil, err
	}
	if n := ob.Len(); n > 0 {
		log.Info("outbox holds reports from an earlier run; sending them", "reports", n, "path", f.outbox.Path)
	}
	cfg := f.coord
	cfg.API, cfg.Outbox, cfg.Version, cfg.Logger, cfg.Observer = api, ob, version.String(), log, obs
	c, err := coordinator.New(cfg)
	if err != nil {
		ob.Close()
		return nil, nil, err
	}
	return c, ob, nil
}

// coordinatorCmd are the settings of dragonfly coordinator.
type coordinatorCmd struct {
	f             coordinatorFlags
	listen        string
	token         string
	insecure      bool
	fleetInsecure bool
	maxWorkers    int
	maxPerIdent   int
	tlsFiles      fleetauth.TLSFiles
}

func (c *coordinatorCmd) register(s *cli.Settings) {
	c.f.register(s)
	s.Var(cli.String(&c.listen, ":50051"), "DRAGONFLY_LISTEN_ADDR", "gRPC address workers connect to").DeprecatedFlag("listen")
	s.Var(cli.String(&c.token, ""), "DRAGONFLY_FLEET_TOKEN", "shared secret workers must present (required unless --insecure)").MarkSecret()
	s.Var(cli.Bool(&c.insecure, false), "DRAGONFLY_INSECURE", "accept workers without a fleet token (development only; loopback listen address only)")
	fleetInsecureFlag(s, &c.fleetInsecure)
	s.Var(cli.Int(&c.maxWorkers, coordinator.DefaultMaxWorkers), "DRAGONFLY_MAX_WORKERS", "most worker connections and sessions served at once")
	s.Var(cli.Int(&c.maxPerIdent, coordinator.DefaultMaxSessionsPerIdentity), "DRAGONFLY_MAX_SESSIONS_PER_IDENTITY", "most sessions of one worker identity (certificate subject, else worker id) at once")
	tlsFlags(s, &c.tlsFiles)
}

func runCoordinator(ctx context.Context, e *cli.Env, cc *coordinatorCmd, s *cli.Settings) error {
	f, listen, token, insecure, tlsFiles := &cc.f, cc.listen, cc.token, cc.insecure, cc.tlsFiles
	if err := f.validate(); err != nil {
		return err
	}
	log, err := startLog(e, s, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if strings.TrimSpace(listen) == "" {
		// net.Listen reads "" as a random port no worker knows.
		return cli.Usage("DRAGONFLY_LISTEN_ADDR: empty: set the address workers connect to (:50051 by default)")
	}
	if token == "" && !insecure {
		return cli.Usage("no fleet token: set DRAGONFLY_FLEET_TOKEN (or --insecure to accept any worker, for development)")
	}
	if cc.maxWorkers <= 0 {
		return atLeast("DRAGONFLY_MAX_WORKERS", cc.maxWorkers, 1)
	}
	if cc.maxPerIdent <= 0 {
		return atLeast("DRAGONFLY_MAX_SESSIONS_PER_IDENTITY", cc.maxPerIdent, 1)
	}
	if token == "" {
		log.Warn("insecure: workers are accepted without a fleet token (loopback only)")
	}
	if !tlsFiles.Enabled() {
		log.Warn("plaintext gRPC: set DRAGONFLY_TLS_CERT and DRAGONFLY_TLS_KEY; a fleet token from a non-loopback worker is refused unless DRAGONFLY_FLEET_INSECURE is set")
	}

	obs := newCoordinatorMetrics(f)
	c, ob, err := f.newCoordinator(log, obs)
	if err != nil {
		return err
	}
	defer closeOutbox(ob, log)
	srv, err := coordinator.NewServer(c, coordinator.ServerConfig{
		Token: token, Insecure: insecure, FleetInsecure: cc.fleetInsecure, TLS: tlsFiles,
		MaxWorkers: cc.maxWorkers, MaxSessionsPerIdentity: cc.maxPerIdent, Logger: log,
	})
	if err != nil {
		return cli.Usage("%v", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	log.Info("coordinator started", "listen", ln.Addr().String(), "api", f.api.BaseURL, "version", version.String(), "metrics", f.metricsAddr)
	return serveCoordinator(ctx, srv, c, ln, f, obs, log)
}

// plaintextCredentialURLs names the URL settings through which cred
// would reach a host that is not loopback over plaintext HTTP: the base URL
// carries every credential (the Cloudflare Access service token, the Auth0
// access token), the Auth0 token URL the client secret and the password.
// The fleet token is refused over plaintext beyond loopback without
// DRAGONFLY_FLEET_INSECURE; these were sent without a word.
func plaintextCredentialURLs(cfg mainframe.Config, cred mainframe.Credentials) []string {
	var out []string
	if (cred.Cloudflare || cred.Auth0Grant != "") && plaintextRemote(cfg.BaseURL) {
		out = append(out, "DRAGONFLY_BASE_URL")
	}
	if cred.Auth0Grant != "" && plaintextRemote(cfg.Auth.TokenURL) {
		out = append(out, "DRAGONFLY_TOKEN_URL")
	}
	return out
}

// plaintextRemote reports whether raw is an http:// URL of a host that is
// not loopback ("localhost", 127.0.0.0/8, ::1).
func plaintextRemote(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "http") {
		return false
	}
	return !fleetauth.LoopbackHost(u.Hostname())
}

// closeOutbox closes the outbox, saying what did not reach its file.
func closeOutbox(ob *outbox.Outbox, log *slog.Logger) {
	if err := ob.Close(); err != nil {
		log.Error("outbox closed with changes not on disk", "err", err)
	}
}

// serveCoordinator runs the coordinator's gRPC server (which runs the
// coordinator and stops in order: drain, flush, gRPC) beside its HTTP
// servers (metrics, status and health of c; pprof when on), then stops
// those.
func serveCoordinator(ctx context.Context, srv *coordinator.Server, c *coordinator.Coordinator, ln net.Listener, f *coordinatorFlags, m *coordinatorMetrics, log *slog.Logger) error {
	web := httpserve.NewGroup(ctx)
	defer web.Stop()
	if f.metricsAddr != "" {
		addr, err := web.Listen(f.metricsAddr, m.handler(c, srv.Ready, f.statusToken))
		if err != nil {
			return fmt.Errorf("listen %s: %w", f.metricsAddr, err)
		}
		if tcp, ok := addr.(*net.TCPAddr); f.statusToken == "" && !(ok && tcp.IP.IsLoopback()) {
			// Unset is allowed (and an empty secrets file is unset): say
			// what it means where others can reach the port.
			log.Warn("the status page needs no token: /status and /status.json (jobs, workers, failures) are open to anyone who reaches this address; set DRAGONFLY_STATUS_TOKEN", "metrics_addr", addr.String())
		}
	}
	if f.pprof {
		addr, err := web.Listen(f.pprofAddr, httpserve.Pprof())
		if err != nil {
			return fmt.Errorf("listen %s: %w", f.pprofAddr, err)
		}
		log.Info("serving Go profiles", "pprof_addr", addr.String())
	}
	runErr := srv.Run(ctx, ln)
	if err := web.Stop(); err != nil && runErr == nil {
		runErr = err
	}
	log.Info("coordinator stopped")
	return runErr
}
