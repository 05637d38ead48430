package pkgindex

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
)

// Prefix starts a package target on the command line: "pypi:NAME[==VERSION]".
const Prefix = "pypi:"

// MaxNameLen bounds a project name in a target or requirement line, and
// MaxVersionLen a version. Longer ones are refused with an error.
const (
	MaxNameLen    = 256
	MaxVersionLen = 128
)

// Target is one release to find on an index: a project name and, when
// pinned, a version.
type Target struct {
	// Name is the project name as written (a valid PEP 508 name); lookups
	// use NormalizeName(Name).
	Name string
	// Version is the pinned version as written (a valid PEP 440 version),
	// or "" for the latest release.
	Version string
	// Origin says where the target was written, for messages: the
	// command-line argument ("pypi:foo==1.0") or "FILE:LINE" of a
	// requirement file.
	Origin string
	// Hashes are the pin's --hash values in a requirement file
	// ("ALG:HEX", as written). pip, which then runs in its require-hashes
	// mode, checks a download against these and not the index's digest,
	// so Resolve refuses a release unless each names the sha256 of a file
	// the scan downloads and verifies.
	Hashes []string
}

// String returns the target as "pypi:NAME" or "pypi:NAME==VERSION".
func (t Target) String() string {
	if t.Version == "" {
		return Prefix + t.Name
	}
	return Prefix + t.Name + "==" + t.Version
}

// IsTarget reports whether arg names a package target (starts with "pypi:").
// Such an argument is never a local path or URL to the scan command.
func IsTarget(arg string) bool { return strings.HasPrefix(arg, Prefix) }

// ParseTarget parses "pypi:NAME" or "pypi:NAME==VERSION". NAME must be a
// valid PEP 508 project name (letters, digits, '.', '_', '-', starting and
// ending with a letter or digit) and VERSION a valid PEP 440 version; any
// other form (other specifiers, extras, spaces, URLs) is an error.
func ParseTarget(arg string) (Target, error) {
	quoted := clip.String(arg, clip.Default)
	rest, ok := strings.CutPrefix(arg, Prefix)
	if !ok {
		return Target{}, fmt.Errorf("target %q: does not start with %q", quoted, Prefix)
	}
	name, version, pinned := strings.Cut(rest, "==")
	if err := checkName(name); err != nil {
		return Target{}, fmt.Errorf("target %q: %w", quoted, err)
	}
	if pinned {
		if err := checkVersion(version); err != nil {
			return Target{}, fmt.Errorf("target %q: %w", quoted, err)
		}
	}
	return Target{Name: name, Version: version, Origin: arg}, nil
}

// NormalizeName returns the PEP 503 normalized form of a project name: lower
// case, every run of '-', '_' and '.' replaced by one '-'.
func NormalizeName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	sep := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '-' || c == '_' || c == '.' {
			sep = true
			continue
		}
		if sep {
			b.WriteByte('-')
			sep = false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	if sep {
		b.WriteByte('-')
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isNameByte(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == '-' }

// checkName checks a PEP 508 project name:
// ^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$, case-insensitive.
func checkName(name string) error {
	if err := checkLen(name, MaxNameLen, "project name", "empty project name"); err != nil {
		return err
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return fmt.Errorf("invalid project name %q: only letters, digits, '.', '_' and '-' are allowed", clip.String(name, clip.Default))
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return fmt.Errorf("invalid project name %q: must start and end with a letter or digit", name)
	}
	return nil
}

// checkLen checks that s, a target's what, is not empty (the error says
// empty) and has at most max bytes.
func checkLen(s string, max int, what, empty string) error {
	if s == "" {
		return errors.New(empty)
	}
	if len(s) > max {
		return fmt.Errorf("%s longer than %d bytes", what, max)
	}
	return nil
}

// checkVersion checks a pinned version: a valid PEP 440 version without
// wildcards or spaces.
func checkVersion(v string) error {
	if err := checkLen(v, MaxVersionLen, "version", "empty version after =="); err != nil {
		return err
	}
	if strings.HasSuffix(v, ".*") {
		return fmt.Errorf("version %q: wildcards are not an exact pin", v)
	}
	if _, ok := parseVersion(v); !ok {
		return fmt.Errorf("version %q is not a valid PEP 440 version", clip.String(v, clip.Default))
	}
	return nil
}
