// Package fetch downloads distributions into memory: only from allowed hosts,
// without credentials, within a size limit, a stall timeout and a total
// timeout, retrying transient trouble with capped, jittered backoff.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// Config bounds a Fetcher. Zero (or negative) values take the defaults named
// per field.
type Config struct {
	// AllowedHosts are the host names a URL or redirect may point at (port
	// ignored, case-insensitive); any other host fails with *HostError before
	// connecting. The single entry "*" allows any host. Default
	// ["files.pythonhosted.org"].
	AllowedHosts []string
	// MaxSize bounds the body bytes read per download (limit.Download).
	// Default 128000000.
	MaxSize int64
	// StallTimeout aborts an attempt when no response or body byte arrives for
	// this long (*TimeoutError{Kind: Stall}, transient). Default 30s.
	StallTimeout time.Duration
	// TotalTimeout bounds one download including retries and backoff
	// (*TimeoutError{Kind: Total}, final). Default 90s.
	TotalTimeout time.Duration
	// Attempts bounds the requests per download when trouble is transient.
	// Default 4.
	Attempts int
	// BaseBackoff is the cap of the first retry delay; the cap doubles per
	// retry up to MaxBackoff and the delay is drawn uniformly below it (full
	// jitter). Default 500ms.
	BaseBackoff time.Duration
	// MaxBackoff caps a retry delay; a Retry-After header is honoured up to
	// twice this. Default 5s.
	MaxBackoff time.Duration
	// MaxRedirects bounds the redirect hops followed per attempt. Hops go only
	// to allowed hosts; http->https is followed, https->http refused.
	// Default 5.
	MaxRedirects int
	// UserAgent is sent on every request. Default "dragonfly-fleet".
	UserAgent string
	// Transport carries the requests. Default: a clone of
	// http.DefaultTransport with keep-alives, HTTP/2, 16 idle connections per
	// host, no proxy (so no proxy credentials) and no transparent
	// decompression (so MaxSize counts bytes on the wire). Tests inject.
	Transport http.RoundTripper
	// Sleep waits d or until ctx ends, returning ctx's error then. Used for
	// retry delays. Default: a timer. Tests inject to observe delays.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a uniform duration in [0, max]. Default math/rand/v2.
	Jitter func(max time.Duration) time.Duration
}

// Default values of Config.
const (
	DefaultHost         = "files.pythonhosted.org"
	DefaultMaxSize      = 128_000_000
	DefaultStallTimeout = 30 * time.Second
	DefaultTotalTimeout = 90 * time.Second
	DefaultAttempts     = 4
	DefaultBaseBackoff  = 500 * time.Millisecond
	DefaultMaxBackoff   = 5 * time.Second
	DefaultMaxRedirects = 5
	DefaultUserAgent    = "dragonfly-fleet"
)

// Stats describe one download.
type Stats struct {
	// Attempts is the number of requests started (0 when the URL was refused
	// before connecting).
	Attempts int
	// Bytes is the body bytes read over all attempts, including the partial
	// bodies of failed attempts.
	Bytes int64
	// Duration is the wall time of the call, backoff included.
	Duration time.Duration
}

// Fetcher downloads distributions. It is safe for concurrent use.
type Fetcher struct {
	cfg      Config
	client   *http.Client
	allowAll bool
	allowed  map[string]bool
}

// New returns a Fetcher bounded by cfg.
func New(cfg Config) *Fetcher {
	if len(cfg.AllowedHosts) == 0 {
		cfg.AllowedHosts = []string{DefaultHost}
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.TotalTimeout <= 0 {
		cfg.TotalTimeout = DefaultTotalTimeout
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxRedirects <= 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.Transport == nil {
		cfg.Transport = defaultTransport()
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Jitter == nil {
		cfg.Jitter = jitter
	}
	f := &Fetcher{cfg: cfg, allowed: make(map[string]bool)}
	for _, h := range cfg.AllowedHosts {
		if strings.TrimSpace(h) == "*" {
			f.allowAll = true
			continue
		}
		if hp, _, err := net.SplitHostPort(h); err == nil {
			h = hp
		}
		f.allowed[normHost(h)] = true
	}
	f.client = &http.Client{Transport: cfg.Transport, CheckRedirect: f.checkRedirect}
	return f
}

// CloseIdleConnections closes the idle keep-alive connections of the
// Fetcher's transport.
func (f *Fetcher) CloseIdleConnections() { f.client.CloseIdleConnections() }

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DisableCompression = true
	t.MaxIdleConns = 64
	t.MaxIdleConnsPerHost = 16
	t.IdleConnTimeout = 90 * time.Second
	t.ForceAttemptHTTP2 = true
	return t
}

func sleep(ctx context.Context, d time.Duration) error {
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

func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max + 1)
}

func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}

// checkURL refuses URLs of other schemes or hosts and drops user info, so
// no Authorization header is ever derived from a URL.
func (f *Fetcher) checkURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return &SchemeError{Scheme: u.Scheme}
	}
	host := normHost(u.Hostname())
	if host == "" || (!f.allowAll && !f.allowed[host]) {
		return &HostError{Host: host}
	}
	u.User = nil
	return nil
}

func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > f.cfg.MaxRedirects {
		return &RedirectError{Kind: TooManyRedirects, Max: f.cfg.MaxRedirects}
	}
	if err := f.checkURL(req.URL); err != nil {
		return err
	}
	if via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme == "http" {
		return &RedirectError{Kind: Downgrade, Max: f.cfg.MaxRedirects}
	}
	next := req.URL.String()
	for _, v := range via {
		if v.URL.String() == next {
			return &RedirectError{Kind: RedirectLoop, Max: f.cfg.MaxRedirects}
		}
	}
	req.Header.Del("Authorization")
	req.Header.Del("Proxy-Authorization")
	req.Header.Del("Cookie")
	return nil
}

