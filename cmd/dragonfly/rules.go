package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
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
	set, err := loadRuleFiles(s.Args())
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
	errs := rep.Errors()
	warns := len(rep.Diagnostics) - errs
	if rep.Compiled == nil {
		fmt.Fprintf(e.Stderr, "dragonfly rules check: %s do not compile: %s, %s\n",
			plural(len(set.Sources), "file"), plural(errs, "error"), plural(warns, "warning"))
		return cli.Exit(1, nil)
	}
	fmt.Fprintf(e.Stderr, "dragonfly rules check: %s in %s compile: %s\n",
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
	if err := s.Parse(args, e.Getenv, e.Dir); err != nil {
		return err
	}
	lim, _, err := cfg.limitSet.resolve()
	if err != nil {
		return err
	}
	if cfg.threads <= 0 {
		return cli.Usage("DRAGONFLY_THREADS=%d: must be positive", cfg.threads)
	}
	if cfg.format == "" {
		cfg.format = "json"
		if cli.IsTerminal(e.Stdout) {
			cfg.format = "table"
		}
	}
	if cfg.format != "table" && cfg.format != "json" {
		return cli.Usage("--format %q: not one of table, json", clip.String(cfg.format, 256))
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

	progress := func(string, ...any) {}
	if cli.IsTerminal(e.Stderr) {
		progress = func(format string, a ...any) {
			fmt.Fprintf(e.Stderr, "\r\033[K"+format, a...)
		}
	}
	// The targets' files stay in memory to the end: collect garbage early
	// rather than let the heap grow to twice their size.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	progress("unpacking %s", plural(len(targets), "target"))
	files, held, err := unpackTargets(ctx, targets, lim, cfg.maxMemory)
	if err != nil {
		progress("")
		return err
	}
	rep, err := rules.Profile(ctx, set, files, rules.ProfileConfig{
		Threads: cfg.threads, Timeout: lim.ScanTimeout, MaxMatchData: 1,
		Progress: func(done, total int, what string) {
			progress("profiling %d/%d: %s", done, total, clip.String(what, 128))
		},
	})
	progress("")
	if err != nil {
		var ce *rules.CompileError
		if errors.As(err, &ce) {
			return cli.Exit(2, err)
		}
		return err
	}
	fmt.Fprintf(e.Stderr, "dragonfly rules profile: %s over %s (%s, %s distinct held in memory) from %s\n",
		plural(len(rep.Rules), "rule"), plural(rep.Files, "file"), megabytes(rep.Bytes), megabytes(held), plural(len(targets), "target"))
	if cfg.format == "json" {
		fmt.Fprintln(e.Stderr, "dragonfly rules profile: "+profileNote(rep))
		return writeProfileJSON(e.Stdout, rep)
	}
	return writeProfileTable(e.Stdout, rep)
}

// unpackTargets unpacks every target into memory under lim: archives and
// other files (read up to the download limit) as the fleet walks them,
// directories file by file. Hard links are left out: the fleet scans their
// bytes once, under their target's name. Identical contents are held once;
// all of them within maxMemory bytes.
func unpackTargets(ctx context.Context, targets []string, lim limit.Limits, maxMemory int64) ([]rules.ProfileFile, int64, error) {
	// Each file is read into one scratch buffer (the walk emits a file
	// before it asks for the next) and kept as an exact copy only when its
	// content is new.
	var (
		files   []rules.ProfileFile
		held    int64
		scratch []byte
		seen    = map[[sha256.Size]byte][]byte{}
	)
	tooMuch := fmt.Errorf("the targets' files hold more than --max-memory (%s)", cli.FormatSize(maxMemory))
	alloc := func(_ context.Context, n int) ([]byte, error) {
		if int64(n) > maxMemory {
			return nil, tooMuch
		}
		if cap(scratch) < n {
			scratch = make([]byte, n)
		}
		return scratch[:n], nil
	}
	emit := func(_ int, path string, data []byte) error {
		sum := sha256.Sum256(data)
		kept, ok := seen[sum]
		if !ok {
			if held+int64(len(data)) > maxMemory {
				return tooMuch
			}
			kept = bytes.Clone(data)
			seen[sum] = kept
			held += int64(len(kept))
		}
		files = append(files, rules.ProfileFile{Path: path, Data: kept})
		return nil
	}
	link := func(int, string, int) error { return nil }
	for _, t := range targets {
		fi, err := os.Stat(t)
		if err != nil {
			return nil, 0, err
		}
		if fi.IsDir() {
			_, err = scan.DirProducer(t, lim)(ctx, alloc, emit, link)
		} else {
			var data []byte
			if data, err = readLimited(t, lim.Download); err == nil {
				_, err = archive.Walk(ctx, data, filepath.Base(t), lim, alloc, emit, link)
			}
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", clip.Path(t), err)
		}
	}
	return files, held, nil
}

// readLimited reads a file of at most max bytes.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, &limit.Error{Kind: limit.Download, Max: max}
	}
	return data, nil
}

