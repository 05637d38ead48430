// Package score turns YARA matches into Dragonfly results: file, distribution
// and package scores, the matched rule names and the inspector link.
//
// The semantics are those of the reference client as specified in
// dragonfly-api.md:
//   - a rule counts for a file only if it has no filetype metadata or the
//     file's path ends with one of the suffixes the metadata lists, split on
//     each single space as the reference client splits it (case-sensitive;
//     an empty suffix, as in ".py  .txt", matches every path);
//   - file score = sum of the weights of the distinct rules counted for it;
//   - distribution score = sum of the weights of the distinct rules counted
//     anywhere in the distribution;
//   - a sum past the int64 range is the nearest bound (Sum), where the
//     reference client's release build wraps around: two rules of weight
//     math.MaxInt64 would score -2 and read as clean;
//   - package score = maximum distribution score (0 with no distributions);
//   - rules_matched = sorted union of counted rule names;
//   - inspector_url points at the top file of the top distribution, or is
//     empty (null on the wire) when that distribution matched nothing.
//
// Ties are broken by order: among equal file scores the file that comes first
// in the archive wins; among equal distribution scores the distribution listed
// first in the job wins, one where a rule matched before one where none did
// (so a package whose rules matched always has a link).
package score

import (
	"cmp"
	"math"
	"math/bits"
	"net/url"
	"slices"
	"strings"
)

// Rule is the scoring metadata of one YARA rule.
type Rule struct {
	// Name is the YARA rule identifier (what the API reports).
	Name string
	// Weight is the rule's "weight" metadata; 0 when missing or not an integer.
	Weight int64
	// Filetypes are the suffixes from the "filetype" metadata, as
	// ParseFiletypes splits them; nil means any file. An empty suffix (from
	// "", a leading, trailing or doubled space) is a suffix of every path.
	Filetypes []string
}

// Applies reports whether the rule counts for a file at path.
func (r Rule) Applies(path string) bool {
	if len(r.Filetypes) == 0 {
		return true
	}
	for _, s := range r.Filetypes {
		if strings.HasSuffix(path, s) {
			return true
		}
	}
	return false
}

// ParseFiletypes splits a "filetype" metadata value into suffixes exactly as
// the reference client does (Python's str.split(" ")): on each single space,
// keeping empty entries. "" gives [""], ".py  .txt" gives [".py", "", ".txt"],
// and an empty entry is a suffix of every path, so such a rule counts in every
// file. Only the space separates: a tab or a newline is part of a suffix.
func ParseFiletypes(v string) []string { return strings.Split(v, " ") }

// Hit is a rule counted in a result, by name and weight.
type Hit struct {
	Name   string
	Weight int64
}

// File is one scanned file and the rules counted for it.
type File struct {
	Path  string
	Rules []Hit // distinct, sorted by name
	Score int64
	// Strings are the matched strings of the rules counted for the file,
	// by rule (sorted by name) and then in the order the rule declares its
	// strings; nil unless the scan engine was asked for them
	// (scan.Config.MatchDetails).
	Strings []StringHits
}

// StringHits are the matches of one string of a rule in one file, as
// `yara -s -L` lists them: each match's offset, the length of the matched
// data libyara kept, and the data.
type StringHits struct {
	Rule   string // rule identifier
	String string // string identifier, "$a"
	// Matches are the first matches by offset, at most MaxStringMatches.
	Matches []StringMatch
	// Omitted counts the matches beyond Matches.
	Omitted int
}

// StringMatch is one match of a string.
type StringMatch struct {
	// Offset is the match's position in bytes from the start of the file.
	Offset int64
	// Length is the length of the matched data libyara kept: the match's
	// length, cut at its max match data (512 bytes).
	Length int
	// MatchLength is the match's whole length in the file.
	MatchLength int
	// Data is the matched data, at most MaxMatchBytes of it.
	Data []byte
}

// Bounds of the strings listed per file.
const (
	// MaxStringMatches is how many matches of one string a File lists.
	MaxStringMatches = 16
	// MaxMatchBytes is how many bytes of one match's data a File keeps.
	MaxMatchBytes = 64
)

