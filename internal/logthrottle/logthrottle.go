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

// Throttle lets lines through at most burst times per key and interval.
// At most max keys are remembered; when they are all recent, every further
// key shares OtherKeys. Safe for concurrent use.
type Throttle struct {
	every time.Duration
	max   int

	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	start      time.Time // when the key's interval began
	n          int       // lines let through since
	suppressed int64
}

// New returns a Throttle of intervals every, remembering at most max keys.
func New(every time.Duration, max int) *Throttle {
	return &Throttle{every: every, max: max, keys: map[string]*entry{}}
}

// Allow reports whether a line for key may be logged at now (at most burst
// per interval), and how many were held back for it since the last line
// let through.
func (t *Throttle) Allow(key string, burst int, now time.Time) (bool, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.keys[key]
	if e == nil {
		if len(t.keys) >= t.max {
			for k, x := range t.keys {
				if now.Sub(x.start) >= t.every {
					delete(t.keys, k)
				}
			}
		}
		if len(t.keys) >= t.max {
			key = OtherKeys
			e = t.keys[key]
		}
		if e == nil {
			t.keys[key] = &entry{start: now, n: 1}
			return true, 0
		}
	}
	if now.Sub(e.start) < t.every {
		if e.n < burst {
			e.n++
			return true, 0
		}
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.start, e.n, e.suppressed = now, 1, 0
	return true, n
}
