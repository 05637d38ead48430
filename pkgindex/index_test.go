package pkgindex

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// *fetch.Fetcher is the Getter the scan command uses.
var _ Getter = (*fetch.Fetcher)(nil)

// fakeFile is one distribution file the fake index serves.
type fakeFile struct {
	name   string
	data   []byte
	hash   string // published sha256: "ok" for the right one, "" for none, else as given
	yanked any    // false, true or a reason string
	ref    string // how the page links it; "" = "../../../files/NAME" (relative)
}

func (f fakeFile) sha() string {
	if f.hash == "ok" {
		s := sha256.Sum256(f.data)
		return hex.EncodeToString(s[:])
	}
	return f.hash
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fooBarFiles is project foo-bar: release 1.0 (an sdist and two wheels,
// one yanked), a pre-release 1.1rc1, a fully yanked newer 1.2, a dev
// release 1.3.dev1, 0.9 whose published sha256 is wrong, 0.8 without a
// hash, and files that are not foo-bar's or do not parse.
func fooBarFiles() []fakeFile {
	d := func(s string) []byte { return []byte("contents of " + s) }
	return []fakeFile{
		{name: "foo_bar-1.0.tar.gz", data: d("sdist 1.0"), hash: "ok", yanked: false},
		{name: "foo_bar-1.0-py3-none-any.whl", data: d("wheel 1.0"), hash: "ok", ref: "/files/foo_bar-1.0-py3-none-any.whl"},
		{name: "foo_bar-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", data: d("cp312 wheel 1.0"), hash: "ok", yanked: "broken build"},
		{name: "foo_bar-1.1rc1.tar.gz", data: d("sdist 1.1rc1"), hash: "ok"},
		{name: "foo_bar-1.2.tar.gz", data: d("sdist 1.2"), hash: "ok", yanked: true},
		{name: "foo_bar-1.2-py3-none-any.whl", data: d("wheel 1.2"), hash: "ok", yanked: "security"},
		{name: "foo_bar-1.3.dev1-py3-none-any.whl", data: d("wheel 1.3.dev1"), hash: "ok"},
		{name: "foo_bar-0.9.tar.gz", data: d("sdist 0.9"), hash: strings.Repeat("ab", 32)},
		{name: "foo_bar-0.8.zip", data: d("sdist 0.8"), hash: ""},
		{name: "foo_bar-0.7.tar.gz", data: d("sdist 0.7"), hash: "not-hex"},
		{name: "README.txt", data: d("readme"), hash: "ok"},
		{name: "other_pkg-9.0.tar.gz", data: d("other"), hash: "ok"},
		{name: "foo_bar-notaversion.tar.gz", data: d("junk"), hash: "ok"},
		{name: "foo_bar-9.0.exe", data: d("installer"), hash: "ok"},
	}
}

// stale is a release only the JSON API knows (its per-version document):
// the simple page was cached before it was published.
var stale = fakeFile{name: "foo_bar-2.0.tar.gz", data: []byte("sdist 2.0"), hash: "ok"}

// fakeIndex serves one project, foo-bar, under several index URLs:
//
//	/json/simple/  PEP 691 JSON (406 unless asked for it by Accept)
//	/html/simple/  PEP 503 HTML whatever Accept says
//	/api/simple/   404 for every page; /api/pypi/... is the JSON API
//	/custom/       PEP 503 HTML at an index URL not ending in /simple
//
// /{json,html,api}/pypi/foo-bar/json and /pypi/foo-bar/VERSION/json are the
// JSON API; files are served from /files/.
type fakeIndex struct {
	t     *testing.T
	files []fakeFile
	srv   *httptest.Server

	mu       sync.Mutex
	requests []string // "PATH ACCEPT"
	auth     []string // "PATH USER:PASSWORD" of requests with basic auth
	status   int      // when non-zero, every page answers this
}

func newFakeIndex(t *testing.T) *fakeIndex {
	f := &fakeIndex{t: t, files: fooBarFiles()}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIndex) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeIndex) asked(path string) bool {
	for _, r := range f.log() {
		if strings.HasPrefix(r, path+" ") {
			return true
		}
	}
	return false
}

func (f *fakeIndex) file(name string) (fakeFile, bool) {
	for _, ff := range append(f.files, stale) {
		if ff.name == name {
			return ff, true
		}
	}
	return fakeFile{}, false
}

func (f *fakeIndex) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.URL.Path+" "+r.Header.Get("Accept"))
	if user, pass, ok := r.BasicAuth(); ok {
		f.auth = append(f.auth, r.URL.Path+" "+user+":"+pass)
	}
	status := f.status
	f.mu.Unlock()
	p := r.URL.Path
	if name, ok := strings.CutPrefix(p, "/files/"); ok {
		ff, ok := f.file(name)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(ff.data)
		return
	}
	if status != 0 {
		http.Error(w, "trouble", status)
		return
	}
	mode, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	switch {
	case rest == "simple/foo-bar/" && mode == "json":
		if !strings.Contains(r.Header.Get("Accept"), "application/vnd.pypi.simple.v1+json") {
			http.Error(w, "ask for JSON", http.StatusNotAcceptable)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.pypi.simple.v1+json")
		f.writeSimpleJSON(w)
	case (rest == "simple/foo-bar/" && mode == "html") || (mode == "custom" && rest == "foo-bar/"):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		f.writeHTML(w, mode == "custom")
	case strings.HasPrefix(rest, "pypi/foo-bar/") && mode != "custom":
		f.serveJSONAPI(w, r, strings.TrimPrefix(rest, "pypi/foo-bar/"))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeIndex) ref(ff fakeFile) string {
	if ff.ref != "" {
		return ff.ref
	}
	return "../../../files/" + ff.name
}

func (f *fakeIndex) writeSimpleJSON(w io.Writer) {
	type jf struct {
		Filename string          `json:"filename"`
		URL      string          `json:"url"`
		Hashes   json.RawMessage `json:"hashes"`
		Yanked   any             `json:"yanked,omitempty"`
	}
	var files []jf
	for _, ff := range f.files {
		// pip checks the first digest listed: sha256, then another that
		// pip does not check; without a sha256, md5 is the first.
		h := json.RawMessage(`{"md5": "00"}`)
		if s := ff.sha(); s != "" {
			h = json.RawMessage(`{"sha256": "` + s + `", "md5": "00"}`)
		}
		files = append(files, jf{Filename: ff.name, URL: f.ref(ff), Hashes: h, Yanked: ff.yanked})
	}
	json.NewEncoder(w).Encode(map[string]any{
		"meta":     map[string]string{"api-version": "1.1"},
		"name":     "foo-bar",
		"files":    files,
		"versions": []string{"1.0"},
	})
}

func (f *fakeIndex) writeHTML(w io.Writer, custom bool) {
	fmt.Fprint(w, "<!DOCTYPE html>\n<html><head><title>Links for foo-bar</title></head><body><h1>Links for foo-bar</h1>\n")
	for _, ff := range f.files {
		href := f.ref(ff)
		if custom {
			href = "../../files/" + ff.name // from /custom/foo-bar/
		}
		if s := ff.sha(); s != "" {
			href += "#sha256=" + s
		} else {
			href += "#md5=00"
		}
		attr := ""
		switch y := ff.yanked.(type) {
		case bool:
			if y {
				attr = ` data-yanked=""` // as PyPI writes it: a valueless attribute is not yanked to pip
			}
		case string:
			attr = ` data-yanked="` + html.EscapeString(y) + `"`
		}
		fmt.Fprintf(w, "<a href=\"%s\" data-requires-python=\"&gt;=3.8\"%s>%s</a><br/>\n", html.EscapeString(href), attr, html.EscapeString(ff.name))
	}
	fmt.Fprint(w, "</body></html>\n")
}

type apiFile struct {
	Filename     string            `json:"filename"`
	URL          string            `json:"url"`
	Digests      map[string]string `json:"digests"`
	Yanked       bool              `json:"yanked"`
	YankedReason *string           `json:"yanked_reason"`
}

func (f *fakeIndex) apiFile(r *http.Request, ff fakeFile) apiFile {
	a := apiFile{Filename: ff.name, URL: "http://" + r.Host + "/files/" + ff.name, Digests: map[string]string{"md5": "00"}}
	if s := ff.sha(); s != "" {
		a.Digests["sha256"] = s
	}
	switch y := ff.yanked.(type) {
	case bool:
		a.Yanked = y
	case string:
		a.Yanked, a.YankedReason = true, &y
	}
	return a
}

// serveJSONAPI serves "json" (every release) and "VERSION/json".
func (f *fakeIndex) serveJSONAPI(w http.ResponseWriter, r *http.Request, rest string) {
	versionOf := func(ff fakeFile) string {
		v, ok := parseFilename("foo-bar", ff.name)
		if !ok {
			return "junk"
		}
		return v.String()
	}
	w.Header().Set("Content-Type", "application/json")
	if rest == "json" {
		releases := map[string][]apiFile{}
		for _, ff := range f.files {
			releases[versionOf(ff)] = append(releases[versionOf(ff)], f.apiFile(r, ff))
		}
		json.NewEncoder(w).Encode(map[string]any{"info": map[string]string{"name": "Foo_Bar", "version": "1.0"}, "releases": releases, "urls": []apiFile{}})
		return
	}
	ver, ok := strings.CutSuffix(rest, "/json")
	if !ok {
		http.NotFound(w, r)
		return
	}
	var urls []apiFile
	want, _ := parseVersion(ver) // PEP 440 equal versions share a document
	for _, ff := range append(slices.Clone(f.files), stale) {
		if v, ok := parseFilename("foo-bar", ff.name); versionOf(ff) == ver || ok && v.key == want.key {
			urls = append(urls, f.apiFile(r, ff))
		}
	}
	if len(urls) == 0 {
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"info": map[string]string{"name": "Foo_Bar", "version": ver}, "urls": urls})
}

