package testkit

import (
	"sync"
	"time"
)

// Clock is a fake clock for code that takes a Now func: it stands still
// until Advance. Safe for concurrent use. (Code that uses timers and tickers
// is tested under testing/synctest instead.)
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at 2026-08-01 12:00 UTC.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
