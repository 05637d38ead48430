// Package scan is the scanner engine: it unpacks distributions in memory and
// scans their files with YARA on a fixed pool of scanner threads.
//
// Work is scheduled per file, not per distribution, so one huge wheel keeps
// every thread busy, while the unpacking of the next entries runs ahead of the
// scanners within a bounded memory budget. Each scanner thread keeps a few
// yara.Scanners (one per rule set or rule subset it scanned with lately);
// compiled rules are shared.
//
// Scanning less, exactly (the results are those of scanning every file with
// every rule; the differential tests prove it):
//   - filetype pruning (prune.go): a file is scanned only with the rules its
//     path admits and what they depend on, compiled as a subset of the rule
//     set; a file no rule admits is read and checked but not scanned;
//   - the match cache (cache.go): the matches of a file's bytes are kept
//     under the SHA-256 of the bytes and the exact rules scanned with, and
//     identical bytes in flight at once are scanned once.
//
// Config.Exhaustive turns both off. Every file is still read, inflated and
// checked exactly as without them (sizes, CRCs, limits), and every real scan
// runs under the scan timeout and the match memory guard.
//
// A tar hard link is a file of its own, scored under its own path from the
// rules that matched its target's bytes: the engine keeps the matches of
// every scanned file of a distribution and the rules each was scanned with,
// and scores a link once its target's scan is done, without scanning the
// same bytes again (see archive.Link) when its path admits no rule its
// target was not scanned with. Otherwise the target is scanned again with
// the rules the link admits, in a second pass over the distribution once
// the first one ended (the producer runs again; only the link targets are
// scanned).
//
// Memory is bounded four ways: unpacked content by Config.Budget, the
// libyara matches of one scan by Limits.MatchMemory (a watchdog stops a scan
// whose matches pass it; see package rules/matchmem), the matched data
// libyara copies per match by Config.MaxMatchData, and the match cache by
// Config.MatchCacheSize.
package scan

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/rules/matchmem"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	yara "github.com/hillu/go-yara/v4"
	"golang.org/x/sync/semaphore"
)

// Config bounds an Engine.
type Config struct {
	// Threads is the number of scanner threads (DRAGONFLY_THREADS).
	// Default: the CPUs available, as the Go runtime counts them
	// (runtime.GOMAXPROCS: a container's CPU limit included).
	Threads int
	// Limits bound each distribution: Expanded, File, Entries and ScanTimeout
	// apply here. Zero fields take limit.Defaults() (Limits.WithDefaults).
	Limits limit.Limits
	// Budget bounds the bytes of unpacked file content held in memory at once,
	// waiting for or under a scanner, over all distributions being scanned.
	// A file larger than Budget is admitted alone. Default 64 MiB.
	Budget int64
	// MaxMatchData bounds the bytes of matched data libyara copies and
	// keeps per match (YR_CONFIG_MAX_MATCH_DATA). Verdicts never depend on
	// it: conditions read match counts, offsets and lengths, never the
	// data, which only a display of matched strings needs; a worker wants
	// 1, which makes a match cost 57 bytes. The setting is libyara's, for
	// the whole process: New applies it, so the engine created last sets
	// it for all (set it before scanning starts). 0 means libyara's
	// default, 512; with MatchDetails it is at least 512.
	MaxMatchData int
	// MatchDetails collects, per file, the matched strings of the rules
	// counted for it (score.File.Strings): each string's first
	// score.MaxStringMatches matches (offset, length of the matched data
	// libyara kept, its first score.MaxMatchBytes bytes) and how many more.
	// Cached matches keep them too. Default false (a worker never needs
	// them).
	MatchDetails bool
	// TopFileOnly keeps, of a distribution's matched files, only the top
	// one (score.Tally.TopOnly): Result.Files holds it alone. A worker
	// reports nothing else; without it every matched file's path (up to
	// 4 KiB, up to Limits.Entries files) is held until the scan ends.
	// Default false (dragonfly scan lists every file).
	TopFileOnly bool
	// Exhaustive scans every file with every rule and caches nothing: the
	// plain path the differential tests compare with. Default false.
	Exhaustive bool
	// MatchCacheSize bounds the memory of the match cache, in bytes
	// (DRAGONFLY_MATCH_CACHE_SIZE): the matches of files already scanned,
	// by content and rules (see cache.go). Zero or negative: the default,
	// DefaultMatchCacheSize.
	MatchCacheSize int64
	// NoMatchCache turns the match cache off (DRAGONFLY_MATCH_CACHE_SIZE=0
	// or off): every file is scanned. Default false.
	NoMatchCache bool
	// Subsets bounds the compiled rule subsets kept per rule set (each
	// admitted set of rules is one; a file's path decides which it needs).
	// Default 64.
	Subsets int
	// OnFile, if set, is called after each file scan with its size and the
	// YARA time it took (for metrics). It must be fast and safe for
	// concurrent use. Files not scanned (OnSkip, OnCacheHit) are not
	// reported here.
	OnFile func(size int, d time.Duration)
	// OnSkip, if set, is called for each file no rule's filetype admits
	// (read and checked, not scanned), with its size.
	OnSkip func(size int)
	// OnCacheHit, if set, is called for each file whose matches came from
	// the match cache or from a scan of the same bytes in flight, with its
	// size.
	OnCacheHit func(size int)
	// OnSubset, if set, is called after each rule subset compilation with
	// its time and its error (the subset then falls back to the whole set).
	OnSubset func(took time.Duration, err error)
}

