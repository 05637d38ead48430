package pkgindex

import (
	"bytes"
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// parsedAs parses body, the page at page, with parse and compares the
// files with want, field by field; a file without a URL must have the
// error that says why.
func parsedAs(t *testing.T, parse func([]byte, *url.URL, int) ([]file, error), page *url.URL, body string, want []file) {
	t.Helper()
	files, err := parse([]byte(body), page, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("got %d files %+v, want %d", len(files), files, len(want))
	}
	for i, w := range want {
		g := files[i]
		if g.filename != w.filename || g.url != w.url || g.sha256 != w.sha256 || g.yanked != w.yanked || g.yankedReason != w.yankedReason {
			t.Errorf("file %d = %+v, want %+v", i, g, w)
		}
		if (g.urlErr != nil) != (w.url == "") {
			t.Errorf("file %d: urlErr %v", i, g.urlErr)
		}
	}
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseSimpleHTML(t *testing.T) {
	page := mustURL(t, "https://idx.example/simple/foo/")
	body := `<!DOCTYPE html><html><body>
<a href="foo-1.0.tar.gz#sha256=` + strings.ToUpper(sha) + `">foo-1.0.tar.gz</a>
<a HREF="../../files/foo-1.1.tar.gz#md5=00" data-yanked="">  foo-1.1.tar.gz </a>
<a href="https://cdn.example/x/foo-1.2.tar.gz?a=b&amp;c=d#sha256=` + sha + `" data-yanked="bad &amp; broken"><span>foo-1.2</span>.tar.gz</a>
<a href="/p/foo-1.3.zip"></a>
<a name="no-href">anchor</a>
<a href="foo-1.4.zip"/>
<a href="javascript:alert(1)">foo-1.5.zip</a>
<a href="http:">foo-1.7.zip</a>
<a href="https://h/` + strings.Repeat("x", MaxURLLen) + `">foo-1.8.zip</a>
<a href="foo-1.6.zip">foo-1.6.zip
</body></html>`
	want := []file{
		{filename: "foo-1.0.tar.gz", url: "https://idx.example/simple/foo/foo-1.0.tar.gz", sha256: sha},
		{filename: "foo-1.1.tar.gz", url: "https://idx.example/files/foo-1.1.tar.gz", yanked: true},
		{filename: "foo-1.2.tar.gz", url: "https://cdn.example/x/foo-1.2.tar.gz?a=b&c=d", sha256: sha, yanked: true, yankedReason: "bad & broken"},
		{filename: "foo-1.3.zip", url: "https://idx.example/p/foo-1.3.zip"},
		{filename: "foo-1.4.zip", url: "https://idx.example/simple/foo/foo-1.4.zip"},
		{filename: "foo-1.5.zip"},
		{filename: "foo-1.7.zip"},
		{filename: "foo-1.8.zip"},
		{filename: "foo-1.6.zip", url: "https://idx.example/simple/foo/foo-1.6.zip"},
	}
	parsedAs(t, parseSimpleHTML, page, body, want)
}

func TestParseSimpleHTMLBase(t *testing.T) {
	page := mustURL(t, "https://idx.example/simple/foo/")
	body := `<html><head><base href="https://mirror.example/pkgs/"><base href="https://ignored.example/"></head>
<body><a href="foo-1.0.tar.gz">foo-1.0.tar.gz</a></body></html>`
	files, err := parseSimpleHTML([]byte(body), page, 100)
	if err != nil || len(files) != 1 || files[0].url != "https://mirror.example/pkgs/foo-1.0.tar.gz" {
		t.Fatalf("files %+v, %v; want the URL resolved against the first <base>", files, err)
	}
}

func TestParseSimpleHTMLMaxFiles(t *testing.T) {
	body := strings.Repeat(`<a href="x">x</a>`, 11)
	if _, err := parseSimpleHTML([]byte(body), mustURL(t, "https://i/"), 10); err != errTooManyFiles {
		t.Fatalf("error %v, want errTooManyFiles", err)
	}
	if files, err := parseSimpleHTML([]byte(body), mustURL(t, "https://i/"), 11); err != nil || len(files) != 11 {
		t.Fatalf("%d files, %v", len(files), err)
	}
}

func TestParseSimpleHTMLLongText(t *testing.T) {
	body := `<a href="x">` + strings.Repeat("<b>yyyyyyyyyy</b>", 1000) + `</a>`
	files, err := parseSimpleHTML([]byte(body), mustURL(t, "https://i/"), 10)
	if err != nil || len(files) != 1 || len(files[0].filename) > MaxFilenameLen+20 {
		t.Fatalf("files %d, name %d bytes, %v; want the anchor text bounded", len(files), len(files[0].filename), err)
	}
}

func TestParseSimpleJSON(t *testing.T) {
	page := mustURL(t, "https://idx.example/simple/foo/")
	body := `{"meta": {"api-version": "1.3", "_last-serial": 7}, "name": "foo", "versions": ["1.0"],
	"files": [
	  {"filename": "foo-1.0.tar.gz", "url": "foo-1.0.tar.gz#frag", "hashes": {"sha256": "` + strings.ToUpper(sha) + `"}},
	  {"filename": "foo-1.1.tar.gz", "url": "https://cdn.example/foo-1.1.tar.gz", "hashes": {"md5": "00"}, "yanked": true},
	  {"filename": "foo-1.2.tar.gz", "url": "/f/foo-1.2.tar.gz", "hashes": {}, "yanked": "reason", "core-metadata": {"sha256": "x"}},
	  {"filename": "foo-1.3.tar.gz", "url": "../x", "hashes": {}, "yanked": false},
	  {"filename": "foo-1.4.tar.gz", "url": "%zz", "hashes": {}, "yanked": null}
	]}`
	want := []file{
		{filename: "foo-1.0.tar.gz", url: "https://idx.example/simple/foo/foo-1.0.tar.gz", sha256: sha},
		{filename: "foo-1.1.tar.gz", url: "https://cdn.example/foo-1.1.tar.gz", yanked: true},
		{filename: "foo-1.2.tar.gz", url: "https://idx.example/f/foo-1.2.tar.gz", yanked: true, yankedReason: "reason"},
		{filename: "x", url: "https://idx.example/simple/x"}, // named by its URL, as pip names it
		{filename: "foo-1.4.tar.gz"},
	}
	parsedAs(t, parseSimpleJSON, page, body, want)
}

func TestParseSimpleJSONErrors(t *testing.T) {
	page := mustURL(t, "https://idx.example/simple/foo/")
	for _, tc := range []struct{ body, err string }{
		{`{"meta": {"api-version": "2.0"}, "files": []}`, "unsupported meta.api-version"},
		{`{"files": []}`, "unsupported meta.api-version"},
		{`{"meta": {"api-version": "1.0"}, "files": [{"filename": "a", "yanked": 1}]}`, "neither a boolean nor a string"},
		{`{"meta": {"api-version": "1.0"}, "files": [], "files": []}`, "files given twice"},
		{`{"meta": {"api-version": "1.0"}, "files": {}}`, "malformed JSON"},
		{`{"meta": {"api-version": "1.0"}, "files": [1]}`, "malformed files[0]"},
		{`{"meta": {"api-version": "1.0"}, "files": []} {}`, "data after the object"},
		{`[]`, "malformed JSON"},
		{`{"meta": {"api-version": "1.0"}, "files": [`, "malformed"},
		{``, "malformed JSON"},
		{`<html></html>`, "malformed JSON"},
	} {
		if _, err := parseSimpleJSON([]byte(tc.body), page, 100); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.body, err, tc.err)
		}
	}
	many := `{"meta": {"api-version": "1.0"}, "files": [` + strings.Repeat(`{"filename": "a"},`, 5) + `{"filename": "a"}]}`
	if _, err := parseSimpleJSON([]byte(many), page, 5); err != errTooManyFiles {
		t.Errorf("6 files with max 5: %v", err)
	}
}

