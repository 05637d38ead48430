package devapi

import (
	"fmt"
	"strings"

	"github.com/dragonfly-fleet/fleet/pkgindex"
)

// sdistSuffixes are the source-distribution archive suffixes PyPI accepts (and
// has accepted), longest first so ".tar.gz" wins over ".gz"-like prefixes.
var sdistSuffixes = []string{".tar.bz2", ".tar.gz", ".tar.xz", ".tgz", ".zip"}

// FileNameError reports a distribution file name that follows none of the
// PyPI conventions New understands.
type FileNameError struct {
	Name   string // the file name
	Reason string // what is wrong with it
}

func (e *FileNameError) Error() string {
	return fmt.Sprintf("distribution %q: %s", e.Name, e.Reason)
}

// parseFileName returns the project name and version encoded in a PyPI
// distribution file name:
//
//	sdist  name-version.tar.gz | .zip | .tar.bz2 | .tar.xz | .tgz
//	wheel  name-version(-build)?-pytag-abitag-platform.whl
//	egg    name-version(-pyX.Y(-platform)?)?.egg
//
// Sdist names may contain dashes in the project name (python-dateutil-2.8.2);
// the version starts after the last dash that is followed by a digit.
func parseFileName(file string) (name, version string, err error) {
	bad := func(reason string) (string, string, error) {
		return "", "", &FileNameError{Name: file, Reason: reason}
	}
	if file == "" || strings.ContainsAny(file, "/\\") {
		return bad("not a plain file name")
	}
	switch {
	case strings.HasSuffix(file, ".whl"):
		parts := strings.Split(strings.TrimSuffix(file, ".whl"), "-")
		if len(parts) != 5 && len(parts) != 6 {
			return bad("wheel name is not name-version(-build)?-python-abi-platform.whl")
		}
		for _, p := range parts {
			if p == "" {
				return bad("wheel name has an empty component")
			}
		}
		return parts[0], parts[1], nil
	case strings.HasSuffix(file, ".egg"):
		parts := strings.Split(strings.TrimSuffix(file, ".egg"), "-")
		if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
			return bad("egg name is not name-version(-pyX.Y(-platform)?)?.egg")
		}
		if len(parts) > 2 && !strings.HasPrefix(parts[2], "py") {
			return bad("egg name: third component is not a python tag (pyX.Y)")
		}
		return parts[0], parts[1], nil
	}
	for _, suf := range sdistSuffixes {
		if !strings.HasSuffix(file, suf) {
			continue
		}
		stem := strings.TrimSuffix(file, suf)
		for i := len(stem) - 2; i > 0; i-- {
			if stem[i] == '-' && stem[i+1] >= '0' && stem[i+1] <= '9' {
				return stem[:i], stem[i+1:], nil
			}
		}
		return bad("sdist name is not name-version" + suf + " (no dash followed by a version)")
	}
	return bad("unknown distribution type (want .tar.gz, .zip, .tar.bz2, .tar.xz, .tgz, .whl or .egg)")
}

// normalizeName is the PEP 503 normalized form of a project name
// (pkgindex.NormalizeName: lower case, runs of '-', '_' and '.' collapsed to
// one '-') without a leading or trailing '-'. Files whose names normalize
// alike belong to the same project (a wheel's discord_helper_utils and an
// sdist's discord-helper-utils).
func normalizeName(name string) string { return strings.Trim(pkgindex.NormalizeName(name), "-") }

// isSdist reports whether file is a source distribution.
func isSdist(file string) bool {
	for _, suf := range sdistSuffixes {
		if strings.HasSuffix(file, suf) {
			return true
		}
	}
	return false
}

// compareVersions orders version strings naturally: runs of digits compare
// as numbers, everything else byte-wise (1.9 < 1.10 < 1.10a). It is an
// ordering for listing releases, not PEP 440.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			ra, rb := digitRun(a), digitRun(b)
			na, nb := strings.TrimLeft(a[:ra], "0"), strings.TrimLeft(b[:rb], "0")
			if len(na) != len(nb) {
				if len(na) < len(nb) {
					return -1
				}
				return 1
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[ra:], b[rb:]
			continue
		}
		if a[0] != b[0] {
			if a[0] < b[0] {
				return -1
			}
			return 1
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