// MatchMemory is the limit a file breaks when its scan holds more match
// memory than Config.Limits.MatchMemory allows.
const MatchMemory = limit.MatchMemory

// libyaraMaxMatchData is libyara's default YR_CONFIG_MAX_MATCH_DATA.
const libyaraMaxMatchData = 512

// DefaultMatchCacheSize is the default of Config.MatchCacheSize.
const DefaultMatchCacheSize = 32 << 20

func (c Config) withDefaults() Config {
	if c.Threads <= 0 {
		c.Threads = runtime.GOMAXPROCS(0)
	}
	c.Limits = c.Limits.WithDefaults()
	if c.Budget <= 0 {
		c.Budget = 64 << 20
	}
	if c.MaxMatchData <= 0 || c.MatchDetails && c.MaxMatchData < libyaraMaxMatchData {
		c.MaxMatchData = libyaraMaxMatchData
	}
	c.MatchCacheSize = bound.Or(c.MatchCacheSize, DefaultMatchCacheSize)
	if c.Subsets <= 0 {
		c.Subsets = 64
	}
	return c
}

// Engine scans distributions. It is safe for concurrent use: several
// distributions may be scanned at once and share the scanner threads.
type Engine struct {
	cfg    Config
	files  chan *fileTask
	budget *semaphore.Weighted
	bufs   bufferPool
	guard  *matchmem.Guard
	cache  *matchCache // nil: off
	plans  planCache
	// forgets counts Forget calls: a scanner thread that sees it change
	// drops the scanners it keeps, which hold their rules.
	forgets atomic.Uint64
	setup   error // applying MaxMatchData failed: every scan fails with it
	wg      sync.WaitGroup
	mu      sync.RWMutex // guards closed against sends on files
	closed  bool
	// guardOnce stops the guard's watchdog once, after the scanners.
	guardOnce sync.Once
	count     counters
}

// counters are an engine's running totals (Counters).
type counters struct {
	scans, scanBytes, skips, skipBytes, hits, hitBytes, rescans atomic.Int64
	subsets, subsetFailures, subsetNanos                        atomic.Int64
}

// Counters are the work an engine did and the work it saved, since New.
type Counters struct {
	// Scans counts the YARA scans of files, ScannedBytes their bytes.
	Scans        int64
	ScannedBytes int64
	// Skipped counts the files no rule's filetype admits (read and
	// checked, never scanned), SkippedBytes their bytes.
	Skipped      int64
	SkippedBytes int64
	// CacheHits counts the files whose matches came from the match cache
	// or from a scan of the same bytes in flight, CacheHitBytes their bytes.
	CacheHits     int64
	CacheHitBytes int64
	// Rescans counts the hard link targets scanned again, in a second pass,
	// for rules their links admit.
	Rescans int64
	// Subsets counts the rule subsets compiled, SubsetFailures those that
	// fell back to the whole set, SubsetTime their compile time.
	Subsets        int64
	SubsetFailures int64
	SubsetTime     time.Duration
	// CacheEntries and CacheBytes are what the match cache holds now.
	CacheEntries int
	CacheBytes   int64
}

