// Package scanrun is the pipeline of dragonfly scan: it scans targets
// (local archives or any file, directories of unpacked distributions, http(s)
// URLs, files in memory, and releases on a package index) through the
// worker's verdict path (package worker/verdict), so the same bytes get the
// same verdict as in the fleet, and aggregates a release as the fleet
// reports it (package score). Package scanreport writes the results.
//
// Run scans Config.Threads targets at once; each target also spreads its
// files over all the engine's Threads scanner threads. Every bound is the
// caller's: the limits (Config.Limits) bound each distribution, the fetcher
// and the index bound downloads and index pages, and the match cache its
// memory.
package scanrun

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/pkgindex"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
	"github.com/dragonfly-fleet/fleet/worker/verdict"
	"golang.org/x/sync/errgroup"
)

// Job is one target.
type Job struct {
	// Target names the target: a path, an http(s) URL, or (with Data) the
	// file name of an in-memory file.
	Target string
	// Data is an in-memory target (the demo packages); nil: read Target.
	Data []byte
	// Release is a release on the package index (pypi:NAME[==VERSION]).
	Release *pkgindex.Target
}

// Jobs turns command-line targets and requirements files into jobs: every
// target that is not pypi:NAME[==VERSION] first, in order, then the
// releases, then every pin of each requirements file. A malformed release
// target or requirements file is an error.
func Jobs(targets, requirements []string) ([]Job, error) {
	var jobs, releases []Job
	for _, t := range targets {
		if !pkgindex.IsTarget(t) {
			jobs = append(jobs, Job{Target: t})
			continue
		}
		pt, err := pkgindex.ParseTarget(t)
		if err != nil {
			return nil, err
		}
		releases = append(releases, Job{Target: t, Release: &pt})
	}
	for _, file := range requirements {
		pins, err := pkgindex.ReadRequirements(file)
		if err != nil {
			return nil, err
		}
		for _, pt := range pins {
			releases = append(releases, Job{Target: pt.String(), Release: &pt})
		}
	}
	return append(jobs, releases...), nil
}

// DemoJobs are the built-in demo packages (package demo) as in-memory
// targets.
func DemoJobs() ([]Job, error) {
	files, err := demo.Files()
	if err != nil {
		return nil, err
	}
	jobs := make([]Job, 0, len(files))
	for _, f := range files {
		jobs = append(jobs, Job{Target: f.Name, Data: f.Data})
	}
	return jobs, nil
}

// HasReleases reports whether some job is a release (and needs an index).
func HasReleases(jobs []Job) bool {
	for _, j := range jobs {
		if j.Release != nil {
			return true
		}
	}
	return false
}

// IndexOrigin is an index URL's scheme://host[:port], as an allowed-hosts
// entry (fetch.Config.AllowedHosts).
func IndexOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("index URL %q: not absolute", clip.String(raw, 256))
	}
	return u.Scheme + "://" + u.Host, nil
}

// Config configures Run.
type Config struct {
	// Rules are the compiled rules every target is scanned with. Required.
	Rules *rules.Compiled
	// Threads is the engine's scanner threads and the targets scanned at
	// once. Default 1.
	Threads int
	// Limits bound each distribution (the engine's limits, and the size of
	// a local file).
	Limits limit.Limits
	// MatchCacheSize and NoMatchCache configure the engine's match cache
	// (scan.Config's fields of those names: zero size is the default).
	MatchCacheSize int64
	NoMatchCache   bool
	// MatchDetails keeps each file's matched strings (scan.Config.MatchDetails).
	MatchDetails bool
	// Fetcher downloads URL targets and the files of releases; required
	// for them.
	Fetcher *fetch.Fetcher
	// Index resolves and downloads releases; required for them.
	Index *pkgindex.Index
}

// Result is what one target came to.
type Result struct {
	Target string
	// Scan is the scan's result; for a release, the aggregate of its
	// distributions (score the maximum, rules the union, file paths
	// prefixed with their distribution's file name).
	Scan scan.Result
	// Err is why the target could not be scanned: the reason the fleet
	// would report (verdict.Failure).
	Err error
	// Release is set for a release target.
	Release *Release
}

// Release is what a release target adds to a Result.
type Release struct {
	Name, Version string
	// InspectorURL links the top file of the top distribution; "" when
	// nothing matched.
	InspectorURL  string
	Distributions []Distribution
}

// Distribution is one scanned distribution of a release, as dragonfly
// scan's JSON shows it.
type Distribution struct {
	Filename string `json:"filename"`
	URL      string `json:"url"`
	SHA256   string `json:"sha256"`
	Score    int64  `json:"score"`
}