// httpGetter is a plain HTTP Getter that records the URLs it is asked for.
type httpGetter struct {
	client *http.Client
	mu     sync.Mutex
	urls   []string
}

func (g *httpGetter) Get(ctx context.Context, url string) ([]byte, error) {
	g.mu.Lock()
	g.urls = append(g.urls, url)
	g.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}

func (g *httpGetter) got() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.urls)
}

func newIndex(t *testing.T, f *fakeIndex, path string, mod func(*Config)) (*Index, *httpGetter) {
	t.Helper()
	g := &httpGetter{client: f.srv.Client()}
	cfg := Config{IndexURL: f.srv.URL + path, Getter: g, Client: f.srv.Client()}
	if mod != nil {
		mod(&cfg)
	}
	ix, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ix, g
}

func target(t *testing.T, s string) Target {
	t.Helper()
	tg, err := ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// modes are the index URLs of the three ways to list files.
var modes = []string{"/json/simple", "/html/simple", "/api/simple"}

// inEachMode runs test in a subtest per mode, on a fresh fake index and an
// Index on it (mod, when not nil, changes its Config).
func inEachMode(t *testing.T, mod func(*Config), test func(t *testing.T, f *fakeIndex, ix *Index, g *httpGetter)) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFakeIndex(t)
			ix, g := newIndex(t, f, mode, mod)
			test(t, f, ix, g)
		})
	}
}

// resolve resolves the target spec with ix; an error fails t.
func resolve(t *testing.T, ix *Index, spec string) *Release {
	t.Helper()
	rel, err := ix.Resolve(t.Context(), target(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// wantDist is what a test expects of a distribution.
type wantDist struct {
	name   string
	yanked bool
	reason string
}

func checkRelease(t *testing.T, f *fakeIndex, rel *Release, version string, want []wantDist) {
	t.Helper()
	if rel.Name != "foo-bar" || rel.Version != version {
		t.Fatalf("release %s %s, want foo-bar %s", rel.Name, rel.Version, version)
	}
	var got []string
	for _, d := range rel.Distributions {
		got = append(got, d.Filename)
	}
	var names []string
	for _, w := range want {
		names = append(names, w.name)
	}
	if !slices.Equal(got, names) {
		t.Fatalf("distributions %q, want %q", got, names)
	}
	for i, d := range rel.Distributions {
		ff, _ := f.file(d.Filename)
		// pip spells a '+' in a path "%2B" (_ensure_quoted_url), and so
		// does the scan.
		if want := f.srv.URL + "/files/" + strings.ReplaceAll(d.Filename, "+", "%2B"); d.URL != want {
			t.Errorf("%s: URL %q, want %q", d.Filename, d.URL, want)
		}
		if d.SHA256 != ff.sha() {
			t.Errorf("%s: SHA256 %q, want %q", d.Filename, d.SHA256, ff.sha())
		}
		if d.Yanked != want[i].yanked || d.YankedReason != want[i].reason {
			t.Errorf("%s: yanked %v %q, want %v %q", d.Filename, d.Yanked, d.YankedReason, want[i].yanked, want[i].reason)
		}
	}
}

func TestResolveLatest(t *testing.T) {
	inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, _ *httpGetter) {
		rel := resolve(t, ix, "pypi:foo-bar")
		// 1.2 is fully yanked, 1.1rc1 and 1.3.dev1 are pre-releases, 9.0
		// is in a name that does not parse; the yanked 1.0 wheel is left out.
		checkRelease(t, f, rel, "1.0", []wantDist{{name: "foo_bar-1.0.tar.gz"}, {name: "foo_bar-1.0-py3-none-any.whl"}})
	})
}

func TestResolvePre(t *testing.T) {
	inEachMode(t, func(c *Config) { c.Pre = true }, func(t *testing.T, f *fakeIndex, ix *Index, _ *httpGetter) {
		rel := resolve(t, ix, "pypi:foo-bar")
		checkRelease(t, f, rel, "1.3.dev1", []wantDist{{name: "foo_bar-1.3.dev1-py3-none-any.whl"}})
	})
}

func TestResolvePinnedTakesYanked(t *testing.T) {
	inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, _ *httpGetter) {
		rel := resolve(t, ix, "pypi:foo-bar==1.0")
		checkRelease(t, f, rel, "1.0", []wantDist{
			{name: "foo_bar-1.0.tar.gz"}, {name: "foo_bar-1.0-py3-none-any.whl"},
			{name: "foo_bar-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", yanked: true, reason: "broken build"},
		})

		rel = resolve(t, ix, "pypi:foo-bar==1.2")
		checkRelease(t, f, rel, "1.2", []wantDist{
			{name: "foo_bar-1.2.tar.gz", yanked: true},
			{name: "foo_bar-1.2-py3-none-any.whl", yanked: true, reason: "security"},
		})

		rel = resolve(t, ix, "pypi:foo-bar==1.1rc1")
		checkRelease(t, f, rel, "1.1rc1", []wantDist{{name: "foo_bar-1.1rc1.tar.gz"}})
	})
}

func TestResolvePinnedPEP440Equal(t *testing.T) {
	f := newFakeIndex(t)
	ix, _ := newIndex(t, f, "/json/simple", nil)
	rel := resolve(t, ix, "pypi:foo-bar==1.1.0-rc.1")
	checkRelease(t, f, rel, "1.1.0rc1", []wantDist{{name: "foo_bar-1.1rc1.tar.gz"}})
}

