//go:build benchcorpus

package scan_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// TestPrunedEqualsPlainBenchCorpus: the bench corpus (bench/run builds
// it; it needs the network once). Built only with the tag benchcorpus
// (`bench/run --only exact`), which asks for the corpus: without it the
// test fails. `make test` has no corpus, and the generated corpus stands in
// there (TestPrunedEqualsPlainGenerated); a test that always skipped in it
// could never fail.
func TestPrunedEqualsPlainBenchCorpus(t *testing.T) {
	dir := filepath.Join("..", "..", "bench", "corpus")
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatalf("bench corpus not built (%v): run bench/run --only exact, which builds it", err)
	}
	var m struct {
		Distributions []struct{ File, Name, Version string }
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var releases []release
	index := map[string]int{}
	for _, d := range m.Distributions {
		body, err := os.ReadFile(filepath.Join(dir, d.File))
		if err != nil {
			t.Fatal(err)
		}
		k := d.Name + " " + d.Version
		i, ok := index[k]
		if !ok {
			i = len(releases)
			index[k] = i
			releases = append(releases, release{name: d.Name, version: d.Version})
		}
		releases[i].dists = append(releases[i].dists, source{name: filepath.Base(d.File), data: body})
	}
	if raceEnabled {
		// The whole corpus takes most of an hour under the race detector:
		// every eighth release (both distributions, all their files).
		var some []release
		for i := 0; i < len(releases); i += 8 {
			some = append(some, releases[i])
		}
		t.Logf("race detector on: %d of %d releases", len(some), len(releases))
		releases = some
	}
	rs := scan.CompileSet(t, benchRules(t))
	p := newPair(t, limit.Limits{}, nil)
	matched := p.compare(t, rs, releases)
	t.Logf("%d releases, %d matched; pruned engine: %+v", len(releases), matched, p.engine.Counters())
}
