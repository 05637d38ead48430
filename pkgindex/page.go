package pkgindex

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/dragonfly-fleet/fleet/clip"
)

// file is one file entry of a project page or JSON API document.
type file struct {
	filename string
	// url is absolute, without fragment; "" when urlErr is set.
	url    string
	urlErr error
	// refName, when urlErr is set, is the name pip gives the file
	// (file.name): pip may take a URL unusable here.
	refName string
	// egg is the URL's "egg=" value as pip reads it (eggFragment), or "".
	egg string
	// sha256 is the published digest pip checks, lower-cased and cut to
	// hashClip bytes; "" when none was published or pip checks another
	// (pipChecks names it then).
	sha256       string
	pipChecks    string
	yanked       bool
	yankedReason string
}

// MaxURLLen bounds a file URL on an index page; a chosen file with a longer
// one fails its release with a *PageError.
const MaxURLLen = 8 << 10

// hashClip bounds a published digest kept for messages; a valid one is 64
// bytes.
const hashClip = 128

// reasonClip bounds a yank reason.
const reasonClip = 1 << 10

// resolveRef resolves ref (absolute or relative) against base. It returns
// the URL to fetch: without user info and fragment, spelled as pip's HTTP
// client sends it (pipQuoted, pipSent); and the URL as pip's Link holds it
// (fragment included, before its HTTP client re-spells it), from which pip
// reads the egg name (eggFragment) and the digest (linkHash).
func resolveRef(base *url.URL, ref string) (string, string, error) {
	if len(ref) > MaxURLLen {
		return "", "", fmt.Errorf("URL %q is longer than %d bytes", clip.String(ref, 256), MaxURLLen)
	}
	ref = escapeRawPath(pyURLClean(ref))
	if ref == ";" || strings.HasPrefix(ref, ";?") || strings.HasPrefix(ref, ";#") {
		// Empty parameters and no path: Python's urljoin takes the base's
		// path, Go a segment ";".
		ref = ref[1:]
	}
	u, err := base.Parse(ref)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named by the caller, clipped
		}
		return "", "", fmt.Errorf("invalid URL %q: %w", clip.String(ref, 256), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("URL %q is not http or https", clip.String(ref, 256))
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("URL %q has no host", clip.String(ref, 256))
	}
	if strings.HasPrefix(ref, "///") {
		// An empty authority: the page's host to Python's urljoin, a path
		// to Go's.
		return "", "", fmt.Errorf("URL %q has an empty authority, which pip reads as the page's host", clip.String(ref, 256))
	}
	if r, err := url.Parse(ref); err == nil {
		if r.User != nil {
			// pip sends a link's own user info as basic auth (its
			// MultiDomainBasicAuth); a server may answer a request
			// without it otherwise, and the scan sends no credentials to
			// a file host.
			return "", "", fmt.Errorf("URL %q carries user info, which pip sends to the file host as credentials and the scan does not", clip.URL(ref))
		}
		rp := r.EscapedPath()
		if r.Scheme == "" && r.Host == "" && rp != "" && !strings.HasPrefix(rp, "/") &&
			(strings.Contains(rp, "//") || strings.Contains(base.EscapedPath(), "//")) {
			// Python's urljoin (pip's) drops empty segments of a relative
			// path and its base; Go's resolution keeps them.
			return "", "", fmt.Errorf("URL %q: a relative path joined to %q with an empty segment, which pip drops", clip.String(ref, 256), clip.String(base.EscapedPath(), 256))
		}
		if strings.Contains(rp, "//") && strings.Contains(rp+"/", "/../") {
			// "//../": pip's HTTP client (urllib3) and Go resolve a ".."
			// after an empty segment differently.
			return "", "", fmt.Errorf("URL %q: a \"..\" segment in a path with an empty segment, which pip resolves otherwise", clip.String(ref, 256))
		}
	}
	if u, err = pipQuoted(u); err != nil {
		return "", "", fmt.Errorf("URL %q: %w", clip.String(ref, 256), err)
	}
	linkURL := pipLinkURL(u, ref)
	if u, err = pipSent(u); err != nil {
		return "", "", fmt.Errorf("URL %q: %w", clip.String(ref, 256), err)
	}
	u.Fragment, u.RawFragment = "", ""
	u.User = nil // never pass an index's credentials on to a file host
	// A scheme-relative ref ("//h:1:2/x") escapes the checks Go's parser
	// makes of an http(s) host (several colons): the resolved URL must
	// parse again, or the file would be named "" and left out; and keep a
	// host once spelled as pip sends it ("//:" is the host ":", whose
	// empty port pip drops).
	s := u.String()
	if r, err := url.Parse(s); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", fmt.Errorf("invalid URL %q: %w", clip.String(ref, 256), err)
	} else if r.Host == "" {
		return "", "", fmt.Errorf("URL %q has no host", clip.String(ref, 256))
	}
	return s, linkURL, nil
}

// pipLinkURL is u (ref resolved, its path spelled as pip spells it:
// pipQuoted) as pip's Link holds it: with ref's fragment as written. Go
// re-escapes a fragment ('#' as "%23", which pip leaves as it is), and pip
// reads a link's digest and egg name from the first "#ALG=" or "#egg=" in
// it: "#a#sha256=HEX" would hide from the scan a digest pip checks.
func pipLinkURL(u *url.URL, ref string) string {
	_, frag, ok := strings.Cut(ref, "#")
	if !ok {
		return u.String() // the page's fragment, if any (ref is "")
	}
	v := *u
	v.Fragment, v.RawFragment = "", ""
	return v.String() + "#" + frag
}

