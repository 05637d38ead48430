// Command coordbench measures the coordinator's capacity (bench/run rows 5a
// and 5b): jobs per second through lease -> dispatch -> result -> report, and
// the coordinator's CPU per job, with workers that answer at once. The
// workers are fake: child processes of coordbench itself (`coordbench worker
// -addr ADDR`) that announce Hello.mode = WORKER_MODE_NON_SCANNING and answer
// every task with a clean result without downloading or scanning anything;
// the coordinator is built with coordinator.Config{AcceptNonScanningWorkers:
// true} (no flag or variable of the product sets it) and served by
// coordinator.NewServer, insecure on loopback. Their CPU is not the
// coordinator's.
//
//	coordbench [-jobs 200000] [-workers 8] [-threads 2]        (5a: in-process fake API)
//	coordbench -api http://127.0.0.1:PORT -jobs N [-workers 8]   (5b: the API over HTTP,
//	                                                              e.g. dragonfly devapi --synthetic N)
//
// It starts the coordinator on a loopback port, starts the workers, waits
// until every worker is connected and ready for the rules, then lets the API
// hand out -jobs jobs and waits until every one is reported. With the
// in-process fake API each job has one distribution and leasing starts only
// once the workers are ready; over HTTP the coordinator leases from the
// start and the clock starts at the first lease. Timing and the process's
// CPU (getrusage RUSAGE_SELF: the coordinator, plus the fake API, whose work
// is a slice copy per lease and a counter per report, or the HTTP client) run
// from the first lease to the last report. It prints one JSON object:
//
//	{"jobs":N,"workers":8,"threads":2,"seconds":S,"jobs_per_s":J,
//	 "cpu_s":C,"cpu_us_per_job":U,"leases":L,"worker_cpu_s":W}
//
// worker_cpu_s is the workers' CPU over their whole life (from their
// rusage as children), for comparison.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
)

type config struct {
	jobs    int
	workers int
	threads int
	bulk    int
	api     string
	timeout time.Duration
	verbose bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerMain(os.Args[2:]))
	}
	var cfg config
	flag.IntVar(&cfg.jobs, "jobs", 200000, "jobs to lease, dispatch and report")
	flag.IntVar(&cfg.workers, "workers", 8, "worker processes")
	flag.IntVar(&cfg.threads, "threads", 2, "scanner slots per worker")
	flag.IntVar(&cfg.bulk, "bulk", 20, "jobs leased per request at most (the coordinator's BulkSize)")
	flag.StringVar(&cfg.api, "api", "", "the Dragonfly API's base URL (http://127.0.0.1:PORT: dragonfly devapi --synthetic N); empty: an in-process fake API")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.BoolVar(&cfg.verbose, "v", false, "show the coordinator's and workers' warnings on stderr")
	flag.Parse()
	if cfg.jobs <= 0 || cfg.workers <= 0 || cfg.threads <= 0 || cfg.bulk <= 0 {
		fmt.Fprintln(os.Stderr, "coordbench: -jobs, -workers, -threads and -bulk must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	res, err := run(ctx, cfg)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "coordbench:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "coordbench:", err)
		os.Exit(1)
	}
}

type result struct {
	Jobs        int     `json:"jobs"`
	Workers     int     `json:"workers"`
	Threads     int     `json:"threads"`
	Seconds     float64 `json:"seconds"`
	JobsPerS    float64 `json:"jobs_per_s"`
	CPUSeconds  float64 `json:"cpu_s"`
	CPUUsPerJob float64 `json:"cpu_us_per_job"`
	Leases      int64   `json:"leases"`
	WorkerCPU   float64 `json:"worker_cpu_s"`
}

// fakeAPI hands out jobs of one distribution each once started, and counts
// the reports.
type fakeAPI struct {
	start  chan struct{} // closed when leasing may begin
	total  int
	next   atomic.Int64 // jobs handed out
	leases atomic.Int64
}

