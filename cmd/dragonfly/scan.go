package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/rulecache"
	"github.com/dragonfly-fleet/fleet/internal/scanreport"
	"github.com/dragonfly-fleet/fleet/internal/scanrun"
	"github.com/dragonfly-fleet/fleet/pkgindex"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/rules/workbench"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

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
	download     fetch.Config // AllowedHosts: URL targets
	indexURL     string
	pre          bool
	requirements []string
	stats        bool
	matchCache   int64
	showStrings  bool
}

func (c *scanConfig) register(s *cli.Settings) {
	s.Var(cli.String(&c.rules, ""), "DRAGONFLY_RULES", "rules: a directory of .yara/.yar files, one file, or a GET /rules JSON document")
	s.Var(cli.Bool(&c.rulesFromAPI, false), "DRAGONFLY_RULES_FROM_API", "fetch the rules from the Dragonfly API (the API settings below; cached, see above)")
	s.Var(cli.Bool(&c.demoRules, false), "DRAGONFLY_DEMO_RULES", "use the built-in demo rules")
	s.Var(cli.String(&c.format, ""), "DRAGONFLY_FORMAT", "output format: table, json or sarif").
		DefaultText("table on a terminal, json otherwise").DeprecatedEnv("DRAGONFLY_SCAN_FORMAT")
	s.Var(cli.Int(&c.failScore, 0), "DRAGONFLY_FAIL_SCORE", "exit 1 when a target scores at least this (0: never)")
	s.Var(cli.Int(&c.threads, worker.DefaultThreads()), "DRAGONFLY_THREADS", "scanner threads").DefaultText("number of CPUs available")
	s.Flag(cli.Bool(&c.demo, false), "demo", "also scan the built-in demo packages (implies nothing about the rules)")
	s.Var(cli.List(&c.download.AllowedHosts, []string{"*"}), "DRAGONFLY_ALLOWED_HOSTS", "where URL targets may be downloaded from: hosts (https), origins such as http://host:port, or * (any public https host)")
	s.Var(cli.String(&c.indexURL, pkgindex.DefaultIndexURL), "DRAGONFLY_INDEX_URL", "package index for pypi:NAME[==VERSION] targets (PEP 691 JSON or PEP 503 HTML; with /simple, the PyPI JSON API beside it is asked too)")
	s.Var(cli.Bool(&c.pre, false), "DRAGONFLY_PRE", "let pypi:NAME (without a version) pick a pre-release or development release")
	s.FlagP(cli.Repeated(&c.requirements), "requirement", "r", "scan every pinned name==version of this requirements file (repeatable)")
	s.Flag(cli.Bool(&c.stats, false), "stats", "print what the scan engine did and saved on standard error (see above)")
	s.Var(cli.SizeOrOff(&c.matchCache, scan.DefaultMatchCacheSize), "DRAGONFLY_MATCH_CACHE_SIZE", "memory for the match cache: matches of files already scanned, by content and rules (0: off)")
	s.Flag(cli.Bool(&c.showStrings, false), "show-strings", "show the matched strings of each file (see Output)")
	downloadFlags(s, &c.download)
	limitFlags(s, &c.limitSet)
	apiFlags(s, &c.api)
}

