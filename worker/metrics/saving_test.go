package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestScanSavingCounts: the work the scan engine saved (files skipped by
// filetype, match cache hits, rule subsets) is counted, and every series
// exists at zero before the first event.
func TestScanSavingCounts(t *testing.T) {
	r := New(Config{})
	if n := testutil.CollectAndCount(r.subsets); n != 2 {
		t.Errorf("subset result series = %d, want 2", n)
	}
	for _, c := range []struct {
		name string
		got  float64
	}{
		{"skipped", testutil.ToFloat64(r.skipped)},
		{"cache hits", testutil.ToFloat64(r.cacheHits)},
		{"subsets ok", testutil.ToFloat64(r.subsets.WithLabelValues("ok"))},
	} {
		if c.got != 0 {
			t.Errorf("%s = %v before any event", c.name, c.got)
		}
	}
	r.FileSkipped(300)
	r.FileSkipped(0)
	r.MatchCacheHit(1000)
	r.MatchCacheHit(24)
	r.MatchCacheHit(1)
	r.SubsetCompiled(20*time.Millisecond, nil)
	r.SubsetCompiled(20*time.Millisecond, nil)
	r.SubsetCompiled(time.Millisecond, errors.New("does not compile"))
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"skipped files", testutil.ToFloat64(r.skipped), 2},
		{"skipped bytes", testutil.ToFloat64(r.skippedBytes), 300},
		{"cache hits", testutil.ToFloat64(r.cacheHits), 3},
		{"cache hit bytes", testutil.ToFloat64(r.cacheBytes), 1025},
		{"subsets ok", testutil.ToFloat64(r.subsets.WithLabelValues("ok")), 2},
		{"subsets error", testutil.ToFloat64(r.subsets.WithLabelValues("error")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
