package mainframe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// maxTokenResponse bounds a token endpoint response.
const maxTokenResponse = 1 << 20

// tokenCache hands out Auth0 access tokens. It caches a token until
// RefreshMargin before its expiry; invalidate (after a 401) drops it, so the
// next caller fetches a new one. Each cache has a generation, so many calls
// failing with the same stale token cause one refresh, not one each.
// Concurrent callers share one request (singleflight), failed or not, and
// each waits for it only as long as its own context lasts (the request
// itself is bounded by the token client's Timeout). x/oauth2's
// ReuseTokenSource is not used: it holds its lock through the request,
// whatever the callers' contexts, and each caller behind a failing one
// made its own request in turn.
type tokenCache struct {
	fetch  oauth2.TokenSource // uncached
	margin time.Duration
	flight singleflight.Group

	mu  sync.Mutex
	cur *oauth2.Token // nil: none cached
	gen uint64
}

func newTokenCache(fetch oauth2.TokenSource, margin time.Duration) *tokenCache {
	return &tokenCache{fetch: marginCap{src: fetch, margin: margin}, margin: margin}
}

// marginCap keeps a short-lived token in use for half its life. The cache
// replaces a token margin before it expires; a token that lives less than
// twice the margin (an identity provider set to 60 s tokens, say) would be
// fetched again for every call, hammering the token endpoint. marginCap
// moves such a token's expiry, as the cache sees it, so that the cache
// replaces it halfway through its life instead.
type marginCap struct {
	src    oauth2.TokenSource
	margin time.Duration
}

func (m marginCap) Token() (*oauth2.Token, error) {
	tok, err := m.src.Token()
	if err != nil || tok.Expiry.IsZero() {
		return tok, err
	}
	half := time.Until(tok.Expiry) / 2
	if half >= m.margin {
		return tok, nil
	}
	moved := *tok
	moved.Expiry = tok.Expiry.Add(m.margin - max(half, 0))
	return &moved, nil
}

// token returns the Authorization header value and the cache generation it
// came from. It waits for a token request at most until ctx ends.
func (t *tokenCache) token(ctx context.Context) (string, uint64, error) {
	t.mu.Lock()
	gen, tok := t.gen, t.cur
	t.mu.Unlock()
	if tok != nil && t.fresh(tok) {
		return tok.Type() + " " + tok.AccessToken, gen, nil
	}
	ch := t.flight.DoChan("token", func() (any, error) { return t.request(gen) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", gen, r.Err
		}
		tok := r.Val.(*oauth2.Token)
		return tok.Type() + " " + tok.AccessToken, gen, nil
	case <-ctx.Done():
		return "", gen, ctx.Err()
	}
}

// request makes a token request, started at generation gen, and caches its
// token unless the cache was invalidated meanwhile.
func (t *tokenCache) request(gen uint64) (*oauth2.Token, error) {
	tok, err := t.fetch.Token()
	if err != nil {
		return nil, err
	}
	if tok.AccessToken == "" {
		return nil, errors.New("oauth2: server response missing access_token")
	}
	t.mu.Lock()
	if t.gen == gen {
		t.cur = tok
	}
	t.mu.Unlock()
	return tok, nil
}

// fresh reports whether tok may still be used: it has no expiry, or expires
// more than the margin from now (x/oauth2's ReuseTokenSourceWithExpiry rule).
func (t *tokenCache) fresh(tok *oauth2.Token) bool {
	return tok.Expiry.IsZero() || !tok.Expiry.Round(0).Add(-t.margin).Before(time.Now())
}

// invalidate drops the cached token if it is still the one of generation gen.
func (t *tokenCache) invalidate(gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen == t.gen {
		t.gen++
		t.cur = nil
	}
}

// newTokenFetcher returns an uncached token source for the configured grant.
// hc must not follow redirects and must bound each exchange.
func newTokenFetcher(a Auth, hc *http.Client, userAgent string, red *redactor, obs Observer) oauth2.TokenSource {
	req := tokenRequest{ClientID: a.ClientID, ClientSecret: a.ClientSecret, Audience: a.Audience, GrantType: GrantPassword, Username: a.Username, Password: a.Password}
	if a.GrantType == GrantClientCredentials {
		req.GrantType, req.Username, req.Password = GrantClientCredentials, "", ""
	}
	body, _ := json.Marshal(req)
	src := &jsonTokenSource{hc: hc, url: a.TokenURL, body: body, userAgent: userAgent, red: red}
	return &observedSource{src: src, red: red, obs: obs}
}

// observedSource reports every fetch to the Observer and teaches the
// redactor each new token.
type observedSource struct {
	src oauth2.TokenSource
	red *redactor
	obs Observer
}