// pipQuoted returns u with its path spelled as pip requests it
// (_ensure_quoted_url): each part between '@' and "%2F" unescaped and
// escaped again (pyUnquote, pyQuote), parameters after a ';' in the last
// segment left as they are. A server may answer "/f/a=b" and "/f/a%3Db"
// with different bytes: the scan must fetch what pip fetches. A path Go
// cannot send as pip spells it is an error.
func pipQuoted(u *url.URL) (*url.URL, error) {
	p := u.EscapedPath()
	params := ""
	if i := strings.IndexByte(p[strings.LastIndexByte(p, '/')+1:], ';'); i >= 0 {
		i += strings.LastIndexByte(p, '/') + 1
		p, params = p[:i], p[i:]
	}
	if params == ";" {
		params = "" // empty parameters, which Python's urlunparse drops
	}
	var b strings.Builder
	part := 0 // start of the part being read
	for i := 0; i <= len(p); i++ {
		sep := ""
		switch {
		case i == len(p):
		case p[i] == '@':
			sep = "@"
		case p[i] == '%' && i+2 < len(p) && p[i+1] == '2' && (p[i+2] == 'f' || p[i+2] == 'F'):
			sep = "%2F"
		default:
			continue
		}
		b.WriteString(pyQuote(pyUnquote(p[part:i])))
		b.WriteString(sep)
		i += max(len(sep)-1, 0)
		part = i + 1
	}
	if q := "/" + b.String() + "/"; strings.Contains(q, "/./") || strings.Contains(q, "/../") {
		// Escaped dots ("%2e%2e"), which pip unescapes and its HTTP
		// client (urllib3) then resolves: it asks for another path.
		return nil, fmt.Errorf("pip requests the path %q, whose dot segments its HTTP client removes", clip.String(b.String(), 256))
	}
	clean := b.String() + params
	if clean == u.EscapedPath() {
		return u, nil
	}
	v := *u
	path, err := url.PathUnescape(clean)
	v.Path, v.RawPath = path, clean
	if err != nil || v.EscapedPath() != clean {
		return nil, fmt.Errorf("pip requests the path %q, which cannot be sent as it is", clip.String(clean, 256))
	}
	return &v, nil
}

// pipSent returns u (spelled as pip spells it: pipQuoted) as pip's HTTP
// client, requests 2.31 with urllib3 1.26, sends it
// (PreparedRequest.prepare_url, then http.client's Host header): the host
// lower-cased, the port without leading zeros, an empty query, an empty
// port, port 0 and the scheme's default port dropped, an empty
// path sent as "/", and the path and query
// re-spelled (requestsRespell). A server may answer "?a=%41" and "?a=A",
// or the hosts "Files.Example" and "files.example", with different bytes.
// A host pip and Go encode each their own way (non-ASCII, an IPv6 zone) is
// an error.
func pipSent(u *url.URL) (*url.URL, error) {
	v := *u
	host, port := v.Hostname(), v.Port()
	if strings.ContainsFunc(host, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._:", r))
	}) {
		return nil, fmt.Errorf("the host %q holds a byte other than an ASCII letter, digit, '-', '.', '_' or an IPv6 address's ':' (non-ASCII, an IPv6 zone, punctuation), which pip's HTTP client spells otherwise than Go's", clip.String(host, 256))
	}
	host = strings.ToLower(host)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		port = strings.TrimLeft(port, "0") // all zeros: no port, to urllib3
	}
	if v.Scheme == "https" && port == "443" || v.Scheme == "http" && port == "80" {
		port = "" // Python's http.client leaves it out of the Host header, Go's client does not
	}
	v.Host = host
	if port != "" {
		v.Host += ":" + port
	}
	if p := v.EscapedPath(); p != "" {
		sent := requestsRespell(p, pathChars)
		if sent != p {
			path, err := url.PathUnescape(sent)
			v.Path, v.RawPath = path, sent
			if err != nil || v.EscapedPath() != sent {
				return nil, fmt.Errorf("pip's HTTP client requests the path %q, which cannot be sent as it is", clip.String(sent, 256))
			}
		}
	}
	if v.Path == "" {
		v.Path = "/" // what Go's client sends for an empty path, as urllib3
	}
	v.RawQuery = requestsRespell(v.RawQuery, pathChars+"?")
	v.ForceQuery = false // urllib3 drops an empty query
	return &v, nil
}

// pathChars are the ASCII bytes urllib3 sends as they are in a path
// (PATH_CHARS): RFC 3986's unreserved and sub-delims, ':', '@' and '/'.
const pathChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"

// requestsRespell is s, a path or a query, as requests 2.31 and urllib3
// 1.26 send it: urllib3's _encode_invalid_chars (every valid "%xx"
// upper-cased; every byte not in allowed escaped, '%' too unless each '%'
// begins a valid escape), then requests' requote_uri, which decodes the
// escapes of unreserved bytes ("%41" is sent as "A"). After the first step
// every '%' begins a valid escape, so requote_uri's fallback for an invalid
// one never runs.
func requestsRespell(s, allowed string) string {
	if !strings.ContainsFunc(s, func(r rune) bool {
		return r >= utf8.RuneSelf || r == '%' || strings.IndexByte(allowed, byte(r)) < 0
	}) {
		return s // sent as it is
	}
	valid, percents := 0, strings.Count(s, "%")
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && isHex(s[i+1]) && isHex(s[i+2]) {
			valid++
		}
	}
	encoded := valid == percents
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && encoded {
			hi, lo := s[i+1], s[i+2]
			if d := unhex(hi)<<4 | unhex(lo); 'a' <= d && d <= 'z' || 'A' <= d && d <= 'Z' || '0' <= d && d <= '9' || strings.IndexByte("-._~", d) >= 0 {
				b.WriteByte(d) // requote_uri's unquote_unreserved
			} else {
				b.WriteByte('%')
				b.WriteByte(hex[unhex(hi)])
				b.WriteByte(hex[unhex(lo)])
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf && strings.IndexByte(allowed, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
		if c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			// A valid escape is upper-cased before its '%' is escaped.
			b.WriteByte(hex[unhex(s[i+1])])
			b.WriteByte(hex[unhex(s[i+2])])
			i += 2
		}
	}
	return b.String()
}

