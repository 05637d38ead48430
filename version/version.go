// Package version reports the build's version string.
package version

import "runtime/debug"

// version is set at link time: -ldflags "-X github.com/dragonfly-fleet/fleet/version.version=v1.2.3".
var version = ""

// String returns the version of this build: the link-time version when set,
// else the module version or VCS revision recorded by the Go toolchain, else "dev".
func String() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := revision(bi.Settings)
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
// commit hash, "" when the toolchain recorded none, as with go run or a
// build outside a repository) and whether the working tree had local
// modifications.
func Revision() (rev string, modified bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	return revision(bi.Settings)
}

func revision(settings []debug.BuildSetting) (rev string, modified bool) {
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
