package score

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
)

var (
	r1 = Rule{Name: "r1", Weight: 5}
	r2 = Rule{Name: "r2", Weight: 3}
	r3 = Rule{Name: "r3", Weight: 10}
)

func tally(files ...File) Distribution {
	var t Tally
	for i, f := range files {
		t.Add(i, f)
	}
	return t.Distribution()
}

func TestWorkedExample(t *testing.T) {
	// dragonfly-api.md: sdist files a/setup.py {r1 w5, r2 w3} and a/x.py {r1};
	// wheel files b/x.py {r1} and b/y.py {r3 w10}. Sdist 8, wheel 15.
	sdist := tally(NewFile("a/setup.py", []Rule{r1, r2}), NewFile("a/x.py", []Rule{r1}))
	wheel := tally(NewFile("b/x.py", []Rule{r1}), NewFile("b/y.py", []Rule{r3}))
	if sdist.Score != 8 || wheel.Score != 15 {
		t.Fatalf("sdist %d wheel %d, want 8 and 15", sdist.Score, wheel.Score)
	}
	p := Aggregate([]Distribution{sdist, wheel})
	if p.Score != 15 || p.Top != 1 || p.TopFile != "b/y.py" {
		t.Fatalf("package = %+v", p)
	}
	if !slices.Equal(p.RulesMatched, []string{"r1", "r2", "r3"}) {
		t.Fatalf("rules_matched = %v", p.RulesMatched)
	}
	if want := []Hit{{"r3", 10}, {"r1", 5}, {"r2", 3}}; !slices.Equal(p.Hits, want) {
		t.Fatalf("hits = %v, want %v (heaviest first)", p.Hits, want)
	}
	url := InspectorURL("a", "1.0", "https://files.pythonhosted.org/packages/aa/bb/cc/a-1.0-py3-none-any.whl", p.TopFile)
	if want := "https://inspector.pypi.io/project/a/1.0/packages/aa/bb/cc/a-1.0-py3-none-any.whl/b/y.py"; url != want {
		t.Fatalf("inspector = %s, want %s", url, want)
	}
}

func TestFileScores(t *testing.T) {
	cases := []struct {
		name    string
		path    string
		matched []Rule
		score   int64
		rules   []string
	}{
		{"no match", "x.py", nil, 0, nil},
		{"sum of weights", "x.py", []Rule{r1, r2}, 8, []string{"r1", "r2"}},
		{"a rule counts once per file", "x.py", []Rule{r1, r1}, 5, []string{"r1"}},
		{"missing weight is 0", "x.py", []Rule{{Name: "info"}}, 0, []string{"info"}},
		{"negative weight", "x.py", []Rule{r1, {Name: "good", Weight: -7}}, -2, []string{"good", "r1"}},
		{"filetype suffix matches", "pkg/setup.py", []Rule{{Name: "s", Weight: 2, Filetypes: []string{"setup.py"}}}, 2, []string{"s"}},
		{"filetype suffix does not match", "pkg/main.py", []Rule{{Name: "s", Weight: 2, Filetypes: []string{"setup.py"}}}, 0, nil},
		{"any of several filetypes", "a.pyw", []Rule{{Name: "w", Weight: 1, Filetypes: []string{".py", ".pyw"}}}, 1, []string{"w"}},
		{"filetype is case-sensitive", "A.PY", []Rule{{Name: "p", Weight: 1, Filetypes: []string{".py"}}}, 0, nil},
		{"filetype is a plain suffix, not an extension", "pkg/notsetup.py", []Rule{{Name: "s", Weight: 2, Filetypes: []string{"setup.py"}}}, 2, []string{"s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFile(tc.path, tc.matched)
			var names []string
			for _, h := range f.Rules {
				names = append(names, h.Name)
			}
			if f.Score != tc.score || !slices.Equal(names, tc.rules) {
				t.Fatalf("score %d rules %v, want %d %v", f.Score, names, tc.score, tc.rules)
			}
		})
	}
}

