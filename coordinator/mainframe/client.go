// Package mainframe is the client of the Dragonfly API ("mainframe", by
// vipyrsec): it leases scan jobs, fetches YARA rules and reports results,
// authenticating with a Cloudflare Access service token, an Auth0 token, or
// both.
//
// # Errors and retries
//
// Errors are classified by HTTP status, never by text:
//   - 2xx: success.
//   - 3xx: never followed; a redirect means a login page: *AuthError.
//   - 401: with Auth0, the cached token is dropped, a new one fetched and the
//     call retried once; a second 401 is returned as *APIError, not Final
//     (credentials may be rotated).
//   - 403: *APIError, not retried here and not Final (Cloudflare Access
//     answers a revoked or rotated service token so; a report waits).
//   - 404, 409, 422 and other 4xx (except 408, 429): *APIError whose Final()
//     is true; never retried. A 422 keeps the whole response body.
//   - 5xx, 408, 429, network errors and timeouts: retried up to
//     Config.Attempts tries with capped exponential backoff and full jitter,
//     honouring Retry-After, within the caller's context.
//
// POST /jobs is special: a lease whose response is lost leaks its jobs (they
// stay PENDING for two minutes, then are re-leased at the cost of one of
// their three attempts). So Lease retries only when the server cannot have
// handed out jobs: the request was never completely sent (connection
// refused, DNS, TLS failure), or the answer was 429 or 503 (refused before
// the handler ran) or 408. Timeouts, resets after sending, 500, 502 and 504
// are returned at once: the server may have leased jobs we never saw, and a
// quick blind retry into a struggling server would only lease (and possibly
// lose) more; the caller leases again after its idle pause. PUT /package and the GETs
// retry every retryable failure: a repeated report is harmless (a 409 after
// a lost response is flagged by APIError.MaybeApplied).
//
// Auth0 tokens are cached until Auth.RefreshMargin before they expire. A
// token request is bounded by Config.Timeout, not by the caller's context
// (x/oauth2 token sources take none), but a caller waits for it only until
// its context ends; concurrent calls share one request, failed or not.
//
// Credentials (Cloudflare secret, Auth0 client secret, password, issued
// tokens) never appear in errors or logs: response text that quotes them is
// redacted.
//
// A Client is safe for concurrent use.
package mainframe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/retry"
)

// Client talks to the Dragonfly API.
type Client struct {
	cfg    Config
	tokens *tokenCache // nil without Auth0
	red    *redactor
	log    *slog.Logger
}

// New validates cfg, fills in its defaults and returns a client. No request
// is made: credentials are first used (and an Auth0 token fetched) by the
// first call.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Transport == nil {
		cfg.Transport = defaultTransport(cfg.Timeout)
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Client{
		cfg: cfg,
		red: newRedactor(cfg.Auth),
		log: cfg.Logger,
	}
	if cfg.Auth.auth0() {
		thc := &http.Client{
			Transport:     cfg.Transport,
			CheckRedirect: noRedirect,
			Timeout:       cfg.Timeout,
		}
		c.tokens = newTokenCache(newTokenFetcher(cfg.Auth, thc, cfg.UserAgent, c.red, cfg.Observer), cfg.Auth.RefreshMargin)
	}
	return c, nil
}

// BaseURL returns the API root the client talks to (defaults applied).
func (c *Client) BaseURL() string { return c.cfg.BaseURL }

// call is one API call.
type call struct {
	method   string
	path     string // with query
	endpoint string // "METHOD /path", no query
	body     []byte // nil: no body
	lease    bool   // retry only when the server cannot have acted on it
}

// try is the outcome of one HTTP exchange.
type try struct {
	status     int
	header     http.Header
	body       []byte
	wrote      bool   // the request was completely written
	err        error  // transport or token error (no usable response)
	tokenGen   uint64 // generation of the token sent
	retryAfter time.Duration
	hasAfter   bool
	// sent is when the request was handed to the transport (after the
	// token): the server cannot have acted on it before.
	sent time.Time
}

