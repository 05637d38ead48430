package fetch

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestInternalAddresses(t *testing.T) {
	for _, tc := range []struct {
		addr, want string // want "" for public
	}{
		{"127.0.0.1", "a loopback address"},
		{"127.255.0.9", "a loopback address"},
		{"::1", "a loopback address"},
		{"10.0.0.1", "a private address"},
		{"172.16.0.1", "a private address"},
		{"172.31.255.255", "a private address"},
		{"192.168.0.1", "a private address"},
		{"fc00::1", "a private (ULA) address"},
		{"fd12:3456::1", "a private (ULA) address"},
		{"169.254.169.254", "a link-local address"},
		{"fe80::1", "a link-local address"},
		{"fe80::1%eth0", "a link-local address"},
		{"fec0::1", "a site-local address"},
		{"100.64.0.1", "a shared (CGNAT) address"},
		{"100.127.255.255", "a shared (CGNAT) address"},
		{"0.0.0.0", "an unspecified address"},
		{"0.1.2.3", "an unspecified address"},
		{"::", "an unspecified address"},
		{"224.0.0.1", "a multicast address"},
		{"239.255.255.250", "a multicast address"},
		{"ff02::1", "a multicast address"},
		{"255.255.255.255", "a broadcast address"},
		{"240.0.0.1", "a reserved address"},
		{"192.0.0.170", "an IETF protocol assignment address"},
		{"198.18.0.1", "a benchmarking address"},
		{"198.19.255.255", "a benchmarking address"},
		{"64:ff9b:1::a9fe:a9fe", "a local-use NAT64 address"},
		{"2002:a9fe:a9fe::1", "a 6to4-mapped link-local address"},
		{"2002:c0a8:0101::", "a 6to4-mapped private address"},
		{"::ffff:127.0.0.1", "an IPv4-mapped loopback address"},
		{"::ffff:169.254.169.254", "an IPv4-mapped link-local address"},
		{"::ffff:10.0.0.1", "an IPv4-mapped private address"},
		{"::ffff:0.0.0.0", "an IPv4-mapped unspecified address"},
		{"64:ff9b::7f00:1", "a NAT64-mapped loopback address"},
		{"64:ff9b::a9fe:a9fe", "a NAT64-mapped link-local address"},
		// Public.
		{"151.101.0.223", ""},
		{"8.8.8.8", ""},
		{"172.15.255.255", ""},
		{"172.32.0.0", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"169.253.255.255", ""},
		{"2a04:4e42::223", ""},
		{"::ffff:151.101.0.223", ""},
		{"64:ff9b::9765:df", ""},
		{"2002:9765:df::1", ""},
		{"198.20.0.0", ""},
		{"192.0.1.0", ""},
		{"239.255.255.255", "a multicast address"},
	} {
		if got := internal(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("internal(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestAddressErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		err  *AddressError
		want string
	}{
		{&AddressError{Host: "files.example", Addr: netip.MustParseAddr("127.0.0.1"), Reason: "a loopback address"},
			"files.example resolved to 127.0.0.1, a loopback address: refused"},
		{&AddressError{Host: "127.0.0.1", Addr: netip.MustParseAddr("127.0.0.1"), Reason: "a loopback address"},
			"127.0.0.1 is a loopback address: refused"},
		{&AddressError{Host: "files.example", Reason: "an address that cannot be checked"},
			"files.example resolved to an address that cannot be checked: refused"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
		if Transient(tc.err) || Transient(fmt.Errorf("x: %w", tc.err)) {
			t.Errorf("%v is transient", tc.err)
		}
	}
	if n := len((&AddressError{Host: strings.Repeat("h", 1<<20), Reason: "x"}).Error()); n > 1024 {
		t.Errorf("message of a 1 MiB host: %d bytes", n)
	}
}

// dnsStub answers A and AAAA questions over UDP on loopback from a fixed
// table; other names get NXDOMAIN. It counts the questions per name.
type dnsStub struct {
	addr    string
	answers map[string][]netip.Addr // lowercased FQDN with the final dot
	mu      sync.Mutex
	asked   map[string]int
}

func startDNS(t *testing.T, answers map[string][]netip.Addr) *dnsStub {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsStub{addr: pc.LocalAddr().String(), answers: answers, asked: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := d.answer(buf[:n]); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return d
}

func (d *dnsStub) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	d.mu.Lock()
	d.asked[name]++
	d.mu.Unlock()
	addrs, known := d.answers[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			err = b.AResource(rr, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			err = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil
		}
	}
	resp, err := b.Finish()
	if err != nil {
		return nil
	}
	return resp
}

func (d *dnsStub) questions(fqdn string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked[fqdn]
}

// resolver is a pure-Go resolver that asks only the stub.
func (d *dnsStub) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", d.addr)
	}}
}

