package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

const exampleRules = `
rule r1 { meta: weight = 5 strings: $a = "ALPHA" condition: $a }
rule r2 { meta: weight = 3 strings: $a = "BRAVO" condition: $a }
rule r3 { meta: weight = 10 strings: $a = "CHARLIE" condition: $a }
rule py_only { meta: weight = 100 filetype = ".py" strings: $a = "DELTA" condition: $a }
`

func TestWorkedExampleThroughYARA(t *testing.T) {
	e := newEngine(t, Config{Threads: 2})
	rs := compile(t, map[string]string{"x": exampleRules})
	sdist := tgz(t, [2]string{"a-1.0/setup.py", "ALPHA BRAVO"}, [2]string{"a-1.0/x.py", "ALPHA"}, [2]string{"a-1.0/README", "DELTA"})
	whl := wheel(t, [2]string{"b/x.py", "ALPHA"}, [2]string{"b/y.py", "CHARLIE"})
	s, err := e.Scan(context.Background(), rs, "a-1.0.tar.gz", sdist)
	if err != nil {
		t.Fatal(err)
	}
	w, err := e.Scan(context.Background(), rs, "a-1.0-py3-none-any.whl", whl)
	if err != nil {
		t.Fatal(err)
	}
	if s.Score != 8 || s.TopFile != "a-1.0/setup.py" || s.Stats.Files != 3 || s.Stats.Format != "tar.gz" {
		t.Fatalf("sdist = %+v", s)
	}
	if w.Score != 15 || w.TopFile != "b/y.py" || w.Stats.Format != "zip" {
		t.Fatalf("wheel = %+v", w)
	}
	// py_only matched README but does not count there (filetype).
	for _, f := range s.Files {
		if f.Path == "a-1.0/README" {
			t.Fatalf("README counted: %+v", f)
		}
	}
}

func TestDemoPackages(t *testing.T) {
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	rs := compile(t, demo.Rules())
	e := newEngine(t, Config{Threads: 2})
	want := map[string]struct {
		score int64
		top   string
		rules []string
	}{
		"reqeusts-2.31.0.tar.gz":                      {8, "reqeusts-2.31.0/reqeusts/__init__.py", []string{"demo_exec_base64", "demo_setup_download"}},
		"discord_helper_utils-0.4.1-py3-none-any.whl": {14, "discord_helper_utils/__init__.py", []string{"demo_discord_webhook", "demo_token_paths"}},
		"fastjsonx-3.0.0.tar.gz":                      {5, "fastjsonx-3.0.0/fastjsonx/_speedups.py", []string{"demo_known_good_marker", "demo_marshal_zlib_exec"}},
		"multiwheel-1.0.0-cp312-cp312-win_amd64.whl":  {4, "multiwheel/_install.py", []string{"demo_pyinstaller_dropper"}},
		"netprobe-0.9.0-py3-none-any.whl":             {0, "netprobe/__init__.py", []string{"demo_informational"}},
		"tinycolors-1.2.0.tar.gz":                     {0, "", nil},
	}
	for _, f := range files {
		w, ok := want[f.Name]
		if !ok {
			continue
		}
		res, err := e.Scan(context.Background(), rs, f.Name, f.Data)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		var names []string
		for _, h := range res.Rules {
			names = append(names, h.Name)
		}
		if res.Score != w.score || res.TopFile != w.top || !slices.Equal(names, w.rules) {
			t.Errorf("%s: score %d top %q rules %v, want %d %q %v", f.Name, res.Score, res.TopFile, names, w.score, w.top, w.rules)
		}
	}
}

