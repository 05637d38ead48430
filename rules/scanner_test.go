package rules

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
	yara "github.com/hillu/go-yara/v4"
)

// goFaultHandlers are the process's fault handlers before any test scans:
// the Go runtime's.
var goFaultHandlers = testkit.ReadFaultHandlers()

// TestScannersLeaveFaultHandlers scans on two threads at once, as a worker
// does, while another goroutine reads the process's SIGSEGV and SIGBUS
// handlers: no scan may replace the Go runtime's, during the scans or
// after. With libyara's default try/catch each scan installs its own
// handlers, and two overlapping scans can leave them installed for good (a
// later nil dereference in Go then spins instead of panicking).
func TestScannersLeaveFaultHandlers(t *testing.T) {
	c, err := Compile(Set{Hash: "h", Sources: map[string]string{"r": `rule r { strings: $a = "needle" condition: $a }`}})
	if err != nil {
		t.Fatal(err)
	}
	if goFaultHandlers.SEGV == 0 || goFaultHandlers.BUS == 0 {
		t.Fatalf("no SIGSEGV or SIGBUS handler to compare with: %+v", goFaultHandlers)
	}
	const threads, scans = 2, 20000
	data := []byte("a haystack with a needle in it")
	var (
		scanners sync.WaitGroup
		matched  atomic.Int64
	)
	stop := testkit.WatchFaultHandlers(goFaultHandlers)
	for range threads {
		scanners.Go(func() {
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
		})
	}
	scanners.Wait()
	changed, reads := stop()
	if got := matched.Load(); got != threads*scans {
		t.Errorf("%d matches in %d scans, want one each", got, threads*scans)
	}
	if reads == 0 {
		t.Fatal("the handlers were never read during the scans")
	}
	if changed != 0 {
		t.Errorf("%d of %d reads during the scans found another SIGSEGV or SIGBUS handler than the Go runtime's", changed, reads)
	}
	if h := testkit.ReadFaultHandlers(); h != goFaultHandlers {
		t.Errorf("after the scans the handlers are %+v, want the Go runtime's %+v", h, goFaultHandlers)
	}
}

// TestTimeout: libyara gets whole seconds, rounded up, never 0 (which it
// reads as no timeout), never more than a C int.
func TestTimeout(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		500 * time.Millisecond:       time.Second,
		time.Nanosecond:              time.Second,
		0:                            time.Second,
		time.Second:                  time.Second,
		1900 * time.Millisecond:      2 * time.Second,
		10 * time.Second:             10 * time.Second,
		time.Duration(math.MaxInt64): math.MaxInt32 * time.Second,
	} {
		if got := Timeout(d); got != want {
			t.Errorf("Timeout(%v) = %v, want %v", d, got, want)
		}
	}
}
