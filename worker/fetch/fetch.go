// Package fetch downloads distributions into memory: only from allowed
// origins, without credentials, within a size limit, a stall timeout and a
// total timeout, retrying transient trouble with capped, jittered backoff.
//
// Config.AllowedHosts decides where a URL, and every redirect hop, may go.
// An entry without a scheme (a bare host, host:port or "*") allows https
// only, on port 443 unless it names another, and only to public addresses:
// the default transport checks the address each connection is actually
// made to (in net.Dialer.Control, after resolution), so a public name that
// resolves, or is rebound, to a loopback, private, link-local, CGNAT,
// unspecified or multicast address fails with *AddressError and nothing is
// sent there. An origin entry ("http://devapi:8000") allows exactly that
// scheme, host and port, whatever address the name resolves to: the
// operator's choice, for development stacks and internal mirrors.
//
// Only a 200 answer in HTTP/1.1 or later is read (*ProtocolError else): Go
// ignores Transfer-Encoding on HTTP/1.0 where pip decodes it, and the bytes
// scanned must be the bytes pip installs.
package fetch

import (
	"cmp"
	"context"
	"crypto/x509"
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

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/retry"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// Config bounds a Fetcher. Zero (or negative) values take the defaults named
// per field.
type Config struct {
	// AllowedHosts are where a URL or redirect hop may point
	// (DRAGONFLY_ALLOWED_HOSTS, comma-separated), each entry one of:
	//   - a bare host ("files.pythonhosted.org"): https on port 443;
	//   - host:port ("files.example:8443", "[::1]:8443"): https on that port;
	//   - an origin ("http://127.0.0.1:8000", "http://devapi:8000",
	//     "https://[::1]:8443"): exactly that scheme, host and port (80 or
	//     443 when it names none), at whatever address the name resolves to;
	//   - "*": any host, https on port 443.
	// Host names compare case-insensitively, a trailing dot ignored. A URL
	// that no entry allows fails with *HostError before connecting. Through
	// the first, second and fourth forms the default transport connects only
	// to public addresses: a name resolving to a loopback, private (RFC 1918,
	// fc00::/7), link-local, CGNAT (100.64.0.0/10), unspecified or multicast
	// address, or an IPv4-mapped form of one, fails with *AddressError at
	// connect time. A custom Transport does its own dialing, so the address
	// check is not enforced then (the scheme, host and port checks are). An
	// entry that does not parse (see ParseAllowedHosts) makes New fail.
	// Default ["files.pythonhosted.org"].
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
	// Transport carries the requests. Default: per scheme a clone of
	// http.DefaultTransport with keep-alives, HTTP/2, 16 idle connections per
	// host, no proxy (so no proxy credentials), no transparent decompression
	// (so MaxSize counts bytes on the wire) and a dialer that enforces the
	// address check of AllowedHosts. A Transport set here is used as is:
	// the address check is then NOT enforced. Tests inject.
	Transport http.RoundTripper
	// Resolver resolves host names for the default transport. Default nil:
	// net.DefaultResolver (the system's). Ignored when Transport is set.
	Resolver *net.Resolver
	// RootCAs are the certificate authorities the default transport trusts.
	// Default nil: the system's. Ignored when Transport is set.
	RootCAs *x509.CertPool
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
	cfg    Config
	client *http.Client
	allow  *allowlist
}

// New returns a Fetcher bounded by cfg, or an error naming the first entry
// of cfg.AllowedHosts that does not parse.
func New(cfg Config) (*Fetcher, error) {
	if len(cfg.AllowedHosts) == 0 {
		cfg.AllowedHosts = []string{DefaultHost}
	}
	cfg.MaxSize = bound.Or(cfg.MaxSize, DefaultMaxSize)
	cfg.StallTimeout = bound.Or(cfg.StallTimeout, DefaultStallTimeout)
	cfg.TotalTimeout = bound.Or(cfg.TotalTimeout, DefaultTotalTimeout)
	cfg.Attempts = bound.Or(cfg.Attempts, DefaultAttempts)
	cfg.BaseBackoff = bound.Or(cfg.BaseBackoff, DefaultBaseBackoff)
	cfg.MaxBackoff = bound.Or(cfg.MaxBackoff, DefaultMaxBackoff)
	cfg.MaxRedirects = bound.Or(cfg.MaxRedirects, DefaultMaxRedirects)
	cfg.UserAgent = cmp.Or(cfg.UserAgent, DefaultUserAgent)
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Jitter == nil {
		cfg.Jitter = jitter
	}
	entries, err := ParseAllowedHosts(cfg.AllowedHosts)
	if err != nil {
		return nil, err
	}
	f := &Fetcher{cfg: cfg, allow: newAllowlist(entries)}
	if f.cfg.Transport == nil {
		f.cfg.Transport = newGuardedTransport(f.allow, cfg.Resolver, cfg.RootCAs)
	}
	f.client = &http.Client{Transport: f.cfg.Transport, CheckRedirect: f.checkRedirect}
	return f, nil
}

// CloseIdleConnections closes the idle keep-alive connections of the
// Fetcher's transport.
func (f *Fetcher) CloseIdleConnections() { f.client.CloseIdleConnections() }

// sleep is the fleet's context-aware sleep.
var sleep = retry.Sleep

func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max + 1)
}