func TestResolveNormalizesName(t *testing.T) {
	inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, _ *httpGetter) {
		rel := resolve(t, ix, "pypi:Foo_Bar==1.0")
		if rel.Name != "foo-bar" || len(rel.Distributions) != 3 {
			t.Fatalf("release %+v", rel)
		}
		for _, r := range f.log() {
			if strings.Contains(strings.ToLower(r), "foo_bar/") {
				t.Errorf("asked for an unnormalized page: %s", r)
			}
		}
	})
}

func TestResolveTrailingSlashIndexURL(t *testing.T) {
	f := newFakeIndex(t)
	ix, _ := newIndex(t, f, "/html/simple/", nil)
	if _, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar")); err != nil {
		t.Fatal(err)
	}
	if !f.asked("/html/simple/foo-bar/") {
		t.Fatalf("requests %q", f.log())
	}
}

func TestResolveAsksForJSON(t *testing.T) {
	f := newFakeIndex(t)
	ix, _ := newIndex(t, f, "/html/simple", nil)
	if _, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar")); err != nil {
		t.Fatal(err)
	}
	log := f.log()
	if len(log) != 1 || !strings.HasPrefix(log[0], "/html/simple/foo-bar/ application/vnd.pypi.simple.v1+json") {
		t.Fatalf("requests %q, want one for the page preferring PEP 691 JSON", log)
	}
}

func TestResolveFallsBackToJSONAPI(t *testing.T) {
	f := newFakeIndex(t)
	ix, _ := newIndex(t, f, "/json/simple", nil)
	// 2.0 is not on the (stale) simple page; the JSON API has it.
	rel := resolve(t, ix, "pypi:foo-bar==2.0")
	if rel.Source != f.srv.URL+"/json/pypi/foo-bar/2.0/json" || len(rel.Distributions) != 1 || rel.Distributions[0].Filename != stale.name {
		t.Fatalf("release %+v, want %s from the JSON API", rel, stale.name)
	}

	// The project page itself is 404 on /api/simple: the latest comes
	// from /pypi/foo-bar/json.
	ix, _ = newIndex(t, f, "/api/simple", nil)
	rel = resolve(t, ix, "pypi:foo-bar")
	if rel.Source != f.srv.URL+"/api/pypi/foo-bar/json" || rel.Version != "1.0" {
		t.Fatalf("release %+v, want 1.0 from the JSON API", rel)
	}
	if !f.asked("/api/simple/foo-bar/") {
		t.Fatalf("the simple page was not asked first: %q", f.log())
	}
}

func TestResolveNotFound(t *testing.T) {
	f := newFakeIndex(t)
	ix, _ := newIndex(t, f, "/json/simple", nil)
	_, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar==3.0"))
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Project != "foo-bar" || nf.Version != "3.0" {
		t.Fatalf("error %v, want *NotFoundError for foo-bar==3.0", err)
	}
	if want := "foo-bar==3.0: no file of this version on the index; the JSON API has none either"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if !f.asked("/json/pypi/foo-bar/3.0/json") {
		t.Errorf("the JSON API was not asked: %q", f.log())
	}

	_, err = ix.Resolve(t.Context(), target(t, "pypi:no-such-project"))
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "project not found on the index") {
		t.Fatalf("error %v, want project not found", err)
	}
}

func TestResolveNoFallbackWithoutSimple(t *testing.T) {
	f := newFakeIndex(t)
	ix, _ := newIndex(t, f, "/custom", nil)
	rel := resolve(t, ix, "pypi:foo-bar")
	checkRelease(t, f, rel, "1.0", []wantDist{{name: "foo_bar-1.0.tar.gz"}, {name: "foo_bar-1.0-py3-none-any.whl"}})
	_, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar==2.0"))
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("error %v, want *NotFoundError", err)
	}
	for _, r := range f.log() {
		if strings.Contains(r, "/pypi/") {
			t.Errorf("asked the JSON API of an index URL not ending in /simple: %s", r)
		}
	}
}

func TestResolveOnlyPreReleases(t *testing.T) {
	f := newFakeIndex(t)
	var kept []fakeFile
	for _, ff := range f.files {
		if ff.name == "foo_bar-1.1rc1.tar.gz" || ff.name == "foo_bar-1.2.tar.gz" {
			kept = append(kept, ff)
		}
	}
	f.files = kept
	ix, _ := newIndex(t, f, "/custom", nil)
	_, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar"))
	var nf *NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "--pre allows pre-releases") {
		t.Fatalf("error %v, want not found naming --pre", err)
	}
}

func TestResolveStatusError(t *testing.T) {
	f := newFakeIndex(t)
	f.status = http.StatusServiceUnavailable // before any request
	ix, _ := newIndex(t, f, "/json/simple", nil)
	_, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar"))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || !strings.Contains(err.Error(), "/json/simple/foo-bar/") {
		t.Fatalf("error %v, want *StatusError 503 naming the page", err)
	}
	if f.asked("/json/pypi/foo-bar/json") {
		t.Error("a failing index must not fall back to the JSON API")
	}
}

func TestResolveLimits(t *testing.T) {
	f := newFakeIndex(t)
	for _, tc := range []struct {
		name  string
		mode  string
		mod   func(*Config)
		check func(error) bool
	}{
		{"page size json", "/json/simple", func(c *Config) { c.MaxPageSize = 100 }, func(err error) bool {
			var le *LimitError
			return errors.As(err, &le) && le.Bound == "MaxPageSize" && le.Max == 100
		}},
		{"page size api", "/api/simple", func(c *Config) { c.MaxPageSize = 100 }, func(err error) bool {
			var le *LimitError
			return errors.As(err, &le) && le.Bound == "MaxPageSize" &&
				strings.HasPrefix(err.Error(), "foo-bar: project not found on the index; the JSON API fallback failed: index page")
		}},
		{"files json", "/json/simple", func(c *Config) { c.MaxFiles = 3 }, func(err error) bool {
			var le *LimitError
			return errors.As(err, &le) && le.Bound == "MaxFiles" && le.Max == 3
		}},
		{"files html", "/html/simple", func(c *Config) { c.MaxFiles = 3 }, func(err error) bool {
			var le *LimitError
			return errors.As(err, &le) && le.Bound == "MaxFiles"
		}},
		{"files api", "/api/simple", func(c *Config) { c.MaxFiles = 3 }, func(err error) bool {
			var le *LimitError
			return errors.As(err, &le) && le.Bound == "MaxFiles"
		}},
		{"distributions", "/html/simple", func(c *Config) { c.MaxDistributions = 1 }, func(err error) bool {
			var le *limit.Error
			return errors.As(err, &le) && le.Kind == limit.Distributions && le.Max == 1
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix, _ := newIndex(t, f, tc.mode, tc.mod)
			_, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar"))
			if !tc.check(err) {
				t.Fatalf("error %v (%T)", err, err)
			}
		})
	}
}

func TestFetch(t *testing.T) {
	inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, g *httpGetter) {
		var got []string
		rel, err := ix.Fetch(t.Context(), target(t, "pypi:foo-bar==1.0"), func(d Distribution, data []byte) error {
			ff, _ := f.file(d.Filename)
			if !bytes.Equal(data, ff.data) {
				t.Errorf("%s: got %q, want %q", d.Filename, data, ff.data)
			}
			got = append(got, d.Filename)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || len(rel.Distributions) != 3 {
			t.Fatalf("called back for %q, release %+v", got, rel)
		}
		if len(g.got()) != 3 {
			t.Fatalf("getter asked for %q", g.got())
		}
	})
}