// TestThreadsDoNotChangeResults scans a distribution with many files on 1 and
// on 4 threads: results are identical (tie-breaks follow archive order, not
// completion order).
func TestThreadsDoNotChangeResults(t *testing.T) {
	var files [][2]string
	for i := range 400 {
		body := fmt.Sprintf("file %d", i)
		switch i % 7 {
		case 0:
			body += " ALPHA"
		case 3:
			body += " CHARLIE BRAVO"
		}
		files = append(files, [2]string{fmt.Sprintf("p-1/m%03d.py", i), body})
	}
	data := tgz(t, files...)
	rs := compile(t, map[string]string{"x": exampleRules})
	one, err := newEngine(t, Config{Threads: 1}).Scan(context.Background(), rs, "p-1.tar.gz", data)
	if err != nil {
		t.Fatal(err)
	}
	four, err := newEngine(t, Config{Threads: 4, Budget: 4096}).Scan(context.Background(), rs, "p-1.tar.gz", data)
	if err != nil {
		t.Fatal(err)
	}
	if one.Score != 18 || one.TopFile != "p-1/m003.py" {
		t.Fatalf("one thread: score %d top %s", one.Score, one.TopFile)
	}
	if four.Score != one.Score || four.TopFile != one.TopFile || len(four.Files) != len(one.Files) {
		t.Fatalf("four threads differ: %+v vs %+v", four.Distribution, one.Distribution)
	}
	for i := range one.Files {
		if one.Files[i].Path != four.Files[i].Path || one.Files[i].Score != four.Files[i].Score {
			t.Fatalf("file %d differs: %+v vs %+v", i, one.Files[i], four.Files[i])
		}
	}
}

// goFaultHandlers are the process's fault handlers before any test scans:
// the Go runtime's.
var goFaultHandlers = testkit.ReadFaultHandlers()

// TestScansKeepTheFaultHandlers scans thousands of distinct files on four
// threads at once (Exhaustive: no cache answers any of them) while another
// goroutine reads the process's SIGSEGV and SIGBUS handlers: they stay the
// Go runtime's throughout and after. The engine's scanners come from
// rules.NewScanner, without libyara's per-scan signal handlers, which
// overlapping scans can leave installed for good.
func TestScansKeepTheFaultHandlers(t *testing.T) {
	var files [][2]string
	for i := range 4000 {
		files = append(files, [2]string{fmt.Sprintf("p-1/m%04d.py", i), fmt.Sprintf("file %d ALPHA", i)})
	}
	rs := compile(t, map[string]string{"x": exampleRules})
	data := tgz(t, files...)
	stop := testkit.WatchFaultHandlers(goFaultHandlers)
	res, err := newEngine(t, Config{Threads: 4, Exhaustive: true}).Scan(context.Background(), rs, "p-1.tar.gz", data)
	changed, reads := stop()
	if err != nil {
		t.Fatal(err)
	}
	if res.Stats.Scanned != len(files) {
		t.Fatalf("%d files scanned, want %d", res.Stats.Scanned, len(files))
	}
	if reads == 0 || changed != 0 {
		t.Errorf("%d of %d reads during the scans found another SIGSEGV or SIGBUS handler than the Go runtime's", changed, reads)
	}
	if h := testkit.ReadFaultHandlers(); h != goFaultHandlers {
		t.Errorf("after the scans the handlers are %+v, want the Go runtime's %+v", h, goFaultHandlers)
	}
}

func TestScanTimeoutIsALimit(t *testing.T) {
	rs := compile(t, map[string]string{"slow": `rule slow { condition: for all i in (0..filesize-1) : ( uint8(i) < 0x100 ) }`})
	e := newEngine(t, Config{Threads: 1, Limits: limit.Limits{ScanTimeout: time.Second}})
	big := bytes.Repeat([]byte("A"), 40<<20)
	_, err := e.Scan(context.Background(), rs, "big.bin", big)
	var le *limit.Error
	if !errors.As(err, &le) || le.Kind != limit.ScanTimeout || le.Path != "big.bin" {
		t.Fatalf("err = %v, want a scan_timeout limit error on big.bin", err)
	}
}