// do runs k with retries and returns the body of its 2xx response and when
// the try that got it was sent.
func (c *Client) do(ctx context.Context, k call) ([]byte, time.Time, error) {
	refreshed := false
	maybeApplied := false
	for n := 1; ; n++ {
		t := c.once(ctx, k)
		if t.err == nil && t.status >= 200 && t.status <= 299 {
			return t.body, t.sent, nil
		}
		if ctx.Err() != nil {
			// The caller gave up; whatever happened is moot.
			return nil, time.Time{}, fmt.Errorf("%s: %w", k.endpoint, ctx.Err())
		}
		var retryable bool
		var err error
		switch {
		case t.err != nil:
			var te *TokenError
			if errors.As(t.err, &te) {
				err, retryable = fmt.Errorf("%s: %w", k.endpoint, t.err), !te.Final()
				break
			}
			err = fmt.Errorf("%s: %w", k.endpoint, t.err)
			retryable = (!k.lease || !t.wrote) && !errors.Is(t.err, bound.ErrTooLarge)
			maybeApplied = maybeApplied || t.wrote
		case t.status >= 300 && t.status <= 399:
			host := ""
			if u, perr := url.Parse(t.header.Get("Location")); perr == nil {
				host = u.Host
			}
			if host == "" {
				host = hostOf(c.cfg.BaseURL)
			}
			// The host is the server's (up to 10 MB of header): cut, after
			// redaction so that no part of a secret is left, since the
			// error is logged at every try and kept by the status page.
			return nil, time.Time{}, &AuthError{Endpoint: k.endpoint, Status: t.status, Host: clip.String(c.red.apply(host), maxRedirectHost)}
		case t.status == http.StatusUnauthorized && c.tokens != nil && !refreshed:
			// The token may have been revoked or expired early: drop it,
			// fetch a new one and try once more, outside the attempt budget.
			refreshed = true
			c.tokens.invalidate(t.tokenGen)
			c.log.Info("api refused the token; refreshing it", "endpoint", k.endpoint)
			n--
			continue
		default:
			apiErr := c.apiError(k.endpoint, t)
			apiErr.MaybeApplied = maybeApplied
			if t.hasAfter {
				apiErr.RetryAfter = t.retryAfter
			}
			err = apiErr
			// A gateway error or a crash may come after the server acted.
			maybeApplied = maybeApplied || t.status == http.StatusInternalServerError ||
				t.status == http.StatusBadGateway || t.status == http.StatusGatewayTimeout
			switch {
			case k.lease:
				retryable = t.status == http.StatusTooManyRequests || t.status == http.StatusServiceUnavailable || t.status == http.StatusRequestTimeout
			default:
				retryable = t.status >= 500 || t.status == http.StatusTooManyRequests || t.status == http.StatusRequestTimeout
			}
		}
		if !retryable {
			return nil, time.Time{}, err
		}
		if n >= c.cfg.Attempts {
			if n == 1 {
				return nil, time.Time{}, err
			}
			return nil, time.Time{}, fmt.Errorf("gave up after %d tries: %w", n, err)
		}
		d := c.backoff(n, t.retryAfter, t.hasAfter)
		c.log.Warn("api call failed; retrying", "endpoint", k.endpoint, "try", n, "status", t.status, "delay", d, "err", err)
		if retry.Sleep(ctx, d) != nil {
			return nil, time.Time{}, fmt.Errorf("%s: %w (last try: %w)", k.endpoint, ctx.Err(), err)
		}
	}
}