func TestFetchDigestMismatch(t *testing.T) {
	inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, _ *httpGetter) {
		called := 0
		_, err := ix.Fetch(t.Context(), target(t, "pypi:foo-bar==0.9"), func(Distribution, []byte) error { called++; return nil })
		var de *DigestError
		if !errors.As(err, &de) {
			t.Fatalf("error %v, want *DigestError", err)
		}
		ff, _ := f.file("foo_bar-0.9.tar.gz")
		if de.Filename != ff.name || de.Want != strings.Repeat("ab", 32) || de.Got != sum(ff.data) {
			t.Fatalf("%+v", de)
		}
		for _, s := range []string{ff.name, de.Want, de.Got, "mismatch"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("message %q does not name %q", err, s)
			}
		}
		if called != 0 {
			t.Error("a distribution that failed verification was handed to the callback")
		}
	})
}

func TestFetchMissingOrInvalidHash(t *testing.T) {
	inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, g *httpGetter) {
		_, err := ix.Fetch(t.Context(), target(t, "pypi:foo-bar==0.8"), func(Distribution, []byte) error { return nil })
		var de *DigestError
		// The simple pages list an md5 only (pip checks it); the JSON API
		// no digest the scan reads.
		if !errors.As(err, &de) || de.Want != "" || de.Filename != "foo_bar-0.8.zip" ||
			!(de.PipChecks == "md5" && strings.Contains(err.Error(), `the index's "md5" digest`) || de.PipChecks == "" && strings.Contains(err.Error(), "gives no sha256")) {
			t.Fatalf("error %v, want *DigestError without a published sha256", err)
		}
		_, err = ix.Fetch(t.Context(), target(t, "pypi:foo-bar==0.7"), func(Distribution, []byte) error { return nil })
		if !errors.As(err, &de) || de.Want != "not-hex" || de.Got != "" || !strings.Contains(err.Error(), "invalid sha256") {
			t.Fatalf("error %v, want *DigestError for an invalid digest", err)
		}
		if len(g.got()) != 0 {
			t.Errorf("unverifiable files were downloaded: %q", g.got())
		}
	})
}

func TestFetchKeepsGoingAndStopsOnCallbackError(t *testing.T) {
	f := newFakeIndex(t)
	// Release 1.0 gets a file with a wrong digest in the middle.
	bad := fakeFile{name: "foo_bar-1.0-py2-none-any.whl", data: []byte("x"), hash: strings.Repeat("0", 64)}
	f.files = slices.Insert(f.files, 1, bad)
	ix, _ := newIndex(t, f, "/json/simple", nil)
	var got []string
	_, err := ix.Fetch(t.Context(), target(t, "pypi:foo-bar==1.0"), func(d Distribution, _ []byte) error {
		got = append(got, d.Filename)
		return nil
	})
	var de *DigestError
	if !errors.As(err, &de) || de.Filename != bad.name || len(got) != 3 {
		t.Fatalf("error %v, called back for %q; want the digest error after the 3 good files", err, got)
	}

	stop := errors.New("stop")
	calls := 0
	_, err = ix.Fetch(t.Context(), target(t, "pypi:foo-bar==1.0"), func(Distribution, []byte) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("error %v after %d calls, want the callback's error after 1", err, calls)
	}
}

func TestDownloadGetterError(t *testing.T) {
	f := newFakeIndex(t)
	ix, _ := newIndex(t, f, "/json/simple", nil)
	d := Distribution{Filename: "gone.tar.gz", URL: f.srv.URL + "/files/gone.tar.gz", SHA256: strings.Repeat("a", 64)}
	_, err := ix.Download(t.Context(), d)
	if err == nil || !strings.Contains(err.Error(), `download "gone.tar.gz": HTTP 404`) {
		t.Fatalf("error %v, want the getter's error naming the file", err)
	}
}