func TestDistinctRulesPerDistribution(t *testing.T) {
	// r1 hits ten files: it counts once.
	var files []File
	for range 10 {
		files = append(files, NewFile("f.py", []Rule{r1}))
	}
	d := tally(files...)
	if d.Score != 5 || len(d.Rules) != 1 || len(d.Files) != 10 {
		t.Fatalf("distribution = %+v", d)
	}
}

func TestTies(t *testing.T) {
	// Equal file scores: the first in archive order wins, whatever the order
	// results arrive in.
	var tl Tally
	tl.Add(2, NewFile("c.py", []Rule{r1}))
	tl.Add(0, NewFile("a.py", []Rule{r1}))
	tl.Add(1, NewFile("b.py", []Rule{r1}))
	d := tl.Distribution()
	if d.TopFile != "a.py" {
		t.Fatalf("top file %s, want a.py (first in archive order)", d.TopFile)
	}
	if d.Files[0].Path != "a.py" || d.Files[2].Path != "c.py" {
		t.Fatalf("files not in archive order: %+v", d.Files)
	}
	// Equal distribution scores: the first distribution of the job wins.
	one := tally(NewFile("x/one.py", []Rule{r1}))
	two := tally(NewFile("y/two.py", []Rule{r1}))
	if p := Aggregate([]Distribution{one, two}); p.Top != 0 || p.TopFile != "x/one.py" {
		t.Fatalf("package = %+v", p)
	}
}

// TestTiedDistributionsLinkAMatchedFile: among distributions of the top
// score, one where a rule matched is the top one, so a package whose rules
// matched is never reported with a null inspector_url (dragonfly-api.md:
// null only "when nothing matched"). A clean sdist listed before a wheel
// whose only match weighs 0 (or whose weights cancel out) gave
// rules_matched [info] and no link.
func TestTiedDistributionsLinkAMatchedFile(t *testing.T) {
	clean := tally(NewFile("s/setup.py", nil))
	info := tally(NewFile("w/info.py", []Rule{{Name: "info"}}))
	cancel := tally(NewFile("w/x.py", []Rule{{Name: "bad", Weight: 5}, {Name: "good", Weight: -5}}))
	first, second := tally(NewFile("x/one.py", []Rule{r1})), tally(NewFile("y/two.py", []Rule{r1}))
	for _, tc := range []struct {
		name    string
		dists   []Distribution
		top     int
		topFile string
	}{
		{"a clean distribution before a match of weight 0", []Distribution{clean, info}, 1, "w/info.py"},
		{"a match of weight 0 before a clean distribution", []Distribution{info, clean}, 0, "w/info.py"},
		{"a clean distribution before weights that cancel out", []Distribution{clean, cancel}, 1, "w/x.py"},
		{"two matched distributions: the first", []Distribution{first, second}, 0, "x/one.py"},
		{"two clean distributions: the first, no link", []Distribution{clean, clean}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Aggregate(tc.dists)
			if p.Score != tc.dists[tc.top].Score || p.Top != tc.top || p.TopFile != tc.topFile {
				t.Fatalf("package = %+v, want top %d (%q)", p, tc.top, tc.topFile)
			}
		})
	}
}

func TestNegativeTopFile(t *testing.T) {
	d := tally(NewFile("a.py", []Rule{{Name: "good", Weight: -3}}), NewFile("b.py", []Rule{{Name: "better", Weight: -1}}))
	if d.Score != -4 || d.TopFile != "b.py" || d.TopScore != -1 {
		t.Fatalf("distribution = %+v", d)
	}
}

