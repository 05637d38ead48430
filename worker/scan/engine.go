// Package scan is the scanner engine: it unpacks distributions in memory and
// scans every regular file with YARA on a fixed pool of scanner threads.
//
// Work is scheduled per file, not per distribution, so one huge wheel keeps
// every thread busy, while the unpacking of the next entries runs ahead of the
// scanners within a bounded memory budget. Each scanner thread owns one
// yara.Scanner per rule set; compiled rules are shared.
//
// A tar hard link is a file of its own, scored under its own path from the
// rules that matched its target's bytes: the engine keeps the names of the
// rules that matched every scanned file of a distribution (nothing for a
// file without matches) and scores a link once its target's scan is done,
// without scanning the same bytes again (see archive.Link).
//
// Memory is bounded three ways: unpacked content by Config.Budget, the
// libyara matches of one scan by Config.MatchMemory (a watchdog stops a scan
// whose matches pass it; see matchmem.go), and the matched data libyara
// copies per match by Config.MaxMatchData.
package scan

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	yara "github.com/hillu/go-yara/v4"
	"golang.org/x/sync/semaphore"
)

// Config bounds an Engine.
type Config struct {
	// Threads is the number of scanner threads (DRAGONFLY_THREADS).
	// Default: the number of available CPUs.
	Threads int
	// Limits bound each distribution: Expanded, File, Entries and ScanTimeout
	// apply here. Zero fields take limit.Defaults().
	Limits limit.Limits
	// Budget bounds the bytes of unpacked file content held in memory at once,
	// waiting for or under a scanner, over all distributions being scanned.
	// A file larger than Budget is admitted alone. Default 64 MiB.
	Budget int64
	// MatchMemory bounds the memory libyara holds for the matches of one
	// file's scan: every match of every string is a 56-byte record plus up
	// to MaxMatchData bytes of matched data, kept until the scan ends.
	// libyara caps each string at 1,000,000 matches but not their sum, so
	// one crafted file can make a scan hold gigabytes. A scan whose matches
	// pass the bound is stopped and fails its distribution with a
	// match_memory limit error (MatchMemory) naming the file; a scan under
	// it is untouched. Each scanner thread may hold this much at once, so
	// Threads × MatchMemory bounds the engine. Default 64 MiB.
	MatchMemory int64
	// MaxMatchData bounds the bytes of matched data libyara copies and
	// keeps per match (YR_CONFIG_MAX_MATCH_DATA). Verdicts never depend on
	// it: conditions read match counts, offsets and lengths, never the
	// data, which only a display of matched strings needs; a worker wants
	// 1, which makes a match cost 57 bytes. The setting is libyara's, for
	// the whole process: New applies it, so the engine created last sets
	// it for all (set it before scanning starts). 0 means libyara's
	// default, 512.
	MaxMatchData int
	// OnFile, if set, is called after each file scan with its size and the
	// YARA time it took (for metrics). It must be fast and safe for
	// concurrent use.
	OnFile func(size int, d time.Duration)
}

// libyaraMaxMatchData is libyara's default YR_CONFIG_MAX_MATCH_DATA.
const libyaraMaxMatchData = 512

