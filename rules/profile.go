package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/rules/matchmem"
	"github.com/dragonfly-fleet/fleet/score"
	yara "github.com/hillu/go-yara/v4"
	"golang.org/x/sys/unix"
)

// Rule profiling. libyara 4.2 has no profiler of its own (it is a build
// option Debian's libyara lacks) and every rule of a set shares one string
// search, so a rule's cost is measured, not read: the rule is compiled alone
// with what it may depend on (Set.Subset: the rules its condition names and
// every global rule) and scanned over the files its filetype admits; its cost
// is that scan's time minus the time of the same files' scan with the
// subset's base: the subset without the rule (Set.profileBase), so neither
// a rule it names nor another global rule is charged to it (where the rule
// cannot be left out, as when a rule it depends on names it in turn: the
// global rules alone, or no rule at all for a global one). Times are the CPU time of the threads
// that scan (CLOCK_THREAD_CPUTIME_ID: other processes and threads on the
// machine do not count), summed over them, so the cost is scanner CPU time,
// not wall time, whatever the threads; the bases are timed file by file, so
// each rule's base covers exactly the files it admits. The costs only approximate the full set's scan time: the full set
// searches every string in one pass, shares atoms, and scans every file with
// every rule; Profile measures that time too, to compare.
//
// Every scan runs under the bounds of the fleet's scans: the timeout and
// the match memory guard (package matchmem), so a file crafted to match
// millions of times stops its scan near ProfileConfig.MatchMemory instead
// of making libyara hold gigabytes.

// ProfileFile is one file to profile over: its path, as the filetype filter
// reads it (archive-relative, "pkg-1.0/setup.py"), and its content.
type ProfileFile struct {
	Path string
	Data []byte
}

// ProfileConfig bounds a profile.
type ProfileConfig struct {
	// Threads is the number of files scanned at once. Default: the CPUs
	// available (runtime.GOMAXPROCS).
	Threads int
	// Timeout bounds the YARA time of one file's scan, as the fleet's scan
	// timeout does; a scan stopped by it counts its time and a timeout.
	// Default 10 s.
	Timeout time.Duration
	// MatchMemory bounds the memory libyara holds for the matches of one
	// file's scan, as the fleet's scan engine does (scan.Config.MatchMemory):
	// a scan whose matches pass it is stopped (package matchmem) and counts
	// its time and one file over match memory. Each thread may hold this
	// much at once. Default 64 MiB (matchmem.DefaultBound), the engine's.
	MatchMemory int64
	// MaxMatchData, if positive, is applied before measuring as libyara's
	// YR_CONFIG_MAX_MATCH_DATA, the bytes of matched data copied per match:
	// a setting of the whole process, as scan.Config.MaxMatchData is.
	// Workers scan with 1. 0 leaves the process's setting.
	MaxMatchData int
	// Progress, if set, is called after each measurement with the number
	// done, the number in all (the rules, the bases and the full set) and
	// what was measured. It is called from Profile's goroutine.
	Progress func(done, total int, what string)
}

// RuleCost is what one rule costs.
type RuleCost struct {
	// Rule is the identifier, File the name of its source (Set.FileName).
	Rule string
	File string
	// Private and Global are the rule's modifiers.
	Private, Global bool
	// Seconds is the measured cost (never negative).
	Seconds float64
	// Share is Seconds over the sum of every rule's Seconds (0 when that is 0).
	Share float64
	// Matches counts the admitted files the rule matched; -1 for a private
	// rule, whose matches libyara does not report.
	Matches int
	// Files and Bytes count the files the rule's filetype admits and their
	// bytes.
	Files int
	Bytes int64
	// Timeouts counts the admitted files whose scan hit the timeout.
	Timeouts int
	// OverMatchMemory counts the admitted files whose scan was stopped (or
	// failed when it finished) because its matches held more memory than
	// ProfileConfig.MatchMemory. Such a file counts no match.
	OverMatchMemory int
	// Warnings are libyara's compile warnings about the rule.
	Warnings []Diagnostic
}

// ProfileReport is a profile: the rules, most expensive first, and the
// measurements to compare their sum with.
type ProfileReport struct {
	Rules []RuleCost
	// Sum is the sum of the rules' Seconds.
	Sum float64
	// FullSet is the scan time of the whole set over every file, and Empty
	// that of a set without rules (the cost of calling libyara).
	FullSet, Empty float64
	// Files and Bytes count every file profiled over.
	Files int
	Bytes int64
}

