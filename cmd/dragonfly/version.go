package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/dragonfly-fleet/fleet/version"
)

func init() {
	register(command{name: "version", summary: "print the version, VCS revision and Go version (also dragonfly --version)", run: runVersion})
}

func runVersion(_ context.Context, e *env, args []string) error {
	s := e.settingsFor("dragonfly version", "usage: dragonfly version\n\nPrints the version of this build, the VCS revision it was built from and the\nGo version that built it (the same as dragonfly --version).")
	if err := s.Parse(args, e.getenv, ""); err != nil {
		return err
	}
	if len(s.Args()) > 0 {
		return unexpectedArgs(s.Args())
	}
	printVersion(e.stdout)
	return nil
}

// printVersion writes the version, the VCS revision and the Go version, one
// per line.
func printVersion(w io.Writer) {
	rev, modified := version.Revision()
	switch {
	case rev == "":
		rev = "unknown"
	case modified:
		rev += " (modified)"
	}
	fmt.Fprintf(w, "dragonfly %s\nrevision: %s\ngo: %s %s/%s\n", version.String(), rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