// once makes one HTTP exchange under its own timeout and reads the response.
func (c *Client) once(ctx context.Context, k call) try {
	var t try
	// The token first: its wait is bounded by its own request's Timeout,
	// and must not eat into this exchange's.
	var auth string
	if c.tokens != nil {
		var err error
		auth, t.tokenGen, err = c.tokens.token(ctx)
		if err != nil {
			t.err = err
			return t
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	})
	var body io.Reader
	if k.body != nil {
		body = bytes.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, c.cfg.BaseURL+k.path, body)
	if err != nil {
		t.err = err
		return t
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")
	if k.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a := c.cfg.Auth; a.cfAuth() {
		req.Header.Set("CF-Access-Client-Id", a.CFClientID)
		req.Header.Set("CF-Access-Client-Secret", a.CFClientSecret)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}

	start := time.Now()
	t.sent = start
	// The transport, not an http.Client: redirects are never followed, and
	// a client would fail a 3xx whose Location does not parse instead of
	// returning it (it must become an AuthError, not a retried network
	// error).
	resp, err := c.cfg.Transport.RoundTrip(req)
	if err != nil {
		err = &url.Error{Op: urlOp(req.Method), URL: req.URL.String(), Err: err}
	}
	if err == nil {
		t.status, t.header = resp.StatusCode, resp.Header
		t.body, err = readBody(resp.Body, c.cfg.MaxResponseBytes)
		resp.Body.Close()
	}
	if c.cfg.Observer.Call != nil {
		c.cfg.Observer.Call(k.endpoint, t.status, time.Since(start))
	}
	t.wrote = wrote.Load()
	if err != nil {
		t.err = c.red.redactErr(err)
		if t.status != 0 {
			// A response whose body broke off counts as no response.
			t.status, t.wrote = 0, true
		}
		return t
	}
	t.retryAfter, t.hasAfter = parseRetryAfter(t.header.Get("Retry-After"), time.Now())
	return t
}

// urlOp names a request method as http.Client does in its *url.Error.
func urlOp(method string) string {
	return method[:1] + strings.ToLower(method[1:])
}

// readBody reads a response body of at most max bytes; a longer one is an
// error matching bound.ErrTooLarge ("response body larger than N bytes").
func readBody(r io.Reader, max int64) ([]byte, error) {
	data, err := bound.ReadAll(r, max)
	if errors.Is(err, bound.ErrTooLarge) {
		return nil, fmt.Errorf("response body %w", err)
	}
	return data, err
}

// apiError builds the error of a non-2xx, non-3xx response.
func (c *Client) apiError(endpoint string, t try) *APIError {
	body := c.red.apply(string(t.body))
	// The detail is redacted again after decoding: a JSON-escaped credential
	// (\u0073...) is not in the raw body but is in the decoded text.
	return &APIError{Endpoint: endpoint, Status: t.status, Detail: c.red.apply(parseDetail([]byte(body))), Body: body}
}

// parseDetail extracts FastAPI's {"detail": "text"} or, for validation
// errors, {"detail": [{"loc": [...], "msg": "..."}, ...]} as "loc: msg; ...".
func parseDetail(body []byte) string {
	var e struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Detail) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(e.Detail, &s) == nil {
		return oneLine(s, 1000)
	}
	var items []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if json.Unmarshal(e.Detail, &items) == nil {
		parts := make([]string, 0, len(items))
		for _, it := range items {
			loc := make([]string, len(it.Loc))
			for i, l := range it.Loc {
				loc[i] = fmt.Sprint(l)
			}
			parts = append(parts, strings.Join(loc, ".")+": "+it.Msg)
		}
		return oneLine(strings.Join(parts, "; "), 1000)
	}
	return oneLine(string(e.Detail), 1000)
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(time.Duration(1<<62)/time.Second) {
			n = int64(time.Duration(1<<62) / time.Second)
		}
		return time.Duration(n) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

// backoff returns the wait before retry number n (n >= 1): the fleet's
// retry policy (full jitter below BaseBackoff·2^(n-1), capped at MaxBackoff),
// or the server's Retry-After (also capped at MaxBackoff). A Retry-After of
// 0 or a date already past asks for no wait: the drawn one applies, as
// everywhere retry.Policy is used (retrying at once would put every try,
// and every client, in step).
func (c *Client) backoff(n int, retryAfter time.Duration, hasAfter bool) time.Duration {
	p := retry.Policy{Base: c.cfg.BaseBackoff, Max: c.cfg.MaxBackoff}
	if !hasAfter {
		retryAfter = 0
	}
	return p.Delay(n, retryAfter)
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}
