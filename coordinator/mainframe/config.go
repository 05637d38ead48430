package mainframe

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/version"
)

// Defaults of Config and Auth.
const (
	DefaultBaseURL          = "https://dragonfly.vipyrsec.com"
	DefaultAuth0Domain      = "vipyrsec.us.auth0.com"
	DefaultAudience         = "https://dragonfly.vipyrsec.com"
	DefaultTimeout          = 30 * time.Second
	DefaultAttempts         = 5
	DefaultBaseBackoff      = 500 * time.Millisecond
	DefaultMaxBackoff       = 30 * time.Second
	DefaultRefreshMargin    = 60 * time.Second
	DefaultMaxResponseBytes = 64 << 20

	// GrantPassword is the Auth0 resource-owner password grant (the default).
	GrantPassword = "password"
	// GrantClientCredentials is the Auth0 machine-to-machine grant.
	GrantClientCredentials = "client_credentials"
)

// Config configures a Client. The zero value of every field means its default.
type Config struct {
	// BaseURL is the API root, http or https, without user info, query or
	// fragment. A trailing slash is dropped. Default DefaultBaseURL.
	BaseURL string
	// UserAgent is sent on every request, API and token endpoint alike.
	// Default "dragonfly-fleet/<version>".
	UserAgent string
	// Timeout bounds one HTTP exchange (connect, send, read the whole
	// response), API call or token request. Default 30s.
	Timeout time.Duration
	// Attempts is how many times a call is tried in all when it fails with a
	// retryable error (5xx, 408, 429, network trouble, timeout). 1 disables
	// retries. The single retry after a 401 comes on top. Default 5.
	Attempts int
	// BaseBackoff and MaxBackoff shape the wait before retry n: a uniformly
	// random duration in [0, min(MaxBackoff, BaseBackoff*2^(n-1))] ("full
	// jitter"). A Retry-After header replaces the random wait, capped at
	// MaxBackoff. Defaults 500ms and 30s.
	BaseBackoff, MaxBackoff time.Duration
	// MaxResponseBytes bounds the size of a response body the client reads
	// (GET /rules is the big one). Default 64 MiB.
	MaxResponseBytes int64
	// Auth holds the credentials. Neither Cloudflare nor Auth0 configured:
	// requests carry no credentials.
	Auth Auth
	// Transport carries every request (API and token endpoint). Default: a
	// transport with connection pooling, HTTP/2, 10s dial and TLS handshake
	// timeouts and no proxy (inject a Transport to use one).
	Transport http.RoundTripper
	// Logger receives retries and token refreshes. Default: discard.
	Logger *slog.Logger
	// Observer receives hooks for metrics. Optional.
	Observer Observer
}

// Auth holds the API credentials. Cloudflare Access is in use when
// CFClientID is set, Auth0 when ClientID is set; both may be in use at once.
// Fields hold the credentials as the DRAGONFLY_* variables set them; run
// ResolveAuth first to apply the 2024-25 reference client's convention (a
// Cloudflare service token in DRAGONFLY_CLIENT_ID/DRAGONFLY_CLIENT_SECRET).
type Auth struct {
	// CFClientID and CFClientSecret are a Cloudflare Access service token,
	// sent as CF-Access-Client-Id / CF-Access-Client-Secret on every API
	// request (never to the token endpoint). Both or neither.
	CFClientID, CFClientSecret string
	// Auth0Domain is the Auth0 tenant; the token endpoint is
	// https://{Auth0Domain}/oauth/token. Default DefaultAuth0Domain.
	Auth0Domain string
	// TokenURL overrides the token endpoint derived from Auth0Domain.
	TokenURL string
	// Audience is the API identifier tokens are asked for. Default
	// DefaultAudience.
	Audience string
	// GrantType is GrantPassword (default) or GrantClientCredentials. ""
	// means not set explicitly (ResolveAuth tells the two apart).
	GrantType string
	// ClientID and ClientSecret identify the Auth0 application; Username and
	// Password the user (password grant only).
	ClientID, ClientSecret, Username, Password string
	// RefreshMargin: a cached token is replaced this long before it expires.
	// Default 60s. Tokens living shorter than the margin are fetched for
	// every call.
	RefreshMargin time.Duration
}