// pyQuote is Python's urllib.parse.quote(s, safe="/"): every byte but
// letters, digits, "_.-~" and '/' escaped as "%XX".
func pyQuote(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.-~/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// pipEggRe is pip's Link._egg_fragment_re, searched in the whole URL (path
// and query included).
var pipEggRe = regexp.MustCompile(`[#&]egg=([^&]*)`)

// eggFragment returns the value of an "egg=" URL part as pip finds it
// ("#egg=NAME-VERSION" or "&egg=..." anywhere in the URL), or "". pip takes
// a link's project and version from it instead of the file name, whatever
// the file is called.
func eggFragment(rawURL string) string {
	if !strings.Contains(rawURL, "egg=") {
		return ""
	}
	if m := pipEggRe.FindStringSubmatch(rawURL); m != nil {
		return m[1]
	}
	return ""
}

// pipHashRe is pip's LinkHash._hash_url_fragment_re, searched in the
// whole URL (path and query included).
var pipHashRe = regexp.MustCompile(`[#&](sha512|sha384|sha256|sha224|sha1|md5)=([^&]*)`)

// linkHash returns the digest a link's URL publishes as pip reads it: the
// algorithm and value of its first "#ALG=" or "&ALG=" part, the value up
// to the next "&" ("#sha256=HEX&egg=NAME-VERSION"); "" when there is none.
func linkHash(linkURL string) (alg, value string) {
	if m := pipHashRe.FindStringSubmatch(linkURL); m != nil {
		return m[1], m[2]
	}
	return "", ""
}

// setDigest sets the digest f is checked against: the one pip checks. pip
// checks a download against one digest only (Link.hash, the first of
// {**listed, **from_link}): the first a PEP 691 page lists for the file
// (its value replaced by the URL's digest of the same algorithm), or else
// the URL's. The scan can vouch for the bytes pip installs only when it
// checks that same digest, so a file whose first digest is not a sha256
// gets none and fails its download (DigestError.PipChecks says why).
func (f *file) setDigest(linkURL string, listed orderedHashes) {
	alg, value := linkHash(linkURL)
	if len(listed.keys) > 0 {
		first := listed.keys[0]
		if first != alg {
			alg, value = first, listed.values[first]
		}
	}
	if alg == "sha256" {
		f.sha256 = strings.ToLower(clip.String(value, hashClip))
	} else {
		f.pipChecks = clip.String(alg, 64)
	}
}

// newFile is the file a PEP 691 page lists at ref, with the digests the
// page gives it. It is named by its URL, as pip names it (file.name),
// whatever name the page gives it.
func newFile(base *url.URL, filename, ref string, listed orderedHashes) file {
	f := file{filename: filename}
	var linkURL string
	f.url, linkURL, f.urlErr = resolveRef(base, ref)
	f.egg = eggFragment(linkURL)
	f.setDigest(linkURL, listed)
	f.name(ref)
	return f
}

// name names f, linked at ref, as pip names it (urlFilename). A file whose
// URL is unusable keeps the page's name, and the name pip gives it goes to
// refName (pip re-escapes what Go's parser refuses, as "%zz", and takes
// the file), so that choosing it by either fails loudly rather than the
// file being left out of its release.
func (f *file) name(ref string) {
	if f.urlErr == nil {
		f.filename = urlFilename(f.url)
		return
	}
	ref = pyURLClean(ref)
	f.egg = eggFragment(ref) // pip reads it from the URL pip makes of ref
	ref, _, _ = strings.Cut(ref, "#")
	ref, _, _ = strings.Cut(ref, "?")
	if i := strings.IndexByte(ref, ':'); i > 0 && isSchemeName(ref[:i]) {
		ref = ref[i+1:]
	}
	if rest, ok := strings.CutPrefix(ref, "//"); ok {
		// An authority: the path begins at its end ("x//name" is a path).
		_, ref, _ = strings.Cut(rest, "/")
	}
	f.refName = pathFilename(ref)
}

// pyURLClean is ref as pip joins it (Python's urlsplit): without tabs and
// line breaks anywhere, and without controls and spaces at its start
// (" /f/x.whl" is "/f/x.whl" to pip, a path under the page to Go).
func pyURLClean(ref string) string {
	return strings.TrimLeft(pyURLUnsafe.Replace(ref), c0OrSpace)
}

// escapeRawPath is ref (cleaned: pyURLClean) with the bytes of its path
// that Go's URL parser keeps only decoded (controls, space, '"', '<',
// '>', '\\', '^', '`', '{', '|', '}', non-ASCII) escaped, as pip quotes
// them. With one of them in a path, Go forgets how the rest was spelled
// ("%2F" becomes a '/', "%3B" a ';', "%2e%2e" a dot segment), which pip's
// joining and quoting tell apart.
func escapeRawPath(ref string) string {
	start := 0
	if i := strings.IndexByte(ref, ':'); i > 0 && isSchemeName(ref[:i]) {
		start = i + 1
	}
	if strings.HasPrefix(ref[start:], "//") {
		j := strings.IndexAny(ref[start+2:], "/?#")
		if j < 0 {
			return ref
		}
		start += 2 + j
	}
	end := len(ref)
	if j := strings.IndexAny(ref[start:], "?#"); j >= 0 {
		end = start + j
	}
	path := ref[start:end]
	if !strings.ContainsFunc(path, func(r rune) bool { return r < 0x21 || r >= 0x7f || strings.ContainsRune("\"<>\\^`{|}", r) }) {
		return ref
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.WriteString(ref[:start])
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x21 || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(path[i])
	}
	b.WriteString(ref[end:])
	return b.String()
}

// pyURLUnsafe removes what Python's urlsplit removes from a URL.
var pyURLUnsafe = strings.NewReplacer("\t", "", "\r", "", "\n", "")

// c0OrSpace is what Python's urlsplit strips from a URL's start.
const c0OrSpace = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\v\f\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "

// isSchemeName reports whether s is a URL scheme to Python's urlsplit: an
// ASCII letter, then letters, digits, '+', '-' or '.'.
func isSchemeName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// urlFilename is the name pip gives the file at the absolute URL raw
// (Link.filename): the last segment of its path (pathFilename); "" when
// nothing is left. pip never reads a page's anchor text or a JSON
// "filename": a page naming a file otherwise than its URL would have the
// scan pick other files of a release than pip installs.
func urlFilename(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return pathFilename(u.EscapedPath())
}

// pathFilename is Link.filename of pip 23.2.1 for the escaped URL path p:
// p unescaped, its trailing slashes cut, its last segment, unescaped once
// more, each time as Python's urllib.parse.unquote does (pyUnquote): an
// escape of "%2F" ends up a segment boundary, one of "%252F" a '/' in the
// name.
func pathFilename(p string) string {
	p = strings.TrimRight(pyUnquote(p), "/")
	return pyUnquote(p[strings.LastIndexByte(p, '/')+1:])
}

// pyUnquote is Python's urllib.parse.unquote: each "%XX" of two hex digits
// is that byte, any other '%' stays as it is (url.PathUnescape refuses
// the whole string: one malformed escape left "1%2E0" undecoded where pip
// reads "1.0"), and bytes that are not UTF-8 become U+FFFD as Python
// replaces them (pyDecodeUTF8).
func pyUnquote(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return pyDecodeUTF8(b)
}

// pyDecodeUTF8 is Python's b.decode("utf-8", "replace"): each maximal
// subpart of an ill-formed sequence is one U+FFFD ("%FF%FF" two, "%E2%82"
// one), where strings.ToValidUTF8 makes one of a whole run: pip requests
// "/f/%EF%BF%BD%EF%BF%BD/w.whl" for "/f/%FF%FF/w.whl".
func pyDecodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	s := make([]byte, 0, 3*len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r != utf8.RuneError || n > 1 {
			s = append(s, b[:n]...)
			b = b[n:]
			continue
		}
		need, lo, hi := 0, byte(0x80), byte(0xBF)
		switch c := b[0]; {
		case 0xC2 <= c && c <= 0xDF:
			need = 1
		case c == 0xE0:
			need, lo = 2, 0xA0
		case c == 0xED:
			need, hi = 2, 0x9F
		case 0xE1 <= c && c <= 0xEF:
			need = 2
		case c == 0xF0:
			need, lo = 3, 0x90
		case c == 0xF4:
			need, hi = 3, 0x8F
		case 0xF1 <= c && c <= 0xF3:
			need = 3
		}
		for ; need > 0 && n < len(b) && lo <= b[n] && b[n] <= hi; need-- {
			n, lo, hi = n+1, 0x80, 0xBF
		}
		s = append(s, "\uFFFD"...)
		b = b[n:]
	}
	return string(s)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// simpleJSONFile is a files[] entry of a PEP 691 project page: its
// "filename", "url", "hashes" and "yanked" (see UnmarshalJSON).
type simpleJSONFile struct {
	Filename string
	URL      string
	Hashes   orderedHashes
	Yanked   json.RawMessage
}

// UnmarshalJSON reads a files[] entry as Python's json module (pip's)
// reads it: keys matched exactly, the last of duplicates winning.
// encoding/json matches a struct's keys ignoring case, so a "URL" or
// "Hashes" that pip ignores would replace the "url" or "hashes" pip reads:
// the scan would fetch and verify a file pip never installs.
func (e *simpleJSONFile) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*e = simpleJSONFile{Yanked: m["yanked"]}
	for _, member := range []struct {
		key string
		v   any
	}{{"filename", &e.Filename}, {"url", &e.URL}, {"hashes", &e.Hashes}} {
		if raw, ok := m[member.key]; ok {
			if err := json.Unmarshal(raw, member.v); err != nil {
				return fmt.Errorf("%s: %w", member.key, err)
			}
		}
	}
	return nil
}

