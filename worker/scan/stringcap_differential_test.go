package scan_test

import (
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// TestPrunedEqualsPlainAtStringMatchCap: FuzzPrunedEqualsPlain never
// reaches the string_matches limit (its files are at most 200 bytes, the cap
// is 1,000,000 matches of one string), so this compares the two engines
// where it fires. A file repeating the string of a rule its filetype does
// not admit (a .txt rule's "AB" in m.py) more than 1,000,000 times: the
// pruned engine scans m.py with the .py rule only (or not at all) and
// reports it, while the plain one failed it with string_matches for a
// string whose rule never counts there. A capped string of a rule that
// counts for the file, one such a rule depends on, or one a hard link's
// path admits (the pruned engine scans the file again for the link) fails
// it in both.
func TestPrunedEqualsPlainAtStringMatchCap(t *testing.T) {
	const over = 1_100_000 // past YR_MAX_STRING_MATCHES
	src := `
private rule txt_helper { strings: $h = "CD" condition: $h }
rule txt { meta: weight = 5 filetype = ".txt" strings: $a = "AB" condition: $a }
rule py { meta: weight = 1 filetype = ".py" strings: $b = "zz" condition: $b }
rule json_uses_helper { meta: weight = 2 filetype = ".json" condition: txt_helper }
`
	rs, err := rules.Compile(rules.Set{Sources: map[string]string{"cap": src}})
	if err != nil {
		t.Fatal(err)
	}
	lim := limit.Limits{File: 4 << 20, Expanded: 16 << 20, Entries: 40}
	ab, cd := strings.Repeat("AB", over), strings.Repeat("CD", over)
	wheel := func(files ...[2]string) []source {
		return []source{{name: "cap-1.0-py3-none-any.whl", data: zipOf(t, files)}}
	}
	// An sdist of a file and a hard link to it.
	linked := func(file, body, link string) []source {
		data := testkit.GzipFast(t, testkit.Tar(t,
			testkit.TarEntry{Name: "cap-1.0/" + file, Body: []byte(body)},
			testkit.TarEntry{Name: "cap-1.0/" + link, Type: '1', Link: "cap-1.0/" + file}))
		return []source{{name: "cap-1.0.tar.gz", data: data}}
	}
	releases := []release{
		// Capped strings of rules m.py, m.c and m.py do not admit.
		{name: "other", version: "1.0", dists: wheel([2]string{"p/m.py", ab + "zz"})},
		{name: "none", version: "1.0", dists: wheel([2]string{"p/m.c", ab})},
		{name: "private", version: "1.0", dists: wheel([2]string{"p/m.py", cd + "zz"})},
		{name: "links", version: "1.0", dists: linked("m.py", ab+"zz", "l.c")},
		// Capped strings of rules that count: both fail.
		{name: "own", version: "1.0", dists: wheel([2]string{"p/m.txt", ab})},
		{name: "dependency", version: "1.0", dists: wheel([2]string{"p/m.json", cd})},
		// ... or that a hard link's path admits: the plain engine scans
		// the file once, under its own path.
		{name: "link", version: "1.0", dists: linked("m.py", ab+"zz", "l.txt")},
		{name: "link-dependency", version: "1.0", dists: linked("m.c", cd, "l.json")},
	}
	p := newPair(t, lim, nil)
	p.compare(t, rs, releases)
	for _, r := range releases[4:] {
		got := scanRelease(t, p.plain, rs, r)
		if got.Dists[0].Limit != string(limit.StringMatches) {
			t.Errorf("release %s: %s, want the string_matches limit", r.name, js(got))
		}
	}
}