func (s *observedSource) Token() (*oauth2.Token, error) {
	tok, err := s.src.Token()
	if err == nil {
		s.red.addToken(tok.AccessToken)
		s.red.addToken(tok.RefreshToken)
	}
	if s.obs.TokenRefresh != nil {
		s.obs.TokenRefresh(err)
	}
	return tok, err
}

// tokenRequest is the JSON body of an Auth0 token request, as
// dragonfly-api.md has it: the password grant's six fields, or the
// client_credentials grant's four (no username, no password). x/oauth2's
// PasswordCredentialsToken cannot send "audience", and its
// client_credentials grant posts a form, not JSON: both grants have this
// token source.
type tokenRequest struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Audience     string `json:"audience"`
	GrantType    string `json:"grant_type"`
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
}

type jsonTokenSource struct {
	hc        *http.Client
	url       string
	body      []byte
	userAgent string
	red       *redactor
}

func (s *jsonTokenSource) Token() (*oauth2.Token, error) {
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(s.body))
	if err != nil {
		return nil, s.fail(0, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, s.fail(0, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return nil, s.fail(resp.StatusCode, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(data, &e) // a body without these fields still fails with its status
		return nil, &TokenError{URL: s.url, Status: resp.StatusCode, Code: s.red.apply(e.Error), Description: s.red.apply(e.Description)}
	}
	var t struct {
		AccessToken string    `json:"access_token"`
		TokenType   string    `json:"token_type"`
		ExpiresIn   expiresIn `json:"expires_in"`
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, s.fail(resp.StatusCode, errors.New("malformed token response"))
	}
	if t.AccessToken == "" {
		return nil, s.fail(resp.StatusCode, errors.New("token response has no access_token"))
	}
	// A lifetime past what a Duration holds would wrap into the past and
	// make every call fetch a new token: cap it as x/oauth2 does for the
	// client_credentials grant (math.MaxInt32 seconds, 68 years).
	life := min(int64(t.ExpiresIn), math.MaxInt32)
	tok := &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, ExpiresIn: life}
	if life > 0 {
		tok.Expiry = time.Now().Add(time.Duration(life) * time.Second)
	}
	return tok, nil
}

// expiresIn is a token response's expires_in in whole seconds. It is read
// as x/oauth2 reads it, a JSON number or a string holding one (identity
// providers that quote it exist), and further: a fraction is dropped and a
// number past int64 is held at its bound (the caller caps it). Decoded as
// an int64, each of these ("3600", 3600.5, 1e4, 20 digits) made every token
// response malformed: no API call could be made while the endpoint
// answered so.
type expiresIn int64

func (e *expiresIn) UnmarshalJSON(b []byte) error {
	var n json.Number // a number, or a string holding a valid one
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("expires_in: %w", err)
	}
	if n == "" { // null
		*e = 0
		return nil
	}
	if i, err := n.Int64(); err == nil {
		*e = expiresIn(i)
		return nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("expires_in: %w", err)
	}
	// Held within ±2^62: a float64 at or past 2^63 does not convert.
	*e = expiresIn(max(min(f, 1<<62), -(1 << 62)))
	return nil
}

func (s *jsonTokenSource) fail(status int, err error) error {
	return &TokenError{URL: s.url, Status: status, Err: err, msg: clip.String(s.red.apply(err.Error()), clip.Default)}
}

// redactor replaces every credential the client knows (configured secrets
// and issued tokens) in text that reaches errors or logs.
type redactor struct {
	static []string
	mu     sync.Mutex
	tokens atomic.Pointer[[]string] // recent access tokens, newest last
}

// maxRedactedTokens is how many recently issued tokens are remembered.
const maxRedactedTokens = 4

func newRedactor(a Auth) *redactor {
	r := &redactor{}
	for _, s := range []string{a.CFClientSecret, a.ClientSecret, a.Password} {
		if s != "" {
			r.static = append(r.static, s)
		}
	}
	return r
}

func (r *redactor) addToken(tok string) {
	if tok == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var next []string
	if old := r.tokens.Load(); old != nil {
		next = append(next, *old...)
	}
	next = append(next, tok)
	if len(next) > maxRedactedTokens {
		next = next[len(next)-maxRedactedTokens:]
	}
	r.tokens.Store(&next)
}

func (r *redactor) apply(s string) string {
	if s == "" {
		return s
	}
	for _, secret := range r.static {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	if toks := r.tokens.Load(); toks != nil {
		for _, tok := range *toks {
			s = strings.ReplaceAll(s, tok, "[redacted]")
		}
	}
	return s
}

// redactErr returns err unchanged when its text holds no credential and
// has at most clip.Default bytes, else an error with the redacted text, cut
// to that, that still unwraps to err. The text may be the server's: Go's
// transport quotes a malformed status line whole (up to the 10 MB of
// header it reads), and the error is logged at every try of a call.
func (r *redactor) redactErr(err error) error {
	msg := err.Error()
	if red := clip.String(r.apply(msg), clip.Default); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
