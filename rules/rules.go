// Package rules loads YARA rule sets (a directory of .yara/.yar files, one
// file, or a Dragonfly `GET /rules` JSON document) and compiles them the way the
// Dragonfly clients do: all sources joined with "\n" into one rule set, so rule
// identifiers are unique across files.
package rules

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/score"
	yara "github.com/hillu/go-yara/v4"
)

// Set is a rule set as the API serves it: a hash (the rules commit) and the
// YARA sources by file stem.
type Set struct {
	Hash    string            `json:"hash"`
	Sources map[string]string `json:"rules"`
	// Files names the file each source was read from, by stem, as Load found
	// it ("rules/zzz.yar"): messages about a source name it (FileName). It is
	// not part of the document the API serves nor of the hash.
	Files map[string]string `json:"-"`
}

// FileName is the name messages give the source of stem: the file it was
// read from, or, for sources without a file (an API document), the stem with
// ".yara".
func (s Set) FileName(stem string) string {
	if f, ok := s.Files[stem]; ok && f != "" {
		return f
	}
	return stem + ".yara"
}

// Stems returns the set's file stems in the order they are compiled.
func (s Set) Stems() []string {
	stems := make([]string, 0, len(s.Sources))
	for k := range s.Sources {
		stems = append(stems, k)
	}
	slices.Sort(stems)
	return stems
}

// ContentHash is a stable 40-hex-digit digest of the sources, used as the
// hash of rule sets that do not come with one (local files).
func ContentHash(sources map[string]string) string {
	h := sha1.New()
	for _, stem := range (Set{Sources: sources}).Stems() {
		fmt.Fprintf(h, "%d:%s\x00%d:%s\x00", len(stem), stem, len(sources[stem]), sources[stem])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ParseJSON decodes a `GET /rules` document.
func ParseJSON(data []byte) (Set, error) {
	var s Set
	if err := json.Unmarshal(data, &s); err != nil {
		return Set{}, fmt.Errorf("rules document: %w", err)
	}
	if s.Sources == nil {
		return Set{}, errors.New("rules document: no \"rules\" object")
	}
	if s.Hash == "" {
		s.Hash = ContentHash(s.Sources)
	}
	return s, nil
}

// MaxSourceBytes bounds one rule file or GET /rules document read by Load:
// the largest response the API client reads.
const MaxSourceBytes = 64 << 20

// Load reads a rule set from path: a directory (every *.yara and *.yar file in
// it, not recursive), a single YARA file, or a JSON document as served by
// `GET /rules` (recognised by its first non-space byte '{' and a .json suffix
// or a "rules" object).
func Load(path string) (Set, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Set{}, fmt.Errorf("rules: %w", err)
	}
	if fi.IsDir() {
		return loadDir(path)
	}
	// A named file may be a pipe (--rules <(...)): it is read, bounded.
	data, err := bound.ReadFile(path, MaxSourceBytes, nil)
	if err != nil {
		return Set{}, readError(path, err)
	}
	if strings.HasSuffix(path, ".json") || looksLikeJSON(data) {
		s, err := ParseJSON(data)
		if err != nil {
			return Set{}, fmt.Errorf("%s: %w", path, err)
		}
		return s, nil
	}
	st := stem(filepath.Base(path))
	src := map[string]string{st: string(data)}
	return Set{Hash: ContentHash(src), Sources: src, Files: map[string]string{st: path}}, nil
}

// readError names the file in a read error that does not name it already
// (a *fs.PathError does).
func readError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("rules: %w", err)
	}
	return fmt.Errorf("rules: %s: %w", clip.Path(path), err)
}

func looksLikeJSON(data []byte) bool {
	t := strings.TrimSpace(string(data[:min(len(data), 64)]))
	return strings.HasPrefix(t, "{")
}

func loadDir(dir string) (Set, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Set{}, fmt.Errorf("rules: %w", err)
	}
	src, files := map[string]string{}, map[string]string{}
	for _, e := range ents {
		name := e.Name()
		ext := filepath.Ext(name)
		if e.IsDir() || (ext != ".yara" && ext != ".yar") {
			continue
		}
		// A file of the directory must be a regular file (or a link to
		// one): a FIFO would block and a device never end.
		p := filepath.Join(dir, name)
		data, err := bound.ReadFile(p, MaxSourceBytes, bound.Regular)
		if err != nil {
			return Set{}, readError(p, err)
		}
		st := stem(name)
		if _, dup := src[st]; dup {
			return Set{}, fmt.Errorf("rules: %s: two files with stem %q (%s and %s)", dir, st, files[st], filepath.Join(dir, name))
		}
		src[st] = string(data)
		files[st] = filepath.Join(dir, name)
	}
	if len(src) == 0 {
		return Set{}, fmt.Errorf("rules: no .yara or .yar files in %s", dir)
	}
	return Set{Hash: ContentHash(src), Sources: src, Files: files}, nil
}