// profileJSON is one rule of dragonfly rules profile --format json.
type profileJSON struct {
	Rule     string   `json:"rule"`
	File     string   `json:"file"`
	Seconds  float64  `json:"seconds"`
	Share    float64  `json:"share"`
	Matches  *int     `json:"matches"`
	Bytes    int64    `json:"bytes"`
	Files    int      `json:"files"`
	Timeouts int      `json:"timeouts"`
	Warnings []string `json:"warnings"`
}

func writeProfileJSON(w io.Writer, rep rules.ProfileReport) error {
	out := make([]profileJSON, 0, len(rep.Rules))
	for _, r := range rep.Rules {
		j := profileJSON{Rule: r.Rule, File: r.File, Seconds: r.Seconds, Share: r.Share, Bytes: r.Bytes, Files: r.Files, Timeouts: r.Timeouts, Warnings: []string{}}
		if r.Matches >= 0 {
			m := r.Matches
			j.Matches = &m
		}
		for _, d := range r.Warnings {
			j.Warnings = append(j.Warnings, d.String())
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeProfileTable(w io.Writer, rep rules.ProfileReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tFILE\tSECONDS\tSHARE\tMATCHES\tBYTES\tWARNINGS")
	for _, r := range rep.Rules {
		matches := "-"
		if r.Matches >= 0 {
			matches = fmt.Sprint(r.Matches)
		}
		if r.Timeouts > 0 {
			matches += fmt.Sprintf(" (%s)", plural(r.Timeouts, "timeout"))
		}
		var warns []string
		for _, d := range r.Warnings {
			warns = append(warns, fmt.Sprintf("line %d: %s", d.Line, d.Text))
		}
		if len(warns) == 0 {
			warns = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.1f%%\t%s\t%s\t%s\n", r.Rule, r.File, r.Seconds, 100*r.Share, matches, megabytes(r.Bytes), strings.Join(warns, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s\n%s\n", profileVerdict(rep), profileNote(rep))
	return err
}

// profileVerdict names the rules that stand out: the top k before the
// largest drop in cost among the first ten (a rule costing at least twice
// the next), as "2 rules take 49% of the time: a, b."; without such a drop,
// the fewest rules that take 80%.
func profileVerdict(rep rules.ProfileReport) string {
	rs := rep.Rules
	if rep.Sum <= 0 || len(rs) == 0 {
		return "No rule took measurable time over these files."
	}
	k, best := 0, 2.0
	for i := 1; i < min(len(rs), 11); i++ {
		next := max(rs[i].Seconds, 1e-9)
		if r := rs[i-1].Seconds / next; r >= best {
			k, best = i, r
		}
	}
	prefix := ""
	if k == 0 {
		prefix = "No rule stands out: "
		for share := 0.0; k < len(rs) && share < 0.8; k++ {
			share += rs[k].Share
		}
	}
	share := 0.0
	var names []string
	for _, r := range rs[:k] {
		share += r.Share
		names = append(names, r.Rule)
	}
	verb := "take"
	if k == 1 {
		verb = "takes"
	}
	list := strings.Join(names, ", ")
	if k > 5 {
		list = fmt.Sprintf("%s and %d more", strings.Join(names[:5], ", "), k-5)
	}
	return fmt.Sprintf("%s%s %s %.0f%% of the time: %s.", prefix, plural(k, "rule"), verb, 100*share, list)
}

// profileNote says what the costs are and how their sum compares with the
// full set.
func profileNote(rep rules.ProfileReport) string {
	return fmt.Sprintf("Each cost is the rule's scan alone (with the rules it may depend on) over the files its filetype admits, "+
		"minus the same files' scan without it; their sum, %.3f s, only approximates the full set's scan time, %.3f s over all %s "+
		"(a set without rules: %.3f s), as the full set searches every string in one pass.",
		rep.Sum, rep.FullSet, plural(rep.Files, "file"), rep.Empty)
}

// megabytes formats a byte count in MB (10^6 bytes).
func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