// acceptLog is a listener that reports the remote address of every
// connection it accepts.
type acceptLog struct {
	net.Listener
	accepted chan net.Addr
}

func (l *acceptLog) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.accepted <- c.RemoteAddr():
		default:
		}
	}
	return c, err
}

// rebinding is the files host a DNS rebinding attack points at: an https
// server on 127.0.0.1 for the name rebound, which dns (a stub DNS server)
// resolves to 127.0.0.1. The server's certificate (httptest's own, for
// *.example.com) is trusted by roots, its listener logs every accepted
// connection, and hits counts the requests it handled.
type rebinding struct {
	srv   *httptest.Server
	log   *acceptLog
	roots *x509.CertPool
	port  int
	dns   *dnsStub
	hits  atomic.Int32
}

// startRebinding starts a rebinding whose server answers every request
// with body.
func startRebinding(t *testing.T, body string) *rebinding {
	t.Helper()
	r := &rebinding{roots: x509.NewCertPool()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.log = &acceptLog{Listener: ln, accepted: make(chan net.Addr, 16)}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.hits.Add(1)
		io.WriteString(w, body)
	}))
	r.srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // probes hang up before a handshake
	r.srv.Listener = r.log
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	r.roots.AddCert(r.srv.Certificate())
	r.port = ln.Addr().(*net.TCPAddr).Port
	r.dns = startDNS(t, map[string][]netip.Addr{rebound + ".": {netip.MustParseAddr("127.0.0.1")}})
	return r
}

// assertNoConnection proves r's listener accepted nothing before now: it
// connects itself and requires its own connection to be the first one
// accepted (the accept queue is first in, first out).
func (r *rebinding) assertNoConnection(t *testing.T) {
	t.Helper()
	probe, err := net.Dial("tcp", r.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	select {
	case first := <-r.log.accepted:
		if first.String() != probe.LocalAddr().String() {
			t.Fatalf("the server accepted a connection from %v before the probe from %v", first, probe.LocalAddr())
		}
	case <-t.Context().Done():
		t.Fatal("the probe was never accepted")
	}
}

const rebound = "files.example.com"

// A bare or host:port entry whose name resolves, through a real (stub) DNS
// server, to 127.0.0.1 is refused at connect time: nothing reaches the
// https server listening there. The same name under an origin entry is the
// operator's choice and downloads.
func TestDNSRebindingRefusedAtConnect(t *testing.T) {
	r := startRebinding(t, "wheel")

	for _, tc := range []struct {
		name    string
		allowed []string
		url     string
	}{
		{"host:port entry", []string{fmt.Sprintf("%s:%d", rebound, r.port)}, fmt.Sprintf("https://%s:%d/x.whl", rebound, r.port)},
		{"bare entry", []string{rebound}, "https://" + rebound + "/x.whl"},
		{"wildcard", []string{"*"}, "https://" + strings.ToUpper(rebound) + "./x.whl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.dns.questions(rebound + ".")
			f, _ := newTest(t, Config{AllowedHosts: tc.allowed, Resolver: r.dns.resolver(), RootCAs: r.roots})
			_, st, err := f.GetWithStats(t.Context(), tc.url)
			var ae *AddressError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *AddressError", err)
			}
			if ae.Host != rebound || ae.Addr != netip.MustParseAddr("127.0.0.1") || ae.Reason != "a loopback address" {
				t.Errorf("AddressError = %+v", ae)
			}
			if want := rebound + " resolved to 127.0.0.1, a loopback address: refused"; err.Error() != want {
				t.Errorf("message = %q, want %q", err.Error(), want)
			}
			if Transient(err) || st.Attempts != 1 {
				t.Errorf("transient %v after %d attempts: want final after 1", Transient(err), st.Attempts)
			}
			var he *HostError
			if errors.As(err, &he) {
				t.Errorf("the refusal is also a *HostError: %v", he)
			}
			if r.dns.questions(rebound+".") == before {
				t.Error("the stub DNS server was not asked: the address did not come from a resolver")
			}
			r.assertNoConnection(t)
			if r.hits.Load() != 0 {
				t.Errorf("the server handled %d requests", r.hits.Load())
			}
		})
	}

	t.Run("origin entry allowed", func(t *testing.T) {
		f, _ := newTest(t, Config{AllowedHosts: []string{fmt.Sprintf("https://%s:%d", rebound, r.port)}, Resolver: r.dns.resolver(), RootCAs: r.roots})
		got, err := f.Get(t.Context(), fmt.Sprintf("https://%s:%d/x.whl", rebound, r.port))
		if err != nil || string(got) != "wheel" || r.hits.Load() != 1 {
			t.Fatalf("got %q, %v, %d hits: want the wheel from the server", got, err, r.hits.Load())
		}
	})
}