// NewFileStrings is NewFile that also keeps, of the strings matched in the
// file (strs, by rule), those of the rules counted for it.
func NewFileStrings(path string, matched []Rule, strs []StringHits) File {
	f := NewFile(path, matched)
	if len(f.Rules) == 0 || len(strs) == 0 {
		return f
	}
	for _, s := range strs {
		if _, ok := slices.BinarySearchFunc(f.Rules, s.Rule, func(h Hit, name string) int { return strings.Compare(h.Name, name) }); ok {
			f.Strings = append(f.Strings, s)
		}
	}
	slices.SortStableFunc(f.Strings, func(a, b StringHits) int { return strings.Compare(a.Rule, b.Rule) })
	return f
}

// NewFile applies the filetype filter to the rules that matched the file at
// path and returns the file's result. Duplicate rules count once.
func NewFile(path string, matched []Rule) File {
	f := File{Path: path}
	for _, r := range matched {
		if !r.Applies(path) {
			continue
		}
		f.Rules = append(f.Rules, Hit{Name: r.Name, Weight: r.Weight})
	}
	slices.SortFunc(f.Rules, func(a, b Hit) int { return strings.Compare(a.Name, b.Name) })
	f.Rules = slices.CompactFunc(f.Rules, func(a, b Hit) bool { return a.Name == b.Name })
	f.Score = Sum(f.Rules)
	return f
}

// Sum is the sum of the hits' weights, computed exactly and clamped to the
// int64 range: the same for any order of the hits, and never wrapped around
// to a low or negative score by weights near the limits.
func Sum(hits []Hit) int64 {
	var hi int64 // the sum is hi<<64 + lo, two's complement
	var lo uint64
	for _, h := range hits {
		var carry uint64
		lo, carry = bits.Add64(lo, uint64(h.Weight), 0)
		hi += int64(carry) + h.Weight>>63
	}
	switch {
	case hi == 0 && lo <= math.MaxInt64, hi == -1 && lo > math.MaxInt64:
		return int64(lo)
	case hi < 0:
		return math.MinInt64
	}
	return math.MaxInt64
}

// Distribution is the result of scanning one distribution.
type Distribution struct {
	// Score is the sum of the weights of the distinct rules counted anywhere.
	Score int64
	// Rules are the distinct rules counted anywhere, sorted by name.
	Rules []Hit
	// TopFile is the path of the file with the highest score (first in archive
	// order among equals); empty when no rule counted for any file.
	TopFile string
	// TopScore is TopFile's score.
	TopScore int64
	// Files lists the files with at least one counted rule, in archive order.
	Files []File
}

// Tally accumulates file results of one distribution, in any order. It is not
// safe for concurrent use.
type Tally struct {
	// TopOnly keeps of the files only the top one, and the rules counted
	// anywhere: Distribution is the same but for Files, which holds the top
	// file alone. A worker reports nothing else, and a distribution of
	// 65,536 matching files under 4 KiB paths would otherwise hold 256 MiB
	// of paths until its scan ends.
	TopOnly bool
	files   []indexed
	top     indexed
	rules   map[string]int64 // with TopOnly: the rules counted, by name
}

type indexed struct {
	index int
	file  File
}

// Add records the result of the file at position index in the archive.
// Files without counted rules are ignored.
func (t *Tally) Add(index int, f File) {
	if len(f.Rules) == 0 {
		return
	}
	if !t.TopOnly {
		t.files = append(t.files, indexed{index, f})
		return
	}
	if t.rules == nil {
		t.rules = map[string]int64{}
	}
	for _, h := range f.Rules {
		t.rules[h.Name] = h.Weight
	}
	// The first in archive order among the highest scores, as Distribution
	// picks it from all the files.
	if t.top.file.Rules == nil || f.Score > t.top.file.Score || f.Score == t.top.file.Score && index < t.top.index {
		t.top = indexed{index, f}
	}
}