// orderedHashes is a PEP 691 file's "hashes" object as Python reads it:
// its keys in the order of their first appearance, each with the value of
// its last (a dict from json.loads). pip checks the first only.
type orderedHashes struct {
	keys   []string
	values map[string]string
}

// UnmarshalJSON reads a JSON object of strings (or null: no digests).
func (h *orderedHashes) UnmarshalJSON(b []byte) error {
	*h = orderedHashes{}
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	h.values = map[string]string{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string) // a JSON object's keys are strings
		var v string
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if _, ok := h.values[key]; !ok {
			h.keys = append(h.keys, key)
		}
		h.values[key] = v
	}
	return nil
}

// sha256Only is the digests of a file listed with one sha256, or none.
func sha256Only(sum string) orderedHashes {
	if sum == "" {
		return orderedHashes{}
	}
	return orderedHashes{keys: []string{"sha256"}, values: map[string]string{"sha256": sum}}
}

// parseSimpleJSON reads a PEP 691 JSON project page
// (application/vnd.pypi.simple.v1+json). It streams files[] so that at most
// maxFiles entries are decoded.
func parseSimpleJSON(body []byte, page *url.URL, maxFiles int) ([]file, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var (
		files      []file
		apiVersion string
		sawFiles   bool
	)
	err := eachMember(dec, func(key string) (bool, error) {
		switch key {
		case "meta":
			var meta struct {
				APIVersion string `json:"api-version"`
			}
			if err := dec.Decode(&meta); err != nil {
				return true, fmt.Errorf("malformed meta: %w", err)
			}
			apiVersion = meta.APIVersion
		case "files":
			if sawFiles {
				return true, errors.New("files given twice")
			}
			sawFiles = true
			if err := expectDelim(dec, '['); err != nil {
				return true, err
			}
			for dec.More() {
				if len(files) >= maxFiles {
					return true, errTooManyFiles
				}
				var e simpleJSONFile
				if err := dec.Decode(&e); err != nil {
					return true, fmt.Errorf("malformed files[%d]: %w", len(files), err)
				}
				f := newFile(page, e.Filename, e.URL, e.Hashes)
				var err error
				if f.yanked, f.yankedReason, err = yankedJSON(e.Yanked); err != nil {
					return true, fmt.Errorf("files[%d]: %w", len(files), err)
				}
				files = append(files, f)
			}
			return true, expectDelim(dec, ']')
		default:
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	major, _, _ := strings.Cut(apiVersion, ".")
	if major != "1" {
		return nil, fmt.Errorf("unsupported meta.api-version %q (want 1.x)", clip.String(apiVersion, 64))
	}
	return files, nil
}

var errTooManyFiles = errors.New("too many files")

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("malformed JSON: want %q", string(want))
	}
	return nil
}

// skipValue reads the next value and drops it.
func skipValue(dec *json.Decoder) error {
	var skip json.RawMessage
	if err := dec.Decode(&skip); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	return nil
}

// endDocument reads the top-level object's closing brace and checks that
// nothing follows it.
func endDocument(dec *json.Decoder) error {
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}

// eachMember reads one JSON object, the whole document: for each member it
// calls member with the key, which reads the value and says so, or returns
// false to have the value skipped. Nothing may follow the object.
func eachMember(dec *json.Decoder, member func(key string) (bool, error)) error {
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("malformed JSON: %w", err)
		}
		key, _ := tok.(string)
		read, err := member(key)
		if err != nil {
			return err
		}
		if !read {
			if err := skipValue(dec); err != nil {
				return err
			}
		}
	}
	return endDocument(dec)
}

