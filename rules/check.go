package rules

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/dragonfly-fleet/fleet/clip"
)

// Severity is how bad a diagnostic is.
type Severity int

const (
	// Warning: the set compiles, but something in it does not do what it
	// seems to (a libyara warning or a Dragonfly metadata lint).
	Warning Severity = iota
	// Error: the set does not compile.
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Diagnostic is one finding about a rule set, located in the file it is
// about.
type Diagnostic struct {
	// File is the source's name (Set.FileName): the file it was read from,
	// or its stem with ".yara". Empty when libyara gives no line.
	File string
	// Stem is the source's stem in the Set ("" with File).
	Stem string
	// Line is the line within File, from 1; 0 when unknown.
	Line     int
	Severity Severity
	// Rule is the identifier of the rule it is about, when known.
	Rule string
	// Text is the message, bounded (about 1 KiB of libyara text, metadata
	// values cut at 256 bytes).
	Text string
}

// String is the diagnostic as compilers print them: "FILE:LINE: warning: TEXT".
func (d Diagnostic) String() string {
	return d.location() + d.Severity.String() + ": " + d.Text
}

// location is "FILE:LINE: ", "FILE: " or "", the file name quoted when it
// is not printable (clip.Path): a source's name comes from a directory or a
// GET /rules document, and a terminal escape in it would act on the
// terminal that shows the line.
func (d Diagnostic) location() string {
	switch {
	case d.File == "":
		return ""
	case d.Line <= 0:
		return clip.Path(d.File) + ": "
	}
	return clip.Path(d.File) + ":" + strconv.Itoa(d.Line) + ": "
}

// Report is what Check found.
type Report struct {
	// Compiled is the compiled set; nil when it does not compile.
	Compiled *Compiled
	// Diagnostics are libyara's errors and warnings and the metadata lint
	// (see lint.go), by file in stem order, then by line.
	Diagnostics []Diagnostic
}

// Errors counts the error diagnostics.
func (r Report) Errors() int {
	n := 0
	for _, d := range r.Diagnostics {
		if d.Severity == Error {
			n++
		}
	}
	return n
}

// Check compiles s as Compile does and returns every libyara error and
// warning and every metadata lint, each naming its file and line. A set that
// does not compile is a Report with errors, not an error: the error is for
// trouble that is not the rules' (libyara could not make a compiler).
func Check(s Set) (Report, error) {
	cr, diags, err := compile(s)
	var ce *CompileError
	if err != nil && !errors.As(err, &ce) {
		return Report{}, err
	}
	stems := s.Stems()
	order := make(map[string]int, len(stems))
	type located struct {
		stem string
		decl ruleDecl
	}
	var all []located
	byName := map[string]located{}
	for i, st := range stems {
		order[st] = i
		for _, d := range declarations(s.Sources[st]) {
			l := located{st, d}
			all = append(all, l)
			if _, dup := byName[d.name]; !dup {
				byName[d.name] = l
			}
		}
	}

	// A duplicate identifier: libyara names the second; name the first.
	for i, d := range diags {
		if d.Severity != Error || d.File == "" {
			continue
		}
		for _, l := range all {
			first := byName[l.decl.name]
			if l.stem == d.Stem && l.decl.line == d.Line && (first.stem != l.stem || first.decl.line != l.decl.line) {
				diags[i].Text += fmt.Sprintf(" (rule %q is also declared at %s:%d)", l.decl.name, clip.Path(s.FileName(first.stem)), first.decl.line)
				break
			}
		}
	}

	if cr != nil {
		for _, r := range cr.yara.GetRules() {
			name := r.Identifier()
			l, ok := byName[name]
			var d *ruleDecl
			file, stem, line := "", "", 0
			if ok {
				d, stem, line = &l.decl, l.stem, l.decl.line
				file = s.FileName(stem)
			}
			diags = append(diags, lintRule(file, stem, name, line, metasOf(r.Metas(), d))...)
			if r.IsGlobal() {
				diags = append(diags, Diagnostic{File: file, Stem: stem, Line: line, Severity: Warning, Rule: name,
					Text: fmt.Sprintf("rule %s is global: a file it does not match matches no rule of the set (every file is compiled into one namespace), so if it is false every release reads clean", showValue(name))})
			}
		}
	} else {
		for _, l := range all {
			diags = append(diags, lintRule(s.FileName(l.stem), l.stem, l.decl.name, l.decl.line, l.decl.metas)...)
		}
	}

	slices.SortStableFunc(diags, func(a, b Diagnostic) int {
		if (a.File == "") != (b.File == "") {
			if a.File == "" {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(order[a.Stem], order[b.Stem]), cmp.Compare(a.Line, b.Line))
	})
	return Report{Compiled: cr, Diagnostics: diags}, nil
}
