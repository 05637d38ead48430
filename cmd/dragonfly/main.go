// Command dragonfly is Dragonfly Fleet: a fast, distributed scanning client for
// the Dragonfly PyPI malware-scanning API.
//
//	dragonfly coordinator   lease jobs from the API and feed workers over gRPC
//	dragonfly worker        download, unpack and scan distributions for a coordinator
//	dragonfly local         coordinator and worker in one process
//	dragonfly scan          scan archives, directories, URLs or pypi:NAME releases
//	dragonfly rules         check or profile a rule set (rules check, rules profile)
//	dragonfly devapi        a development Dragonfly API server
//	dragonfly status        show a coordinator's fleet
//	dragonfly healthcheck   probe a coordinator or an HTTP endpoint
//	dragonfly version       print the version (also dragonfly --version)
//
// main is a shell: flags and environment -> a config struct -> run -> exit.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/spf13/pflag"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	// flags registers the command's settings on a settings without running
	// the command: the config keys every command reads (one config file
	// serves them all) and the naming test walk these. nil: no settings.
	flags func(s *settings)
	run   func(ctx context.Context, e *env, args []string) error
}

// commands is filled by the init functions of the files that define them.
var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// env is what a command may touch of the outside world.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) (string, bool) // os.LookupEnv
	dir    string                      // working directory (Config.toml is read from here)
	// cacheDir is os.UserCacheDir (the cached API rule sets of scan live
	// under it); nil means os.UserCacheDir.
	cacheDir func() (string, error)
	// now is the clock (ages of cached rule sets); nil means time.Now.
	now func() time.Time
}

// settingsFor returns the settings of the command name, printing help to
// e.stdout and warnings to e.stderr.
func (e *env) settingsFor(name, summary string) *settings {
	s := newSettings(name, summary)
	s.setOutput(e.stdout, e.stderr)
	return s
}

func (e *env) userCacheDir() (string, error) {
	if e.cacheDir != nil {
		return e.cacheDir()
	}
	return os.UserCacheDir()
}

func (e *env) clock() time.Time {
	if e.now != nil {
		return e.now()
	}
	return time.Now()
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// unexpectedArgs is the usage error for positional arguments a command
// does not take.
func unexpectedArgs(args []string) error {
	return usageError("unexpected arguments: %s", clip.String(strings.Join(args, " "), 512))
}

// usageError marks bad command-line use (exit status 2).
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling: a second one
		// ends the process at once.
		<-ctx.Done()
		stop()
	}()
	dir, _ := os.Getwd()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.LookupEnv, dir: dir}
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes the subcommand in args and returns the exit status. Help
// (-h, --help, help, help CMD, CMD --help) goes to stdout with status 0;
// usage errors go to stderr with status 2.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		printUsage(e.stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		if args[0] == "help" && len(args) > 1 {
			return run(ctx, e, []string{args[1], "--help"})
		}
		printUsage(e.stdout)
		return 0
	case "--version", "-version":
		printVersion(e.stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "dragonfly: unknown command %q\n\n", clip.String(args[0], 256))
		printUsage(e.stderr)
		return 2
	}
	err := c.run(ctx, e, args[1:])
	if err == nil {
		return 0
	}
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(e.stderr, "dragonfly %s: %v\n", c.name, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(e.stderr, "dragonfly %s: %v\n", c.name, err)
	return 1
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: dragonfly <command> [flags] [args]\n\ncommands:")
	for _, n := range sortedKeys(commands) {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'dragonfly <command> --help' for its flags and their DRAGONFLY_* variables;\n'dragonfly --version' for the version.")
}
