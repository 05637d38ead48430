package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/version"
)

func runVersion(_ context.Context, e *cli.Env, args []string) error {
	s := e.Settings("dragonfly version", "usage: dragonfly version\n\nPrints the version of this build, the VCS revision it was built from and the\nGo version that built it (the same as dragonfly --version).")
	if err := s.Parse(args, e.Getenv, ""); err != nil {
		return err
	}
	if len(s.Args()) > 0 {
		return cli.UnexpectedArgs(s.Args())
	}
	printVersion(e.Stdout)
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
