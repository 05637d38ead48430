package archive

import (
	"path"
	"strings"

	"github.com/dragonfly-fleet/fleet/protocol"
)

// cleanPath turns an archive member name into a safe archive-relative path:
// cut at the first NUL (as Python's zipfile does), invalid UTF-8 replaced by
// U+FFFD, "\" read as "/", cleaned. It fails with errUnsafePath for an
// absolute name ("/x", "\\host\x", "C:\x", "C:x") or one that escapes the
// root with "..", and with errLongPath for a clean path longer than
// protocol.MaxPathBytes (no installation can write it; kept, a hostile
// name of a megabyte would be held for every file and link that matched).
// The root itself (".", "./", "") cleans to "".
func cleanPath(name string) (string, error) {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = strings.ReplaceAll(name, `\`, "/")
	if strings.HasPrefix(name, "/") || hasDrive(name) {
		return "", errUnsafePath
	}
	p := path.Clean(name)
	// A drive may also appear only after cleaning ("./C:x", "a/../C:x").
	if p == ".." || strings.HasPrefix(p, "../") || hasDrive(p) {
		return "", errUnsafePath
	}
	if p == "." {
		return "", nil
	}
	if len(p) > protocol.MaxPathBytes {
		return "", errLongPath
	}
	return p, nil
}

// hasDrive reports whether name starts with a Windows drive ("C:").
func hasDrive(name string) bool {
	if len(name) < 2 || name[1] != ':' {
		return false
	}
	c := name[0] | 0x20
	return 'a' <= c && c <= 'z'
}

// memberPath cleans an entry name for an *Error or a path: the cleaned path,
// or an *Error naming the original entry.
func memberPath(name string) (string, error) {
	p, err := cleanPath(name)
	if err != nil {
		return "", &Error{Path: strings.ToValidUTF8(name, "\uFFFD"), Err: err}
	}
	return p, nil
}