// checkURL refuses URLs of other schemes and URLs no entry of AllowedHosts
// allows, and drops user info, so no Authorization header is ever derived
// from a URL.
func (f *Fetcher) checkURL(u *url.URL) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return &SchemeError{Scheme: clip.String(u.Scheme, 32)}
	}
	host := normHost(u.Hostname())
	port := defaultPort(scheme)
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return f.allow.refuse(scheme, host, 0)
		}
		port = n
	}
	if host == "" {
		return f.allow.refuse(scheme, host, port)
	}
	if ok, _ := f.allow.match(scheme, host, port); !ok {
		return f.allow.refuse(scheme, host, port)
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
	// net/http sets Referer to the previous hop's URL, query included: a
	// signed URL's token must not reach the next host.
	req.Header.Del("Referer")
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
// *HostError, *AddressError, *SchemeError, *RedirectError, *StatusError, *TimeoutError,
// *TruncatedError, *ProtocolError, *limit.Error{Kind: limit.Download}, transport errors,
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
		return done(nil, fmt.Errorf("invalid download URL: %w", &boundedError{err: err}))
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
	p := retry.Policy{Base: f.cfg.BaseBackoff, Max: f.cfg.MaxBackoff, MaxAfter: 2 * f.cfg.MaxBackoff, Rand: f.cfg.Jitter}
	return p.Delay(attempt, retryAfter)
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
			ae *AddressError
			sc *SchemeError
			re *RedirectError
		)
		switch {
		case errors.As(err, &ae):
			return ae // not the dial error around it: the address is in ae
		case errors.As(err, &he), errors.As(err, &sc), errors.As(err, &re):
			return err
		}
		return &netError{err: err}
	}

	req, err := http.NewRequestWithContext(actx, http.MethodGet, target, nil)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	// As pip's downloader asks (it never decodes a download): set here,
	// no Transport, custom or not, decodes the body it reads.
	req.Header.Set("Accept-Encoding", "identity")
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
	if !resp.ProtoAtLeast(1, 1) {
		// Go read no Transfer-Encoding here, pip would: refuse rather
		// than scan other bytes than pip installs. Closing the unread
		// body drops the connection.
		return nil, 0, 0, &ProtocolError{Proto: clip.String(resp.Proto, 32)}
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

// redact returns u without user info, query or fragment, cut to a few KiB.
func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	c.RawQuery, c.ForceQuery = "", false
	c.Fragment, c.RawFragment = "", ""
	return clip.String(c.String(), clip.Default)
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
