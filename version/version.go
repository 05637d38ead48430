// Package version reports the build's version string.
package version

import (
	"runtime/debug"
	"strings"
)

// version is set at link time: -ldflags "-X github.com/dragonfly-fleet/fleet/version.version=v1.2.3".
var version = ""

// revision is the VCS revision set at link time, for builds whose source has
// no .git (a container image's build context): -ldflags "-X
// github.com/dragonfly-fleet/fleet/version.revision=$(git rev-parse HEAD)".
// A "-dirty" suffix marks a working tree with local modifications. It wins
// over the revision the Go toolchain records.
var revision = ""

// dirtySuffix marks a link-time revision built from a modified working tree.
const dirtySuffix = "-dirty"

// String returns the version of this build: the link-time version when set,
// else the module version or VCS revision recorded by the Go toolchain, else "dev".
func String() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
	}
	rev, dirty := Revision()
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}

// UserAgent is the User-Agent the fleet sends to the Dragonfly API.
func UserAgent() string { return "dragonfly-fleet/" + String() }

// Revision returns the VCS revision this binary was built from (the full
// commit hash) and whether the working tree had local modifications: the
// link-time revision when set (see revision), else the one the Go toolchain
// recorded, else "" (go run, or a build outside a repository).
func Revision() (rev string, modified bool) {
	if rev, modified, ok := linked(revision); ok {
		return rev, modified
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	return fromSettings(bi.Settings)
}

// linked parses a link-time revision: "" is none; a "-dirty" suffix means
// modified.
func linked(s string) (rev string, modified, ok bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", false, false
	}
	rev, modified = strings.CutSuffix(s, dirtySuffix)
	return rev, modified, rev != ""
}

func fromSettings(settings []debug.BuildSetting) (rev string, modified bool) {
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return rev, modified
}