// Counters returns the engine's totals.
func (e *Engine) Counters() Counters {
	c := &e.count
	out := Counters{
		Scans: c.scans.Load(), ScannedBytes: c.scanBytes.Load(),
		Skipped: c.skips.Load(), SkippedBytes: c.skipBytes.Load(),
		CacheHits: c.hits.Load(), CacheHitBytes: c.hitBytes.Load(),
		Rescans: c.rescans.Load(),
		Subsets: c.subsets.Load(), SubsetFailures: c.subsetFailures.Load(),
		SubsetTime: time.Duration(c.subsetNanos.Load()),
	}
	if e.cache != nil {
		out.CacheEntries, out.CacheBytes = e.cache.usage()
	}
	return out
}

// New starts an engine with cfg.Threads scanner threads. Close stops them.
func New(cfg Config) *Engine {
	cfg = cfg.withDefaults()
	e := &Engine{
		cfg:    cfg,
		files:  make(chan *fileTask, 4*cfg.Threads),
		budget: semaphore.NewWeighted(cfg.Budget),
		guard:  matchmem.NewGuard(cfg.Limits.MatchMemory),
	}
	if !cfg.NoMatchCache && !cfg.Exhaustive {
		e.cache = newMatchCache(cfg.MatchCacheSize)
	}
	if cur, err := yara.GetConfiguration(yara.ConfigMaxMatchData); err != nil || cur != cfg.MaxMatchData {
		if err := yara.SetConfiguration(yara.ConfigMaxMatchData, cfg.MaxMatchData); err != nil {
			e.setup = fmt.Errorf("yara max match data %d: %w", cfg.MaxMatchData, err)
		}
	}
	for range cfg.Threads {
		e.wg.Add(1)
		go e.scanner()
	}
	return e
}

// onSubset counts a subset compilation and passes it on.
func (e *Engine) onSubset(took time.Duration, err error) {
	if err != nil {
		e.count.subsetFailures.Add(1)
	} else {
		e.count.subsets.Add(1)
	}
	e.count.subsetNanos.Add(int64(took))
	if e.cfg.OnSubset != nil {
		e.cfg.OnSubset(took, err)
	}
}

// Threads is the number of scanner threads.
func (e *Engine) Threads() int { return e.cfg.Threads }

// Limits are the limits the engine applies.
func (e *Engine) Limits() limit.Limits { return e.cfg.Limits }

// Close stops the scanner threads after the files already queued. Scans must
// not be started after Close; scans still running fail.
func (e *Engine) Close() {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.files)
	}
	e.mu.Unlock()
	e.wg.Wait()
	e.guardOnce.Do(e.guard.Close)
}

// ErrClosed is returned by scans on a closed engine.
var ErrClosed = errors.New("scan engine closed")

// Stats describe the work of one distribution.
type Stats struct {
	Format  string
	Entries int
	// Files counts the files scored: regular files and tar hard links,
	// each scored under its own path from its target's matches.
	Files int
	// Links counts the hard links among Files.
	Links int
	// Expanded counts the bytes of the regular files; a hard link adds
	// nothing.
	Expanded int64
	// Archives counts the files of a directory that are archives, scanned
	// as their bytes, not unpacked (archive.Stats.Archives).
	Archives int
	// Symlinks counts the symbolic links of a directory, skipped
	// (archive.Stats.Symlinks).
	Symlinks int
	// Scanned counts the files YARA scanned (Rescanned included),
	// ScannedBytes their bytes.
	Scanned      int
	ScannedBytes int64
	// Skipped counts the files no rule's filetype admits (read and checked,
	// not scanned), SkippedBytes their bytes.
	Skipped      int
	SkippedBytes int64
	// CacheHits counts the files whose matches came from the match cache
	// or from a scan of the same bytes in flight, CacheHitBytes their bytes.
	CacheHits     int
	CacheHitBytes int64
	// Rescanned counts the hard link targets scanned again in a second pass
	// with rules their links admit.
	Rescanned int
	// ScanTime is the YARA time summed over the files (CPU time of scanners).
	ScanTime time.Duration
	// Wall is the time from the start of unpacking to the last scan result.
	Wall time.Duration
}

// Result is the outcome of one distribution.
type Result struct {
	score.Distribution
	Stats Stats
}

// Producer walks a source of files: it calls alloc for each file's buffer and
// emit to hand the filled buffer over, and link for a file whose bytes are
// those of a file it emitted before (a hard link), which is scored under its
// own path from that file's matches and not scanned again.
//
// Run calls a producer a second time when a hard link's path admits rules
// its target was not scanned with: the second call must yield the same files
// with the same indexes, paths and bytes (only the link targets are scanned
// again; a file whose size differs from the first call fails the
// distribution). archive.Walk over the same bytes and DirProducer over an
// unchanged directory do.
type Producer func(ctx context.Context, alloc archive.Alloc, emit archive.Emit, link archive.Link) (archive.Stats, error)