func TestParseJSONAPI(t *testing.T) {
	page := mustURL(t, "https://pypi.example/pypi/foo/json")
	body := `{"info": {"version": "1.0"}, "urls": [{"filename": "ignored-when-releases"}],
	"releases": {
	  "1.0": [{"filename": "foo-1.0.tar.gz", "url": "https://files.example/foo-1.0.tar.gz", "digests": {"sha256": "` + sha + `"}, "yanked": false, "yanked_reason": null}],
	  "0.9": [{"filename": "foo-0.9.tar.gz", "url": "https://files.example/foo-0.9.tar.gz", "digests": {}, "yanked": true, "yanked_reason": "oops"}],
	  "0.1": []
	}}`
	files, err := parseJSONAPI([]byte(body), page, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].filename != "foo-0.9.tar.gz" || !files[0].yanked || files[0].yankedReason != "oops" ||
		files[1].filename != "foo-1.0.tar.gz" || files[1].sha256 != sha || files[1].yanked {
		t.Fatalf("files %+v", files)
	}
	perVersion := `{"info": {"version": "1.0"}, "urls": [{"filename": "foo-1.0.tar.gz", "url": "/f/foo-1.0.tar.gz", "digests": {"sha256": "` + sha + `"}}]}`
	files, err = parseJSONAPI([]byte(perVersion), page, 100)
	if err != nil || len(files) != 1 || files[0].url != "https://pypi.example/f/foo-1.0.tar.gz" {
		t.Fatalf("files %+v, %v", files, err)
	}
	if _, err := parseJSONAPI([]byte(`{"releases": []}`), page, 100); err == nil {
		t.Error("releases as a list accepted")
	}
	if _, err := parseJSONAPI([]byte(body), page, 1); err != errTooManyFiles {
		t.Errorf("2 files with max 1: %v", err)
	}
}

