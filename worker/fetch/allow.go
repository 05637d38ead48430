package fetch

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
)

// AllowedHost is one parsed entry of Config.AllowedHosts.
type AllowedHost struct {
	// Scheme is "http" or "https" for an origin entry ("http://devapi:8000")
	// and "" for the other forms, which allow https only.
	Scheme string
	// Host is the host name, lowercased and without a trailing dot, or an IP
	// address in canonical form (IPv6 without brackets); "" for the entry
	// "*".
	Host string
	// Port is the one port the entry allows: the one it names, else 443 (or
	// 80 for an http origin).
	Port int
}

// Any reports whether e is the entry "*": any host, https on port 443.
func (e AllowedHost) Any() bool { return e.Host == "" }

// Origin reports whether e names a scheme: exactly that origin, whatever
// address the host resolves to.
func (e AllowedHost) Origin() bool { return e.Scheme != "" }

// String returns e in its canonical form: "*", "host", "host:port" or
// "scheme://host:port".
func (e AllowedHost) String() string {
	switch {
	case e.Any():
		return "*"
	case e.Origin():
		return e.Scheme + "://" + joinHostPort(e.Host, e.Port)
	case e.Port == 443:
		if strings.Contains(e.Host, ":") {
			return "[" + e.Host + "]"
		}
		return e.Host
	}
	return joinHostPort(e.Host, e.Port)
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// shownEntry is an entry as a parse error quotes it: without what may be a
// credential (user info, a query, a fragment: clip.URL), which an entry
// refused for them may hold (http://user:password@host), and then cut (cut
// first, a credential longer than the cut lost the '@' that marks it). An
// entry without a scheme (or with text before "://" that is not one) is
// shown as clip.URL shows it with one, as parseEntry reads it: an
// authority ("[redacted]@files.example").
func shownEntry(raw string) string {
	const scheme = "entry://"
	t := strings.TrimSpace(raw)
	if i := strings.Index(t, "://"); (i < 0 || !isSchemeName(t[:i])) && strings.ContainsAny(raw, "@?#") {
		return strings.TrimPrefix(clip.URL(scheme+raw), scheme)
	}
	return clip.URL(raw)
}

// isSchemeName reports whether s is a URL scheme as RFC 3986 spells one: a
// letter, then letters, digits, '+', '-' and '.'.
func isSchemeName(s string) bool {
	for i, c := range []byte(s) {
		letter := 'a' <= c|0x20 && c|0x20 <= 'z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// maxEntry bounds an entry quoted in a parse error.
const maxEntry = 256

// ParseAllowedHosts parses the entries of Config.AllowedHosts (surrounding
// spaces ignored). An entry is one of
//
//   - a bare host ("files.pythonhosted.org"): https on port 443 only;
//   - host:port ("files.example:8443", "[::1]:8443"): https on that port only;
//   - an origin ("http://devapi:8000", "https://[::1]:8443"): exactly that
//     scheme, host and port (the scheme's default port when none is named);
//   - "*": any host, https on port 443.
//
// Hosts of the first, second and fourth forms must resolve to public
// addresses when connected to (see Config.AllowedHosts). Host names compare
// case-insensitively, a trailing dot ignored; IPv6 literals go in brackets.
// An empty entry, a path, a query, a fragment, user info, a scheme other
// than http and https, an empty host, a wildcard inside a name, a bad port,
// and a bare or host:port IP literal (or "localhost") that is not a public
// address are errors naming the entry.
func ParseAllowedHosts(entries []string) ([]AllowedHost, error) {
	out := make([]AllowedHost, 0, len(entries))
	for _, raw := range entries {
		e, err := parseEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("allowed hosts entry %q: %w", shownEntry(raw), err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseEntry(raw string) (AllowedHost, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return AllowedHost{}, fmt.Errorf("empty entry")
	}
	if s == "*" {
		return AllowedHost{Port: 443}, nil
	}
	var e AllowedHost
	rest, def := s, 443
	if i := strings.Index(s, "://"); i >= 0 {
		e.Scheme = strings.ToLower(s[:i])
		switch e.Scheme {
		case "https":
		case "http":
			def = 80
		default:
			if s[:i] != "" && !isSchemeName(s[:i]) {
				// Not quoted: it may be user info ("user:password@host://").
				return AllowedHost{}, fmt.Errorf("the text before \"://\" is not a scheme: an entry names a host, host:port or scheme://host[:port]")
			}
			return AllowedHost{}, fmt.Errorf("scheme %q is not http or https", clip.String(s[:i], 32))
		}
		rest = s[i+3:]
		if strings.HasSuffix(rest, "/") && strings.IndexAny(rest, "/?#@") == len(rest)-1 {
			rest = rest[:len(rest)-1] // "http://devapi:8000/" names the origin too
		}
	}
	if i := strings.IndexAny(rest, "/?#@"); i >= 0 {
		what := map[byte]string{'/': "a path", '?': "a query", '#': "a fragment", '@': "user info"}[rest[i]]
		return AllowedHost{}, fmt.Errorf("%s is not allowed: an entry names a host, host:port or scheme://host[:port]", what)
	}
	host, port, err := splitEntryHostPort(rest, def)
	if err != nil {
		return AllowedHost{}, err
	}
	e.Host, e.Port = host, port
	if e.Origin() {
		return e, nil
	}
	// A bare or host:port entry is checked at connect time: one that can
	// only ever reach internal addresses is a mistake worth refusing now.
	if a, err := netip.ParseAddr(host); err == nil {
		if why := internal(a); why != "" {
			return AllowedHost{}, fmt.Errorf("%s is %s, which an entry without a scheme never reaches; name the origin (e.g. http://%s) to allow it",
				host, why, joinHostPort(host, 8000))
		}
	} else if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return AllowedHost{}, fmt.Errorf("%s is a loopback name, which an entry without a scheme never reaches; name the origin (e.g. http://%s:8000) to allow it", host, host)
	}
	return e, nil
}

// splitEntryHostPort splits host[:port] or [v6][:port] and normalizes the
// host; def is the port when none is named.
func splitEntryHostPort(hp string, def int) (string, int, error) {
	var host, port string
	hasPort := false
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("missing ] after an IPv6 address")
		}
		a, err := netip.ParseAddr(hp[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, fmt.Errorf("brackets must hold an IPv6 address without a zone")
		}
		host = a.String()
		switch after := hp[end+1:]; {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return "", 0, fmt.Errorf("unexpected text after ]")
		}
	} else {
		switch strings.Count(hp, ":") {
		case 0:
			host = hp
		case 1:
			host, port, _ = strings.Cut(hp, ":")
			hasPort = true
		default:
			return "", 0, fmt.Errorf("an IPv6 address must be in brackets: [addr] or [addr]:port")
		}
		var err error
		if host, err = entryHost(host); err != nil {
			return "", 0, err
		}
	}
	if !hasPort {
		return host, def, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '0' {
		return "", 0, fmt.Errorf("bad port %q: want 1 to 65535", clip.String(port, 32))
	}
	return host, n, nil
}

// entryHost normalizes a host name or IPv4 address of an entry.
func entryHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" {
		return "", fmt.Errorf("empty host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.String(), nil
	}
	if len(h) > 253 {
		return "", fmt.Errorf("host name longer than 253 bytes")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("host name %q has an empty label or one longer than 63 bytes", clip.String(h, maxEntry))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c == '*':
				return "", fmt.Errorf("wildcards inside a name are not supported: list each host, or the single entry *")
			default:
				return "", fmt.Errorf("host name %q has a character other than letters, digits, '-', '_' and '.'", clip.String(h, maxEntry))
			}
		}
	}
	return h, nil
}

// allowlist matches URLs against parsed entries.
type allowlist struct {
	any     bool                // "*": https on 443 to any public address
	checked map[hostPort]bool   // bare and host:port entries: https only
	origins map[origin]bool     // origin entries: any address
	hosts   map[string]struct{} // every host named, for error messages
}

type hostPort struct {
	host string
	port int
}

type origin struct {
	scheme string
	hostPort
}

func newAllowlist(entries []AllowedHost) *allowlist {
	a := &allowlist{checked: map[hostPort]bool{}, origins: map[origin]bool{}, hosts: map[string]struct{}{}}
	for _, e := range entries {
		switch {
		case e.Any():
			a.any = true
		case e.Origin():
			a.origins[origin{e.Scheme, hostPort{e.Host, e.Port}}] = true
		default:
			a.checked[hostPort{e.Host, e.Port}] = true
		}
		if e.Host != "" {
			a.hosts[e.Host] = struct{}{}
		}
	}
	return a
}

// match reports whether scheme://host:port is allowed and, if so, whether
// its connections must be checked for internal addresses. An origin entry
// wins over the others: what the operator named explicitly is not checked.
func (a *allowlist) match(scheme, host string, port int) (allowed, checked bool) {
	hp := hostPort{host, port}
	if a.origins[origin{scheme, hp}] {
		return true, false
	}
	if scheme == "https" && (a.checked[hp] || (a.any && port == 443)) {
		return true, true
	}
	return false, false
}

// refuse returns the *HostError for a URL match refused.
func (a *allowlist) refuse(scheme, host string, port int) *HostError {
	_, listed := a.hosts[host]
	return &HostError{Host: clip.String(host, maxEntry), Scheme: scheme, Port: port, listed: listed || a.any}
}

// normHost lowercases a URL host, drops a trailing dot and brackets, and
// puts IP addresses in canonical form, as entries are.
func normHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.String()
	}
	return h
}

// defaultPort is the port of scheme when a URL names none.
func defaultPort(scheme string) int {
	if scheme == "http" {
		return 80
	}
	return 443
}
