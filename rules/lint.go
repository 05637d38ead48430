package rules

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	yara "github.com/hillu/go-yara/v4"
)

// The metadata lint: what Dragonfly reads of a rule is its "weight" (an
// integer) and its "filetype" (suffixes split on each single space), and
// both fail quietly: a weight that is not an integer counts as 0, a filetype
// that is not a string is ignored, and an empty entry (a double, leading or
// trailing space) is a suffix of every path, so the rule counts in every
// file. The lint says so at the line of the metadata entry.
//
// libyara does not tell where a rule or its metadata is, so the sources are
// read by a small tokenizer (declarations): enough of the YARA grammar to
// find each rule's identifier and the line and value of its metadata
// entries, skipping comments, text strings, regular expressions and hex
// strings.

// maxValue bounds a metadata value quoted in a message.
const maxValue = 256

// metaValue is one metadata entry of a rule: its key, its value (a string,
// an int or a bool, as go-yara returns them) and its line (0: unknown).
type metaValue struct {
	key   string
	value any
	line  int
}

// lintRule returns the metadata warnings of one rule, found in file at line
// (the line of its "rule" keyword, for entries whose own line is unknown).
func lintRule(file, stem, name string, line int, metas []metaValue) []Diagnostic {
	var out []Diagnostic
	warn := func(m metaValue, format string, a ...any) {
		l := m.line
		if l == 0 {
			l = line
		}
		out = append(out, Diagnostic{File: file, Stem: stem, Line: l, Severity: Warning, Rule: name,
			Text: fmt.Sprintf("rule %s: ", showValue(name)) + fmt.Sprintf(format, a...)})
	}
	var weight, filetype *metaValue
	for i := range metas {
		m := metas[i]
		switch m.key {
		case "weight":
			if weight != nil {
				warn(m, "a second weight is ignored: Dragonfly reads the first (%s)", showValue(weight.value))
				continue
			}
			weight = &metas[i]
			if _, ok := m.value.(int); !ok {
				warn(m, "weight = %s is not an integer: Dragonfly counts the rule with weight 0", showValue(m.value))
			}
		case "filetype":
			if filetype != nil {
				warn(m, "a second filetype is ignored: Dragonfly reads the first (%s)", showValue(filetype.value))
				continue
			}
			filetype = &metas[i]
			v, ok := m.value.(string)
			if !ok {
				warn(m, "filetype = %s is not a string: Dragonfly ignores it and counts the rule in every file", showValue(m.value))
				continue
			}
			lintFiletype(v, func(format string, a ...any) { warn(m, format, a...) })
		}
	}
	return out
}

// lintFiletype checks a filetype string: empty entries and entries that
// look like a suffix without its dot.
func lintFiletype(v string, warn func(format string, a ...any)) {
	if v == "" {
		return // no suffix at all: every file, as without filetype
	}
	entries := strings.Split(v, " ")
	var where []string
	for i, e := range entries {
		if e != "" {
			continue
		}
		switch {
		case i == 0:
			where = append(where, "a leading space")
		case i == len(entries)-1:
			where = append(where, "a trailing space")
		default:
			where = append(where, "a double space")
		}
	}
	if len(where) > 0 {
		warn("filetype %s has an empty entry (%s): Dragonfly splits it on each single space, and an empty suffix ends every path, so the rule counts in every file",
			showValue(v), strings.Join(uniq(where), ", "))
	}
	for _, e := range entries {
		if e == "" || strings.ContainsAny(e, "./") || !extensions[strings.ToLower(e)] {
			continue
		}
		warn("filetype entry %s has no dot: it is a plain suffix, so it also matches paths such as %s; did you mean %s?",
			showValue(e), showValue("x"+e), showValue("."+e))
	}
}

// extensions are file name extensions that, written without their dot in a
// filetype, look like a typo (a file name such as PKG-INFO does not).
var extensions = map[string]bool{}

func init() {
	for _, e := range strings.Fields(`py pyw pyc pyo pyi pyx pxd pth txt cfg ini toml json yaml yml
		js mjs ts sh bash bat cmd ps1 vbs exe dll so dylib bin whl egg zip tar gz tgz bz2 xz
		md rst html htm xml csv c h cc cpp hpp rs go java jar class rb pl php lua`) {
		extensions[e] = true
	}
}

