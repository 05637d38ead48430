package pkgindex

import (
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"requests", "requests"},
		{"Foo_Bar", "foo-bar"},
		{"foo.bar", "foo-bar"},
		{"Foo-_.-Bar", "foo-bar"},
		{"FOO__BAR..BAZ", "foo-bar-baz"},
		{"zope.interface", "zope-interface"},
		{"a", "a"},
		{"A1_", "a1-"},
	} {
		if got := NormalizeName(tc.in); got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in                 string
		name, version, err string
	}{
		{in: "pypi:requests", name: "requests"},
		{in: "pypi:Foo_Bar==1.0", name: "Foo_Bar", version: "1.0"},
		{in: "pypi:zope.interface==6.0rc1", name: "zope.interface", version: "6.0rc1"},
		{in: "pypi:x==1!2.0.post1.dev3+local.7", name: "x", version: "1!2.0.post1.dev3+local.7"},
		{in: "requests", err: `does not start with "pypi:"`},
		{in: "pypi:", err: "empty project name"},
		{in: "pypi:-foo", err: "must start and end with a letter or digit"},
		{in: "pypi:foo-", err: "must start and end with a letter or digit"},
		{in: "pypi:foo bar", err: "only letters, digits"},
		{in: "pypi:foo[extra]==1.0", err: "only letters, digits"},
		{in: "pypi:foo>=1.0", err: "only letters, digits"},
		{in: "pypi:foo/../bar", err: "only letters, digits"},
		{in: "pypi:foo==", err: "empty version"},
		{in: "pypi:foo==1.*", err: "wildcards"},
		{in: "pypi:foo===1.0", err: "not a valid PEP 440 version"},
		{in: "pypi:foo==banana", err: "not a valid PEP 440 version"},
		{in: "pypi:foo== 1.0", err: "not a valid PEP 440 version"},
		{in: "pypi:foo==1.0==2.0", err: "not a valid PEP 440 version"},
		{in: "pypi:" + strings.Repeat("a", MaxNameLen+1), err: "longer than 256"},
		{in: "pypi:foo==" + strings.Repeat("1", MaxVersionLen+1), err: "longer than 128"},
	} {
		got, err := ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTarget(%q) error = %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tc.in, err)
			continue
		}
		if got.Name != tc.name || got.Version != tc.version || got.Origin != tc.in {
			t.Errorf("ParseTarget(%q) = %+v, want name %q version %q", tc.in, got, tc.name, tc.version)
		}
		if got.String() != tc.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestParseTargetBoundsError(t *testing.T) {
	_, err := ParseTarget("pypi:" + strings.Repeat("é", 1<<20))
	if err == nil || len(err.Error()) > 5<<10 {
		t.Fatalf("error for a 2 MiB target: %d bytes, want an error of at most 5 KiB", len(err.Error()))
	}
}

func TestIsTarget(t *testing.T) {
	if !IsTarget("pypi:requests") || IsTarget("./pypi:x") || IsTarget("https://x/pypi:y") {
		t.Fatal("IsTarget wrong")
	}
}