// Distribution returns the distribution result of everything added so far.
func (t *Tally) Distribution() Distribution {
	if t.TopOnly {
		var d Distribution
		if t.top.file.Rules != nil {
			d.Files = []File{t.top.file}
			d.TopFile, d.TopScore = t.top.file.Path, t.top.file.Score
		}
		for name, w := range t.rules {
			d.Rules = append(d.Rules, Hit{Name: name, Weight: w})
		}
		slices.SortFunc(d.Rules, func(a, b Hit) int { return strings.Compare(a.Name, b.Name) })
		d.Score = Sum(d.Rules)
		return d
	}
	files := slices.Clone(t.files)
	slices.SortStableFunc(files, func(a, b indexed) int { return cmp.Compare(a.index, b.index) })
	var d Distribution
	weights := map[string]int64{}
	for i, x := range files {
		d.Files = append(d.Files, x.file)
		if i == 0 || x.file.Score > d.TopScore {
			d.TopFile, d.TopScore = x.file.Path, x.file.Score
		}
		for _, h := range x.file.Rules {
			weights[h.Name] = h.Weight
		}
	}
	for name, w := range weights {
		d.Rules = append(d.Rules, Hit{Name: name, Weight: w})
	}
	slices.SortFunc(d.Rules, func(a, b Hit) int { return strings.Compare(a.Name, b.Name) })
	d.Score = Sum(d.Rules)
	return d
}

// Package is the aggregated result of a release.
type Package struct {
	Score        int64
	RulesMatched []string // sorted, duplicate-free
	// Hits are the same rules with their weights, heaviest first (then by
	// name): the package's top rules.
	Hits []Hit
	// Top is the index of the top distribution (highest score; among
	// equals, the first where a rule matched, else the first), or -1 with
	// no distributions.
	Top int
	// TopFile is the top distribution's top file; empty when it matched nothing.
	TopFile string
}

// Aggregate combines the results of a release's distributions, given in the
// job's order.
func Aggregate(dists []Distribution) Package {
	p := Package{Top: -1}
	seen := map[string]bool{}
	for i, d := range dists {
		// Among equal scores a distribution where a rule matched wins
		// over one where none did: the link is null only when nothing
		// matched.
		if p.Top < 0 || d.Score > p.Score || d.Score == p.Score && dists[p.Top].TopFile == "" && d.TopFile != "" {
			p.Top, p.Score = i, d.Score
		}
		for _, h := range d.Rules {
			if !seen[h.Name] {
				seen[h.Name] = true
				p.RulesMatched = append(p.RulesMatched, h.Name)
				p.Hits = append(p.Hits, h)
			}
		}
	}
	slices.Sort(p.RulesMatched)
	slices.SortFunc(p.Hits, func(a, b Hit) int {
		if c := cmp.Compare(b.Weight, a.Weight); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if p.RulesMatched == nil {
		p.RulesMatched = []string{}
	}
	if p.Top >= 0 {
		p.TopFile = dists[p.Top].TopFile
	}
	return p
}

// InspectorURL links a file of a distribution on inspector.pypi.io:
// https://inspector.pypi.io/project/{name}/{version}/{download URL path}/{file path}.
// Path segments are escaped where needed; an empty filePath gives "". A
// browser resolves a dot segment ("..", and "%2e%2e" or ".%2E" too), so
// one would move the link out of its release, to another project's file:
// the download URL's and the file path's are left out, and a name or
// version that is one gives "".
func InspectorURL(name, version, downloadURL, filePath string) string {
	if filePath == "" {
		return ""
	}
	name, version = url.PathEscape(name), url.PathEscape(version)
	if dotSegment(name) || dotSegment(version) {
		return ""
	}
	segs := []string{"https://inspector.pypi.io/project", name, version}
	if u, err := url.Parse(downloadURL); err == nil {
		for _, s := range strings.Split(strings.TrimPrefix(u.EscapedPath(), "/"), "/") {
			if !dotSegment(s) {
				segs = append(segs, s)
			}
		}
	} else {
		segs = append(segs, "")
	}
	for _, s := range strings.Split(filePath, "/") {
		if s = url.PathEscape(s); !dotSegment(s) {
			segs = append(segs, s)
		}
	}
	return strings.Join(segs, "/")
}

// dotSegment reports whether an escaped path segment is one a browser
// resolves: "." or "..", either dot perhaps written "%2e" (any case).
func dotSegment(s string) bool {
	switch strings.ToLower(s) {
	case ".", "..", "%2e", ".%2e", "%2e.", "%2e%2e":
		return true
	}
	return false
}
