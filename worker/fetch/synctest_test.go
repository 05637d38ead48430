package fetch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// roundTripper is an in-memory transport, so the default timeouts can run
// on synctest's fake clock.
type roundTripper func(req *http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func respond(req *http.Request, code int, h http.Header, body io.Reader) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{
		StatusCode: code, Status: http.StatusText(code), Header: h,
		Body: io.NopCloser(body), ContentLength: -1, Request: req,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
}

// trickle yields one byte every gap until ctx ends, then stalls forever if
// stallAfter bytes were sent.
type trickle struct {
	ctx        context.Context
	gap        time.Duration
	stallAfter int // 0: never stalls
	sent       int
}

func (r *trickle) Read(b []byte) (int, error) {
	if r.stallAfter > 0 && r.sent >= r.stallAfter {
		<-r.ctx.Done()
		return 0, r.ctx.Err()
	}
	select {
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	case <-time.After(r.gap):
	}
	b[0] = 'x'
	r.sent++
	return 1, nil
}

func TestDefaultStallTimeoutExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := mustNew(t, Config{Attempts: 1, Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
			return respond(req, 200, nil, &trickle{ctx: req.Context(), gap: 10 * time.Second, stallAfter: 5}), nil
		})})
		start := time.Now()
		_, st, err := f.GetWithStats(t.Context(), "https://files.pythonhosted.org/packages/x.whl")
		var te *TimeoutError
		if !errors.As(err, &te) || te.Kind != Stall || te.After != DefaultStallTimeout {
			t.Fatalf("err = %v, want a 30s stall", err)
		}
		// 5 bytes at 10s intervals, then 30s of silence.
		if el := time.Since(start); el != 80*time.Second || st.Bytes != 5 {
			t.Errorf("stalled after %v with %d bytes, want 80s and 5", el, st.Bytes)
		}
	})
}

func TestDefaultTotalTimeoutExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := mustNew(t, Config{Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
			return respond(req, 200, nil, &trickle{ctx: req.Context(), gap: 20 * time.Second}), nil
		})})
		start := time.Now()
		_, st, err := f.GetWithStats(t.Context(), "https://files.pythonhosted.org/packages/x.whl")
		var te *TimeoutError
		if !errors.As(err, &te) || te.Kind != Total || te.After != DefaultTotalTimeout {
			t.Fatalf("err = %v, want the 90s total timeout", err)
		}
		if el := time.Since(start); el != DefaultTotalTimeout || st.Attempts != 1 || st.Bytes != 4 {
			t.Errorf("ended after %v, %+v: want 90s, 1 attempt, 4 bytes", el, st)
		}
	})
}

func TestStallsRetriedWithinTotal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts atomic.Int32
		f := mustNew(t, Config{
			Jitter: func(max time.Duration) time.Duration { return max },
			Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
				attempts.Add(1)
				return respond(req, 200, nil, &trickle{ctx: req.Context(), gap: time.Second, stallAfter: 1}), nil
			}),
		})
		start := time.Now()
		_, st, err := f.GetWithStats(t.Context(), "https://files.pythonhosted.org/x.whl")
		// Attempts end at 31s, 62.5s (after 0.5s backoff) and 94s > 90s: the
		// third is cut by the total timeout.
		var te *TimeoutError
		if !errors.As(err, &te) || te.Kind != Total {
			t.Fatalf("err = %v, want total timeout", err)
		}
		if el := time.Since(start); el != DefaultTotalTimeout || st.Attempts != 3 || attempts.Load() != 3 {
			t.Errorf("after %v, %d attempts: want 90s, 3", el, st.Attempts)
		}
	})
}

func TestRetryAfterNeverPastTotal(t *testing.T) {
	for _, tc := range []struct {
		name     string
		total    time.Duration
		attempts int
		elapsed  time.Duration
		msg      string
	}{
		// Retry-After 60 is capped at 10s (2*MaxBackoff).
		{"all attempts fit", 90 * time.Second, 4, 30 * time.Second, "after 4 attempts: HTTP 503 Service Unavailable"},
		// At 20s the next try would start at 30s, past 25s: give up at once.
		{"gives up before the deadline", 25 * time.Second, 3, 20 * time.Second, "after 3 attempts: HTTP 503 Service Unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := mustNew(t, Config{TotalTimeout: tc.total, Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
					return respond(req, 503, http.Header{"Retry-After": {"60"}}, strings.NewReader("busy")), nil
				})})
				start := time.Now()
				_, st, err := f.GetWithStats(t.Context(), "https://files.pythonhosted.org/x.whl")
				if err == nil || err.Error() != tc.msg {
					t.Fatalf("err = %v, want %q", err, tc.msg)
				}
				if el := time.Since(start); el != tc.elapsed || st.Attempts != tc.attempts {
					t.Errorf("after %v, %d attempts: want %v, %d", el, st.Attempts, tc.elapsed, tc.attempts)
				}
			})
		})
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		f := mustNew(t, Config{Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
			return respond(req, 500, nil, strings.NewReader("")), nil
		})})
		type result struct {
			st  Stats
			err error
		}
		done := make(chan result, 1)
		go func() {
			_, st, err := f.GetWithStats(ctx, "https://files.pythonhosted.org/x.whl")
			done <- result{st, err}
		}()
		synctest.Wait() // the first attempt failed; the fetcher sleeps
		cancel()
		r := <-done
		if !errors.Is(r.err, context.Canceled) || r.st.Attempts != 1 {
			t.Fatalf("err %v after %d attempts, want canceled after 1", r.err, r.st.Attempts)
		}
	})
}

func mustNew(t *testing.T, cfg Config) *Fetcher {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
