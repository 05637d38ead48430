// Package workbench is the rule author's workbench behind dragonfly rules:
// loading a set from several paths as the fleet compiles it (Load; package
// rules checks and lints it), unpacking real archives into memory for
// rules.Profile (Unpack, bounded by the scan limits and a memory budget,
// identical files held once), and the profile's table and JSON writers with
// a verdict on the rules that stand out.
package workbench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// Load loads every path (rules.Load: a directory of .yara/.yar files, one
// file, or a GET /rules document) into one set, each source keeping the file
// it was read from; two sources with one stem are an error, as in one
// directory.
func Load(paths []string) (rules.Set, error) {
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

// Plural is "1 rule", "2 rules".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// CheckSummary sums up a check of a set of files: "2 rules in 2 files
// compile: 2 warnings", or "2 files do not compile: 1 error, 0 warnings".
func CheckSummary(rep rules.Report, files int) string {
	errs := rep.Errors()
	warns := len(rep.Diagnostics) - errs
	if rep.Compiled == nil {
		return fmt.Sprintf("%s %s not compile: %s, %s", Plural(files, "file"), verb(files, "does", "do"), Plural(errs, "error"), Plural(warns, "warning"))
	}
	n := rep.Compiled.Len()
	return fmt.Sprintf("%s in %s %s: %s", Plural(n, "rule"), Plural(files, "file"), verb(n, "compiles", "compile"), Plural(warns, "warning"))
}

// verb is one when n is 1, else many: "1 file does", "2 files do".
func verb(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ProfileConfig configures Profile.
type ProfileConfig struct {
	// Threads scan files at once. Default: the CPUs available
	// (runtime.GOMAXPROCS).
	Threads int
	// Limits bound the unpacking and, by ScanTimeout, each file's scan
	// (0: 10 s). Required: a zero limit admits nothing.
	Limits limit.Limits
	// Memory bounds the targets' distinct files held (Unpack). Required.
	Memory Budget
	// Progress, if set, receives a line at each step ("unpacking 2
	// targets", "profiling 3/9: RULE") and "" when done.
	Progress func(format string, a ...any)
	// Notice, if set, receives what the user should know about the
	// targets: archives found inside a directory target are profiled as
	// they are (bytes, as the fleet scans an archive inside a package), not
	// unpacked.
	Notice func(string)
}

// Profile unpacks the targets (Unpack) and measures each rule of set over
// their files (rules.Profile). held is what the distinct files took. While
// they are held the garbage collector runs at 10% (GOGC) rather than let
// the heap grow to twice their size.
func Profile(ctx context.Context, set rules.Set, targets []string, cfg ProfileConfig) (rep rules.ProfileReport, held int64, err error) {
	progress := cfg.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	defer progress("")
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	progress("unpacking %s", Plural(len(targets), "target"))
	var inDirs int
	files, held, err := unpack(ctx, targets, cfg.Limits, cfg.Memory, &inDirs)
	if err != nil {
		return rules.ProfileReport{}, 0, err
	}
	if inDirs > 0 && cfg.Notice != nil {
		verb := "is"
		if inDirs != 1 {
			verb = "are"
		}
		cfg.Notice(fmt.Sprintf("%s in the directories given %s profiled as bytes (as the fleet scans an archive inside a package), not unpacked; to profile what an archive holds, give it as a target (DIR/*)", Plural(inDirs, "archive"), verb))
	}
	rep, err = rules.Profile(ctx, set, files, rules.ProfileConfig{
		Threads: cfg.Threads, Timeout: cfg.Limits.ScanTimeout, MatchMemory: cfg.Limits.MatchMemory, MaxMatchData: 1,
		Progress: func(done, total int, what string) {
			progress("profiling %d/%d: %s", done, total, clip.String(what, 128))
		},
	})
	return rep, held, err
}

// ProfileSummary sums up a profile of targets: "6 rules over 91 files
// (2.3 MB, 2.2 MB distinct held in memory) from 2 targets".
func ProfileSummary(rep rules.ProfileReport, held int64, targets int) string {
	return fmt.Sprintf("%s over %s (%s, %s distinct held in memory) from %s",
		Plural(len(rep.Rules), "rule"), Plural(rep.Files, "file"), Megabytes(rep.Bytes), Megabytes(held), Plural(targets, "target"))
}

// Budget is the memory the unpacked files of Unpack may take.
type Budget struct {
	Bytes int64
	// Name names the budget in the error when it is exceeded, as the user
	// set it ("--max-memory (2GiB)").
	Name string
}

// Unpack unpacks every target into memory under lim, for rules.Profile:
// archives and other files (read up to the download limit) as the fleet
// walks them, directories file by file. Hard links are left out: the fleet
// scans their bytes once, under their target's name. Identical contents are
// held once; all of them within mem (held is what they take).
func Unpack(ctx context.Context, targets []string, lim limit.Limits, mem Budget) ([]rules.ProfileFile, int64, error) {
	return unpack(ctx, targets, lim, mem, new(int))
}

// unpack is Unpack, counting in inDirs the files of directory targets
// whose content is an archive.
func unpack(ctx context.Context, targets []string, lim limit.Limits, mem Budget, inDirs *int) ([]rules.ProfileFile, int64, error) {
	// Each file is read into one scratch buffer (the walk emits a file
	// before it asks for the next) and kept as an exact copy only when its
	// content is new.
	var (
		files   []rules.ProfileFile
		held    int64
		scratch []byte
		seen    = map[[sha256.Size]byte][]byte{}
	)
	maxMemory := mem.Bytes
	tooMuch := fmt.Errorf("the targets' files hold more than %s", mem.Name)
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
			counted := func(index int, path string, data []byte) error {
				if archive.Detect(data[:min(len(data), 1024)]) != archive.Raw {
					*inDirs++
				}
				return emit(index, path, data)
			}
			_, err = scan.DirProducer(t, lim)(ctx, alloc, counted, link)
		} else {
			var data []byte
			if data, err = limit.ReadFile(t, lim.Download); err == nil {
				_, err = archive.Walk(ctx, data, filepath.Base(t), lim, alloc, emit, link)
			}
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", clip.Path(t), err)
		}
	}
	return files, held, nil
}

