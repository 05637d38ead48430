package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// HostError reports a URL or redirect target that no entry of
// Config.AllowedHosts allows: an unlisted host, or a listed host with
// another scheme or port. Final.
type HostError struct {
	// Host is the refused host name, lowercased, without port, cut to a
	// few hundred bytes.
	Host string
	// Scheme and Port are the refused URL's ("" and 0 when unknown).
	Scheme string
	Port   int
	// listed: Host (or "*") is in the list, under another scheme or port.
	listed bool
}

func (e *HostError) Error() string {
	if !e.listed || e.Scheme == "" {
		return fmt.Sprintf("host %q is not in DRAGONFLY_ALLOWED_HOSTS", e.Host)
	}
	return fmt.Sprintf("%s is not in DRAGONFLY_ALLOWED_HOSTS (an entry without a scheme allows https only, on port 443 unless it names one)",
		e.Scheme+"://"+joinHostPort(e.Host, e.Port))
}

// AddressError reports a connection refused because the host, allowed by a
// bare, host:port or "*" entry, resolved to an address that is not public
// (loopback, private, link-local, CGNAT, unspecified, multicast, or an
// IPv4-mapped or NAT64 form of those). Nothing was sent to that address.
// Final.
type AddressError struct {
	// Host is the host name dialled, cut to a few hundred bytes.
	Host string
	// Addr is the address it resolved to (invalid when it could not be
	// parsed).
	Addr netip.Addr
	// Reason says what Addr is: "a loopback address", "an IPv4-mapped
	// private address", ...
	Reason string
}

func (e *AddressError) Error() string {
	host := clip.String(e.Host, maxEntry)
	switch {
	case !e.Addr.IsValid():
		return fmt.Sprintf("%s resolved to %s: refused", host, e.Reason)
	case host == e.Addr.String():
		return fmt.Sprintf("%s is %s: refused", host, e.Reason)
	}
	return fmt.Sprintf("%s resolved to %s, %s: refused", host, e.Addr, e.Reason)
}

// SchemeError reports a URL or redirect target that is neither http nor https.
type SchemeError struct {
	Scheme string
}

func (e *SchemeError) Error() string {
	return fmt.Sprintf("unsupported URL scheme %q", clip.String(e.Scheme, 32))
}

// StatusError reports a response other than 200 OK.
type StatusError struct {
	Code int
	// URL is the URL that answered (after redirects) without user info,
	// query or fragment. It is not part of the message.
	URL string
}

func (e *StatusError) Error() string {
	if t := http.StatusText(e.Code); t != "" {
		return "HTTP " + strconv.Itoa(e.Code) + " " + t
	}
	return "HTTP " + strconv.Itoa(e.Code)
}

// TimeoutKind names the timeout a download broke.
type TimeoutKind string

// The timeouts.
const (
	// Stall: no body byte (or no response) arrived for Config.StallTimeout.
	// It ends one attempt and is transient.
	Stall TimeoutKind = "stall"
	// Total: the download with all its retries took Config.TotalTimeout. Final.
	Total TimeoutKind = "total"
)

// TimeoutError reports a stalled or overlong download.
type TimeoutError struct {
	Kind TimeoutKind
	// After is the configured bound that expired.
	After time.Duration
}

func (e *TimeoutError) Error() string {
	if e.Kind == Stall {
		return fmt.Sprintf("download stalled: no data for %s", e.After)
	}
	return fmt.Sprintf("download timed out after %s", e.After)
}

// TruncatedError reports a body that ended early: shorter than its
// Content-Length, or a connection closed inside a chunked body. Transient.
type TruncatedError struct {
	// Got is the number of body bytes read.
	Got int64
	// Want is the declared Content-Length, or -1 when none was declared.
	Want int64
}

func (e *TruncatedError) Error() string {
	if e.Want < 0 {
		return fmt.Sprintf("body truncated after %d bytes", e.Got)
	}
	return fmt.Sprintf("body truncated after %d of %d bytes", e.Got, e.Want)
}

