package rules

// Rule subsets: a rule set split into its rules, each with what it may depend
// on, so a scanner can compile and run only the rules a file needs.
//
// The split reads the sources the way libyara 4.2's lexer (libyara/lexer.l)
// reads them, over the same text Compile compiles (every source in stem
// order joined with "\n", so a comment or a rule may even run from one file
// into the next): comments, text strings with their escapes, regular
// expressions (in YARA "/" always starts one: division is "\"), hex strings
// (the lexer's own longest-match pattern, comments inside included),
// numbers, identifiers and keywords. On top of the tokens it follows the
// grammar's top level: imports, includes and rule declarations (modifiers,
// name, tags, meta, strings, condition). A rule may depend on
//   - every rule of the set its condition names: any identifier token of
//     the condition equal to a rule's name (a loop variable or a module
//     field that happens to share a rule's name counts too: the split errs
//     on the side of keeping a rule), and every rule whose name starts with
//     an identifier followed by "*" (rule-set wildcards);
//   - every global rule of the set (a false global rule makes every rule
//     false), with what those depend on.
// Modules are imported in a subset only where one of its rules names them.
// What the split cannot follow (an include, text libyara would not accept)
// makes Rules fail and Subset fall back to the whole set.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/score"
)

// RuleInfo is one rule of a set as its source declares it.
type RuleInfo struct {
	// Name is the rule identifier.
	Name string
	// Stem is the source (file stem) in which the declaration starts, and
	// Line the line of its first token (a modifier or "rule") in that
	// source, from 1.
	Stem string
	Line int
	// Private and Global are the rule's modifiers.
	Private, Global bool
	// Filetypes are the suffixes of the rule's first "filetype" metadata as
	// score.ParseFiletypes splits it (on each single space, empty entries
	// kept; libyara keeps a metadata string up to its first NUL byte), or nil
	// when the rule has none or its first is not a string: the rule counts
	// in every file. The scorer reads the same (see ruleMeta).
	Filetypes []string
	// Weight is the rule's first "weight" metadata when it is an integer,
	// else 0.
	Weight int64
	// Deps are the rules of the set other than global ones that the rule's
	// condition names (sorted, without duplicates): the rules whose outcome
	// its own may depend on, besides every global rule.
	Deps []string
	// Modules are the imported modules its condition names (sorted).
	Modules []string
}

// Rules returns every rule of the set in declaration order (the order
// libyara compiles them). It fails when the sources hold an include or text
// that libyara's lexer or grammar would refuse; the error names the source
// and line.
func (s Set) Rules() ([]RuleInfo, error) {
	p, err := splitSources(s)
	if err != nil {
		return nil, err
	}
	out := make([]RuleInfo, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.info
	}
	return out, nil
}

// Imports returns the modules the set imports, in order, without duplicates.
func (s Set) Imports() ([]string, error) {
	p, err := splitSources(s)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, im := range p.imports {
		if !slices.Contains(out, im.module) {
			out = append(out, im.module)
		}
	}
	return out, nil
}

// Subset returns a set holding only the named rules and every rule they may
// depend on (see RuleInfo.Deps; every global rule and what it depends on is
// always kept), with the imports those rules name. Every kept declaration
// stays in its source at its own line (what is left out becomes empty
// lines), so compile errors and RuleInfo lines read the same as in s. Its
// Hash is derived from s.Hash and the names of the rules it holds.
//
// Where the rules cannot be told apart (the sources do not split: an
// include, text libyara refuses) or the subset would hold every rule,
// Subset returns s itself. A name that is not a rule of s is an error.
func (s Set) Subset(names []string) (Set, error) {
	p, err := splitSources(s)
	if err != nil {
		return s, nil
	}
	keep := make([]bool, len(p.rules))
	for _, n := range names {
		i, ok := p.index[n]
		if !ok {
			return Set{}, fmt.Errorf("subset: no rule %q in the set", clip.String(n, 256))
		}
		keep[i] = true
	}
	for i, r := range p.rules {
		if r.info.Global {
			keep[i] = true
		}
	}
	p.close(keep)
	var held []string
	for i, k := range keep {
		if k {
			held = append(held, p.rules[i].info.Name)
		}
	}
	if len(held) == len(p.rules) {
		return s, nil
	}
	return p.subset(s, keep, held), nil
}

