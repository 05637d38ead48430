// Package pkgindex finds a release on a Python package index and downloads
// its distributions, verified against the index's sha256, for
// `dragonfly scan pypi:NAME[==VERSION]` and `-r requirements.txt`.
//
// A Target (ParseTarget, ReadRequirements) names a project and optionally a
// version. Index.Resolve asks the index (Config.IndexURL, default
// https://pypi.org/simple) for the project page {IndexURL}/{normalized-name}/
// with Accept: application/vnd.pypi.simple.v1+json and reads the answer as
// PEP 691 JSON when its content type says so, else as PEP 503 HTML (as
// pip's parser reads it: anchors in <textarea> or <title> are links; markup
// that it splits otherwise than the HTML5 tokenizer is a *PageError). File
// versions are read from file names (wheels, eggs, sdists), or, as pip
// does, from an "egg=NAME-VERSION" part of the file's URL when it has one;
// names that do not parse are ignored. A pinned version takes every file of
// that version (PEP 440 equality: 1.0 is 1.0.0 and 1.0a1 is 1.0alpha1; a
// pin with a local label takes that label only, a pin without one also takes the
// files of that version with any local label, 1.0+ubuntu1 for ==1.0, as
// PEP 440 matching and pip do), yanked ones included (marked Yanked). Without a pin the release is the
// highest PEP 440 version that is not a pre-release or development release
// (unless Config.Pre) and has a file that is not yanked; its yanked files are
// left out. When IndexURL ends in /simple and the page lacks the release (404
// or no file of it), the PyPI JSON API beside it is asked:
// {IndexURL without /simple}/pypi/NAME/VERSION/json, or /pypi/NAME/json for
// the latest.
//
// Index.Download fetches one distribution through the Getter (in the scan
// command a *fetch.Fetcher, with its allowed hosts, size limit, timeouts and
// retries) and checks its sha256: a mismatch, or a file for which the index
// gives no valid sha256, is a *DigestError and the bytes are not returned.
// The sha256 is the digest pip checks (one per file: the first a PEP 691
// page lists, or the URL's "#sha256="); a file pip checks against another
// algorithm fails the same way, since pip could then install other bytes
// than the scan verified. With a requirement's --hash options pip checks
// those instead (its require-hashes mode), so Resolve refuses the release
// unless each is the sha256 of one of its files (Target.Hashes).
// Resolve returns no bytes, so a caller can download and scan the
// distributions as it likes (one scan job per distribution, each holding
// only its own bytes); Fetch is the sequential form, calling back once per
// verified distribution so that at most one distribution is held at a time.
//
// A requirement file (ReadRequirements, ParseRequirements) yields one Target
// per exact pin "name==version" (extras, markers, hashes, continuations and
// comments allowed). Any line that is not an exact pin or a harmless option
// (>=, ~=, URLs, -e, -r, -c, index options) is an error naming the file and
// line, never skipped with a warning: a file must not pass as scanned when
// part of it was not.
//
// Everything read from the index is bounded: the page size (MaxPageSize),
// the files of a page (MaxFiles), the distributions of a release
// (MaxDistributions), file names (MaxFilenameLen), file URLs (MaxURLLen),
// yank reasons and digests, and input-derived strings in errors (package
// clip). Index request time is bounded by PageTimeout; downloads by the
// Getter. No request is retried here (the Getter retries downloads).
package pkgindex

