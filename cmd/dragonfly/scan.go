package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

func init() {
	register(command{name: "scan", summary: "scan local archives, directories or URLs", run: runScan})
}

const scanUsage = `usage: dragonfly scan [flags] TARGET...

Scans each TARGET with YARA rules and prints its score, as a Dragonfly worker
would. A target is a local archive (sdist, wheel, zip, egg, or any file), a
directory (an unpacked distribution: every regular file under it) or an
http(s) URL (downloaded under the limits). Without --rules the built-in demo
rules are used; --demo scans the built-in demo packages.

Output (--format): table (default on a terminal), json (one object per target
per line: target, score, rules_matched, most_malicious_file, files,
files_scanned, bytes_scanned, error), or
sarif (SARIF 2.1.0).

Exit status: 0 done; 1 some target scored >= --fail-score; 2 usage or rules
error; 3 some target could not be scanned (3 wins over 1).`

type scanConfig struct {
	rules     string
	format    string
	failScore int
	threads   int
	demo      bool
	limits    limit.Limits
	hosts     []string
}

func runScan(ctx context.Context, e *env, args []string) error {
	var cfg scanConfig
	s := newSettings("dragonfly scan", scanUsage)
	s.String(&cfg.rules, "rules", "", "rules: a directory of .yara/.yar files, one file, or a GET /rules JSON document (default: built-in demo rules)", "DRAGONFLY_RULES")
	s.String(&cfg.format, "format", "", "output format: table, json or sarif (default: table on a terminal, json otherwise)", "DRAGONFLY_SCAN_FORMAT")
	s.Int(&cfg.failScore, "fail-score", 0, "exit 1 when a target scores at least this (0: never)", "DRAGONFLY_FAIL_SCORE")
	s.Int(&cfg.threads, "threads", runtime.NumCPU(), "scanner threads", "DRAGONFLY_THREADS")
	s.Bool(&cfg.demo, "demo", false, "scan the built-in demo packages")
	s.List(&cfg.hosts, "allowed-hosts", []string{"*"}, "hosts URL targets may be downloaded from (* for any)", "DRAGONFLY_ALLOWED_HOSTS")
	limitFlags(s, &cfg.limits)
	if err := s.Parse(args, e.getenv, e.dir); err != nil {
		return err
	}
	if err := validateLimits(cfg.limits); err != nil {
		return err
	}
	if cfg.threads <= 0 {
		return usageError("DRAGONFLY_THREADS=%d: must be positive", cfg.threads)
	}
	if cfg.format == "" {
		cfg.format = "json"
		if isTerminal(e.stdout) {
			cfg.format = "table"
		}
	}
	if cfg.format != "table" && cfg.format != "json" && cfg.format != "sarif" {
		return usageError("--format %q: not one of table, json, sarif", cfg.format)
	}
	targets := s.Args()
	if !cfg.demo && len(targets) == 0 {
		return usageError("no targets (see dragonfly scan --help)")
	}

	set := rules.Set{Sources: demo.Rules()}
	set.Hash = rules.ContentHash(set.Sources)
	if cfg.rules != "" {
		var err error
		if set, err = rules.Load(cfg.rules); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	compiled, err := rules.Compile(set)
	if err != nil {
		return &exitError{code: 2, err: err}
	}

	var jobs []scanJob
	if cfg.demo {
		files, err := demo.Files()
		if err != nil {
			return err
		}
		for _, f := range files {
			jobs = append(jobs, scanJob{target: f.Name, data: f.Data})
		}
	}
	for _, t := range targets {
		jobs = append(jobs, scanJob{target: t})
	}

	engine := scan.New(scan.Config{Threads: cfg.threads, Limits: cfg.limits})
	defer engine.Close()
	fetcher := fetch.New(fetch.Config{AllowedHosts: cfg.hosts, MaxSize: cfg.limits.Download, UserAgent: "dragonfly-fleet/" + version.String()})
	results := scanTargets(ctx, engine, fetcher, compiled, cfg.limits, jobs, cfg.threads)
	if ctx.Err() != nil {
		return &exitError{code: 3, err: ctx.Err()}
	}

	switch cfg.format {
	case "json":
		err = writeJSON(e.stdout, results)
	case "sarif":
		err = writeSARIF(e.stdout, compiled, results)
	default:
		err = writeTable(e.stdout, results)
	}
	if err != nil {
		return err
	}
	code := 0
	for _, r := range results {
		if r.err != nil {
			code = 3
		} else if cfg.failScore > 0 && r.res.Score >= int64(cfg.failScore) && code == 0 {
			code = 1
		}
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

type scanJob struct {
	target string
	data   []byte // in-memory target (demo); nil: read target
}

type scanResult struct {
	target string
	res    scan.Result
	err    error
}

// scanTargets scans the targets, several at once (each also spreads its files
// over all scanner threads), and returns the results in target order.
func scanTargets(ctx context.Context, engine *scan.Engine, fetcher *fetch.Fetcher, rs *rules.Compiled, lim limit.Limits, jobs []scanJob, parallel int) []scanResult {
	results := make([]scanResult, len(jobs))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := scanOne(ctx, engine, fetcher, rs, lim, j)
			results[i] = scanResult{target: j.target, res: res, err: err}
		}()
	}
	wg.Wait()
	return results
}

func scanOne(ctx context.Context, engine *scan.Engine, fetcher *fetch.Fetcher, rs *rules.Compiled, lim limit.Limits, j scanJob) (scan.Result, error) {
	if j.data != nil {
		return engine.Scan(ctx, rs, j.target, j.data)
	}
	t := j.target
	if strings.HasPrefix(t, "http://") || strings.HasPrefix(t, "https://") {
		data, err := fetcher.Get(ctx, t)
		if err != nil {
			return scan.Result{}, err
		}
		name := t
		if i := strings.LastIndexByte(strings.SplitN(t, "?", 2)[0], '/'); i >= 0 {
			name = strings.SplitN(t, "?", 2)[0][i+1:]
		}
		return engine.Scan(ctx, rs, name, data)
	}
	fi, err := os.Stat(t)
	if err != nil {
		return scan.Result{}, err
	}
	if fi.IsDir() {
		return engine.Run(ctx, rs, scan.DirProducer(t, lim))
	}
	if fi.Size() > lim.Download {
		return scan.Result{}, &limit.Error{Kind: limit.Download, Max: lim.Download}
	}
	data, err := readAtMost(t, lim.Download)
	if err != nil {
		return scan.Result{}, err
	}
	return engine.Scan(ctx, rs, filepath.Base(t), data)
}

// readAtMost reads a file, failing if it holds more than max bytes (it may
// grow after the stat).
func readAtMost(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, &limit.Error{Kind: limit.Download, Max: max}
	}
	return data, nil
}

// topFile is the result's most malicious file, nil when nothing matched.
func topFile(d score.Distribution) *string {
	if d.TopFile == "" {
		return nil
	}
	s := d.TopFile
	return &s
}

func ruleNames(hits []score.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.Name
	}
	return out
}

func oneLine(err error) string {
	return strings.ReplaceAll(fmt.Sprint(err), "\n", " ")
}
