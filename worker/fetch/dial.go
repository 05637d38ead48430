package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// internalRanges are the addresses a download through a bare, host:port or
// "*" entry may not connect to.
var internalRanges = []struct {
	prefix netip.Prefix
	name   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("fc00::/7"), "private (ULA)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// nat64 is the well-known NAT64 prefix (RFC 6052): its last 32 bits are an
// IPv4 address that a NAT64 gateway connects to. sixToFour is 6to4 (RFC
// 3056): bits 16 to 48 are the IPv4 address of the site, which a relay
// reaches.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// internal returns why a is not a public address ("a loopback address",
// "an IPv4-mapped private address", ...), or "" when it is public.
func internal(a netip.Addr) string {
	a = a.WithZone("")
	form := ""
	switch {
	case a.Is4In6():
		a, form = a.Unmap(), "IPv4-mapped "
	case nat64.Contains(a):
		b := a.As16()
		a, form = netip.AddrFrom4([4]byte(b[12:])), "NAT64-mapped "
	case sixToFour.Contains(a):
		b := a.As16()
		a, form = netip.AddrFrom4([4]byte(b[2:6])), "6to4-mapped "
	}
	for _, r := range internalRanges {
		if r.prefix.Contains(a) {
			what := form + r.name
			switch what[0] {
			case 'a', 'e', 'i', 'o', 'u', 'I':
				return "an " + what + " address"
			}
			return "a " + what + " address"
		}
	}
	return ""
}

// checkAddress refuses a connection to address (the resolved ip:port about
// to be connected to) when it is not public; host is the name dialled.
func checkAddress(host, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &AddressError{Host: host, Reason: "an address that cannot be checked"}
	}
	if why := internal(ap.Addr()); why != "" {
		return &AddressError{Host: host, Addr: ap.Addr().WithZone(""), Reason: why}
	}
	return nil
}

// guardedDialer dials for one URL scheme. It looks the dialled host:port up
// in the allowlist again and, when the entry it matches is checked, refuses
// in net.Dialer.Control every resolved address that is not public: the
// check sees the address actually being connected to, after resolution, so
// a name rebound between a lookup and the connect gains nothing.
type guardedDialer struct {
	scheme   string
	allow    *allowlist
	resolver *net.Resolver
}

// Dial bounds of the default transport, as http.DefaultTransport's.
const (
	dialTimeout   = 30 * time.Second
	dialKeepAlive = 30 * time.Second
)

func (d *guardedDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, errors.New("malformed dial address")
	}
	host := normHost(h)
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, d.allow.refuse(d.scheme, host, 0)
	}
	allowed, checked := d.allow.match(d.scheme, host, port)
	if !allowed {
		// checkURL let it through, so this is a hop we did not see:
		// refuse rather than connect unchecked.
		return nil, d.allow.refuse(d.scheme, host, port)
	}
	nd := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive, Resolver: d.resolver}
	if checked {
		nd.Control = func(_, address string, _ syscall.RawConn) error {
			return checkAddress(host, address)
		}
	}
	return nd.DialContext(ctx, network, addr)
}

// guardedTransport is the default transport: one http.Transport per scheme,
// so each dialer knows the scheme of the entry a connection serves.
// Connections are pooled per scheme, host and port, the same key the
// allowlist decides on, so a pooled connection is never reused under a
// different rule.
type guardedTransport struct {
	plain, secure *http.Transport
}

func newGuardedTransport(allow *allowlist, resolver *net.Resolver, roots *x509.CertPool) *guardedTransport {
	mk := func(scheme string) *http.Transport {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.DisableCompression = true
		t.MaxIdleConns = 64
		t.MaxIdleConnsPerHost = 16
		t.IdleConnTimeout = 90 * time.Second
		t.ForceAttemptHTTP2 = true
		t.DialContext = (&guardedDialer{scheme: scheme, allow: allow, resolver: resolver}).DialContext
		if roots != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		}
		return t
	}
	return &guardedTransport{plain: mk("http"), secure: mk("https")}
}

func (t *guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" {
		return t.secure.RoundTrip(req)
	}
	return t.plain.RoundTrip(req)
}

func (t *guardedTransport) CloseIdleConnections() {
	t.plain.CloseIdleConnections()
	t.secure.CloseIdleConnections()
}