// yankedJSON reads PEP 691's yanked: absent, null, false or "" (not
// yanked, as pip reads them), true, or a reason string (yanked).
func yankedJSON(raw json.RawMessage) (bool, string, error) {
	if len(raw) == 0 {
		return false, "", nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return false, "", fmt.Errorf("malformed yanked: %w", err)
	}
	switch y := v.(type) {
	case nil:
		return false, "", nil
	case bool:
		return y, "", nil
	case string:
		// pip holds a file yanked when the value is true to Python: ""
		// is not yanked (Link.from_json).
		return y != "", clip.String(y, reasonClip), nil
	}
	return false, "", errors.New("yanked is neither a boolean nor a string")
}

// parseSimpleHTML reads a PEP 503 HTML project page: each <a href> is a
// file, named by the anchor's text (or, when that is empty, the last path
// segment of its URL), with an optional #sha256= fragment and an optional
// data-yanked attribute (PEP 592; its value is the reason). The first
// <base href> changes the base of relative URLs. At most maxFiles anchors
// are read.
//
// The page is read as pip reads it (Python's html.parser): only script and
// style content is text, so anchors in <textarea>, <title>, <noscript> and
// the like are files. Markup the two parsers split differently is a
// "malformed HTML" error, never read one way: a comment, script or style
// that Python ends elsewhere, NUL bytes, "<![" sections, '<' in a tag
// outside quoted values, quotes in an end tag, an unfinished tag at the end.
func parseSimpleHTML(body []byte, page *url.URL, maxFiles int) ([]file, error) {
	if bytes.IndexByte(body, 0) >= 0 {
		return nil, errors.New("malformed HTML: a NUL byte (pip's parser and this one read the tags around it differently)")
	}
	z := html.NewTokenizer(bytes.NewReader(body))
	base := page
	baseSeen := false
	var (
		files []file
		cur   *anchor
		text  strings.Builder
		pos   int // offset in body of the next token
		// cdata is set inside script or style content, which ends at pyEnd
		// for Python's parser (-1: never).
		cdata bool
		pyEnd int
		// Python's ends of comments, scripts and styles.
		commentEnds = pyEnds{re: pyCommentClose}
		cdataEnds   = map[string]*pyEnds{"script": {re: pyCDATAClose["script"]}, "style": {re: pyCDATAClose["style"]}}
	)
	finish := func() {
		if cur == nil {
			return
		}
		name := strings.TrimSpace(text.String())
		files = append(files, cur.file(base, name))
		cur = nil
		text.Reset()
	}
	for {
		tt := z.Next()
		raw := z.Raw()
		start := pos
		pos += len(raw)
		switch tt {
		case html.ErrorToken:
			if err := z.Err(); err != io.EOF {
				return nil, fmt.Errorf("malformed HTML: %w", err)
			}
			if cdata && pyEnd >= 0 {
				return nil, endsElsewhere(body[start:])
			}
			if len(raw) > 1 && bytes.ContainsAny(raw[1:], "<>") {
				// An unfinished tag this parser drops to the end; Python's
				// may end it early, at a '>' this one reads as quoted
				// (`<a href="/f/x.whl"'='>`), and read tags after it.
				return nil, fmt.Errorf("malformed HTML: an unfinished tag at the end: %q", clip.String(string(raw), 128))
			}
			finish()
			return files, nil
		case html.StartTagToken, html.SelfClosingTagToken:
			if err := checkTag(raw); err != nil {
				return nil, err
			}
			tag, _ := z.TagName()
			if tt == html.StartTagToken && (string(tag) == "script" || string(tag) == "style") {
				cdata, pyEnd = true, cdataEnds[string(tag)].next(body, pos)
			} else {
				// Python's parser (pip's) reads only script and style
				// content as text, and not after <script/>: anchors in
				// <textarea>, <title>, <noscript>, <plaintext> ... are
				// links to pip.
				z.NextIsNotRawText()
			}
			switch string(tag) {
			case "base":
				if baseSeen {
					break
				}
				as, err := pyAttrs(raw)
				if err != nil {
					return nil, err
				}
				// pip takes the first <base> whose first href has a value
				// (HTMLLinkParser.get_href; "<base href>" is None).
				href, ok := as.first("href")
				if !ok || !href.hasVal {
					break
				}
				baseSeen = true
				// pip joins links to an absolute base as written
				// (urljoin): the last segment of its path is dropped,
				// even "..", which Go's Parse resolves first.
				clean := escapeRawPath(pyURLClean(href.val))
				if u, err := url.Parse(clean); err == nil && u.Scheme != "" && u.Host != "" {
					base = u
				} else if u, err := page.Parse(clean); err == nil {
					base = u
				}
			case "a":
				finish()
				as, err := pyAttrs(raw)
				if err != nil {
					return nil, err
				}
				// pip reads an anchor's attributes as a dict: the last of
				// duplicates wins, an empty href is no link, and a
				// data-yanked without a value (None) is not yanked.
				href, _ := as.last("href")
				if href.val == "" {
					continue
				}
				if len(files) >= maxFiles {
					return nil, errTooManyFiles
				}
				yanked, _ := as.last("data-yanked")
				cur = &anchor{href: href.val, yanked: yanked.hasVal, reason: yanked.val}
				if tt == html.SelfClosingTagToken {
					finish()
				}
			}
		case html.CommentToken:
			if bytes.HasPrefix(raw, []byte("<![")) {
				return nil, errors.New("malformed HTML: a \"<![\" section (pip's parser reads it to \"]]>\", this one to the first '>')")
			}
			// A "<!--" comment must end where Python's parser ends it
			// (or never, for Python: the rest is hidden from pip).
			if bytes.HasPrefix(raw, []byte("<!--")) {
				if end := commentEnds.next(body, start+4); end >= 0 && end != pos {
					return nil, endsElsewhere(raw)
				}
			}
		case html.TextToken:
			if cur != nil && text.Len() <= MaxFilenameLen {
				text.Write(z.Text())
			}
		case html.EndTagToken:
			// Python's parser ends an end tag at the first '>', quotes or
			// not.
			if bytes.ContainsAny(raw[1:], "<\"'") {
				return nil, fmt.Errorf("malformed HTML: '<' or a quote inside the end tag %q", clip.String(string(raw), 128))
			}
			if cdata && pyEnd >= 0 && pyEnd != pos {
				return nil, endsElsewhere(body[start:pos])
			}
			cdata = false
			if tag, _ := z.TagName(); string(tag) == "a" {
				finish()
			}
		}
	}
}