// Observer has optional hooks for metrics. Nil hooks are skipped; hooks run
// on the calling goroutine and must return quickly.
type Observer struct {
	// Call runs after every HTTP try against the API: endpoint as
	// "METHOD /path" (no query), the response status (0 when none arrived)
	// and the duration of the try.
	Call func(endpoint string, status int, dur time.Duration)
	// TokenRefresh runs after every request to the Auth0 token endpoint, with
	// nil or the (credential-free) error.
	TokenRefresh func(err error)
}

// Credentials says what a resolved Auth sends, for the startup log.
type Credentials struct {
	// Cloudflare: a Cloudflare Access service token on every API request.
	Cloudflare bool
	// LegacyCloudflare: that token came from DRAGONFLY_CLIENT_ID and
	// DRAGONFLY_CLIENT_SECRET, as the 2024-25 reference client sent it.
	LegacyCloudflare bool
	// Auth0Grant is the Auth0 grant in use; "" without Auth0.
	Auth0Grant string
}

func (c Credentials) String() string {
	var parts []string
	if c.Cloudflare {
		p := "cloudflare access service token"
		if c.LegacyCloudflare {
			p += " (from DRAGONFLY_CLIENT_ID and DRAGONFLY_CLIENT_SECRET, as the 2024-25 client sent it)"
		}
		parts = append(parts, p)
	}
	if c.Auth0Grant != "" {
		parts = append(parts, "auth0 "+c.Auth0Grant+" grant")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " + ")
}

// ResolveAuth applies the 2024-25 reference client's convention to a, as the
// DRAGONFLY_* variables set it (GrantType "" when DRAGONFLY_GRANT_TYPE was not
// set explicitly), and says what the result sends. That client sent a
// Cloudflare Access service token from DRAGONFLY_CLIENT_ID and
// DRAGONFLY_CLIENT_SECRET: so those two set, with neither DRAGONFLY_USERNAME
// nor DRAGONFLY_PASSWORD nor DRAGONFLY_GRANT_TYPE=client_credentials, are a
// Cloudflare service token (moved to CFClientID and CFClientSecret). With
// DRAGONFLY_CF_ACCESS_CLIENT_ID/SECRET also set that reading is ambiguous and
// an error. Everything else is returned as given; New validates it.
func ResolveAuth(a Auth) (Auth, Credentials, error) {
	if a.GrantType != "" && a.GrantType != GrantPassword && a.GrantType != GrantClientCredentials {
		// Before the legacy reading: a misspelt grant must not turn the
		// Auth0 client secret into a Cloudflare header sent to the API.
		return a, Credentials{}, fmt.Errorf("mainframe config: DRAGONFLY_GRANT_TYPE %q: want %s or %s", clip.String(a.GrantType, 64), GrantPassword, GrantClientCredentials)
	}
	legacy := a.ClientID != "" && a.ClientSecret != "" && a.Username == "" && a.Password == "" && a.GrantType != GrantClientCredentials
	if legacy {
		if a.CFClientID != "" || a.CFClientSecret != "" {
			return a, Credentials{}, errors.New("mainframe config: DRAGONFLY_CLIENT_ID and DRAGONFLY_CLIENT_SECRET without DRAGONFLY_USERNAME and DRAGONFLY_PASSWORD are a Cloudflare Access service token (the 2024-25 client's names), but DRAGONFLY_CF_ACCESS_CLIENT_ID/SECRET are set too: unset one pair, or set DRAGONFLY_GRANT_TYPE=client_credentials to use the client id for Auth0")
		}
		a.CFClientID, a.CFClientSecret = a.ClientID, a.ClientSecret
		a.ClientID, a.ClientSecret = "", ""
	}
	c := Credentials{Cloudflare: a.cfAuth(), LegacyCloudflare: legacy}
	if a.auth0() {
		c.Auth0Grant = a.GrantType
		if c.Auth0Grant == "" {
			c.Auth0Grant = GrantPassword
		}
	}
	return a, c, nil
}

// cfAuth reports whether Cloudflare Access credentials are configured.
func (a Auth) cfAuth() bool { return a.CFClientID != "" }

// auth0 reports whether Auth0 is configured.
func (a Auth) auth0() bool { return a.ClientID != "" }

