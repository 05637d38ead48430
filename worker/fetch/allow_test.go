package fetch

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAllowedHosts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AllowedHost
		str  string // canonical form
	}{
		{"files.pythonhosted.org", AllowedHost{Host: "files.pythonhosted.org", Port: 443}, "files.pythonhosted.org"},
		{"  Files.PythonHosted.ORG.  ", AllowedHost{Host: "files.pythonhosted.org", Port: 443}, "files.pythonhosted.org"},
		{"files.example:8443", AllowedHost{Host: "files.example", Port: 8443}, "files.example:8443"},
		{"files.example:443", AllowedHost{Host: "files.example", Port: 443}, "files.example"},
		{"under_score-1.example", AllowedHost{Host: "under_score-1.example", Port: 443}, "under_score-1.example"},
		{"203.0.113.7", AllowedHost{Host: "203.0.113.7", Port: 443}, "203.0.113.7"},
		{"203.0.113.7:8443", AllowedHost{Host: "203.0.113.7", Port: 8443}, "203.0.113.7:8443"},
		{"[2001:DB8::0001]", AllowedHost{Host: "2001:db8::1", Port: 443}, "[2001:db8::1]"},
		{"[2001:db8::1]:8443", AllowedHost{Host: "2001:db8::1", Port: 8443}, "[2001:db8::1]:8443"},
		{"*", AllowedHost{Port: 443}, "*"},
		{" * ", AllowedHost{Port: 443}, "*"},
		{"http://127.0.0.1:8000", AllowedHost{Scheme: "http", Host: "127.0.0.1", Port: 8000}, "http://127.0.0.1:8000"},
		{"http://devapi:8000", AllowedHost{Scheme: "http", Host: "devapi", Port: 8000}, "http://devapi:8000"},
		{"http://devapi:8000/", AllowedHost{Scheme: "http", Host: "devapi", Port: 8000}, "http://devapi:8000"},
		{"http://devapi", AllowedHost{Scheme: "http", Host: "devapi", Port: 80}, "http://devapi:80"},
		{"https://devapi", AllowedHost{Scheme: "https", Host: "devapi", Port: 443}, "https://devapi:443"},
		{"HTTPS://Mirror.Internal.:8443", AllowedHost{Scheme: "https", Host: "mirror.internal", Port: 8443}, "https://mirror.internal:8443"},
		{"https://[::1]:8443", AllowedHost{Scheme: "https", Host: "::1", Port: 8443}, "https://[::1]:8443"},
		{"http://[::1]", AllowedHost{Scheme: "http", Host: "::1", Port: 80}, "http://[::1]:80"},
		{"http://localhost:8000", AllowedHost{Scheme: "http", Host: "localhost", Port: 8000}, "http://localhost:8000"},
		{"http://10.0.0.5:65535", AllowedHost{Scheme: "http", Host: "10.0.0.5", Port: 65535}, "http://10.0.0.5:65535"},
	} {
		got, err := ParseAllowedHosts([]string{tc.in})
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%q = %+v, want %+v", tc.in, got, tc.want)
			continue
		}
		if s := got[0].String(); s != tc.str {
			t.Errorf("%q: String() = %q, want %q", tc.in, s, tc.str)
		}
		// The canonical form parses back to the same entry.
		if again, err := ParseAllowedHosts([]string{got[0].String()}); err != nil || again[0] != tc.want {
			t.Errorf("%q: canonical form %q parses to %+v, %v", tc.in, got[0].String(), again, err)
		}
	}
}

