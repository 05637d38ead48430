package rules

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var gcSink atomic.Pointer[uint64]

// TestCompileWhileTheGCRuns: compiling a set with many warnings while other
// goroutines allocate and the garbage collector runs. go-yara v4.2.4's
// Compiler hands libyara a pointer to Go memory for its message callback
// and lets the collector free it during the compile (fixed upstream in
// v4.3.2, hillu/go-yara#120): the callback then read a dead handle and the
// process panicked ("misuse of an invalid Handle"), which a worker hit while
// compiling a rule subset beside its scans. Every warning must come back,
// attributed to its rule and file.
func TestCompileWhileTheGCRuns(t *testing.T) {
	var b strings.Builder
	const n = 200
	for i := range n {
		fmt.Fprintf(&b, "rule r%d { strings: $a = /ab.*c%d/ condition: $a }\n", i, i)
	}
	set := Set{Sources: map[string]string{"slow": b.String()}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := range 1000 {
				v := uint64(i)
				gcSink.Store(&v)
			}
			runtime.GC()
		}
	})
	defer wg.Wait()
	defer close(stop)
	for range 40 {
		c, warnings, err := compile(set)
		if err != nil {
			t.Fatal(err)
		}
		if c.Len() != n || len(warnings) != n {
			t.Fatalf("%d rules, %d warnings; want %d of each", c.Len(), len(warnings), n)
		}
		for i, w := range warnings {
			if w.Severity != Warning || w.Rule != fmt.Sprintf("r%d", i) || w.File != "slow.yara" || w.Line != i+1 || !strings.Contains(w.Text, "$a contains .*") {
				t.Fatalf("warning %d: %#v", i, w)
			}
		}
	}
}