// Scan unpacks the distribution in data (its file name is name) and scans
// every regular file with rs.
func (e *Engine) Scan(ctx context.Context, rs *rules.Compiled, name string, data []byte) (Result, error) {
	lim := e.cfg.Limits
	return e.Run(ctx, rs, func(ctx context.Context, alloc archive.Alloc, emit archive.Emit, link archive.Link) (archive.Stats, error) {
		return archive.Walk(ctx, data, name, lim, alloc, emit, link)
	})
}

// Run scans the files that produce yields with rs.
func (e *Engine) Run(ctx context.Context, rs *rules.Compiled, produce Producer) (Result, error) {
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := e.planFor(rs)
	d := &distScan{
		plan: p, rules: rs, cancel: cancel, ctx: ctx, details: e.cfg.MatchDetails,
		matches: map[int]fileMatches{}, waiting: map[int][]fileLink{}, rescan: map[int]*rescan{},
		tally: score.Tally{TopOnly: e.cfg.TopFileOnly},
	}
	d.cacheable = e.cache != nil && p.cacheable

	// Buffers taken by alloc and not yet handed to emit. A producer may also
	// emit a buffer of its own (not from alloc): it costs no budget. Budget of
	// buffers never emitted (the producer failed in between) is given back
	// when the run ends.
	var (
		mu    sync.Mutex
		owned = map[*byte]int64{}
	)
	defer func() {
		for _, w := range owned {
			e.budget.Release(w)
		}
	}()
	alloc := func(ctx context.Context, n int) ([]byte, error) {
		b, err := e.alloc(ctx, n)
		if err != nil {
			return nil, err
		}
		if cap(b) > 0 {
			mu.Lock()
			owned[unsafe.SliceData(b[:1])] = e.weight(n)
			mu.Unlock()
		}
		return b, nil
	}
	// task wraps an emitted buffer.
	task := func(index int, path string, data []byte) *fileTask {
		var w int64
		pooled := false
		if cap(data) > 0 {
			mu.Lock()
			k := unsafe.SliceData(data[:1])
			w, pooled = owned[k]
			delete(owned, k)
			mu.Unlock()
		}
		return &fileTask{dist: d, index: index, path: path, data: data, weight: w, pooled: pooled}
	}
	emit := func(index int, path string, data []byte) error {
		t := task(index, path, data)
		d.emitted(index, len(data))
		return e.enqueue(ctx, t)
	}
	link := func(index int, path string, target int) error {
		d.link(index, path, target)
		return nil
	}
	st, err := produce(ctx, alloc, emit, link)
	if err != nil {
		// Scanners skip the files still queued for this distribution.
		cancel(err)
	}
	d.pending.Wait()

	// The second pass: targets whose links admit rules they were not
	// scanned with are scanned again with those rules.
	if again := d.takeRescans(); len(again) > 0 && ctx.Err() == nil {
		emit2 := func(index int, path string, data []byte) error {
			t := task(index, path, data)
			rs, ok := again[index]
			if !ok {
				e.release(t)
				return nil
			}
			if size, _ := d.sizeOf(index); size != len(data) {
				e.release(t)
				return fmt.Errorf("%s: the second pass over the distribution read %d bytes, the first %d",
					clip.String(path, clip.Default), len(data), size)
			}
			t.tgt, t.rescan = rs, true
			return e.enqueue(ctx, t)
		}
		if _, err := produce(ctx, alloc, emit2, func(int, string, int) error { return nil }); err != nil {
			cancel(err)
		}
		d.pending.Wait()
	}
	if n := d.unscored(); n > 0 && ctx.Err() == nil {
		// A producer reported links to files it never emitted: fail rather
		// than drop them.
		cancel(fmt.Errorf("%d hard links to files never scanned", n))
	}

	res := Result{Distribution: d.tally.Distribution()}
	res.Stats = Stats{
		Format:        st.Format.String(),
		Entries:       st.Entries,
		Files:         st.Files,
		Links:         st.Links,
		Expanded:      st.Expanded,
		Archives:      st.Archives,
		Symlinks:      st.Symlinks,
		Scanned:       int(d.scanned.Load()),
		ScannedBytes:  d.scannedBytes.Load(),
		Skipped:       int(d.skipped.Load()),
		SkippedBytes:  d.skippedBytes.Load(),
		CacheHits:     int(d.hits.Load()),
		CacheHitBytes: d.hitBytes.Load(),
		Rescanned:     int(d.rescans.Load()),
		ScanTime:      time.Duration(d.scanTime.Load()),
		Wall:          time.Since(start),
	}
	// The first failure wins: a scanner's (which cancelled the walk), the
	// walk's own, or the caller's cancellation.
	return res, context.Cause(ctx)
}

