package scan

// The match cache: what a scan found in a file's bytes, kept under the
// SHA-256 digest of the bytes and the identity of the exact rules scanned
// with (a digest of the rule set's sources and of the rules of the subset),
// so identical bytes are scanned once per rule subset: a release's sdist and
// wheel carry the same files, and a new release mostly the files of the one
// before. A hit for one subset never answers a lookup for another, so bytes
// first seen as LICENSE.txt are scanned again, with the .py rules, as
// evil.py.
//
// Only successful scans are kept: their matched rules and, when the engine
// collects them, the matched strings (so a hit gives exactly what a scan
// would). Identical bytes under the same rules in flight at the same time
// are scanned once: later files join the scan in flight (their buffers are
// released at once) and take its outcome when it ends, failures included (a
// scan timeout or a broken match memory bound then fails each joined file's
// distribution under the file's own path, as scanning it would have).
//
// Memory is bounded by Config.MatchCacheSize: entries are charged their
// key, rule names and matched strings plus a fixed overhead, and the least
// recently used go first. The cache is off for rule sets that import a
// module whose values do not depend on the bytes alone (see contentModules:
// only hash and math count as content-only), and for rule sets whose
// sources cannot be split (their imports are not known). External
// variables cannot occur: rules.Compile defines none, so a rule naming one
// does not compile.

import (
	"container/list"
	"sync"

	"github.com/dragonfly-fleet/fleet/score"
)

// cacheKey identifies the matches of some bytes under some rules.
type cacheKey struct {
	rules   [32]byte // target.id
	content [32]byte // SHA-256 of the bytes
}

// fileMatches is what one scan of a file found: the rules that matched
// (nil: none) and, with match details, their strings.
type fileMatches struct {
	rules   []score.Rule
	strings []score.StringHits
	// capped are the rules (indexes in the whole set) of strings libyara
	// stopped keeping matches of at its cap in a scan with the whole set,
	// none counting for cappedPath, the file scanned: a hard link to it
	// whose path admits one fails (distScan.linkDone).
	capped     []int
	cappedPath string
}

// outcome is the end of one scan: matches, or a failure to be reported for
// each file with these bytes under its own path.
type outcome struct {
	m    fileMatches
	fail func(path string) error // nil: success
}

type cacheEntry struct {
	key  cacheKey
	m    fileMatches
	cost int64
}

// flight is a scan in progress that other files with the same bytes joined.
type flight struct {
	waiters []*fileTask
}

// entryOverhead is what an entry costs besides its contents: the map slot,
// the list element, the entry and slice headers.
const entryOverhead = 192

type matchCache struct {
	max int64

	mu      sync.Mutex
	size    int64
	lru     list.List // of *cacheEntry, most recent first
	entries map[cacheKey]*list.Element
	flights map[cacheKey]*flight
}

func newMatchCache(max int64) *matchCache {
	return &matchCache{max: max, entries: map[cacheKey]*list.Element{}, flights: map[cacheKey]*flight{}}
}

// lookup result
type lookup int

const (
	miss   lookup = iota // the caller scans and must call finish
	hit                  // m holds the matches
	joined               // t waits for a scan in flight: the leader finishes it
)

// begin looks key up: a hit returns the matches; bytes in flight take t as
// a waiter; else the caller leads a new flight.
func (c *matchCache) begin(key cacheKey, t *fileTask) (lookup, fileMatches) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.lru.MoveToFront(el)
		return hit, el.Value.(*cacheEntry).m
	}
	if f, ok := c.flights[key]; ok {
		f.waiters = append(f.waiters, t)
		return joined, fileMatches{}
	}
	c.flights[key] = &flight{}
	return miss, fileMatches{}
}

// finish ends the flight of key with its outcome, keeps a success, and
// returns the files that joined it.
func (c *matchCache) finish(key cacheKey, o outcome) []*fileTask {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.flights[key]
	delete(c.flights, key)
	if o.fail == nil {
		c.add(key, o.m)
	}
	if f == nil {
		return nil
	}
	return f.waiters
}

func (c *matchCache) add(key cacheKey, m fileMatches) {
	cost := int64(entryOverhead + 24*len(m.rules))
	for _, r := range m.rules {
		cost += int64(len(r.Name))
	}
	for _, s := range m.strings {
		cost += int64(64 + len(s.Rule) + len(s.String))
		for _, x := range s.Matches {
			cost += int64(48 + len(x.Data))
		}
	}
	if cost > c.max/8 {
		return // one entry may not take over the cache
	}
	if _, ok := c.entries[key]; ok {
		return
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, m: m, cost: cost})
	c.size += cost
	for c.size > c.max {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.entries, e.key)
		c.size -= e.cost
	}
}

// usage returns the entries and bytes held.
func (c *matchCache) usage() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.size
}
