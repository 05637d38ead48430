// Package cli is the command-line machinery of the dragonfly binary: a
// program of subcommands (Program, Command, Env), each command's settings
// (Settings: flags with DRAGONFLY_* environment variables and config-file
// keys derived from one name, typed values, secrets from files, help), the
// config files (Config.toml, Config-dev.toml or --config), the process
// logger, and the exit statuses (ExitError).
//
// The precedence is the reference client's: flag > environment variable >
// Config-dev.toml > Config.toml > default. Everything read from the outside
// is bounded: a config file to 1 MiB, a secret file to 64 KiB, and every
// value, key or argument quoted in a message is cut to a few hundred bytes
// (package clip). Packages outside cmd/ never import cli: they take Config
// structs.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/spf13/pflag"
)

// Program is a binary made of subcommands ("dragonfly scan ...").
type Program struct {
	// Name is the binary's name ("dragonfly").
	Name string
	// Footer ends the command listing of the usage text.
	Footer string
	// Version prints the version for --version.
	Version func(io.Writer)

	commands map[string]Command
}

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string
	// Flags registers the command's settings without running it: the
	// config keys every command reads (one config file serves them all)
	// and tests walk these. nil: no settings.
	Flags func(s *Settings)
	Run   func(ctx context.Context, e *Env, args []string) error
}

// Register adds commands.
func (p *Program) Register(cs ...Command) {
	if p.commands == nil {
		p.commands = map[string]Command{}
	}
	for _, c := range cs {
		p.commands[c.Name] = c
	}
}

// Lookup returns the command name.
func (p *Program) Lookup(name string) (Command, bool) {
	c, ok := p.commands[name]
	return c, ok
}

// Commands returns the commands, sorted by name.
func (p *Program) Commands() []Command {
	out := make([]Command, 0, len(p.commands))
	for _, n := range slices.Sorted(maps.Keys(p.commands)) {
		out = append(out, p.commands[n])
	}
	return out
}

// Settings returns empty settings for the command name ("dragonfly scan")
// whose config files may hold any key a command of p reads.
func (p *Program) Settings(name, summary string) *Settings {
	s := New(name, summary)
	s.others = p.allSettings
	return s
}

// allSettings are every command's settings, registered but not parsed.
func (p *Program) allSettings() []*Settings {
	var out []*Settings
	for _, c := range p.Commands() {
		if c.Flags != nil {
			s := New(p.Name+" "+c.Name, "")
			c.Flags(s)
			out = append(out, s)
		}
	}
	return out
}

// Env is what a command may touch of the outside world.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) (string, bool) // os.LookupEnv
	Dir    string                      // working directory (Config.toml is read from here)
	// CacheDir is os.UserCacheDir (the cached API rule sets of scan live
	// under it); nil means os.UserCacheDir.
	CacheDir func() (string, error)
	// Now is the clock (ages of cached rule sets); nil means time.Now.
	Now func() time.Time

	prog   *Program  // set by Program.Run: the config keys of every command
	parsed *Settings // the settings Parse read, to name a usage error's setting as it was given
}

// Settings returns the settings of a command of the running program,
// printing help to e.Stdout and warnings to e.Stderr.
func (e *Env) Settings(name, summary string) *Settings {
	s := New(name, summary)
	if e.prog != nil {
		s = e.prog.Settings(name, summary)
	}
	s.SetOutput(e.Stdout, e.Stderr)
	return s
}

// Parse parses args into s with e's environment and config files, and
// refuses positional arguments unless args is true.
func (e *Env) Parse(s *Settings, args []string, positional bool) error {
	e.parsed = s
	if err := s.Parse(args, e.Getenv, e.Dir); err != nil {
		return err
	}
	if !positional && len(s.Args()) > 0 {
		return UnexpectedArgs(s.Args())
	}
	return nil
}

// UserCacheDir is e.CacheDir, or os.UserCacheDir.
func (e *Env) UserCacheDir() (string, error) {
	if e.CacheDir != nil {
		return e.CacheDir()
	}
	return os.UserCacheDir()
}

// Clock is e.Now(), or time.Now().
func (e *Env) Clock() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// ExitError carries a specific exit status; Err nil prints nothing.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exit returns err with exit status code.
func Exit(code int, err error) error { return &ExitError{Code: code, Err: err} }

// Usage marks bad command-line use (exit status 2).
func Usage(format string, a ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, a...)}
}

// UnexpectedArgs is the usage error for positional arguments a command
// does not take.
func UnexpectedArgs(args []string) error {
	return Usage("unexpected arguments: %s", clip.String(strings.Join(args, " "), 512))
}

// Run executes the subcommand in args and returns the exit status. Help
// (-h, --help, help, help CMD, CMD --help) goes to stdout with status 0;
// usage errors go to stderr with status 2; other errors with status 1
// unless they are an ExitError.
func (p *Program) Run(ctx context.Context, e *Env, args []string) int {
	if len(args) == 0 {
		p.usage(e.Stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		if args[0] == "help" && len(args) > 1 {
			return p.Run(ctx, e, []string{args[1], "--help"})
		}
		p.usage(e.Stdout)
		return 0
	case "--version", "-version":
		p.Version(e.Stdout)
		return 0
	}
	c, ok := p.commands[args[0]]
	if !ok {
		fmt.Fprintf(e.Stderr, "%s: unknown command %q\n\n", p.Name, clip.String(args[0], 256))
		p.usage(e.Stderr)
		return 2
	}
	ce := *e
	ce.prog = p
	err := c.Run(ctx, &ce, args[1:])
	if err == nil || errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	code := 1
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
		if ee.Err == nil {
			return code
		}
		err = ee.Err
	}
	msg := err.Error()
	if code == 2 && ce.parsed != nil {
		msg = ce.parsed.asGiven(msg)
	}
	// An error may quote what a peer sent (an API's error detail, a rules
	// hash): shown, on the user's terminal, with its escape sequences,
	// carriage returns and bidi controls escaped. A usage error's help
	// keeps its lines.
	fmt.Fprintf(e.Stderr, "%s %s: %s\n", p.Name, c.Name, clip.Visible(msg, "\n"))
	return code
}

func (p *Program) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s <command> [flags] [args]\n\ncommands:\n", p.Name)
	for _, c := range p.Commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, p.Footer)
}
