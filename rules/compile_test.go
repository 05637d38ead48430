package rules

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
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

// TestCompileFreesItsCMemory: compiling leaves no C memory behind once the
// rules are destroyed (the buffers of messages and saved rules are freed on
// every path, compiling or not).
func TestCompileFreesItsCMemory(t *testing.T) {
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "rule r%d { strings: $a = /ab.*c%d/ condition: $a }\n", i, i)
	}
	good, bad := b.String(), b.String()+"rule broken { condition: nosuch }\n"
	round := func() {
		yr, ms, err := yaraCompile(good)
		if err != nil || len(ms) != 300 {
			t.Fatalf("%d messages, %v", len(ms), err)
		}
		yr.Destroy()
		if _, _, err := yaraCompile(bad); err == nil {
			t.Fatal("a rule naming no identifier compiled")
		}
	}
	round() // libyara's own first-use allocations
	before := testkit.CHeapInUse()
	for range 50 {
		round()
	}
	if grew := testkit.CHeapInUse() - before; grew > 1<<20 {
		t.Fatalf("the C heap grew by %d bytes over 50 compiles", grew)
	}
}

// TestCompileKeepsMessagesBounded: a set that makes libyara warn about every
// string gives at most about 1 MiB of messages and says how many more there
// were.
func TestCompileKeepsMessagesBounded(t *testing.T) {
	var b strings.Builder
	for r := range 16 {
		fmt.Fprintf(&b, "rule r%d { strings:", r)
		for i := range 1000 {
			fmt.Fprintf(&b, " $s%d = /.*x%d/", i, i)
		}
		b.WriteString(" condition: any of them }\n")
	}
	_, ms, err := yaraCompile(b.String())
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, m := range ms {
		size += 8 + len(m.rule) + len(m.text) + 2
	}
	last := ms[len(ms)-1]
	if size > 1<<20+200 || !strings.Contains(last.text, "more libyara messages not kept") || !last.warning {
		t.Fatalf("%d messages, %d bytes, last %+v", len(ms), size, last)
	}
}

// BenchmarkCompile compiles the bench rules (bench/rules: 54 rules), as a
// worker does for each rule set pushed to it.
func BenchmarkCompile(b *testing.B) {
	set, err := Load("../bench/rules")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c, err := Compile(set)
		if err != nil {
			b.Fatal(err)
		}
		c.Yara().Destroy()
	}
}