// pySpace is Python's \s in a str pattern (its str.isspace()).
const pySpace = `[` + pySpaceSet + `]`

// pySpaceSet is pySpace without its brackets, for negated classes.
const pySpaceSet = `\t\n\v\f\r\x1c-\x1f\x{85}\p{Z}`

// Where Python's HTML parser (pip's) ends a comment and script or style
// content: "--\s*>" and "</\s*script\s*>" (case-insensitive). The HTML5
// tokenizer ends them only at "-->" (or "--!>") and "</script" followed
// by a space, '/' or '>'.
var (
	pyCommentClose = regexp.MustCompile(`--` + pySpace + `*>`)
	pyCDATAClose   = map[string]*regexp.Regexp{
		"script": regexp.MustCompile(`(?i)</` + pySpace + `*script` + pySpace + `*>`),
		"style":  regexp.MustCompile(`(?i)</` + pySpace + `*style` + pySpace + `*>`),
	}
)

// pyEnds finds where Python's parser ends comments (or script or style
// content) of one page: the end of the first match of re at or after an
// offset. Offsets only grow, so a match (or its absence) found once
// answers every later search it lies beyond: each page is searched about
// once, whatever the number of comments.
type pyEnds struct {
	re   *regexp.Regexp
	done bool // a search was made:
	from int  // it started here
	mat  int  // and its match starts here
	end  int  // and ends here; both -1 when none
}

