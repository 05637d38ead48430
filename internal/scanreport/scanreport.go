// Package scanreport writes the results of dragonfly scan (package scanrun):
// one JSON object per target per line, a table for a terminal, SARIF 2.1.0
// for code-scanning dashboards, and the engine's counters (--stats). The
// JSON and SARIF shapes are an interface: fields are only ever added.
//
// What they show is bounded by the results: at most score.MaxStringMatches
// matches per string and score.MaxMatchBytes of data per match (escaped, or
// base64 in SARIF); error messages are the fleet's bounded failure reasons,
// on one line.
package scanreport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/scanrun"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/version"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// JSONResult is one line of `dragonfly scan --format json`.
type JSONResult struct {
	Target            string     `json:"target"`
	Score             int64      `json:"score"`
	RulesMatched      []string   `json:"rules_matched"`
	MostMaliciousFile *string    `json:"most_malicious_file"`
	Files             []JSONFile `json:"files"`
	// FilesScanned counts the files the verdict covers (regular files and
	// tar hard links), matched or not, and BytesScanned the expanded bytes
	// of the regular files: a file decided without a YARA pass of its own
	// (no rule's filetype admits it, or the match cache knew its bytes) is
	// counted as well, because it was read and its verdict is exact.
	FilesScanned int    `json:"files_scanned"`
	BytesScanned int64  `json:"bytes_scanned"`
	Error        string `json:"error,omitempty"`
	// A pypi: target: the release's inspector link (null when nothing
	// matched) and its distributions with their scores.
	InspectorURL  *string                 `json:"inspector_url,omitempty"`
	Distributions *[]scanrun.Distribution `json:"distributions,omitempty"`
}

// JSONFile is one matched file of a JSONResult.
type JSONFile struct {
	Path  string   `json:"path"`
	Score int64    `json:"score"`
	Rules []string `json:"rules"`
	// With --show-strings: the matched strings of the rules counted for
	// the file, at most score.MaxStringMatches per string, and how many
	// more there are.
	Matches        *[]JSONMatch `json:"matches,omitempty"`
	MatchesOmitted *int         `json:"matches_omitted,omitempty"`
}

// JSONMatch is one matched string in a file: its rule, its identifier
// ("$a"), its offset in bytes from the file's start (as yara -s prints it),
// the length of the match data libyara keeps (cut at 512 bytes) and at most
// the first score.MaxMatchBytes of that data, escaped (matchData).
type JSONMatch struct {
	Rule   string `json:"rule"`
	String string `json:"string"`
	Offset int64  `json:"offset"`
	Length int    `json:"length"`
	Data   string `json:"data"`
}

// fileMatches lists the matched strings of f, and counts those left out.
func fileMatches(f score.File) ([]JSONMatch, int) {
	out, omitted := []JSONMatch{}, 0
	for _, sh := range f.Strings {
		for _, m := range sh.Matches {
			out = append(out, JSONMatch{Rule: sh.Rule, String: sh.String, Offset: m.Offset, Length: m.Length, Data: matchData(m.Data)})
		}
		omitted += sh.Omitted
	}
	return out, omitted
}

// matchData shows matched bytes: printable ASCII other than the backslash
// as itself, every other byte as \xNN (lower-case hex).
func matchData(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x20 && c <= 0x7e && c != '\\' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
	}
	return sb.String()
}

func toJSON(r scanrun.Result, showStrings bool) JSONResult {
	out := JSONResult{Target: r.Target, RulesMatched: []string{}, Files: []JSONFile{}}
	if r.Release != nil {
		dists := r.Release.Distributions
		if dists == nil {
			dists = []scanrun.Distribution{}
		}
		out.Distributions = &dists
		if r.Release.InspectorURL != "" {
			u := r.Release.InspectorURL
			out.InspectorURL = &u
		}
	}
	if r.Err != nil {
		out.Error = oneLine(r.Err)
		return out
	}
	out.Score = r.Scan.Score
	out.FilesScanned = r.Scan.Stats.Files
	out.BytesScanned = r.Scan.Stats.Expanded
	out.RulesMatched = ruleNames(r.Scan.Rules)
	out.MostMaliciousFile = topFile(r.Scan.Distribution)
	for _, f := range r.Scan.Files {
		jf := JSONFile{Path: f.Path, Score: f.Score, Rules: ruleNames(f.Rules)}
		if showStrings {
			ms, omitted := fileMatches(f)
			jf.Matches, jf.MatchesOmitted = &ms, &omitted
		}
		out.Files = append(out.Files, jf)
	}
	return out
}