// enqueue hands t to the scanner threads as one more pending scan of its
// distribution; when it cannot (the engine is closed, ctx is done), t is not
// pending and its buffer is released.
func (e *Engine) enqueue(ctx context.Context, t *fileTask) error {
	t.dist.pending.Add(1)
	err := e.send(ctx, t)
	if err != nil {
		t.dist.pending.Done()
		e.release(t)
	}
	return err
}

// send puts t on the queue of the scanner threads.
func (e *Engine) send(ctx context.Context, t *fileTask) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	select {
	case e.files <- t:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// alloc takes a buffer of n bytes within the memory budget.
func (e *Engine) alloc(ctx context.Context, n int) ([]byte, error) {
	if err := e.budget.Acquire(ctx, e.weight(n)); err != nil {
		return nil, context.Cause(ctx)
	}
	return e.bufs.get(n), nil
}

func (e *Engine) weight(n int) int64 { return min(int64(n), e.cfg.Budget) }

// release gives back a file's budget and buffer.
func (e *Engine) release(t *fileTask) {
	if t.pooled {
		e.budget.Release(t.weight)
		e.bufs.put(t.data)
	}
	t.data, t.pooled = nil, false
}

type fileTask struct {
	dist   *distScan
	index  int
	path   string
	data   []byte
	size   int   // len(data), kept after the buffer is released
	weight int64 // budget held by data
	pooled bool  // data came from alloc
	// tgt, when set, is what to scan with (a second pass; rescan marks
	// such a task), or the target of a file that joined a scan in flight.
	tgt    *target
	rescan bool
}

// distScan is the state of one distribution being scanned.
type distScan struct {
	plan      *plan
	rules     *rules.Compiled
	ctx       context.Context
	cancel    context.CancelCauseFunc
	pending   sync.WaitGroup
	details   bool
	cacheable bool

	scanTime, scanned, scannedBytes, skipped, skippedBytes atomic.Int64
	hits, hitBytes, rescans                                atomic.Int64

	mu    sync.Mutex
	tally score.Tally
	// sizes are the sizes of the emitted files by index (-1: not emitted).
	sizes []int
	// done marks the file indexes scanned (or skipped), with holds the
	// rules each was scanned with (every admitted rule's result among them
	// is exact), matches the matches of each file with at least one.
	done    []uint64
	with    map[int]ruleBits
	matches map[int]fileMatches
	// waiting holds the hard links whose target is not scanned yet, by
	// target index; rescan the links whose target must be scanned again
	// with rules they admit, by target index.
	waiting map[int][]fileLink
	rescan  map[int]*rescan
}

// fileLink is a hard link waiting for its target's matches.
type fileLink struct {
	index int
	path  string
	adm   ruleBits // the rules its path admits (nil: every rule)
}

// rescan is a target to scan again for its links.
type rescan struct {
	links []fileLink
	adm   ruleBits // union of the links' admitted rules
}

// emitted records the size of the file at index.
func (d *distScan) emitted(index, size int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.sizes) <= index {
		d.sizes = append(d.sizes, -1)
	}
	d.sizes[index] = size
}

func (d *distScan) sizeOf(index int) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if index < len(d.sizes) && d.sizes[index] >= 0 {
		return d.sizes[index], true
	}
	return -1, false
}

// newFile scores the file at path from m.
func (d *distScan) newFile(path string, m fileMatches) score.File {
	if d.details {
		return score.NewFileStrings(path, m.rules, m.strings)
	}
	return score.NewFile(path, m.rules)
}