// A JSON API answer within MaxPageSize must not cost memory far beyond its
// size: the files beyond maxFiles are never decoded (as parseSimpleJSON
// streams files[]). Three bytes of "{}," decoded whole are a 64-byte
// jsonAPIFile each, about 20 times the page (a 32 MiB page: 700 MB and more
// while the slice grows).
func TestParseJSONAPIStopsAtMaxFiles(t *testing.T) {
	page := mustURL(t, "https://pypi.example/pypi/foo/json")
	n := 1 << 20 / 3
	entries := strings.Repeat(`{},`, n) + `{}`
	for name, body := range map[string]string{
		"releases": `{"releases": {"1.0": [` + entries + `]}}`,
		"urls":     `{"urls": [` + entries + `]}`,
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := parseJSONAPI([]byte(body), page, 10)
		runtime.ReadMemStats(&after)
		if err != errTooManyFiles {
			t.Errorf("%s: %d files with max 10: %v", name, n+1, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
			t.Errorf("%s: parsing a %d-byte answer allocated %d bytes", name, len(body), alloc)
		}
	}
}

// TestParseJSONAPIURLsBesideReleases: a project's /pypi/NAME/json answer
// lists the latest release's files twice, in urls[] and in releases; urls[]
// is not read when releases has entries, so its copies do not count
// against maxFiles: a project with exactly maxFiles files is read, as it
// was before the answer was streamed.
func TestParseJSONAPIURLsBesideReleases(t *testing.T) {
	page := mustURL(t, "https://pypi.example/pypi/foo/json")
	latest := `[{"filename": "foo-1.0.tar.gz", "url": "https://files.example/foo-1.0.tar.gz"}]`
	releases := `{"0.9": [{"filename": "foo-0.9.tar.gz", "url": "https://files.example/foo-0.9.tar.gz"}], "1.0": ` + latest + `}`
	for name, body := range map[string]string{
		"releases first (PyPI's order)": `{"info": {}, "releases": ` + releases + `, "urls": ` + latest + `}`,
		"urls first":                    `{"info": {}, "urls": ` + latest + `, "releases": ` + releases + `}`,
	} {
		files, err := parseJSONAPI([]byte(body), page, 2)
		if err != nil || len(files) != 2 || files[0].filename != "foo-0.9.tar.gz" || files[1].filename != "foo-1.0.tar.gz" {
			t.Errorf("%s: files %+v, %v; want the 2 files of releases", name, files, err)
		}
	}
}

// TestParseSimpleHTMLSeesWhatPipSees: pip's parser (Python's html.parser)
// reads anchors inside <textarea>, <title>, <noscript>, <plaintext> and the
// like, and after <script/>, as links; the HTML5 tokenizer read them as
// text, so a wheel pip installs was never scanned. Markup the two parsers
// split differently is refused: a comment or script that Python ends
// elsewhere ("-- >", "</ script>", "<!-->"), NUL bytes, "<![" sections, '<'
// inside a tag, quotes in an end tag, an unfinished tag at the end.
func TestParseSimpleHTMLSeesWhatPipSees(t *testing.T) {
	page := mustURL(t, "https://idx.example/simple/koo/")
	const a = `<a href="/f/koo-1.0-py3-none-any.whl">koo-1.0-py3-none-any.whl</a>`
	for _, tag := range []string{"textarea", "title", "xmp", "noscript", "iframe", "noembed", "noframes", "plaintext"} {
		body := "<html><body><" + tag + ">" + a + "</" + tag + "></body></html>"
		t.Run(tag, func(t *testing.T) {
			parsedAs(t, parseSimpleHTML, page, body, []file{{filename: "koo-1.0-py3-none-any.whl", url: "https://idx.example/f/koo-1.0-py3-none-any.whl"}})
		})
	}
	t.Run("script/", func(t *testing.T) {
		parsedAs(t, parseSimpleHTML, page, "<script/>"+a, []file{{filename: "koo-1.0-py3-none-any.whl", url: "https://idx.example/f/koo-1.0-py3-none-any.whl"}})
	})
	// A page as indexes write it, an unescaped '<' in a quoted value too.
	parsedAs(t, parseSimpleHTML, page, "<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Links for koo</title></head>\n"+
		"<body><h1>Links for koo</h1>\n<a href=\"/f/koo-1.0-py3-none-any.whl\" data-requires-python=\"<4,&gt;=3.8\" data-dist-info-metadata=\"sha256=00\">koo-1.0-py3-none-any.whl</a><br />\n</body></html>\n<!--SERIAL 1-->",
		[]file{{filename: "koo-1.0-py3-none-any.whl", url: "https://idx.example/f/koo-1.0-py3-none-any.whl"}})
	// What both parsers hide stays hidden, without error.
	parsedAs(t, parseSimpleHTML, page, "<!-- "+a+" --><script>x = '"+a+"'</script><STYLE>"+a+"</style >", nil)
	for _, body := range []string{
		"<!-- x -- >" + a + " -->",
		"<!-- x --\t\n>" + a + " -->",
		"<script>x</ script>" + a + "</script>",
		"<style>x</STYLE\v>" + a + "</style>",
		// Found by comparing with pip's parse_links on random markup; each
		// hid a link that pip sees.
		"<!--><script><!-- x -->" + a, // the HTML5 comment ends at "<!-->"
		"<p\x00" + a,                  // NUL in a tag name
		"<![CDATA[><script>]]>" + a,   // "<![" runs to "]]>" in Python
		"<a href=a" + a,               // '<' inside a tag
		"</a x='><a href='/f/koo-1.0-py3-none-any.whl'>koo-1.0-py3-none-any.whl</a>",                              // Python ends an end tag at '>'
		"<a<? href=\r\"<textarea>x </textarea><a href='/f/koo-1.0-py3-none-any.whl'>koo-1.0-py3-none-any.whl</a>", // an unfinished tag Python ends early
	} {
		if files, err := parseSimpleHTML([]byte(body), page, 100); err == nil || !strings.Contains(err.Error(), "malformed HTML") {
			t.Errorf("%q: %+v, %v; want an error", body, files, err)
		}
	}
}

// TestParseSimpleHTMLReadsAttributesAsPip: an anchor's or base's
// attributes are read as pip 23.2.1 reads them (Python's html.parser,
// HTMLLinkParser, Link.from_element; each want checked with parse_links).
// The HTML5 tokenizer decoded "&copy=" and "&lt1" otherwise than Python's
// html.unescape, kept the first of two hrefs where pip keeps the last,
// took "<base href>" (None to pip) as the base, read a valueless
// data-yanked as yanked and "data-yan\u212Aed" (a Kelvin sign) as not: in
// each case the scan fetched another URL than pip, or chose another
// release, and read clean.
func TestParseSimpleHTMLReadsAttributesAsPip(t *testing.T) {
	page := mustURL(t, "https://idx.example/simple/foo/")
	for _, tt := range []struct {
		name, body string
		want       []file
	}{
		{"entity before =", `<a href="/f/&copy=x/foo-1.0.tar.gz">foo</a>`,
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/f/%C2%A9%3Dx/foo-1.0.tar.gz"}}},
		{"entity prefix", `<a href="/f/&lt1/foo-1.0.tar.gz">foo</a>`,
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/f/%3C1/foo-1.0.tar.gz"}}},
		{"entity in a query", `<a href="https://h.example/foo-1.0-py3-none-any.whl?v=1&not=2">foo</a>`,
			[]file{{filename: "foo-1.0-py3-none-any.whl", url: "https://h.example/foo-1.0-py3-none-any.whl?v=1%C2%AC=2"}}}, // as requests sends it
		{"entities as both read them", `<a href="/f/a&amp;b&#x41;&#66/foo-1.0.tar.gz?a=1&b=2">foo</a>`,
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/f/a%26bAB/foo-1.0.tar.gz?a=1&b=2"}}},
		{"two hrefs", `<a href="/f/a/foo-1.0.tar.gz" href="/f/b/foo-1.0.tar.gz">foo</a>`,
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/f/b/foo-1.0.tar.gz"}}},
		{"two hrefs, the last empty", `<a href="/f/a/foo-1.0.tar.gz" HREF>foo</a>`, nil},
		{"base without a value", `<base href><base href="/b/"><a href="foo-1.0.tar.gz">foo</a>`,
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/b/foo-1.0.tar.gz"}}},
		{"base empty", `<base href=""><base href="/b/"><a href="foo-1.0.tar.gz">foo</a>`,
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/simple/foo/foo-1.0.tar.gz"}}},
		{"yanked", `<a href="/f/foo-1.0.tar.gz" data-yanked="">foo</a><a href="/f/foo-1.1.tar.gz" data-yanked="r">foo</a>`,
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/f/foo-1.0.tar.gz", yanked: true},
				{filename: "foo-1.1.tar.gz", url: "https://idx.example/f/foo-1.1.tar.gz", yanked: true, yankedReason: "r"}}},
		{"yanked without a value", `<a href="/f/foo-1.0.tar.gz" data-yanked>foo</a><a href="/f/foo-1.1.tar.gz" data-yanked="r" data-yanked>foo</a>`,
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/f/foo-1.0.tar.gz"},
				{filename: "foo-1.1.tar.gz", url: "https://idx.example/f/foo-1.1.tar.gz"}}},
		{"yanked by a Kelvin sign", "<a href=\"/f/foo-1.0.tar.gz\" data-yan\u212Aed=\"\">foo</a>",
			[]file{{filename: "foo-1.0.tar.gz", url: "https://idx.example/f/foo-1.0.tar.gz", yanked: true}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parsedAs(t, parseSimpleHTML, page, tt.body, tt.want)
		})
	}
	// Markup Python reads otherwise, refused rather than read one way.
	for _, body := range []string{
		`<a href="/f/&#1;x/foo-1.0.tar.gz">foo</a>`,                                    // Python drops the character
		`<a href="/f/&#xFDD0;x/foo-1.0.tar.gz">foo</a>`,                                // a noncharacter, dropped
		"<a href=\"/f/foo-1.0.tar.gz\" x=\v\">foo</a>",                                 // a quote Python finds no end to in the tag
		`<a href="/f/foo-1.0.tar.gz">foo</a><a href="/f/foo-1.0-py3-none-any.whl"'='>`, // Python ends the tag at '>'
	} {
		if files, err := parseSimpleHTML([]byte(body), page, 100); err == nil || !strings.Contains(err.Error(), "malformed HTML") {
			t.Errorf("%q: %+v, %v; want an error", body, files, err)
		}
	}
}

// TestFilesAreFetchedAsPipSpellsThem: pip requests a file at its URL with
// the path escaped again (_ensure_quoted_url: '=' "%3D", '(' "%28", "%7e"
// '~') and a relative path joined without its empty segments (urljoin); a
// server answering "/f/a=b/x" and "/f/a%3Db/x" with different bytes had
// the scan read clean a file pip never installs. Each want is pip 23.2.1's
// Link.url; a relative path with an empty segment fails the file loudly.
func TestFilesAreFetchedAsPipSpellsThem(t *testing.T) {
	page := mustURL(t, "https://idx.example/simple/foo/")
	body := `<a href="/f/a=b/foo-1.0.tar.gz">a</a><a href="/f/a(b)~c/foo-1.1.tar.gz">b</a>` +
		`<a href="/f/x%7e%41/foo-1.2.tar.gz">c</a><a href="/f/u@v%2fw/foo-1.3.tar.gz">d</a>` +
		`<a href="x//foo-1.4.tar.gz">e</a><a href="https://h.example/a%20b/foo-1.5.tar.gz?x=(1)">f</a>`
	parsedAs(t, parseSimpleHTML, page, body, []file{
		{filename: "foo-1.0.tar.gz", url: "https://idx.example/f/a%3Db/foo-1.0.tar.gz"},
		{filename: "foo-1.1.tar.gz", url: "https://idx.example/f/a%28b%29~c/foo-1.1.tar.gz"},
		{filename: "foo-1.2.tar.gz", url: "https://idx.example/f/x~A/foo-1.2.tar.gz"},
		{filename: "foo-1.3.tar.gz", url: "https://idx.example/f/u@v%2Fw/foo-1.3.tar.gz"},
		{filename: "e"}, // pip: https://idx.example/simple/foo/x/foo-1.4.tar.gz
		{filename: "foo-1.5.tar.gz", url: "https://h.example/a%20b/foo-1.5.tar.gz?x=(1)"},
	})
	files, _ := parseSimpleHTML([]byte(body), page, 100)
	if len(files) == 6 && files[4].refName != "foo-1.4.tar.gz" {
		t.Errorf("refName %q, want foo-1.4.tar.gz (pip's name, so that choosing it fails the release)", files[4].refName)
	}
}

// TestFilesFetchedWherePipFetchesThem: pip 23.2.1 joins a link to a
// <base href> as Python's urljoin does (the base path's last segment,
// "..", dropped, not resolved), decodes escapes as Python's unquote does
// (each maximal ill-formed UTF-8 subpart one U+FFFD, where Go's
// ToValidUTF8 made one of a whole run) and requests the path with its
// dot segments removed (requests and urllib3), escaped dots included;
// a path with a byte Go's parser keeps only decoded (non-ASCII, '\\')
// lost its "%2F", "%3B" and "%40" escapes; a relative path starting
// "%2f//" escaped R45's check for empty segments; "///w.whl" is on the
// page's host to pip; empty parameters (";") are dropped, and a lone ";"
// is the base itself. The scan fetched another URL than pip installs
// from (each want is pip's Link.url, or the path requests sends).
func TestFilesFetchedWherePipFetchesThem(t *testing.T) {
	for _, tt := range []struct{ page, url string }{
		{`<base href="https://idx.example/a/b/.."><a href="w.whl">x</a>`, "https://idx.example/a/b/w.whl"},
		{`<base href="https://idx.example/a/b/..?q"><a href="w.whl">x</a>`, "https://idx.example/a/b/w.whl"},
		{`<base href="/a/b/.."><a href="w.whl">x</a>`, "https://idx.example/a/w.whl"}, // pip cannot fetch a relative base
		{`<a href="/f/%FF%FF/w.whl">x</a>`, "https://idx.example/f/%EF%BF%BD%EF%BF%BD/w.whl"},
		{`<a href="/f/%ED%A0%80/w.whl">x</a>`, "https://idx.example/f/%EF%BF%BD%EF%BF%BD%EF%BF%BD/w.whl"},
		{`<a href="/f/%E2%82/w.whl">x</a>`, "https://idx.example/f/%EF%BF%BD/w.whl"},
		{`<a href="/f/%F0%9F%98/w.whl">x</a>`, "https://idx.example/f/%EF%BF%BD/w.whl"},
		{`<a href="/f/%C3%A9%80/w.whl">x</a>`, "https://idx.example/f/%C3%A9%EF%BF%BD/w.whl"},
		{`<a href="/f/%2e%2e/w.whl">x</a>`, ""}, // requests sends /w.whl
		{`<a href="/f/a/.%2E/w.whl">x</a>`, ""}, // requests sends /f/w.whl
		{`<a href="/f/%2e/w.whl;p">x</a>`, ""},  // requests sends /f/w.whl;p
		{`<a href="/f/%2e%2ex/w.whl">x</a>`, "https://idx.example/f/..x/w.whl"},
		{`<a href="%2f//w.whl">x</a>`, ""}, // pip: https://idx.example/simple/koo/%2F/w.whl
		{`<a href="///w.whl">x</a>`, ""},   // pip: https://idx.example/w.whl
		{`<a href="/%2fé%C3%A9/w.whl">x</a>`, "https://idx.example/%2F%C3%A9%C3%A9/w.whl"},
		{`<a href="/\%3B:'/w.whl">x</a>`, "https://idx.example/%5C%3B%3A%27/w.whl"},
		{`<a href="é%40x/w.whl">x</a>`, "https://idx.example/simple/koo/%C3%A9%40x/w.whl"},
		{`<base href="https://h.example/f/koo-1.0-py3-none-any.whl"><a href=";">x</a>`, "https://h.example/f/koo-1.0-py3-none-any.whl"},
		{`<a href="w.whl;">x</a>`, "https://idx.example/simple/koo/w.whl"},
		{`<a href="https://h.example//..//w.whl">x</a>`, ""}, // requests sends //w.whl
	} {
		files, err := parseSimpleHTML([]byte(tt.page), mustURL(t, "https://idx.example/simple/koo/"), 10)
		if err != nil || len(files) != 1 {
			t.Errorf("%s: %+v, %v", tt.page, files, err)
			continue
		}
		f := files[0]
		if tt.url == "" {
			if f.urlErr == nil {
				t.Errorf("%s: URL %q; want an error (pip requests another path)", tt.page, f.url)
			}
			continue
		}
		if f.urlErr != nil || f.url != tt.url {
			t.Errorf("%s: URL %q (%v); want %q, as pip", tt.page, f.url, f.urlErr, tt.url)
			continue
		}
		if req, err := http.NewRequest(http.MethodGet, f.url, nil); err != nil || req.URL.String() != tt.url {
			t.Errorf("%s: a request to %q asks for %v (%v)", tt.page, f.url, req.URL, err)
		}
	}
}

// TestFilesFetchedAsPipsHTTPClientSendsThem: the query, the parameters and
// the host of a file's URL are spelled as pip 23.2.1's requests/urllib3 send
// them (PreparedRequest.prepare_url), each want computed with pip's vendored
// requests (the Host header as Python's http.client writes it, without
// the scheme's default port): a server may answer "?a=%41" and "?a=%2541",
// or the hosts "Files.Example" and "files.example", with different bytes.
func TestFilesFetchedAsPipsHTTPClientSendsThem(t *testing.T) {
	for _, tt := range []struct{ href, url string }{
		{`w.whl?a=%41&amp;b=%zz`, "https://idx.example/simple/koo/w.whl?a=%2541&b=%25zz"},
		{`w.whl?%41`, "https://idx.example/simple/koo/w.whl?A"},
		{`w.whl?a=%7e%2f`, "https://idx.example/simple/koo/w.whl?a=~%2F"},
		{`w.whl?a=é&quot;&lt;&gt;`, "https://idx.example/simple/koo/w.whl?a=%C3%A9%22%3C%3E"},
		{`w.whl?ref=main&amp;x=a%2Fb`, "https://idx.example/simple/koo/w.whl?ref=main&x=a%2Fb"},
		{`w.whl?`, "https://idx.example/simple/koo/w.whl"},
		{`w.whl;a%zz?b=%41`, ""}, // pip: https://idx.example/simple/koo/w.whl;a%25zz?b=A; Go refuses "%zz" in a path
		{`w.whl;%41%2f`, "https://idx.example/simple/koo/w.whl;A%2F"},
		{`/f/a%2Fb/w.whl?%zz`, "https://idx.example/f/a%2Fb/w.whl?%25zz"},
		{`/f/a%2Fb/w.whl;%zz`, ""}, // pip: https://idx.example/f/a%252Fb/w.whl;%25zz
		{"w.whl?a=[]{}|^`", "https://idx.example/simple/koo/w.whl?a=%5B%5D%7B%7D%7C%5E%60"},
		{`https://Files.Example/w.whl`, "https://files.example/w.whl"},
		{`https://files.example:0443/w.whl`, "https://files.example/w.whl"}, // pip: https://files.example:443/w.whl, "Host: files.example"
		{`http://files.example:080/w.whl`, "http://files.example/w.whl"},
		{`https://files.example:80/w.whl`, "https://files.example:80/w.whl"},
		{`https://files.example:08080/w.whl`, "https://files.example:8080/w.whl"},
		{`https://files.example:/w.whl`, "https://files.example/w.whl"},
		{`https://fi%6Ces.example/w.whl`, ""}, // pip: https://files.example/w.whl; Go refuses the escape
		{`https://files.example./w.whl`, "https://files.example./w.whl"},
		{`https://bücher.example/w.whl`, ""}, // IDNA-encoded by pip's urllib3 and Go's client, each its own way
		{`https://h.example(/w.whl`, ""},     // pip: https://h.example(/w.whl
		{`https://h.example:0/w.whl`, "https://h.example/w.whl"},
		{`https://u:p@files.example/w.whl`, ""},                                                 // pip sends "Authorization: Basic dTpw"
		{`w.whl?a=1&amp;egg=koo%2D1.0`, "https://idx.example/simple/koo/w.whl?a=1&egg=koo-1.0"}, // egg: see below
		{`//u@files.example/w.whl`, ""},
	} {
		page := `<a href="` + tt.href + `">x</a>`
		files, err := parseSimpleHTML([]byte(page), mustURL(t, "https://idx.example/simple/koo/"), 10)
		if err != nil || len(files) != 1 {
			t.Errorf("%s: %+v, %v", page, files, err)
			continue
		}
		f := files[0]
		if tt.url == "" {
			if f.urlErr == nil {
				t.Errorf("%s: URL %q; want an error (pip sends another URL)", page, f.url)
			}
			continue
		}
		if f.urlErr != nil || f.url != tt.url {
			t.Errorf("%s: URL %q (%v); want %q, as pip sends it", page, f.url, f.urlErr, tt.url)
			continue
		}
		want := mustURL(t, tt.url)
		req, err := http.NewRequest(http.MethodGet, f.url, nil)
		if err != nil {
			t.Errorf("%s: a request to %q: %v", page, f.url, err)
			continue
		}
		var wire bytes.Buffer
		if err := req.Write(&wire); err != nil {
			t.Errorf("%s: a request to %q: %v", page, f.url, err)
			continue
		}
		if head := "GET " + want.RequestURI() + " HTTP/1.1\r\nHost: " + want.Host + "\r\n"; !strings.HasPrefix(wire.String(), head) {
			t.Errorf("%s: a request to %q sends %q; want it to begin %q", page, f.url, wire.String(), head)
		}
	}
	// The egg name is read from pip's link (Link.egg_fragment), not from
	// the URL its HTTP client sends: "koo%2D1.0" names no release of koo.
	files, err := parseSimpleHTML([]byte(`<a href="w.whl?a=1&amp;egg=koo%2D1.0">x</a>`), mustURL(t, "https://idx.example/simple/koo/"), 10)
	if err != nil || len(files) != 1 || files[0].egg != "koo%2D1.0" {
		t.Errorf("egg of w.whl?a=1&egg=koo%%2D1.0: %+v, %v; want koo%%2D1.0, as pip", files, err)
	}
}

// TestLinkDigestReadAsPipReadsIt: pip checks a download against one
// digest (Link.hash): the first a PEP 691 page lists (its value replaced by
// the URL's of the same algorithm), or else the URL's first "#ALG=" or
// "&ALG=" (LinkHash._hash_url_fragment_re), up to the next "&". The table
// is pip 23.2.1's Link and Link.from_json on each case. "#sha256=HEX&egg="
// was read as the digest "HEX&egg=..." (a file pip installs failed), and a
// page listing md5 first had its sha256 checked while pip checks the md5:
// a host answering two spellings of a URL (a redirect) with two files
// could pass one to the scan and the other to pip.
func TestLinkDigestReadAsPipReadsIt(t *testing.T) {
	other := strings.Repeat("ab", 32)
	page := mustURL(t, "https://idx.example/simple/koo/")
	// want: "S" (sha), "O" (other) or the algorithm pip checks instead.
	for _, c := range []struct{ ref, listed, wantHTML, wantJSON string }{
		{"koo-1.0.tar.gz#sha256=S&egg=koo-1.0", `{}`, "S", "S"},
		{"koo-1.0.tar.gz#egg=koo-1.0&sha256=S", `{}`, "S", "S"},
		{"koo-1.0.tar.gz?x=1&sha256=S", `{}`, "S", "S"},
		{"koo-1.0.tar.gz#md5=00&sha256=S", `{}`, "md5", "md5"},
		{"koo-1.0.tar.gz#sha2567=S", `{}`, "", ""},
		{"koo-1.0.tar.gz#SHA256=S", `{}`, "", ""},
		{"koo-1.0.tar.gz#sha256=O", `{"sha256": "S"}`, "O", "O"},
		{"koo-1.0.tar.gz#md5=00", `{"sha256": "S"}`, "md5", "S"},
		{"koo-1.0.tar.gz", `{"sha256": "S"}`, "", "S"},
		{"koo-1.0.tar.gz", `{"md5": "00", "sha256": "S"}`, "", "md5"},
		{"koo-1.0.tar.gz", `{"sha256": "S", "md5": "00"}`, "", "S"},
		{"koo-1.0.tar.gz", `{"sha256": "x", "md5": "00", "sha256": "S"}`, "", "S"},
		{"koo-1.0.tar.gz#sha256=O", `{"md5": "00"}`, "O", "md5"},
		{"koo-1.0.tar.gz#sha256=S", `null`, "S", "S"},
	} {
		ref := strings.NewReplacer("=S", "="+sha, "=O", "="+other).Replace(c.ref)
		listed := strings.ReplaceAll(c.listed, `"S"`, `"`+sha+`"`)
		check := func(kind string, files []file, err error, want string) {
			t.Helper()
			wantSHA, wantAlg := map[string]string{"S": sha, "O": other}[want], ""
			if wantSHA == "" {
				wantAlg = want
			}
			if err != nil || len(files) != 1 || files[0].sha256 != wantSHA || files[0].pipChecks != wantAlg {
				t.Errorf("%s %q, listed %s: %+v, %v; want sha256 %q (pip checks %q)", kind, c.ref, c.listed, files, err, wantSHA, wantAlg)
			}
		}
		files, err := parseSimpleHTML([]byte(`<a href="`+html.EscapeString(ref)+`">x</a>`), page, 10)
		check("HTML", files, err, c.wantHTML)
		body := `{"meta": {"api-version": "1.1"}, "files": [{"filename": "koo-1.0.tar.gz", "url": "` + ref + `", "hashes": ` + listed + `}]}`
		files, err = parseSimpleJSON([]byte(body), page, 10)
		check("JSON", files, err, c.wantJSON)
	}
}

// TestDownloadSaysWhichDigestPipChecks: a file whose digest pip checks is
// not a sha256 fails before downloading, naming the algorithm.
func TestDownloadSaysWhichDigestPipChecks(t *testing.T) {
	g := &httpGetter{client: http.DefaultClient}
	ix, err := New(Config{Getter: g})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ix.Download(context.Background(), Distribution{Filename: "koo-1.0.tar.gz", URL: "https://f.invalid/koo-1.0.tar.gz", PipChecks: "md5"})
	var de *DigestError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), `pip checks the download against the index's "md5" digest`) {
		t.Fatalf("error %v, want a DigestError naming md5", err)
	}
	if len(g.urls) != 0 {
		t.Errorf("downloaded %q, which the scan cannot vouch for", g.urls)
	}
}

// TestLinkFragmentReadAsWritten: pip reads a link's digest and egg name
// from its URL with the fragment as written; Go re-escapes a '#' in a
// fragment as "%23". "#a#sha256=O" hid from the scan the digest pip
// checks (the scan checked the page's sha256 S, pip the link's O), and
// "#a#md5=..." the md5 pip checks instead of the sha256 after it; "#a#egg="
// the version pip gives the file. Checked against pip 23.2.1's Link.
func TestLinkFragmentReadAsWritten(t *testing.T) {
	other := strings.Repeat("ab", 32)
	page := mustURL(t, "https://idx.example/simple/koo/")
	for _, c := range []struct{ ref, listed, wantSHA, wantAlg, wantEgg string }{
		{"koo-1.0.tar.gz#a#sha256=" + other, `{"sha256": "` + sha + `"}`, other, "", ""},
		{"koo-1.0.tar.gz#a#md5=00&sha256=" + sha, `{}`, "", "md5", ""},
		{"koo-1.0.tar.gz#a#egg=koo-2.0&sha256=" + sha, `{}`, sha, "", "koo-2.0"},
		{"koo-1.0.tar.gz#a%23sha256=" + other, `{}`, "", "", ""},
	} {
		files, err := parseSimpleHTML([]byte(`<a href="`+html.EscapeString(c.ref)+`">x</a>`), page, 10)
		if err != nil || len(files) != 1 || files[0].sha256 != c.wantSHA || files[0].pipChecks != c.wantAlg || files[0].egg != c.wantEgg {
			t.Errorf("HTML %q: %+v, %v; want sha256 %q, pip checks %q, egg %q", c.ref, files, err, c.wantSHA, c.wantAlg, c.wantEgg)
		}
		body := `{"meta": {"api-version": "1.1"}, "files": [{"filename": "koo-1.0.tar.gz", "url": "` + c.ref + `", "hashes": ` + c.listed + `}]}`
		files, err = parseSimpleJSON([]byte(body), page, 10)
		if err != nil || len(files) != 1 || files[0].sha256 != c.wantSHA || files[0].pipChecks != c.wantAlg || files[0].egg != c.wantEgg {
			t.Errorf("JSON %q, listed %s: %+v, %v; want sha256 %q, pip checks %q, egg %q", c.ref, c.listed, files, err, c.wantSHA, c.wantAlg, c.wantEgg)
		}
	}
}

// TestSimpleJSONKeysMatchedExactly: pip reads a PEP 691 file's "url",
// "hashes" and "yanked" by their exact names (Python's dict.get);
// encoding/json folds case, and "URL" and "Hashes" after them replaced
// them: the scan fetched and verified one file while pip installed
// another, each checked against its own digest.
func TestSimpleJSONKeysMatchedExactly(t *testing.T) {
	other := strings.Repeat("ab", 32)
	page := mustURL(t, "https://idx.example/simple/koo/")
	body := `{"meta": {"api-version": "1.1"}, "files": [{"filename": "koo-1.0.tar.gz",
		"url": "https://pip.example/koo-1.0.tar.gz", "hashes": {"sha256": "` + sha + `"}, "yanked": "old",
		"URL": "https://scan.example/koo-1.0.tar.gz", "Hashes": {"sha256": "` + other + `"}, "Yanked": false,
		"url": "https://pip.example/f/koo-1.0.tar.gz"}]}`
	files, err := parseSimpleJSON([]byte(body), page, 10)
	if err != nil || len(files) != 1 {
		t.Fatalf("files %+v, %v; want one", files, err)
	}
	f := files[0]
	if f.url != "https://pip.example/f/koo-1.0.tar.gz" || f.sha256 != sha || !f.yanked || f.yankedReason != "old" {
		t.Errorf("file %+v; want pip's: the last \"url\", sha256 %s, yanked \"old\"", f, sha)
	}
}

// TestSimpleJSONEmptyYankedReasonIsNotYanked: pip reads a PEP 691 file's
// "yanked" by its truth (pip 23.2.1's Link.from_json: "not yanked_reason"
// is None), so "yanked": "" is a file pip does not hold yanked. The scan
// held it yanked and, choosing the latest release, passed over the
// version (or the file) pip installs and scanned an older one.
func TestSimpleJSONEmptyYankedReasonIsNotYanked(t *testing.T) {
	page := mustURL(t, "https://idx.example/simple/koo/")
	for _, c := range []struct {
		yanked, reason string
		want           bool
	}{
		{`""`, "", false}, {`null`, "", false}, {`false`, "", false},
		{`true`, "", true}, {`"r"`, "r", true},
	} {
		body := `{"meta": {"api-version": "1.1"}, "files": [{"filename": "koo-2.0.tar.gz", "url": "koo-2.0.tar.gz", "hashes": {}, "yanked": ` + c.yanked + `}]}`
		files, err := parseSimpleJSON([]byte(body), page, 10)
		if err != nil || len(files) != 1 || files[0].yanked != c.want || files[0].yankedReason != c.reason {
			t.Errorf("yanked %s: %+v, %v; want yanked %v, reason %q (pip's Link.from_json)", c.yanked, files, err, c.want, c.reason)
		}
	}
}
