package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func compile(t testing.TB, sources map[string]string) *rules.Compiled {
	t.Helper()
	c, err := rules.Compile(rules.Set{Sources: sources})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e := New(cfg)
	t.Cleanup(e.Close)
	return e
}

// tgz builds a gzip tar of the given files, in order.
func tgz(t testing.TB, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func wheel(t testing.TB, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.Create(f[0])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f[1]))
	}
	zw.Close()
	return buf.Bytes()
}

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
	res, err := e.Run(context.Background(), rs, func(ctx context.Context, alloc archive.Alloc, emit archive.Emit) (archive.Stats, error) {
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
	os.MkdirAll(filepath.Join(dir, "pkg", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "pkg", "setup.py"), []byte("ALPHA BRAVO"), 0o644)
	os.WriteFile(filepath.Join(dir, "pkg", "sub", "y.py"), []byte("CHARLIE"), 0o644)
	os.Symlink(filepath.Join(dir, "pkg", "sub", "y.py"), filepath.Join(dir, "pkg", "link.py"))
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

func TestConcurrentDistributionsShareThreads(t *testing.T) {
	rs := compile(t, map[string]string{"x": exampleRules})
	e := newEngine(t, Config{Threads: 2, Budget: 1 << 12})
	data := tgz(t, [2]string{"p/a.py", "ALPHA"}, [2]string{"p/b.py", "CHARLIE"})
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			res, err := e.Scan(context.Background(), rs, "p.tar.gz", data)
			if err == nil && res.Score != 15 {
				err = fmt.Errorf("score %d", res.Score)
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
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
