package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/rules/workbench"
)

func init() {
	program.Register(cli.Command{
		Name: "rules", Summary: "the rule workbench: check (compile and lint rule files), profile (the cost of each rule)",
		Flags: func(s *cli.Settings) { new(profileConfig).register(s) }, Run: runRules,
	})
}

const rulesUsage = `usage: dragonfly rules check PATH...
       dragonfly rules profile --rules PATH [--format table|json] TARGET...

check    compiles rule files as the fleet does and prints libyara's warnings
         and errors and Dragonfly's metadata lint, as FILE:LINE: warning: ...
profile  measures what each rule costs over archives or directories

Run 'dragonfly rules check --help' or 'dragonfly rules profile --help' for more.`

// runRules dispatches to the subcommands of dragonfly rules.
func runRules(ctx context.Context, e *cli.Env, args []string) error {
	if len(args) == 0 {
		return cli.Usage("no subcommand\n\n%s", rulesUsage)
	}
	switch args[0] {
	case "check":
		return runRulesCheck(ctx, e, args[1:])
	case "profile":
		return runRulesProfile(ctx, e, args[1:])
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(e.Stdout, rulesUsage)
		return nil
	}
	return cli.Usage("unknown subcommand %q\n\n%s", clip.String(args[0], 256), rulesUsage)
}

const rulesCheckUsage = `usage: dragonfly rules check PATH...

Compiles the rule set made of every PATH as the fleet compiles it (all
sources in stem order, joined with "\n", as one rule set: identifiers are
unique across files) and prints, one per line on standard output:
  FILE:LINE: error: ...     libyara refuses the set (a duplicate identifier
                            across files, a syntax error, an undefined string)
  FILE:LINE: warning: ...   libyara's warnings (a string that may slow down
                            scanning, a .* regex) and the metadata lint: a
                            weight that is not an integer (it counts as 0), a
                            filetype that is not a string (ignored), a
                            filetype with an empty entry from a double,
                            leading or trailing space (Dragonfly splits it on
                            each single space and an empty suffix ends every
                            path, so the rule counts in every file), an
                            extension without its dot ("py" also matches
                            "happy"), a second weight or filetype (only the
                            first is read)
A PATH is a directory (its *.yara and *.yar files, not recursive), one YARA
file, or a GET /rules JSON document; a message names the file a rule was
read from (a JSON document's sources as STEM.yara). Standard error gets a
summary.

Exit status: 0 the set compiles (warnings or not); 1 it does not; 2 usage
(no PATH, an unreadable file, two files with one stem).`

func runRulesCheck(_ context.Context, e *cli.Env, args []string) error {
	s := e.Settings("dragonfly rules check", rulesCheckUsage)
	if err := s.Parse(args, e.Getenv, ""); err != nil {
		return err
	}
	if len(s.Args()) == 0 {
		return cli.Usage("no rule files (see dragonfly rules check --help)")
	}
	set, err := workbench.Load(s.Args())
	if err != nil {
		return cli.Exit(2, err)
	}
	rep, err := rules.Check(set)
	if err != nil {
		return err
	}
	for _, d := range rep.Diagnostics {
		fmt.Fprintln(e.Stdout, d)
	}
	fmt.Fprintf(e.Stderr, "dragonfly rules check: %s\n", workbench.CheckSummary(rep, len(set.Sources)))
	if rep.Compiled == nil {
		return cli.Exit(1, nil)
	}
	return nil
}