import (
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// Default values of Config.
const (
	DefaultIndexURL         = "https://pypi.org/simple"
	DefaultMaxPageSize      = 32 << 20
	DefaultMaxFiles         = 100_000
	DefaultMaxDistributions = 128
	DefaultPageTimeout      = 60 * time.Second
	DefaultUserAgent        = "dragonfly-fleet"
)

// Content types of the simple repository API.
const (
	simpleJSONType = "application/vnd.pypi.simple.v1+json"
	acceptSimple   = simpleJSONType + ", application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
)

// Getter downloads one URL fully into memory. *fetch.Fetcher satisfies it.
type Getter interface {
	Get(ctx context.Context, url string) ([]byte, error)
}

// Config configures an Index. Zero values take the defaults named per field.
type Config struct {
	// IndexURL is the base of the simple repository API (PEP 503/691), http
	// or https, without query. When it ends in /simple, the PyPI JSON API at
	// its parent is the fallback. User info in it is sent to the index (by
	// the default Client, as basic auth), redacted in errors, and never
	// passed on to file URLs. Default DefaultIndexURL.
	IndexURL string
	// Pre lets the latest release be a pre-release or development release.
	// Pinned versions are taken whatever they are. Default false.
	Pre bool
	// Getter downloads distributions. Required.
	Getter Getter
	// Client asks the index for pages. Default: an HTTP client without
	// proxy that follows at most 5 redirects, never from https to http.
	Client *http.Client
	// PageTimeout bounds one index request, from sending to the last body
	// byte. Default 60s.
	PageTimeout time.Duration
	// MaxPageSize bounds the bytes of one index answer (after content
	// decoding); a larger one is a *LimitError. Default 32 MiB. A page at
	// both default bounds (32 MiB, 100,000 files) took about 1 s and
	// 105 MiB of heap to resolve (measured over loopback, GOGC=100).
	MaxPageSize int64
	// MaxFiles bounds the file entries of one project page or JSON API
	// answer; more is a *LimitError. Default 100000.
	MaxFiles int
	// MaxDistributions bounds the distributions of the chosen release; more
	// is a *limit.Error{Kind: limit.Distributions}. Default 128 (the fleet's
	// DRAGONFLY_MAX_DISTRIBUTIONS).
	MaxDistributions int
	// UserAgent is sent with index requests. Default "dragonfly-fleet".
	UserAgent string
}

// Index finds releases on one package index. It is safe for concurrent use.
type Index struct {
	cfg Config
	// simple is IndexURL without trailing slash; api is the JSON API base
	// (IndexURL without /simple), "" when IndexURL does not end in /simple.
	simple, api string
}

// New returns an Index configured by cfg. It fails when IndexURL is not an
// absolute http(s) URL or Getter is nil.
func New(cfg Config) (*Index, error) {
	if cfg.Getter == nil {
		return nil, errors.New("pkgindex: no Getter")
	}
	cfg.IndexURL = cmp.Or(cfg.IndexURL, DefaultIndexURL)
	u, err := url.Parse(cfg.IndexURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("index URL %q: not an absolute http(s) URL without query", clip.URL(cfg.IndexURL))
	}
	if cfg.Client == nil {
		cfg.Client = defaultClient()
	}
	cfg.PageTimeout = bound.Or(cfg.PageTimeout, DefaultPageTimeout)
	cfg.MaxPageSize = bound.Or(cfg.MaxPageSize, DefaultMaxPageSize)
	cfg.MaxFiles = bound.Or(cfg.MaxFiles, DefaultMaxFiles)
	cfg.MaxDistributions = bound.Or(cfg.MaxDistributions, DefaultMaxDistributions)
	cfg.UserAgent = cmp.Or(cfg.UserAgent, DefaultUserAgent)
	ix := &Index{cfg: cfg, simple: strings.TrimRight(u.String(), "/")}
	if api, ok := strings.CutSuffix(ix.simple, "/simple"); ok {
		ix.api = api
	}
	return ix, nil
}

func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return &http.Client{Transport: t, CheckRedirect: checkRedirect}
}

const maxRedirects = 5

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to scheme %q refused", clip.String(req.URL.Scheme, 64))
	}
	if via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme == "http" {
		return errors.New("redirect from https to http refused")
	}
	return nil
}

// Release is a release found on the index and the distributions to scan.
type Release struct {
	// Name is the normalized project name.
	Name string
	// Version is the PEP 440 normalized version ("1.0rc1").
	Version string
	// Source is the URL of the page that listed the distributions: the
	// project page or a JSON API document (password redacted).
	Source string
	// Distributions are the release's files in the index's order: all of
	// them for a pinned version, the ones not yanked for the latest.
	Distributions []Distribution
}