// record stores the matches of the file at index, scanned with the rules in
// holds, scores it, and scores or queues the links that waited for it.
func (d *distScan) record(index int, path string, holds ruleBits, m fileMatches) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.done) <= index/64 {
		d.done = append(d.done, 0)
	}
	d.done[index/64] |= 1 << (index % 64)
	if d.with == nil {
		d.with = map[int]ruleBits{}
	}
	d.with[index] = holds
	if len(m.rules) > 0 || len(m.capped) > 0 {
		d.matches[index] = m
	}
	if len(m.rules) > 0 {
		d.tally.Add(index, d.newFile(path, m))
	}
	for _, l := range d.waiting[index] {
		d.linkDone(index, l, holds, m)
	}
	delete(d.waiting, index)
}

// linkDone scores link l of the scanned file at target, or queues it for
// the second pass. d.mu is held.
func (d *distScan) linkDone(target int, l fileLink, holds ruleBits, m fileMatches) {
	if l.adm == nil || l.adm.subsetOf(holds) {
		adm := l.adm
		if adm == nil {
			adm = d.plan.admit(l.path)
		}
		if len(m.capped) > 0 && d.plan.capCounts(adm, m.capped) {
			// Failed as the target's scan with the link's rules fails.
			d.cancel(capError(m.cappedPath))
			return
		}
		if len(m.rules) > 0 {
			d.tally.Add(l.index, d.newFile(l.path, m))
		}
		return
	}
	r := d.rescan[target]
	if r == nil {
		r = &rescan{adm: newRuleBits(d.plan.n)}
		d.rescan[target] = r
	}
	r.links = append(r.links, l)
	r.adm = r.adm.or(l.adm)
}

// rescanned scores the links of target from its second-pass matches.
func (d *distScan) rescanned(target int, m fileMatches) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.rescan[target]
	delete(d.rescan, target)
	if r == nil || len(m.rules) == 0 {
		return
	}
	for _, l := range r.links {
		d.tally.Add(l.index, d.newFile(l.path, m))
	}
}

// takeRescans returns what to scan in the second pass: by target index,
// what to scan it with (the rules its links admit, and what they depend
// on).
func (d *distScan) takeRescans() map[int]*target {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.rescan) == 0 {
		return nil
	}
	out := map[int]*target{}
	for i, r := range d.rescan {
		out[i] = d.plan.targetOf(r.adm)
	}
	return out
}

// unscored counts the links still waiting for their target or a rescan.
func (d *distScan) unscored() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, ls := range d.waiting {
		n += len(ls)
	}
	for _, r := range d.rescan {
		n += len(r.links)
	}
	return n
}

// link scores the hard link at index, whose bytes are those of the file at
// target, from target's matches: at once when target is scanned, else when
// it is; a link whose path admits rules target was not scanned with waits
// for the second pass.
func (d *distScan) link(index int, path string, target int) {
	var adm ruleBits
	if d.plan.skip {
		adm = d.plan.admit(path)
	}
	l := fileLink{index: index, path: path, adm: adm}
	d.mu.Lock()
	defer d.mu.Unlock()
	if target/64 < len(d.done) && d.done[target/64]&(1<<(target%64)) != 0 {
		d.linkDone(target, l, d.with[target], d.matches[target])
		return
	}
	d.waiting[target] = append(d.waiting[target], l)
}

// scanners is one scanner thread's yara.Scanners, one per rule set (or
// subset) it scanned with lately, most recent first.
type scanners struct {
	e    *Engine
	list []*threadScanner
	seen uint64 // e.forgets when list was last dropped
}

type threadScanner struct {
	rules *rules.Compiled
	sc    *yara.Scanner
	slot  *matchmem.Slot
}

// maxThreadScanners bounds the scanners one thread keeps (each holds
// per-string state for its rules).
const maxThreadScanners = 8

func (s *scanners) get(rs *rules.Compiled, cb *matchCollector) (*threadScanner, error) {
	if n := s.e.forgets.Load(); n != s.seen {
		// Rule sets were forgotten: their scanners would keep them.
		s.destroy()
		s.seen = n
	}
	for i, ts := range s.list {
		if ts.rules == rs {
			copy(s.list[1:i+1], s.list[:i])
			s.list[0] = ts
			return ts, nil
		}
	}
	sc, slot, err := s.e.newScanner(rs)
	if err != nil {
		return nil, err
	}
	sc.SetCallback(cb).SetTimeout(rules.Timeout(s.e.cfg.Limits.ScanTimeout))
	ts := &threadScanner{rules: rs, sc: sc, slot: slot}
	s.list = append([]*threadScanner{ts}, s.list...)
	if len(s.list) > maxThreadScanners {
		s.list[len(s.list)-1].sc.Destroy()
		s.list = s.list[:len(s.list)-1]
	}
	return ts, nil
}