// next returns the end offset of the first match at or after from, or -1.
func (p *pyEnds) next(body []byte, from int) int {
	if p.done && p.from <= from && (p.end < 0 || p.mat >= from) {
		return p.end
	}
	p.from, p.done = from, true
	loc := p.re.FindIndex(body[from:])
	if loc == nil {
		p.end, p.mat = -1, -1
		return -1
	}
	p.mat, p.end = from+loc[0], from+loc[1]
	return p.end
}

// endsElsewhere is the error for a comment, script or style (text, as in
// the page) that pip's parser (Python's) ends elsewhere than this one:
// earlier ("-- >", "</ script>"), and pip reads what follows as markup,
// links included; or later ("<!-->", "--!>"), and this parser reads markup
// pip does not (a <script> that hides later links). The page is refused
// rather than read otherwise than pip reads it.
func endsElsewhere(text []byte) error {
	return fmt.Errorf("malformed HTML: a comment or script that pip's parser ends elsewhere than this one: %q", clip.String(string(text), 128))
}

// checkTag refuses a tag (raw, as in the page) holding a '<' other than in
// a quoted attribute value ("<a href=x<a href=y>"): pip's parser and this
// one split such text into tags differently.
func checkTag(raw []byte) error {
	for i := 1; i < len(raw); i++ {
		switch raw[i] {
		case '=':
			j := i + 1
			for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t' || raw[j] == '\n' || raw[j] == '\r' || raw[j] == '\f') {
				j++
			}
			if j < len(raw) && (raw[j] == '"' || raw[j] == '\'') {
				end := bytes.IndexByte(raw[j+1:], raw[j])
				if end < 0 {
					break
				}
				i = j + 1 + end
			}
		case '<':
			return fmt.Errorf("malformed HTML: '<' inside the tag %q", clip.String(string(raw), 128))
		}
	}
	return nil
}

type anchor struct {
	href   string
	yanked bool
	reason string
}

// file is the file an anchor links, named by its URL as pip names it
// (file.name); its text names it only when the URL is unusable.
func (a *anchor) file(base *url.URL, name string) file {
	f := file{yanked: a.yanked, yankedReason: clip.String(a.reason, reasonClip)}
	var linkURL string
	f.url, linkURL, f.urlErr = resolveRef(base, a.href)
	f.egg = eggFragment(linkURL)
	f.setDigest(linkURL, orderedHashes{})
	f.filename = name
	f.name(a.href)
	return f
}

// tagAttr is one attribute of a tag, its value decoded; hasVal is false
// for one without a value ("<a href>": pip's None).
type tagAttr struct {
	key, val string
	hasVal   bool
}

// tagAttrs are a tag's attributes in order, duplicates kept.
type tagAttrs []tagAttr

// first returns the first attribute named key.
func (as tagAttrs) first(key string) (tagAttr, bool) {
	for _, a := range as {
		if a.key == key {
			return a, true
		}
	}
	return tagAttr{}, false
}

// last returns the last attribute named key.
func (as tagAttrs) last(key string) (tagAttr, bool) {
	for i := len(as) - 1; i >= 0; i-- {
		if as[i].key == key {
			return as[i], true
		}
	}
	return tagAttr{}, false
}

// pyAttrs returns the attributes of the tag raw (a start tag as in the
// page) as Python's html.parser (pip's) reads them, in order and
// duplicates kept: pip takes an anchor's last href, where the tokenizer
// keeps only the first of duplicates. Keys are lower-cased as Unicode
// ("data-yan\u212Aed", a Kelvin sign, is data-yanked to pip; the tokenizer
// folds only ASCII); values are decoded as Python decodes them
// (pyUnescape: the tokenizer leaves "&copy=x" and "&regionx" as they are
// in an attribute, where Python reads "©=x" and "®ionx", and the scan
// would fetch another URL than pip).
func pyAttrs(raw []byte) (tagAttrs, error) {
	s := string(raw)
	k := 1 // tagfind_tolerant: the name, then white space and '/' not before '>'
	for k < len(s) && !strings.ContainsRune("\t\n\r\f />\x00", rune(s[k])) {
		k++
	}
	k += pySep(s[k:])
	var as tagAttrs
	for k < len(s) {
		// attrfind_tolerant, which follows a quote, white space or '/'.
		if r, _ := utf8.DecodeLastRuneInString(s[:k]); !strings.ContainsRune(`'"/`, r) && !isPySpace(r) {
			break
		}
		m := pyAttrFind.FindStringSubmatchIndex(s[k:])
		if m == nil {
			break
		}
		a := tagAttr{key: strings.ToLower(s[k+m[2] : k+m[3]])}
		if m[4] >= 0 {
			a.hasVal = true
			a.val = s[k+m[6] : k+m[7]]
			if m[6] == m[7] && strings.ContainsAny(s[k+m[7]:min(k+m[7]+1, len(s))], `'"`) {
				// A quote without an end: Python's parser reads the tag
				// otherwise.
				return nil, fmt.Errorf("malformed HTML: an unended quote in the tag %q", clip.String(s, 128))
			}
			if len(a.val) >= 2 && (a.val[0] == '\'' || a.val[0] == '"') && a.val[len(a.val)-1] == a.val[0] {
				a.val = a.val[1 : len(a.val)-1]
			}
			var err error
			if a.val, err = pyUnescape(a.val); err != nil {
				return nil, fmt.Errorf("malformed HTML: %w in the tag %q", err, clip.String(s, 128))
			}
		}
		as = append(as, a)
		k += m[1]
		k += pySep(s[k:])
	}
	return as, nil
}