// Distribution is one file of a release.
type Distribution struct {
	Filename string
	// URL is absolute (relative index URLs resolved against the page),
	// without fragment.
	URL string
	// SHA256 is the index's digest as published, lower case: 64 hex digits,
	// or "" (or something else, cut short) when the index gives no valid
	// one, which Download refuses.
	SHA256 string
	// PipChecks names the algorithm of the digest pip checks the download
	// against when it is not sha256 (the first a PEP 691 page lists, or
	// the one in the URL); SHA256 is "" then, which Download refuses.
	PipChecks string
	// Yanked is set for a yanked file (only a pinned version lists them);
	// YankedReason is the index's reason, if any.
	Yanked       bool
	YankedReason string
}

// errPageNotFound marks a 404 or 410 answer.
var errPageNotFound = errors.New("not found")

// page is one index answer.
type page struct {
	body        []byte
	contentType string
	url         *url.URL // after redirects
}

// get asks the index for rawURL.
func (ix *Index) get(ctx context.Context, rawURL, accept string) (page, error) {
	shown := clip.URL(rawURL)
	ctx, cancel := context.WithTimeout(ctx, ix.cfg.PageTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return page{}, fmt.Errorf("index request: %w", err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", ix.cfg.UserAgent)
	// Asked for here, gzip is not decoded by Go's client, which would
	// drop every Content-Encoding line: the page is decoded below exactly
	// when pip's requests decodes it once ("gzip" on two lines is gzip
	// twice to pip, and once to Go).
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := ix.cfg.Client.Do(req)
	if err != nil {
		return page{}, requestError(shown, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return page{}, errPageNotFound
	case resp.StatusCode != http.StatusOK:
		return page{}, &StatusError{URL: shown, Code: resp.StatusCode}
	case !resp.ProtoAtLeast(1, 1):
		// Go ignores Transfer-Encoding on HTTP/1.0 and reads the chunk
		// framing as the page; pip (requests) decodes it: a chunk line
		// could split a link the scan then never sees.
		return page{}, fmt.Errorf("index answered in %s for %s: refused, since pip reads its framing otherwise (want HTTP/1.1 or later)",
			clip.String(resp.Proto, 32), clip.String(shown, clip.Default))
	}
	// As pip's requests reads it: Content-Encoding lines joined with ", ".
	enc := strings.Join(resp.Header.Values("Content-Encoding"), ", ")
	gzipped := strings.EqualFold(strings.TrimSpace(enc), "gzip")
	switch {
	case !gzipped && undecoded(resp.Header.Values("Content-Encoding")):
		// pip's requests also decodes deflate, and gzip more than once,
		// so a page in another encoding would be read as its raw bytes
		// (a deflate stored block's header can split a link) where pip
		// reads the page.
		return page{}, fmt.Errorf("index answered %s with Content-Encoding %q, which pip decodes and the scan does not",
			clip.String(shown, clip.Default), clip.String(enc, 64))
	case !gzipped && resp.ContentLength > ix.cfg.MaxPageSize:
		return page{}, &LimitError{URL: shown, Bound: "MaxPageSize", Max: ix.cfg.MaxPageSize}
	}
	var r io.Reader = resp.Body
	if gzipped {
		// Multistream, as urllib3's GzipDecoder; the bound is on the
		// decoded page.
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return page{}, fmt.Errorf("index request: read %s: gzip: %w", clip.String(shown, clip.Default), err)
		}
		r = zr
	}
	body, err := bound.ReadAll(r, ix.cfg.MaxPageSize)
	if errors.Is(err, bound.ErrTooLarge) {
		return page{}, &LimitError{URL: shown, Bound: "MaxPageSize", Max: ix.cfg.MaxPageSize}
	}
	if err != nil {
		return page{}, fmt.Errorf("index request: read %s: %w", clip.String(shown, clip.Default), err)
	}
	// As pip reads it (requests): repeated headers joined with ", ".
	ct := strings.Join(resp.Header.Values("Content-Type"), ", ")
	return page{body: body, contentType: ct, url: resp.Request.URL}, nil
}

// undecoded reports whether Content-Encoding values name an encoding
// other than identity.
func undecoded(values []string) bool {
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" && !strings.EqualFold(e, "identity") {
				return true
			}
		}
	}
	return false
}

