package scan_test

// The proof that scanning less is exact: the pruned and cached engine and the
// plain one (Config.Exhaustive: every file with every rule, no cache) give
// the same reports, field by field, over
//   - the bench corpus (bench/corpus, built by `go run ./bench/cmd/mkcorpus`,
//     which downloads Debian packages) with the bench rules: with the tag
//     benchcorpus (benchcorpus_test.go; `bench/run --only exact`);
//   - a generated corpus (always): releases of an sdist (with hard links) and
//     a wheel carrying the same files, filled with the bench rules' strings,
//     some broken or over a limit, under the bench rules and under rule sets
//     built from them without filetypes, with private and global rules;
//   - the hostile distributions (internal/testkit), downloaded through the
//     verdict path;
//   - FuzzPrunedEqualsPlain: random rule sets (random filetype metadata with
//     double, leading and trailing spaces, private and global rules, rules
//     naming rules by name, by rule-set wildcard and in rule sets, negative
//     and non-integer weights) over random archives.
// Both engines run the same verdict path (worker/verdict) as workers do, and
// the pruned one keeps only the top file as a worker's does (TopFileOnly):
// its reports are compared with the plain one's, whose files are cut to the
// top one.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
	"github.com/dragonfly-fleet/fleet/worker/verdict"
	"golang.org/x/sync/errgroup"
)

// distReport is everything a worker reports or measures about one
// distribution, except timings and the counts of work saved.
type distReport struct {
	Name         string
	Reason       string
	Kind         fleetv1.FailureKind
	Limit        string
	Distribution score.Distribution
	Format       string
	Entries      int
	Files        int
	Links        int
	Expanded     int64
}

// releaseReport is what a release's report to the API says.
type releaseReport struct {
	Reason       string
	Score        int64
	RulesMatched []string
	InspectorURL string
	Dists        []distReport
}

// source is one distribution of a release: in memory (its download URL is
// made up) or at a URL.
type source struct {
	name string
	url  string
	data []byte
}

type release struct {
	name, version string
	dists         []source
}

// scanRelease scans a release's distributions through the verdict path and
// builds its report as the coordinator does: the first failing distribution
// fails it; else score, rules and inspector_url from score.Aggregate.
func scanRelease(t testing.TB, v *verdict.Scanner, rs *rules.Compiled, r release) releaseReport {
	t.Helper()
	var out releaseReport
	var dists []score.Distribution
	urls := make([]string, len(r.dists))
	for i, d := range r.dists {
		src := verdict.Source{Data: d.data, Name: d.name}
		urls[i] = "https://files.example/packages/aa/bb/cc/" + d.name
		if d.data == nil {
			src, urls[i] = verdict.Source{URL: d.url}, d.url
		}
		res, err := v.Scan(context.Background(), rs, src)
		dr := distReport{Name: res.Name}
		if err != nil {
			f := verdict.Failure(res.Name, err)
			dr.Reason, dr.Kind, dr.Limit = f.GetReason(), f.GetKind(), f.GetLimit()
			if out.Reason == "" {
				out.Reason = f.GetReason()
			}
		} else {
			dr.Distribution = res.Distribution
			st := res.Stats
			dr.Format, dr.Entries, dr.Files, dr.Links, dr.Expanded = st.Format, st.Entries, st.Files, st.Links, st.Expanded
			dists = append(dists, res.Distribution)
		}
		out.Dists = append(out.Dists, dr)
	}
	if out.Reason == "" {
		p := score.Aggregate(dists)
		out.Score, out.RulesMatched = p.Score, p.RulesMatched
		if p.Top >= 0 {
			out.InspectorURL = score.InspectorURL(r.name, r.version, urls[p.Top], p.TopFile)
		}
	}
	return out
}

// pair is the plain engine and the pruned, cached one, with the same limits.
type pair struct {
	plain, pruned *verdict.Scanner
	engine        *scan.Engine // the pruned one
}