// TestFailuresDoNotLeakBudget runs corrupt and over-limit distributions
// through a tiny budget, then a good one: a leaked budget would block it.
func TestFailuresDoNotLeakBudget(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	e := newEngine(t, Config{Threads: 2, Budget: 64, Limits: limit.Limits{File: 1 << 10}})
	good := tgz(t, [2]string{"p/a.py", "ALPHA"}, [2]string{"p/b.py", "BRAVO"})
	truncated := good[:len(good)-20]
	tooBig := tgz(t, [2]string{"p/a.py", "ALPHA"}, [2]string{"p/big.bin", string(make([]byte, 2<<10))})
	for range 50 {
		if _, err := e.Scan(context.Background(), rs, "t.tar.gz", truncated); err == nil {
			t.Fatal("truncated archive scanned clean")
		}
		_, err := e.Scan(context.Background(), rs, "big.tar.gz", tooBig)
		var le *limit.Error
		if !errors.As(err, &le) || le.Kind != limit.File {
			t.Fatalf("err = %v, want file_size limit", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.Scan(ctx, rs, "good.tar.gz", good)
	if err != nil || res.Score != 8 {
		t.Fatalf("after failures: %+v %v", res.Distribution, err)
	}
}

func TestCancellation(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	e := newEngine(t, Config{Threads: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Scan(ctx, rs, "p.tar.gz", tgz(t, [2]string{"p/a.py", "ALPHA"}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestProducerOwnBuffers(t *testing.T) {
	// A producer may emit buffers that did not come from alloc.
	rs := compile(t, map[string]string{"x": exampleRules})
	e := newEngine(t, Config{Threads: 2, Budget: 16})
	res, err := e.Run(context.Background(), rs, func(ctx context.Context, alloc archive.Alloc, emit archive.Emit, _ archive.Link) (archive.Stats, error) {
		for i := range 20 {
			if err := emit(i, fmt.Sprintf("f%d.py", i), []byte("CHARLIE")); err != nil {
				return archive.Stats{}, err
			}
		}
		return archive.Stats{Files: 20}, nil
	})
	if err != nil || res.Score != 10 || res.TopFile != "f0.py" || len(res.Files) != 20 {
		t.Fatalf("%+v %v", res.Distribution, err)
	}
}

func TestDirProducer(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pkg", "setup.py"), "ALPHA BRAVO")
	writeFile(t, filepath.Join(dir, "pkg", "sub", "y.py"), "CHARLIE")
	if err := os.Symlink(filepath.Join(dir, "pkg", "sub", "y.py"), filepath.Join(dir, "pkg", "link.py")); err != nil {
		t.Fatal(err)
	}
	rs := compile(t, map[string]string{"x": exampleRules})
	e := newEngine(t, Config{Threads: 2})
	res, err := e.Run(context.Background(), rs, DirProducer(dir, e.Limits()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Score != 18 || res.TopFile != "pkg/sub/y.py" || res.Stats.Files != 2 {
		t.Fatalf("dir = %+v stats %+v (the symlink must be skipped)", res.Distribution, res.Stats)
	}
	lim := e.Limits()
	lim.File = 5
	_, err = e.Run(context.Background(), rs, DirProducer(dir, lim))
	var le *limit.Error
	if !errors.As(err, &le) || le.Kind != limit.File {
		t.Fatalf("err = %v, want file_size", err)
	}
}

// TestConcurrentDistributionsShareThreads: sixteen distributions scanned
// at once share the engine's scanner threads: every file scan runs on one of
// Threads goroutines (never one per distribution), both threads scan at
// once, and each distribution still gets its own verdict.
func TestConcurrentDistributionsShareThreads(t *testing.T) {
	const threads, dists = 2, 16
	rs := compile(t, map[string]string{"x": exampleRules})
	var (
		mu      sync.Mutex
		callers = map[string]int{} // goroutine -> files scanned
		inside  int
		most    int
		once    sync.Once
	)
	both := make(chan struct{})
	// OnFile runs on the scanner goroutine after each scan: the first scans
	// wait there until every thread is inside at once.
	onFile := func(int, time.Duration) {
		mu.Lock()
		callers[goroutineID()]++
		inside++
		most = max(most, inside)
		if inside == threads {
			once.Do(func() { close(both) })
		}
		mu.Unlock()
		<-both
		mu.Lock()
		inside--
		mu.Unlock()
	}
	e := newEngine(t, Config{Threads: threads, Budget: 1 << 12, NoMatchCache: true, OnFile: onFile})
	data := tgz(t, [2]string{"p/a.py", "ALPHA"}, [2]string{"p/b.py", "CHARLIE"})
	errs := make(chan error, dists)
	for range dists {
		go func() {
			res, err := e.Scan(context.Background(), rs, "p.tar.gz", data)
			if err == nil && (res.Score != 15 || len(res.Files) != 2) {
				err = fmt.Errorf("score %d, %d files", res.Score, len(res.Files))
			}
			errs <- err
		}()
	}
	for range dists {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	scans := 0
	for _, n := range callers {
		scans += n
	}
	if scans != 2*dists || int64(scans) != e.Counters().Scans {
		t.Fatalf("%d file scans seen, engine counted %d, want %d", scans, e.Counters().Scans, 2*dists)
	}
	if len(callers) != threads || most != threads {
		t.Fatalf("file scans ran on %d goroutines, at most %d at once; want the engine's %d threads, all busy at once", len(callers), most, threads)
	}
}

// goroutineID is the id of the calling goroutine, from its stack header.
func goroutineID() string {
	var b [64]byte
	f := strings.Fields(string(b[:runtime.Stack(b[:], false)]))
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

func TestBufferClasses(t *testing.T) {
	var p bufferPool
	for _, n := range []int{0, 1, 4096, 4097, 1 << 20, 3<<20 + 5} {
		b := p.get(n)
		if len(b) != n || cap(b)&(cap(b)-1) != 0 {
			t.Fatalf("get(%d): len %d cap %d", n, len(b), cap(b))
		}
		p.put(b)
	}
}

// TestHardLinkScoredUnderItsPath: content reached through mod.py -> data.txt
// counts for .py rules under mod.py. Exhaustively the bytes are scanned
// once; pruned, data.txt is scanned with the rules a .txt admits and once
// more, in the second pass, with those mod.py admits.
func TestHardLinkScoredUnderItsPath(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	for _, exhaustive := range []bool{true, false} {
		var scans atomic.Int64
		e := newEngine(t, Config{Threads: 2, Exhaustive: exhaustive, OnFile: func(int, time.Duration) { scans.Add(1) }})
		data := tgzEnts(t,
			tarEnt{name: "p-1/data.txt", body: "DELTA ALPHA"},
			tarEnt{name: "p-1/mod.py", link: "p-1/data.txt"},
			tarEnt{name: "p-1/b", link: "p-1/mod.py"},
			tarEnt{name: "p-1/c.pyw", link: "p-1/b"},
		)
		res, err := e.Scan(context.Background(), rs, "p-1.tar.gz", data)
		if err != nil {
			t.Fatal(err)
		}
		wantScans, wantRescans := int64(2), 1
		if exhaustive {
			wantScans, wantRescans = 1, 0
		}
		if n := scans.Load(); n != wantScans || res.Stats.Rescanned != wantRescans {
			t.Errorf("exhaustive %v: %d YARA scans, %d rescans; want %d, %d", exhaustive, n, res.Stats.Rescanned, wantScans, wantRescans)
		}
		got := map[string]int64{}
		for _, f := range res.Files {
			got[f.Path] = f.Score
		}
		// py_only (100) counts for mod.py only; r1 (5) everywhere.
		want := map[string]int64{"p-1/data.txt": 5, "p-1/mod.py": 105, "p-1/b": 5, "p-1/c.pyw": 5}
		if !maps.Equal(got, want) || res.Score != 105 || res.TopFile != "p-1/mod.py" {
			t.Errorf("exhaustive %v: files %v score %d top %s; want %v, 105, p-1/mod.py", exhaustive, got, res.Score, res.TopFile, want)
		}
		wantStats := Stats{Format: "tar.gz", Entries: 4, Files: 4, Links: 3, Expanded: int64(len("DELTA ALPHA"))}
		if st := res.Stats; st.Format != wantStats.Format || st.Entries != wantStats.Entries || st.Files != wantStats.Files ||
			st.Links != wantStats.Links || st.Expanded != wantStats.Expanded {
			t.Errorf("stats %+v, want %+v", st, wantStats)
		}
	}
}

// TestManyHardLinksScanOnce: 65,535 .py links to one 1 MiB file cost one
// scan with the rules big.bin admits and one second-pass scan with those the
// links admit (not one per link), 1 MiB of expanded size, and each is a file
// of its own.
func TestManyHardLinksScanOnce(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	var scans, scanned atomic.Int64
	e := newEngine(t, Config{Threads: 2, OnFile: func(n int, _ time.Duration) { scans.Add(1); scanned.Add(int64(n)) }})
	body := bytes.Repeat([]byte("x"), 1<<20)
	copy(body[1000:], "CHARLIE")
	const links = 65535
	ents := []testkit.TarEntry{{Name: "p/big.bin", Body: body}}
	for i := range links {
		ents = append(ents, testkit.TarEntry{Name: fmt.Sprintf("p/l/%05d.py", i), Type: tar.TypeLink, Link: "p/big.bin"})
	}
	res, err := e.Scan(context.Background(), rs, "p-1.tar", testkit.Tar(t, ents...))
	if err != nil {
		t.Fatal(err)
	}
	if scans.Load() != 2 || scanned.Load() != 2<<20 || res.Stats.Rescanned != 1 {
		t.Errorf("%d scans of %d bytes (%d again), want two of 1 MiB", scans.Load(), scanned.Load(), res.Stats.Rescanned)
	}
	if st := res.Stats; st.Files != links+1 || st.Links != links || st.Expanded != 1<<20 || st.Entries != links+1 {
		t.Errorf("stats %+v", st)
	}
	if len(res.Files) != links+1 || res.Score != 10 || res.TopFile != "p/big.bin" || res.Files[links].Path != "p/l/65534.py" {
		t.Errorf("%d files scored, score %d, top %s", len(res.Files), res.Score, res.TopFile)
	}
}

// TestHardLinkWaitsForItsTarget: a link reported while its target is still
// under a scanner is scored when the scan ends.
func TestHardLinkWaitsForItsTarget(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	release := make(chan struct{})
	var once sync.Once
	e := newEngine(t, Config{Threads: 1, OnFile: func(int, time.Duration) { <-release }})
	// The producer runs twice: mod.py admits py_only, data.txt does not.
	res, err := e.Run(context.Background(), rs, func(ctx context.Context, alloc archive.Alloc, emit archive.Emit, link archive.Link) (archive.Stats, error) {
		buf, err := alloc(ctx, len("DELTA"))
		if err != nil {
			return archive.Stats{}, err
		}
		copy(buf, "DELTA")
		if err := emit(0, "data.txt", buf); err != nil {
			return archive.Stats{}, err
		}
		// The scanner is blocked in OnFile: data.txt's matches are not
		// recorded yet.
		err = link(1, "mod.py", 0)
		once.Do(func() { close(release) })
		return archive.Stats{Files: 2, Links: 1, Expanded: 5}, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Score != 100 || res.TopFile != "mod.py" || len(res.Files) != 1 {
		t.Errorf("%+v, want py_only counted for mod.py", res.Distribution)
	}
}

func TestDistScanLinkOrder(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	p := newPlan(rs, false, 8, nil)
	pyOnly, _ := rs.Rule("py_only")
	all := p.fullTarget
	all.compile()
	txt, _ := p.targetFor("x.txt") // r1, r2, r3: not py_only
	txt.compile()
	for _, linkFirst := range []bool{false, true} {
		d := &distScan{plan: p, matches: map[int]fileMatches{}, waiting: map[int][]fileLink{}, rescan: map[int]*rescan{}}
		if linkFirst {
			d.link(3, "x.py", 70)
			d.link(4, "nomatch.py", 71)
			d.link(5, "z.py", 72)
		}
		d.record(70, "x.txt", all.holds, fileMatches{rules: []score.Rule{pyOnly}})
		d.record(71, "y.txt", all.holds, fileMatches{})
		// Scanned without py_only: its .py link must be scanned again.
		d.record(72, "z.txt", txt.holds, fileMatches{})
		if !linkFirst {
			d.link(3, "x.py", 70)
			d.link(4, "nomatch.py", 71)
			d.link(5, "z.py", 72)
		}
		got := d.tally.Distribution()
		if got.Score != 100 || got.TopFile != "x.py" || len(got.Files) != 1 || len(d.waiting) != 0 {
			t.Errorf("link first %v: %+v, %d waiting", linkFirst, got, len(d.waiting))
		}
		again := d.takeRescans()
		if len(again) != 1 || again[72] == nil || d.unscored() != 1 {
			t.Fatalf("link first %v: rescans %v, %d unscored; want z.txt again", linkFirst, again, d.unscored())
		}
		again[72].compile()
		if !again[72].holds.has(p.index["py_only"]) {
			t.Errorf("the second pass does not scan with py_only")
		}
		d.rescanned(72, fileMatches{rules: []score.Rule{pyOnly}})
		if got := d.tally.Distribution(); got.Score != 100 || len(got.Files) != 2 || got.Files[1].Path != "z.py" || d.unscored() != 0 {
			t.Errorf("after the second pass: %+v", got)
		}
	}
}

func TestHardLinkFailures(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	e := newEngine(t, Config{Threads: 2})
	for name, data := range map[string][]byte{
		"later":    tgzEnts(t, tarEnt{name: "p/mod.py", link: "p/data.txt"}, tarEnt{name: "p/data.txt", body: "DELTA"}),
		"absolute": tgzEnts(t, tarEnt{name: "p/a", body: "A"}, tarEnt{name: "p/mod.py", link: "/etc/passwd"}),
		"outside":  tgzEnts(t, tarEnt{name: "p/a", body: "A"}, tarEnt{name: "p/mod.py", link: "../p/a"}),
		"rewrite":  tgzEnts(t, tarEnt{name: "p/a", body: "A"}, tarEnt{name: "p/mod.py", link: "p/a"}, tarEnt{name: "p/a", body: "DELTA"}),
	} {
		res, err := e.Scan(context.Background(), rs, "p.tar.gz", data)
		var ae *archive.Error
		if !errors.As(err, &ae) || ae.Path != "p/mod.py" && ae.Path != "p/a" {
			t.Errorf("%s: %+v, error %v; want an archive error", name, res.Distribution, err)
		}
	}
}

func TestDirProducerHardLinks(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pkg", "data.txt"), "DELTA")
	if err := os.Link(filepath.Join(dir, "pkg", "data.txt"), filepath.Join(dir, "pkg", "mod.py")); err != nil {
		t.Fatal(err)
	}
	rs := compile(t, map[string]string{"x": exampleRules})
	var scans atomic.Int64
	e := newEngine(t, Config{Threads: 2, OnFile: func(int, time.Duration) { scans.Add(1) }})
	res, err := e.Run(context.Background(), rs, DirProducer(dir, e.Limits()))
	if err != nil {
		t.Fatal(err)
	}
	// data.txt, then again for mod.py's rules (the directory is read twice).
	if scans.Load() != 2 || res.Stats.Rescanned != 1 || res.Stats.Files != 2 || res.Stats.Links != 1 || res.Stats.Expanded != 5 {
		t.Errorf("%d scans, stats %+v; want two scans (one again), 2 files, 1 link, 5 bytes", scans.Load(), res.Stats)
	}
	if res.Score != 100 || res.TopFile != "pkg/mod.py" {
		t.Errorf("%+v, want py_only counted for pkg/mod.py", res.Distribution)
	}
}

func TestLinkToAFileNeverEmittedFails(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	e := newEngine(t, Config{Threads: 1})
	_, err := e.Run(context.Background(), rs, func(ctx context.Context, alloc archive.Alloc, emit archive.Emit, link archive.Link) (archive.Stats, error) {
		return archive.Stats{Files: 1, Links: 1}, link(0, "mod.py", 7)
	})
	if err == nil || !strings.Contains(err.Error(), "hard links to files never scanned") {
		t.Fatalf("error %v, want the link reported as never scored", err)
	}
}

// TestDirProducerFileGrowsWhileRead: a file that grows between the walk's
// stat and its read is not cut at the size the stat gave (the bytes past it
// would never be scanned, and the file could read clean): it fails, as
// limit.ReadFile fails a local file that grows past its bound.
func TestDirProducerFileGrowsWhileRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pkg", "setup.py")
	writeFile(t, p, "harmless")
	grow := func(ctx context.Context, n int) ([]byte, error) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := f.WriteString(" ALPHA BRAVO"); err != nil {
			return nil, err
		}
		return make([]byte, n), nil
	}
	var got []string
	emit := func(_ int, path string, data []byte) error {
		got = append(got, path+": "+string(data))
		return nil
	}
	link := func(int, string, int) error { return nil }
	_, err := DirProducer(dir, limit.Defaults())(context.Background(), grow, emit, link)
	if err == nil {
		t.Fatalf("no error; emitted %q: the bytes the file grew by were never read", got)
	}
}

// TestDirProducerFileSwappedForFIFO: a regular file replaced by a FIFO after
// the walk listed its directory (here: while the file before it is emitted)
// fails the directory instead of hanging the scan in open, waiting for a
// writer that never comes.
func TestDirProducerFileSwappedForFIFO(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pkg", "a.py"), "a")
	b := filepath.Join(dir, "pkg", "b.py")
	writeFile(t, b, "b")
	alloc := func(ctx context.Context, n int) ([]byte, error) { return make([]byte, n), nil }
	emit := func(_ int, path string, _ []byte) error {
		if path != "pkg/a.py" {
			return nil
		}
		if err := os.Remove(b); err != nil {
			return err
		}
		return syscall.Mkfifo(b, 0o600)
	}
	link := func(int, string, int) error { return nil }
	err := testkit.NoHang(t, b, func() error {
		_, err := DirProducer(dir, limit.Defaults())(context.Background(), alloc, emit, link)
		return err
	})
	if err == nil {
		t.Fatal("no error: the file swapped for a FIFO was neither read nor refused")
	}
}

// TestDirProducerCountsAPrefixedZip: a zip behind a prefix (a zipapp's
// shebang line, a self-extracting stub) is an archive to Python and to
// archive.Walk (which walks a zip found from the end of any file), so a
// directory holding one counts it among its archives (Stats.Archives, the
// note of dragonfly scan). Detect saw only the first 1 KiB, where such a
// zip's end is not.
func TestDirProducerCountsAPrefixedZip(t *testing.T) {
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: "__main__.py", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("print('ALPHA')\n" + strings.Repeat("# padding\n", 300)))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tool.pyz"), "#!/usr/bin/env python3\n"+z.String())
	alloc := func(ctx context.Context, n int) ([]byte, error) { return make([]byte, n), nil }
	emit := func(int, string, []byte) error { return nil }
	link := func(int, string, int) error { return nil }
	st, err := DirProducer(dir, limit.Defaults())(context.Background(), alloc, emit, link)
	if err != nil {
		t.Fatal(err)
	}
	if st.Archives != 1 {
		t.Errorf("Archives = %d, want 1: a zipapp of %d bytes read as a plain file", st.Archives, z.Len())
	}
}
