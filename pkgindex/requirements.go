package pkgindex

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
)

// MaxRequirementsSize bounds the bytes of one requirement file.
const MaxRequirementsSize = 4 << 20

// lineClip bounds a requirement line quoted in an error.
const lineClip = 256

// RequirementError reports a requirement file line that is not an exact pin
// or a known option. Line is 1-based; for a line continued with '\' it is
// the first physical line.
type RequirementError struct {
	File string
	Line int
	// Text is the (joined) line, cut to a few hundred bytes.
	Text string
	// Reason says what is wrong.
	Reason string
}

func (e *RequirementError) Error() string {
	return fmt.Sprintf("%s:%d: %q: %s", clip.String(e.File, clip.Default), e.Line, e.Text, e.Reason)
}

// ReadRequirements reads the requirement file at path (at most
// MaxRequirementsSize bytes) and returns its pins; see ParseRequirements.
func ReadRequirements(path string) ([]Target, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := bound.ReadAll(f, MaxRequirementsSize)
	if errors.Is(err, bound.ErrTooLarge) {
		return nil, fmt.Errorf("requirement file %q is %w", clip.String(path, clip.Default), err)
	}
	if err != nil {
		return nil, fmt.Errorf("read requirement file: %w", err)
	}
	return ParseRequirements(path, data)
}

// ignoredOptions are option lines that neither name packages nor change
// where they come from; they are accepted and ignored.
var ignoredOptions = map[string]bool{
	"--require-hashes": true, "--prefer-binary": true, "--pre": true,
	"--only-binary": true, "--no-binary": true, "--trusted-host": true,
	"--use-feature": true,
}

// requirementOptions are the per-requirement options accepted after a pin:
// hashes (pip checks them at install instead of the index's digest; each
// must be the sha256 the index lists for a file of the release: see
// Target.Hashes) and build settings.
var requirementOptions = map[string]bool{
	"--hash": true, "--config-settings": true, "--global-option": true,
}

