package pkgindex

import "testing"

// pep440Order is strictly increasing, from PEP 440's examples and
// pypa/packaging's test suite.
var pep440Order = []string{
	"1.0.dev456", "1.0a1", "1.0a2.dev456", "1.0a12.dev456", "1.0a12",
	"1.0b1.dev456", "1.0b2", "1.0b2.post345.dev456", "1.0b2.post345",
	"1.0b2-346", "1.0c1.dev456", "1.0c1", "1.0rc2", "1.0c3", "1.0",
	"1.0.post456.dev34", "1.0.post456", "1.1.dev1", "1.2+123abc",
	"1.2+123abc456", "1.2+abc", "1.2+abc123", "1.2+abc123def", "1.2+1234.abc",
	"1.2+123456", "1.2.r32+123456", "1.2.rev33+123456", "1.10", "2",
	"1!1.0.dev456", "1!1.0a1", "1!1.0", "1!1.2.rev33+123456",
}

func TestVersionOrder(t *testing.T) {
	vs := make([]version, len(pep440Order))
	for i, s := range pep440Order {
		v, ok := parseVersion(s)
		if !ok {
			t.Fatalf("parseVersion(%q) failed", s)
		}
		vs[i] = v
	}
	for i := range vs {
		for j := range vs {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := vs[i].compare(vs[j]); got != want {
				t.Errorf("compare(%s, %s) = %d, want %d", pep440Order[i], pep440Order[j], got, want)
			}
		}
	}
}

func TestVersionEqual(t *testing.T) {
	for _, p := range [][2]string{
		{"1.0", "1.0.0"}, {"1", "1.0.0.0"}, {"1.0a1", "1.0.0alpha1"}, {"1.0-1", "1.0.post1"},
		{"1.0c1", "1.0rc1"}, {"1.0.DEV2", "1.0.dev2"}, {"v1.0", "1.0"}, {"0!1.0", "1.0"},
		{"1.0+Local", "1.0.0+local"}, {"1.0_post_2", "1.0.post2"},
		{"1.0+a_b", "1.0+a.b"}, {"1.0+a-b", "1.0+A.b"}, {"1.0+01", "1.0+1"}, {"1.0+ubuntu-00.2", "1.0+ubuntu.0.2"},
	} {
		a, ok1 := parseVersion(p[0])
		b, ok2 := parseVersion(p[1])
		if !ok1 || !ok2 {
			t.Fatalf("parse %q %q: %v %v", p[0], p[1], ok1, ok2)
		}
		if a.compare(b) != 0 || b.compare(a) != 0 || a.key != b.key {
			t.Errorf("%s and %s: compare %d, keys %q %q; want equal", p[0], p[1], a.compare(b), a.key, b.key)
		}
	}
	for _, p := range [][2]string{{"1.0.1", "1.0"}, {"1.0.0.1", "1"}, {"1.0+local", "1.0"}, {"1.0.post0", "1.0"}} {
		a, _ := parseVersion(p[0])
		b, _ := parseVersion(p[1])
		if a.compare(b) != 1 || b.compare(a) != -1 || a.key == b.key {
			t.Errorf("%s should sort after %s (keys %q %q)", p[0], p[1], a.key, b.key)
		}
	}
}

func TestParseVersionRejects(t *testing.T) {
	for _, s := range []string{"", "foo", "1..0", "1.0-", "1.0+", " 1.0", "1.0 ", "1.0\n", "1,0", "1.0*", "99999999999999999999999"} {
		if v, ok := parseVersion(s); ok {
			t.Errorf("parseVersion(%q) = %s, want failure", s, v)
		}
	}
}

func TestIsPre(t *testing.T) {
	for s, want := range map[string]bool{
		"1.0a1": true, "1.0b2": true, "1.0rc1": true, "1.0.dev1": true, "1.0.post1.dev1": true, "1.0rc1.post1": true,
		"1.0": false, "1.0.post1": false, "1.0+local": false, "1!2": false,
	} {
		v, ok := parseVersion(s)
		if !ok {
			t.Fatalf("parseVersion(%q) failed", s)
		}
		if v.isPre() != want {
			t.Errorf("isPre(%s) = %v, want %v", s, v.isPre(), want)
		}
	}
}

func TestCanonicalKey(t *testing.T) {
	for in, want := range map[string]string{
		"1.0.0": "1", "0.0": "0", "1!2.0.0rc1": "1!2rc1", "1.10": "1.10", "10.0": "10", "1.0.post1": "1.post1",
		"2.0+abc.1": "2+abc.1",
	} {
		v, ok := parseVersion(in)
		if !ok || v.key != want {
			t.Errorf("key(%s) = %q (%v), want %q", in, v.key, ok, want)
		}
	}
}