// maxRequestErrorText bounds the transport's part of a failed index
// request's message.
const maxRequestErrorText = 512

// indexRequestError is an index request that got no answer: the transport's
// error, whose text may quote what the index sent (a redirect target, a
// malformed header line), cut to maxRequestErrorText bytes.
type indexRequestError struct {
	url string // the page asked for, redacted
	err error
}

func (e *indexRequestError) Error() string {
	return fmt.Sprintf("index request %s: %s", clip.String(e.url, clip.Default), clip.Error(e.err, maxRequestErrorText))
}

func (e *indexRequestError) Unwrap() error { return e.err }

// requestError wraps a failed request to shown (the redacted URL asked
// for). A *url.Error's URL is dropped: after a redirect it is the index's
// Location, of any length.
func requestError(shown string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &indexRequestError{url: shown, err: err}
}

// Resolve finds t's release on the index: the pinned version's files, or
// the latest eligible release's files that are not yanked (see the package
// doc). Errors: *NotFoundError (also when the JSON API fallback finds
// nothing), *StatusError, *LimitError, *PageError, *limit.Error for too many
// distributions, transport errors, or ctx's error. When the fallback fails
// otherwise, its error is returned, prefixed with the page's NotFoundError
// text.
func (ix *Index) Resolve(ctx context.Context, t Target) (*Release, error) {
	if err := checkName(t.Name); err != nil {
		return nil, err
	}
	project := NormalizeName(t.Name)
	var want *version
	if t.Version != "" {
		if err := checkVersion(t.Version); err != nil {
			return nil, err
		}
		v, _ := parseVersion(t.Version)
		want = &v
	}
	rel, err := ix.fromSimple(ctx, project, t.Version, want)
	if err == nil {
		return checkPinHashes(t, rel)
	}
	var nf *NotFoundError
	if ix.api == "" || !errors.As(err, &nf) {
		return rel, err
	}
	rel, apiErr := ix.fromJSONAPI(ctx, project, t.Version, want)
	var apiNF *NotFoundError
	switch {
	case apiErr == nil:
		return checkPinHashes(t, rel)
	case errors.As(apiErr, &apiNF):
		return nil, &NotFoundError{Project: nf.Project, Version: nf.Version, Reason: nf.Reason + "; the JSON API has none either"}
	case ctx.Err() != nil:
		return nil, apiErr
	}
	return nil, fmt.Errorf("%s; the JSON API fallback failed: %w", clip.Error(err, clip.Default), apiErr)
}

func (ix *Index) fromSimple(ctx context.Context, project, pinned string, want *version) (*Release, error) {
	pageURL := ix.simple + "/" + project + "/"
	p, err := ix.get(ctx, pageURL, acceptSimple)
	if errors.Is(err, errPageNotFound) {
		return nil, &NotFoundError{Project: project, Version: pinned, Reason: "project not found on the index"}
	}
	if err != nil {
		return nil, err
	}
	var files []file
	// pip reads a page as JSON when its Content-Type starts with the
	// JSON type, whatever follows ("...+json, text/html", a malformed
	// parameter), and as HTML decoded with the charset it declares.
	if strings.HasPrefix(strings.ToLower(p.contentType), simpleJSONType) {
		files, err = parseSimpleJSON(p.body, p.url, ix.cfg.MaxFiles)
	} else if err = checkCharset(p.contentType, p.body); err == nil {
		files, err = parseSimpleHTML(p.body, p.url, ix.cfg.MaxFiles)
	}
	if err != nil {
		return nil, ix.pageError(clip.URL(pageURL), err)
	}
	return ix.pick(project, pinned, want, files, clip.URL(pageURL))
}