func (c Config) withDefaults() Config {
	if c.Threads <= 0 {
		c.Threads = runtime.NumCPU()
	}
	d := limit.Defaults()
	if c.Limits.Expanded <= 0 {
		c.Limits.Expanded = d.Expanded
	}
	if c.Limits.File <= 0 {
		c.Limits.File = d.File
	}
	if c.Limits.Entries <= 0 {
		c.Limits.Entries = d.Entries
	}
	if c.Limits.ScanTimeout <= 0 {
		c.Limits.ScanTimeout = d.ScanTimeout
	}
	if c.Limits.Download <= 0 {
		c.Limits.Download = d.Download
	}
	if c.Limits.Distributions <= 0 {
		c.Limits.Distributions = d.Distributions
	}
	if c.Budget <= 0 {
		c.Budget = 64 << 20
	}
	if c.MatchMemory <= 0 {
		c.MatchMemory = 64 << 20
	}
	if c.MaxMatchData <= 0 {
		c.MaxMatchData = libyaraMaxMatchData
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
	guard  *matchGuard
	setup  error // applying MaxMatchData failed: every scan fails with it
	wg     sync.WaitGroup
	mu     sync.RWMutex // guards closed against sends on files
	closed bool
	// guardOnce stops the guard's watchdog once, after the scanners.
	guardOnce sync.Once
}

// New starts an engine with cfg.Threads scanner threads. Close stops them.
func New(cfg Config) *Engine {
	cfg = cfg.withDefaults()
	e := &Engine{
		cfg:    cfg,
		files:  make(chan *fileTask, 4*cfg.Threads),
		budget: semaphore.NewWeighted(cfg.Budget),
		guard:  newMatchGuard(cfg.MatchMemory),
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
	e.guardOnce.Do(e.guard.close)
}

// ErrClosed is returned by scans on a closed engine.
var ErrClosed = errors.New("scan engine closed")

// Stats describe the work of one distribution.
type Stats struct {
	Format  string
	Entries int
	// Files counts the files scored: regular files scanned and tar hard
	// links, each scored under its own path from its target's matches.
	Files int
	// Links counts the hard links among Files.
	Links int
	// Expanded counts the bytes scanned; a hard link adds nothing.
	Expanded int64
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
	d := &distScan{rules: rs, cancel: cancel, ctx: ctx, matches: map[int][]score.Rule{}, waiting: map[int][]fileLink{}}

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
	emit := func(index int, path string, data []byte) error {
		var w int64
		pooled := false
		if cap(data) > 0 {
			mu.Lock()
			k := unsafe.SliceData(data[:1])
			w, pooled = owned[k]
			delete(owned, k)
			mu.Unlock()
		}
		t := &fileTask{dist: d, index: index, path: path, data: data, weight: w, pooled: pooled}
		d.pending.Add(1)
		if err := e.enqueue(ctx, t); err != nil {
			d.pending.Done()
			e.release(t)
			return err
		}
		return nil
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
	if n := d.unscored(); n > 0 {
		// A producer reported links to files it never emitted: fail rather
		// than drop them.
		cancel(fmt.Errorf("%d hard links to files never scanned", n))
	}

	res := Result{Distribution: d.tally.Distribution()}
	res.Stats = Stats{
		Format:   st.Format.String(),
		Entries:  st.Entries,
		Files:    st.Files,
		Links:    st.Links,
		Expanded: st.Expanded,
		ScanTime: time.Duration(d.scanTime.Load()),
		Wall:     time.Since(start),
	}
	// The first failure wins: a scanner's (which cancelled the walk), the
	// walk's own, or the caller's cancellation.
	return res, context.Cause(ctx)
}

func (e *Engine) enqueue(ctx context.Context, t *fileTask) error {
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

// release gives back a scanned file's budget and buffer.
func (e *Engine) release(t *fileTask) {
	if t.pooled {
		e.budget.Release(t.weight)
		e.bufs.put(t.data)
	}
	t.data = nil
}

type fileTask struct {
	dist   *distScan
	index  int
	path   string
	data   []byte
	weight int64 // budget held by data
	pooled bool  // data came from alloc
}

// distScan is the state of one distribution being scanned.
type distScan struct {
	rules    *rules.Compiled
	ctx      context.Context
	cancel   context.CancelCauseFunc
	pending  sync.WaitGroup
	scanTime atomic.Int64

	mu    sync.Mutex
	tally score.Tally
	// done marks the file indexes scanned, bit i for index i; matches holds
	// the rules that matched each scanned file with at least one match. A
	// hard link is scored from its target's entry, as soon as both exist.
	done    []uint64
	matches map[int][]score.Rule
	// waiting holds the hard links whose target is not scanned yet, by
	// target index.
	waiting map[int][]fileLink
}

// fileLink is a hard link waiting for its target's matches.
type fileLink struct {
	index int
	path  string
}

// scanned records the matches of the file at index (nil: none), scores it,
// and scores the links that waited for it.
func (d *distScan) scanned(index int, path string, matched []score.Rule) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.done) <= index/64 {
		d.done = append(d.done, 0)
	}
	d.done[index/64] |= 1 << (index % 64)
	if len(matched) == 0 {
		delete(d.waiting, index)
		return
	}
	d.matches[index] = matched
	d.tally.Add(index, score.NewFile(path, matched))
	for _, l := range d.waiting[index] {
		d.tally.Add(l.index, score.NewFile(l.path, matched))
	}
	delete(d.waiting, index)
}

// unscored counts the links still waiting for their target.
func (d *distScan) unscored() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, ls := range d.waiting {
		n += len(ls)
	}
	return n
}

// link scores the hard link at index, whose bytes are those of the file at
// target, from target's matches: at once when target is scanned, else when
// it is.
func (d *distScan) link(index int, path string, target int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if target/64 < len(d.done) && d.done[target/64]&(1<<(target%64)) != 0 {
		if m := d.matches[target]; len(m) > 0 {
			d.tally.Add(index, score.NewFile(path, m))
		}
		return
	}
	d.waiting[target] = append(d.waiting[target], fileLink{index, path})
}

// scanner is one scanner thread.
func (e *Engine) scanner() {
	defer e.wg.Done()
	var (
		cur  *rules.Compiled
		sc   *yara.Scanner
		slot *guardSlot
		cb   matchCollector
	)
	defer func() {
		if sc != nil {
			sc.Destroy()
		}
	}()
	for t := range e.files {
		d := t.dist
		if d.ctx.Err() == nil {
			if d.rules != cur {
				if sc != nil {
					sc.Destroy()
				}
				var err error
				sc, slot, err = e.newScanner(d.rules)
				if err != nil {
					cur = nil
					d.cancel(err)
				} else {
					cur = d.rules
					sc.SetCallback(&cb).SetTimeout(e.cfg.Limits.ScanTimeout)
				}
			}
			if sc != nil {
				e.scanFile(sc, slot, &cb, t)
			}
		}
		e.release(t)
		d.pending.Done()
	}
}

// newScanner returns a scanner for rs and its match memory guard slot.
func (e *Engine) newScanner(rs *rules.Compiled) (*yara.Scanner, *guardSlot, error) {
	if e.setup != nil {
		return nil, nil, e.setup
	}
	sc, err := yara.NewScanner(rs.Yara())
	if err != nil {
		return nil, nil, fmt.Errorf("yara scanner: %w", err)
	}
	slot, err := e.guard.slot(sc)
	if err != nil {
		sc.Destroy()
		return nil, nil, err
	}
	return sc, slot, nil
}

func (e *Engine) scanFile(sc *yara.Scanner, slot *guardSlot, cb *matchCollector, t *fileTask) {
	d := t.dist
	cb.names = cb.names[:0]
	cb.watch, cb.over = nil, false
	watch := slot.needsWatch(len(t.data))
	if watch {
		cb.watch = slot
		slot.begin()
	}
	start := time.Now()
	err := sc.ScanMem(t.data)
	el := time.Since(start)
	stopped := watch && slot.end()
	if stopped {
		// The watchdog set the scanner's timeout to stop it.
		sc.SetTimeout(e.cfg.Limits.ScanTimeout)
	}
	d.scanTime.Add(int64(el))
	if e.cfg.OnFile != nil {
		e.cfg.OnFile(len(t.data), el)
	}
	if stopped || cb.over {
		d.cancel(&limit.Error{Kind: MatchMemory, Max: e.cfg.MatchMemory, Path: t.path})
		return
	}
	if err != nil {
		var ye yara.Error
		if errors.As(err, &ye) && ye == errScanTimeout {
			d.cancel(&limit.Error{Kind: limit.ScanTimeout, Max: int64(e.cfg.Limits.ScanTimeout), Path: t.path})
			return
		}
		d.cancel(fmt.Errorf("%s: yara: %w", clip.String(t.path, clip.Default), err))
		return
	}
	var matched []score.Rule
	if len(cb.names) > 0 {
		matched = make([]score.Rule, 0, len(cb.names))
		for _, n := range cb.names {
			if r, ok := d.rules.Rule(n); ok {
				matched = append(matched, r)
			} else {
				matched = append(matched, score.Rule{Name: n})
			}
		}
	}
	d.scanned(t.index, t.path, matched)
}

// errScanTimeout is libyara's ERROR_SCAN_TIMEOUT (yara/error.h), which
// go-yara does not export as a Go constant.
const errScanTimeout yara.Error = 26

// matchCollector records the identifiers of matching rules and, for a
// watched scan, whether its matches passed the guard's bound.
type matchCollector struct {
	names []string
	watch *guardSlot // the slot of a watched scan, else nil
	over  bool
}

func (m *matchCollector) RuleMatching(_ *yara.ScanContext, r *yara.Rule) (bool, error) {
	m.names = append(m.names, r.Identifier())
	return false, nil
}

// ScanFinished runs before libyara frees the scan's matches: the last look
// at what they cost, whenever the watchdog last looked.
func (m *matchCollector) ScanFinished(*yara.ScanContext) (bool, error) {
	if m.watch != nil && m.watch.over() {
		m.over = true
	}
	return false, nil
}