func runScan(ctx context.Context, e *cli.Env, cfg *scanConfig, s *cli.Settings) error {
	lim, sizes, err := checkScanning(e, &cfg.limitSet, cfg.threads, &cfg.format, "DRAGONFLY_FORMAT", "table", "json", "sarif")
	if err != nil {
		return err
	}
	targets := s.Args()
	if !cfg.demo && len(targets) == 0 && len(cfg.requirements) == 0 {
		return cli.Usage("no targets (see dragonfly scan --help)")
	}
	if err := checkRuleChoice(s); err != nil {
		return err
	}
	if cfg.failScore < 0 {
		return cli.Usage("DRAGONFLY_FAIL_SCORE=%d: want 0 (never fail) or a score to fail at", cfg.failScore)
	}
	printLimits(e.Stderr, lim, sizes)

	set, from, err := cfg.loadRules(ctx, e)
	if err != nil {
		return err
	}
	compiled, err := rules.Compile(set)
	if err == nil && compiled.Reportable() == 0 {
		err = fmt.Errorf("rules from %s: %w", from, rules.ErrNoRules)
	}
	if err != nil {
		return cli.Exit(2, err)
	}
	fmt.Fprintf(e.Stderr, "dragonfly scan: rules from %s: hash %s, %s\n", from, clip.Escaped(compiled.Hash(), 256), workbench.Plural(compiled.Len(), "rule"))
	if w := compiled.GlobalWarning(); w != "" {
		fmt.Fprintf(e.Stderr, "dragonfly scan: warning: %s\n", clip.Escaped(w, 4096))
	}

	var jobs []scanrun.Job
	if cfg.demo {
		if jobs, err = scanrun.DemoJobs(); err != nil {
			return err
		}
	}
	more, err := scanrun.Jobs(targets, cfg.requirements)
	if err != nil {
		return cli.Usage("%v", err)
	}
	jobs = append(jobs, more...)
	if err := checkDownloads(&cfg.download); err != nil {
		return err
	}
	run := scanrun.Config{Rules: compiled, Threads: cfg.threads, Limits: lim, MatchCacheSize: cfg.matchCache, NoMatchCache: cfg.matchCache <= 0, MatchDetails: cfg.showStrings}
	fc := cfg.download
	if scanrun.HasReleases(jobs) {
		// The index's origin is allowed for this run (its files usually live
		// on another host, which --allowed-hosts must allow).
		if o, err := scanrun.IndexOrigin(cfg.indexURL); err == nil {
			fc.AllowedHosts = append(slices.Clone(fc.AllowedHosts), o)
		}
	}
	fc.MaxSize, fc.UserAgent = lim.Download, version.UserAgent()
	if run.Fetcher, err = fetch.New(fc); err != nil {
		return cli.Usage("%v", err)
	}
	if scanrun.HasReleases(jobs) {
		run.Index, err = pkgindex.New(pkgindex.Config{
			IndexURL: cfg.indexURL, Pre: cfg.pre, Getter: run.Fetcher,
			MaxDistributions: lim.Distributions, UserAgent: version.UserAgent(),
		})
		if err != nil {
			return cli.Usage("DRAGONFLY_INDEX_URL: %v", err)
		}
	}
	results, counters := scanrun.Run(ctx, run, jobs)
	if ctx.Err() != nil {
		return cli.Exit(3, ctx.Err())
	}
	if cfg.stats {
		scanreport.WriteStats(e.Stderr, results, counters)
	}
	for _, r := range results {
		if n := r.Scan.Stats.Archives; n > 0 && r.Err == nil {
			fmt.Fprintf(e.Stderr, "dragonfly scan: note: %s: %s scanned as bytes, not unpacked: a directory is scanned as an unpacked distribution, and an archive in it as the fleet scans an archive inside a package; to scan what an archive holds, give it as a target (DIR/*)\n",
				clip.Path(r.Target), workbench.Plural(n, "archive"))
		}
		if n := r.Scan.Stats.Symlinks; n > 0 && r.Err == nil {
			fmt.Fprintf(e.Stderr, "dragonfly scan: note: %s: %s skipped, not followed (as the fleet skips an archive's); to scan what one names, give that as a target\n",
				clip.Path(r.Target), workbench.Plural(n, "symbolic link"))
		}
	}
	if err := scanreport.Write(e.Stdout, cfg.format, compiled, results, cfg.showStrings); err != nil {
		// Not 1, which says a target scored at --fail-score or more.
		return cli.Exit(3, fmt.Errorf("writing the report: %w", err))
	}
	code := 0
	for _, r := range results {
		if r.Err != nil {
			code = 3
		} else if cfg.failScore > 0 && r.Scan.Score >= int64(cfg.failScore) && code == 0 {
			code = 1
		}
	}
	if code != 0 {
		return cli.Exit(code, nil)
	}
	return nil
}

// checkRuleChoice wants exactly one rule source.
func checkRuleChoice(s *cli.Settings) error {
	var given []string
	for _, name := range []string{"rules", "rules-from-api", "demo-rules"} {
		st := s.Lookup(name)
		if st.IsSet() && st.Value().String() != "" && st.Value().String() != "false" {
			given = append(given, "--"+name+" ("+st.Source()+")")
		}
	}
	switch len(given) {
	case 0:
		return cli.Usage("no rules: give --rules PATH (a directory of .yara/.yar files, one file or a GET /rules JSON document), " +
			"--rules-from-api (the Dragonfly API, with the coordinator's API settings) or --demo-rules (the built-in demo rules)")
	case 1:
		return nil
	}
	return cli.Usage("one rule source only, got %s", strings.Join(given, ", "))
}

// loadRules returns the rule set chosen and a description of its source.
func (c *scanConfig) loadRules(ctx context.Context, e *cli.Env) (rules.Set, string, error) {
	switch {
	case c.demoRules:
		set := rules.Set{Sources: demo.Rules()}
		set.Hash = rules.ContentHash(set.Sources)
		return set, "the built-in demo rules", nil
	case c.rulesFromAPI:
		if err := positive(durationSetting{"DRAGONFLY_API_TIMEOUT", c.api.Timeout}); err != nil {
			return rules.Set{}, "", err
		}
		set, from, err := rulecache.Fetch(ctx, rulecache.Config{API: c.api, CacheDir: e.UserCacheDir, Now: e.Clock,
			Warn: func(msg string) { fmt.Fprintf(e.Stderr, "dragonfly scan: warning: %s\n", clip.Visible(msg, "")) }})
		if err != nil {
			return rules.Set{}, "", cli.Exit(2, err)
		}
		return set, from, nil
	}
	set, err := rules.Load(c.rules)
	if err != nil {
		return rules.Set{}, "", cli.Exit(2, err)
	}
	return set, clip.String(c.rules, 1024), nil
}

// printLimits tells a terminal user (dragonfly scan) what the size settings
// were taken to mean, when they set any.
func printLimits(w io.Writer, l limit.Limits, r limit.Resolution) {
	if r.Era == limit.EraDefault {
		return
	}
	fmt.Fprintf(w, "dragonfly scan: size limits (%s era): download %s, one file %s\n", r.Era, cli.FormatSize(l.Download), cli.FormatSize(l.File))
	for _, ig := range r.Ignored {
		fmt.Fprintf(w, "dragonfly scan: warning: ignored %s\n", ig)
	}
}