func TestEmpty(t *testing.T) {
	empty := tally()
	if empty.Score != 0 || empty.TopFile != "" || len(empty.Rules) != 0 {
		t.Fatalf("empty archive = %+v", empty)
	}
	p := Aggregate(nil)
	if p.Score != 0 || p.Top != -1 || p.TopFile != "" || p.RulesMatched == nil || len(p.RulesMatched) != 0 {
		t.Fatalf("zero distributions = %+v (rules_matched must be [] not null)", p)
	}
	// A clean package: score 0, no inspector link.
	p = Aggregate([]Distribution{empty, tally(NewFile("a.py", nil))})
	if p.Score != 0 || p.TopFile != "" {
		t.Fatalf("clean package = %+v", p)
	}
	if u := InspectorURL("n", "1", "https://h/p/n-1.tar.gz", p.TopFile); u != "" {
		t.Fatalf("inspector for a clean package = %q, want empty (null)", u)
	}
}

func TestMaxDistributionNotSum(t *testing.T) {
	a := tally(NewFile("a.py", []Rule{r1}))
	b := tally(NewFile("b.py", []Rule{r2}))
	if p := Aggregate([]Distribution{a, b}); p.Score != 5 || !slices.Equal(p.RulesMatched, []string{"r1", "r2"}) {
		t.Fatalf("package = %+v", p)
	}
	// All distributions negative: the maximum is still the score.
	n1 := tally(NewFile("a.py", []Rule{{Name: "g", Weight: -3}}))
	n2 := tally(NewFile("b.py", []Rule{{Name: "h", Weight: -1}}))
	if p := Aggregate([]Distribution{n1, n2}); p.Score != -1 || p.Top != 1 {
		t.Fatalf("package = %+v", p)
	}
}