// Get downloads rawURL fully into memory and returns its bytes. The returned
// slice may be retained by the caller (it is not reused by the Fetcher).
func (f *Fetcher) Get(ctx context.Context, rawURL string) ([]byte, error) {
	b, _, err := f.GetWithStats(ctx, rawURL)
	return b, err
}

var (
	errStall = errors.New("stall")
	errTotal = errors.New("total")
)

// GetWithStats is Get that also describes the download. Errors are
// *HostError, *SchemeError, *RedirectError, *StatusError, *TimeoutError,
// *TruncatedError, *limit.Error{Kind: limit.Download}, transport errors,
// or ctx's error when ctx ends; after more than one attempt the last error
// is wrapped as "after N attempts: ...".
func (f *Fetcher) GetWithStats(ctx context.Context, rawURL string) ([]byte, Stats, error) {
	start := time.Now()
	var st Stats
	done := func(b []byte, err error) ([]byte, Stats, error) {
		st.Duration = time.Since(start)
		return b, st, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL: it may carry a token
		}
		return done(nil, fmt.Errorf("invalid download URL: %w", err))
	}
	if err := f.checkURL(u); err != nil {
		return done(nil, err)
	}
	u.Fragment, u.RawFragment = "", ""
	target := u.String()

	tctx, cancel := context.WithTimeoutCause(ctx, f.cfg.TotalTimeout, errTotal)
	defer cancel()
	for {
		st.Attempts++
		body, n, retryAfter, err := f.attempt(tctx, target)
		st.Bytes += n
		if err == nil {
			return done(body, nil)
		}
		if ctx.Err() != nil {
			return done(nil, fmt.Errorf("download canceled: %w", ctx.Err()))
		}
		if tctx.Err() != nil {
			return done(nil, &TimeoutError{Kind: Total, After: f.cfg.TotalTimeout})
		}
		if !Transient(err) || st.Attempts >= f.cfg.Attempts {
			return done(nil, f.gaveUp(st.Attempts, err))
		}
		delay := f.backoff(st.Attempts, retryAfter)
		if dl, ok := tctx.Deadline(); ok && time.Until(dl) <= delay {
			// The next attempt could not start before the deadline.
			return done(nil, f.gaveUp(st.Attempts, err))
		}
		if err := f.cfg.Sleep(tctx, delay); err != nil {
			if ctx.Err() != nil {
				return done(nil, fmt.Errorf("download canceled: %w", ctx.Err()))
			}
			return done(nil, &TimeoutError{Kind: Total, After: f.cfg.TotalTimeout})
		}
	}
}

func (f *Fetcher) gaveUp(attempts int, err error) error {
	if attempts == 1 {
		return err
	}
	return fmt.Errorf("after %d attempts: %w", attempts, err)
}

// backoff returns the delay before attempt+1: Retry-After when the server
// sent one (capped at 2*MaxBackoff), else full jitter below
// min(MaxBackoff, BaseBackoff*2^(attempt-1)).
func (f *Fetcher) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, 2*f.cfg.MaxBackoff)
	}
	c := f.cfg.BaseBackoff
	for i := 1; i < attempt && c < f.cfg.MaxBackoff; i++ {
		c *= 2
	}
	return f.cfg.Jitter(min(c, f.cfg.MaxBackoff))
}

// attempt makes one request. It returns the body, the body bytes read, the
// server's Retry-After delay (0 when absent) and the error.
func (f *Fetcher) attempt(ctx context.Context, target string) ([]byte, int64, time.Duration, error) {
	actx, acancel := context.WithCancelCause(ctx)
	defer acancel(nil)
	stall := f.cfg.StallTimeout
	watchdog := time.AfterFunc(stall, func() { acancel(errStall) })
	defer watchdog.Stop()

	fail := func(err error) error {
		if context.Cause(actx) == errStall && ctx.Err() == nil {
			return &TimeoutError{Kind: Stall, After: stall}
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL: it may carry a token
		}
		var (
			he *HostError
			sc *SchemeError
			re *RedirectError
		)
		if errors.As(err, &he) || errors.As(err, &sc) || errors.As(err, &re) {
			return err
		}
		return &netError{err: err}
	}

	req, err := http.NewRequestWithContext(actx, http.MethodGet, target, nil)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, 0, fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Read a little so a keep-alive connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return nil, 0, retryAfter(resp.Header.Get("Retry-After")), &StatusError{Code: resp.StatusCode, URL: redact(resp.Request.URL)}
	}
	maxSize := f.cfg.MaxSize
	if resp.ContentLength > maxSize {
		// Closing the unread body drops the connection: nothing is read.
		return nil, 0, 0, &limit.Error{Kind: limit.Download, Max: maxSize}
	}
	r := &progressReader{r: resp.Body, watchdog: watchdog, stall: stall}
	body, err := readBody(r, resp.ContentLength, maxSize)
	if err != nil {
		var le *limit.Error
		var tr *TruncatedError
		if errors.As(err, &le) {
			return nil, r.n, 0, err
		}
		if errors.As(err, &tr) && context.Cause(actx) != errStall {
			return nil, r.n, 0, err
		}
		return nil, r.n, 0, fail(err)
	}
	return body, r.n, 0, nil
}

// redact returns u without user info, query or fragment.
func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	c.RawQuery, c.ForceQuery = "", false
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(time.Hour/time.Second) {
			s = int64(time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