// checkCharset refuses an HTML page (body) whose Content-Type (ct)
// declares a charset other than UTF-8 or ASCII, or one Go's parser cannot
// read: pip decodes the page with it, and reads other links than this
// parser ("+ADw-a href=..." is an anchor in utf-7; latin-1 spells a
// non-ASCII href as other bytes). A page of ASCII bytes alone declaring
// latin-1 or windows-1252 is read: pip reads the same text.
func checkCharset(ct string, body []byte) error {
	if !strings.Contains(strings.ToLower(ct), "charset") {
		return nil
	}
	_, params, err := mime.ParseMediaType(ct)
	cs, ok := params["charset"]
	name := pyEncodingName(cs)
	if err == nil && ok && (readEncodings[name] || asciiEncodings[name] && !slices.ContainsFunc(body, func(c byte) bool { return c >= 0x80 })) {
		return nil
	}
	return fmt.Errorf("the Content-Type %q declares a charset pip decodes the page with; only UTF-8 and ASCII pages are read here", clip.String(ct, 128))
}

// asciiEncodings are encodings (as Python names them: pyEncodingName)
// that decode ASCII bytes as ASCII, accepted for a page of ASCII alone.
var asciiEncodings = map[string]bool{
	"latin_1": true, "latin1": true, "iso_8859_1": true, "iso8859_1": true, "8859": true, "cp819": true, "l1": true,
	"windows_1252": true, "cp1252": true, "iso_8859_15": true, "iso8859_15": true,
}

func (ix *Index) fromJSONAPI(ctx context.Context, project, pinned string, want *version) (*Release, error) {
	docURL := ix.api + "/pypi/" + project + "/json"
	if pinned != "" {
		docURL = ix.api + "/pypi/" + project + "/" + url.PathEscape(pinned) + "/json"
	}
	p, err := ix.get(ctx, docURL, "application/json")
	if errors.Is(err, errPageNotFound) {
		return nil, &NotFoundError{Project: project, Version: pinned, Reason: "not found on the JSON API"}
	}
	if err != nil {
		return nil, err
	}
	files, err := parseJSONAPI(p.body, p.url, ix.cfg.MaxFiles)
	if err != nil {
		return nil, ix.pageError(clip.URL(docURL), err)
	}
	return ix.pick(project, pinned, want, files, clip.URL(docURL))
}

func (ix *Index) pageError(pageURL string, err error) error {
	if errors.Is(err, errTooManyFiles) {
		return &LimitError{URL: pageURL, Bound: "MaxFiles", Max: int64(ix.cfg.MaxFiles)}
	}
	return &PageError{URL: pageURL, Err: err}
}

// version is the version of project f is a file of, as pip reads its name
// (pipFilename), or its egg fragment when its URL has one (eggVersion:
// pip then ignores the name); a file whose URL is unusable is also one by
// the name pip gives it.
func (f *file) version(project string) (version, bool) {
	if f.egg != "" {
		return eggVersion(project, f.egg)
	}
	if v, ok := pipFilename(project, f.filename); ok || f.urlErr == nil {
		return v, ok
	}
	return pipFilename(project, f.refName)
}

// pick chooses the release's files from a page's files.
func (ix *Index) pick(project, pinned string, want *version, files []file, source string) (*Release, error) {
	var (
		chosen version
		sel    []file
	)
	if want != nil {
		chosen = *want
		for _, f := range files {
			if v, ok := f.version(project); ok && v.matches(*want) {
				sel = append(sel, f)
			}
		}
		if len(sel) == 0 {
			return nil, &NotFoundError{Project: project, Version: pinned, Reason: "no file of this version on the index"}
		}
	} else {
		type group struct {
			v     version
			files []file // not yanked
		}
		groups := make(map[string]*group)
		var best *group
		for _, f := range files {
			v, ok := f.version(project)
			if !ok || (v.isPre() && !ix.cfg.Pre) {
				continue
			}
			g := groups[v.key]
			if g == nil {
				g = &group{v: v}
				groups[v.key] = g
			}
			if f.yanked {
				continue
			}
			g.files = append(g.files, f)
			if best == nil || v.compare(best.v) > 0 {
				best = g
			}
		}
		if best == nil {
			reason := "no release on the index that is neither a pre-release nor fully yanked (--pre allows pre-releases)"
			if ix.cfg.Pre {
				reason = "no release on the index that is not fully yanked"
			}
			return nil, &NotFoundError{Project: project, Reason: reason}
		}
		chosen, sel = best.v, best.files
	}
	rel := &Release{Name: project, Version: chosen.String(), Source: source}
	if len(sel) > ix.cfg.MaxDistributions {
		return nil, &limit.Error{Kind: limit.Distributions, Max: int64(ix.cfg.MaxDistributions), Path: project + "==" + rel.Version}
	}
	for _, f := range sel {
		if f.urlErr != nil {
			name := f.filename
			if _, ok := pipFilename(project, name); !ok {
				name = f.refName
			}
			return nil, &PageError{URL: source, Err: fmt.Errorf("file %q: %w", clip.String(name, 256), f.urlErr)}
		}
		if unnamed(f.filename) {
			// pip installs it: left out, the release could read clean.
			return nil, &PageError{URL: source, Err: fmt.Errorf("file %q: pip takes it for %s %s, but its name holds a path separator or white space, which scan reports cannot name",
				clip.String(f.filename, 256), project, rel.Version)}
		}
		rel.Distributions = append(rel.Distributions, Distribution{
			Filename: f.filename, URL: f.url, SHA256: f.sha256, PipChecks: f.pipChecks, Yanked: f.yanked, YankedReason: f.yankedReason,
		})
	}
	return rel, nil
}