func TestResolveCanceled(t *testing.T) {
	f := newFakeIndex(t)
	ix, _ := newIndex(t, f, "/json/simple", nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ix.Resolve(ctx, target(t, "pypi:foo-bar")); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestNew(t *testing.T) {
	g := &httpGetter{client: http.DefaultClient}
	for _, u := range []string{"ftp://example.org/simple", "example.org/simple", "https:///simple", "https://example.org/simple?x=1", "https://example.org/simple#x", "http://[::1"} {
		if _, err := New(Config{IndexURL: u, Getter: g}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without Getter accepted")
	}
	ix, err := New(Config{Getter: g})
	if err != nil || ix.simple != "https://pypi.org/simple" || ix.api != "https://pypi.org" {
		t.Fatalf("default index %+v, %v", ix, err)
	}
	ix, err = New(Config{Getter: g, IndexURL: "https://example.org/devpi/+simple/"})
	if err != nil || ix.simple != "https://example.org/devpi/+simple" || ix.api != "" {
		t.Fatalf("%+v, %v", ix, err)
	}
}

func TestCheckRedirect(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := checkRedirect(req("http://a/x"), []*http.Request{req("https://a/y")}); err == nil {
		t.Error("https -> http followed")
	}
	if err := checkRedirect(req("https://a/x"), []*http.Request{req("http://a/y")}); err != nil {
		t.Errorf("http -> https refused: %v", err)
	}
	via := make([]*http.Request, maxRedirects+1)
	for i := range via {
		via[i] = req("https://a/y")
	}
	if err := checkRedirect(req("https://a/x"), via); err == nil {
		t.Error("too many redirects followed")
	}
}

func TestResolveBadFileURL(t *testing.T) {
	for _, mode := range []string{"/json/simple", "/html/simple"} {
		t.Run(mode, func(t *testing.T) {
			f := newFakeIndex(t)
			f.files = append(f.files, fakeFile{name: "foo_bar-1.0-py2-none-any.whl", data: []byte("x"), hash: "ok", ref: "javascript:alert(1)"})
			ix, _ := newIndex(t, f, mode, nil)
			_, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar"))
			var pe *PageError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), `file "foo_bar-1.0-py2-none-any.whl": URL "javascript:alert(1)`) || !strings.Contains(err.Error(), "is not http or https") {
				t.Fatalf("error %v, want a *PageError naming the file and its URL", err)
			}
			// Other releases are not affected by the bad file.
			if _, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar==1.2")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestIndexCredentials(t *testing.T) {
	f := newFakeIndex(t)
	withCreds := strings.Replace(f.srv.URL, "http://", "http://alice:s3cret@", 1)
	g := &httpGetter{client: f.srv.Client()}
	ix, err := New(Config{IndexURL: withCreds + "/html/simple", Getter: g, Client: f.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := ix.Fetch(t.Context(), target(t, "pypi:foo-bar"), func(Distribution, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rel.Distributions {
		if strings.Contains(d.URL, "alice") || strings.Contains(d.URL, "s3cret") {
			t.Errorf("credentials passed on to a file URL: %s", d.URL)
		}
	}
	if strings.Contains(rel.Source, "s3cret") {
		t.Errorf("Source %q shows the password", rel.Source)
	}
	f.mu.Lock()
	if !slices.Equal(f.auth, []string{"/html/simple/foo-bar/ alice:s3cret"}) {
		t.Errorf("basic auth %q, want the page asked with it and no file", f.auth)
	}
	f.mu.Unlock()

	f.mu.Lock()
	f.status = http.StatusForbidden
	f.mu.Unlock()
	_, err = ix.Resolve(t.Context(), target(t, "pypi:foo-bar"))
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("error %v, want a 403 without the password", err)
	}
	if _, err := New(Config{IndexURL: "ftp://bob:hunter2@x/simple", Getter: g}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("New error %v, want one without the password", err)
	}
	// A token holding an unescaped '/' reads as a host and a path
	// (http://127.0.0.1:1/s3cret@x: host 127.0.0.1:1); the error shows
	// nothing past the scheme.
	ix, err = New(Config{IndexURL: "http://127.0.0.1:1/s3cret@x/simple", Getter: g, Client: f.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Resolve(t.Context(), target(t, "pypi:foo-bar")); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v, want one without the token", err)
	}
}

// An index's answers are the attacker's: a redirect to a huge URL (or a
// Location that does not parse) must not carry its bytes into the error a
// report prints.
func TestIndexRequestErrorBounded(t *testing.T) {
	huge := strings.Repeat("A", 512<<10)
	for name, loc := range map[string]string{
		"loop":        "/simple/foo/" + huge, // too many redirects, each to a huge URL
		"scheme":      "ftp://x/" + huge,
		"unparsable":  "http://x/" + huge + "%zz\x7f",
		"unreachable": "http://127.0.0.1:1/" + huge,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", loc)
				w.WriteHeader(http.StatusFound)
			}))
			defer srv.Close()
			ix, err := New(Config{IndexURL: srv.URL + "/simple", Getter: &httpGetter{}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = ix.Resolve(t.Context(), Target{Name: "foo", Version: "1.0"})
			if err == nil {
				t.Fatal("no error")
			}
			if n := len(err.Error()); n > 4<<10 || strings.Contains(err.Error(), strings.Repeat("A", 1024)) {
				t.Fatalf("error text is %d bytes: %.200s…", n, err)
			}
		})
	}
}

// PEP 440 normalizes a local label's separators ('-', '_', '.') and reads
// its numeric parts as numbers, and a wheel's file name can only spell '-'
// as '_': "1.5+a.b", "1.5+a_b" and "1.5+a-b" are one version, as are
// "1.6+1" and "1.6+01". pip installs any file of the release; every one
// must be scanned, pinned or latest.
func TestResolveLocalVersionSpellings(t *testing.T) {
	d := func(s string) []byte { return []byte("contents of " + s) }
	for _, tc := range []struct {
		spec, version string
		files         []string
	}{
		{"pypi:foo-bar==1.5+a.b", "1.5+a.b", []string{"foo_bar-1.5+a.b.tar.gz", "foo_bar-1.5+a_b-py3-none-any.whl", "foo_bar-1.5+a-b.zip"}},
		{"pypi:foo-bar==1.5+a-b", "1.5+a.b", []string{"foo_bar-1.5+a.b.tar.gz", "foo_bar-1.5+a_b-py3-none-any.whl", "foo_bar-1.5+a-b.zip"}},
		{"pypi:foo-bar", "1.5+a.b", []string{"foo_bar-1.5+a.b.tar.gz", "foo_bar-1.5+a_b-py3-none-any.whl", "foo_bar-1.5+a-b.zip"}},
		{"pypi:foo-bar==1.6+1", "1.6+1", []string{"foo_bar-1.6+1.tar.gz", "foo_bar-1.6+01-py3-none-any.whl"}},
		{"pypi:foo-bar", "1.6+1", []string{"foo_bar-1.6+1.tar.gz", "foo_bar-1.6+01-py3-none-any.whl"}},
	} {
		t.Run(tc.spec+" "+tc.files[0], func(t *testing.T) {
			inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, _ *httpGetter) {
				var want []wantDist
				for _, name := range tc.files {
					f.files = append(f.files, fakeFile{name: name, data: d(name), hash: "ok"})
					want = append(want, wantDist{name: name})
				}
				checkRelease(t, f, resolve(t, ix, tc.spec), tc.version, want)
			})
		})
	}
}

// pip installs sdists with any of its archive extensions (pip's
// utils/filetypes.py: .tbz, .txz, .tlz, .tar.lz and .tar.lzma besides the
// usual ones): a file of the release in one of them must be scanned, not
// dropped as a name that does not parse, or the release passes clean while
// pip may install the file nobody looked at.
func TestResolveEveryPipSdistExtension(t *testing.T) {
	d := func(s string) []byte { return []byte("contents of " + s) }
	extra := []string{"foo_bar-1.0.tbz", "foo_bar-1.0.txz", "foo_bar-1.0.tlz", "foo_bar-1.0.tar.lz", "foo_bar-1.0.tar.lzma"}
	inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, _ *httpGetter) {
		want := []wantDist{
			{name: "foo_bar-1.0.tar.gz"}, {name: "foo_bar-1.0-py3-none-any.whl"},
			{name: "foo_bar-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", yanked: true, reason: "broken build"},
		}
		for _, name := range extra {
			f.files = append(f.files, fakeFile{name: name, data: d(name), hash: "ok"})
			want = append(want, wantDist{name: name})
		}
		checkRelease(t, f, resolve(t, ix, "pypi:foo-bar==1.0"), "1.0", want)
	})
}

// TestPinTakesLocalVersions: a pin without a local label takes the files
// of that version with any local label too (PEP 440 ignores the
// candidates' labels then, and pip may install 1.0+ubuntu1 for ==1.0); a
// pin with one takes that label only. (On the simple page: PyPI, and so
// the JSON API fallback, refuses local versions.)
func TestPinTakesLocalVersions(t *testing.T) {
	d := func(s string) []byte { return []byte("contents of " + s) }
	files := []string{"foo_bar-1.0.tar.gz", "foo_bar-1.0+ubuntu1-py3-none-any.whl", "foo_bar-1.0.0+cpu.zip", "foo_bar-1.0.1+ubuntu1.tar.gz"}
	for _, tc := range []struct {
		spec, version string
		want          []string
	}{
		{"pypi:foo-bar==1.0", "1.0", files[:3]},
		{"pypi:foo-bar==1.0+ubuntu1", "1.0+ubuntu1", files[1:2]},
	} {
		for _, mode := range []string{"/json/simple", "/html/simple"} {
			t.Run(tc.spec+mode, func(t *testing.T) {
				f := newFakeIndex(t)
				ix, _ := newIndex(t, f, mode, nil)
				f.files = nil
				for _, name := range files {
					f.files = append(f.files, fakeFile{name: name, data: d(name), hash: "ok"})
				}
				var want []wantDist
				for _, name := range tc.want {
					want = append(want, wantDist{name: name})
				}
				checkRelease(t, f, resolve(t, ix, tc.spec), tc.version, want)
			})
		}
	}
}

// TestFilesAreNamedByTheirURLAsPip: pip names an index's file by its URL
// (Link.filename: the last segment of the path), never by the anchor's text
// or a JSON "filename", as pip 23.2.1's parse_links does on these pages. A
// page whose sdist of 1.0 was labelled 0.9 had the scan of foo-bar==1.0
// look at the win32 wheel alone and read clean, while pip on Linux
// installed the sdist it never downloaded.
func TestFilesAreNamedByTheirURLAsPip(t *testing.T) {
	for _, mode := range []string{"/json/simple", "/html/simple"} {
		t.Run(mode, func(t *testing.T) {
			f := newFakeIndex(t)
			f.files = []fakeFile{
				{name: "foo_bar-0.9.tar.gz", ref: "/files/foo_bar-1.0.tar.gz", data: []byte("evil"), hash: "ok"},
				{name: "foo_bar-1.0-cp27-cp27m-win32.whl", data: []byte("benign"), hash: "ok"},
			}
			ix, _ := newIndex(t, f, mode, nil)
			rel := resolve(t, ix, "pypi:foo-bar==1.0")
			var got []string
			for _, d := range rel.Distributions {
				got = append(got, d.Filename+" "+strings.TrimPrefix(d.URL, f.srv.URL))
			}
			want := []string{"foo_bar-1.0.tar.gz /files/foo_bar-1.0.tar.gz", "foo_bar-1.0-cp27-cp27m-win32.whl /files/foo_bar-1.0-cp27-cp27m-win32.whl"}
			if !slices.Equal(got, want) {
				t.Errorf("foo-bar==1.0: %q, want %q (the files pip sees)", got, want)
			}
		})
	}
}

// TestWheelsPipInstallsAreResolved: pip takes a wheel whose python, abi or
// platform tags hold any character but white space and '-' (pip 23.2.1's
// Wheel.wheel_file_re: the tags are split at '.' and one supported
// combination is enough), and names a file by its URL's last segment
// unescaped twice, as Python's unquote does: a malformed escape stays as
// it is and the others are decoded. A page listing a benign sdist of
// foo-bar 1.0 and a wheel foo_bar-1.0-py3.x+y-none-any.whl (py3-none-any,
// which pip prefers to the sdist) had the scan of foo-bar==1.0 look at the
// sdist alone and read clean while pip installed the wheel, never
// scanned; so did a wheel whose URL escaped its version's '.' beside a
// malformed escape (named "foo_bar-1%2E0-...", no version).
func TestWheelsPipInstallsAreResolved(t *testing.T) {
	for _, mode := range []string{"/json/simple", "/html/simple"} {
		t.Run(mode, func(t *testing.T) {
			f := newFakeIndex(t)
			f.files = []fakeFile{
				{name: "foo_bar-1.0.tar.gz", data: []byte("benign"), hash: "ok"},
				{name: "w1", ref: "/files/foo_bar-1.0-py3.x+y-none-any.whl", data: []byte("evil"), hash: "ok"},
				{name: "w2", ref: "/files/foo_bar-1.0-py3.x;p=1-none-any.whl", data: []byte("evil"), hash: "ok"},
				{name: "w3", ref: "/files/foo_bar-1%252E0-py3.x%25zz-none-any.whl", data: []byte("evil"), hash: "ok"},
			}
			ix, _ := newIndex(t, f, mode, nil)
			rel := resolve(t, ix, "pypi:foo-bar==1.0")
			var got []string
			for _, d := range rel.Distributions {
				got = append(got, d.Filename)
			}
			want := []string{
				"foo_bar-1.0.tar.gz",
				"foo_bar-1.0-py3.x+y-none-any.whl",
				"foo_bar-1.0-py3.x;p=1-none-any.whl",
				"foo_bar-1.0-py3.x%zz-none-any.whl",
			}
			if !slices.Equal(got, want) {
				t.Errorf("foo-bar==1.0: %q,\nwant %q (the files pip 23.2.1 takes for it)", got, want)
			}
		})
	}
}

// TestFilesPipInstallsAreNeverLeftOut: a wheel pip 23.2.1 takes for
// foo-bar 1.0 whose name, as pip reads its URL, holds a path separator or
// white space ("%5C", "%252F", a build tag "1%20x"), or whose URL Go's
// parser refuses while pip re-escapes it ("%zz"), fails the release
// loudly. Each was left out without a word (the name did not parse, or the
// file kept the page's name "w"): foo-bar==1.0 read clean on its benign
// sdist while pip installed the wheel.
func TestFilesPipInstallsAreNeverLeftOut(t *testing.T) {
	for _, ref := range []string{
		"/files/foo_bar-1.0-py3.x%5Cy-none-any.whl",
		"/files/foo_bar-1.0-py3.x%252Fy-none-any.whl",
		"/files/foo_bar-1.0-1%20x-py3-none-any.whl",
		"/files/foo_bar-1.0-py3.x%zz-none-any.whl",
	} {
		for _, mode := range []string{"/json/simple", "/html/simple"} {
			f := newFakeIndex(t)
			f.files = []fakeFile{
				{name: "foo_bar-1.0.tar.gz", data: []byte("benign"), hash: "ok"},
				{name: "w", ref: ref, data: []byte("evil"), hash: "ok"},
			}
			ix, _ := newIndex(t, f, mode, nil)
			for _, spec := range []string{"pypi:foo-bar==1.0", "pypi:foo-bar"} {
				rel, err := ix.Resolve(t.Context(), target(t, spec))
				var pe *PageError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), "foo_bar-1.0-") {
					var got []string
					if rel != nil {
						for _, d := range rel.Distributions {
							got = append(got, d.Filename)
						}
					}
					t.Errorf("%s, %s linking %s: files %q, error %v; want a page error naming the wheel pip installs", mode, spec, ref, got, err)
				}
			}
		}
	}
}

