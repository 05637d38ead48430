package pkgindex

import (
	"strings"
	"testing"
)

func TestParseFilename(t *testing.T) {
	for _, tc := range []struct {
		project, file string
		want          string // normalized version; "" = ignored
	}{
		// wheels
		{"foo-bar", "foo_bar-1.0-py3-none-any.whl", "1.0"},
		{"foo-bar", "Foo_Bar-1.0-py3-none-any.whl", "1.0"},
		{"foo-bar", "foo_bar-1.0-1-py3-none-any.whl", "1.0"},
		{"foo-bar", "foo_bar-1.0-1abc-py3-none-any.whl", "1.0"},
		{"foo-bar", "foo_bar-2.0rc1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "2.0rc1"},
		{"foo-bar", "foo_bar-1.0-PY3-NONE-ANY.WHL", "1.0"},
		{"foo-bar", "foo_bar-1.0-x-py3-none-any.whl", ""},          // build tag must start with a digit
		{"foo-bar", "foo_bar-1.0-py3-none.whl", ""},                // 4 parts
		{"foo-bar", "foo_bar-1.0-1-2-py3-none-any.whl", ""},        // 7 parts
		{"foo-bar", "foo-bar-1.0-py3-none-any.whl", ""},            // unescaped '-' in a wheel name
		{"foo-bar", "foo_bar-1.0--none-any.whl", ""},               // empty part
		{"foo-bar", "foo_bar-1.0-py3-none-any x.whl", ""},          // space in a tag
		{"foo-bar", "foo_bar-1.0-py3-none-any+x.whl", "1.0"},       // + in a tag: pip takes any but white space and '-'
		{"foo-bar", "foo_bar-notaversion-py3-none-any.whl", ""},    // version
		{"foo-bar", "other-1.0-py3-none-any.whl", ""},              // other project
		{"foo", "foo_bar-1.0-py3-none-any.whl", ""},                // other project
		{"requests", "requests-2.31.0-py3-none-any.whl", "2.31.0"}, // real
		// sdists
		{"foo-bar", "foo_bar-1.0.tar.gz", "1.0"},
		{"foo-bar", "foo-bar-1.0.tar.gz", "1.0"},
		{"foo-bar", "Foo.Bar-1.0.post2.zip", "1.0.post2"},
		{"foo-bar", "foo_bar-1.0.tar.bz2", "1.0"},
		{"foo-bar", "foo_bar-1.0.tgz", "1.0"},
		{"foo-bar", "foo_bar-1.0.tar.xz", "1.0"},
		{"foo-bar", "foo_bar-1.0.tar", "1.0"},
		{"foo-bar", "foo_bar-1.0-1.tar.gz", "1.0.post1"},
		{"foo-bar", "foo_bar-1!2.0+local.1.tar.gz", "1!2.0+local.1"},
		{"foo", "foo-bar-1.0.tar.gz", ""}, // belongs to foo-bar
		{"foo-bar", "foo-1.0.tar.gz", ""},
		{"foo-bar", "foo_bar-notaversion.tar.gz", ""},
		{"foo-bar", "foo_bar-.tar.gz", ""},
		{"foo-bar", "foo_bar.tar.gz", ""},
		{"foo-bar", ".tar.gz", ""},
		{"foo-bar", "foo_bar-1.0 .tar.gz", ""},
		{"foo-bar", "foo_bar-1.0.rar", ""},
		{"foo-bar", "foo_bar-9.0.exe", ""},
		{"foo-bar", "foo_bar-9.0.win32.exe", ""},
		{"foo-bar", "dir/foo_bar-1.0.tar.gz", ""},
		{"foo-bar", `dir\foo_bar-1.0.tar.gz`, ""},
		{"foo-bar", "", ""},
		{"foo-bar", "README.txt", ""},
		// eggs
		{"foo-bar", "foo_bar-1.0-py2.7.egg", "1.0"},
		{"foo-bar", "foo_bar-1.0-py2.7-linux-x86_64.egg", "1.0"},
		{"foo-bar", "foo_bar-1.0-py2.7-win32.egg", "1.0"},
		{"foo-bar", "foo_bar-1.0.egg", "1.0"},
		{"foo-bar", "foo_bar.egg", ""},
		{"foo-bar", "foo_bar-1.0-py2 7.egg", ""},
		{"foo-bar", "foo-bar-1.0-py2.7.egg", ""}, // unescaped '-' in an egg name
	} {
		v, ok := parseFilename(tc.project, tc.file)
		got := ""
		if ok {
			got = v.String()
		}
		if got != tc.want {
			t.Errorf("parseFilename(%q, %q) = %q (%v), want %q", tc.project, tc.file, got, ok, tc.want)
		}
	}
}

func TestParseFilenameBound(t *testing.T) {
	name := "foo-" + strings.Repeat("1.", 600) + "0.tar.gz"
	if _, ok := parseFilename("foo", name); ok {
		t.Fatalf("a %d-byte name parsed; names over %d bytes must be ignored", len(name), MaxFilenameLen)
	}
}

// TestParseFilenameAsPipReads: pip (packaging's canonicalize_name and
// Version) reads the Kelvin sign in a name as 'k', strips Python
// whitespace around an sdist's version and takes "poſt" for "post"; these
// files were left out of their release, so a pin read clean while pip
// could install them. (A name with whitespace then fails its release, as
// scan reports cannot name it: TestPinFailsOnFilesPipReadsOtherwise.)
func TestParseFilenameAsPipReads(t *testing.T) {
	for _, tc := range []struct{ project, name, want string }{
		{"koo", "\u212aoo-1.0.tar.gz", "1.0"},
		{"koo", "\u212aoo-1.0-1-py3-none-any.whl", "1.0"},
		{"koo", "koo- 1.0.tar.gz", "1.0"},
		{"koo", "koo-1.0\u3000.tar.gz", "1.0"},
		{"koo", "koo-\x1c1.0\f.zip", "1.0"},
		{"koo", "koo-1.0.po\u017ft1.tar.gz", "1.0.post1"},
		{"koo", "koo-1.0.po\u017ft1-py3-none-any.whl", "1.0.post1"},
	} {
		v, ok := pipFilename(tc.project, tc.name)
		want, _ := parseVersion(tc.want)
		if !ok || !v.matches(want) {
			t.Errorf("pipFilename(%q, %q) = %v, %v; want %s as pip reads it", tc.project, tc.name, v, ok, tc.want)
		}
	}
	// Not the project's, or not a version, to pip either.
	for _, name := range []string{"koo-1.0 1.tar.gz", "koo-\u00a0.tar.gz", "\u212aoo-x.tar.gz", "koo- 1.0-py3-none-any.whl"} {
		if v, ok := pipFilename("koo", name); ok {
			t.Errorf("pipFilename(koo, %q) = %v, want no version", name, v)
		}
	}
}