func (s *scanners) destroy() {
	for _, ts := range s.list {
		ts.sc.Destroy()
	}
	s.list = nil
}

// scanner is one scanner thread.
func (e *Engine) scanner() {
	defer e.wg.Done()
	cb := &matchCollector{details: e.cfg.MatchDetails}
	s := scanners{e: e}
	defer s.destroy()
	for t := range e.files {
		d := t.dist
		if d.ctx.Err() != nil || !e.process(&s, cb, t) {
			e.release(t)
			d.pending.Done()
		}
	}
}

// process scans one file (or takes its matches from the cache, or skips
// it) and records the outcome. It returns true when the task joined a scan
// in flight: its leader then records it and marks it done.
func (e *Engine) process(s *scanners, cb *matchCollector, t *fileTask) bool {
	d := t.dist
	t.size = len(t.data)
	tg := t.tgt
	if tg == nil {
		tg, _ = d.plan.targetFor(t.path)
	}
	tg.compile()
	if tg.rules == nil {
		d.skipped.Add(1)
		d.skippedBytes.Add(int64(t.size))
		e.count.skips.Add(1)
		e.count.skipBytes.Add(int64(t.size))
		if e.cfg.OnSkip != nil {
			e.cfg.OnSkip(t.size)
		}
		e.apply(t, tg, outcome{})
		return false
	}
	var key cacheKey
	if d.cacheable {
		key = cacheKey{rules: tg.id, content: sha256.Sum256(t.data)}
		// A file joining a scan in flight is recorded by the leader under
		// its own target (w.tgt): targets of other admitted sets may share
		// an identity (the whole set).
		t.tgt = tg
		switch l, m := e.cache.begin(key, t); l {
		case hit:
			e.hit(t)
			e.apply(t, tg, outcome{m: m})
			return false
		case joined:
			// The leader records this file when its scan ends; its bytes
			// are not needed any more.
			e.release(t)
			return true
		}
	}
	o := e.scanFile(s, cb, tg, t)
	e.apply(t, tg, o)
	if d.cacheable {
		for _, w := range e.cache.finish(key, o) {
			if w.dist.ctx.Err() == nil {
				if o.fail == nil {
					e.hit(w)
				}
				e.apply(w, w.tgt, o)
			}
			w.dist.pending.Done()
		}
	}
	return false
}

// hit counts a file whose matches came without a scan.
func (e *Engine) hit(t *fileTask) {
	t.dist.hits.Add(1)
	t.dist.hitBytes.Add(int64(t.size))
	e.count.hits.Add(1)
	e.count.hitBytes.Add(int64(t.size))
	if e.cfg.OnCacheHit != nil {
		e.cfg.OnCacheHit(t.size)
	}
}

// apply records the outcome of t's bytes under tg for t's distribution.
func (e *Engine) apply(t *fileTask, tg *target, o outcome) {
	d := t.dist
	if o.fail != nil {
		d.cancel(o.fail(t.path))
		return
	}
	if len(o.m.capped) > 0 {
		// The matches may be another path's (the cache, a scan in flight):
		// whether a capped string counts is t's path's to say, and a link
		// failing for it names t's path.
		if tg.capCounts(t.path, o.m.capped) {
			d.cancel(capError(t.path))
			return
		}
		o.m.cappedPath = t.path
	}
	if t.rescan {
		d.rescanned(t.index, o.m)
		return
	}
	d.record(t.index, t.path, tg.holds, o.m)
}

// newScanner returns a scanner for rs and its match memory guard slot.
func (e *Engine) newScanner(rs *rules.Compiled) (*yara.Scanner, *matchmem.Slot, error) {
	if e.setup != nil {
		return nil, nil, e.setup
	}
	sc, err := rules.NewScanner(rs.Yara())
	if err != nil {
		return nil, nil, fmt.Errorf("yara scanner: %w", err)
	}
	slot, err := e.guard.Slot(sc)
	if err != nil {
		sc.Destroy()
		return nil, nil, err
	}
	return sc, slot, nil
}

