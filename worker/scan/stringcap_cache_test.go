package scan

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// cappedTailRules: tail reads the last match of "AB" and counts for x.py
// (and .txt), not for other .py files, which py (with a private helper)
// counts for.
const cappedTailRules = `
private rule helper { condition: filesize > 0 }
rule py { meta: weight = 1 filetype = ".py" strings: $b = "zz" condition: $b and helper }
rule tail { meta: weight = 10 filetype = "x.py .txt" strings: $a = "AB" condition: $a in (filesize-2..filesize) }
`

// TestCachedCappedMatchesCheckedForEachPath (R49): the match cache keeps
// the matches of a scan with the whole set under the whole set's identity,
// and a .py subset that does not compile falls back to the whole set under
// that same identity. m.py's bytes repeat "AB" past libyara's cap: scanned
// with the whole set for m.py, the capped string is tail's, which never
// counts for m.py, so m.py reads clean and its matches are cached with the
// capped rule. x.py admits tail (its filetype lists "x.py") and takes those
// matches from the cache: tail's condition, decided without the dropped
// last match, read it clean, as it did a hard link x.py to such a file,
// failed under the path of the file of another release the cache entry
// came from. Both must fail with string_matches under their own paths.
func TestCachedCappedMatchesCheckedForEachPath(t *testing.T) {
	rs := compile(t, map[string]string{"c": cappedTailRules})
	e := newEngine(t, Config{Threads: 1, MaxMatchData: 1})
	p := e.planFor(rs)
	if !p.split || !p.cacheable {
		t.Fatalf("plan: split %v, cacheable %v (%s)", p.split, p.cacheable, p.reason)
	}
	// The split "missed" helper: the .py subset does not compile and falls
	// back to the whole set (as TestUnsplittableSetScansEverythingAdmitted).
	p.deps[p.index["py"]] = nil
	ab := strings.Repeat("AB", 1_100_000) // past YR_MAX_STRING_MATCHES
	scan := func(name string, data []byte) (Result, error) {
		return e.Scan(context.Background(), rs, name, data)
	}
	if res, err := scan("a-1.0-py3-none-any.whl", wheel(t, [2]string{"a/m.py", ab})); err != nil || res.Score != 0 {
		t.Fatalf("m.py: score %d, error %v; want clean (tail does not count for it)", res.Score, err)
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"b-1.0-py3-none-any.whl", "b/x.py", wheel(t, [2]string{"b/x.py", ab})},
		{"c-1.0.tar.gz", "c-1.0/m.py", tgzEnts(t, tarEnt{name: "c-1.0/m.py", body: ab}, tarEnt{name: "c-1.0/x.py", link: "c-1.0/m.py"})},
	} {
		res, err := scan(tc.name, tc.data)
		var le *limit.Error
		if !errors.As(err, &le) || le.Kind != limit.StringMatches || le.Path != tc.want {
			t.Errorf("%s: score %d, files %+v, error %v; want a string_matches limit error on %s", tc.name, res.Score, res.Files, err, tc.want)
		}
	}
	if c := e.Counters(); c.SubsetFailures == 0 {
		t.Error("no subset failed: the test does not reach the fallback")
	}
}

// TestJoinedCappedScanCheckedForTheJoinersPath (R49): a file that joins a
// scan in flight of the same bytes under the same rules identity takes its
// outcome; with the whole set as the identity of targets admitting other
// rules (a .py subset that does not compile), x.py (which admits tail)
// joined m.py's scan and was checked against the rules m.py admits: a
// capped string of tail, deciding x.py's verdict, read clean.
func TestJoinedCappedScanCheckedForTheJoinersPath(t *testing.T) {
	rs := compile(t, map[string]string{"c": cappedTailRules})
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	var first sync.Once
	e := newEngine(t, Config{Threads: 2, MaxMatchData: 1, OnFile: func(int, time.Duration) {
		started <- struct{}{}
		first.Do(func() { <-release })
	}})
	p := e.planFor(rs)
	p.deps[p.index["py"]] = nil // the .py subset does not compile: the whole set
	ab := strings.Repeat("AB", 1_100_000)
	type out struct {
		res Result
		err error
	}
	scan := func(name string, data []byte) chan out {
		c := make(chan out, 1)
		go func() {
			r, err := e.Scan(context.Background(), rs, name, data)
			c <- out{r, err}
		}()
		return c
	}
	a := scan("a-1.0-py3-none-any.whl", wheel(t, [2]string{"a/m.py", ab}))
	<-started // m.py scanned, its scanner held before its outcome
	b := scan("b-1.0-py3-none-any.whl", wheel(t, [2]string{"b/x.py", ab}, [2]string{"b/z.txt", "no"}))
	<-started // z.txt scanned by the other scanner: x.py, before it, joined m.py's scan
	close(release)
	if o := <-a; o.err != nil || o.res.Score != 0 {
		t.Errorf("m.py: score %d, error %v; want clean", o.res.Score, o.err)
	}
	o := <-b
	var le *limit.Error
	if !errors.As(o.err, &le) || le.Kind != limit.StringMatches || le.Path != "b/x.py" {
		t.Errorf("x.py: score %d, stats %+v, error %v; want a string_matches limit error on b/x.py", o.res.Score, o.res.Stats, o.err)
	}
}
