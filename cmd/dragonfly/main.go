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
// Each command's file registers its settings (package internal/cli), builds
// the Config structs of the packages that own the work and composes them;
// the work itself lives in those packages.
package main

import (
	"context"
	"embed"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/healthcheck"
)

// program is dragonfly; each command's file holds its settings and its run.
var program = &cli.Program{
	Name:    "dragonfly",
	Footer:  "\nRun 'dragonfly <command> --help' for its flags and their DRAGONFLY_* variables;\n'dragonfly --version' for the version.",
	Version: printVersion,
}

func init() {
	program.Register([]cli.Command{
		newCommand("coordinator", "lease jobs from the Dragonfly API and feed workers over gRPC", false, runCoordinator),
		newCommand("worker", "download, unpack and scan distributions for a coordinator", false, runWorker),
		newCommand("local", "coordinator and worker in one process (one host)", false, runLocal),
		newCommand("scan", "scan local archives, directories, URLs or releases on a package index (pypi:NAME)", true, runScan),
		{Name: "rules", Summary: "the rule workbench: check (compile and lint rule files), profile (the cost of each rule)",
			Flags: rulesProfile.Flags, Run: runRules},
		newCommand("devapi", "a development Dragonfly API server", false, runDevAPI),
		statusCommand(time.After),
		{Name: "healthcheck", Summary: "probe a coordinator (gRPC health) or an HTTP endpoint; exit 0 if healthy, 1 if not",
			Flags: func(s *cli.Settings) { healthcheckFlags(s, new(healthcheck.Config), new(time.Duration)) }, Run: runHealthcheck},
		{Name: "version", Summary: "print the version, VCS revision and Go version (also dragonfly --version)",
			Run: runVersion},
	}...)
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
	e := &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.LookupEnv, Dir: dir}
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// helpFS holds the long help texts of the commands, one file each.
//
//go:embed help/*.txt
var helpFS embed.FS

// help returns the help text help/name.txt, without its final newline.
func help(name string) string {
	b, err := helpFS.ReadFile("help/" + name + ".txt")
	if err != nil {
		panic(err) // embedded at build time: a missing file is a bug
	}
	return strings.TrimSuffix(string(b), "\n")
}

// parse registers a command's settings on new settings (its help
// help/NAME.txt, "rules profile" rules-profile.txt) and parses args into
// them with the environment and the config files; positional arguments
// are refused unless positional.
func parse(e *cli.Env, name string, register func(*cli.Settings), args []string, positional bool) (*cli.Settings, error) {
	s := e.Settings("dragonfly "+name, help(strings.ReplaceAll(name, " ", "-")))
	register(s)
	return s, e.Parse(s, args, positional)
}

// newCommand is the command name whose settings are a C, registered by its
// register method: its Run parses them (see parse) and hands them to run
// with the parsed settings (their positional arguments, what was set).
func newCommand[C any, P interface {
	*C
	register(*cli.Settings)
}](name, summary string, positional bool, run func(context.Context, *cli.Env, P, *cli.Settings) error) cli.Command {
	return cli.Command{
		Name: name, Summary: summary,
		Flags: func(s *cli.Settings) { P(new(C)).register(s) },
		Run: func(ctx context.Context, e *cli.Env, args []string) error {
			c := P(new(C))
			s, err := parse(e, name, c.register, args, positional)
			if err != nil {
				return err
			}
			return run(ctx, e, c, s)
		},
	}
}

// startLog builds the process logger on standard error and logs the
// effective configuration of s once.
func startLog(e *cli.Env, s *cli.Settings, level, format string) (*slog.Logger, error) {
	log, err := cli.NewLogger(e.Stderr, level, format)
	if err == nil {
		s.LogConfig(log)
	}
	return log, err
}

// run executes the subcommand in args and returns the exit status.
func run(ctx context.Context, e *cli.Env, args []string) int { return program.Run(ctx, e, args) }
