package mainframe

import (
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// APIError is an HTTP error response from the Dragonfly API (any status other
// than 2xx and 3xx). Classify it with its methods, never by its text.
type APIError struct {
	// Endpoint is the call, e.g. "PUT /package".
	Endpoint string
	// Status is the HTTP status code.
	Status int
	// Detail is the server's {"detail": ...} text; for a validation error
	// (422) its items joined as "loc: msg; ...". Empty when the body had none.
	Detail string
	// Body is the whole response body (up to Config.MaxResponseBytes), with
	// every credential the client knows replaced by "[redacted]".
	Body string
	// MaybeApplied is true when an earlier try of the same call may have
	// been acted on by the server: its response was lost (timeout, reset) or
	// was a 500, 502 or 504. A 409 on PUT /package then most likely means
	// that earlier try was accepted.
	MaybeApplied bool
	// RetryAfter is the server's Retry-After on this response (delay-seconds
	// or an HTTP date, as a wait from when it came); 0 when it sent none, or
	// 0 s, or a date already past. Whoever retries the call later (the
	// report sender) waits at least this long, within its own cap.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d %s", e.Endpoint, e.Status, http.StatusText(e.Status))
	switch {
	case e.Detail != "":
		b.WriteString(": ")
		b.WriteString(e.Detail)
	case e.Body != "":
		b.WriteString(": ")
		b.WriteString(oneLine(e.Body, 200))
	}
	return b.String()
}

// Final reports whether retrying the same request cannot succeed: 404, 409,
// 422 and every other 4xx except 401 and 403 (credentials may be rotated:
// Cloudflare Access answers a revoked service token with 403), 408 and 429.
// The caller logs, counts and drops the work.
func (e *APIError) Final() bool {
	switch {
	case e.Status == http.StatusUnauthorized, e.Status == http.StatusForbidden,
		e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests:
		return false
	case e.Status >= 400 && e.Status < 500:
		return true
	}
	return false
}

// Conflict reports a 409: the job is already finished, dead-lettered, or no
// longer assigned to this lease. Final; never retry it.
func (e *APIError) Conflict() bool { return e.Status == http.StatusConflict }

// NotFound reports a 404: the server does not know the name@version.
func (e *APIError) NotFound() bool { return e.Status == http.StatusNotFound }

// AuthError means the API redirected a call, which on a Dragonfly deployment
// behind Cloudflare Access means the login page: the service token is
// missing or wrong. Redirects are never followed; retrying cannot help.
type AuthError struct {
	// Endpoint is the call, e.g. "POST /jobs".
	Endpoint string
	// Status is the redirect's HTTP status (301, 302, 303, 307, 308).
	Status int
	// Host is the host of the Location header ("" when it had none), cut
	// to maxRedirectHost bytes.
	Host string
}

// maxRedirectHost bounds AuthError.Host: a DNS name has at most 253 bytes.
const maxRedirectHost = 256

func (e *AuthError) Error() string {
	host := e.Host
	if host == "" {
		host = "an unnamed location"
	}
	return fmt.Sprintf("%s: %d redirected to %s (login page?): check Cloudflare Access credentials (DRAGONFLY_CF_ACCESS_CLIENT_ID, DRAGONFLY_CF_ACCESS_CLIENT_SECRET)", e.Endpoint, e.Status, host)
}

// TokenError is a failure to obtain an Auth0 access token. Its text never
// contains a credential.
type TokenError struct {
	// URL is the token endpoint.
	URL string
	// Status is the token endpoint's HTTP status, 0 when no response arrived.
	Status int
	// Code and Description are the OAuth2 "error" and "error_description"
	// fields of the response, when it had them (Description redacted).
	Code, Description string
	// Err is the transport or decoding error, when there was one.
	Err error

	msg string // Err's text, redacted
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "auth0 token from %s", e.URL)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Code != "" {
		// The server's text (up to a MiB of response): an OAuth2 code
		// is a word, and the error is logged at every try.
		b.WriteString(": ")
		b.WriteString(oneLine(e.Code, 64))
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Description, 200))
	}
	if e.msg != "" {
		b.WriteString(": ")
		b.WriteString(e.msg)
	}
	return b.String()
}

func (e *TokenError) Unwrap() error { return e.Err }

// Final reports whether asking again cannot help: the endpoint answered with
// a 3xx or a 4xx other than 408/429 (wrong credentials, unknown client, bad
// grant or audience). Network trouble and 5xx are not final.
func (e *TokenError) Final() bool {
	if e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests {
		return false
	}
	return e.Status >= 300 && e.Status < 500
}

// oneLine squeezes s onto one line and cuts it to at most max bytes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		for max > 0 && !utf8.RuneStart(s[max]) {
			max--
		}
		s = s[:max] + "..."
	}
	return s
}