// pyAttrFind is Python's html.parser (3.11) attrfind_tolerant, which
// splits a start tag into attributes, without its look-around (checked
// in pyAttrs) and the separators that follow (pySep).
var pyAttrFind = regexp.MustCompile(`^([^/>` + pySpaceSet + `][^/=>` + pySpaceSet + `]*)(` + pySpace + `*=+` + pySpace + `*('[^']*'|"[^"]*"|[^>'"` + pySpaceSet + `][^>` + pySpaceSet + `]*|))?`)

// pySep is the length of Python's separator "(?:\s|/(?!>))*" at the
// start of s.
func pySep(s string) int {
	n := 0
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		if r == '/' && !strings.HasPrefix(s[n+1:], ">") || isPySpace(r) {
			n += size
			continue
		}
		break
	}
	return n
}

// pyNumRef is a numeric character reference as Python's html.unescape
// reads one.
var pyNumRef = regexp.MustCompile(`&#(?:[0-9]+|[xX][0-9a-fA-F]+)`)

// pyUnescape is Python's html.unescape. Outside numeric references to
// code points Python drops (controls, noncharacters), which are refused,
// it decodes as html.UnescapeString does (checked against Python 3.11 on
// 200,000 random strings): the longest named reference, with or without
// ';', as text outside attributes.
func pyUnescape(s string) (string, error) {
	if !strings.Contains(s, "&") {
		return s, nil
	}
	for _, ref := range pyNumRef.FindAllString(s, -1) {
		digits, base := ref[2:], 10
		if digits[0] == 'x' || digits[0] == 'X' {
			digits, base = digits[1:], 16
		}
		n, err := strconv.ParseUint(digits, base, 32)
		if err == nil && pyDropsCodePoint(n) {
			return "", fmt.Errorf("the character reference %q, which pip's parser drops", clip.String(ref, 32))
		}
	}
	return html.UnescapeString(s), nil
}

// pyDropsCodePoint reports whether Python's html.unescape decodes a
// numeric reference to n as nothing.
func pyDropsCodePoint(n uint64) bool {
	return 0x1 <= n && n <= 0x8 || n == 0xb || 0xe <= n && n <= 0x1f || n == 0x7f ||
		0xfdd0 <= n && n <= 0xfdef || n <= 0x10ffff && n&0xfffe == 0xfffe
}

// jsonAPIFile is a file entry of the PyPI JSON API.
type jsonAPIFile struct {
	Filename string `json:"filename"`
	URL      string `json:"url"`
	Digests  struct {
		SHA256 string `json:"sha256"`
	} `json:"digests"`
	Yanked       bool    `json:"yanked"`
	YankedReason *string `json:"yanked_reason"`
}

// parseJSONAPI reads a PyPI JSON API answer (/pypi/NAME/json or
// /pypi/NAME/VERSION/json): the files of every release in releases, or, when
// it has none (a per-version document), urls[]. It streams both so that at
// most maxFiles file entries of each are decoded, however many the answer
// holds; more in either is errTooManyFiles (urls[] repeats the latest
// release's files: they do not count against releases' bound). A release
// or top-level key given twice is an error.
func parseJSONAPI(body []byte, page *url.URL, maxFiles int) ([]file, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var (
		urls             []file
		releases         = map[string][]file{}
		nURLs, nRels     int // entries decoded, apart: only one of the two is used
		sawURLs, sawRels bool
	)
	// list reads a JSON array of file entries (null: none), counting them
	// in *n.
	list := func(what string, n *int) ([]file, error) {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("malformed JSON: %w", err)
		}
		if tok == nil {
			return nil, nil
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return nil, fmt.Errorf("malformed JSON: %s is not a list", what)
		}
		var files []file
		for dec.More() {
			if *n >= maxFiles {
				return nil, errTooManyFiles
			}
			(*n)++
			var e jsonAPIFile
			if err := dec.Decode(&e); err != nil {
				return nil, fmt.Errorf("malformed JSON: %w", err)
			}
			f := newFile(page, e.Filename, e.URL, sha256Only(e.Digests.SHA256))
			f.yanked = e.Yanked
			if e.YankedReason != nil && e.Yanked {
				f.yankedReason = clip.String(*e.YankedReason, reasonClip)
			}
			files = append(files, f)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return nil, err
		}
		return files, nil
	}
	err := eachMember(dec, func(key string) (bool, error) {
		var err error
		switch {
		case strings.EqualFold(key, "urls"):
			if sawURLs {
				return true, errors.New("urls given twice")
			}
			sawURLs = true
			urls, err = list("urls", &nURLs)
			return true, err
		case strings.EqualFold(key, "releases"):
			if sawRels {
				return true, errors.New("releases given twice")
			}
			sawRels = true
			tok, err := dec.Token()
			if err != nil {
				return true, fmt.Errorf("malformed JSON: %w", err)
			}
			if tok == nil {
				return true, nil
			}
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return true, errors.New("malformed JSON: releases is not an object")
			}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return true, fmt.Errorf("malformed JSON: %w", err)
				}
				ver, _ := tok.(string)
				if _, dup := releases[ver]; dup {
					return true, fmt.Errorf("release %q given twice", clip.String(ver, 64))
				}
				files, err := list("a release", &nRels)
				if err != nil {
					return true, err
				}
				releases[ver] = files
			}
			return true, expectDelim(dec, '}')
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if len(releases) == 0 {
		return urls, nil
	}
	// File order follows the sorted release keys so that a release's
	// distributions come out the same every time.
	var files []file
	for _, k := range slices.Sorted(maps.Keys(releases)) {
		files = append(files, releases[k]...)
	}
	return files, nil
}