// profileBase returns what the profile of rule name is measured against:
// the rules its subset (Subset of name) holds other than name itself, less
// any global rule that names it, and what those depend on (a set without
// sources and with no hash: no rule at all). ok is false when name cannot
// be left out: a rule it depends on names it in turn.
func (s Set) profileBase(name string) (base Set, ok bool, err error) {
	p, err := splitSources(s)
	if err != nil {
		return Set{}, false, err
	}
	x, found := p.index[name]
	if !found {
		return Set{}, false, fmt.Errorf("subset: no rule %q in the set", clip.String(name, 256))
	}
	keep := make([]bool, len(p.rules))
	for _, d := range p.rules[x].deps {
		keep[d] = true
	}
	p.close(keep)
	if keep[x] {
		return Set{}, false, nil
	}
	for i, r := range p.rules {
		if !r.info.Global || i == x || keep[i] {
			continue
		}
		g := make([]bool, len(p.rules))
		g[i] = true
		p.close(g)
		if g[x] {
			continue // it names the rule: it goes with it
		}
		for j, k := range g {
			keep[j] = keep[j] || k
		}
	}
	var held []string
	for i, k := range keep {
		if k {
			held = append(held, p.rules[i].info.Name)
		}
	}
	if len(held) == 0 {
		return Set{}, true, nil
	}
	return p.subset(s, keep, held), true, nil
}

// Source is the set c was compiled from (its sources are shared, not
// copied: do not modify them).
func (c *Compiled) Source() Set { return c.src }

// SubsetHash is the hash of the subset of the set with hash parent holding
// the rules held (in any order).
func SubsetHash(parent string, held []string) string {
	names := slices.Clone(held)
	slices.Sort(names)
	h := sha256.New()
	fmt.Fprintf(h, "fleet rule subset\x00%d:%s\x00", len(parent), parent)
	for _, n := range names {
		fmt.Fprintf(h, "%d:%s\x00", len(n), n)
	}
	return hex.EncodeToString(h.Sum(nil))[:40]
}

// splitSet is a set split into declarations.
type splitSet struct {
	text    string // the sources joined as Compile joins them
	stems   []string
	files   []string // Set.FileName of each stem
	starts  []int    // byte offset of each stem's source in text
	lines   []int    // line of text at which each stem's source starts
	rules   []splitRule
	index   map[string]int
	imports []splitImport
}

type splitRule struct {
	info       RuleInfo
	start, end int   // byte span of the declaration in text
	deps       []int // indexes of the rules it names (not globals)
}

type splitImport struct {
	module     string
	start, end int
}

// close adds to keep every rule a kept rule depends on.
func (p *splitSet) close(keep []bool) {
	var stack []int
	for i, k := range keep {
		if k {
			stack = append(stack, i)
		}
	}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range p.rules[i].deps {
			if !keep[d] {
				keep[d] = true
				stack = append(stack, d)
			}
		}
	}
}

