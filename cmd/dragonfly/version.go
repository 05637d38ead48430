package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/dragonfly-fleet/fleet/version"
)

func init() {
	register(command{name: "version", summary: "print the version", run: runVersion})
}

func runVersion(_ context.Context, e *env, args []string) error {
	s := newSettings("dragonfly version", "usage: dragonfly version\n\nPrints the version of this build.")
	if err := s.Parse(args, e.getenv, ""); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "dragonfly %s (%s, %s/%s)\n", version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
