package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Group names used in corpus.list.
const (
	groupMain = "main" // repacked into an sdist and a wheel of the corpus
	groupMega = "mega" // merged into the one synthesised big wheel
)

// debRef is one line of corpus.list: a Debian package pinned to a version
// and the SHA256 of its .deb.
type debRef struct {
	Pkg     string
	Version string
	SHA256  string // lowercase hex, or "-" when not yet resolved
	Groups  []string
	Line    int
}

func (d debRef) in(group string) bool {
	for _, g := range d.Groups {
		if g == group {
			return true
		}
	}
	return false
}

// ListError reports a malformed corpus.list line.
type ListError struct {
	Line int
	Msg  string
}

func (e *ListError) Error() string { return fmt.Sprintf("corpus.list:%d: %s", e.Line, e.Msg) }

var (
	pkgRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	verRE = regexp.MustCompile(`^[0-9A-Za-z.+~:-]+$`)
	shaRE = regexp.MustCompile(`^([0-9a-f]{64}|-)$`)
)

// parseList reads corpus.list: "pkg version sha256 groups" per line, where
// groups is a comma-separated subset of main,mega; '#' starts a comment.
func parseList(r io.Reader) ([]debRef, error) {
	var out []debRef
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 {
			return nil, &ListError{Line: n, Msg: "want: package version sha256 groups"}
		}
		d := debRef{Pkg: f[0], Version: f[1], SHA256: f[2], Groups: strings.Split(f[3], ","), Line: n}
		switch {
		case !pkgRE.MatchString(d.Pkg):
			return nil, &ListError{Line: n, Msg: "bad package name " + d.Pkg}
		case !verRE.MatchString(d.Version):
			return nil, &ListError{Line: n, Msg: "bad version " + d.Version}
		case !shaRE.MatchString(d.SHA256):
			return nil, &ListError{Line: n, Msg: "bad sha256 " + d.SHA256}
		}
		for _, g := range d.Groups {
			if g != groupMain && g != groupMega {
				return nil, &ListError{Line: n, Msg: "unknown group " + g}
			}
		}
		if prev, ok := seen[d.Pkg]; ok {
			return nil, &ListError{Line: n, Msg: fmt.Sprintf("%s already listed on line %d", d.Pkg, prev)}
		}
		seen[d.Pkg] = n
		out = append(out, d)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read list: %w", err)
	}
	return out, nil
}

// projectName turns a Debian package name into the PyPI-style project name
// used in file names: "python3-ruamel.yaml" -> "ruamel_yaml" (PEP 427/625
// escaping: runs of -_. become one underscore, lower case).
func projectName(pkg string) string {
	s := strings.TrimPrefix(pkg, "python3-")
	var b strings.Builder
	sep := false
	for _, r := range strings.ToLower(s) {
		if r == '-' || r == '_' || r == '.' || r == '+' {
			sep = true
			continue
		}
		if sep && b.Len() > 0 {
			b.WriteByte('_')
		}
		sep = false
		b.WriteRune(r)
	}
	return b.String()
}

// projectVersion turns a Debian version into an upstream-looking version:
// "1:1.24.2-1+deb12u1" -> "1.24.2", "1.29.27+repack-1" -> "1.29.27".
func projectVersion(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v = v[:i]
	}
	if i := strings.IndexAny(v, "+~"); i >= 0 {
		v = v[:i]
	}
	var b strings.Builder
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('.')
		}
	}
	if b.Len() == 0 {
		return "0"
	}
	return b.String()
}