// ProtocolError reports a 200 answer in an HTTP version whose framing pip
// and Go read differently: Go ignores Transfer-Encoding on HTTP/1.0 and
// reads the body to the close, while pip (http.client, urllib3) decodes
// "Transfer-Encoding: chunked" whatever the version, so the bytes scanned
// would not be the bytes pip installs. Go drops that header before the
// Fetcher sees the response, so every HTTP/1.0 answer is refused. Final.
type ProtocolError struct {
	// Proto is the response's protocol, as "HTTP/1.0".
	Proto string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("%s response refused: its framing is read differently by pip; want HTTP/1.1 or later", e.Proto)
}

// RedirectKind names why a redirect was refused.
type RedirectKind string

// The refused redirects.
const (
	// RedirectLoop: a hop leads back to a URL already visited.
	RedirectLoop RedirectKind = "loop"
	// TooManyRedirects: more than Config.MaxRedirects hops.
	TooManyRedirects RedirectKind = "too_many"
	// Downgrade: a hop from https to http.
	Downgrade RedirectKind = "downgrade"
)

// RedirectError reports a refused redirect. Final.
type RedirectError struct {
	Kind RedirectKind
	// Max is Config.MaxRedirects.
	Max int
}

func (e *RedirectError) Error() string {
	switch e.Kind {
	case RedirectLoop:
		return "redirect loop"
	case Downgrade:
		return "redirect from https to http refused"
	default:
		return fmt.Sprintf("stopped after %d redirects", e.Max)
	}
}

// netError marks a failure of the transport (dial, TLS, reset, read error).
// Its message is the underlying one made safe (see safeText); Transient
// treats it as transient unless the cause is known to be permanent.
type netError struct{ err error }

func (e *netError) Error() string { return safeText(e.err) }
func (e *netError) Unwrap() error { return e.err }

// boundedError is err with its message made safe (see safeText).
type boundedError struct{ err error }

func (e *boundedError) Error() string { return safeText(e.err) }
func (e *boundedError) Unwrap() error { return e.err }

// maxErrorText bounds the text of a transport error.
const maxErrorText = 512

// safeText returns err's message without the bytes a peer sent: net/http,
// net/textproto and net/url quote what they could not parse (a status
// line, a header line, a Location) with %q, and every quoted part is
// replaced by "…"; a certificate's list of names is dropped. The result is
// cut to maxErrorText bytes.
func safeText(err error) string {
	var hn x509.HostnameError
	if errors.As(err, &hn) {
		return "tls: certificate is not valid for " + clip.String(hn.Host, maxEntry)
	}
	return clip.String(stripQuoted(err.Error()), maxErrorText)
}

// stripQuoted replaces each double-quoted part of s (Go %q syntax) by "…";
// an unterminated quote drops the rest of s.
func stripQuoted(s string) string {
	i := strings.IndexByte(s, '"')
	if i < 0 {
		return s
	}
	var b strings.Builder
	for i >= 0 {
		b.WriteString(s[:i])
		b.WriteString(`"…"`)
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(s) {
			return b.String()
		}
		s = s[j+1:]
		i = strings.IndexByte(s, '"')
	}
	b.WriteString(s)
	return b.String()
}

// Transient reports whether err is trouble worth another attempt: 5xx, 408
// and 429 responses, connection failures and resets, stalls and bodies cut
// short. Host, address, scheme, redirect and protocol (HTTP/1.0) refusals,
// other 4xx, size limits, the total timeout, cancellation and certificate
// errors are final.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var (
		te *TimeoutError
		se *StatusError
		tr *TruncatedError
		he *HostError
		ae *AddressError
		sc *SchemeError
		re *RedirectError
		pe *ProtocolError
		le *limit.Error
	)
	switch {
	case errors.As(err, &te):
		return te.Kind == Stall
	case errors.As(err, &se):
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests || se.Code == http.StatusRequestTimeout
	case errors.As(err, &tr):
		return true
	case errors.As(err, &he), errors.As(err, &ae), errors.As(err, &sc), errors.As(err, &re), errors.As(err, &pe),
		errors.As(err, &le):
		return false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	if permanentNet(err) {
		return false
	}
	var ne *netError
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

// permanentNet reports network failures that another attempt will not fix:
// certificate problems and names that do not resolve.
func permanentNet(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		dns *net.DNSError
	)
	switch {
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci):
		return true
	case errors.As(err, &dns):
		return dns.IsNotFound
	}
	return false
}