// Write writes the results in format: "json" (WriteJSON), "sarif"
// (WriteSARIF, rs describing the rules) or "table" (WriteTable).
func Write(w io.Writer, format string, rs *rules.Compiled, results []scanrun.Result, showStrings bool) error {
	switch format {
	case "json":
		return WriteJSON(w, results, showStrings)
	case "sarif":
		return WriteSARIF(w, rs, results)
	case "table":
		return WriteTable(w, results, showStrings)
	}
	return fmt.Errorf("format %q: not one of table, json, sarif", format)
}

// WriteJSON writes one line per target; showStrings adds each file's
// matched strings. Names from the input keep their exact value, their
// hidden runes escaped (clip.JSON): encoding/json leaves a bidi override
// or a C1 control raw, and the lines may reach a terminal.
func WriteJSON(w io.Writer, results []scanrun.Result, showStrings bool) error {
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	for _, r := range results {
		line.Reset()
		if err := enc.Encode(toJSON(r, showStrings)); err != nil {
			return err
		}
		if _, err := w.Write(clip.JSON(line.Bytes())); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable writes one row per target; showStrings adds, under the
// table, each matched file with its matched strings.
func WriteTable(w io.Writer, results []scanrun.Result, showStrings bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSCORE\tRULES\tMOST MALICIOUS FILE")
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t-\tERROR\t%s\n", cell(r.Target), cell(oneLine(r.Err)))
			continue
		}
		rs := strings.Join(ruleNames(r.Scan.Rules), ",")
		if rs == "" {
			rs = "-"
		}
		top := cell(r.Scan.TopFile)
		if top == "" {
			top = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", cell(r.Target), r.Scan.Score, rs, top)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !showStrings {
		return nil
	}
	for _, r := range results {
		if r.Err != nil {
			continue
		}
		for _, f := range r.Scan.Files {
			if len(f.Rules) == 0 {
				continue
			}
			fmt.Fprintf(w, "\n%s: %s (score %d, %s)\n", cell(r.Target), cell(f.Path), f.Score, strings.Join(ruleNames(f.Rules), ","))
			ms, omitted := fileMatches(f)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, m := range ms {
				fmt.Fprintf(tw, "  %s\t%s\t0x%x\t%d\t%s\n", m.Rule, m.String, m.Offset, m.Length, m.Data)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(ms) == 0 {
				fmt.Fprintln(w, "  (no strings: the conditions matched without them)")
			}
			if omitted > 0 {
				fmt.Fprintf(w, "  (%d more matches not shown: at most %d per string)\n", omitted, score.MaxStringMatches)
			}
		}
	}
	return nil
}

// cell is a name from the input (a target, a file path, an error) as the
// table shows it: as it is when it is printable UTF-8, else quoted
// (clip.Path), so that a hostile name's control characters (a carriage
// return, terminal escapes, a tab, a bidi override) cannot rewrite the rows
// on a terminal, say a matched target's as clean.
func cell(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		return clip.Path(s)
	}
	return s
}

// SARIF 2.1.0, the subset code-scanning dashboards read.
//
// Rules carry their "description" metadata as short and full description and
// their weight and filetype as properties. Artifacts are URIs, percent-encoded:
// a local file or directory as an absolute file:// URI, a file inside an
// archive as ARCHIVE-URI#path/in/archive, a file of a pypi: release as its
// distribution's download URL#path.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Results     []sarifResult     `json:"results"`
	Invocations []sarifInvocation `json:"invocations"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string         `json:"id"`
	ShortDescription sarifMessage   `json:"shortDescription"`
	FullDescription  *sarifMessage  `json:"fullDescription,omitempty"`
	Properties       map[string]any `json:"properties,omitempty"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID     string          `json:"ruleId"`
	RuleIndex  int             `json:"ruleIndex"`
	Level      string          `json:"level"`
	Message    sarifMessage    `json:"message"`
	Locations  []sarifLocation `json:"locations"`
	Properties map[string]any  `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
	Message          *sarifMessage `json:"message,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

// sarifRegion is a matched string: its offset in bytes from the file's
// start, its whole length (the bytes a viewer marks: not cut at the 512
// bytes of data libyara keeps), and its data (at most the first
// score.MaxMatchBytes bytes) as text when it is printable UTF-8, else
// base64 (binary).
type sarifRegion struct {
	ByteOffset int64         `json:"byteOffset"`
	ByteLength int           `json:"byteLength"`
	Snippet    *sarifContent `json:"snippet,omitempty"`
}

type sarifContent struct {
	Text   *string `json:"text,omitempty"`
	Binary *string `json:"binary,omitempty"`
}

type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level     string          `json:"level"`
	Message   sarifMessage    `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

// sarifLevel maps a rule weight to a SARIF level.
func sarifLevel(weight int64) string {
	switch {
	case weight >= 5:
		return "error"
	case weight > 0:
		return "warning"
	default:
		return "note"
	}
}

// WriteSARIF writes one SARIF 2.1.0 log of the results; rs describes the
// rules that matched.
func WriteSARIF(w io.Writer, rs *rules.Compiled, results []scanrun.Result) error {
	// The rules that matched, sorted, and each one's index among them.
	index := map[string]int{}
	var names []string
	for _, r := range results {
		if r.Err != nil {
			continue
		}
		for _, f := range r.Scan.Files {
			for _, h := range f.Rules {
				if _, ok := index[h.Name]; !ok {
					index[h.Name] = 0
					names = append(names, h.Name)
				}
			}
		}
	}
	sort.Strings(names)
	driver := sarifDriver{Name: "dragonfly", Version: version.String(), InformationURI: "https://github.com/dragonfly-fleet/fleet", Rules: []sarifRule{}}
	for i, n := range names {
		index[n] = i
		driver.Rules = append(driver.Rules, sarifRuleOf(rs, n))
	}

	run := sarifRun{Tool: sarifTool{Driver: driver}, Results: []sarifResult{}, Invocations: []sarifInvocation{{ExecutionSuccessful: true}}}
	for _, r := range results {
		if r.Err != nil {
			inv := &run.Invocations[0]
			inv.ExecutionSuccessful = false
			inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications, sarifNotification{
				Level: "error", Message: sarifMessage{Text: oneLine(r.Err)},
				Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: targetURI(r.Target)}}}},
			})
			continue
		}
		for _, f := range r.Scan.Files {
			uri := fileURI(r, f.Path)
			for _, h := range f.Rules {
				res := sarifResult{
					RuleID:     h.Name,
					RuleIndex:  index[h.Name],
					Level:      sarifLevel(h.Weight),
					Message:    sarifMessage{Text: fmt.Sprintf("YARA rule %s (weight %d) matched %s in %s", h.Name, h.Weight, f.Path, r.Target)},
					Properties: map[string]any{"target": r.Target, "file": f.Path, "weight": h.Weight, "distributionScore": r.Scan.Score},
				}
				// With --show-strings, one location per matched string.
				omitted := 0
				for _, sh := range f.Strings {
					if sh.Rule != h.Name {
						continue
					}
					omitted += sh.Omitted
					for _, m := range sh.Matches {
						res.Locations = append(res.Locations, sarifLocation{
							PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: uri}, Region: &sarifRegion{ByteOffset: m.Offset, ByteLength: m.MatchLength, Snippet: snippet(m.Data)}},
							Message:          &sarifMessage{Text: sh.String},
						})
					}
				}
				if omitted > 0 {
					res.Properties["matchesOmitted"] = omitted
				}
				if len(res.Locations) == 0 {
					res.Locations = []sarifLocation{{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: uri}}}}
				}
				run.Results = append(run.Results, res)
			}
		}
	}
	log := sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}}
	var doc bytes.Buffer
	enc := json.NewEncoder(&doc)
	enc.SetIndent("", "  ")
	if err := enc.Encode(log); err != nil {
		return err
	}
	// Hidden runes escaped, as WriteJSON escapes them.
	_, err := w.Write(clip.JSON(doc.Bytes()))
	return err
}

// snippet is matched data as SARIF content: text when it is UTF-8 without
// control characters other than tab, newline and carriage return, else
// base64. It is at most the first score.MaxMatchBytes bytes of the region.
func snippet(b []byte) *sarifContent {
	textual := utf8.Valid(b)
	for _, r := range string(b) {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			textual = false
		}
	}
	if textual {
		t := string(b)
		return &sarifContent{Text: &t}
	}
	bin := base64.StdEncoding.EncodeToString(b)
	return &sarifContent{Binary: &bin}
}

// sarifRuleOf describes rule n: its description metadata (else "YARA rule
// n"), weight and filetype (the metadata string, when the rule has one).
func sarifRuleOf(rs *rules.Compiled, n string) sarifRule {
	rule, _ := rs.Rule(n)
	sr := sarifRule{ID: n, ShortDescription: sarifMessage{Text: "YARA rule " + n}, Properties: map[string]any{"weight": rule.Weight}}
	if d := rs.Description(n); d != "" {
		sr.ShortDescription = sarifMessage{Text: d}
		sr.FullDescription = &sarifMessage{Text: d}
	}
	if rule.Filetypes != nil {
		sr.Properties["filetype"] = strings.Join(rule.Filetypes, " ")
	}
	return sr
}

// targetURI is the URI of a scan target: an http(s) URL as it is, a local
// path as an absolute file:// URI, percent-encoded.
func targetURI(target string) string {
	if isURL(target) {
		if u, err := url.Parse(target); err == nil {
			return u.String()
		}
		return (&url.URL{Opaque: url.PathEscape(target)}).String()
	}
	if abs, err := filepath.Abs(target); err == nil {
		if _, err := os.Stat(abs); err == nil {
			return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
		}
	}
	// Not on disk (a built-in demo package): a relative reference.
	return (&url.URL{Path: filepath.ToSlash(target)}).String()
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// fileURI is the URI of the file at path (as results name it) in the scan
// of r: under a directory target, the file's own file:// URI; a raw target
// (one file, not an archive), the target's; inside an archive,
// ARCHIVE-URI#path; in a pypi: release (path DISTRIBUTION/inner),
// DOWNLOAD-URL#inner.
func fileURI(r scanrun.Result, path string) string {
	if r.Release != nil {
		dist, inner, _ := strings.Cut(path, "/")
		for _, d := range r.Release.Distributions {
			if d.Filename == dist {
				return withFragment(d.URL, inner)
			}
		}
		return withFragment(targetURI(r.Target), path)
	}
	if !isURL(r.Target) {
		if fi, err := os.Stat(r.Target); err == nil && fi.IsDir() {
			abs, err := filepath.Abs(filepath.Join(r.Target, filepath.FromSlash(path)))
			if err == nil {
				return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
			}
		}
	}
	if r.Scan.Stats.Format == archive.Raw.String() {
		return targetURI(r.Target)
	}
	return withFragment(targetURI(r.Target), path)
}

// withFragment appends path, percent-encoded, as the fragment of uri
// (replacing a fragment it has).
func withFragment(uri, path string) string {
	base, _, _ := strings.Cut(uri, "#")
	return base + "#" + (&url.URL{Fragment: path}).EscapedFragment()
}

// topFile is the result's most malicious file, nil when nothing matched.
func topFile(d score.Distribution) *string {
	if d.TopFile == "" {
		return nil
	}
	s := d.TopFile
	return &s
}

func ruleNames(hits []score.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.Name
	}
	return out
}

func oneLine(err error) string {
	return strings.ReplaceAll(fmt.Sprint(err), "\n", " ")
}

// WriteStats writes what the engine did and saved (dragonfly scan --stats).
func WriteStats(w io.Writer, results []scanrun.Result, c scan.Counters) {
	var files, links int
	for _, r := range results {
		files += r.Scan.Stats.Files
		links += r.Scan.Stats.Links
	}
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	row := func(name, format string, args ...any) {
		fmt.Fprintf(w, "  %-26s %s\n", name, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(w, "dragonfly scan: stats\n")
	row("files scored", "%d (%d hard links)", files, links)
	row("scanned", "%d files, %s", c.Scans, mb(c.ScannedBytes))
	row("skipped by filetype", "%d files, %s (no rule admits their path)", c.Skipped, mb(c.SkippedBytes))
	row("match cache hits", "%d files, %s not scanned again (%d entries, %s held)", c.CacheHits, mb(c.CacheHitBytes), c.CacheEntries, mb(c.CacheBytes))
	row("scanned again for links", "%d files", c.Rescans)
	row("rule subsets compiled", "%d in %.2f s (%d fell back to the whole set)", c.Subsets, c.SubsetTime.Seconds(), c.SubsetFailures)
}
