// Command coordbench measures the coordinator's capacity (bench/run row 5a):
// jobs per second through lease -> dispatch -> result -> report, and the
// coordinator's CPU per job, with the Dragonfly API replaced by an in-process
// fake and the workers run as separate `dragonfly worker
// --bench-instant-results` processes (so their CPU is not the coordinator's).
//
//	coordbench -dragonfly bin/dragonfly [-jobs 200000] [-workers 8] [-threads 2]
//
// It starts a coordinator (coordinator.New + a plain gRPC server on a loopback
// port, no token), starts the workers, waits until every worker is connected
// and ready for the rules, then lets the fake API hand out -jobs jobs of one
// distribution each and waits until every one is reported. Timing and the
// process's CPU (getrusage RUSAGE_SELF: the coordinator plus the fake API,
// whose work is a slice copy per lease and a counter per report) run from the
// first lease to the last report. It prints one JSON object:
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
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"google.golang.org/grpc"
)

type config struct {
	dragonfly string
	jobs      int
	workers   int
	threads   int
	bulk      int
	timeout   time.Duration
	verbose   bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.dragonfly, "dragonfly", "bin/dragonfly", "the dragonfly binary the workers run")
	flag.IntVar(&cfg.jobs, "jobs", 200000, "jobs to lease, dispatch and report")
	flag.IntVar(&cfg.workers, "workers", 8, "worker processes")
	flag.IntVar(&cfg.threads, "threads", 2, "scanner slots per worker (--threads)")
	flag.IntVar(&cfg.bulk, "bulk", 20, "jobs leased per request at most (the coordinator's BulkSize)")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.BoolVar(&cfg.verbose, "v", false, "show the coordinator's and workers' warnings on stderr")
	flag.Parse()
	if cfg.jobs <= 0 || cfg.workers <= 0 || cfg.threads <= 0 || cfg.bulk <= 0 {
		fmt.Fprintln(os.Stderr, "coordbench: -jobs, -workers, -threads and -bulk must be positive")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	res, err := run(ctx, cfg)
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
	start    chan struct{} // closed when leasing may begin
	total    int
	next     atomic.Int64 // jobs handed out
	leases   atomic.Int64
	reported atomic.Int64
	done     chan struct{} // closed at the total-th report
	once     sync.Once
	bad      atomic.Int64 // reports that were not a success
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

func (f *fakeAPI) Report(_ context.Context, r mainframe.Report) error {
	if r.Success == nil {
		f.bad.Add(1)
	}
	if int(f.reported.Add(1)) == f.total {
		f.once.Do(func() { close(f.done) })
	}
	return nil
}

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
	api := &fakeAPI{start: make(chan struct{}), total: cfg.jobs, done: make(chan struct{})}
	c, err := coordinator.New(coordinator.Config{API: api, BulkSize: cfg.bulk, LoadDuration: 50 * time.Millisecond, Logger: log, Version: "coordbench"})
	if err != nil {
		return result{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, fmt.Errorf("listen: %w", err)
	}
	srv := grpc.NewServer()
	fleetv1.RegisterFleetServiceServer(srv, c)
	grpcErr := make(chan error, 1)
	go func() { grpcErr <- srv.Serve(ln) }()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()

	// Workers: separate processes, ended with SIGTERM at the end.
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
		cmd := exec.Command(cfg.dragonfly, "worker",
			"--coordinator", ln.Addr().String(), "--bench-instant-results",
			"--threads", strconv.Itoa(cfg.threads), "--worker-id", fmt.Sprintf("bench-%d", i),
			"--metrics-addr", "", "--log-level", "warn", "--log-format", "text")
		cmd.Stdout = logw
		cmd.Stderr = logw
		if err := cmd.Start(); err != nil {
			return result{}, fmt.Errorf("start worker: %w", err)
		}
		procs = append(procs, cmd)
	}

	// Wait for every worker to be connected and ready for the rules.
	for {
		snap := c.Dispatcher().Snapshot()
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
		case <-c.Dispatcher().Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}

	cpu0 := cpuSeconds(syscall.RUSAGE_SELF)
	t0 := time.Now()
	close(api.start)
	select {
	case <-api.done:
	case <-ctx.Done():
		return result{}, fmt.Errorf("%d of %d jobs reported: %w", api.reported.Load(), cfg.jobs, ctx.Err())
	}
	el := time.Since(t0)
	cpu := cpuSeconds(syscall.RUSAGE_SELF) - cpu0
	if n := api.bad.Load(); n > 0 {
		return result{}, fmt.Errorf("%d reports were failures, not clean results", n)
	}

	stopRun()
	err = <-runErr
	stopWorkers()
	srv.GracefulStop()
	if gerr := <-grpcErr; gerr != nil && !errors.Is(gerr, grpc.ErrServerStopped) && err == nil {
		err = gerr
	}
	c.WaitSessions()
	if err != nil {
		return result{}, fmt.Errorf("coordinator: %w", err)
	}
	return result{
		Jobs: cfg.jobs, Workers: cfg.workers, Threads: cfg.threads,
		Seconds:     el.Seconds(),
		JobsPerS:    float64(cfg.jobs) / el.Seconds(),
		CPUSeconds:  cpu,
		CPUUsPerJob: cpu / float64(cfg.jobs) * 1e6,
		Leases:      api.leases.Load(),
		WorkerCPU:   cpuSeconds(syscall.RUSAGE_CHILDREN),
	}, nil
}