// pickFrom parses body (HTML, or PEP 691 JSON when it starts with '{') as
// project koo's page and picks the release of pin ("" for the latest); it
// returns the version and the chosen file names, or pick's error.
func pickFrom(t *testing.T, body, pin string) (string, []string, error) {
	t.Helper()
	page := mustURL(t, "https://idx.example/simple/koo/")
	parse := parseSimpleHTML
	if strings.HasPrefix(body, "{") {
		parse = parseSimpleJSON
	}
	files, err := parse([]byte(body), page, 100)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := New(Config{Getter: &httpGetter{}})
	if err != nil {
		t.Fatal(err)
	}
	var want *version
	if pin != "" {
		v, ok := parseVersion(pin)
		if !ok {
			t.Fatalf("bad pin %q", pin)
		}
		want = &v
	}
	rel, err := ix.pick("koo", pin, want, files, "page")
	if err != nil {
		return "", nil, err
	}
	var names []string
	for _, d := range rel.Distributions {
		names = append(names, d.Filename)
	}
	return rel.Version, names, nil
}

// TestPinTakesEggFragmentFiles: pip reads a link's project and version
// from an "egg=" part of its URL ("#egg=koo-1.0", or "&egg=" anywhere),
// whatever the file is called, and then ignores the file name: such a
// file, "helper.tar.gz" or "blob", was left out of koo==1.0 (and the scan
// read clean) while pip could install it; "koo-1.0.zip#egg=koo-3.0" is
// 3.0 to pip.
func TestPinTakesEggFragmentFiles(t *testing.T) {
	html := `<a href="/f/koo-1.0.tar.gz#sha256=` + sha + `">koo-1.0.tar.gz</a>
<a href="/f/helper.tar.gz#sha256=` + sha + `&egg=koo-1.0">helper.tar.gz</a>
<a href="/f/blob?a=1&amp;egg=Koo-1.0">blob</a>
<a href="/f/koo-1.0.zip#egg=koo-3.0">koo-1.0.zip</a>`
	json := `{"meta": {"api-version": "1.1"}, "files": [
{"filename": "koo-1.0.tar.gz", "url": "/f/koo-1.0.tar.gz", "hashes": {}},
{"filename": "helper.tar.gz", "url": "/f/helper.tar.gz#egg=koo-1.0", "hashes": {}},
{"filename": "blob", "url": "/f/blob?a=1&egg=Koo-1.0", "hashes": {}},
{"filename": "koo-1.0.zip", "url": "/f/koo-1.0.zip#egg=koo-3.0", "hashes": {}}]}`
	for _, body := range []string{html, json} {
		if v, got, err := pickFrom(t, body, "1.0"); v != "1.0" || !slices.Equal(got, []string{"koo-1.0.tar.gz", "helper.tar.gz", "blob"}) {
			t.Errorf("koo==1.0: %s %q %v, want 1.0 [koo-1.0.tar.gz helper.tar.gz blob]", v, got, err)
		}
		if v, got, err := pickFrom(t, body, ""); v != "3.0" || !slices.Equal(got, []string{"koo-1.0.zip"}) {
			t.Errorf("latest: %s %q %v, want 3.0 [koo-1.0.zip]", v, got, err)
		}
	}
}

