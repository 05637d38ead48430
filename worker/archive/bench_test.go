package archive

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
)

// corpus is ~50 MB of Python-like source in files of 200 B to 64 KiB, the
// shape of a large sdist or wheel.
type corpus struct {
	files    []file
	expanded int64
}

var benchCorpus = sync.OnceValue(func() corpus {
	r := rand.New(rand.NewPCG(7, 11))
	words := []string{"def", "self", "return", "import", "from", "class", "if", "else", "for", "in",
		"None", "True", "False", "raise", "with", "as", "yield", "lambda", "try", "except"}
	ident := func() string {
		const letters = "abcdefghijklmnopqrstuvwxyz_"
		n := 3 + r.IntN(10)
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[r.IntN(len(letters))]
		}
		return string(b)
	}
	idents := make([]string, 2000)
	for i := range idents {
		idents[i] = ident()
	}
	var c corpus
	for c.expanded < 50<<20 {
		size := 200 << r.IntN(9) // 200 B .. 51 KiB, log-uniform
		size += r.IntN(size)
		var b strings.Builder
		for b.Len() < size {
			b.WriteString(strings.Repeat("    ", r.IntN(4)))
			for range 2 + r.IntN(8) {
				if r.IntN(3) == 0 {
					b.WriteString(words[r.IntN(len(words))])
				} else {
					b.WriteString(idents[r.IntN(len(idents))])
				}
				b.WriteByte(" .(,:"[r.IntN(5)])
			}
			b.WriteString(fmt.Sprintf("%d\n", r.IntN(1000)))
		}
		name := fmt.Sprintf("pkg-1.0/pkg/m%03d/%s_%d.py", len(c.files)/50, idents[r.IntN(len(idents))], len(c.files))
		c.files = append(c.files, file{name, b.String()})
		c.expanded += int64(b.Len())
	}
	return c
})

func benchTarGz(b *testing.B) []byte {
	c := benchCorpus()
	ents := make([]tarEntry, len(c.files))
	for i, f := range c.files {
		ents[i] = reg(f.Path, f.Data)
	}
	return gz(b, makeTar(b, ents...))
}

func benchZip(b *testing.B) []byte {
	c := benchCorpus()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.DefaultCompression)
	})
	for _, f := range c.files {
		w, err := zw.Create(strings.TrimPrefix(f.Path, "pkg-1.0/"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.WriteString(w, f.Data); err != nil {
			b.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// benchWalk walks data b.N times with a reused buffer (as the scan engine
// pools its buffers) and reports MB/s of unpacked content.
func benchWalk(b *testing.B, data []byte) {
	c := benchCorpus()
	pool := make([]byte, 1<<20)
	alloc := func(_ context.Context, n int) ([]byte, error) { return pool[:n], nil }
	emit := func(int, string, []byte) error { return nil }
	b.SetBytes(c.expanded)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		st, err := Walk(context.Background(), data, "dist", limit.Defaults(), alloc, emit, noLinks)
		if err != nil || st.Files != len(c.files) || st.Expanded != c.expanded {
			b.Fatalf("walk: %v, %+v", err, st)
		}
	}
	reportCPU(b, cpu, c.expanded)
	b.ReportMetric(float64(len(data))/1e6, "compressed-MB")
	b.ReportMetric(float64(len(c.files)), "files")
}

func BenchmarkWalkTarGz(b *testing.B) { benchWalk(b, benchTarGz(b)) }

func BenchmarkWalkZip(b *testing.B) { benchWalk(b, benchZip(b)) }

// BenchmarkGunzipBaseline is the floor for BenchmarkWalkTarGz: the same
// tar.gz inflated to io.Discard, without tar or copies.
func BenchmarkGunzipBaseline(b *testing.B) {
	data := benchTarGz(b)
	b.SetBytes(benchCorpus().expanded)
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, zr); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu, benchCorpus().expanded)
}

// reportCPU reports MB of unpacked content per CPU-second since start, a
// figure that holds on a machine shared with other work.
func reportCPU(b *testing.B, start time.Duration, bytes int64) {
	if start == 0 {
		return
	}
	if d := cpuTime() - start; d > 0 {
		b.ReportMetric(float64(bytes)*float64(b.N)/1e6/d.Seconds(), "MB/cpu-s")
	}
}