// Run scans the jobs with a scan engine of its own and returns their
// results in job order and what the engine counted. A cancelled ctx ends
// the scans early (their results carry the error).
func Run(ctx context.Context, cfg Config, jobs []Job) ([]Result, scan.Counters) {
	threads := max(cfg.Threads, 1)
	engine := scan.New(scan.Config{Threads: threads, Limits: cfg.Limits, MatchCacheSize: cfg.MatchCacheSize, NoMatchCache: cfg.NoMatchCache, MaxMatchData: 1, MatchDetails: cfg.MatchDetails})
	defer engine.Close()
	r := &runner{verdict: &verdict.Scanner{Engine: engine, Fetcher: cfg.Fetcher, Limits: cfg.Limits}, index: cfg.Index, rules: cfg.Rules}
	results := make([]Result, len(jobs))
	var g errgroup.Group
	g.SetLimit(threads)
	for i, j := range jobs {
		g.Go(func() error {
			results[i] = r.scanOne(ctx, j)
			return nil
		})
	}
	g.Wait() // scanOne's errors are in the results
	return results, engine.Counters()
}

// runner scans targets: the verdict path the worker uses, and the package
// index for releases.
type runner struct {
	verdict *verdict.Scanner
	index   *pkgindex.Index
	rules   *rules.Compiled
}

// scanOne scans one target through the verdict path, as a worker scans a
// distribution: the same bytes get the same verdict.
func (r *runner) scanOne(ctx context.Context, j Job) Result {
	if j.Release != nil {
		return r.scanRelease(ctx, *j.Release)
	}
	src := verdict.Source{Data: j.Data, Name: j.Target}
	switch {
	case j.Data == nil && j.Target == "":
		return Result{Err: errors.New("empty target: it names no file, directory or URL")}
	case j.Data != nil:
	case strings.HasPrefix(j.Target, "http://") || strings.HasPrefix(j.Target, "https://"):
		src = verdict.Source{URL: j.Target}
	default:
		src = verdict.Source{Path: j.Target}
	}
	v, err := r.verdict.Scan(ctx, r.rules, src)
	if err != nil {
		err = errors.New(verdict.Failure(v.Name, err).GetReason())
	}
	return Result{Target: j.Target, Scan: v.Result, Err: err}
}

// scanRelease resolves a release on the index, downloads each distribution
// (checked against the index's sha256), scans it through the verdict path and
// aggregates like the fleet: score the maximum over distributions, rules the
// union, inspector_url the top file of the top distribution. Any distribution
// that cannot be downloaded, verified or scanned fails the release.
func (r *runner) scanRelease(ctx context.Context, t pkgindex.Target) Result {
	rel := &Release{Name: t.Name, Version: t.Version}
	out := Result{Target: t.String(), Release: rel}
	if r.index == nil {
		out.Err = errors.New("no package index")
		return out
	}
	var (
		dists   []score.Distribution
		results []scan.Result
	)
	release, err := r.index.Fetch(ctx, t, func(d pkgindex.Distribution, data []byte) error {
		v, err := r.verdict.Scan(ctx, r.rules, verdict.Source{Data: data, Name: d.Filename})
		if err != nil {
			return errors.New(verdict.Failure(d.Filename, err).GetReason())
		}
		dists = append(dists, v.Distribution)
		results = append(results, v.Result)
		rel.Distributions = append(rel.Distributions, Distribution{Filename: d.Filename, URL: d.URL, SHA256: d.SHA256, Score: v.Score})
		return nil
	})
	if release != nil {
		out.Target = "pypi:" + release.Name + "==" + release.Version
		rel.Name, rel.Version = release.Name, release.Version
	}
	if err != nil {
		out.Err = err
		return out
	}
	pkg := score.Aggregate(dists)
	agg := scan.Result{}
	agg.Score = pkg.Score
	weights := map[string]int64{}
	for i, res := range results {
		prefix := rel.Distributions[i].Filename + "/"
		agg.Stats.Files += res.Stats.Files
		agg.Stats.Expanded += res.Stats.Expanded
		agg.Stats.Entries += res.Stats.Entries
		agg.Stats.ScanTime += res.Stats.ScanTime
		for _, f := range res.Files {
			f.Path = prefix + f.Path
			agg.Files = append(agg.Files, f)
		}
		for _, h := range res.Rules {
			weights[h.Name] = h.Weight
		}
	}
	for _, name := range pkg.RulesMatched {
		agg.Rules = append(agg.Rules, score.Hit{Name: name, Weight: weights[name]})
	}
	if pkg.Top >= 0 && pkg.TopFile != "" {
		agg.TopFile = rel.Distributions[pkg.Top].Filename + "/" + pkg.TopFile
		agg.TopScore = dists[pkg.Top].TopScore
		rel.InspectorURL = score.InspectorURL(rel.Name, rel.Version, rel.Distributions[pkg.Top].URL, pkg.TopFile)
	}
	out.Scan = agg
	return out
}
