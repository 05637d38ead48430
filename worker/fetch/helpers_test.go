package fetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// seen records what a test's callbacks note, on any goroutine (a test
// server's handlers, the Fetcher's sleeps); all returns a copy.
type seen[T any] struct {
	mu sync.Mutex
	v  []T
}

func (s *seen[T]) add(v T) {
	s.mu.Lock()
	s.v = append(s.v, v)
	s.mu.Unlock()
}

func (s *seen[T]) all() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.v)
}

// sleeps records the retry delays a Fetcher asks for and returns at once.
type sleeps struct{ seen[time.Duration] }

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.add(d)
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration { return s.all() }

// newTest returns a Fetcher for loopback servers: the allowed hosts are the
// origins given (test servers' URLs) unless cfg names them, retry delays
// recorded instead of slept, jitter at its maximum so delays are exact.
func newTest(t *testing.T, cfg Config, origins ...string) (*Fetcher, *sleeps) {
	t.Helper()
	if cfg.AllowedHosts == nil {
		cfg.AllowedHosts = origins
	}
	s := &sleeps{}
	if cfg.Sleep == nil {
		cfg.Sleep = s.sleep
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(max time.Duration) time.Duration { return max }
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.CloseIdleConnections)
	return f, s
}

func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}