func (f *fakeAPI) Lease(ctx context.Context, n int) ([]mainframe.Job, error) {
	select {
	case <-f.start:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.leases.Add(1)
	first := int(f.next.Add(int64(n))) - n
	if first >= f.total {
		return []mainframe.Job{}, nil
	}
	n = min(n, f.total-first)
	jobs := make([]mainframe.Job, n)
	for i := range jobs {
		k := first + i
		name := "synth-" + strconv.Itoa(k)
		attempt := 1
		id := "a" + strconv.Itoa(k)
		jobs[i] = mainframe.Job{
			Name: name, Version: "1.0",
			Distributions: []string{"http://127.0.0.1:9/packages/" + name + "-1.0.tar.gz"},
			Hash:          "bench", Attempt: &attempt, AssignmentID: &id,
		}
	}
	return jobs, nil
}

func (f *fakeAPI) Rules(context.Context) (mainframe.RuleSet, error) {
	return mainframe.RuleSet{Hash: "bench", Rules: map[string]string{"bench": `rule bench { strings: $a = "NEVER-MATCHES-7f3a" condition: $a }`}}, nil
}

func (f *fakeAPI) Report(context.Context, mainframe.Report) error { return nil }

// counter is the coordinator's Observer: it counts leases and accepted
// reports (and reports that were not clean successes) and closes done at the
// total-th accepted report.
type counter struct {
	total              int
	leased, firstLease atomic.Int64 // firstLease: unix nanos of the first lease with jobs
	reported, bad      atomic.Int64
	done               chan struct{}
	once               sync.Once
}

func (c *counter) Leased(jobs int, err error) {
	if err == nil && jobs > 0 {
		c.leased.Add(1)
		c.firstLease.CompareAndSwap(0, time.Now().UnixNano())
	}
}

func (c *counter) Reported(r outbox.Report, err error, _ time.Duration) {
	if err != nil {
		return
	}
	if r.Success == nil {
		c.bad.Add(1)
	}
	if int(c.reported.Add(1)) == c.total {
		c.once.Do(func() { close(c.done) })
	}
}

func (c *counter) JobFinished(dispatch.Outcome)                {}
func (c *counter) JobDropped(dispatch.Job)                     {}
func (c *counter) ReportAbandoned(outbox.Report, error)        {}
func (c *counter) RulesUpdated(bool)                           {}
func (c *counter) SessionStarted(coordinator.SessionInfo)      {}
func (c *counter) SessionEnded(coordinator.SessionInfo, error) {}
func (c *counter) DispatchEvent(dispatch.Event)                {}
func (c *counter) OutboxHealth(outbox.Health)                  {}

func cpuSeconds(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func run(ctx context.Context, cfg config) (result, error) {
	logw := io.Discard
	if cfg.verbose {
		logw = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	obs := &counter{total: cfg.jobs, done: make(chan struct{})}
	fake := &fakeAPI{start: make(chan struct{}), total: cfg.jobs}
	var api coordinator.API = fake
	if cfg.api != "" {
		client, err := mainframe.New(mainframe.Config{BaseURL: cfg.api, Logger: log})
		if err != nil {
			return result{}, err
		}
		api = client
	}
	c, err := coordinator.New(coordinator.Config{
		API: api, BulkSize: cfg.bulk, LoadDuration: 50 * time.Millisecond, Logger: log, Version: "coordbench",
		Prefetch: coordinator.DefaultPrefetch, AcceptNonScanningWorkers: true, Observer: obs,
	})
	if err != nil {
		return result{}, err
	}
	srv, err := coordinator.NewServer(c, coordinator.ServerConfig{Insecure: true, Logger: log})
	if err != nil {
		return result{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, fmt.Errorf("listen: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()

	// Workers: separate processes (this binary), ended with SIGTERM.
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	var procs []*exec.Cmd
	stopWorkers := func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			_ = p.Wait()
		}
		procs = nil
	}
	defer stopWorkers()
	for i := range cfg.workers {
		cmd := exec.Command(self, "worker", "-addr", ln.Addr().String(), "-id", fmt.Sprintf("bench-%d", i), "-slots", strconv.Itoa(cfg.threads))
		cmd.Stdout = logw
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return result{}, fmt.Errorf("start worker: %w", err)
		}
		procs = append(procs, cmd)
	}

	// Wait for every worker to be connected and ready for the rules (polled:
	// a benchmark's setup, not its measure).
	for {
		snap := c.Snapshot().Dispatch
		ready := 0
		for _, s := range snap.Sessions {
			if len(s.RulesReady) > 0 {
				ready++
			}
		}
		if ready == cfg.workers {
			break
		}
		select {
		case <-ctx.Done():
			return result{}, fmt.Errorf("workers not ready (%d of %d connected): %w", len(snap.Sessions), cfg.workers, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}

	cpu0 := cpuSeconds(syscall.RUSAGE_SELF)
	t0 := time.Now()
	close(fake.start)
	select {
	case <-obs.done:
	case <-ctx.Done():
		return result{}, fmt.Errorf("%d of %d jobs reported: %w", obs.reported.Load(), cfg.jobs, ctx.Err())
	}
	el := time.Since(t0)
	if cfg.api != "" {
		// Over HTTP the coordinator leased from its start: time from the
		// first lease with jobs (the CPU before it was the workers'
		// connections and the rules).
		if first := obs.firstLease.Load(); first > 0 && time.Unix(0, first).After(t0.Add(-time.Minute)) {
			el = time.Since(time.Unix(0, first))
		}
	}
	cpu := cpuSeconds(syscall.RUSAGE_SELF) - cpu0
	if n := obs.bad.Load(); n > 0 {
		return result{}, fmt.Errorf("%d reports were failures, not clean results", n)
	}

	stopRun()
	err = <-runErr
	stopWorkers()
	srv.Stop(10 * time.Second)
	if serr := <-serveErr; serr != nil && err == nil {
		err = serr
	}
	c.WaitSessions()
	if err != nil && !errors.Is(err, context.Canceled) {
		return result{}, fmt.Errorf("coordinator: %w", err)
	}
	return result{
		Jobs: cfg.jobs, Workers: cfg.workers, Threads: cfg.threads,
		Seconds:     el.Seconds(),
		JobsPerS:    float64(cfg.jobs) / el.Seconds(),
		CPUSeconds:  cpu,
		CPUUsPerJob: cpu / float64(cfg.jobs) * 1e6,
		Leases:      obs.leased.Load(),
		WorkerCPU:   cpuSeconds(syscall.RUSAGE_CHILDREN),
	}, nil
}
