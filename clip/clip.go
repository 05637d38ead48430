// Package clip bounds strings that come from untrusted input (archive member
// names, failure reasons, error texts, peer-supplied identifiers) before they
// enter a protocol message or a log line.
//
// A hostile archive can carry a member name of megabytes; escaped into an
// error text it grows several times. Everything derived from input is cut to a
// few KiB with a visible marker, so a single crafted name can neither exceed a
// message limit nor flood a log.
package clip

import (
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Path returns a file or entry name for a message: quoted (as strconv.Quote
// quotes, a Hidden rune escaped) when it holds a Hidden rune, a double
// quote or invalid UTF-8, and at most about Default bytes long either way. A cut name ends in
// "…[cut N bytes]", N counting the bytes of p not shown. Quoting goes rune by
// rune, so a huge name never costs more than the bound: quoting it whole
// first could take six bytes per byte.
func Path(p string) string {
	quote := !utf8.ValidString(p)
	for _, r := range p {
		if Hidden(r) || r == '"' {
			quote = true
			break
		}
	}
	if !quote {
		return String(p, Default)
	}
	return escape(p, Default, true)
}

// Escaped returns s for a message line: each Hidden rune, and each byte
// that is not UTF-8, escaped as strconv.QuoteToASCII escapes it
// (quotes are left as they are), at most about n bytes long (n <= 0 means
// Default), cut as Path cuts. Text from a C library or a peer that quotes
// its own input (libyara's `unknown module "NAME"`) can carry a terminal
// escape that would hide the line, or lines around it.
func Escaped(s string, n int) string {
	if n <= 0 {
		n = Default
	}
	plain := utf8.ValidString(s)
	for _, r := range s {
		if !plain || Hidden(r) {
			plain = false
			break
		}
	}
	if plain {
		return String(s, n)
	}
	return escape(s, n, false)
}

// Visible returns s as a terminal or a page may show it: each rune that is
// Hidden and each byte that is not UTF-8 escaped as strconv.QuoteToASCII
// escapes it (\x1b, \u202e, \u200b, \u3164, \xff), except the runes of
// keep (a newline, for a text of several lines); every other rune as it
// is. A name that differs from another by an invisible rune so reads
// differently, and no rune of s can move the cursor, recolour or retitle
// a terminal, or reorder what follows it. Unlike Escaped it does not cut:
// bound input-derived text first.
func Visible(s, keep string) string {
	show := func(r rune) bool { return !Hidden(r) || strings.ContainsRune(keep, r) }
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !show(r) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !show(r) {
			q := strconv.QuoteToASCII(s[i : i+size])
			b = append(b, q[1:len(q)-1]...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// Hidden reports whether r is a rune Visible escapes: one that is not
// printable (strconv.IsPrint: C0 and C1 controls, so the ESC of every
// escape sequence; bidi controls such as U+202E; zero-width and other
// format characters; line and paragraph separators), or one that
// strconv.IsPrint calls printable but that is drawn as nothing (Unicode's
// default-ignorable letters and marks: the combining grapheme joiner
// U+034F, the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, the Khmer
// inherent vowels; variation selectors), with which "w1\u3164" read as "w1".
func Hidden(r rune) bool {
	return !strconv.IsPrint(r) || r >= 0x300 && (unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) || unicode.Is(unicode.Variation_Selector, r))
}

// JSON returns valid JSON as a terminal may show it, meaning the same to a
// JSON reader: what encoding/json leaves raw and a terminal acts on or
// does not show, every Hidden rune past ASCII (C1 controls, U+009B being a
// CSI to some terminals; bidi controls, which reorder the line; line
// separators; zero-width characters and runes drawn as nothing) and DEL,
// becomes \uXXXX (a surrogate pair past U+FFFF), a byte that is not UTF-8
// \ufffd. Valid JSON holds such runes only inside strings, where the
// escape means the same. body itself is returned when nothing changes.
func JSON(body []byte) []byte {
	var out []byte
	for i := 0; i < len(body); {
		r, n := utf8.DecodeRune(body[i:])
		switch {
		case r == utf8.RuneError && n == 1:
		case r >= 0x7f && Hidden(r):
		default:
			if out != nil {
				out = append(out, body[i:i+n]...)
			}
			i += n
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(body)+16), body[:i]...)
		}
		if r1, r2 := utf16.EncodeRune(r); r1 != unicode.ReplacementChar {
			out = appendU(appendU(out, r1), r2)
		} else {
			out = appendU(out, r)
		}
		i += n
	}
	if out == nil {
		return body
	}
	return out
}

// appendU appends the JSON escape \uXXXX of r, at most U+FFFF.
func appendU(b []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(b, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
}

// escape is s with each Hidden rune and each byte that is not UTF-8
// escaped as strconv.QuoteToASCII escapes it, and, when quote, '"' and '\\'
// too (any other rune stays as it is), inside double quotes when quote, at most about n bytes. It goes rune by rune, so a huge
// input never costs more than the bound: quoting it whole first could take
// six bytes per byte.
func escape(s string, n int, quote bool) string {
	b := make([]byte, 0, min(len(s), n)+16)
	if quote {
		b = append(b, '"')
	}
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		q := s[i : i+size]
		switch {
		case r == utf8.RuneError && size == 1 || Hidden(r):
			q = strconv.QuoteToASCII(q)
			q = q[1 : len(q)-1]
		case quote:
			q = strconv.Quote(q)
			q = q[1 : len(q)-1]
		}
		if len(b)+len(q)+1 > n {
			break
		}
		b = append(b, q...)
		i += size
	}
	if quote {
		b = append(b, '"')
	}
	if i < len(s) {
		b = append(b, marker...)
		b = strconv.AppendInt(b, int64(len(s)-i), 10)
		b = append(b, " bytes]"...)
	}
	return string(b)
}

// Default is the bound for one input-derived string in a message or log line.
const Default = 2 << 10

// marker is appended to a cut string, followed by the count of bytes cut.
const marker = "…[cut "

// String returns s if it has at most n bytes; otherwise a prefix of s, cut at a
// rune boundary, followed by "…[cut N bytes]", the whole at most n bytes long
// (for n too small to hold the marker, the prefix alone). n <= 0 means Default.
func String(s string, n int) string { return cut(s, n, 0) }

// cut is String of s followed by more bytes that are not at hand (counted in
// the marker, never shown).
func cut(s string, n, more int) string {
	if n <= 0 {
		n = Default
	}
	if len(s) <= n && more == 0 {
		return s
	}
	// The marker's length depends on the count it carries; reserve enough
	// for any count of a string that fits in memory.
	room := n - len(marker) - len(" bytes]") - 20
	if room <= 0 {
		return prefix(s, n)
	}
	p := prefix(s, room)
	return p + marker + strconv.Itoa(len(s)+more-len(p)) + " bytes]"
}

// prefix returns the longest prefix of s of at most n bytes that does not end
// inside a UTF-8 sequence.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Line returns s as one line of text for a peer that stores it: every run
// of white space, control characters (NUL and line breaks included) and
// other non-printing runes folded into one space, invalid UTF-8 replaced by
// U+FFFD, no space at either end, then bounded as String bounds it. A text of
// nothing but such runes gives "": a caller that needs a text supplies its
// own. Reading stops once the line is far past n, so a huge input costs
// little more than the bound; the marker's count is then of the folded
// text's bytes not shown plus the input not read.
func Line(s string, n int) string {
	if n <= 0 {
		n = Default
	}
	var b strings.Builder
	b.Grow(min(len(s), n+utf8.UTFMax))
	space := false
	for i, r := range s {
		if b.Len() > n {
			// Enough to cut at n; the rest is counted as cut.
			return cut(b.String(), n, len(s)-i)
		}
		if r == utf8.RuneError || unicode.IsPrint(r) && r != ' ' {
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
			continue
		}
		space = true
	}
	return String(b.String(), n)
}

// Error returns err's text bounded by String(err.Error(), n); "" for nil.
func Error(err error, n int) string {
	if err == nil {
		return ""
	}
	return String(err.Error(), n)
}

// URL returns a URL as an error or a log line may show it: its user info,
// query and fragment, where credentials hide, each replaced by "[redacted]",
// and at most 256 bytes. s need not parse; a string without '@', '?' or '#'
// is only clipped. Where an '@' stands anywhere after the first '/', '?' or
// '#' past the scheme, it may close user info holding that separator (and
// more) unescaped (a base64 token: https://AbC/dE@host; https://u:12/a?b@host),
// so nothing past the scheme is shown: an '@' in a path, query or fragment
// costs the host and path in logs, never a credential.
func URL(s string) string {
	if !strings.ContainsAny(s, "@?#") {
		return String(s, 256)
	}
	// User info holding an unescaped '/', '?' or '#' (https://user:pa#ss@host,
	// https://user:12/ab@host): a parser ends the authority there and shows
	// the user and the start of the password as the host (and the rest as a
	// path, which parses). An '@' after the separator that ends the
	// authority may close such user info, or sit in the path, query or
	// fragment (?token=abc@def): either reading may be a secret, so nothing
	// past the scheme is shown. That holds for an '@' past a later '?' or
	// '#' too: https://host/a?b@c may be user info holding a '/' and a '?'
	// (https://user:12/ab?cd@host), which parses as host "user:12".
	start := 0
	if j := strings.Index(s, "://"); j >= 0 {
		start = j + len("://")
	} else if strings.HasPrefix(s, "//") {
		start = len("//")
	}
	rest := s[start:]
	if h := strings.IndexAny(rest, "/?#"); h >= 0 && strings.Contains(rest[h:], "@") {
		return String(s[:start]+"[redacted]", 256)
	}
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i] + "[redacted]"
		}
		if i := strings.LastIndex(s, "@"); i >= 0 {
			start := 0
			if j := strings.Index(s, "://"); j >= 0 && j < i {
				start = j + len("://")
			}
			s = s[:start] + "[redacted]" + s[i:]
		}
		return String(s, 256)
	}
	user, query, frag := u.User != nil, u.RawQuery != "" || u.ForceQuery, u.Fragment != ""
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	out := u.String()
	if rest, ok := strings.CutPrefix(out, u.Scheme+"://"); ok && user {
		out = u.Scheme + "://[redacted]@" + rest
	}
	if query {
		out += "?[redacted]"
	}
	if frag {
		out += "#[redacted]"
	}
	return String(out, 256)
}