// profileJSON is one rule of dragonfly rules profile --format json.
type profileJSON struct {
	Rule     string  `json:"rule"`
	File     string  `json:"file"`
	Seconds  float64 `json:"seconds"`
	Share    float64 `json:"share"`
	Matches  *int    `json:"matches"`
	Bytes    int64   `json:"bytes"`
	Files    int     `json:"files"`
	Timeouts int     `json:"timeouts"`
	// OverMatchMemory counts the files whose scan was stopped because
	// libyara's matches passed the match memory bound.
	OverMatchMemory int      `json:"over_match_memory"`
	Warnings        []string `json:"warnings"`
}

// WriteProfileJSON writes the report as a JSON array, most expensive rule
// first (the shape of dragonfly rules profile --format json).
func WriteProfileJSON(w io.Writer, rep rules.ProfileReport) error {
	out := make([]profileJSON, 0, len(rep.Rules))
	for _, r := range rep.Rules {
		j := profileJSON{Rule: r.Rule, File: r.File, Seconds: r.Seconds, Share: r.Share, Bytes: r.Bytes, Files: r.Files, Timeouts: r.Timeouts, OverMatchMemory: r.OverMatchMemory, Warnings: []string{}}
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

// WriteProfileTable writes the report as a table, most expensive rule first,
// then the Verdict and the Note.
func WriteProfileTable(w io.Writer, rep rules.ProfileReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tFILE\tSECONDS\tSHARE\tMATCHES\tBYTES\tWARNINGS")
	for _, r := range rep.Rules {
		matches := "-"
		if r.Matches >= 0 {
			matches = fmt.Sprint(r.Matches)
		}
		var stopped []string
		if r.Timeouts > 0 {
			stopped = append(stopped, Plural(r.Timeouts, "timeout"))
		}
		if r.OverMatchMemory > 0 {
			stopped = append(stopped, fmt.Sprintf("%d over match memory", r.OverMatchMemory))
		}
		if len(stopped) > 0 {
			matches += " (" + strings.Join(stopped, ", ") + ")"
		}
		var warns []string
		for _, d := range r.Warnings {
			warns = append(warns, fmt.Sprintf("line %d: %s", d.Line, d.Text))
		}
		if len(warns) == 0 {
			warns = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.1f%%\t%s\t%s\t%s\n", r.Rule, clip.Path(r.File), r.Seconds, 100*r.Share, matches, Megabytes(r.Bytes), strings.Join(warns, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s\n%s\n", Verdict(rep), Note(rep))
	return err
}

// Verdict names the rules that stand out: the top k before the
// largest drop in cost among the first ten (a rule costing at least twice
// the next), as "2 rules take 49% of the time: a, b."; without such a drop,
// the fewest rules that take 80%.
func Verdict(rep rules.ProfileReport) string {
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
	return fmt.Sprintf("%s%s %s %.0f%% of the time: %s.", prefix, Plural(k, "rule"), verb, 100*share, list)
}

// Note says what the costs are and how their sum compares with the
// full set.
func Note(rep rules.ProfileReport) string {
	return fmt.Sprintf("Each cost is the rule's scan alone (with the rules it may depend on) over the files its filetype admits, "+
		"minus the same files' scan without it; their sum, %.3f s, only approximates the full set's scan time, %.3f s over all %s "+
		"(a set without rules: %.3f s), as the full set searches every string in one pass.",
		rep.Sum, rep.FullSet, Plural(rep.Files, "file"), rep.Empty)
}

// Megabytes formats a byte count in MB (10^6 bytes).
func Megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