// scanFile scans t's bytes with tg's rules.
func (e *Engine) scanFile(s *scanners, cb *matchCollector, tg *target, t *fileTask) outcome {
	d := t.dist
	ts, err := s.get(tg.rules, cb)
	if err != nil {
		return outcome{fail: func(string) error { return err }}
	}
	cb.reset()
	cb.slot = ts.slot
	watch := ts.slot.NeedsWatch(len(t.data))
	if watch {
		cb.watch = ts.slot
		ts.slot.Begin()
	}
	start := time.Now()
	err = ts.sc.ScanMem(t.data)
	el := time.Since(start)
	stopped := watch && ts.slot.End()
	if stopped {
		// The watchdog set the scanner's timeout to stop it.
		ts.sc.SetTimeout(rules.Timeout(e.cfg.Limits.ScanTimeout))
	}
	d.scanTime.Add(int64(el))
	d.scanned.Add(1)
	d.scannedBytes.Add(int64(len(t.data)))
	e.count.scans.Add(1)
	e.count.scanBytes.Add(int64(len(t.data)))
	if t.rescan {
		d.rescans.Add(1)
		e.count.rescans.Add(1)
	}
	if e.cfg.OnFile != nil {
		e.cfg.OnFile(len(t.data), el)
	}
	if stopped || cb.over {
		max := e.cfg.Limits.MatchMemory
		return outcome{fail: func(path string) error { return &limit.Error{Kind: MatchMemory, Max: max, Path: path} }}
	}
	if err == nil {
		err = cb.err
	}
	if err != nil {
		var ye yara.Error
		if errors.As(err, &ye) && ye == errScanTimeout {
			max := int64(e.cfg.Limits.ScanTimeout)
			return outcome{fail: func(path string) error { return &limit.Error{Kind: limit.ScanTimeout, Max: max, Path: path} }}
		}
		return outcome{fail: func(path string) error { return fmt.Errorf("%s: yara: %w", clip.String(path, clip.Default), err) }}
	}
	var m fileMatches
	if len(cb.capped) > 0 {
		// libyara dropped a string's matches past its cap: a condition
		// reading them was decided without them, so no verdict is exact
		// when one counts for the file (or a link to it).
		if tg.capCounts(t.path, cb.capped) {
			return outcome{fail: func(path string) error { return capError(path) }}
		}
		m.capped, m.cappedPath = cb.capped, t.path
	}
	if len(cb.names) > 0 {
		m.rules = make([]score.Rule, 0, len(cb.names))
		for _, n := range cb.names {
			if r, ok := d.rules.Rule(n); ok {
				m.rules = append(m.rules, r)
			} else {
				m.rules = append(m.rules, score.Rule{Name: n})
			}
		}
		m.strings = cb.strings
		cb.strings = nil
	}
	return outcome{m: m}
}

// capError is the failure of the file at path whose result reads a string
// libyara stopped keeping matches of at its cap.
func capError(path string) error {
	return &limit.Error{Kind: limit.StringMatches, Max: matchmem.MaxStringMatches, Path: path}
}

// errScanTimeout is libyara's ERROR_SCAN_TIMEOUT (yara/error.h), which
// go-yara does not export as a Go constant.
const errScanTimeout yara.Error = 26

// matchCollector records the identifiers of matching rules (and, with
// details, their matched strings), whether libyara dropped matches of a
// string past its cap, and, for a watched scan, whether its matches passed
// the guard's bound.
type matchCollector struct {
	details bool
	names   []string
	strings []score.StringHits
	err     error
	slot    *matchmem.Slot // the scanner's slot
	capped  []int          // the rules of strings libyara stopped at its cap
	watch   *matchmem.Slot // the slot of a watched scan, else nil
	over    bool
}

func (m *matchCollector) reset() {
	m.names = m.names[:0]
	m.strings, m.err = nil, nil
	m.slot, m.capped = nil, nil
	m.watch, m.over = nil, false
}

func (m *matchCollector) RuleMatching(sc *yara.ScanContext, r *yara.Rule) (bool, error) {
	m.names = append(m.names, r.Identifier())
	if m.details {
		s, err := stringDetails(sc, r)
		if err != nil {
			m.err = err
			return true, nil
		}
		m.strings = append(m.strings, s...)
	}
	return false, nil
}

// ScanFinished runs before libyara frees the scan's matches: the last look
// at what they cost, whenever the watchdog last looked, and at whether a
// string was disabled at libyara's cap.
func (m *matchCollector) ScanFinished(*yara.ScanContext) (bool, error) {
	if m.watch != nil && m.watch.Over() {
		m.over = true
	}
	if m.slot != nil {
		m.capped = m.slot.CappedRules()
	}
	return false, nil
}