func stem(name string) string { return strings.TrimSuffix(name, filepath.Ext(name)) }

// Compiled is a compiled rule set with the scoring metadata of its rules. It
// is immutable and safe to share between goroutines; each goroutine scans with
// its own yara.Scanner.
type Compiled struct {
	hash    string
	yara    *yara.Rules
	meta    map[string]score.Rule
	desc    map[string]string // "description" metadata, by rule
	src     Set               // the set compiled (Source)
	count   int
	public  int             // rules not private: those a scan can report
	private map[string]bool // the private rules, by name
	globals []string        // the global rules, in order
	elapsed time.Duration
}

// CompileError is a rule set that does not compile. Each message names the
// source file (Set.FileName: the file it was read from, else its stem with
// ".yara") and the line within it.
type CompileError struct {
	// Messages are "FILE:LINE: TEXT", one per libyara error.
	Messages []string
	// Diagnostics are the same errors, structured.
	Diagnostics []Diagnostic
}

func (e *CompileError) Error() string {
	if len(e.Messages) == 1 {
		return "rules do not compile: " + e.Messages[0]
	}
	return fmt.Sprintf("rules do not compile: %s (and %d more)", e.Messages[0], len(e.Messages)-1)
}

// Compile compiles a set as one rule set: the sources in stem order joined with
// "\n", like the Dragonfly clients do. libyara's warnings are dropped (Check
// returns them).
func Compile(s Set) (*Compiled, error) {
	c, _, err := compile(s)
	return c, err
}

// maxMessage bounds the text of one libyara message (it quotes identifiers
// and strings from the sources).
const maxMessage = 1 << 10

// compile compiles s like Compile and also returns libyara's warnings and,
// when it fails, its errors, each located in its source file.
func compile(s Set) (*Compiled, []Diagnostic, error) {
	start := time.Now()
	stems := s.Stems()
	if len(stems) == 0 {
		return nil, nil, &CompileError{Messages: []string{"empty rule set"}, Diagnostics: []Diagnostic{{Severity: Error, Text: "empty rule set"}}}
	}
	text, lm := s.join(stems)
	yr, msgs, err := yaraCompile(text)
	var diags, errs []Diagnostic
	for _, m := range msgs {
		if m.warning {
			diags = append(diags, lm.diagnostic(Warning, m))
		} else {
			errs = append(errs, lm.diagnostic(Error, m))
		}
	}
	var srcErr *sourceError
	if errors.As(err, &srcErr) || len(errs) > 0 {
		ce := &CompileError{Diagnostics: errs}
		if len(ce.Diagnostics) == 0 {
			ce.Diagnostics = append(ce.Diagnostics, Diagnostic{Severity: Error, Text: clip.String(err.Error(), maxMessage)})
		}
		for _, d := range ce.Diagnostics {
			ce.Messages = append(ce.Messages, d.location()+d.Text)
		}
		return nil, append(diags, ce.Diagnostics...), ce
	}
	if err != nil {
		return nil, diags, fmt.Errorf("yara rules: %w", err)
	}
	cr := &Compiled{hash: s.Hash, yara: yr, meta: map[string]score.Rule{}, desc: map[string]string{}, private: map[string]bool{}, src: s}
	if cr.hash == "" {
		cr.hash = ContentHash(s.Sources)
	}
	for _, r := range yr.GetRules() {
		cr.meta[r.Identifier()] = ruleMeta(r.Identifier(), r.Metas())
		if d, ok := description(r.Metas()); ok {
			cr.desc[r.Identifier()] = d
		}
		cr.count++
		if r.IsGlobal() {
			cr.globals = append(cr.globals, r.Identifier())
		}
		if r.IsPrivate() {
			cr.private[r.Identifier()] = true
		} else {
			cr.public++
		}
	}
	cr.elapsed = time.Since(start)
	return cr, diags, nil
}

// join returns the sources of stems joined with "\n", as the clients compile
// them, and the map from lines of the joined text back to the sources.
func (s Set) join(stems []string) (string, lineMap) {
	lm := lineMap{first: make([]int, len(stems)), files: make([]string, len(stems)), stems: stems}
	var b strings.Builder
	line := 1
	for i, st := range stems {
		if i > 0 {
			b.WriteByte('\n')
		}
		lm.first[i] = line
		lm.files[i] = s.FileName(st)
		b.WriteString(s.Sources[st])
		line += strings.Count(s.Sources[st], "\n") + 1
	}
	return b.String(), lm
}

// lineMap maps a line of the joined sources to its source: first[i] is the
// line of the joined text where source i starts.
type lineMap struct {
	first []int
	files []string
	stems []string
}