// TestPinFailsOnFilesPipReadsOtherwise: files whose names pip reads as
// koo 1.0 only as Python does (a Kelvin sign for 'k', white space around
// the version, a long s in "post") were left out of koo==1.0, which read
// clean while pip could install them. They are the release's now: scanned,
// or, when scan reports cannot name them (white space), failing it.
func TestPinFailsOnFilesPipReadsOtherwise(t *testing.T) {
	a := func(href string) string { return `<a href="/f/` + href + `#sha256=` + sha + `">x</a>` }
	if v, got, err := pickFrom(t, a("koo-1.0.tar.gz")+a("%E2%84%AAoo-1.0-1-py3-none-any.whl"), "1.0"); v != "1.0" || !slices.Equal(got, []string{"koo-1.0.tar.gz", "\u212aoo-1.0-1-py3-none-any.whl"}) {
		t.Errorf("Kelvin sign: %s %q %v, want both files", v, got, err)
	}
	if v, got, err := pickFrom(t, a("koo-1.0.tar.gz")+a("koo-1.0.po%C5%BFt1.tar.gz"), "1.0.post1"); v != "1.0.post1" || !slices.Equal(got, []string{"koo-1.0.po\u017ft1.tar.gz"}) {
		t.Errorf("long s: %s %q %v, want the post-release", v, got, err)
	}
	for _, href := range []string{"koo-%201.0.tar.gz", "koo-1.0%E3%80%80.tar.gz", "koo-1.0%0C.zip"} {
		v, got, err := pickFrom(t, a("koo-1.0.tar.gz")+a(href), "1.0")
		var pe *PageError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "white space") {
			t.Errorf("%s: %s %q %v; want a page error naming the file", href, v, got, err)
		}
	}
}

// TestLinksJoinedAsPipJoinsThem: a link is joined as pip 23.2.1 joins it
// (Python's urlsplit drops tabs and line breaks anywhere, and spaces and
// controls at the start; "x//name" is a relative path, not an authority),
// and the wheel pip installs is scanned at pip's URL or fails the release
// (a relative path with an empty segment, which pip drops): such a wheel
// got no name and was left out of koo==1.0 without a word, or was fetched
// at another URL (" /f/w.whl" under the page), and the scan read the sdist
// clean while pip installs the wheel (each want checked with parse_links
// and LinkEvaluator).
func TestLinksJoinedAsPipJoinsThem(t *testing.T) {
	const whl = "koo-1.0-py3-none-any.whl"
	for _, tt := range []struct{ ref, url string }{
		{"/f/koo-1.0-py3-none-\nany.whl", "https://idx.example/f/" + whl},
		{"\t/f/" + whl, "https://idx.example/f/" + whl},
		{" /f/" + whl, "https://idx.example/f/" + whl},
		{"https://h.example//" + whl + "\r", "https://h.example//" + whl},
		{"x//" + whl + "\t", ""}, // pip: https://idx.example/simple/koo/x/koo-1.0-py3-none-any.whl
		{"x//" + whl, ""},
	} {
		body := `<a href="/f/koo-1.0.tar.gz">koo-1.0.tar.gz</a>` + "\n<a href=\"" + tt.ref + "\">readme</a>"
		files, err := parseSimpleHTML([]byte(body), mustURL(t, "https://idx.example/simple/koo/"), 100)
		if err != nil || len(files) != 2 || files[1].url != tt.url {
			t.Errorf("linking %q: %+v, %v; want the URL %q", tt.ref, files, err, tt.url)
		}
		for _, pin := range []string{"1.0", ""} {
			_, names, err := pickFrom(t, body, pin)
			if tt.url != "" && (err != nil || !slices.Contains(names, whl)) {
				t.Errorf("linking %q, pin %q: files %q, error %v; want the wheel pip installs", tt.ref, pin, names, err)
			}
			if tt.url == "" && (err == nil || !strings.Contains(err.Error(), whl)) {
				t.Errorf("linking %q, pin %q: files %q, error %v; want an error naming the wheel pip installs", tt.ref, pin, names, err)
			}
		}
	}
}

// TestProjectPageReadAsPipReadsIt: pip 23.2.1 decodes an HTML project page
// with the charset its Content-Type declares, and reads a page as PEP 691
// JSON when the header (repeated headers joined with ", ") starts with
// the JSON type. A page declaring utf-7 hid a wheel ("+ADw-a href=...")
// that pip installs, latin-1 had pip fetch another path, and a JSON page
// whose header Go's media-type parser refuses was read as HTML: the scan
// read the sdist clean while pip installs the wheel (each checked with
// parse_links). Such pages are read as pip reads them or refused (a page
// of ASCII alone declaring latin-1 is read).
func TestProjectPageReadAsPipReadsIt(t *testing.T) {
	const poly = `{"meta": {"api-version": "1.1"}, "x": "<a href='/f/koo-1.0.tar.gz'>koo-1.0.tar.gz</a>", ` +
		`"files": [{"filename": "koo-1.0-py3-none-any.whl", "url": "/f/koo-1.0-py3-none-any.whl", "hashes": {}}]}`
	for _, tt := range []struct {
		ct, body string
		want     string // the file pip takes; "" for a refused page
	}{
		{"text/html; charset=utf-7", `<a href="/f/koo-1.0.tar.gz">koo-1.0.tar.gz</a>` + "\n" +
			`+ADw-a href=+ACI-/f/koo-1.0-py3-none-any.whl+ACI-+AD4-x+ADw-/a+AD4-`, ""},
		{"text/html; charset=latin-1", `<a href="/f/é/koo-1.0.tar.gz">x</a>`, ""}, // pip: /f/%C3%83%C2%A9/koo-1.0.tar.gz
		{"text/html; charset=utf-8", `<a href="/f/koo-1.0.tar.gz">x</a>`, "koo-1.0.tar.gz"},
		{"text/html; charset=\"UTF8\"", `<a href="/f/koo-1.0.tar.gz">x</a>`, "koo-1.0.tar.gz"},
		{"text/html; charset=ISO-8859-1", `<a href="/f/koo-1.0.tar.gz">x</a>`, "koo-1.0.tar.gz"}, // ASCII alone: the same text to pip
		{"application/vnd.pypi.simple.v1+json, text/html", poly, "koo-1.0-py3-none-any.whl"},
		{"application/vnd.pypi.simple.v1+jsonx", poly, "koo-1.0-py3-none-any.whl"},
		{"application/vnd.pypi.simple.v1+json; a=1; a=2", poly, "koo-1.0-py3-none-any.whl"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", tt.ct)
			io.WriteString(w, tt.body)
		}))
		ix, err := New(Config{IndexURL: srv.URL + "/simple", Getter: &httpGetter{client: srv.Client()}, Client: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		rel, err := ix.Resolve(t.Context(), target(t, "pypi:koo==1.0"))
		srv.Close()
		var names []string
		if rel != nil {
			for _, d := range rel.Distributions {
				names = append(names, d.Filename)
			}
		}
		if tt.want == "" {
			var pe *PageError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "charset") {
				t.Errorf("Content-Type %q: files %q, error %v; want a page error naming the charset", tt.ct, names, err)
			}
			continue
		}
		if err != nil || !slices.Equal(names, []string{tt.want}) {
			t.Errorf("Content-Type %q: files %q, error %v; want [%s] as pip", tt.ct, names, err, tt.want)
		}
	}
}

// TestFilesWhoseURLDoesNotReparseFailLoudly: a scheme-relative link whose
// host holds several colons ("//files.example:1:2/..."), which Go's parser
// takes without a scheme and refuses with one (strict colons for http and
// https), resolved to a URL that no later parse reads: the file was named ""
// and left out of koo 1.0 without a word while pip names it by its path
// and takes the wheel. It must fail the release, naming the wheel.
// (Found by FuzzParseSimpleHTML: "https://::0".)
func TestFilesWhoseURLDoesNotReparseFailLoudly(t *testing.T) {
	for _, ref := range []string{"//files.example:1:2/f/koo-1.0-py3-none-any.whl", "//::0/f/koo-1.0-py3-none-any.whl"} {
		for _, body := range []string{
			`<a href="/f/koo-1.0.tar.gz">koo-1.0.tar.gz</a><a href="` + ref + `">w</a>`,
			`{"meta": {"api-version": "1.1"}, "files": [{"filename": "koo-1.0.tar.gz", "url": "/f/koo-1.0.tar.gz", "hashes": {}},
{"filename": "w", "url": "` + ref + `", "hashes": {}}]}`,
		} {
			for _, pin := range []string{"1.0", ""} {
				v, names, err := pickFrom(t, body, pin)
				var pe *PageError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), "koo-1.0-py3-none-any.whl") {
					t.Errorf("%.20q pin %q linking %s: version %q, files %q, error %v; want a page error naming the wheel", body, pin, ref, v, names, err)
				}
			}
		}
	}
}

