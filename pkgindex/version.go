package pkgindex

import (
	"strings"

	pep440 "github.com/aquasecurity/go-pep440-version"
)

// version is a parsed PEP 440 version with its canonical key: two versions
// that PEP 440 calls equal ("1.0" and "1.0.0", "1.0a1" and "1.0alpha1")
// have the same key.
type version struct {
	v   pep440.Version
	key string
}

// parseVersion parses a PEP 440 version. Spaces and anything but letters,
// digits and ".!+_-" are refused before the parser sees them (the parser
// trims spaces, which no file name or pin may carry).
func parseVersion(s string) (version, bool) {
	if s == "" || len(s) > MaxVersionLen {
		return version{}, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && !strings.ContainsRune(".!+_-", rune(c)) {
			return version{}, false
		}
	}
	v, err := pep440.Parse(s)
	if err != nil {
		return version{}, false
	}
	return version{v: v, key: canonicalKey(v)}, true
}

// canonicalKey is v's normalized string with trailing zero release
// components dropped ("1!2.0.0rc1" -> "1!2rc1").
func canonicalKey(v pep440.Version) string {
	s := v.String()
	base := v.BaseVersion()
	rest := s[len(base):]
	for strings.HasSuffix(base, ".0") {
		base = strings.TrimSuffix(base, ".0")
	}
	return base + rest
}

// String is the PEP 440 normalized form ("1.0a1", "1.0.post2").
func (v version) String() string { return v.v.String() }

// compare returns -1, 0 or +1 as v sorts before, equal to or after o.
func (v version) compare(o version) int {
	if v.key == o.key {
		return 0
	}
	return v.v.Compare(o.v)
}

// isPre reports a pre-release or development release.
func (v version) isPre() bool { return v.v.IsPreRelease() }
