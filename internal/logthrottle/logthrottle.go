// Package logthrottle bounds log lines whose pace someone else sets (a
// worker reconnecting in a loop, a coordinator repeating a message, a
// refused peer): at most a burst of lines per key and interval, counting
// what it held back so that the next line let through can say how many.
// The coordinator's door and sessions and the worker's session use it.
package logthrottle

import (
	"sync"
	"time"
)

// OtherKeys is the key shared by keys beyond a full Throttle.
const OtherKeys = "(other keys)"

// Throttle lets lines through at most burst times per key and interval,
// and, for keys in a group (AllowIn), at most the group's burst per
// interval over all its keys: new keys (a worker id or address made up for
// each session) cannot multiply the lines. At most max keys are
// remembered; when they are all recent, every further key shares
// OtherKeys. Safe for concurrent use.
type Throttle struct {
	every time.Duration
	max   int

	mu     sync.Mutex
	keys   map[string]*entry
	groups map[string]*entry
}

type entry struct {
	start      time.Time // when the key's interval began
	n          int       // lines let through since
	suppressed int64     // lines held back since the last one let through
}

// New returns a Throttle of intervals every, remembering at most max keys.
func New(every time.Duration, max int) *Throttle {
	return &Throttle{every: every, max: max, keys: map[string]*entry{}, groups: map[string]*entry{}}
}

// Allow reports whether a line for key may be logged at now (at most burst
// per interval), and how many were held back for it since the last line
// let through.
func (t *Throttle) Allow(key string, burst int, now time.Time) (bool, int64) {
	return t.AllowIn("", 0, key, burst, now)
}

// AllowIn is Allow for a key of group, which lets through at most
// groupBurst lines per interval over all its keys. A line the group holds
// back is counted under the group (its key, one made up for the line, may
// never come again): the group's next line let through, whatever its key,
// says how many, with those its own key's burst held back. An empty group
// is no group.
func (t *Throttle) AllowIn(group string, groupBurst int, key string, burst int, now time.Time) (bool, int64) {
	return t.allow(group, groupBurst, key, burst, false, now)
}

// AllowEach is AllowIn for a group of few keys, the caller's constants (kinds
// of failures): the first line of each key per interval is let through even
// when the group's burst is used up, so that floods of some keys never hide
// the first line of another; the group bounds the lines beyond. At most
// groupBurst plus one per key lines an interval.
func (t *Throttle) AllowEach(group string, groupBurst int, key string, burst int, now time.Time) (bool, int64) {
	return t.allow(group, groupBurst, key, burst, true, now)
}

// allow is AllowIn, and AllowEach when firstFree.
func (t *Throttle) allow(group string, groupBurst int, key string, burst int, firstFree bool, now time.Time) (bool, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(key, now)
	e.renew(now, t.every)
	var g *entry
	if group != "" {
		if g = t.groups[group]; g == nil {
			// Groups are the callers' constants (kinds of lines): few.
			g = &entry{start: now}
			t.groups[group] = g
		}
		g.renew(now, t.every)
	}
	switch {
	case e.n >= burst:
		e.suppressed++
		return false, 0
	case g != nil && g.n >= groupBurst && !(firstFree && e.n == 0):
		g.suppressed++
		return false, 0
	}
	e.n++
	held := e.suppressed
	e.suppressed = 0
	if g != nil {
		g.n++
		held += g.suppressed
		g.suppressed = 0
	}
	return true, held
}

// renew starts a new interval when the current one is over.
func (e *entry) renew(now time.Time, every time.Duration) {
	if now.Sub(e.start) >= every {
		e.start, e.n = now, 0
	}
}

// entry returns key's entry, new or remembered; OtherKeys' when max keys
// are remembered and all of them are recent.
func (t *Throttle) entry(key string, now time.Time) *entry {
	if e := t.keys[key]; e != nil {
		return e
	}
	if len(t.keys) >= t.max {
		for k, x := range t.keys {
			if now.Sub(x.start) >= t.every {
				delete(t.keys, k)
			}
		}
	}
	if len(t.keys) >= t.max {
		key = OtherKeys
		if e := t.keys[key]; e != nil {
			return e
		}
	}
	e := &entry{start: now}
	t.keys[key] = e
	return e
}