// TestPinHashesNameVerifiedFiles: with --hash options pip checks a
// download against the requirement's hashes, any one matching, and not
// against the index's digest (pip 23.2.1's _get_linked_req_hashes: no
// internet-sourced hash in require-hashes mode). A --hash that is the
// sha256 of no file the scan verifies let pip install bytes the scan
// never saw (a host answering pip's spelling of a redirect with other
// bytes) while the scan verified the index's sha256 and said clean.
func TestPinHashesNameVerifiedFiles(t *testing.T) {
	sum := func(s string) string {
		h := sha256.Sum256([]byte("contents of " + s))
		return hex.EncodeToString(h[:])
	}
	pin := "foo-bar==1.0 --hash=sha256:" + sum("sdist 1.0") + " --hash=sha256:" + sum("wheel 1.0")
	inEachMode(t, nil, func(t *testing.T, f *fakeIndex, ix *Index, g *httpGetter) {
		for _, c := range []struct{ line, wantErr string }{
			{pin, ""},
			{pin + " --hash=sha256:" + strings.ToUpper(sum("evil")), ""}, // pip matches it to no download
			{pin + " --hash=sha256:" + sum("evil"), "is the sha256 of no file the index lists for foo-bar 1.0"},
			{pin + " --hash=sha512:" + strings.Repeat("ab", 64), "verifies sha256 digests only"},
			// A project pinned twice is listed once: pip takes the hashes
			// of both lines (the second's alone when the first has none),
			// so the scan checks both lines' hashes.
			{"foo-bar==1.0\nfoo-bar==1.0 --hash=sha256:" + sum("evil"), "is the sha256 of no file the index lists for foo-bar 1.0"},
		} {
			pins, err := ParseRequirements("req.txt", []byte(c.line+"\n"))
			if err != nil || len(pins) != 1 {
				t.Fatalf("%q: %+v, %v", c.line, pins, err)
			}
			rel, err := ix.Resolve(t.Context(), pins[0])
			if c.wantErr == "" && (err != nil || rel == nil) || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr) || rel != nil) {
				t.Errorf("%q: %+v, %v; want error %q", c.line, rel, err, c.wantErr)
			}
		}
	})
}

// TestResolveLatestTakesEmptyYankedReason: a PEP 691 page marking foo-bar
// 1.2's files "yanked": "" lists them not yanked to pip (Python's truth of
// ""), which installs 1.2 for "foo-bar"; the scan, holding them yanked,
// scanned an older release (1.0) in its place.
func TestResolveLatestTakesEmptyYankedReason(t *testing.T) {
	f := newFakeIndex(t)
	for i := range f.files {
		if strings.HasPrefix(f.files[i].name, "foo_bar-1.2") {
			f.files[i].yanked = ""
		}
	}
	ix, _ := newIndex(t, f, "/json/simple", nil)
	rel := resolve(t, ix, "pypi:foo-bar")
	checkRelease(t, f, rel, "1.2", []wantDist{{name: "foo_bar-1.2.tar.gz"}, {name: "foo_bar-1.2-py3-none-any.whl"}})
}

// TestPagesPipDecodesOtherwiseRefused: an index page pip reads otherwise
// than Go's client is refused, never parsed. Go ignores Transfer-Encoding
// on HTTP/1.0 and reads the chunk framing as the page, while pip's requests
// decodes it; and Go decodes only the gzip it asks for, while requests also
// decodes deflate: a chunk line or a deflate stored block's header could
// split a link the scan then never sees, and pip installs its file. Gzip,
// which both decode, and identity still read.
func TestPagesPipDecodesOtherwiseRefused(t *testing.T) {
	html := `<a href="/f/foo-1.0.tar.gz#sha256=` + sha + `">foo-1.0.tar.gz</a>`
	var stored bytes.Buffer // a deflate stream of stored blocks: the page in plain sight
	fw, err := flate.NewWriter(&stored, flate.NoCompression)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte(html))
	fw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(html))
	zw.Close()
	raw := func(response string) string {
		return testkit.RawHTTPServer(t, func(conn net.Conn, _ int) { io.WriteString(conn, response) })
	}
	for _, tc := range []struct {
		name, response, want string
	}{
		{"HTTP/1.0 chunked", fmt.Sprintf("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(html), html), "refused, since pip reads its framing otherwise"},
		{"deflate", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", stored.Len(), stored.Bytes()), `Content-Encoding "deflate", which pip decodes`},
		{"gzip twice", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip, gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", gz.Len(), gz.Bytes()), `Content-Encoding "gzip, gzip"`},
		{"gzip", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", gz.Len(), gz.Bytes()), ""},
		{"identity", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: identity\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(html), html), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix, err := New(Config{IndexURL: raw(tc.response) + "/simple", Getter: &httpGetter{}})
			if err != nil {
				t.Fatal(err)
			}
			rel, err := ix.Resolve(t.Context(), Target{Name: "foo", Version: "1.0"})
			if tc.want == "" {
				if err != nil || len(rel.Distributions) != 1 || rel.Distributions[0].SHA256 != sha {
					t.Fatalf("Resolve: %+v, %v; want foo-1.0.tar.gz read", rel, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Resolve: %+v, %v; want an error saying %q", rel, err, tc.want)
			}
		})
	}
}

// TestPageGzipInTwoHeaderLinesRefused: a page sent with "Content-Encoding:
// gzip" on two header lines is gzip twice to pip (requests joins them as
// "gzip, gzip" and decodes both), while Go's client decoded the gzip it
// asked for once and dropped both lines, so the check for encodings left
// undecoded saw none and the page was parsed as the inner gzip stream
// (here a benign link in its header comment; pip reads the page inside,
// which links another file). Before the fix only the NUL bytes of that
// stream got it refused; it is refused for its encoding.
func TestPageGzipInTwoHeaderLinesRefused(t *testing.T) {
	evil := `<a href="/f/foo-1.0-py3-none-any.whl#sha256=` + strings.Repeat("e", 64) + `">foo-1.0-py3-none-any.whl</a>`
	var inner bytes.Buffer
	zw := gzip.NewWriter(&inner)
	zw.Comment = `<a href="/f/foo-1.0.tar.gz#sha256=` + sha + `">foo-1.0.tar.gz</a>`
	zw.Write([]byte(evil))
	zw.Close()
	var outer bytes.Buffer
	zw = gzip.NewWriter(&outer)
	zw.Write(inner.Bytes())
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Add("Content-Encoding", "gzip")
		w.Header().Add("Content-Encoding", "gzip")
		w.Write(outer.Bytes())
	}))
	defer srv.Close()
	ix, err := New(Config{IndexURL: srv.URL + "/simple", Getter: &httpGetter{}})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := ix.Resolve(t.Context(), Target{Name: "foo", Version: "1.0"})
	if err == nil || !strings.Contains(err.Error(), `Content-Encoding "gzip, gzip"`) {
		t.Fatalf("Resolve: %+v, %v; want the page refused for its Content-Encoding", rel, err)
	}
}