// withDefaults validates cfg and fills in defaults. Errors name the
// DRAGONFLY_* variable that sets the field, and never contain a secret.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if err := checkURL(cfg.BaseURL); err != nil {
		bad("DRAGONFLY_BASE_URL %q: %w", clip.URL(cfg.BaseURL), err)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "dragonfly-fleet/" + version.String()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		bad("DRAGONFLY_API_TIMEOUT: negative (%s)", cfg.Timeout)
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.Attempts < 0 {
		bad("attempts: negative (%d)", cfg.Attempts)
	}
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.BaseBackoff < 0 || cfg.MaxBackoff < 0 {
		bad("backoff: negative (base %s, max %s)", cfg.BaseBackoff, cfg.MaxBackoff)
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxResponseBytes < 0 {
		bad("max response bytes: negative (%d)", cfg.MaxResponseBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	a := &cfg.Auth
	switch {
	case a.CFClientID != "" && a.CFClientSecret == "":
		bad("DRAGONFLY_CF_ACCESS_CLIENT_SECRET is required when DRAGONFLY_CF_ACCESS_CLIENT_ID is set")
	case a.CFClientID == "" && a.CFClientSecret != "":
		bad("DRAGONFLY_CF_ACCESS_CLIENT_ID is required when DRAGONFLY_CF_ACCESS_CLIENT_SECRET is set")
	}
	for _, f := range []struct{ env, v string }{
		{"DRAGONFLY_CF_ACCESS_CLIENT_ID", a.CFClientID},
		{"DRAGONFLY_CF_ACCESS_CLIENT_SECRET", a.CFClientSecret},
	} {
		if strings.ContainsFunc(f.v, isCtlOrSpace) {
			bad("%s contains white space or a control character (a trailing newline?)", f.env)
		}
	}

	if a.auth0() {
		if a.Auth0Domain == "" {
			a.Auth0Domain = DefaultAuth0Domain
		}
		if a.Audience == "" {
			a.Audience = DefaultAudience
		}
		if a.GrantType == "" {
			a.GrantType = GrantPassword
		}
		if a.RefreshMargin == 0 {
			a.RefreshMargin = DefaultRefreshMargin
		}
		if a.RefreshMargin < 0 {
			bad("token refresh margin: negative (%s)", a.RefreshMargin)
		}
		if a.TokenURL == "" {
			if strings.Contains(a.Auth0Domain, "/") || strings.ContainsFunc(a.Auth0Domain, isCtlOrSpace) {
				bad("DRAGONFLY_AUTH0_DOMAIN %q: want a host name such as %s (no scheme, no path)", a.Auth0Domain, DefaultAuth0Domain)
			}
			a.TokenURL = "https://" + a.Auth0Domain + "/oauth/token"
		}
		if err := checkURL(a.TokenURL); err != nil {
			bad("DRAGONFLY_TOKEN_URL %q: %w", clip.URL(a.TokenURL), err)
		}
		if a.ClientSecret == "" {
			bad("DRAGONFLY_CLIENT_SECRET is required when DRAGONFLY_CLIENT_ID is set")
		}
		switch a.GrantType {
		case GrantPassword:
			if a.Username == "" || a.Password == "" {
				bad("DRAGONFLY_USERNAME and DRAGONFLY_PASSWORD are required for DRAGONFLY_GRANT_TYPE=password")
			}
		case GrantClientCredentials:
			if a.Username != "" || a.Password != "" {
				bad("DRAGONFLY_USERNAME and DRAGONFLY_PASSWORD are not used with DRAGONFLY_GRANT_TYPE=client_credentials: unset them")
			}
		default:
			bad("DRAGONFLY_GRANT_TYPE %q: want %s or %s", a.GrantType, GrantPassword, GrantClientCredentials)
		}
	} else {
		for _, f := range []struct{ env, v string }{
			{"DRAGONFLY_CLIENT_SECRET", a.ClientSecret},
			{"DRAGONFLY_USERNAME", a.Username},
			{"DRAGONFLY_PASSWORD", a.Password},
		} {
			if f.v != "" {
				bad("%s is set but DRAGONFLY_CLIENT_ID is not: Auth0 needs a client id", f.env)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("mainframe config: %w", err)
	}
	return cfg, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http:// or https:// URL")
	case u.Host == "":
		return errors.New("no host")
	case u.User != nil:
		return errors.New("credentials in the URL are not allowed")
	case strings.Contains(s, "@"):
		// User info holding an unescaped '/' reads as a host and a path
		// (https://user:12/ab@host: host "user:12"), and the bearer token
		// would go to that host.
		return errors.New("an '@' in the URL: credentials in the URL are not allowed")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("no query or fragment allowed")
	}
	return nil
}

func isCtlOrSpace(r rune) bool { return r <= ' ' || r == 0x7f }

// defaultTransport is a pooled HTTP/1.1+HTTP/2 transport without a proxy.
func defaultTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
}