// Download fetches d through the Getter and checks its sha256 against the
// index's. A missing or invalid published digest fails before downloading;
// a mismatch fails after. Both are *DigestError; download failures are
// wrapped with the file name.
func (ix *Index) Download(ctx context.Context, d Distribution) ([]byte, error) {
	if d.SHA256 == "" {
		return nil, &DigestError{Filename: d.Filename, PipChecks: d.PipChecks}
	}
	if !validSHA256(d.SHA256) {
		return nil, &DigestError{Filename: d.Filename, Want: clip.String(d.SHA256, hashClip)}
	}
	data, err := ix.cfg.Getter.Get(ctx, d.URL)
	if err != nil {
		return nil, fmt.Errorf("download %q: %w", clip.String(d.Filename, 256), err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != d.SHA256 {
		return nil, &DigestError{Filename: d.Filename, Want: d.SHA256, Got: got}
	}
	return data, nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkPinHashes checks a requirement's --hash values (t.Hashes) against
// its release. With them pip checks a download against these alone, any
// one matching, and not against the index's digest: bytes other than the
// scan verified (a host answering pip's spelling of a URL or of a redirect
// otherwise than the scan's) would install if their digest is one of
// them. So each must be the sha256 the index lists for one of rel's files,
// which the scan downloads and verifies. A value that is not lower-case
// hex of a sha256's length matches no download, to pip as to the scan, and
// is passed over. It returns rel, or an error.
func checkPinHashes(t Target, rel *Release) (*Release, error) {
	for _, h := range t.Hashes {
		alg, sum, _ := strings.Cut(h, ":")
		if alg != "sha256" {
			return nil, fmt.Errorf("%s: --hash %q: pip checks downloads against it, and the scan verifies sha256 digests only", t.Origin, clip.String(h, hashClip))
		}
		if !validSHA256(sum) || slices.ContainsFunc(rel.Distributions, func(d Distribution) bool { return d.SHA256 == sum }) {
			continue
		}
		return nil, fmt.Errorf("%s: --hash %q is the sha256 of no file the index lists for %s %s: pip would install a download with that digest, which the scan never verified", t.Origin, clip.String(h, hashClip), rel.Name, rel.Version)
	}
	return rel, nil
}

// Fetch resolves t and downloads its distributions one after another,
// calling fn with each verified distribution's bytes (fn may keep them; at
// most one is held by Fetch at a time). A distribution that fails to
// download or verify is skipped and its error kept; all such errors are
// returned joined after the last distribution. An error from fn stops
// Fetch and is returned as is. The Release is returned whenever Resolve
// succeeded.
func (ix *Index) Fetch(ctx context.Context, t Target, fn func(Distribution, []byte) error) (*Release, error) {
	rel, err := ix.Resolve(ctx, t)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, d := range rel.Distributions {
		if ctx.Err() != nil {
			return rel, ctx.Err()
		}
		data, err := ix.Download(ctx, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := fn(d, data); err != nil {
			return rel, err
		}
	}
	return rel, errors.Join(errs...)
}
