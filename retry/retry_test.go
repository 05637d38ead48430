package retry

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

func TestCapDoublesUpToMax(t *testing.T) {
	p := Policy{Base: time.Second, Max: 30 * time.Second}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		if got := p.Cap(i + 1); got != w*time.Second {
			t.Errorf("Cap(%d) = %v, want %v", i+1, got, w*time.Second)
		}
	}
	if got := (Policy{Base: time.Second, Max: time.Minute}).Cap(1000); got != time.Minute {
		t.Errorf("Cap(1000) = %v: no overflow, capped", got)
	}
}

// TestCapDoesNotOverflowNearTheLargestMax: a Max above half the largest
// Duration ("no cap") must not let the doubling wrap: it did, and Cap fell
// to 0 (a retry at once) or to random values from retry 35 on.
func TestCapDoesNotOverflowNearTheLargestMax(t *testing.T) {
	for _, max := range []time.Duration{math.MaxInt64, math.MaxInt64/2 + 1, 3 * (math.MaxInt64 / 4)} {
		p := Policy{Base: time.Second, Max: max}
		prev := time.Duration(0)
		for n := 1; n <= 100; n++ {
			c := p.Cap(n)
			if c < prev || c > max {
				t.Fatalf("Max %v: Cap(%d) = %v after Cap(%d) = %v: want non-decreasing, at most Max", max, n, c, n-1, prev)
			}
			prev = c
		}
		if prev != max {
			t.Fatalf("Max %v: Cap(100) = %v, want Max", max, prev)
		}
		if d := p.Delay(100, 0); d < 0 || d > max {
			t.Fatalf("Max %v: Delay(100) = %v", max, d)
		}
	}
}

// TestFullJitter: delays are drawn over the whole window [0, cap], not its
// upper half (the old report sender drew from [cap/2, cap]).
func TestFullJitter(t *testing.T) {
	p := Policy{Base: time.Second, Max: 8 * time.Second}
	var asked []time.Duration
	p.Rand = func(n time.Duration) time.Duration { asked = append(asked, n); return 0 }
	for n := 1; n <= 5; n++ {
		if d := p.Delay(n, 0); d != 0 {
			t.Fatalf("Delay(%d) = %v, want the drawn 0", n, d)
		}
	}
	want := []time.Duration{1, 2, 4, 8, 8}
	for i := range want {
		if asked[i] != want[i]*time.Second {
			t.Fatalf("draw %d over [0, %v], want [0, %v]", i+1, asked[i], want[i]*time.Second)
		}
	}
	// The real source stays inside the window and covers its low half too.
	p.Rand = nil
	low := false
	for range 1000 {
		d := p.Delay(3, 0)
		if d < 0 || d > 4*time.Second {
			t.Fatalf("delay %v outside [0, 4s]", d)
		}
		low = low || d < 2*time.Second
	}
	if !low {
		t.Fatal("no delay in the low half of the window in 1,000 draws")
	}
}

func TestRetryAfter(t *testing.T) {
	p := Policy{Base: time.Second, Max: 5 * time.Second, MaxAfter: 10 * time.Second,
		Rand: func(time.Duration) time.Duration { t.Fatal("drew a delay despite Retry-After"); return 0 }}
	if d := p.Delay(1, 7*time.Second); d != 7*time.Second {
		t.Fatalf("Retry-After 7s: %v", d)
	}
	if d := p.Delay(1, time.Hour); d != 10*time.Second {
		t.Fatalf("Retry-After 1h: %v, want the 10s cap", d)
	}
	if d := (Policy{Max: 5 * time.Second}).Delay(1, time.Hour); d != 5*time.Second {
		t.Fatalf("MaxAfter defaults to Max: %v", d)
	}
}

func TestBackoffResets(t *testing.T) {
	b := Backoff{Policy: Policy{Base: time.Second, Max: time.Minute, Rand: func(n time.Duration) time.Duration { return n }}}
	for i, want := range []time.Duration{1, 2, 4} {
		if d := b.Next(0); d != want*time.Second {
			t.Fatalf("Next %d = %v, want %v", i+1, d, want*time.Second)
		}
	}
	if b.Tries() != 3 {
		t.Fatalf("tries %d", b.Tries())
	}
	b.Reset()
	if d := b.Next(0); d != time.Second {
		t.Fatalf("after Reset: %v, want 1s", d)
	}
}

// TestSleep under synctest: the delay passes on the bubble's clock, and a
// cancelled context ends the sleep at once.
func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(context.Background(), 90*time.Second); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el != 90*time.Second {
			t.Fatalf("slept %v", el)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		start = time.Now()
		if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		if el := time.Since(start); el != time.Second {
			t.Fatalf("cancelled after %v, want 1s", el)
		}
		if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("zero sleep on a done context: %v", err)
		}
	})
}
