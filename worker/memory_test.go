package worker

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// heapAtHits is an Observer that measures the live heap (after a GC) when
// the match cache answers for the first file of a distribution and for its
// last but one: what the scan holds of the files it has scored meanwhile.
type heapAtHits struct {
	nopObserver
	last int // the hit at which to measure the second time
	mu   sync.Mutex
	hits int
	at   [2]uint64
}

func (o *heapAtHits) MatchCacheHit(int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hits++
	if o.hits != 1 && o.hits != o.last {
		return
	}
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	o.at[min(o.hits-1, 1)] = m.HeapAlloc
}

// TestMatchedPathsNotHeld: a distribution of thousands of matching files
// under paths of 4,000 bytes (a tar.gz of a megabyte for 65,536 of them)
// does not make the worker hold every matched path until its scan ends: a
// worker reports the top file alone. Before, the engine kept them all (256
// MiB per distribution at the entry limit; 8 such distributions of 1.1 MB
// took a 2-thread worker to 1,081 MiB of peak RSS, a 4-thread one to 1,549
// MiB).
func TestMatchedPathsNotHeld(t *testing.T) {
	const files = 4096
	dir := strings.Repeat("d", 4000)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := []byte("evil()\n")
	for i := range files {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("p-1.0/%s/%05d.py", dir, i), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	obs := &heapAtHits{last: files - 1}
	e := startWorker(t, 1, func(cfg *Config) { cfg.Observer = obs })
	e.extra.Store("p-1.0.tar.gz", buf.Bytes())
	s := e.session()
	s.welcome("m", map[string]string{"m.yara": `rule m { meta: weight = 5 strings: $a = "evil()" condition: $a }`})
	s.assign(e.task(1, "p-1.0.tar.gz", "m"))
	d := s.results(1)[1].GetDistribution()
	if want := fmt.Sprintf("p-1.0/%s/00000.py", dir); d.GetScore() != 5 || d.GetTopFile() != want {
		t.Fatalf("result %.200v, want score 5 and the first file on top", d)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.hits != files-1 {
		t.Fatalf("%d match cache hits, want %d (every file but the first)", obs.hits, files-1)
	}
	// 4,094 paths of 4 KiB are 16 MiB.
	if grew := int64(obs.at[1]) - int64(obs.at[0]); grew > 4<<20 {
		t.Errorf("the live heap grew by %.1f MiB while the files were scored, want under 4 MiB (the matched paths held)", float64(grew)/(1<<20))
	}
}
