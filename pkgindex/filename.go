package pkgindex

import (
	"strings"
	"unicode"
)

// MaxFilenameLen bounds a distribution file name; longer names are not
// parsed (the file is ignored like any other name that does not parse).
const MaxFilenameLen = 1024

// sdistExts are the source distribution suffixes, longest first: every
// archive extension pip installs from (pip's utils/filetypes.py), so that no
// file pip could pick for a release is left out of its scan.
var sdistExts = []string{".tar.lzma", ".tar.bz2", ".tar.gz", ".tar.xz", ".tar.lz", ".tbz", ".txz", ".tlz", ".tgz", ".zip", ".tar"}

// parseFilename reads the version of project's distribution filename.
// project must be normalized (NormalizeName). It understands
//   - wheels (PEP 427): {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl,
//     the build tag starting with a digit;
//   - eggs: {name}-{version}(-{python}(-{platform})?)?.egg (the platform
//     may hold '-': linux-x86_64);
//   - sdists: {name}-{version}.tar.gz, .zip, .tar.bz2, .tar.xz, .tgz, .tar,
//     .tbz, .txz, .tlz, .tar.lz or .tar.lzma,
//     where the name part may itself hold '-' (the first split whose name
//     part normalizes to project and whose rest is a version wins).
//
// The name part is compared normalized, as pip compares it (a Kelvin sign
// is a 'k'); the version, stripped of whitespace as pip strips it, must be
// valid PEP 440 (a long s is an 's'). ok is false for anything else: other
// projects' files, other formats, names longer than MaxFilenameLen or
// holding a path separator or whitespace (unnamed: see pipFilename).
func parseFilename(project, filename string) (v version, ok bool) {
	if unnamed(filename) {
		return version{}, false
	}
	return pipFilename(project, filename)
}

// unnamed reports a file name the scan's reports cannot name (a path
// separator: they join it and the file's inner path with '/'; whitespace).
func unnamed(filename string) bool {
	return strings.ContainsAny(filename, "/\\") || strings.IndexFunc(filename, isPySpace) >= 0
}

// pipFilename is parseFilename for every name pip 23.2.1 takes: a wheel's
// python, ABI and platform tags hold anything but whitespace and '-'
// (Wheel.wheel_file_re: the tags are split at '.' and one supported
// combination is enough, so "py3.x+y" is py3), its build tag anything but
// '-' after its digit; an unnamed one among them is the release's all the
// same, for pip installs it.
func pipFilename(project, filename string) (v version, ok bool) {
	if filename == "" || len(filename) > MaxFilenameLen {
		return version{}, false
	}
	lower := strings.ToLower(filename)
	if stem, isWheel := cutSuffix(filename, lower, ".whl"); isWheel {
		parts := strings.Split(stem, "-")
		if len(parts) != 5 && len(parts) != 6 {
			return version{}, false
		}
		for i, p := range parts {
			if p == "" || (len(parts) != 6 || i != 2) && strings.IndexFunc(p, isPySpace) >= 0 {
				return version{}, false
			}
		}
		if len(parts) == 6 && !('0' <= parts[2][0] && parts[2][0] <= '9') {
			return version{}, false
		}
		return nameVersion(project, parts[0], parts[1])
	}
	if strings.ContainsAny(filename, "/\\") {
		return version{}, false
	}
	if stem, isEgg := cutSuffix(filename, lower, ".egg"); isEgg {
		parts := strings.Split(stem, "-")
		if len(parts) < 2 || !tagsOK(parts[2:]) {
			return version{}, false
		}
		return nameVersion(project, parts[0], parts[1])
	}
	for _, ext := range sdistExts {
		stem, isSdist := cutSuffix(filename, lower, ext)
		if !isSdist {
			continue
		}
		return stemVersion(project, stem)
	}
	return version{}, false
}

// stemVersion reads "NAME-VERSION" as pip reads an sdist's name: the first
// '-' after which the rest is a version and before which is project.
func stemVersion(project, stem string) (version, bool) {
	for i := 0; i < len(stem); i++ {
		if stem[i] != '-' {
			continue
		}
		if v, ok := nameVersion(project, stem[:i], stem[i+1:]); ok {
			return v, true
		}
	}
	return version{}, false
}

// cutSuffix cuts the case-insensitive suffix ext (lower case) off name,
// whose lower-cased form is lower.
func cutSuffix(name, lower, ext string) (string, bool) {
	if len(name) <= len(ext) || !strings.HasSuffix(lower, ext) {
		return "", false
	}
	return name[:len(name)-len(ext)], true
}

// nameVersion reads the name and version parts of a file name as pip does
// (canonicalize_name, Version), and returns the version when the name is
// project's.
func nameVersion(project, name, ver string) (version, bool) {
	name = pyNameFold.Replace(name)
	if name == "" || NormalizeName(name) != project || checkName(name) != nil {
		return version{}, false
	}
	return parseVersion(pyVersionFold.Replace(strings.TrimFunc(ver, isPySpace)))
}

// What pip reads as ASCII in a file name: str.lower() turns the Kelvin
// sign into 'k' (canonicalize_name), and packaging's version pattern,
// matched case-insensitively, takes the long s for 's' ("1.0.poſt1" is a
// post-release, printed, and so matched by "==1.0.post1", as 1.0.post1).
var (
	pyNameFold    = strings.NewReplacer("\u212a", "k")
	pyVersionFold = strings.NewReplacer("\u017f", "s")
)

// tagsOK reports wheel and egg tags (build, python, ABI, platform) that are
// non-empty runs of letters, digits, '_' and '.'.
func tagsOK(tags []string) bool {
	for _, t := range tags {
		if t == "" {
			return false
		}
		for i := 0; i < len(t); i++ {
			if c := t[i]; !isAlnum(c) && c != '_' && c != '.' {
				return false
			}
		}
	}
	return true
}

// isPySpace reports what Python's re `\s` matches in a str pattern
// (str.isspace): Unicode white space and the separators 0x1c-0x1f.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || 0x1c <= r && r <= 0x1f
}

// eggVersion is the version of project pip reads from a file's egg
// fragment ("#egg=NAME-VERSION", read like an sdist's name), whatever the
// file is called.
func eggVersion(project, egg string) (version, bool) {
	if len(egg) > MaxFilenameLen {
		return version{}, false
	}
	return stemVersion(project, egg)
}
