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

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

func init() {
	register(command{
		name: "scan", summary: "scan local archives, directories or URLs",
		flags: func(s *settings) { new(scanConfig).register(s) }, run: runScan,
	})
}

const scanUsage = `usage: dragonfly scan [flags] TARGET...

Scans each TARGET with YARA rules and prints its score, as a Dragonfly worker
would. A target is a local archive (sdist, wheel, zip, egg, or any file), a
directory (an unpacked distribution: every regular file under it) or an
http(s) URL (downloaded under the limits). Flags may come before or after
the targets; "--" ends them.

The rules are named explicitly, one of:
  --rules PATH       a directory of .yara/.yar files, one file, or a GET /rules
                     JSON document
  --rules-from-api   the Dragonfly API's current rules, with the same API
                     settings as the coordinator (base URL, Cloudflare Access
                     or Auth0). Each set is cached by hash under the user cache
                     directory (dragonfly-fleet/rules/HASH.json); when the API
                     is unreachable (network trouble, 5xx, 429) the newest set
                     cached from the same base URL is used, with a warning
                     naming its hash and age. Refused credentials are an error.
  --demo-rules       the built-in demo rules
Standard error names the rule set used: source, hash, rule count.
--demo scans the built-in demo packages (besides any TARGET); it implies
nothing about the rules.

Output (--format): table (default on a terminal), json (one object per target
per line: target, score, rules_matched, most_malicious_file, files,
files_scanned, bytes_scanned, error), or
sarif (SARIF 2.1.0).

Exit status: 0 done; 1 some target scored >= --fail-score; 2 usage or rules
error; 3 some target could not be scanned (3 wins over 1).`

// scanConfig are the settings of dragonfly scan.
type scanConfig struct {
	rules        string
	rulesFromAPI bool
	demoRules    bool
	api          mainframe.Config
	format       string
	failScore    int
	threads      int
	demo         bool
	limitSet     limitSettings
	hosts        []string
}

func (c *scanConfig) register(s *settings) {
	s.Var(stringVal(&c.rules, ""), "DRAGONFLY_RULES", "rules: a directory of .yara/.yar files, one file, or a GET /rules JSON document")
	s.Var(boolVal(&c.rulesFromAPI, false), "DRAGONFLY_RULES_FROM_API", "fetch the rules from the Dragonfly API (the API settings below; cached, see above)")
	s.Var(boolVal(&c.demoRules, false), "DRAGONFLY_DEMO_RULES", "use the built-in demo rules")
	s.Var(stringVal(&c.format, ""), "DRAGONFLY_FORMAT", "output format: table, json or sarif").
		defaultText("table on a terminal, json otherwise").deprecatedEnv("DRAGONFLY_SCAN_FORMAT")
	s.Var(intVal(&c.failScore, 0), "DRAGONFLY_FAIL_SCORE", "exit 1 when a target scores at least this (0: never)")
	s.Var(intVal(&c.threads, runtime.NumCPU()), "DRAGONFLY_THREADS", "scanner threads").defaultText("number of CPUs")
	s.Flag(boolVal(&c.demo, false), "demo", "also scan the built-in demo packages (implies nothing about the rules)")
	s.Var(listVal(&c.hosts, []string{"*"}), "DRAGONFLY_ALLOWED_HOSTS", "where URL targets may be downloaded from: hosts (https), origins such as http://host:port, or * (any public https host)")
	limitFlags(s, &c.limitSet)
	apiFlags(s, &c.api)
}

func runScan(ctx context.Context, e *env, args []string) error {
	var cfg scanConfig
	s := e.settingsFor("dragonfly scan", scanUsage)
	cfg.register(s)
	if err := s.Parse(args, e.getenv, e.dir); err != nil {
		return err
	}
	lim, sizes, err := cfg.limitSet.resolve()
	if err != nil {
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
		return usageError("--format %q: not one of table, json, sarif", clip.String(cfg.format, 256))
	}
	targets := s.Args()
	if !cfg.demo && len(targets) == 0 {
		return usageError("no targets (see dragonfly scan --help)")
	}
	if err := checkRuleChoice(s); err != nil {
		return err
	}
	printLimits(e.stderr, lim, sizes)

	set, from, err := cfg.loadRules(ctx, e)
	if err != nil {
		return err
	}
	compiled, err := rules.Compile(set)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintf(e.stderr, "dragonfly scan: rules from %s: hash %s, %d rules\n", from, clip.String(compiled.Hash(), 256), compiled.Len())

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

	engine := scan.New(scan.Config{Threads: cfg.threads, Limits: lim})
	defer engine.Close()
	fetcher, err := fetch.New(fetch.Config{AllowedHosts: cfg.hosts, MaxSize: lim.Download, UserAgent: version.UserAgent()})
	if err != nil {
		return usageError("%v", err)
	}
	results := scanTargets(ctx, engine, fetcher, compiled, lim, jobs, cfg.threads)
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

// checkRuleChoice wants exactly one rule source.
func checkRuleChoice(s *settings) error {
	var given []string
	for _, name := range []string{"rules", "rules-from-api", "demo-rules"} {
		st := s.lookup(name)
		if st.isSet() && st.value.String() != "" && st.value.String() != "false" {
			given = append(given, "--"+name+" ("+st.source()+")")
		}
	}
	switch len(given) {
	case 0:
		return usageError("no rules: give --rules PATH (a directory of .yara/.yar files, one file or a GET /rules JSON document), " +
			"--rules-from-api (the Dragonfly API, with the coordinator's API settings) or --demo-rules (the built-in demo rules)")
	case 1:
		return nil
	}
	return usageError("one rule source only, got %s", strings.Join(given, ", "))
}

// loadRules returns the rule set chosen and a description of its source.
func (c *scanConfig) loadRules(ctx context.Context, e *env) (rules.Set, string, error) {
	switch {
	case c.demoRules:
		set := rules.Set{Sources: demo.Rules()}
		set.Hash = rules.ContentHash(set.Sources)
		return set, "the built-in demo rules", nil
	case c.rulesFromAPI:
		return apiRules(ctx, e, c.api)
	}
	set, err := rules.Load(c.rules)
	if err != nil {
		return rules.Set{}, "", &exitError{code: 2, err: err}
	}
	return set, clip.String(c.rules, 1024), nil
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
