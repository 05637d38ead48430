// Package matchmem bounds the memory libyara keeps for the matches of one
// scan: a Guard watches scans and stops one whose matches cost more than its
// bound. The fleet's scan engine (worker/scan, Config.MatchMemory) and the
// rule profiler (rules.Profile, ProfileConfig.MatchMemory) scan under it.
//
// libyara keeps every match of a scan in memory until the scan ends: a
// 56-byte YR_MATCH record plus up to YR_CONFIG_MAX_MATCH_DATA bytes of the
// matched data, up to 1,000,000 matches per string (YR_MAX_STRING_MATCHES,
// fixed when libyara is built) but with no bound on their sum. Nothing in
// libyara's API reports matches as they are found, so the guard watches:
//
//   - a file whose scan cannot reach the bound (strings × min(1,000,000,
//     size) matches at their largest) is scanned as before;
//   - any other scan is watched: a watchdog goroutine sums, every
//     guardTick, the match counts libyara keeps per string in its scan
//     context (public fields of YR_SCAN_CONTEXT), and when the cost passes
//     the bound it sets the scan's timeout to 1 ns, so libyara stops at its
//     next timeout check (every 4096 bytes of input or 100 condition
//     instructions);
//   - when a watched scan finishes, the same sum is taken once more (in the
//     scan-finished callback, before libyara frees the matches), so the
//     outcome does not depend on when the watchdog ran: a file fails if and
//     only if its matches cost more than the bound.
//
// The cost of a match is counted as its record plus the most data it can
// hold (see fleet_data_bytes), which is what libyara allocates from its
// match notebook, so the bound holds up to one notebook page (1024 matches).
// Verdicts of scans under the bound are untouched: nothing is skipped,
// sampled or run in fast mode.
//
// go-yara hides its C pointers; the guard reads the YR_SCANNER pointer that
// is the first field of yara.Scanner (go-yara v4.2.4, as pinned in go.mod)
// and, once per new scanner, checks it against the scan context libyara
// passes to callbacks (the first field of yara.ScanContext): a go-yara whose
// layout differs fails every scan with errGuardLayout (from Guard.Slot)
// instead of guessing.
//
// A caller makes one Guard (NewGuard; Close stops its watchdog), one Slot per
// scanner (Guard.Slot, before it sets the scanner's callback), and around
// each scan of n bytes:
//
//	watch := slot.NeedsWatch(n)
//	if watch {
//		slot.Begin() // and the callback's ScanFinished calls slot.Over()
//	}
//	err := sc.ScanMem(data)
//	stopped := watch && slot.End() // then reset the scanner's timeout
//
// The file passed the bound if stopped, or if Over reported true when the
// scan finished; a stopped scan returns libyara's timeout error.
package matchmem