// TestInspectorURLEscaping: the file path is escaped into the link, and the
// download URL's path goes in as it was escaped in the URL (decoded, a
// "%20" became a space, a link that breaks at it, and a "%2F" a "/", a
// link to another path).
func TestInspectorURLEscaping(t *testing.T) {
	for _, c := range []struct{ url, file, want string }{
		{"https://files.pythonhosted.org/packages/aa/bb/pkg-1.0.tar.gz?x=1", "pkg-1.0/a dir/é.py",
			"https://inspector.pypi.io/project/pkg/1.0/packages/aa/bb/pkg-1.0.tar.gz/pkg-1.0/a%20dir/%C3%A9.py"},
		{"https://files.pythonhosted.org/packages/aa/bb/pkg%201%2F2-1.0.tar.gz", "pkg-1.0/setup.py",
			"https://inspector.pypi.io/project/pkg/1.0/packages/aa/bb/pkg%201%2F2-1.0.tar.gz/pkg-1.0/setup.py"},
	} {
		if got := InspectorURL("pkg", "1.0", c.url, c.file); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

// TestInspectorURLStaysInItsRelease: the link a browser follows stays
// under /project/NAME/VERSION/: a browser resolves "..", and "%2e%2e" or
// ".%2E" as well (the WHATWG URL standard's double-dot segments), so a
// download URL holding them (from the API, or an index whose hrefs Go's
// ResolveReference leaves encoded) pointed the link at another project's
// file. Such segments are left out; a name or version that is one gives
// no link.
func TestInspectorURLStaysInItsRelease(t *testing.T) {
	for _, c := range []struct{ name, version, url, file, want string }{
		{"pkg", "1.0", "https://files.pythonhosted.org/packages/%2e%2e/%2E%2e/.%2e/%2e./project/other/2.0/o.tar.gz", "pkg-1.0/setup.py",
			"https://inspector.pypi.io/project/pkg/1.0/packages/project/other/2.0/o.tar.gz/pkg-1.0/setup.py"},
		{"pkg", "1.0", "https://files.pythonhosted.org/packages/../../x/./pkg-1.0.tar.gz", "pkg-1.0/setup.py",
			"https://inspector.pypi.io/project/pkg/1.0/packages/x/pkg-1.0.tar.gz/pkg-1.0/setup.py"},
		{"pkg", "1.0", "https://h/pkg-1.0.tar.gz", "../../../other/1.0/x.py",
			"https://inspector.pypi.io/project/pkg/1.0/pkg-1.0.tar.gz/other/1.0/x.py"},
		{"..", "1.0", "https://h/pkg-1.0.tar.gz", "pkg-1.0/setup.py", ""},
		{"pkg", ".", "https://h/pkg-1.0.tar.gz", "pkg-1.0/setup.py", ""},
	} {
		got := InspectorURL(c.name, c.version, c.url, c.file)
		if got != c.want {
			t.Errorf("InspectorURL(%q, %q, %q, %q)\ngot  %s\nwant %s", c.name, c.version, c.url, c.file, got, c.want)
		}
		if u, err := url.Parse(got); got != "" && (err != nil || !strings.HasPrefix(u.JoinPath().Path, "/project/"+c.name+"/"+c.version+"/")) {
			t.Errorf("%s resolves to %v (%v)", got, u, err)
		}
	}
}

func TestParseFiletypes(t *testing.T) {
	// Split exactly as the reference client splits (Python's
	// str.split(" ")): on each single space, empty entries kept.
	cases := []struct {
		meta string
		want []string
	}{
		{"", []string{""}},
		{" ", []string{"", ""}},
		{".py", []string{".py"}},
		{".py setup.py", []string{".py", "setup.py"}},
		{".py ", []string{".py", ""}},
		{" .py", []string{"", ".py"}},
		{".py  .txt", []string{".py", "", ".txt"}},
		{".py\t.txt", []string{".py\t.txt"}},
		{".py\n.txt .pyw", []string{".py\n.txt", ".pyw"}},
	}
	for _, tc := range cases {
		if got := ParseFiletypes(tc.meta); !slices.Equal(got, tc.want) {
			t.Errorf("ParseFiletypes(%q) = %q, want %q", tc.meta, got, tc.want)
		}
	}
}

func TestFiletypeApplies(t *testing.T) {
	// Whether a rule with this filetype metadata counts for a file.
	paths := []string{"pkg/mod.py", "pkg/data.txt", "pkg/setup.py", "pkg/x.py\t.txt", "README"}
	cases := []struct {
		meta string
		want []bool // per path, in the order of paths
	}{
		{".py", []bool{true, false, true, false, false}},
		{".py setup.py", []bool{true, false, true, false, false}},
		// An empty entry is a suffix of every path: the rule counts everywhere.
		{"", []bool{true, true, true, true, true}},
		{" ", []bool{true, true, true, true, true}},
		{".py ", []bool{true, true, true, true, true}},
		{" .py", []bool{true, true, true, true, true}},
		{".py  .txt", []bool{true, true, true, true, true}},
		// Without an empty entry only the suffixes count.
		{".py .txt", []bool{true, true, true, true, false}},
		// A tab is not a separator: one suffix ".py\t.txt".
		{".py\t.txt", []bool{false, false, false, true, false}},
	}
	for _, tc := range cases {
		r := Rule{Name: "r", Weight: 1, Filetypes: ParseFiletypes(tc.meta)}
		for i, p := range paths {
			if got := r.Applies(p); got != tc.want[i] {
				t.Errorf("filetype %q, path %q: applies %v, want %v", tc.meta, p, got, tc.want[i])
			}
			f := NewFile(p, []Rule{r})
			if counted := f.Score == 1 && len(f.Rules) == 1; counted != tc.want[i] {
				t.Errorf("filetype %q, path %q: file %+v, counted %v", tc.meta, p, f, tc.want[i])
			}
		}
	}
	// No filetype metadata at all: any file.
	if r := (Rule{Name: "any"}); !r.Applies("whatever.bin") {
		t.Error("rule without filetypes does not apply to every file")
	}
}

// TestSumNeverWraps: weights near the int64 limits (a rule set's metadata is
// any 64-bit integer) give the exact sum clamped to the range, in any order:
// two rules of weight MaxInt64 wrapped to -2, a score that reads as clean.
func TestSumNeverWraps(t *testing.T) {
	const hi, lo = math.MaxInt64, math.MinInt64
	for _, c := range []struct {
		weights []int64
		want    int64
	}{
		{nil, 0},
		{[]int64{3, -1, 9}, 11},
		{[]int64{hi, hi}, hi},
		{[]int64{hi, hi, -5}, hi},
		{[]int64{hi, 1, -1}, hi},
		{[]int64{lo, lo}, lo},
		{[]int64{lo, -1, 1}, lo},
		{[]int64{hi, lo}, -1},
		{[]int64{hi, hi, lo, lo}, -2},
		{[]int64{hi, hi, hi, lo, lo, lo, 7}, 4},
	} {
		hits := make([]Hit, len(c.weights))
		for i, w := range c.weights {
			hits[i] = Hit{Name: fmt.Sprint("r", i), Weight: w}
		}
		// Every rotation of the hits: the order must not matter.
		for range max(len(hits), 1) {
			if got := Sum(hits); got != c.want {
				t.Errorf("Sum(%v) = %d, want %d", c.weights, got, c.want)
			}
			if len(hits) > 0 {
				hits = append(hits[1:], hits[0])
			}
		}
	}
	f := NewFile("evil.py", []Rule{{Name: "a", Weight: hi}, {Name: "b", Weight: hi}})
	if d := tally(f); f.Score != hi || d.Score != hi || d.TopScore != hi {
		t.Errorf("two rules of weight MaxInt64: file %d, distribution %d (top %d), want %d", f.Score, d.Score, d.TopScore, int64(hi))
	}
}

// TestSumClampsJustPastTheBounds: a sum one past either end of the int64
// range is that end, not the other one (the carry word decides it).
func TestSumClampsJustPastTheBounds(t *testing.T) {
	for _, c := range []struct {
		weights []int64
		want    int64
	}{
		{[]int64{math.MaxInt64}, math.MaxInt64},
		{[]int64{math.MaxInt64, 1}, math.MaxInt64},
		{[]int64{math.MinInt64}, math.MinInt64},
		{[]int64{math.MinInt64, -1}, math.MinInt64},
		{[]int64{math.MinInt64, 1}, math.MinInt64 + 1},
		{[]int64{math.MaxInt64, -1}, math.MaxInt64 - 1},
	} {
		hits := make([]Hit, len(c.weights))
		for i, w := range c.weights {
			hits[i] = Hit{Name: fmt.Sprint("r", i), Weight: w}
		}
		if got := Sum(hits); got != c.want {
			t.Errorf("Sum(%v) = %d, want %d", c.weights, got, c.want)
		}
	}
}

// TestTallyTopOnly: a tally that keeps only the top file gives the same
// distribution as one that keeps them all (but for Files: the top file
// alone), whatever the order the files are added in, ties included.
func TestTallyTopOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c", "d"}
	for round := range 200 {
		var all, top Tally
		top.TopOnly = true
		n := rng.IntN(12)
		for _, index := range rng.Perm(n) {
			var f File
			f.Path = fmt.Sprintf("f%d", index)
			for _, name := range names {
				if rng.IntN(3) == 0 {
					f.Rules = append(f.Rules, Hit{Name: name, Weight: int64(len(name)) * 3})
				}
			}
			f.Score = Sum(f.Rules)
			all.Add(index, f)
			top.Add(index, f)
		}
		want, got := all.Distribution(), top.Distribution()
		if got.Score != want.Score || got.TopFile != want.TopFile || got.TopScore != want.TopScore || !slices.Equal(got.Rules, want.Rules) {
			t.Fatalf("round %d: TopOnly %+v, want %+v", round, got, want)
		}
		if len(want.Files) == 0 && len(got.Files) != 0 || len(want.Files) > 0 && (len(got.Files) != 1 || got.Files[0].Path != want.TopFile) {
			t.Fatalf("round %d: TopOnly files %+v, want the top file %q alone", round, got.Files, want.TopFile)
		}
	}
}
