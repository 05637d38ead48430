package scan

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	yara "github.com/hillu/go-yara/v4"
	"golang.org/x/sync/errgroup"
)

// pythonish makes n files of about size bytes of Python-like text.
func pythonish(n, size int) [][2]string {
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"import", "def", "return", "self", "os.path.join", "for", "in", "range", "if", "else", "print", "class", "None", "True", "lambda", "yield", "with", "open", "json.loads", "requests.get"}
	files := make([][2]string, n)
	for i := range files {
		var b strings.Builder
		for b.Len() < size {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(8) == 0 {
				b.WriteString("\n    ")
			} else {
				b.WriteByte(' ')
			}
		}
		files[i] = [2]string{fmt.Sprintf("pkg-1.0/pkg/mod%05d.py", i), b.String()}
	}
	return files
}

func expanded(files [][2]string) int64 {
	var n int64
	for _, f := range files {
		n += int64(len(f[1]))
	}
	return n
}

// BenchmarkScanThroughput scans a ~20 MB sdist with the demo rules on all
// threads: MB/s of expanded content.
func BenchmarkScanThroughput(b *testing.B) {
	files := pythonish(2000, 10<<10)
	data := tgz(b, files...)
	rs := compile(b, demo.Rules())
	e := newEngine(b, Config{Threads: runtime.NumCPU()})
	b.SetBytes(expanded(files))
	b.ResetTimer()
	for range b.N {
		if _, err := e.Scan(context.Background(), rs, "pkg-1.0.tar.gz", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanMemBaseline is the same content scanned by one bare
// yara.Scanner per thread with no unpacking: the libyara ceiling the engine
// is compared with.
func BenchmarkScanMemBaseline(b *testing.B) {
	files := pythonish(2000, 10<<10)
	rs := compile(b, demo.Rules())
	threads := runtime.NumCPU()
	b.SetBytes(expanded(files))
	b.ResetTimer()
	for range b.N {
		done := make(chan struct{})
		for w := range threads {
			go func() {
				defer func() { done <- struct{}{} }()
				s, _ := rules.NewScanner(rs.Yara())
				defer s.Destroy()
				var m yara.MatchRules
				s.SetCallback(&m)
				for i := w; i < len(files); i += threads {
					m = m[:0]
					s.ScanMem([]byte(files[i][1]))
				}
			}()
		}
		for range threads {
			<-done
		}
	}
}

// BenchmarkPerFileOverhead scans 10,000 tiny files with one trivial rule:
// the engine's cost per file (unpacking, scheduling, scoring).
func BenchmarkPerFileOverhead(b *testing.B) {
	files := make([][2]string, 10000)
	for i := range files {
		files[i] = [2]string{fmt.Sprintf("p-1/f%05d.py", i), "x = 1\n"}
	}
	data := tgz(b, files...)
	rs := compile(b, map[string]string{"t": `rule never { strings: $a = "NEVER-MATCHES" condition: $a }`})
	e := newEngine(b, Config{Threads: runtime.NumCPU()})
	b.ResetTimer()
	for range b.N {
		if _, err := e.Scan(context.Background(), rs, "p-1.tar.gz", data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(files)), "ns/file")
}

// BenchmarkCorpus scans the bench/ corpus (bench/run builds it) with the
// bench/ rules on all threads, several distributions at once as `dragonfly
// scan` does. It is skipped unless DRAGONFLY_BENCH_CORPUS names a directory
// of distributions (e.g. bench/corpus/dists) and DRAGONFLY_BENCH_RULES a rules
// directory (bench/rules); DRAGONFLY_BENCH_MAX limits the number of
// distributions, DRAGONFLY_BENCH_EXHAUSTIVE=1 scans every file with every
// rule and no cache (the plain path), DRAGONFLY_BENCH_CACHE=0 turns the match
// cache off. For profiles:
//
//	DRAGONFLY_BENCH_CORPUS=$PWD/bench/corpus/dists DRAGONFLY_BENCH_RULES=$PWD/bench/rules \
//	  go test ./worker/scan -run '^$' -bench Corpus -benchtime 1x -cpuprofile cpu.prof
func BenchmarkCorpus(b *testing.B) {
	dir, rdir := os.Getenv("DRAGONFLY_BENCH_CORPUS"), os.Getenv("DRAGONFLY_BENCH_RULES")
	if dir == "" || rdir == "" {
		b.Skip("DRAGONFLY_BENCH_CORPUS and DRAGONFLY_BENCH_RULES not set")
	}
	rs := compileSet(b, loadSet(b, rdir))
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	if n, _ := strconv.Atoi(os.Getenv("DRAGONFLY_BENCH_MAX")); n > 0 && n < len(entries) {
		entries = entries[:n]
	}
	type dist struct {
		name string
		data []byte
	}
	var dists []dist
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		dists = append(dists, dist{e.Name(), data})
	}
	threads := runtime.NumCPU()
	cfg := Config{Threads: threads, MaxMatchData: 1, Exhaustive: os.Getenv("DRAGONFLY_BENCH_EXHAUSTIVE") == "1"}
	if os.Getenv("DRAGONFLY_BENCH_CACHE") == "0" {
		cfg.NoMatchCache = true
	}
	e := newEngine(b, cfg)
	var bytes int64
	b.ResetTimer()
	for range b.N {
		bytes = 0
		var mu sync.Mutex
		var g errgroup.Group
		g.SetLimit(threads)
		for _, d := range dists {
			g.Go(func() error {
				res, err := e.Scan(context.Background(), rs, d.name, d.data)
				if err != nil {
					b.Error(d.name, err)
					return nil
				}
				mu.Lock()
				bytes += res.Stats.Expanded
				mu.Unlock()
				return nil
			})
		}
		g.Wait()
	}
	b.SetBytes(bytes)
	c := e.Counters()
	b.ReportMetric(float64(c.ScannedBytes)/float64(b.N)/1e6, "MB-scanned/op")
	b.ReportMetric(float64(c.SkippedBytes)/float64(b.N)/1e6, "MB-skipped/op")
	b.ReportMetric(float64(c.CacheHitBytes)/float64(b.N)/1e6, "MB-cached/op")
}

// BenchmarkMatchGuardOverhead scans the ~20 MB sdist of
// BenchmarkScanThroughput with the bench/ rules (whose ~250 strings make
// every file over 2 KiB watched at the default bound) with the match memory
// guard on, and with it off (no bound): the guard's cost per scan.
func BenchmarkMatchGuardOverhead(b *testing.B) {
	files := pythonish(2000, 10<<10)
	data := tgz(b, files...)
	rs := compileSet(b, loadSet(b, filepath.Join("..", "..", "bench", "rules")))
	for _, bc := range []struct {
		name  string
		bound int64
	}{{"guarded", 0}, {"unguarded", 1 << 62}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEngine(b, Config{Threads: runtime.NumCPU(), Limits: limit.Limits{MatchMemory: bc.bound}, MaxMatchData: 1})
			b.SetBytes(expanded(files))
			b.ResetTimer()
			for range b.N {
				if _, err := e.Scan(context.Background(), rs, "pkg-1.0.tar.gz", data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(e.guard.Watches())/float64(b.N*len(files)), "watched/file")
		})
	}
}

// BenchmarkDisableVsSubset scans ~20 MB of Python-like text as a file
// that admits only the bench rules without a filetype (LICENSE, data.json:
// the slow .py regexes do not apply) three ways: with the whole set, with
// the whole set and every other rule disabled (yara.Rule.Disable: libyara
// still searches a disabled rule's strings, it only skips its condition),
// and with the compiled subset of the admitted rules. One thread, bare
// scanners, no unpacking.
func BenchmarkDisableVsSubset(b *testing.B) {
	files := pythonish(2000, 10<<10)
	set := loadSet(b, filepath.Join("..", "..", "bench", "rules"))
	full := compileSet(b, set)
	p := newPlan(full, false, 8, nil)
	tg, adm := p.targetFor("pkg/LICENSE")
	tg.compile()
	if !tg.subset {
		b.Fatal("LICENSE admits every rule: nothing to compare")
	}
	disabled := compileSet(b, set) // its own copy: Disable changes it for every scanner
	for i, r := range disabled.Yara().GetRules() {
		if !tg.holds.has(i) {
			r.Disable()
		}
	}
	b.Logf("%d of %d rules admitted, %d held with what they depend on", popcount(adm), p.n, popcount(tg.holds))
	for _, bc := range []struct {
		name string
		rs   *rules.Compiled
	}{{"whole", full}, {"disabled", disabled}, {"subset", tg.rules}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := rules.NewScanner(bc.rs.Yara())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Destroy()
			var m yara.MatchRules
			s.SetCallback(&m)
			b.SetBytes(expanded(files))
			b.ResetTimer()
			for range b.N {
				for _, f := range files {
					m = m[:0]
					if err := s.ScanMem([]byte(f[1])); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func popcount(r ruleBits) int {
	n := 0
	for _, w := range r {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}