/*
#include <stdint.h>
#include <yara.h>

// fleet_data_bytes fills f[i] with the most bytes of match data libyara
// keeps per match of string i (its rules have n strings): the match length,
// capped at max_data. A literal's match is its length (twice that when
// wide); other strings may match up to max_data bytes.
static void fleet_data_bytes(YR_RULES* rules, uint32_t max_data, uint32_t* f, uint32_t n) {
	for (uint32_t i = 0; i < n; i++) {
		YR_STRING* s = &rules->strings_table[i];
		uint64_t d = max_data;
		if (STRING_IS_LITERAL(s) && !STRING_IS_CHAIN_PART(s) && s->length >= 0 &&
				2 * (uint64_t) s->length < d)
			d = 2 * (uint64_t) s->length;
		f[i] = (uint32_t) d;
	}
}

// fleet_match_bytes returns what the matches a scan holds so far cost:
// each confirmed or unconfirmed match is one YR_MATCH record plus its data.
// It runs while the scan adds matches on another thread: the counts are
// read atomically (relaxed), and only the counts, never the lists.
static uint64_t fleet_match_bytes(YR_SCAN_CONTEXT* ctx, const uint32_t* f, uint32_t n) {
	uint64_t sum = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t c = (uint64_t) __atomic_load_n(&ctx->matches[i].count, __ATOMIC_RELAXED);
		c += (uint64_t) __atomic_load_n(&ctx->unconfirmed_matches[i].count, __ATOMIC_RELAXED);
		sum += c * (sizeof(YR_MATCH) + f[i]);
	}
	return sum;
}

// fleet_stop_scan makes a running scan stop at its next timeout check
// (every 4096 bytes of input, every 100 condition instructions) with
// ERROR_SCAN_TIMEOUT, by setting its timeout to 1 ns.
static void fleet_stop_scan(YR_SCAN_CONTEXT* ctx) {
	__atomic_store_n(&ctx->timeout, (uint64_t) 1, __ATOMIC_RELAXED);
}

static uint32_t fleet_num_strings(YR_SCAN_CONTEXT* ctx) { return ctx->rules->num_strings; }

// fleet_capped reports whether the scan stopped keeping the matches of a
// string at YR_MAX_STRING_MATCHES: libyara then disables the string for the
// rest of the scan (strings_temp_disabled), as go-yara answers its
// CALLBACK_MSG_TOO_MANY_MATCHES with CALLBACK_CONTINUE, and no later match
// of it is recorded.
static int fleet_capped(YR_SCAN_CONTEXT* ctx) {
	if (ctx->strings_temp_disabled == NULL)
		return 0;
	uint32_t words = YR_BITMASK_SIZE(ctx->rules->num_strings);
	for (uint32_t i = 0; i < words; i++)
		if (ctx->strings_temp_disabled[i] != 0)
			return 1;
	return 0;
}

// fleet_capped_rules writes to out (room for num_strings entries) the rule
// index (in the rules table) of each string disabled at
// YR_MAX_STRING_MATCHES, and returns how many it wrote.
static uint32_t fleet_capped_rules(YR_SCAN_CONTEXT* ctx, uint32_t* out) {
	uint32_t n = 0;
	if (ctx->strings_temp_disabled == NULL)
		return 0;
	for (uint32_t i = 0; i < ctx->rules->num_strings; i++)
		if (yr_bitmask_is_set(ctx->strings_temp_disabled, i))
			out[n++] = ctx->rules->strings_table[i].rule_idx;
	return n;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	yara "github.com/hillu/go-yara/v4"
)

// DefaultBound is the default bound of the match memory of one scan, 64 MiB:
// that of the scan engine (worker/scan Config.MatchMemory) and of rules
// profile (rules.ProfileConfig.MatchMemory).
const DefaultBound = 64 << 20

// guardTick is how often the watchdog looks at the watched scans. libyara
// adds matches at about 11 to 16 million a second (measured: one to eight
// literals matching at every offset of a run of As), 1 to 2 MB a
// millisecond, so a stopped scan passes the bound by that much plus what it
// adds before its next timeout check (at most 4096 bytes of input).
const guardTick = time.Millisecond

// MaxStringMatches is YR_MAX_STRING_MATCHES of libyara 4.2: the matches of
// one string libyara keeps per scan. Past it the string is disabled for the
// rest of the scan and the conditions see only its first matches
// (Slot.Capped).
const MaxStringMatches = 1_000_000

// RecordSize is sizeof(YR_MATCH), what a match costs besides its data.
const RecordSize = uint64(C.sizeof_YR_MATCH)

// errGuardLayout means go-yara's Scanner no longer starts with its
// YR_SCANNER pointer: the guard cannot watch scans.
var errGuardLayout = errors.New("match memory guard: go-yara's scanner layout is not the one this build expects")

// Guard watches the scans of one engine's (or one profile's) scanner
// threads; it is safe for concurrent use.
type Guard struct {
	bound uint64

	mu      sync.Mutex
	watched map[*Slot]struct{}

	wake chan struct{} // capacity 1: a scan is being watched
	stop chan struct{}
	done chan struct{}

	// watches counts the scans watched, stops those the watchdog stopped.
	watches, stops atomic.Int64
}

// Slot is one scanner thread's view of its current scanner. Its methods
// are called from that thread only (Over from the scanner's callback).
type Slot struct {
	g   *Guard
	ctx *C.YR_SCAN_CONTEXT
	// data[i] is the most data a match of string i holds; worst is the
	// cost of one match of every string (confirmed and unconfirmed).
	data  []C.uint32_t
	worst uint64
	// tripped is set by the watchdog (under g.mu) when it stopped the scan.
	tripped bool
}

// NewGuard starts the watchdog of a guard that stops any watched scan whose
// matches cost more than bound bytes. Close stops it.
func NewGuard(bound int64) *Guard {
	g := &Guard{
		bound:   uint64(bound),
		watched: map[*Slot]struct{}{},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go g.run()
	return g
}

// Close stops the watchdog. No scan may be watched any more.
func (g *Guard) Close() {
	close(g.stop)
	<-g.done
}

// Watches counts the scans watched so far (Begin).
func (g *Guard) Watches() int64 { return g.watches.Load() }

// Stops counts the scans the watchdog stopped so far.
func (g *Guard) Stops() int64 { return g.stops.Load() }

// run is the watchdog: it ticks while scans are watched and sleeps otherwise.
func (g *Guard) run() {
	defer close(g.done)
	t := time.NewTimer(guardTick)
	defer t.Stop()
	for {
		g.mu.Lock()
		n := len(g.watched)
		for s := range g.watched {
			if !s.tripped && s.cost() > g.bound {
				C.fleet_stop_scan(s.ctx)
				s.tripped = true
				g.stops.Add(1)
			}
		}
		g.mu.Unlock()
		if n == 0 {
			select {
			case <-g.wake:
			case <-g.stop:
				return
			}
			continue
		}
		t.Reset(guardTick)
		select {
		case <-t.C:
		case <-g.stop:
			return
		}
	}
}

// Slot returns a thread's slot for the new scanner sc. It runs one scan of
// no data to check that it reads sc's scan context where go-yara keeps it.
// sc's callback must be set after Slot returns. The match data each match
// may hold is read from libyara's YR_CONFIG_MAX_MATCH_DATA now: set it
// before.
func (g *Guard) Slot(sc *yara.Scanner) (*Slot, error) {
	ctx := *(**C.YR_SCAN_CONTEXT)(unsafe.Pointer(sc))
	var probe contextProbe
	sc.SetCallback(&probe)
	if err := sc.ScanMem(nil); err != nil {
		return nil, fmt.Errorf("match memory guard: %w", err)
	}
	if ctx == nil || probe.ctx != ctx {
		return nil, errGuardLayout
	}
	n := C.fleet_num_strings(ctx)
	md := 512
	if v, err := yara.GetConfiguration(yara.ConfigMaxMatchData); err == nil {
		md, _ = v.(int)
	}
	s := &Slot{g: g, ctx: ctx, data: make([]C.uint32_t, n)}
	if n > 0 {
		C.fleet_data_bytes(ctx.rules, C.uint32_t(md), &s.data[0], n)
	}
	for _, d := range s.data {
		s.worst += 2 * (RecordSize + uint64(d))
	}
	return s, nil
}

// contextProbe records the scan context libyara passes to callbacks.
type contextProbe struct{ ctx *C.YR_SCAN_CONTEXT }

func (p *contextProbe) RuleMatching(*yara.ScanContext, *yara.Rule) (bool, error) { return false, nil }

func (p *contextProbe) ScanFinished(sc *yara.ScanContext) (bool, error) {
	p.ctx = *(**C.YR_SCAN_CONTEXT)(unsafe.Pointer(sc))
	return false, nil
}

// cost is what the matches of the slot's current scan cost so far.
func (s *Slot) cost() uint64 {
	if len(s.data) == 0 {
		return 0
	}
	return uint64(C.fleet_match_bytes(s.ctx, &s.data[0], C.uint32_t(len(s.data))))
}

// NeedsWatch reports whether a scan of size bytes could pass the bound:
// every string matching at every offset, up to libyara's cap.
func (s *Slot) NeedsWatch(size int) bool {
	return s.worst > 0 && uint64(min(size, MaxStringMatches)) > s.g.bound/s.worst
}

// Begin starts watching the slot's next scan.
func (s *Slot) Begin() {
	g := s.g
	g.watches.Add(1)
	g.mu.Lock()
	s.tripped = false
	g.watched[s] = struct{}{}
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// End stops watching and reports whether the watchdog stopped the scan.
func (s *Slot) End() bool {
	g := s.g
	g.mu.Lock()
	delete(g.watched, s)
	t := s.tripped
	g.mu.Unlock()
	return t
}

// Capped reports whether the scan of the slot's scanner stopped keeping
// the matches of some string at MaxStringMatches, so that a condition
// reading its later matches (an offset, "in", "at", a count past the cap)
// was decided without them; called when the scan has finished, before
// libyara clears its state, as Over. Unlike Over it is read for every
// scan, watched or not.
func (s *Slot) Capped() bool { return C.fleet_capped(s.ctx) != 0 }

// CappedRules returns the indexes, in the scanner's rule set (the order of
// its GetRules), of the rules holding a string the scan stopped keeping the
// matches of at MaxStringMatches (see Capped), each once per such string;
// called as Capped. Only their conditions (and those naming them) were
// decided without the dropped matches.
func (s *Slot) CappedRules() []int {
	n := C.fleet_num_strings(s.ctx)
	if n == 0 || !s.Capped() {
		return nil
	}
	buf := make([]C.uint32_t, n)
	got := C.fleet_capped_rules(s.ctx, &buf[0])
	out := make([]int, got)
	for i := range out {
		out[i] = int(buf[i])
	}
	return out
}

// Over reports whether the matches of the scan the slot watches cost more
// than the bound; called when the scan has finished, before libyara frees
// them.
func (s *Slot) Over() bool { return s.cost() > s.g.bound }
