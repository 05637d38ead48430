// Command dragonfly is Dragonfly Fleet: a fast, distributed scanning client for
// the Dragonfly PyPI malware-scanning API.
//
//	dragonfly coordinator   lease jobs from the API and feed workers over gRPC
//	dragonfly worker        download, unpack and scan distributions for a coordinator
//	dragonfly local         coordinator and worker in one process
//	dragonfly scan          scan local archives, directories or URLs
//	dragonfly devapi        a development Dragonfly API server
//	dragonfly status        show a coordinator's fleet
//	dragonfly version       print the version
//
// main is a shell: flags and environment -> a config struct -> run -> exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
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

// run executes the subcommand in args and returns the exit status.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(e.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "dragonfly: unknown command %q\n\n", args[0])
		printUsage(e.stderr)
		return 2
	}
	err := c.run(ctx, e, args[1:])
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
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
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'dragonfly <command> --help' for its flags and their DRAGONFLY_* variables.")
}