func TestParseAllowedHostsRefuses(t *testing.T) {
	for _, tc := range []struct {
		in, why string // why: a part of the message
	}{
		{"", "empty entry"},
		{"   ", "empty entry"},
		{"files.example/simple", "a path is not allowed"},
		{"https://files.example/packages", "a path is not allowed"},
		{"https://files.example//", "a path is not allowed"},
		{"files.example?x=1", "a query is not allowed"},
		{"https://files.example?x=1", "a query is not allowed"},
		{"https://files.example/?x=1", "a path is not allowed"},
		{"https://files.example#top", "a fragment is not allowed"},
		{"user@files.example", "user info is not allowed"},
		{"https://user:pw@files.example", "user info is not allowed"},
		{"ftp://files.example", `scheme "ftp" is not http or https`},
		{"file:///etc/passwd", `scheme "file" is not http or https`},
		{"://files.example", `scheme "" is not http or https`},
		{"https://", "empty host"},
		{"https://:8443", "empty host"},
		{":8443", "empty host"},
		{".", "empty host"},
		{"files.example:", "bad port"},
		{"files.example:0", "bad port"},
		{"files.example:65536", "bad port"},
		{"files.example:-1", "bad port"},
		{"files.example:+443", "bad port"},
		{"files.example:0443", "bad port"},
		{"files.example:https", "bad port"},
		{"http://devapi:80x", "bad port"},
		{"::1", "must be in brackets"},
		{"2001:db8::1:8443", "must be in brackets"},
		{"[::1", "missing ]"},
		{"[files.example]", "brackets must hold an IPv6 address"},
		{"[127.0.0.1]:443", "brackets must hold an IPv6 address"},
		{"[fe80::1%eth0]", "brackets must hold an IPv6 address"},
		{"[2001:db8::1]x", "unexpected text after ]"},
		{"*.pythonhosted.org", "wildcards inside a name are not supported"},
		{"https://*", "wildcards inside a name are not supported"},
		{"files example", "character other than"},
		{"files..example", "empty label"},
		{strings.Repeat("a", 64) + ".example", "longer than 63"},
		{strings.Repeat("a.", 127) + "ab", "longer than 253"},
		{"127.0.0.1", "127.0.0.1 is a loopback address, which an entry without a scheme never reaches; name the origin (e.g. http://127.0.0.1:8000) to allow it"},
		{"127.0.0.1:8000", "a loopback address"},
		{"10.1.2.3", "a private address"},
		{"192.168.1.1:443", "a private address"},
		{"169.254.169.254", "a link-local address"},
		{"100.64.0.1", "a shared (CGNAT) address"},
		{"0.0.0.0", "an unspecified address"},
		{"[::1]:8443", "a loopback address"},
		{"[::]", "an unspecified address"},
		{"[fd00::1]", "a private (ULA) address"},
		{"[::ffff:127.0.0.1]", "an IPv4-mapped loopback address"},
		{"localhost", "localhost is a loopback name"},
		{"LocalHost.:8443", "localhost is a loopback name"},
		{"api.localhost", "a loopback name"},
	} {
		_, err := ParseAllowedHosts([]string{"files.pythonhosted.org", tc.in})
		if err == nil {
			t.Errorf("%q: accepted", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%q: error %q, want it to say %q", tc.in, err, tc.why)
		}
		if !strings.HasPrefix(err.Error(), "allowed hosts entry ") {
			t.Errorf("%q: error %q does not name the entry", tc.in, err)
		}
	}
}

// TestParseAllowedHostsErrorHidesCredentials: an entry refused for its user
// info or query is quoted without them: the message (the worker's exit
// error, in its log) showed "http://user:S3CRET@devapi:8000" whole.
func TestParseAllowedHostsErrorHidesCredentials(t *testing.T) {
	for _, in := range []string{"http://user:S3CRET@devapi:8000", "user:S3CRET@files.example", "https://files.example?token=S3CRET", "https://files.example/?token=S3CRET"} {
		_, err := ParseAllowedHosts([]string{in})
		if err == nil || strings.Contains(err.Error(), "S3CRET") || !strings.HasPrefix(err.Error(), "allowed hosts entry ") {
			t.Errorf("%q: error %v, want one naming the entry without its credential", in, err)
		}
	}
}

// TestParseAllowedHostsErrorHidesLongCredentials: an entry is redacted
// before it is cut. Cut first at 256 bytes, a credential longer than that
// (a PyPI API token is over 200 bytes: https://__token__:pypi-...@mirror)
// lost its closing '@' and was quoted as it stood, its first 238 bytes in
// the worker's exit error. User info before a "://" (no scheme: it is not
// one) is not quoted as a scheme either.
func TestParseAllowedHostsErrorHidesLongCredentials(t *testing.T) {
	token := "S3CRET" + strings.Repeat("x", 300)
	for _, in := range []string{
		"https://__token__:" + token + "@mirror.example",
		"__token__:" + token + "@mirror.example",
		"user:S3CRET@mirror.example://",
		"user:S3CRET@https://mirror.example",
	} {
		_, err := ParseAllowedHosts([]string{in})
		if err == nil || strings.Contains(err.Error(), "S3CRET") || !strings.HasPrefix(err.Error(), "allowed hosts entry ") {
			t.Errorf("%.40q...: error %.300v, want one naming the entry without its credential", in, err)
		}
	}
	// A scheme that is one is still named.
	if _, err := ParseAllowedHosts([]string{"ftp://files.example"}); err == nil || !strings.Contains(err.Error(), `scheme "ftp" is not http or https`) {
		t.Errorf("ftp: error %v, want the scheme named", err)
	}
}

// A hostile or mistyped entry of megabytes is quoted cut.
func TestParseAllowedHostsErrorBounded(t *testing.T) {
	long := "https://" + strings.Repeat("x", 1<<20) + "/path"
	_, err := ParseAllowedHosts([]string{long})
	if err == nil || len(err.Error()) > 1024 || !strings.Contains(err.Error(), "a path is not allowed") {
		t.Fatalf("error of %d bytes: %.200v", len(err.Error()), err)
	}
}

func TestNewRefusesBadEntry(t *testing.T) {
	f, err := New(Config{AllowedHosts: []string{"files.pythonhosted.org", "http://devapi:8000/simple"}})
	if f != nil || err == nil || !strings.Contains(err.Error(), `"http://devapi:8000/simple"`) {
		t.Fatalf("New = %v, %v: want an error naming the entry", f, err)
	}
}

func TestAllowlistMatch(t *testing.T) {
	entries, err := ParseAllowedHosts([]string{
		"files.pythonhosted.org", "files.example:8443", "http://devapi:8000", "http://plain.example",
		"https://mirror.internal", "https://[::1]:8443",
	})
	if err != nil {
		t.Fatal(err)
	}
	a := newAllowlist(entries)
	withAny := newAllowlist(append(entries, AllowedHost{Port: 443}))
	for _, tc := range []struct {
		scheme, host string
		port         int
		allowed      bool
		checked      bool // when allowed
		anyAllowed   bool // with "*" added
	}{
		{"https", "files.pythonhosted.org", 443, true, true, true},
		{"http", "files.pythonhosted.org", 80, false, false, false},
		{"http", "files.pythonhosted.org", 443, false, false, false},
		{"https", "files.pythonhosted.org", 8443, false, false, false},
		{"https", "files.example", 8443, true, true, true},
		{"https", "files.example", 443, false, false, true},
		{"http", "devapi", 8000, true, false, true},
		{"https", "devapi", 8000, false, false, false},
		{"http", "devapi", 80, false, false, false},
		{"http", "plain.example", 80, true, false, true},
		{"https", "mirror.internal", 443, true, false, true}, // the origin wins over "*"
		{"https", "::1", 8443, true, false, true},
		{"https", "evil.example", 443, false, false, true},
		{"http", "evil.example", 80, false, false, false},
	} {
		ok, checked := a.match(tc.scheme, tc.host, tc.port)
		if ok != tc.allowed || (ok && checked != tc.checked) {
			t.Errorf("%s://%s:%d: allowed %v checked %v, want %v %v", tc.scheme, tc.host, tc.port, ok, checked, tc.allowed, tc.checked)
		}
		if ok, _ := withAny.match(tc.scheme, tc.host, tc.port); ok != tc.anyAllowed {
			t.Errorf("with *: %s://%s:%d allowed %v, want %v", tc.scheme, tc.host, tc.port, ok, tc.anyAllowed)
		}
	}
}

func TestHostErrorMessages(t *testing.T) {
	entries, err := ParseAllowedHosts([]string{"files.example"})
	if err != nil {
		t.Fatal(err)
	}
	a := newAllowlist(entries)
	for _, tc := range []struct {
		scheme, host string
		port         int
		want         string
	}{
		{"https", "evil.example", 443, `host "evil.example" is not in DRAGONFLY_ALLOWED_HOSTS`},
		{"http", "files.example", 80, "http://files.example:80 is not in DRAGONFLY_ALLOWED_HOSTS (an entry without a scheme allows https only, on port 443 unless it names one)"},
		{"https", "files.example", 8443, "https://files.example:8443 is not in DRAGONFLY_ALLOWED_HOSTS (an entry without a scheme allows https only, on port 443 unless it names one)"},
	} {
		err := a.refuse(tc.scheme, tc.host, tc.port)
		if err.Error() != tc.want {
			t.Errorf("%s://%s:%d: %q, want %q", tc.scheme, tc.host, tc.port, err, tc.want)
		}
		var he *HostError
		if !errors.As(error(err), &he) || Transient(err) {
			t.Errorf("%v: not a final *HostError", err)
		}
	}
	long := a.refuse("https", strings.Repeat("h", 1<<20), 443)
	if len(long.Error()) > 1024 {
		t.Errorf("HostError of a 1 MiB host is %d bytes", len(long.Error()))
	}
}