func uniq(s []string) []string {
	var out []string
	for _, x := range s {
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}

// showValue renders a metadata value as YARA source would, bounded.
func showValue(v any) string {
	switch v := v.(type) {
	case string:
		return clip.String(strconv.Quote(v), maxValue)
	case bool, int:
		return fmt.Sprint(v)
	}
	return clip.String(fmt.Sprint(v), maxValue)
}

// metasOf returns the metadata of a compiled rule, lines taken from its
// declaration when the declaration's entries line up with them.
func metasOf(ms []yara.Meta, d *ruleDecl) []metaValue {
	out := make([]metaValue, len(ms))
	lined := d != nil && len(d.metas) == len(ms)
	for i, m := range ms {
		if lined && d.metas[i].key != m.Identifier {
			lined = false
		}
	}
	for i, m := range ms {
		out[i] = metaValue{key: m.Identifier, value: m.Value}
		if lined {
			out[i].line = d.metas[i].line
		}
	}
	return out
}

// ruleDecl is a rule as the tokenizer found it in a source.
type ruleDecl struct {
	name  string
	line  int // of its identifier (where libyara reports a duplicate)
	metas []metaValue
}

// declarations returns the rules declared in a YARA source, in order.
func declarations(src string) []ruleDecl {
	toks := lintTokenize(src)
	var out []ruleDecl
	for i := 0; i < len(toks); i++ {
		if toks[i].kind != ltIdent || toks[i].text != "rule" || i+1 >= len(toks) || toks[i+1].kind != ltIdent {
			continue
		}
		d := ruleDecl{name: toks[i+1].text, line: toks[i+1].line}
		// Skip the tags to the body.
		j := i + 2
		for j < len(toks) && !toks[j].is("{") {
			j++
		}
		depth := 0
		for ; j < len(toks); j++ {
			t := toks[j]
			if t.is("{") {
				depth++
			} else if t.is("}") {
				depth--
				if depth == 0 {
					break
				}
			} else if t.kind == ltIdent && t.text == "meta" && j+1 < len(toks) && toks[j+1].is(":") {
				j = d.readMetas(toks, j+2) - 1
			}
		}
		out = append(out, d)
		i = j
	}
	return out
}

// readMetas reads "KEY = VALUE" entries from toks[j:] and returns the index
// of the first token after them.
func (d *ruleDecl) readMetas(toks []lintToken, j int) int {
	for j+2 < len(toks) && toks[j].kind == ltIdent && toks[j+1].is("=") {
		key, line := toks[j].text, toks[j].line
		v := toks[j+2]
		next := j + 3
		var value any
		switch {
		case v.kind == ltString:
			value = v.text
		case v.kind == ltNumber:
			value = parseInt(v.text, false)
		case v.is("-") && j+3 < len(toks) && toks[j+3].kind == ltNumber:
			value = parseInt(toks[j+3].text, true)
			next++
		case v.kind == ltIdent && (v.text == "true" || v.text == "false"):
			value = v.text == "true"
		default:
			return j
		}
		d.metas = append(d.metas, metaValue{key: key, value: value, line: line})
		j = next
	}
	return j
}

// parseInt reads a YARA integer literal (decimal, 0x hex, 0o octal, KB/MB
// suffixes); one it cannot read is kept as its text.
func parseInt(s string, neg bool) any {
	mul := int64(1)
	switch {
	case strings.HasSuffix(s, "KB"):
		mul, s = 1<<10, strings.TrimSuffix(s, "KB")
	case strings.HasSuffix(s, "MB"):
		mul, s = 1<<20, strings.TrimSuffix(s, "MB")
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return s
	}
	n *= mul
	if neg {
		n = -n
	}
	return int(n)
}

type lintTokKind int

const (
	ltPunct lintTokKind = iota
	ltIdent
	ltNumber
	ltString // a text string, decoded
	ltOther  // a regular expression or a hex string
)

type lintToken struct {
	kind lintTokKind
	text string
	line int
}

func (t lintToken) is(p string) bool { return t.kind == ltPunct && t.text == p }

// lintTokenize splits a YARA source into tokens. A '/' opens a regular
// expression (as in libyara's lexer), a '{' after "=" a hex string; an
// unterminated string, comment or regular expression ends the source.
func lintTokenize(src string) []lintToken {
	var toks []lintToken
	line := 1
	prev := func() lintToken {
		if len(toks) == 0 {
			return lintToken{}
		}
		return toks[len(toks)-1]
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return toks
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 4
		case c == '"':
			s, n, ok := readString(src[i:])
			if !ok {
				return toks
			}
			toks = append(toks, lintToken{ltString, s, line})
			i += n
		case c == '/':
			// YARA divides with '\': a '/' always opens a regular expression.
			j := i + 1
			for j < len(src) && src[j] != '/' && src[j] != '\n' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) || src[j] != '/' {
				return toks
			}
			toks = append(toks, lintToken{ltOther, "", line})
			i = j + 1
		case c == '{' && prev().is("="):
			end := strings.IndexByte(src[i:], '}')
			if end < 0 {
				return toks
			}
			toks = append(toks, lintToken{ltOther, "", line})
			line += strings.Count(src[i:i+end], "\n")
			i += end + 1
		case isIdentStart(c):
			j := i
			for j < len(src) && (isIdentStart(src[j]) || (src[j] >= '0' && src[j] <= '9')) {
				j++
			}
			toks = append(toks, lintToken{ltIdent, src[i:j], line})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (isIdentStart(src[j]) || (src[j] >= '0' && src[j] <= '9')) {
				j++
			}
			toks = append(toks, lintToken{ltNumber, src[i:j], line})
			i = j
		default:
			toks = append(toks, lintToken{ltPunct, string(c), line})
			i++
		}
	}
	return toks
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// readString decodes the text string at the start of s (its opening quote
// included) as YARA does (\", \\, \t, \n, \r, \xNN) and returns it and the
// bytes it took. A string does not span lines.
func readString(s string) (string, int, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, true
		case '\n':
			return "", 0, false
		case '\\':
			if i+1 >= len(s) {
				return "", 0, false
			}
			i++
			switch s[i] {
			case 't':
				b.WriteByte('\t')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 'x':
				if i+2 < len(s) {
					if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
						b.WriteByte(byte(v))
						i += 2
						continue
					}
				}
				b.WriteString(`\x`)
			default:
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}
