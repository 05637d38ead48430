package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"io"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/pkgindex"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/scan"
	"github.com/dragonfly-fleet/fleet/worker/verdict"
)

func init() {
	program.Register(cli.Command{
		Name: "scan", Summary: "scan local archives, directories or URLs",
		Flags: func(s *cli.Settings) { new(scanConfig).register(s) }, Run: runScan,
	})
}

const scanUsage = `usage: dragonfly scan [flags] TARGET...

Scans each TARGET with YARA rules and prints its score, as a Dragonfly worker
would (the same code decides the verdict). A target is a local archive
(sdist, wheel, zip, egg, or any file), a directory (an unpacked distribution:
every regular file under it), an http(s) URL (downloaded under the limits), or
a release on a package index: pypi:NAME or pypi:NAME==VERSION (--index-url;
without a version the highest release that is neither a pre-release nor fully
yanked; every distribution is downloaded, checked against the index's sha256,
and scanned; the release scores like the fleet reports it: the maximum over
its distributions). -r FILE scans every pinned name==version of a
requirements file. Flags may come before or after the targets; "--" ends
them.

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
files_scanned, bytes_scanned, error; a release adds inspector_url and
distributions [{filename, url, sha256, score}], and its file paths start with
their distribution's file name), or sarif (SARIF 2.1.0).

--show-strings adds each file's matched strings (of the rules counted for
it): in json, files[].matches [{rule, string ("$a"), offset (bytes from the
file's start, as yara -s prints it), length (of the match data libyara
keeps, cut at 512 bytes), data (its first 64 bytes: printable ASCII other
than the backslash as itself, any other byte as \xNN)}], at most 16 per
string, and files[].matches_omitted (the rest); in the table, each matched
file under the table with its strings; in sarif, one location per match
with its region (byteOffset, byteLength, snippet).

--stats prints on standard error what the scan engine did and saved: files
scored, scanned (bytes, YARA time), skipped because no rule's filetype admits
their path (read and checked, never scanned), answered by the match cache
(the same bytes already scanned with the same rules: an sdist and its wheel),
scanned again for a hard link's rules, and the rule subsets compiled.
--match-cache-size bounds that cache (0: off); verdicts never depend on it.

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
	download     downloadSettings
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
	s.Var(cli.Int(&c.threads, runtime.NumCPU()), "DRAGONFLY_THREADS", "scanner threads").DefaultText("number of CPUs")
	s.Flag(cli.Bool(&c.demo, false), "demo", "also scan the built-in demo packages (implies nothing about the rules)")
	s.Var(cli.List(&c.hosts, []string{"*"}), "DRAGONFLY_ALLOWED_HOSTS", "where URL targets may be downloaded from: hosts (https), origins such as http://host:port, or * (any public https host)")
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

// indexOrigin is an index URL's scheme://host[:port], as an allowed-hosts entry.
func indexOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("index URL %q: not absolute", clip.String(raw, 256))
	}
	return u.Scheme + "://" + u.Host, nil
}

func runScan(ctx context.Context, e *cli.Env, args []string) error {
	var cfg scanConfig
	s := e.Settings("dragonfly scan", scanUsage)
	cfg.register(s)
	if err := s.Parse(args, e.Getenv, e.Dir); err != nil {
		return err
	}
	lim, sizes, err := cfg.limitSet.resolve()
	if err != nil {
		return err
	}
	if cfg.threads <= 0 {
		return cli.Usage("DRAGONFLY_THREADS=%d: must be positive", cfg.threads)
	}
	if cfg.format == "" {
		cfg.format = "json"
		if cli.IsTerminal(e.Stdout) {
			cfg.format = "table"
		}
	}
	if cfg.format != "table" && cfg.format != "json" && cfg.format != "sarif" {
		return cli.Usage("--format %q: not one of table, json, sarif", clip.String(cfg.format, 256))
	}
	targets := s.Args()
	if !cfg.demo && len(targets) == 0 && len(cfg.requirements) == 0 {
		return cli.Usage("no targets (see dragonfly scan --help)")
	}
	if err := checkRuleChoice(s); err != nil {
		return err
	}
	printLimits(e.Stderr, lim, sizes)

	set, from, err := cfg.loadRules(ctx, e)
	if err != nil {
		return err
	}
	compiled, err := rules.Compile(set)
	if err != nil {
		return cli.Exit(2, err)
	}
	fmt.Fprintf(e.Stderr, "dragonfly scan: rules from %s: hash %s, %d rules\n", from, clip.String(compiled.Hash(), 256), compiled.Len())

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
	var pypiJobs []scanJob
	for _, t := range targets {
		if pkgindex.IsTarget(t) {
			pt, err := pkgindex.ParseTarget(t)
			if err != nil {
				return cli.Usage("%v", err)
			}
			pypiJobs = append(pypiJobs, scanJob{target: t, pypi: &pt})
			continue
		}
		jobs = append(jobs, scanJob{target: t})
	}
	for _, file := range cfg.requirements {
		pins, err := pkgindex.ReadRequirements(file)
		if err != nil {
			return cli.Usage("%v", err)
		}
		for _, pt := range pins {
			pypiJobs = append(pypiJobs, scanJob{target: pt.String(), pypi: &pt})
		}
	}

	engine := scan.New(scan.Config{Threads: cfg.threads, Limits: lim, MatchCacheSize: matchCacheSize(cfg.matchCache), MaxMatchData: 1, MatchDetails: cfg.showStrings})
	defer engine.Close()
	hosts := cfg.hosts
	if len(pypiJobs) > 0 {
		// The index's origin is allowed for this run (its files usually live
		// on another host, which --allowed-hosts must allow).
		if o, err := indexOrigin(cfg.indexURL); err == nil {
			hosts = append(slices.Clone(hosts), o)
		}
	}
	if err := cfg.download.validate(); err != nil {
		return err
	}
	fc := cfg.download.config(hosts)
	fc.MaxSize = lim.Download
	fetcher, err := fetch.New(fc)
	if err != nil {
		return cli.Usage("%v", err)
	}
	sc := &scanner{verdict: &verdict.Scanner{Engine: engine, Fetcher: fetcher, Limits: lim}, rules: compiled}
	if len(pypiJobs) > 0 {
		sc.index, err = pkgindex.New(pkgindex.Config{
			IndexURL: cfg.indexURL, Pre: cfg.pre, Getter: fetcher,
			MaxDistributions: lim.Distributions, UserAgent: version.UserAgent(),
		})
		if err != nil {
			return cli.Usage("--index-url: %v", err)
		}
	}
	results := sc.scanTargets(ctx, append(jobs, pypiJobs...), cfg.threads)
	if ctx.Err() != nil {
		return cli.Exit(3, ctx.Err())
	}

	if cfg.stats {
		writeStats(e.Stderr, results, engine.Counters())
	}

	switch cfg.format {
	case "json":
		err = writeJSON(e.Stdout, results, cfg.showStrings)
	case "sarif":
		err = writeSARIF(e.Stdout, compiled, results)
	default:
		err = writeTable(e.Stdout, results, cfg.showStrings)
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
		return apiRules(ctx, e, c.api)
	}
	set, err := rules.Load(c.rules)
	if err != nil {
		return rules.Set{}, "", cli.Exit(2, err)
	}
	return set, clip.String(c.rules, 1024), nil
}

type scanJob struct {
	target string
	data   []byte           // in-memory target (demo); nil: read target
	pypi   *pkgindex.Target // a release on the package index
}

type scanResult struct {
	target string
	res    scan.Result
	err    error
	// release is set for a pypi: target: res then aggregates its
	// distributions (score the maximum, rules the union, files prefixed with
	// their distribution's file name).
	release *releaseResult
}

// releaseResult is what a pypi: target adds to a result.
type releaseResult struct {
	name, version string
	inspectorURL  string
	dists         []distResult
}

type distResult struct {
	Filename string `json:"filename"`
	URL      string `json:"url"`
	SHA256   string `json:"sha256"`
	Score    int64  `json:"score"`
}

// scanner is what scan needs to scan targets: the verdict path the worker
// uses, and the package index for pypi: targets.
type scanner struct {
	verdict *verdict.Scanner
	index   *pkgindex.Index
	rules   *rules.Compiled
}

// scanTargets scans the targets, several at once (each also spreads its files
// over all scanner threads), and returns the results in target order.
func (sc *scanner) scanTargets(ctx context.Context, jobs []scanJob, parallel int) []scanResult {
	results := make([]scanResult, len(jobs))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = sc.scanOne(ctx, j)
		}()
	}
	wg.Wait()
	return results
}

// scanOne scans one target through the verdict path, as a worker scans a
// distribution: the same bytes get the same verdict.
func (sc *scanner) scanOne(ctx context.Context, j scanJob) scanResult {
	if j.pypi != nil {
		return sc.scanRelease(ctx, *j.pypi)
	}
	src := verdict.Source{Data: j.data, Name: j.target}
	switch {
	case j.data != nil:
	case strings.HasPrefix(j.target, "http://") || strings.HasPrefix(j.target, "https://"):
		src = verdict.Source{URL: j.target}
	default:
		src = verdict.Source{Path: j.target}
	}
	v, err := sc.verdict.Scan(ctx, sc.rules, src)
	if err != nil {
		err = errors.New(verdict.Failure(v.Name, err).GetReason())
	}
	return scanResult{target: j.target, res: v.Result, err: err}
}

// scanRelease resolves a release on the index, downloads each distribution
// (checked against the index's sha256), scans it through the verdict path and
// aggregates like the fleet: score the maximum over distributions, rules the
// union, inspector_url the top file of the top distribution. Any distribution
// that cannot be downloaded, verified or scanned fails the release.
func (sc *scanner) scanRelease(ctx context.Context, t pkgindex.Target) scanResult {
	out := scanResult{target: t.String()}
	var (
		dists   []score.Distribution
		results []scan.Result
		rel     = &releaseResult{name: t.Name, version: t.Version}
	)
	release, err := sc.index.Fetch(ctx, t, func(d pkgindex.Distribution, data []byte) error {
		v, err := sc.verdict.Scan(ctx, sc.rules, verdict.Source{Data: data, Name: d.Filename})
		if err != nil {
			return errors.New(verdict.Failure(d.Filename, err).GetReason())
		}
		dists = append(dists, v.Distribution)
		results = append(results, v.Result)
		rel.dists = append(rel.dists, distResult{Filename: d.Filename, URL: d.URL, SHA256: d.SHA256, Score: v.Score})
		return nil
	})
	if release != nil {
		out.target = "pypi:" + release.Name + "==" + release.Version
		rel.name, rel.version = release.Name, release.Version
	}
	out.release = rel
	if err != nil {
		out.err = err
		return out
	}
	pkg := score.Aggregate(dists)
	agg := scan.Result{}
	agg.Score = pkg.Score
	weights := map[string]int64{}
	for i, r := range results {
		prefix := rel.dists[i].Filename + "/"
		agg.Stats.Files += r.Stats.Files
		agg.Stats.Expanded += r.Stats.Expanded
		agg.Stats.Entries += r.Stats.Entries
		agg.Stats.ScanTime += r.Stats.ScanTime
		for _, f := range r.Files {
			f.Path = prefix + f.Path
			agg.Files = append(agg.Files, f)
		}
		for _, h := range r.Rules {
			weights[h.Name] = h.Weight
		}
	}
	for _, name := range pkg.RulesMatched {
		agg.Rules = append(agg.Rules, score.Hit{Name: name, Weight: weights[name]})
	}
	if pkg.Top >= 0 && pkg.TopFile != "" {
		agg.TopFile = rel.dists[pkg.Top].Filename + "/" + pkg.TopFile
		agg.TopScore = dists[pkg.Top].TopScore
		rel.inspectorURL = score.InspectorURL(rel.name, rel.version, rel.dists[pkg.Top].URL, pkg.TopFile)
	}
	out.res = agg
	return out
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

// matchCacheSize is the engine's Config.MatchCacheSize for a
// DRAGONFLY_MATCH_CACHE_SIZE setting: 0 turns the cache off.
func matchCacheSize(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// writeStats prints what the engine did and saved (--stats).
func writeStats(w io.Writer, results []scanResult, c scan.Counters) {
	var files, links int
	for _, r := range results {
		files += r.res.Stats.Files
		links += r.res.Stats.Links
	}
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	row := func(name, format string, args ...any) {
		fmt.Fprintf(w, "  %-26s %s\n", name, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(w, "dragonfly scan: stats\n")
	row("files scored", "%d (%d hard links)", files, links)
	row("scanned", "%d files, %s", c.Scans, mb(c.ScannedBytes))
	row("skipped by filetype", "%d files, %s (no rule admits their path)", c.Skipped, mb(c.SkippedBytes))
	row("match cache hits", "%d files, %s not scanned again (%d entries, %s held)", c.CacheHits, mb(c.CacheHitBytes), c.CacheEntries, mb(c.CacheBytes))
	row("scanned again for links", "%d files", c.Rescans)
	row("rule subsets compiled", "%d in %.2f s (%d fell back to the whole set)", c.Subsets, c.SubsetTime.Seconds(), c.SubsetFailures)
}