func newPair(t testing.TB, lim limit.Limits, fetcher *fetch.Fetcher) pair {
	plain := scan.New(scan.Config{Threads: 2, Limits: lim, Exhaustive: true, MaxMatchData: 1})
	pruned := scan.New(scan.Config{Threads: 2, Limits: lim, MaxMatchData: 1, TopFileOnly: true})
	t.Cleanup(plain.Close)
	t.Cleanup(pruned.Close)
	return pair{
		plain:  &verdict.Scanner{Engine: plain, Fetcher: fetcher, Limits: lim},
		pruned: &verdict.Scanner{Engine: pruned, Fetcher: fetcher, Limits: lim},
		engine: pruned,
	}
}

// compare scans every release with both engines (the pruned one scans them
// several at a time, so identical bytes meet in flight) and fails on the
// first difference.
func (p pair) compare(t testing.TB, rs *rules.Compiled, releases []release) (matched int) {
	t.Helper()
	pruned := make([]releaseReport, len(releases))
	var g errgroup.Group
	g.SetLimit(4)
	for i, r := range releases {
		g.Go(func() error {
			pruned[i] = scanRelease(t, p.pruned, rs, r)
			return nil
		})
	}
	g.Wait()
	for i, r := range releases {
		want := topFileOnly(scanRelease(t, p.plain, rs, r))
		if !reflect.DeepEqual(pruned[i], want) {
			t.Fatalf("release %s %s:\npruned %s\nplain  %s", r.name, r.version, js(pruned[i]), js(want))
		}
		if want.Score != 0 || len(want.RulesMatched) > 0 {
			matched++
		}
	}
	return matched
}