const rulesProfileUsage = `usage: dragonfly rules profile --rules PATH [--format table|json] TARGET...

Measures what each rule of the set costs over real archives or directories
(TARGET: an sdist, wheel, zip or any file, or a directory of unpacked
files, as for dragonfly scan: name the archives of a directory of archives). The targets are unpacked once, in memory (identical files held
once, all of them within --max-memory), under the scan limits below.

libyara 4.2 has no profiler and every rule of a set shares one string
search, so each cost is measured: the rule compiled alone with the rules it
may depend on (those its condition names, and every global rule), scanned
over the files its filetype admits, minus a scan of the same files with the
rules it depends on without it (for a global rule: with no rule at all).
Times are the CPU time of the scanning threads: neither wall time nor the
load of other processes counts. The sum
of the costs only approximates the full set's scan time, which the output
states beside it: the full set searches all strings in one pass and scans
every file with every rule.

Output (--format): table (default on a terminal: the rules, most expensive
first, with a verdict on the top ones such as "3 rules take 91% of the time")
or json (an array, most expensive first, of {"rule", "file" (the rule file
it comes from), "seconds" (its measured cost), "share" (of the sum of all
rules' seconds), "matches" (admitted files it matched; null for a private
rule, whose matches libyara does not report), "bytes" (bytes of the files
its filetype admits), "files" (their number), "timeouts", "warnings"
(libyara's warnings about the rule)}). libyara's warnings stand beside their
rule. On a terminal, standard error shows the progress.

Exit status: 0 done; 1 a target could not be read or unpacked; 2 usage, or
rules that do not compile.`

// profileConfig are the settings of dragonfly rules profile.
type profileConfig struct {
	rules     string
	format    string
	threads   int
	maxMemory int64
	limitSet  limitSettings
}

func (c *profileConfig) register(s *cli.Settings) {
	s.Var(cli.String(&c.rules, ""), "DRAGONFLY_RULES", "rules: a directory of .yara/.yar files, one file, or a GET /rules JSON document")
	s.Flag(cli.String(&c.format, ""), "format", "output format: table or json").DefaultText("table on a terminal, json otherwise")
	s.Var(cli.Int(&c.threads, runtime.NumCPU()), "DRAGONFLY_THREADS", "files scanned at once").DefaultText("number of CPUs")
	s.Flag(cli.Size(&c.maxMemory, 2<<30), "max-memory", "maximum bytes of the targets' files held in memory (identical files count once)")
	limitFlags(s, &c.limitSet)
}

func runRulesProfile(ctx context.Context, e *cli.Env, args []string) error {
	var cfg profileConfig
	s := e.Settings("dragonfly rules profile", rulesProfileUsage)
	cfg.register(s)
	if err := e.Parse(s, args, true); err != nil {
		return err
	}
	lim, _, err := cfg.limitSet.resolve()
	if err != nil {
		return err
	}
	if cfg.threads <= 0 {
		return atLeast("DRAGONFLY_THREADS", cfg.threads, 1)
	}
	if cfg.format, err = outputFormat(e, cfg.format, "table", "json"); err != nil {
		return err
	}
	if cfg.rules == "" {
		return cli.Usage("no rules: give --rules PATH (see dragonfly rules profile --help)")
	}
	targets := s.Args()
	if len(targets) == 0 {
		return cli.Usage("no targets (see dragonfly rules profile --help)")
	}
	set, err := rules.Load(cfg.rules)
	if err != nil {
		return cli.Exit(2, err)
	}

	pc := workbench.ProfileConfig{Threads: cfg.threads, Limits: lim,
		Memory: workbench.Budget{Bytes: cfg.maxMemory, Name: "--max-memory (" + cli.FormatSize(cfg.maxMemory) + ")"}}
	if cli.IsTerminal(e.Stderr) {
		pc.Progress = func(format string, a ...any) { fmt.Fprintf(e.Stderr, "\r\033[K"+format, a...) }
	}
	rep, held, err := workbench.Profile(ctx, set, targets, pc)
	var ce *rules.CompileError
	if errors.As(err, &ce) {
		return cli.Exit(2, err)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.Stderr, "dragonfly rules profile: %s\n", workbench.ProfileSummary(rep, held, len(targets)))
	if cfg.format == "json" {
		fmt.Fprintln(e.Stderr, "dragonfly rules profile: "+workbench.Note(rep))
		return workbench.WriteProfileJSON(e.Stdout, rep)
	}
	return workbench.WriteProfileTable(e.Stdout, rep)
}
