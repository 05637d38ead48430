package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/rules/workbench"
	"github.com/dragonfly-fleet/fleet/worker"
)

// runRules dispatches to the subcommands of dragonfly rules.
func runRules(ctx context.Context, e *cli.Env, args []string) error {
	if len(args) == 0 {
		return cli.Usage("no subcommand\n\n%s", help("rules"))
	}
	switch args[0] {
	case "check":
		return runRulesCheck(ctx, e, args[1:])
	case "profile":
		return rulesProfile.Run(ctx, e, args[1:])
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(e.Stdout, help("rules"))
		return nil
	}
	return cli.Usage("unknown subcommand %q\n\n%s", clip.String(args[0], 256), help("rules"))
}

func runRulesCheck(_ context.Context, e *cli.Env, args []string) error {
	s := e.Settings("dragonfly rules check", help("rules-check"))
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
	if rep.Compiled.Reportable() == 0 {
		return cli.Exit(1, rules.ErrNoRules)
	}
	if err := protocol.CheckRuleSet(set.Sources); err != nil {
		return cli.Exit(1, fmt.Errorf("%w: the coordinator refuses it and keeps the rules in use", err))
	}
	return nil
}

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
	s.Var(cli.Int(&c.threads, worker.DefaultThreads()), "DRAGONFLY_THREADS", "files scanned at once").DefaultText("number of CPUs available")
	s.Flag(cli.Size(&c.maxMemory, 2<<30), "max-memory", "maximum bytes of the targets' files held in memory (identical files count once)")
	limitFlags(s, &c.limitSet)
}

// rulesProfile is dragonfly rules profile; its settings are those of
// dragonfly rules.
var rulesProfile = newCommand("rules profile", "", true, runRulesProfile)

func runRulesProfile(ctx context.Context, e *cli.Env, cfg *profileConfig, s *cli.Settings) error {
	lim, _, err := checkScanning(e, &cfg.limitSet, cfg.threads, &cfg.format, "--format", "table", "json")
	if err != nil {
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
	pc.Notice = func(s string) { fmt.Fprintln(e.Stderr, "dragonfly rules profile: note: "+s) }
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
