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
	v, err := pep440.Parse(normalizeLocal(s))
	if err != nil {
		return version{}, false
	}
	return version{v: v, key: canonicalKey(v)}, true
}

// normalizeLocal spells the local label of s ("+..."), if any, as PEP 440
// normalizes it: '-' and '_' become '.', and a numeric part loses its
// leading zeros ("1.0+Ubuntu-01" -> "1.0+Ubuntu.1"; case is the parser's).
// The parser compares local labels as written, so "1.0+a_b" (as a wheel
// must spell "1.0+a-b") and "1.0+a.b" would be two versions, and "1.0+01"
// and "1.0+1" one version under two keys.
func normalizeLocal(s string) string {
	public, local, ok := strings.Cut(s, "+")
	if !ok {
		return s
	}
	parts := strings.FieldsFunc(local, func(r rune) bool { return r == '.' || r == '-' || r == '_' })
	if len(parts) == 0 || strings.Count(local, ".")+strings.Count(local, "-")+strings.Count(local, "_") != len(parts)-1 {
		return s // an empty part: let the parser refuse it
	}
	for i, p := range parts {
		if strings.Trim(p, "0123456789") == "" {
			if p = strings.TrimLeft(p, "0"); p == "" {
				p = "0"
			}
			parts[i] = p
		}
	}
	return public + "+" + strings.Join(parts, ".")
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

// matches reports whether v is a file version a pin on want takes: equal,
// or, when want has no local label, equal but for v's (PEP 440: a public
// version pin ignores the candidates' local labels, so pip may install
// 1.0+ubuntu1 for ==1.0, and it must be scanned with the release).
func (v version) matches(want version) bool {
	if v.compare(want) == 0 {
		return true
	}
	if want.v.Local() != "" || v.v.Local() == "" {
		return false
	}
	public, ok := parseVersion(v.v.Public())
	return ok && public.compare(want) == 0
}

// isPre reports a pre-release or development release.
func (v version) isPre() bool { return v.v.IsPreRelease() }
