package coordinator

import (
	"sync"
	"time"
)

// guard refuses, for a growing while, worker identities whose sessions keep
// stalling (the worker stops reading, so the coordinator must cut the session
// and re-dispatch its tasks). It holds identities (see identity), never
// addresses: a stall does not refuse other workers behind the same NAT.
type guard struct {
	base, max, forget time.Duration
	limit             int

	mu      sync.Mutex
	strikes map[string]*strikes
}

type strikes struct {
	n     int
	last  time.Time
	until time.Time
}

// newGuard refuses an identity for base after its first stall, doubling with
// each further stall up to max; strikes older than forget are forgotten. At
// most limit identities are remembered (the oldest strike is forgotten
// first), so a flood of made-up ids costs bounded memory.
func newGuard(base, max, forget time.Duration, limit int) *guard {
	return &guard{base: base, max: max, forget: forget, limit: limit, strikes: map[string]*strikes{}}
}

// strike records a stall of identity and returns until when it is refused.
func (g *guard) strike(identity string, now time.Time) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.strikes[identity]
	if s == nil || now.Sub(s.last) > g.forget {
		if s == nil && len(g.strikes) >= g.limit {
			g.evictOldest()
		}
		s = &strikes{}
		g.strikes[identity] = s
	}
	s.n++
	s.last = now
	d := g.base
	for i := 1; i < s.n && d < g.max; i++ {
		d *= 2
	}
	s.until = now.Add(min(d, g.max))
	return s.until
}

// refused reports whether identity is refused at now, and until when.
func (g *guard) refused(identity string, now time.Time) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.strikes[identity]
	if s == nil || !now.Before(s.until) {
		return time.Time{}, false
	}
	return s.until, true
}

func (g *guard) evictOldest() {
	var oldest string
	var at time.Time
	for id, s := range g.strikes {
		if oldest == "" || s.last.Before(at) {
			oldest, at = id, s.last
		}
	}
	delete(g.strikes, oldest)
}
