package pkgindex

import (
	"net/url"
	"strings"
	"testing"
)

const fuzzMaxFiles = 50

// checkFiles holds for whatever a page parser returns: bounded count, and
// every file either has an absolute http(s) URL without fragment or a URL
// error; digests are bounded and lower case.
func checkFiles(t *testing.T, files []file) {
	t.Helper()
	if len(files) > fuzzMaxFiles {
		t.Fatalf("%d files, max %d", len(files), fuzzMaxFiles)
	}
	for _, f := range files {
		if (f.url == "") == (f.urlErr == nil) {
			t.Fatalf("file %+v: want exactly one of url and urlErr", f)
		}
		if f.url != "" {
			u, err := url.Parse(f.url)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
				t.Fatalf("file URL %q is not absolute http(s) without fragment (%v)", f.url, err)
			}
		}
		if len(f.sha256) > hashClip || f.sha256 != strings.ToLower(f.sha256) {
			t.Fatalf("digest %q", f.sha256)
		}
		if len(f.yankedReason) > reasonClip || (f.yankedReason != "" && !f.yanked) {
			t.Fatalf("yank reason %q (yanked %v)", f.yankedReason, f.yanked)
		}
	}
}

func FuzzParseSimpleHTML(f *testing.F) {
	fuzzParser(f, "https://idx.example/simple/foo/", parseSimpleHTML, func(t *testing.T, _ []file, err error) {
		if err != errTooManyFiles && !strings.HasPrefix(err.Error(), "malformed HTML") {
			t.Fatalf("unexpected error %v", err)
		}
	},
		`<a href="foo-1.0.tar.gz#sha256=`+sha+`">foo-1.0.tar.gz</a>`,
		`<html><head><base href="https://m.example/p/"></head><a href="../x.whl" data-yanked="why">x.whl</a></html>`,
		`<a href="javascript:x">y</a><a href=/a/b/c.zip />`,
		`<a href="%zz">bad</a><a href="http://[::1">bad</a>`,
		`<a href="x"><a href="y">nested</a></a>`,
		`<a href="x">`+strings.Repeat("z", 2000),
		"<a href=\"x\">\x00\xff</a>",
		``,
	)
}

func FuzzParseSimpleJSON(f *testing.F) {
	fuzzParser(f, "https://idx.example/simple/foo/", parseSimpleJSON, func(t *testing.T, files []file, _ error) {
		if files != nil {
			t.Fatal("files and an error")
		}
	},
		`{"meta": {"api-version": "1.0"}, "name": "foo", "files": [{"filename": "foo-1.0.tar.gz", "url": "foo-1.0.tar.gz", "hashes": {"sha256": "`+sha+`"}, "yanked": "r"}]}`,
		`{"meta": {"api-version": "1.1"}, "files": [{"filename": "a", "url": "https://x/a#f", "hashes": {}, "yanked": true}], "versions": []}`,
		`{"meta": {"api-version": "2.0"}, "files": []}`,
		`{"files": [{"yanked": 3}]}`,
		`{"meta": null, "files": null}`,
		`[]`,
		`{`,
		``,
	)
}

func FuzzParseJSONAPI(f *testing.F) {
	fuzzParser(f, "https://pypi.example/pypi/foo/json", parseJSONAPI, func(t *testing.T, files []file, _ error) {
		if files != nil {
			t.Fatal("files and an error")
		}
	},
		`{"info": {"version": "1.0"}, "urls": [], "releases": {"1.0": [{"filename": "foo-1.0.tar.gz", "url": "https://f/foo-1.0.tar.gz", "digests": {"sha256": "`+sha+`"}, "yanked": true, "yanked_reason": "x"}]}}`,
		`{"info": {"version": "1.0"}, "urls": [{"filename": "a", "url": "/a", "digests": {}, "yanked": false, "yanked_reason": null}]}`,
		`{"releases": {"": [{}]}}`,
		`{"releases": []}`,
		`null`,
	)
}

// fuzzParser fuzzes a page parser from the seeds, the page at pageURL:
// what it accepts passes checkFiles, and an error passes failed (when not
// nil).
func fuzzParser(f *testing.F, pageURL string, parse func([]byte, *url.URL, int) ([]file, error), failed func(*testing.T, []file, error), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	page := mustURL(f, pageURL)
	f.Fuzz(func(t *testing.T, body []byte) {
		files, err := parse(body, page, fuzzMaxFiles)
		if err != nil {
			if failed != nil {
				failed(t, files, err)
			}
			return
		}
		checkFiles(t, files)
	})
}

func FuzzParseFilename(f *testing.F) {
	for _, s := range [][2]string{
		{"foo-bar", "foo_bar-1.0-py3-none-any.whl"},
		{"foo-bar", "foo_bar-1.0-1-cp312-cp312-manylinux_2_17_x86_64.whl"},
		{"foo-bar", "foo-bar-1.0.post1.tar.gz"},
		{"foo-bar", "Foo.Bar-1!2.0rc1+local.7.zip"},
		{"foo", "foo-bar-1.0.tar.gz"},
		{"foo", "foo-1.0-py2.7-linux-x86_64.egg"},
		{"foo", "foo-1.0.tar.bz2"},
		{"foo", "foo-v1.0-1.tgz"},
		{"a", "a-1-1-1-1-1-1.whl"},
		{"a", "a-.tar.gz"},
		{"a", "a-1.0\n.tar.gz"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, project, filename string) {
		project = NormalizeName(project)
		v, ok := parseFilename(project, filename)
		if !ok {
			return
		}
		if project == "" || len(filename) > MaxFilenameLen || strings.ContainsAny(filename, "/\\ \t\n") {
			t.Fatalf("parsed %q for project %q", filename, project)
		}
		// The version round-trips: its normalized form parses to an equal
		// version with the same key.
		w, ok := parseVersion(v.String())
		if !ok || w.compare(v) != 0 || w.key != v.key {
			t.Fatalf("version %q of %q does not round-trip", v, filename)
		}
		// The name part, normalized, is the project: the file name starts
		// with something that normalizes to it.
		found := false
		for i := 1; i <= len(filename); i++ {
			if NormalizeName(pyNameFold.Replace(filename[:i])) == project && i < len(filename) && filename[i] == '-' {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("%q parsed for project %q without a matching name part", filename, project)
		}
	})
}

func FuzzParseRequirements(f *testing.F) {
	f.Add([]byte(goodRequirements))
	f.Add([]byte("a==1 \\\n --hash=sha256:00\n-r x\nb>=1\n"))
	f.Add([]byte("\\\n\\"))
	f.Fuzz(func(t *testing.T, data []byte) {
		targets, err := ParseRequirements("r.txt", data)
		if err != nil {
			if targets != nil {
				t.Fatal("targets and an error")
			}
			if len(err.Error()) > 64<<10 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		for _, tg := range targets {
			if checkName(tg.Name) != nil || checkVersion(tg.Version) != nil || !strings.HasPrefix(tg.Origin, "r.txt:") {
				t.Fatalf("invalid target %+v", tg)
			}
			if _, err := ParseTarget(tg.String()); err != nil {
				t.Fatalf("target %+v does not round-trip: %v", tg, err)
			}
		}
	})
}