// topFileOnly is r with each distribution's files cut to its top one, as
// an engine with TopFileOnly lists them: the first in archive order among
// the highest scores.
func topFileOnly(r releaseReport) releaseReport {
	for i := range r.Dists {
		d := &r.Dists[i].Distribution
		for _, f := range d.Files {
			if f.Score == d.TopScore {
				d.Files = []score.File{f}
				break
			}
		}
	}
	return r
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// benchRules are the bench rules (bench/rules).
func benchRules(t testing.TB) rules.Set {
	t.Helper()
	return scan.LoadSet(t, filepath.Join("..", "..", "bench", "rules"))
}

// literals are the text strings the bench rules search for.
func literals(set rules.Set) []string {
	re := regexp.MustCompile(`\$\w*\s*=\s*"((?:[^"\\]|\\.)*)"`)
	var out []string
	for _, st := range set.Stems() {
		for _, m := range re.FindAllStringSubmatch(set.Sources[st], -1) {
			if s, err := strconv.Unquote(`"` + m[1] + `"`); err == nil && s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

var suffixes = []string{".py", "setup.py", "/PKG-INFO", "/METADATA", ".pth", ".pyw", "_test.py", "tests.py", ".txt", ".so", "/LICENSE", ".json", ".md", ".cfg", ".py.bak", "/RECORD"}

// genFile is a file of Python-like text with some of tokens in it.
func genFile(rng *rand.Rand, tokens []string) []byte {
	var b bytes.Buffer
	for range 4 + rng.IntN(30) {
		fmt.Fprintf(&b, "x%d = %d\n", rng.IntN(1000), rng.IntN(1000))
		if rng.IntN(3) == 0 {
			b.WriteString(tokens[rng.IntN(len(tokens))])
			b.WriteByte('\n')
		}
	}
	if rng.IntN(10) == 0 {
		b.WriteString("'" + strings.Repeat("QUJD", 60) + "'\n") // a base64 blob
	}
	return b.Bytes()
}

// zipOf is a wheel of files (path, body), in order.
func zipOf(t testing.TB, files [][2]string) []byte {
	ents := make([]testkit.ZipEntry, len(files))
	for i, f := range files {
		ents[i] = testkit.ZipEntry{Name: f[0], Body: []byte(f[1])}
	}
	return testkit.Zip(t, ents...)
}

// genRelease is a release of an sdist and a wheel carrying the same files
// (the sdist with hard links giving some files other names), sometimes
// broken (truncated) or with a file over the file limit (fileLimit).
func genRelease(t testing.TB, rng *rand.Rand, i int, tokens []string, fileLimit int) release {
	name, version := fmt.Sprintf("gen%03d", i), fmt.Sprintf("1.%d", rng.IntN(5))
	base := name + "-" + version
	var files [][2]string
	nfiles := 1 + rng.IntN(12)
	for f := range nfiles {
		body := genFile(rng, tokens)
		if f > 0 && rng.IntN(5) == 0 {
			body = []byte(files[rng.IntN(len(files))][1]) // the same bytes under another name
		}
		path := fmt.Sprintf("%s/m%d%s", name, f, suffixes[rng.IntN(len(suffixes))])
		files = append(files, [2]string{path, string(body)})
	}
	if rng.IntN(12) == 0 {
		files = append(files, [2]string{name + "/big.py", strings.Repeat("exec(", fileLimit/5+1)})
	}
	var ents []testkit.TarEntry
	for _, f := range files {
		ents = append(ents, testkit.TarEntry{Name: base + "/" + f[0], Body: []byte(f[1])})
		if rng.IntN(4) == 0 {
			target := ents[len(ents)-1].Name
			ents = append(ents, testkit.TarEntry{Name: fmt.Sprintf("%s/l%d%s", base, len(ents), suffixes[rng.IntN(len(suffixes))]), Type: '1', Link: target})
		}
	}
	sdist := testkit.GzipFast(t, testkit.Tar(t, ents...))
	whl := zipOf(t, files)
	switch rng.IntN(15) {
	case 0:
		sdist = sdist[:len(sdist)*2/3]
	case 1:
		whl = whl[:len(whl)-10]
	}
	return release{name: name, version: version, dists: []source{
		{name: base + ".tar.gz", data: sdist},
		{name: base + "-py3-none-any.whl", data: whl},
	}}
}

// withoutFiletypes is set with every filetype metadata renamed (so no rule
// has one).
func withoutFiletypes(set rules.Set) rules.Set {
	out := rules.Set{Sources: map[string]string{}}
	for st, src := range set.Sources {
		out.Sources[st] = strings.ReplaceAll(src, "filetype =", "filetyp_ =")
	}
	out.Hash = rules.ContentHash(out.Sources)
	return out
}

// withDependencies adds to set private and global rules and rules naming
// other rules.
func withDependencies(set rules.Set) rules.Set {
	out := rules.Set{Sources: maps(set.Sources)}
	out.Sources["zz_deps"] = `
private rule zz_priv { strings: $a = "import os" condition: $a }
global rule zz_global { condition: filesize < 1000000 }
rule zz_uses_priv { meta: weight = 7 filetype = ".txt  .json" condition: zz_priv and exec_base64_payload }
rule zz_chain { meta: weight = -2 filetype = "METADATA" condition: zz_uses_priv or net_discord_webhook or not zz_priv }
`
	out.Hash = rules.ContentHash(out.Sources)
	return out
}

func maps(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestPrunedEqualsPlainGenerated: the generated corpus under the bench
// rules, the bench rules without filetypes, and with dependencies added.
func TestPrunedEqualsPlainGenerated(t *testing.T) {
	set := benchRules(t)
	tokens := literals(set)
	if len(tokens) < 100 {
		t.Fatalf("%d literals in the bench rules", len(tokens))
	}
	lim := limit.Limits{File: 64 << 10, Expanded: 4 << 20, Entries: 200}
	for _, tc := range []struct {
		name string
		set  rules.Set
	}{{"bench", set}, {"no filetypes", withoutFiletypes(set)}, {"dependencies", withDependencies(set)}} {
		t.Run(tc.name, func(t *testing.T) {
			rs := scan.CompileSet(t, tc.set)
			rng := rand.New(rand.NewPCG(7, 11))
			var releases []release
			for i := range 120 {
				releases = append(releases, genRelease(t, rng, i, tokens, int(lim.File)))
			}
			p := newPair(t, lim, nil)
			matched := p.compare(t, rs, releases)
			c := p.engine.Counters()
			t.Logf("%d releases (%d matched); pruned engine: %+v", len(releases), matched, c)
			pruning := tc.name != "no filetypes" // else every path admits every rule
			if matched < 40 || c.CacheHits == 0 || pruning && (c.Rescans == 0 || c.Subsets == 0) || !pruning && (c.Rescans != 0 || c.Subsets != 0) {
				t.Errorf("the corpus does not exercise the engine: %d matched, counters %+v", matched, c)
			}
		})
	}
}

// TestPrunedEqualsPlainHostile: the hostile distributions, downloaded and
// scanned through the verdict path, fail or scan the same.
func TestPrunedEqualsPlainHostile(t *testing.T) {
	cases := testkit.HostileCases(t)
	srv := testkit.HostileServer(t, cases)
	lim := testkit.HostileLimits()
	fetcher, err := fetch.New(fetch.Config{
		AllowedHosts: []string{srv.URL}, MaxSize: lim.Download,
		StallTimeout: testkit.HostileStall, TotalTimeout: 30 * time.Second, Attempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	rs := scan.CompileSet(t, withDependencies(benchRules(t)))
	var releases []release
	for _, c := range cases {
		releases = append(releases, release{name: "hostile", version: "1.0", dists: []source{{url: srv.URL + "/" + c.Dist}}})
	}
	p := newPair(t, lim, fetcher)
	p.compare(t, rs, releases)
	// And the cases must still be what they are: a failure where one is
	// expected.
	for i, c := range cases {
		r := scanRelease(t, p.pruned, rs, releases[i])
		if c.Clean() != (r.Reason == "") {
			t.Errorf("%s: reason %q", c.Name, r.Reason)
		}
	}
}

// ruleGen writes random rule sets.
type ruleGen struct {
	rng    *rand.Rand
	tokens []string
}

var fuzzSuffixes = []string{".py", "py", ".txt", "setup.py", "METADATA", ".pth", "", "x", ".PY", "/a.py", "m1.py"}

func (g ruleGen) filetype() string {
	switch g.rng.IntN(8) {
	case 0:
		return "" // no metadata
	case 1:
		return "filetype = 3\n"
	case 2:
		return `filetype = ""` + "\n"
	}
	var parts []string
	for range 1 + g.rng.IntN(3) {
		parts = append(parts, fuzzSuffixes[g.rng.IntN(len(fuzzSuffixes))])
	}
	sep := []string{" ", " ", " ", "  ", "\t"}[g.rng.IntN(5)]
	v := strings.Join(parts, sep)
	switch g.rng.IntN(6) {
	case 0:
		v = " " + v
	case 1:
		v += " "
	}
	return fmt.Sprintf("filetype = %q\n", v)
}

func (g ruleGen) weight() string {
	switch g.rng.IntN(6) {
	case 0:
		return ""
	case 1:
		return `weight = "5"` + "\n"
	}
	return fmt.Sprintf("weight = %d\n", g.rng.IntN(21)-6)
}

// set writes n rules: private and global ones, rules naming earlier rules.
func (g ruleGen) set(n int) string {
	var b strings.Builder
	for i := range n {
		switch g.rng.IntN(8) {
		case 0:
			b.WriteString("private ")
		case 1:
			if g.rng.IntN(2) == 0 {
				b.WriteString("global ")
			}
		}
		fmt.Fprintf(&b, "rule r%d {\n meta:\n  %s  %s  n = 1\n strings:\n", i, g.weight(), g.filetype())
		ns := 1 + g.rng.IntN(3)
		for s := range ns {
			tok := g.tokens[g.rng.IntN(len(g.tokens))]
			mod := []string{"", "", " nocase", " wide ascii", " fullword"}[g.rng.IntN(5)]
			fmt.Fprintf(&b, "  $s%d = %q%s\n", s, tok, mod)
		}
		// Every string referenced (libyara refuses unreferenced strings).
		conds := []string{"any of them", "all of them", "$s0 and any of them", "#s0 >= 2 and any of them",
			"(not $s0) or all of them", "filesize > 10 and any of them", "#s0 == 0 or 2 of them"}
		c := conds[g.rng.IntN(len(conds))]
		if ns == 1 && g.rng.IntN(3) == 0 {
			c = "not $s0"
		}
		if i > 0 && g.rng.IntN(2) == 0 {
			// A rule by name, a rule-set wildcard (r1* names r1 and
			// r10 to r19 when declared before; libyara refuses a rule
			// declared after a wildcard naming it) or a rule set.
			k := g.rng.IntN(i)
			ref := fmt.Sprintf("r%d", k)
			switch g.rng.IntN(4) {
			case 0:
				later := false
				for j := i + 1; j < n; j++ {
					later = later || strings.HasPrefix(strconv.Itoa(j), strconv.Itoa(k))
				}
				if !later {
					ref = fmt.Sprintf("any of (r%d*)", k)
				}
			case 1:
				ref = fmt.Sprintf("1 of (r%d, r%d)", k, g.rng.IntN(i))
			}
			c = fmt.Sprintf("(%s) %s %s", c, []string{"and", "or", "and not"}[g.rng.IntN(3)], ref)
		}
		fmt.Fprintf(&b, " condition:\n  %s\n}\n", c)
	}
	return b.String()
}

// fuzzTokens are the strings random rules search for and random files hold.
var fuzzTokens = []string{"exec(", "import os", "ALPHA", "base64", "eval", "socket", "aa", "abc", "zz", "\x00\x01"}

// genArchive writes a random sdist (tar.gz, maybe with hard links) or wheel
// of random files made of fuzz tokens.
func genArchive(t testing.TB, rng *rand.Rand, i int) source {
	var files [][2]string
	for f := range 1 + rng.IntN(8) {
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteString(fuzzTokens[rng.IntN(len(fuzzTokens))])
			b.WriteString([]string{" ", "\n", "", "x"}[rng.IntN(4)])
		}
		if f > 0 && rng.IntN(4) == 0 {
			b.Reset()
			b.WriteString(files[rng.IntN(len(files))][1])
		}
		name := fmt.Sprintf("p/m%d%s", f, []string{".py", ".txt", "setup.py", "/METADATA", ".pth", "", ".PY", "  .py", "x"}[rng.IntN(9)])
		files = append(files, [2]string{name, b.String()})
	}
	if rng.IntN(2) == 0 {
		return source{name: fmt.Sprintf("f%d-1.0-py3-none-any.whl", i), data: zipOf(t, files)}
	}
	var ents []testkit.TarEntry
	for _, f := range files {
		ents = append(ents, testkit.TarEntry{Name: "f-1.0/" + f[0], Body: []byte(f[1])})
		for rng.IntN(3) == 0 {
			target := ents[rng.IntN(len(ents))]
			if target.Type != 0 {
				break
			}
			ents = append(ents, testkit.TarEntry{Name: fmt.Sprintf("f-1.0/p/l%d%s", len(ents), []string{".py", ".txt", "setup.py", ".pth"}[rng.IntN(4)]), Type: '1', Link: target.Name})
		}
	}
	data := testkit.GzipFast(t, testkit.Tar(t, ents...))
	if rng.IntN(10) == 0 {
		data = data[:rng.IntN(len(data))]
	}
	return source{name: fmt.Sprintf("f%d-1.0.tar.gz", i), data: data}
}

// FuzzPrunedEqualsPlain: a random rule set over random releases gives the
// same reports pruned and cached as plain. The engines (and the pruned one's
// cache) live across inputs, so bytes and rules meet again.
func FuzzPrunedEqualsPlain(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 4, 5, 42, 1000, 77777} {
		f.Add(seed, uint8(6), uint8(4))
	}
	lim := limit.Limits{File: 200, Expanded: 600, Entries: 40}
	p := newPair(f, lim, nil)
	f.Fuzz(func(t *testing.T, seed uint64, nrules, nreleases uint8) {
		rng := rand.New(rand.NewPCG(seed, uint64(nrules)<<8|uint64(nreleases)))
		g := ruleGen{rng: rng, tokens: fuzzTokens}
		src := g.set(1 + int(nrules)%12)
		rs, err := rules.Compile(rules.Set{Sources: map[string]string{"fuzz": src}})
		if err != nil {
			t.Fatalf("generated rules do not compile: %v\n%s", err, src)
		}
		var releases []release
		for i := range 1 + int(nreleases)%6 {
			r := release{name: fmt.Sprintf("f%d", i), version: "1.0"}
			for j := range 1 + rng.IntN(3) {
				r.dists = append(r.dists, genArchive(t, rng, 10*i+j))
			}
			releases = append(releases, r)
		}
		p.compare(t, rs, releases)
	})
}