// locate returns the source index and the line within it of a line of the
// joined text; -1 for a line outside every source (libyara's 0: none).
func (lm lineMap) locate(line int) (int, int) {
	if line <= 0 || len(lm.first) == 0 {
		return -1, 0
	}
	i := sourceAt(lm.first, line)
	return i, line - lm.first[i] + 1
}

// sourceAt returns the index of the source in which line of the joined text
// lies, given the first line of each source.
func sourceAt(firstLine []int, line int) int {
	i, found := slices.BinarySearch(firstLine, line)
	if !found {
		i--
	}
	return max(i, 0)
}

// diagnostic turns a libyara message into a diagnostic located in its file.
func (lm lineMap) diagnostic(sev Severity, m yaraMessage) Diagnostic {
	// m.rule is set for warnings only: an error's rule may be half built.
	d := Diagnostic{Severity: sev, Text: clip.Escaped(m.text, maxMessage), Rule: m.rule}
	if i, line := lm.locate(m.line); i >= 0 {
		d.File, d.Stem, d.Line = lm.files[i], lm.stems[i], line
	}
	return d
}

// ruleMeta reads the scoring metadata: "weight" (an integer; anything else is
// 0) and "filetype" (a string split on each single space by
// score.ParseFiletypes, empty entries kept, as the reference client splits
// it; a filetype that is not a string is ignored). The first of each counts.
func ruleMeta(name string, metas []yara.Meta) score.Rule {
	r := score.Rule{Name: name}
	var seenW, seenF bool
	for _, m := range metas {
		switch m.Identifier {
		case "weight":
			if !seenW {
				seenW = true
				if v, ok := m.Value.(int); ok {
					r.Weight = int64(v)
				}
			}
		case "filetype":
			if !seenF {
				seenF = true
				if v, ok := m.Value.(string); ok {
					r.Filetypes = score.ParseFiletypes(v)
				}
			}
		}
	}
	return r
}

// description returns the first "description" metadata, if it is a string.
func description(metas []yara.Meta) (string, bool) {
	for _, m := range metas {
		if m.Identifier == "description" {
			v, ok := m.Value.(string)
			return v, ok
		}
	}
	return "", false
}

// Description returns the "description" metadata of the rule with
// identifier name ("" when it has none or it is not a string).
func (c *Compiled) Description(name string) string { return c.desc[name] }

// Hash is the rules commit this set was compiled from.
func (c *Compiled) Hash() string { return c.hash }

// Yara returns the compiled libyara rules.
func (c *Compiled) Yara() *yara.Rules { return c.yara }

// Rule returns the scoring metadata of the rule with identifier name.
func (c *Compiled) Rule(name string) (score.Rule, bool) {
	r, ok := c.meta[name]
	return r, ok
}

// Len is the number of rules.
func (c *Compiled) Len() int { return c.count }

// Private reports whether the rule named is private: YARA never reports a
// match of it, so no result may name it.
func (c *Compiled) Private(name string) bool { return c.private[name] }

// Globals are the global rules, in the order they are declared. Every
// source is compiled as one, in one namespace, so a file that one of them
// does not match matches no rule of the set: a global rule that is false
// (by mistake, or served by a hostile API) makes every release read clean,
// and nothing in the results tells. GlobalWarning says so.
func (c *Compiled) Globals() []string { return c.globals }

// GlobalWarning is what the coordinator and dragonfly scan say of a set
// holding global rules (see Globals), naming up to 8 of them; "" when it
// holds none.
func (c *Compiled) GlobalWarning() string {
	if len(c.globals) == 0 {
		return ""
	}
	names := make([]string, 0, 8)
	for _, g := range c.globals[:min(len(c.globals), 8)] {
		names = append(names, clip.String(g, 128))
	}
	more := ""
	if n := len(c.globals) - len(names); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	held := fmt.Sprintf("%d global rules", len(c.globals))
	if len(c.globals) == 1 {
		held = "1 global rule"
	}
	return fmt.Sprintf("the rule set holds %s (%s%s): a file one of them does not match matches no rule, so a global rule that is false makes every release read clean",
		held, strings.Join(names, ", "), more)
}

// Reportable is how many of the rules are not private: YARA reports no match
// of a private rule, so a set without one finds nothing (ErrNoRules).
func (c *Compiled) Reportable() int { return c.public }

// ErrNoRules is what a scanner of packages says of a set that compiled to
// no rule it can report (a file of comments only, an API serving an empty
// set, private rules only): scanning with it would find nothing, and every
// release would read clean.
// Compile accepts such a set (rules profile times one); the coordinator and
// dragonfly scan refuse it.
var ErrNoRules = errors.New("the rule set holds no rule: every release would read clean")

// CompileTime is how long compiling took.
func (c *Compiled) CompileTime() time.Duration { return c.elapsed }