// ParseRequirements reads a pip requirement file and returns one Target per
// pinned requirement, in file order, each with Origin "FILE:LINE". file
// names the file in errors and origins.
//
// Lines end where pip's do (splitLines); a file declaring an encoding pip
// would decode it with other than UTF-8 or ASCII is refused
// (checkEncoding); lines are joined, cut into requirement and options and
// stripped of comments as pip does (parseRequirementLine). Accepted: blank
// lines; comments ('#' at the start of a line or after whitespace, Python's);
// lines continued with a trailing '\'; exact pins
// "name==version" with optional spaces around "==", extras
// ("name[extra]==1.0" pins name) and environment markers after ';' (ignored:
// the release is scanned whatever the marker says); per-requirement options
// --hash (either form), --config-settings, --global-option; and option
// lines made only of --require-hashes, --prefer-binary, --pre,
// --only-binary, --no-binary, --trusted-host, --use-feature (ignored; every
// option of the line is checked, as pip reads them all).
//
// Everything else is an error naming the file and line, never skipped: a
// requirement that is not an exact pin (">=", "~=", "!=", "===", "==1.*",
// several specifiers, no specifier), a URL or path requirement ("name @
// url", "./dir", "https://...", or a pin ending in an archive extension,
// "foo==1.0+a.zip", which pip reads as a local file), editable installs (-e), nested or
// constraint files (-r, -c, which are not followed), index options (-i,
// --index-url, --extra-index-url, -f, --find-links, --no-index; use the
// scan's --index-url), unknown options, quotes or backslashes in a pin's
// options and ${VAR} in a pin's line (pip shlex-splits and expands them:
// a --hash could read otherwise). A scan must not report a file
// clean when part of it was never looked at. A project pinned twice to the
// same version is listed once; to different versions, it is an error.
func ParseRequirements(file string, data []byte) ([]Target, error) {
	if len(data) > MaxRequirementsSize {
		return nil, fmt.Errorf("requirement file %q is larger than %d bytes", clip.String(file, clip.Default), MaxRequirementsSize)
	}
	var (
		out   []Target
		seen  = make(map[string]int) // normalized name -> index in out
		errs  []error
		start int    // first physical line of the logical line
		buf   []byte // logical line being joined
	)
	if bom := []byte("\uFEFF"); bytes.HasPrefix(data, bom) {
		data = data[len(bom):] // a UTF-8 byte order mark, as Windows editors write
	} else if err := checkEncoding(file, data); err != nil {
		return nil, err
	}
	lines := splitLines(data)
	for i, raw := range lines {
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		if buf == nil {
			start = i + 1
		}
		if bytes.HasSuffix(raw, []byte(`\`)) && !isCommentLine(raw) {
			// As pip's join_lines: the line loses every '\' at either
			// end and joins the next with no space between, so
			// "--hash=sha256:A\" + "--hash=sha256:B" is one value to pip.
			raw = bytes.Trim(raw, `\`)
			if i < len(lines)-1 {
				buf = append(buf, raw...)
				continue
			}
		}
		line := string(append(buf, raw...))
		buf = nil
		t, ok, err := parseRequirementLine(line)
		if err != nil {
			errs = append(errs, &RequirementError{File: file, Line: start, Text: clip.String(strings.TrimSpace(line), lineClip), Reason: err.Error()})
			continue
		}
		if !ok {
			continue
		}
		t.Origin = file + ":" + strconv.Itoa(start)
		norm := NormalizeName(t.Name)
		if j, dup := seen[norm]; dup {
			a, _ := parseVersion(out[j].Version)
			b, _ := parseVersion(t.Version)
			if a.compare(b) != 0 {
				errs = append(errs, &RequirementError{File: file, Line: start, Text: clip.String(strings.TrimSpace(line), lineClip),
					Reason: fmt.Sprintf("%s is already pinned to %s at %s", t.Name, out[j].Version, out[j].Origin)})
			}
			out[j].Hashes = append(out[j].Hashes, t.Hashes...) // each is checked
			continue
		}
		seen[norm] = len(out)
		out = append(out, t)
	}
	if len(errs) > maxLineErrors {
		errs = append(errs[:maxLineErrors], fmt.Errorf("%s: %d more lines with errors", clip.String(file, clip.Default), len(errs)-maxLineErrors))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// codingRE is pip's ENCODING_RE (a bytes pattern: \s and \w are ASCII).
var codingRE = regexp.MustCompile(`coding[:=][ \t\n\r\f\v]*([-A-Za-z0-9_.]+)`)

// readEncodings are the encodings a requirement file may declare, as
// Python names them (normalized): UTF-8 and ASCII, which the file is read
// as.
var readEncodings = map[string]bool{
	"utf_8": true, "utf8": true, "u8": true, "utf": true, "cp65001": true, "utf_8_sig": true, "utf8_sig": true,
	"ascii": true, "us_ascii": true, "us": true, "646": true,
}

// checkEncoding refuses a requirement file (without a byte order mark)
// that declares an encoding other than UTF-8 or ASCII: pip decodes it with
// that encoding (auto_decode: the first of its first two lines that starts
// with '#' and holds "coding:" or "coding=" NAME), whose line breaks and
// characters this reader does not see (latin-1 0x85 is a break, utf-7
// "+AAo-" and unicode_escape `\n` are newlines), so a pin pip installs
// would hide in a comment.
func checkEncoding(file string, data []byte) error {
	lines := bytes.SplitN(data, []byte("\n"), 3)
	for i, line := range lines[:min(2, len(lines))] {
		if !bytes.HasPrefix(line, []byte("#")) {
			continue
		}
		m := codingRE.FindSubmatch(line)
		if m == nil {
			continue
		}
		if name := pyEncodingName(string(m[1])); !readEncodings[name] {
			return &RequirementError{File: file, Line: i + 1, Text: clip.String(strings.TrimSpace(string(line)), lineClip),
				Reason: fmt.Sprintf("declares the encoding %q, which pip decodes the file with; only UTF-8 and ASCII are read here: save it as UTF-8 without the declaration", clip.String(string(m[1]), 64))}
		}
		return nil
	}
	return nil
}

// pyEncodingName is an encoding's name as Python looks it up: lower case,
// each run of characters other than letters, digits and '.' one '_',
// none at either end.
func pyEncodingName(s string) string {
	var b strings.Builder
	punct := false
	for _, c := range strings.ToLower(s) {
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' {
			if punct && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(c)
			punct = false
		} else {
			punct = true
		}
	}
	return b.String()
}

// splitLines splits a requirement file into its lines as pip does (Python's
// str.splitlines on the decoded text): at \n, \r\n, \r, \v, \f, \x1c,
// \x1d, \x1e, U+0085, U+2028 and U+2029. Split at \n alone, a pin after
// another break shared a comment's line and was dropped without a word,
// while pip installed it.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	start := 0
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		switch r {
		case '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				n = 2
			}
			fallthrough
		case '\n', '\v', '\f', '\x1c', '\x1d', '\x1e', '\u0085', '\u2028', '\u2029':
			lines = append(lines, data[start:i])
			start = i + n
		}
		i += n
	}
	return append(lines, data[start:])
}

// maxLineErrors bounds the line errors reported for one file.
const maxLineErrors = 10

// isCommentLine reports a line that is only a comment ('#' after nothing
// but whitespace, as pip's COMMENT_RE matches it); such a line ending in
// '\' does not continue (as in pip).
func isCommentLine(line []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeftFunc(line, isPySpace), []byte("#"))
}

// stripComment removes a comment: '#' at the start or after whitespace
// (Python's, as in pip's COMMENT_RE).
func stripComment(line string) string {
	prev := rune(-1)
	for i, r := range line {
		if r == '#' && (i == 0 || isPySpace(prev)) {
			return line[:i]
		}
		prev = r
	}
	return line
}

// isShlexSpace reports the characters shlex splits pip's options at.
func isShlexSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }

// parseRequirementLine parses one logical line. ok is false for a line with
// nothing to scan (blank, comment, ignored option).
func parseRequirementLine(line string) (Target, bool, error) {
	line = strings.TrimFunc(stripComment(line), isPySpace)
	if line == "" {
		return Target{}, false, nil
	}
	// As pip's break_args_options: the line is cut at spaces (only ' '),
	// the requirement is the tokens before the first one that starts with
	// '-', and the rest are options, which pip shlex-splits (at ' ', tab,
	// CR and LF only: "--hash=A\u00a0--hash=B" is one value to pip).
	tokens := strings.Split(line, " ")
	n := 0
	for n < len(tokens) && !strings.HasPrefix(tokens[n], "-") {
		n++
	}
	opts := strings.FieldsFunc(strings.Join(tokens[n:], " "), isShlexSpace)
	if n == 0 {
		return Target{}, false, optionLine(opts)
	}
	hashes, err := checkRequirementOptions(opts)
	if err != nil {
		return Target{}, false, err
	}
	t, err := parsePin(strings.Join(tokens[:n], " "))
	if err != nil {
		return Target{}, false, err
	}
	if strings.Contains(line, "${") {
		// pip expands ${VAR} before it splits the line: 'foo==1.0 ;
		// python_version > "3" ${X}' gains the options X holds.
		return Target{}, false, fmt.Errorf("environment variables in a requirement (%q) are not supported: pip expands them, possibly into options such as --hash", clip.String(strings.TrimSpace(line), lineClip))
	}
	t.Hashes = hashes
	return t, true, nil
}

// valueOptions are the ignored options that take a value: pip reads the
// next field as the value when there is no '='.
var valueOptions = map[string]bool{
	"--only-binary": true, "--no-binary": true, "--trusted-host": true, "--use-feature": true,
}

// optionLine checks an option line. pip reads every option of the line
// (shlex-split, as its command line), so every one is checked, not only the
// first: "--pre --index-url URL" sets pip's index. Fields that are not
// options are ignored, as pip ignores them; quotes and backslashes, which
// shlex would remove to reveal an option, and ${VAR}, which pip expands
// first, are refused.
func optionLine(fields []string) error {
	for i := 0; i < len(fields); i++ {
		if strings.ContainsAny(fields[i], "\"'\\") {
			return fmt.Errorf("quotes or backslashes in an option line (%q) are not supported", clip.String(fields[i], lineClip))
		}
		if strings.Contains(fields[i], "${") {
			return fmt.Errorf("environment variables in an option line (%q) are not supported: pip expands them, possibly into options", clip.String(fields[i], lineClip))
		}
	}
	for i := 0; i < len(fields); i++ {
		if !strings.HasPrefix(fields[i], "-") {
			continue
		}
		if err := checkOption(fields[i]); err != nil {
			return err
		}
		if name, _, hasValue := strings.Cut(fields[i], "="); valueOptions[name] && !hasValue {
			i++ // its value, whatever it looks like
		}
	}
	return nil
}

// checkOption checks one option of an option line.
func checkOption(field string) error {
	name, _, _ := strings.Cut(field, "=")
	switch name {
	case "-r", "--requirement":
		return errors.New("nested requirement files are not followed; pass each file on its own")
	case "-c", "--constraint":
		return errors.New("constraint files are not followed")
	case "-e", "--editable":
		return errors.New("editable requirements are not on an index; only exact pins name==version can be scanned")
	case "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-index":
		return errors.New("index options are not followed; set the scan's --index-url instead")
	}
	if ignoredOptions[name] {
		return nil
	}
	return fmt.Errorf("unknown option %q", clip.String(name, lineClip))
}

// checkRequirementOptions checks the options after a pin and returns its
// --hash values. pip shlex-splits them, so quotes and backslashes are
// refused: --hash=sha256:HEX"" is HEX to pip, a value matching no download
// to the scan, which would pass it over.
func checkRequirementOptions(opts []string) ([]string, error) {
	for _, o := range opts {
		if strings.ContainsAny(o, "\"'\\") {
			return nil, fmt.Errorf("quotes or backslashes in a requirement's options (%q) are not supported: pip removes them (shlex)", clip.String(o, lineClip))
		}
	}
	var hashes []string
	for i := 0; i < len(opts); i++ {
		name, value, hasValue := strings.Cut(opts[i], "=")
		if !requirementOptions[name] {
			return nil, fmt.Errorf("unsupported option %q after a requirement", clip.String(name, lineClip))
		}
		if !hasValue {
			if i+1 >= len(opts) {
				return nil, fmt.Errorf("option %s without a value", name)
			}
			i++
			value = opts[i]
		}
		if name == "--hash" {
			if alg, hex, ok := strings.Cut(value, ":"); !ok || alg == "" || hex == "" {
				return nil, fmt.Errorf("--hash %q is not ALGORITHM:HEX", clip.String(value, lineClip))
			}
			hashes = append(hashes, value)
		}
	}
	return hashes, nil
}

// parsePin parses "name[extras] == version [; marker]".
func parsePin(req string) (Target, error) {
	if i := strings.IndexByte(req, ';'); i >= 0 {
		req = req[:i]
	}
	req = strings.TrimSpace(req)
	if strings.Contains(req, "://") || strings.HasPrefix(req, ".") || strings.HasPrefix(req, "/") {
		return Target{}, errors.New("URL or path requirements are not on an index; only exact pins name==version can be scanned")
	}
	n := 0
	for n < len(req) && isNameByte(req[n]) {
		n++
	}
	name := req[:n]
	if name == "" {
		return Target{}, errors.New("does not start with a project name")
	}
	if err := checkName(name); err != nil {
		return Target{}, err
	}
	rest := strings.TrimLeft(req[n:], " \t")
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return Target{}, errors.New("unclosed extras '['")
		}
		for _, extra := range strings.Split(rest[1:end], ",") {
			if err := checkName(strings.TrimSpace(extra)); err != nil {
				return Target{}, fmt.Errorf("extra: %w", err)
			}
		}
		rest = strings.TrimLeft(rest[end+1:], " \t")
	}
	if ext := archiveExtension(req); ext != "" {
		// pip's parse_req_from_line takes "foo==1.0+a.zip" for a path
		// to a local archive and installs that file, not foo from the index.
		return Target{}, fmt.Errorf("ends in %q, so pip reads it as the path of a local archive, not an index pin", ext)
	}
	switch {
	case rest == "":
		return Target{}, errors.New("not pinned; only exact pins name==version can be scanned")
	case strings.HasPrefix(rest, "@"):
		return Target{}, errors.New("URL requirements are not on an index; only exact pins name==version can be scanned")
	case strings.HasPrefix(rest, "==="):
		return Target{}, errors.New("arbitrary equality (===) is not supported; use ==")
	case !strings.HasPrefix(rest, "=="):
		return Target{}, errors.New("not an exact pin; only name==version can be scanned")
	}
	ver := strings.TrimSpace(rest[2:])
	if strings.Contains(ver, ",") {
		return Target{}, errors.New("several version specifiers; only name==version can be scanned")
	}
	if err := checkVersion(ver); err != nil {
		return Target{}, err
	}
	return Target{Name: name, Version: ver}, nil
}

// archiveExtensions are pip's ARCHIVE_EXTENSIONS: a requirement (without
// its marker and trailing extras) ending in one, in any case, is a path to
// pip (is_archive_file in parse_req_from_line).
var archiveExtensions = []string{
	".zip", ".whl", ".tar.bz2", ".tbz", ".tar.gz", ".tgz", ".tar",
	".tar.xz", ".txz", ".tlz", ".tar.lz", ".tar.lzma",
}

// archiveExtension returns the archive extension req ends in, or "". req
// is a requirement without its marker. A suffix is refused even where pip's
// splitext would not see it (".tar.zip"): refusing more is safe.
func archiveExtension(req string) string {
	req = strings.ToLower(strings.TrimSpace(req))
	if strings.HasSuffix(req, "]") {
		if i := strings.LastIndexByte(req, '['); i > 0 {
			req = req[:i] // pip's _strip_extras
		}
	}
	for _, ext := range archiveExtensions {
		if strings.HasSuffix(req, ext) {
			return ext
		}
	}
	return ""
}
