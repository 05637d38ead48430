package devapi

import (
	"errors"
	"net/http"
	"testing"
)

func TestParseFileName(t *testing.T) {
	tests := []struct {
		file, name, version string
	}{
		{"requests-2.19.1.tar.gz", "requests", "2.19.1"},
		{"requests-2.19.1.zip", "requests", "2.19.1"},
		{"pkg-1.0.tar.bz2", "pkg", "1.0"},
		{"pkg-1.0.tar.xz", "pkg", "1.0"},
		{"pkg-1.0.tgz", "pkg", "1.0"},
		{"python-dateutil-2.8.2.tar.gz", "python-dateutil", "2.8.2"},
		{"django-2fa-1.0.tar.gz", "django-2fa", "1.0"},
		{"foo-1.0-beta.tar.gz", "foo", "1.0-beta"},
		{"Foo.Bar-0.1.dev3.tar.gz", "Foo.Bar", "0.1.dev3"},
		{"requests-2.19.1-py2.py3-none-any.whl", "requests", "2.19.1"},
		{"numpy-2.1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "numpy", "2.1.0"},
		{"pkg-1.0-1build-py3-none-any.whl", "pkg", "1.0"},
		{"discord_helper_utils-0.4.1-py3-none-any.whl", "discord_helper_utils", "0.4.1"},
		{"setuptools-0.6c11.egg", "setuptools", "0.6c11"},
		{"setuptools-0.6c11-py2.7.egg", "setuptools", "0.6c11"},
		{"lxml-2.2-py2.6-linux-x86_64.egg", "lxml", "2.2"},
	}
	for _, tt := range tests {
		name, version, err := parseFileName(tt.file)
		if err != nil || name != tt.name || version != tt.version {
			t.Errorf("parseFileName(%q) = %q, %q, %v; want %q, %q", tt.file, name, version, err, tt.name, tt.version)
		}
	}
	for _, bad := range []string{
		"", "README.md", "pkg.tar.gz", "pkg-beta.tar.gz", "pkg-1.0-py3-none.whl",
		"a-b-c-d-e-f-g.whl", "pkg-1.0-x86.egg", "pkg.egg", "dir/pkg-1.0.tar.gz", "pkg--py3-none-any.whl",
	} {
		_, _, err := parseFileName(bad)
		var fe *FileNameError
		if !errors.As(err, &fe) || fe.Name != bad {
			t.Errorf("parseFileName(%q) error = %v, want a *FileNameError naming it", bad, err)
		}
	}
}

func TestNormalizeAndCompareVersions(t *testing.T) {
	for in, want := range map[string]string{"Foo.Bar": "foo-bar", "foo__bar": "foo-bar", "a-_.b": "a-b", "ABC": "abc", "_Foo_": "foo", "-._a.-": "a"} {
		if got := normalizeName(in); got != want {
			t.Errorf("normalizeName(%q) = %q, want %q", in, got, want)
		}
	}
	ordered := []string{"0.9", "1.0", "1.0a1", "1.2", "1.9", "1.10", "10.0"}
	for i := 1; i < len(ordered); i++ {
		if compareVersions(ordered[i-1], ordered[i]) >= 0 || compareVersions(ordered[i], ordered[i-1]) <= 0 {
			t.Errorf("want %q < %q", ordered[i-1], ordered[i])
		}
	}
	if compareVersions("1.01", "1.1") != 0 {
		t.Errorf("1.01 and 1.1 should compare equal")
	}
}

// TestGroupingIntoReleases: files group by (normalized name, version),
// the sdist names the release, releases are ordered by name then version,
// distributions by file name.
func TestGroupingIntoReleases(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "zeta-1.0.tar.gz", "z")
	writeFile(t, dir, ".hidden-1.0.tar.gz", "skipped")
	f := newFixture(t, Config{
		PackagesDir: dir,
		Files: []File{
			sdist("discord_helper_utils-0.4.1-py3-none-any.whl"),
			sdist("Discord-Helper-Utils-0.4.1.tar.gz"),
			sdist("multi-1.10.tar.gz"),
			sdist("multi-1.9-py3-none-any.whl"),
			sdist("multi-1.9.tar.gz"),
			sdist("egg-0.1-py2.7.egg"),
		},
	})
	jobs := f.lease(10)
	if got, want := names(jobs), "Discord-Helper-Utils@0.4.1#1 egg@0.1#1 multi@1.9#1 multi@1.10#1 zeta@1.0#1"; got != want {
		t.Fatalf("releases = %q, want %q", got, want)
	}
	if n := len(jobs[0].Distributions); n != 2 {
		t.Fatalf("discord distributions = %v", jobs[0].Distributions)
	}
	if n := len(jobs[2].Distributions); n != 2 {
		t.Fatalf("multi 1.9 distributions = %v", jobs[2].Distributions)
	}
	// The real server finds the scan by the name exactly as leased: a PEP
	// 503 equivalent spelling is another package.
	if rec := f.report(map[string]any{"name": "discord-helper-utils", "version": "0.4.1", "reason": "x"}); rec.Code != http.StatusNotFound {
		t.Fatalf("report by normalized name: %d %s", rec.Code, rec.Body)
	}
	if rec := f.report(failure(jobs[0], "x")); rec.Code != http.StatusOK {
		t.Fatalf("report by the leased name: %d %s", rec.Code, rec.Body)
	}
}

func TestNewRejectsBadFiles(t *testing.T) {
	_, err := New(Config{Files: []File{sdist("README.md")}})
	var fe *FileNameError
	if !errors.As(err, &fe) || fe.Name != "README.md" {
		t.Fatalf("New with README.md: %v", err)
	}
	_, err = New(Config{Files: []File{{Name: "a-1.tar.gz", Data: []byte("x")}, {Name: "a-1.tar.gz", Data: []byte("y")}}})
	if err == nil {
		t.Fatal("New accepted one file name with two contents")
	}
	if _, err := New(Config{Auth: "kerberos"}); err == nil {
		t.Fatal("New accepted an unknown auth mode")
	}
	if _, err := New(Config{Auth: AuthCloudflare}); err == nil {
		t.Fatal("New accepted cloudflare auth without credentials")
	}
}