// subset builds the sources of the kept rules: each stem keeps its kept
// declarations (and the imports they name) in place, everything else
// reduced to its newlines.
func (p *splitSet) subset(parent Set, keep []bool, held []string) Set {
	modules := map[string]bool{}
	type span struct{ start, end int }
	var spans []span
	for i, k := range keep {
		if !k {
			continue
		}
		r := p.rules[i]
		spans = append(spans, span{r.start, r.end})
		for _, m := range r.info.Modules {
			modules[m] = true
		}
	}
	for _, im := range p.imports {
		if modules[im.module] {
			spans = append(spans, span{im.start, im.end})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	out := Set{Hash: SubsetHash(parent.Hash, held), Sources: map[string]string{}}
	for si, st := range p.stems {
		lo, hi := p.starts[si], len(p.text)
		if si+1 < len(p.stems) {
			hi = p.starts[si+1] - 1 // the "\n" joining the next source
		}
		var b strings.Builder
		pos := lo
		used := false
		for _, sp := range spans {
			s, e := max(sp.start, lo), min(sp.end, hi)
			if s >= e {
				continue
			}
			b.WriteString(strings.Repeat("\n", strings.Count(p.text[pos:s], "\n")))
			b.WriteString(p.text[s:e])
			pos = e
			used = true
		}
		if !used {
			continue
		}
		b.WriteString(strings.Repeat("\n", strings.Count(p.text[pos:hi], "\n")))
		out.Sources[st] = b.String()
		if f, ok := parent.Files[st]; ok {
			if out.Files == nil {
				out.Files = map[string]string{}
			}
			out.Files[st] = f
		}
	}
	return out
}

// SplitError is a set whose sources libyara's lexer or grammar would refuse
// (or that holds an include): Rules cannot split it.
type SplitError struct {
	// File names the source (Set.FileName) and Line the line in it.
	File string
	Line int
	Msg  string
}

func (e *SplitError) Error() string {
	return fmt.Sprintf("rules: %s:%d: %s", clip.Path(e.File), e.Line, e.Msg)
}

// splitSources splits the set's joined sources into declarations.
func splitSources(s Set) (*splitSet, error) {
	p := &splitSet{stems: s.Stems(), index: map[string]int{}}
	for _, st := range p.stems {
		p.files = append(p.files, s.FileName(st))
	}
	var b strings.Builder
	line := 1
	for i, st := range p.stems {
		if i > 0 {
			b.WriteByte('\n')
		}
		p.starts = append(p.starts, b.Len())
		p.lines = append(p.lines, line)
		b.WriteString(s.Sources[st])
		line += strings.Count(s.Sources[st], "\n") + 1
	}
	p.text = b.String()
	if len(p.stems) == 0 {
		return nil, errors.New("rules: empty rule set")
	}
	// libyara reads the text as a C string, up to its first NUL byte.
	lx := &yaraLexer{text: cText(p.text), line: 1}
	toks, err := lx.all()
	if err != nil {
		return nil, p.errorAt(lx.errLine, err.Error())
	}
	ps := &splitParser{p: p, toks: toks}
	if err := ps.top(); err != nil {
		return nil, err
	}
	ps.resolve()
	return p, nil
}

// errorAt is a SplitError at line of the joined text.
func (p *splitSet) errorAt(line int, msg string) *SplitError {
	i := indexAt(p.lines, line)
	return &SplitError{File: p.files[i], Line: line - p.lines[i] + 1, Msg: clip.String(msg, clip.Default)}
}

// Token kinds.
type lexKind uint8

const (
	lxIdent   lexKind = iota + 1 // identifier (not a keyword)
	lxKeyword                    // a keyword of lexer.l
	lxText                       // "text string" (val: the unescaped bytes)
	lxRegexp                     // /regexp/
	lxHex                        // { hex string }
	lxNumber                     // integer (val: the text)
	lxDouble                     // 1.5
	lxStrID                      // $a, $a*, #a, @a, !a
	lxIntFunc                    // uint8, int32be, ...
	lxOp                         // any other character or operator
	lxInclude                    // include "
)

type lexToken struct {
	kind       lexKind
	val        string
	start, end int // byte span
	line       int
}

// keywords are lexer.l's reserved words (libyara 4.2).
var yaraKeywords = map[string]bool{
	"private": true, "global": true, "rule": true, "meta": true, "strings": true, "ascii": true,
	"wide": true, "xor": true, "base64": true, "base64wide": true, "fullword": true, "nocase": true,
	"condition": true, "true": true, "false": true, "not": true, "and": true, "or": true, "at": true,
	"in": true, "of": true, "them": true, "for": true, "all": true, "any": true, "none": true,
	"entrypoint": true, "filesize": true, "matches": true, "contains": true, "startswith": true,
	"endswith": true, "icontains": true, "istartswith": true, "iendswith": true, "iequals": true,
	"import": true, "defined": true,
}

var (
	intFuncRe = regexp.MustCompile(`^u?int(8|16|32)(be)?$`)
	// hexStringRe is lexer.l's _HEX_STRING_ pattern (libyara 4.2.3), matched
	// longest-first like flex.
	hexStringRe = func() *regexp.Regexp {
		re := regexp.MustCompile(`^\{(?:(?:[a-fA-F0-9]|[ \-|?\[\]()\n\r\t]|/\*(?:/|\**[^*/])*\*+/)+|//.*)+\}`)
		re.Longest()
		return re
	}()
)

// yaraLexer tokenises YARA source as libyara 4.2's flex lexer does.
type yaraLexer struct {
	text    string
	pos     int
	line    int
	errLine int
}

func lexLetter(c byte) bool   { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func lexDigit(c byte) bool    { return c >= '0' && c <= '9' }
func lexIDChar(c byte) bool   { return lexLetter(c) || lexDigit(c) || c == '_' }
func lexHexDigit(c byte) bool { return lexDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
func lexOctDigit(c byte) bool { return c >= '0' && c <= '7' }
func (l *yaraLexer) peek(k int) byte {
	if l.pos+k < len(l.text) {
		return l.text[l.pos+k]
	}
	return 0
}

func (l *yaraLexer) fail(line int, format string, args ...any) error {
	l.errLine = line
	return fmt.Errorf(format, args...)
}

// all returns every token of the text.
func (l *yaraLexer) all() ([]lexToken, error) {
	var out []lexToken
	for {
		t, ok, err := l.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		out = append(out, t)
	}
}

// advance moves to end, counting lines.
func (l *yaraLexer) advance(end int) {
	l.line += strings.Count(l.text[l.pos:end], "\n")
	l.pos = end
}

func (l *yaraLexer) next() (lexToken, bool, error) {
	for l.pos < len(l.text) {
		c := l.text[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.advance(l.pos + 1)
			continue
		case c == '/' && l.peek(1) == '*':
			end := strings.Index(l.text[l.pos+2:], "*/")
			if end < 0 {
				// flex ends the input in the middle of a comment, string
				// or regexp without an error.
				l.advance(len(l.text))
				return lexToken{}, false, nil
			}
			l.advance(l.pos + 2 + end + 2)
			continue
		case c == '/' && l.peek(1) == '/':
			end := strings.IndexByte(l.text[l.pos:], '\n')
			if end < 0 {
				end = len(l.text) - l.pos
			}
			l.advance(l.pos + end)
			continue
		}
		break
	}
	if l.pos >= len(l.text) {
		return lexToken{}, false, nil
	}
	start, line := l.pos, l.line
	tok := func(k lexKind, end int, val string) (lexToken, bool, error) {
		l.advance(end)
		return lexToken{kind: k, val: val, start: start, end: end, line: line}, true, nil
	}
	c := l.text[l.pos]
	switch {
	case c == '"':
		return l.textString()
	case c == '/':
		return l.regexp()
	case c == '{':
		if loc := hexStringRe.FindStringIndex(l.text[l.pos:]); loc != nil {
			return tok(lxHex, l.pos+loc[1], l.text[l.pos:l.pos+loc[1]])
		}
		return tok(lxOp, l.pos+1, "{")
	case c == '$' || c == '#' || c == '@' || c == '!':
		if c == '!' && l.peek(1) == '=' {
			return tok(lxOp, l.pos+2, "!=")
		}
		e := l.pos + 1
		for e < len(l.text) && lexIDChar(l.text[e]) {
			e++
		}
		if c == '$' && e < len(l.text) && l.text[e] == '*' {
			e++
		}
		return tok(lxStrID, e, l.text[l.pos:e])
	case lexLetter(c) || c == '_':
		e := l.pos + 1
		for e < len(l.text) && lexIDChar(l.text[e]) {
			e++
		}
		w := l.text[l.pos:e]
		switch {
		case w == "include" && l.includeFollows(e):
			return tok(lxInclude, e, w)
		case yaraKeywords[w]:
			return tok(lxKeyword, e, w)
		case intFuncRe.MatchString(w):
			return tok(lxIntFunc, e, w)
		}
		if len(w) > 128 {
			return lexToken{}, false, l.fail(line, "identifier too long")
		}
		return tok(lxIdent, e, w)
	case lexDigit(c):
		return l.number()
	}
	for _, op := range []string{"..", "<=", ">=", "==", "!=", "<<", ">>"} {
		if strings.HasPrefix(l.text[l.pos:], op) {
			return tok(lxOp, l.pos+2, op)
		}
	}
	if c < 32 || c >= 127 {
		return lexToken{}, false, l.fail(line, "non-ascii character")
	}
	return tok(lxOp, l.pos+1, string(c))
}

// includeFollows reports whether `include` at end-len is followed by
// [ \t]+" (lexer.l's include pattern).
func (l *yaraLexer) includeFollows(e int) bool {
	i := e
	for i < len(l.text) && (l.text[i] == ' ' || l.text[i] == '\t') {
		i++
	}
	return i > e && i < len(l.text) && l.text[i] == '"'
}

// literal reads the literal opened at l.pos (on line) up to its closing
// byte and returns the closing byte's index. escape is called at each
// backslash that has a byte after it and returns how many bytes the escape
// takes; plain with each other byte. A literal cut by the end of the text
// is dropped (ok false, no error: the lexer advances to the end); a raw
// newline in it is an error ("unterminated " + what).
func (l *yaraLexer) literal(line int, closing byte, what string, escape func(i int) (int, error), plain func(c byte)) (end int, ok bool, err error) {
	i := l.pos + 1
	for {
		switch {
		case i >= len(l.text):
			l.advance(i)
			return 0, false, nil
		case l.text[i] == '\n':
			return 0, false, l.fail(line, "unterminated %s", what)
		case l.text[i] == closing:
			return i, true, nil
		case l.text[i] == '\\':
			if i+1 >= len(l.text) {
				l.advance(len(l.text))
				return 0, false, nil
			}
			n, err := escape(i)
			if err != nil {
				return 0, false, err
			}
			i += n
		default:
			plain(l.text[i])
			i++
		}
	}
}

// textString reads a "..." string: escapes \t \r \n \" \\ \xHH; anything
// else after a backslash, and a raw newline, are errors.
func (l *yaraLexer) textString() (lexToken, bool, error) {
	start, line := l.pos, l.line
	var val strings.Builder
	end, ok, err := l.literal(line, '"', "string", func(i int) (int, error) {
		switch l.text[i+1] {
		case 't':
			val.WriteByte('\t')
		case 'r':
			val.WriteByte('\r')
		case 'n':
			val.WriteByte('\n')
		case '"':
			val.WriteByte('"')
		case '\\':
			val.WriteByte('\\')
		case 'x':
			if i+3 < len(l.text) && lexHexDigit(l.text[i+2]) && lexHexDigit(l.text[i+3]) {
				v, _ := strconv.ParseUint(l.text[i+2:i+4], 16, 8)
				val.WriteByte(byte(v))
				return 4, nil
			}
			return 0, l.fail(line, "illegal escape sequence")
		default:
			return 0, l.fail(line, "illegal escape sequence")
		}
		return 2, nil
	}, func(c byte) { val.WriteByte(c) })
	if !ok {
		return lexToken{}, false, err
	}
	l.advance(end + 1)
	return lexToken{kind: lxText, val: val.String(), start: start, end: end + 1, line: line}, true, nil
}

// regexp reads a /regexp/ with its i and s flags; an escaped character
// (\/ included) never ends it.
func (l *yaraLexer) regexp() (lexToken, bool, error) {
	start, line := l.pos, l.line
	end, ok, err := l.literal(line, '/', "regular expression", func(i int) (int, error) {
		if l.text[i+1] == '\n' {
			return 0, l.fail(line, "malformed regular expression")
		}
		return 2, nil
	}, func(byte) {})
	if !ok {
		return lexToken{}, false, err
	}
	if end == l.pos+1 {
		return lexToken{}, false, l.fail(line, "empty regular expression")
	}
	e := end + 1
	if e < len(l.text) && l.text[e] == 'i' {
		e++
	}
	if e < len(l.text) && l.text[e] == 's' {
		e++
	}
	l.advance(e)
	return lexToken{kind: lxRegexp, val: l.text[start:e], start: start, end: e, line: line}, true, nil
}

// number reads 0x.., 0o.., digits with an optional KB or MB, or a double.
func (l *yaraLexer) number() (lexToken, bool, error) {
	start, line := l.pos, l.line
	t := l.text
	e := l.pos
	switch {
	case t[e] == '0' && l.peek(1) == 'x' && lexHexDigit(l.peek(2)):
		e += 2
		for e < len(t) && lexHexDigit(t[e]) {
			e++
		}
	case t[e] == '0' && l.peek(1) == 'o' && lexOctDigit(l.peek(2)):
		e += 2
		for e < len(t) && lexOctDigit(t[e]) {
			e++
		}
	default:
		for e < len(t) && lexDigit(t[e]) {
			e++
		}
		if e+1 < len(t) && t[e] == '.' && lexDigit(t[e+1]) {
			e++
			for e < len(t) && lexDigit(t[e]) {
				e++
			}
			l.advance(e)
			return lexToken{kind: lxDouble, val: t[start:e], start: start, end: e, line: line}, true, nil
		}
		if strings.HasPrefix(t[e:], "KB") || strings.HasPrefix(t[e:], "MB") {
			e += 2
		}
	}
	l.advance(e)
	return lexToken{kind: lxNumber, val: t[start:e], start: start, end: e, line: line}, true, nil
}

// lexNumber is a _NUMBER_ token's value as lexer.l computes it; ok is
// false on overflow (libyara fails to compile).
func lexNumber(s string) (int64, bool) {
	switch {
	case strings.HasPrefix(s, "0x"):
		v, err := strconv.ParseInt(s[2:], 16, 64)
		return v, err == nil
	case strings.HasPrefix(s, "0o"):
		v, err := strconv.ParseInt(s[2:], 8, 64)
		return v, err == nil
	}
	mul := int64(1)
	if strings.HasSuffix(s, "KB") {
		mul, s = 1024, s[:len(s)-2]
	} else if strings.HasSuffix(s, "MB") {
		mul, s = 1<<20, s[:len(s)-2]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > (1<<63-1)/mul {
		return 0, false
	}
	return v * mul, true
}

// splitParser follows the grammar's top level over the tokens.
type splitParser struct {
	p    *splitSet
	toks []lexToken
	i    int
	// conds holds, per rule, the identifiers its condition names, and
	// wild the prefixes of identifiers followed by "*".
	conds [][]string
	wild  [][]string
}

func (ps *splitParser) peek() *lexToken {
	if ps.i < len(ps.toks) {
		return &ps.toks[ps.i]
	}
	return nil
}

func (ps *splitParser) errorf(t *lexToken, format string, args ...any) error {
	line := 1
	if t != nil {
		line = t.line
	} else if len(ps.toks) > 0 {
		line = ps.toks[len(ps.toks)-1].line
	}
	return ps.p.errorAt(line, fmt.Sprintf(format, args...))
}

// expect consumes a token of kind k (and value v, if not empty).
func (ps *splitParser) expect(k lexKind, v string) (*lexToken, error) {
	t := ps.peek()
	if t == nil || t.kind != k || (v != "" && t.val != v) {
		want := v
		if want == "" {
			want = map[lexKind]string{lxIdent: "an identifier", lxText: "a string"}[k]
		}
		if t == nil {
			return nil, ps.errorf(t, "syntax error: end of rules, want %s", want)
		}
		return nil, ps.errorf(t, "syntax error: unexpected %q, want %s", clip.String(t.val, 64), want)
	}
	ps.i++
	return t, nil
}

func (ps *splitParser) top() error {
	for ps.peek() != nil {
		t := ps.peek()
		switch {
		case t.kind == lxKeyword && t.val == "import":
			ps.i++
			m, err := ps.expect(lxText, "")
			if err != nil {
				return err
			}
			ps.p.imports = append(ps.p.imports, splitImport{module: cText(m.val), start: t.start, end: m.end})
		case t.kind == lxInclude:
			return ps.errorf(t, "include: the sources must not include files (includes are disabled)")
		case t.kind == lxKeyword && (t.val == "rule" || t.val == "private" || t.val == "global"):
			if err := ps.rule(); err != nil {
				return err
			}
		default:
			return ps.errorf(t, "syntax error: unexpected %q at the top level", clip.String(t.val, 64))
		}
	}
	return nil
}

// rule parses one declaration.
func (ps *splitParser) rule() error {
	first := ps.peek()
	var r splitRule
	r.start = first.start
	for t := ps.peek(); t != nil && t.kind == lxKeyword && (t.val == "private" || t.val == "global"); t = ps.peek() {
		if t.val == "private" {
			r.info.Private = true
		} else {
			r.info.Global = true
		}
		ps.i++
	}
	if _, err := ps.expect(lxKeyword, "rule"); err != nil {
		return err
	}
	name, err := ps.expect(lxIdent, "")
	if err != nil {
		return err
	}
	if _, dup := ps.p.index[name.val]; dup {
		return ps.errorf(name, "duplicated identifier %q", name.val)
	}
	r.info.Name = name.val
	si := indexAt(ps.p.starts, first.start)
	r.info.Stem = ps.p.stems[si]
	r.info.Line = first.line - ps.p.lines[si] + 1
	if t := ps.peek(); t != nil && t.kind == lxOp && t.val == ":" {
		ps.i++
		if _, err := ps.expect(lxIdent, ""); err != nil {
			return err
		}
		for t := ps.peek(); t != nil && t.kind == lxIdent; t = ps.peek() {
			ps.i++
		}
	}
	if _, err := ps.expect(lxOp, "{"); err != nil {
		return err
	}
	if t := ps.peek(); t != nil && t.kind == lxKeyword && t.val == "meta" {
		ps.i++
		if _, err := ps.expect(lxOp, ":"); err != nil {
			return err
		}
		if err := ps.metas(&r.info); err != nil {
			return err
		}
	}
	if t := ps.peek(); t != nil && t.kind == lxKeyword && t.val == "strings" {
		ps.i++
		if _, err := ps.expect(lxOp, ":"); err != nil {
			return err
		}
		// String declarations and modifiers (xor(..), base64("..")) up to
		// the condition: no token of them names a rule.
		for t := ps.peek(); t != nil && !(t.kind == lxKeyword && t.val == "condition"); t = ps.peek() {
			if t.kind == lxOp && (t.val == "{" || t.val == "}") {
				return ps.errorf(t, "syntax error: unexpected %q in strings", t.val)
			}
			ps.i++
		}
	}
	if _, err := ps.expect(lxKeyword, "condition"); err != nil {
		return err
	}
	if _, err := ps.expect(lxOp, ":"); err != nil {
		return err
	}
	var idents, wild []string
	n := 0
	for {
		t := ps.peek()
		if t == nil {
			return ps.errorf(t, "syntax error: rule %s has no closing brace", r.info.Name)
		}
		ps.i++
		if t.kind == lxOp && t.val == "}" {
			if n == 0 {
				return ps.errorf(t, "syntax error: empty condition")
			}
			r.end = t.end
			break
		}
		if t.kind == lxOp && t.val == "{" || t.kind == lxHex || t.kind == lxInclude {
			return ps.errorf(t, "syntax error: unexpected %q in a condition", clip.String(t.val, 64))
		}
		n++
		if t.kind == lxIdent {
			idents = append(idents, t.val)
			if nx := ps.peek(); nx != nil && nx.kind == lxOp && nx.val == "*" {
				wild = append(wild, t.val)
			}
		}
	}
	ps.p.index[r.info.Name] = len(ps.p.rules)
	ps.p.rules = append(ps.p.rules, r)
	ps.conds = append(ps.conds, idents)
	ps.wild = append(ps.wild, wild)
	return nil
}

// metas parses meta declarations: identifier = string | number | -number |
// true | false, up to strings or condition.
func (ps *splitParser) metas(info *RuleInfo) error {
	var seenW, seenF bool
	n := 0
	for {
		t := ps.peek()
		if t != nil && t.kind == lxKeyword && (t.val == "strings" || t.val == "condition") {
			if n == 0 {
				return ps.errorf(t, "syntax error: empty meta section")
			}
			return nil
		}
		key, err := ps.expect(lxIdent, "")
		if err != nil {
			return err
		}
		if _, err := ps.expect(lxOp, "="); err != nil {
			return err
		}
		v := ps.peek()
		if v == nil {
			return ps.errorf(v, "syntax error: meta %s has no value", key.val)
		}
		ps.i++
		var (
			str   string
			isStr bool
			num   int64
			isNum bool
		)
		switch {
		case v.kind == lxText:
			str, isStr = cText(v.val), true
		case v.kind == lxNumber:
			x, ok := lexNumber(v.val)
			if !ok {
				return ps.errorf(v, "integer overflow in %s", v.val)
			}
			num, isNum = x, true
		case v.kind == lxOp && v.val == "-":
			nt, err := ps.expect(lxNumber, "")
			if err != nil {
				return err
			}
			x, ok := lexNumber(nt.val)
			if !ok {
				return ps.errorf(nt, "integer overflow in %s", nt.val)
			}
			num, isNum = -x, true
		case v.kind == lxKeyword && (v.val == "true" || v.val == "false"):
		default:
			return ps.errorf(v, "syntax error: meta %s = %q", key.val, clip.String(v.val, 64))
		}
		switch key.val {
		case "weight":
			if !seenW {
				seenW = true
				if isNum {
					info.Weight = num
				}
			}
		case "filetype":
			if !seenF {
				seenF = true
				if isStr {
					info.Filetypes = score.ParseFiletypes(str)
				}
			}
		}
		n++
	}
}

// indexAt returns the index of the last of the ascending firsts that is at
// most x (0 when none is): the source in which a line or offset lies.
func indexAt(firsts []int, x int) int {
	i, found := slices.BinarySearch(firsts, x)
	if !found {
		i--
	}
	return max(i, 0)
}

// cText is a string as libyara keeps a metadata or module name: up to
// its first NUL byte.
func cText(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// resolve turns the identifiers each condition names into dependencies and
// module uses.
func (ps *splitParser) resolve() {
	p := ps.p
	modules := map[string]bool{}
	for _, im := range p.imports {
		modules[im.module] = true
	}
	for i := range p.rules {
		r := &p.rules[i]
		deps := map[int]bool{}
		mods := map[string]bool{}
		for _, id := range ps.conds[i] {
			if j, ok := p.index[id]; ok && j != i {
				deps[j] = true
			}
			if modules[id] {
				mods[id] = true
			}
		}
		for _, prefix := range ps.wild[i] {
			for j, o := range p.rules {
				if j != i && strings.HasPrefix(o.info.Name, prefix) {
					deps[j] = true
				}
			}
		}
		for j := range deps {
			if !p.rules[j].info.Global {
				r.info.Deps = append(r.info.Deps, p.rules[j].info.Name)
			}
			r.deps = append(r.deps, j)
		}
		slices.Sort(r.deps)
		slices.Sort(r.info.Deps)
		for m := range mods {
			r.info.Modules = append(r.info.Modules, m)
		}
		slices.Sort(r.info.Modules)
	}
}