// A name resolving to a public and an internal address connects only to the
// public one; one resolving only to internal ones (v4 and v6) is refused.
func TestEveryResolvedAddressChecked(t *testing.T) {
	dns := startDNS(t, map[string][]netip.Addr{
		"both.example.test.": {netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::1")},
		"meta.example.test.": {netip.MustParseAddr("::ffff:169.254.169.254")},
	})
	f, _ := newTest(t, Config{AllowedHosts: []string{"*"}, Resolver: dns.resolver()})
	for host, reasons := range map[string][]string{
		"both.example.test": {"a private address", "a private (ULA) address"},
		// Go's resolver unmaps an IPv4-mapped AAAA answer to IPv4.
		"meta.example.test": {"a link-local address", "an IPv4-mapped link-local address"},
	} {
		_, err := f.Get(t.Context(), "https://"+host+"/x.whl")
		var ae *AddressError
		if !errors.As(err, &ae) || ae.Host != host || !contains(reasons, ae.Reason) {
			t.Errorf("%s: err = %v, want *AddressError with one of %q", host, err, reasons)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Redirects follow the same rules: each hop must match an entry and is
// checked by the rules of the entry it matched. The first hop is a loopback
// server reached through an origin entry (standing in for a public files
// host).
func TestRedirectToInternalRefused(t *testing.T) {
	target := startRebinding(t, "internal")
	var startHits atomic.Int32
	start := server(t, func(w http.ResponseWriter, r *http.Request) {
		startHits.Add(1)
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	allowed := []string{start.URL, "*", fmt.Sprintf("%s:%d", rebound, target.port)}

	for _, tc := range []struct {
		name, to string
		want     func(error) bool
	}{
		{"http loopback literal", "http://127.0.0.1/latest/meta-data", isHostError},
		{"http loopback literal on the server's port", fmt.Sprintf("http://127.0.0.1:%d/x", target.port), isHostError},
		{"https loopback literal via *", "https://127.0.0.1/x", isAddressError},
		{"https metadata address via *", "https://169.254.169.254/latest/meta-data", isAddressError},
		{"bare allowed host resolving to loopback", fmt.Sprintf("https://%s:%d/x.whl", rebound, target.port), isAddressError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startHits.Store(0)
			f, _ := newTest(t, Config{AllowedHosts: allowed, Resolver: target.dns.resolver(), RootCAs: target.roots})
			_, st, err := f.GetWithStats(t.Context(), start.URL+"/?to="+tc.to)
			if !tc.want(err) || Transient(err) {
				t.Fatalf("err = %v (transient %v), wrong refusal", err, Transient(err))
			}
			if st.Attempts != 1 || startHits.Load() != 1 {
				t.Errorf("attempts %d, first-hop hits %d: want 1, 1", st.Attempts, startHits.Load())
			}
			target.assertNoConnection(t)
			if target.hits.Load() != 0 {
				t.Errorf("the internal server handled %d requests", target.hits.Load())
			}
		})
	}
}

func isHostError(err error) bool    { var he *HostError; return errors.As(err, &he) }
func isAddressError(err error) bool { var ae *AddressError; return errors.As(err, &ae) }

// An injected transport does its own dialing: the scheme, host and port
// checks still hold, the address check cannot.
func TestInjectedTransportSkipsAddressCheck(t *testing.T) {
	r := startRebinding(t, "ok")
	// httptest's client transport trusts the server's certificate; here it
	// dials through the stub DNS server.
	tr := r.srv.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Resolver: r.dns.resolver()}).DialContext
	t.Cleanup(tr.CloseIdleConnections)
	f, _ := newTest(t, Config{AllowedHosts: []string{fmt.Sprintf("%s:%d", rebound, r.port)}, Transport: tr})
	got, err := f.Get(t.Context(), fmt.Sprintf("https://%s:%d/x", rebound, r.port))
	if err != nil || string(got) != "ok" {
		t.Fatalf("got %q, %v: the injected transport is used as is", got, err)
	}
	_, err = f.Get(t.Context(), fmt.Sprintf("http://%s:%d/x", rebound, r.port))
	if !isHostError(err) {
		t.Fatalf("err = %v: http to a host:port entry must still be refused", err)
	}
}

// The default transport's dialer refuses a host:port the allowlist does not
// allow even when asked directly (a hop checkURL never saw).
func TestGuardedDialerRechecksAllowlist(t *testing.T) {
	entries, err := ParseAllowedHosts([]string{"files.example", "http://devapi:8000"})
	if err != nil {
		t.Fatal(err)
	}
	d := &guardedDialer{scheme: "https", allow: newAllowlist(entries)}
	for _, addr := range []string{"devapi:8000", "evil.example:443", "files.example:80"} {
		if _, err := d.DialContext(t.Context(), "tcp", addr); !isHostError(err) {
			t.Errorf("https dial %s: err = %v, want *HostError", addr, err)
		}
	}
}
