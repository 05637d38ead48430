package rules

import (
	"sync"
	"sync/atomic"
	"testing"

	yara "github.com/hillu/go-yara/v4"
)

// TestScannersLeaveFaultHandlers scans on two threads at once, as a worker
// does, while a third goroutine reads the process's SIGSEGV and SIGBUS
// handlers: no scan may replace them, during the scans or after. With
// libyara's default try/catch each scan installs its own handlers, and two
// overlapping scans can leave them installed for good (a later nil
// dereference in Go then spins instead of panicking).
func TestScannersLeaveFaultHandlers(t *testing.T) {
	c, err := Compile(Set{Hash: "h", Sources: map[string]string{"r": `rule r { strings: $a = "needle" condition: $a }`}})
	if err != nil {
		t.Fatal(err)
	}
	segv, bus := FaultHandlers()
	if segv == 0 || bus == 0 {
		t.Fatalf("no SIGSEGV or SIGBUS handler to compare with (%#x, %#x)", segv, bus)
	}
	const threads, scans = 2, 20000
	data := []byte("a haystack with a needle in it")
	var (
		scanners sync.WaitGroup
		matched  atomic.Int64
		samples  atomic.Int64
		changed  atomic.Int64
	)
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-done:
				return
			default:
			}
			s, b := FaultHandlers()
			samples.Add(1)
			if s != segv || b != bus {
				changed.Add(1)
			}
		}
	}()
	for range threads {
		scanners.Add(1)
		go func() {
			defer scanners.Done()
			sc, err := NewScanner(c.Yara())
			if err != nil {
				t.Error(err)
				return
			}
			defer sc.Destroy()
			for range scans {
				var m yara.MatchRules
				if err := sc.SetCallback(&m).ScanMem(data); err != nil {
					t.Error(err)
					return
				}
				matched.Add(int64(len(m)))
			}
		}()
	}
	scanners.Wait()
	close(done)
	<-sampled
	if got := matched.Load(); got != threads*scans {
		t.Errorf("%d matches in %d scans, want one each", got, threads*scans)
	}
	if samples.Load() == 0 {
		t.Fatal("the handlers were never read during the scans")
	}
	if n := changed.Load(); n != 0 {
		t.Errorf("%d of %d reads during the scans found another SIGSEGV or SIGBUS handler than the process's", n, samples.Load())
	}
	if s, b := FaultHandlers(); s != segv || b != bus {
		t.Errorf("after the scans the handlers are %#x and %#x, want the process's %#x and %#x", s, b, segv, bus)
	}
}
