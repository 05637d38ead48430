// Package retry is the fleet's one retry policy: capped exponential backoff
// with full jitter, aware of a server's Retry-After, with a context-aware
// sleep and an injectable clock and random source.
//
// Full jitter (the AWS architecture blog's name): the n-th delay is drawn
// uniformly from [0, min(Max, Base·2^(n-1))]. Spreading retries over the
// whole window is what keeps many clients that failed together from
// retrying together. A Retry-After the server sent replaces the drawn delay,
// capped at MaxAfter.
//
// Users: report sends and rule loads (coordinator), API calls
// (coordinator/mainframe), downloads (worker/fetch), reconnects (worker).
package retry

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Policy is a backoff policy. The zero value retries after 0 s: set Base.
type Policy struct {
	// Base caps the first delay; the cap doubles per retry up to Max.
	Base time.Duration
	// Max caps every drawn delay.
	Max time.Duration
	// MaxAfter caps a server's Retry-After. Default: Max.
	MaxAfter time.Duration
	// Rand returns a uniform duration in [0, n] (n >= 0). Default
	// math/rand/v2. Tests inject a fixed one.
	Rand func(n time.Duration) time.Duration
}

// Delay is the wait before retry n (n >= 1: the wait after the n-th failed
// try). after is the server's Retry-After (0: none).
func (p Policy) Delay(n int, after time.Duration) time.Duration {
	if after > 0 {
		return min(after, p.maxAfter())
	}
	return p.draw(p.Cap(n))
}

// Cap is the upper bound of the n-th delay: min(Max, Base·2^(n-1)).
func (p Policy) Cap(n int) time.Duration {
	c := p.Base
	for i := 1; i < n && c < p.Max; i++ {
		if c > p.Max/2 {
			// Doubling would pass Max, or wrap past the largest Duration.
			c = p.Max
			break
		}
		c *= 2
	}
	return max(min(c, p.Max), 0)
}

func (p Policy) maxAfter() time.Duration {
	if p.MaxAfter > 0 {
		return p.MaxAfter
	}
	return p.Max
}

func (p Policy) draw(ceil time.Duration) time.Duration {
	if ceil <= 0 {
		return 0
	}
	if p.Rand != nil {
		return p.Rand(ceil)
	}
	if ceil == math.MaxInt64 {
		return rand.N(ceil) // ceil+1 would wrap
	}
	return rand.N(ceil + 1)
}

// Sleep waits d or until ctx ends, returning ctx's error then. A d <= 0 only
// checks ctx. It uses a real timer: under testing/synctest the bubble's
// fake clock drives it.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff is the state of a retry loop: each Next returns the next delay,
// Reset starts over after a success.
type Backoff struct {
	Policy Policy
	n      int
}

// Next returns the delay before the next retry (after: a Retry-After, 0 for
// none) and counts it.
func (b *Backoff) Next(after time.Duration) time.Duration {
	b.n++
	return b.Policy.Delay(b.n, after)
}

// Reset starts the sequence over (after a success).
func (b *Backoff) Reset() { b.n = 0 }

// Tries is how many delays Next has returned since the last Reset.
func (b *Backoff) Tries() int { return b.n }