// Profile measures the cost of each rule of s over files (see above). The
// set must compile (a *CompileError otherwise) and split into its rules
// (Set.Rules).
func Profile(ctx context.Context, s Set, files []ProfileFile, cfg ProfileConfig) (ProfileReport, error) {
	if cfg.Threads <= 0 {
		cfg.Threads = runtime.GOMAXPROCS(0)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MatchMemory <= 0 {
		cfg.MatchMemory = matchmem.DefaultBound
	}
	full, diags, err := compile(s)
	if err != nil {
		return ProfileReport{}, err
	}
	infos, err := s.Rules()
	if err != nil {
		return ProfileReport{}, fmt.Errorf("profile: %w", err)
	}
	warnings := map[string][]Diagnostic{}
	for _, d := range diags {
		if d.Rule != "" {
			warnings[d.Rule] = append(warnings[d.Rule], d)
		}
	}
	if cfg.MaxMatchData > 0 {
		if err := yara.SetConfiguration(yara.ConfigMaxMatchData, cfg.MaxMatchData); err != nil {
			return ProfileReport{}, fmt.Errorf("yara max match data %d: %w", cfg.MaxMatchData, err)
		}
	}
	rep := ProfileReport{Files: len(files)}
	for _, f := range files {
		rep.Bytes += int64(len(f.Data))
	}
	all := make([]int, len(files))
	for i := range files {
		all[i] = i
	}
	p := &profiler{files: files, cfg: cfg, guard: matchmem.NewGuard(cfg.MatchMemory)}
	defer p.guard.Close()
	total := len(infos) + 3
	done := 0
	step := func(what string) {
		done++
		if cfg.Progress != nil {
			cfg.Progress(done, total, what)
		}
	}

	// The bases: no rule at all, and the global rules alone.
	empty, err := compileText("")
	if err != nil {
		return ProfileReport{}, err
	}
	emptyRun, err := p.run(ctx, empty, all, "", true)
	if err != nil {
		return ProfileReport{}, err
	}
	rep.Empty = emptyRun.cpu.Seconds()
	step("a set without rules")
	globalsRun := emptyRun
	globals, err := s.Subset(nil)
	if err != nil {
		return ProfileReport{}, fmt.Errorf("profile: %w", err)
	}
	if len(globals.Sources) > 0 {
		gr, err := compileSubset(globals)
		if err != nil {
			return ProfileReport{}, err
		}
		if globalsRun, err = p.run(ctx, gr, all, "", true); err != nil {
			return ProfileReport{}, err
		}
	}
	step("the global rules")
	// The bases measured, by the hash of their set ("": no rule at all).
	bases := map[string]runResult{"": emptyRun}
	if len(globals.Sources) > 0 {
		bases[globals.Hash] = globalsRun
	}
	fr, err := p.run(ctx, full.Yara(), all, "", false)
	if err != nil {
		return ProfileReport{}, err
	}
	rep.FullSet = fr.cpu.Seconds()
	step("the full set")

	for _, info := range infos {
		admitted := make([]int, 0, len(files))
		rc := RuleCost{Rule: info.Name, File: s.FileName(info.Stem), Private: info.Private, Global: info.Global, Warnings: warnings[info.Name]}
		for i, f := range files {
			if (score.Rule{Filetypes: info.Filetypes}).Applies(f.Path) {
				admitted = append(admitted, i)
				rc.Bytes += int64(len(f.Data))
			}
		}
		rc.Files = len(admitted)
		sub, err := s.Subset([]string{info.Name})
		if err != nil {
			return ProfileReport{}, fmt.Errorf("profile: %w", err)
		}
		yr, err := compileSubset(sub)
		if err != nil {
			return ProfileReport{}, err
		}
		match := info.Name
		if info.Private {
			match = ""
		}
		r, err := p.run(ctx, yr, admitted, match, false)
		if err != nil {
			return ProfileReport{}, err
		}
		base, err := p.base(ctx, s, info, bases, all)
		if err != nil {
			return ProfileReport{}, err
		}
		spent := r.cpu
		for _, i := range admitted {
			spent -= base.times[i]
		}
		rc.Seconds = max(spent.Seconds(), 0)
		rc.Matches, rc.Timeouts, rc.OverMatchMemory = r.matches, r.timeouts, r.overMemory
		if info.Private {
			rc.Matches = -1
		}
		rep.Rules = append(rep.Rules, rc)
		rep.Sum += rc.Seconds
		step(info.Name)
	}
	for i := range rep.Rules {
		if rep.Sum > 0 {
			rep.Rules[i].Share = rep.Rules[i].Seconds / rep.Sum
		}
	}
	slices.SortStableFunc(rep.Rules, func(a, b RuleCost) int {
		return cmp.Or(cmp.Compare(b.Seconds, a.Seconds), strings.Compare(a.Rule, b.Rule))
	})
	return rep, nil
}

// base returns the scan, file by file, that the cost of the rule of info is
// measured against: the rules its subset holds without it (Set.profileBase),
// scanned once per distinct set (bases, by hash) over every file. Where the
// rule cannot be left out of them, the global rules alone (for a global
// rule: no rule at all).
func (p *profiler) base(ctx context.Context, s Set, info RuleInfo, bases map[string]runResult, all []int) (runResult, error) {
	bs, ok, err := s.profileBase(info.Name)
	if err != nil {
		return runResult{}, fmt.Errorf("profile: %w", err)
	}
	key := bs.Hash
	if !ok {
		globals, err := s.Subset(nil)
		if err != nil {
			return runResult{}, fmt.Errorf("profile: %w", err)
		}
		key = globals.Hash
		if info.Global || len(globals.Sources) == 0 {
			key = ""
		}
	}
	if r, seen := bases[key]; seen {
		return r, nil
	}
	yr, err := compileSubset(bs)
	if err != nil {
		return runResult{}, err
	}
	r, err := p.run(ctx, yr, all, "", true)
	if err != nil {
		return runResult{}, err
	}
	bases[key] = r
	return r, nil
}

// compileSubset compiles a subset (which may hold no source: no rules).
func compileSubset(s Set) (*yara.Rules, error) {
	if len(s.Sources) == 0 {
		return compileText("")
	}
	c, _, err := compile(s)
	if err != nil {
		return nil, fmt.Errorf("profile: subset: %w", err)
	}
	return c.Yara(), nil
}

// compileText compiles YARA source text (empty: a set without rules).
func compileText(text string) (*yara.Rules, error) {
	yr, _, err := yaraCompile(text)
	if err != nil {
		return nil, fmt.Errorf("yara: %w", err)
	}
	return yr, nil
}

// profiler scans files with one rule set after another.
type profiler struct {
	files []ProfileFile
	cfg   ProfileConfig
	guard *matchmem.Guard // bounds each scan's matches by cfg.MatchMemory
}

// runResult is one scan of some files: the CPU time it took, each file's
// (by index into the profiler's files; zero for files not scanned) when
// asked for, the files on which the rule named matched, the scans stopped
// by the timeout and those whose matches passed the match memory bound.
type runResult struct {
	cpu        time.Duration
	times      []time.Duration
	matches    int
	timeouts   int
	overMemory int
}

// errScanTimeout is libyara's ERROR_SCAN_TIMEOUT (yara/error.h).
const errScanTimeout yara.Error = 26

// run scans the files at indexes with yr on cfg.Threads goroutines, each
// with its own scanner, and counts the files on which the rule named match
// matched ("" counts none). perFile times each file (two clock reads per
// file); else only each goroutine's loop is timed. Each scan that could
// pass the match memory bound is watched by the profiler's guard.
func (p *profiler) run(ctx context.Context, yr *yara.Rules, indexes []int, match string, perFile bool) (runResult, error) {
	res := runResult{}
	if perFile {
		res.times = make([]time.Duration, len(p.files))
	}
	// Each goroutine takes the next file by an atomic counter: no hand-off
	// between (locked) threads per file.
	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for range min(p.cfg.Threads, max(len(indexes), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The thread's CPU clock measures this goroutine's scans only
			// while it keeps its thread.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			sc, err := NewScanner(yr)
			if err != nil {
				fail(fmt.Errorf("yara scanner: %w", err))
				return
			}
			defer sc.Destroy()
			slot, err := p.guard.Slot(sc)
			if err != nil {
				fail(err)
				return
			}
			var cb matchFinder
			cb.name = match
			sc.SetCallback(&cb).SetTimeout(Timeout(p.cfg.Timeout))
			matches, timeouts, overMemory := 0, 0, 0
			var cpu time.Duration
			clock := func() time.Duration {
				t, err := threadCPU()
				if err != nil {
					fail(fmt.Errorf("thread cpu clock: %w", err))
				}
				return t
			}
			loopStart := clock()
			for {
				k := int(next.Add(1) - 1)
				if k >= len(indexes) || ctx.Err() != nil {
					break
				}
				i := indexes[k]
				cb.found, cb.watch, cb.over = false, nil, false
				watch := slot.NeedsWatch(len(p.files[i].Data))
				if watch {
					cb.watch = slot
					slot.Begin()
				}
				var start time.Duration
				if perFile {
					start = clock()
				}
				err := sc.ScanMem(p.files[i].Data)
				if perFile {
					d := clock() - start
					res.times[i] = d
					cpu += d
				}
				stopped := watch && slot.End()
				if stopped {
					// The guard set the scanner's timeout to stop it.
					sc.SetTimeout(Timeout(p.cfg.Timeout))
				}
				var ye yara.Error
				switch {
				case stopped || cb.over:
					overMemory++
				case errors.As(err, &ye) && ye == errScanTimeout:
					timeouts++
				case err != nil:
					fail(fmt.Errorf("yara: %s: %w", p.files[i].Path, err))
				case cb.found:
					matches++
				}
			}
			if !perFile {
				cpu = clock() - loopStart
			}
			mu.Lock()
			res.cpu += cpu
			res.matches += matches
			res.timeouts += timeouts
			res.overMemory += overMemory
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return runResult{}, err
	}
	return res, firstErr
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

// matchFinder notes whether the rule named matched and, for a scan the
// guard watches, whether its matches passed the bound.
type matchFinder struct {
	name  string
	found bool
	watch *matchmem.Slot // the slot of a watched scan, else nil
	over  bool
}

func (m *matchFinder) RuleMatching(_ *yara.ScanContext, r *yara.Rule) (bool, error) {
	if m.name != "" && r.Identifier() == m.name {
		m.found = true
	}
	return false, nil
}

// ScanFinished runs before libyara frees the scan's matches: the last look
// at what they cost, whenever the guard's watchdog last looked.
func (m *matchFinder) ScanFinished(*yara.ScanContext) (bool, error) {
	if m.watch != nil && m.watch.Over() {
		m.over = true
	}
	return false, nil
}
