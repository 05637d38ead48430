package scan

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
	yara "github.com/hillu/go-yara/v4"
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
				s, _ := yara.NewScanner(rs.Yara())
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
