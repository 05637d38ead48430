package main

import (
	"context"
	"fmt"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/rules"
)

func init() {
	register(command{
		name: "rules", summary: "the rule workbench: check (compile and lint rule files), profile (the cost of each rule)",
		run: runRules,
	})
}

const rulesUsage = `usage: dragonfly rules check PATH...
       dragonfly rules profile --rules PATH [--format table|json] TARGET...

check    compiles rule files as the fleet does and prints libyara's warnings
         and errors and Dragonfly's metadata lint, as FILE:LINE: warning: ...
profile  measures what each rule costs over archives or directories

Run 'dragonfly rules check --help' or 'dragonfly rules profile --help' for more.`

// runRules dispatches to the subcommands of dragonfly rules.
func runRules(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError("no subcommand\n\n%s", rulesUsage)
	}
	switch args[0] {
	case "check":
		return runRulesCheck(ctx, e, args[1:])
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(e.stdout, rulesUsage)
		return nil
	}
	return usageError("unknown subcommand %q\n\n%s", clip.String(args[0], 256), rulesUsage)
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

func runRulesCheck(_ context.Context, e *env, args []string) error {
	s := e.settingsFor("dragonfly rules check", rulesCheckUsage)
	if err := s.Parse(args, e.getenv, ""); err != nil {
		return err
	}
	if len(s.Args()) == 0 {
		return usageError("no rule files (see dragonfly rules check --help)")
	}
	set, err := loadRuleFiles(s.Args())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	rep, err := rules.Check(set)
	if err != nil {
		return err
	}
	for _, d := range rep.Diagnostics {
		fmt.Fprintln(e.stdout, d)
	}
	errs := rep.Errors()
	warns := len(rep.Diagnostics) - errs
	if rep.Compiled == nil {
		fmt.Fprintf(e.stderr, "dragonfly rules check: %s do not compile: %s, %s\n",
			plural(len(set.Sources), "file"), plural(errs, "error"), plural(warns, "warning"))
		return &exitError{code: 1}
	}
	fmt.Fprintf(e.stderr, "dragonfly rules check: %s in %s compile: %s\n",
		plural(rep.Compiled.Len(), "rule"), plural(len(set.Sources), "file"), plural(warns, "warning"))
	return nil
}

// loadRuleFiles loads every path (rules.Load) into one set; two sources
// with one stem are an error, as in one directory.
func loadRuleFiles(paths []string) (rules.Set, error) {
	out := rules.Set{Sources: map[string]string{}, Files: map[string]string{}}
	for _, p := range paths {
		set, err := rules.Load(p)
		if err != nil {
			return rules.Set{}, err
		}
		for _, st := range set.Stems() {
			if _, dup := out.Sources[st]; dup {
				return rules.Set{}, fmt.Errorf("rules: two sources with stem %q: %s and %s", clip.String(st, 256), clip.Path(out.FileName(st)), clip.Path(set.FileName(st)))
			}
			out.Sources[st] = set.Sources[st]
			out.Files[st] = set.FileName(st)
		}
		if len(paths) == 1 {
			out.Hash = set.Hash
		}
	}
	if out.Hash == "" {
		out.Hash = rules.ContentHash(out.Sources)
	}
	return out, nil
}

// plural is "1 rule", "2 rules".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
