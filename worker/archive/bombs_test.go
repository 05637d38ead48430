package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/klauspost/compress/flate"
	"github.com/ulikunitz/xz"
)

const mib = 1 << 20

// zeroDeflate returns a raw deflate stream of prefix, then zeros bytes of
// zeros (a multiple of 1 MiB, at least 2 MiB), then suffix, without
// compressing all of it: the block that encodes 1 MiB of zeros after zeros
// is valid anywhere after zeros, so it is repeated.
func zeroDeflate(t testing.TB, prefix []byte, zeros int64, suffix []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, mib)
	step := func(b ...[]byte) []byte {
		for _, p := range b {
			if _, err := w.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		out := bytes.Clone(buf.Bytes())
		buf.Reset()
		return out
	}
	out := step(prefix, chunk)
	rep := step(chunk)
	for range zeros/mib - 1 {
		out = append(out, rep...)
	}
	if _, err := w.Write(suffix); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return append(out, buf.Bytes()...)
}

// zeroCRC is the CRC-32 of prefix, zeros zero bytes and suffix.
func zeroCRC(prefix []byte, zeros int64, suffix []byte) uint32 {
	chunk := make([]byte, mib)
	c := crc32.ChecksumIEEE(prefix)
	for range zeros / mib {
		c = crc32.Update(c, crc32.IEEETable, chunk)
	}
	return crc32.Update(c, crc32.IEEETable, suffix)
}

// gzipOf wraps a raw deflate stream of content with crc and size in a
// gzip member.
func gzipOf(deflated []byte, crc uint32, size int64) []byte {
	out := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
	out = append(out, deflated...)
	out = le.AppendUint32(out, crc)
	return le.AppendUint32(out, uint32(size))
}

func TestZeroDeflate(t *testing.T) {
	d := zeroDeflate(t, []byte("head"), 4*mib, []byte("tail"))
	got, err := io.ReadAll(flate.NewReader(bytes.NewReader(d)))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte("head"), make([]byte, 4*mib)...), "tail"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("zeroDeflate inflates to %d bytes, not the %d expected", len(got), len(want))
	}
	if crc32.ChecksumIEEE(want) != zeroCRC([]byte("head"), 4*mib, []byte("tail")) {
		t.Fatal("zeroCRC is wrong")
	}
}

// bombResult is a walk measured for memory and time.
type bombResult struct {
	err      error
	maxAlloc int    // largest buffer requested
	heap     uint64 // bytes Walk itself allocated (TotalAlloc delta)
	took     time.Duration
}

// walkBomb walks data with an allocator that hands out one reused buffer,
// so the heap figure is what Walk itself allocates.
func walkBomb(t testing.TB, data []byte, name string, lim limit.Limits) bombResult {
	t.Helper()
	var r bombResult
	pool := make([]byte, lim.File)
	alloc := func(_ context.Context, n int) ([]byte, error) {
		r.maxAlloc = max(r.maxAlloc, n)
		if n > len(pool) {
			t.Errorf("buffer of %d bytes requested, over the %d-byte file limit", n, len(pool))
			return make([]byte, n), nil
		}
		return pool[:n], nil
	}
	emit := func(int, string, []byte) error { return nil }
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, r.err = Walk(context.Background(), data, name, lim, alloc, emit, noLinks)
	r.took = time.Since(start)
	runtime.ReadMemStats(&after)
	r.heap = after.TotalAlloc - before.TotalAlloc
	return r
}

func TestBombs(t *testing.T) {
	lim := limit.Limits{File: 1 * mib, Expanded: 4 * mib, Entries: 100000}
	const gib = 1 << 30
	tarHeader := rawTarHeader("pkg/zeros.bin", '0', gib, "ustar\x0000")
	tarEnd := make([]byte, 1024)

	tests := []struct {
		name  string
		data  func(t *testing.T) []byte
		dist  string
		lim   *limit.Limits // lim if nil
		heap  uint64        // most bytes Walk may allocate; 2 × lim.File if 0
		check func(t *testing.T, err error)
	}{
		{name: "zip bomb: 1 GiB of zeros, declared", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "zeros.bin", Method: methodDeflate,
				Comp: zeroDeflate(t, nil, gib, nil), USize: ptr[uint64](gib), CRC: ptr(zeroCRC(nil, gib, nil))})
		}, check: wantLimit(limit.File, "zeros.bin")},
		{name: "zip bomb: 1 GiB of zeros declared as 1 MiB", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "zeros.bin", Method: methodDeflate,
				Comp: zeroDeflate(t, nil, gib, nil), USize: ptr[uint64](mib), CRC: ptr(zeroCRC(nil, mib, nil))})
		}, check: wantDefect(errSizeMismatch, "zeros.bin")},
		{name: "zip bomb: a thousand records of one 1 MiB entry", data: func(t *testing.T) []byte {
			zeros := make([]byte, mib)
			e := zipEnt{Name: "z", Method: methodDeflate, Comp: deflate(t, zeros), USize: ptr[uint64](mib), CRC: ptr(crc32.ChecksumIEEE(zeros))}
			es := []zipEnt{e}
			e.SameAs = 1
			for range 1000 {
				es = append(es, e)
			}
			return buildZip(t, zipOpts{}, es...)
		}, check: wantLimit(limit.Expanded, "z")},
		{name: "zip bomb: overlapping entries", data: func(t *testing.T) []byte {
			var es []zipEnt
			for i := range 100 {
				es = append(es, zipEnt{Name: fmt.Sprintf("f%03d", i), Body: "k", Method: methodStore})
			}
			b := buildZip(t, zipOpts{}, es...)
			cd := centralRecords(b)
			// Every entry's data runs to the central directory, over the
			// local headers of all the entries after it.
			return patch(b, func(c []byte) {
				for _, r := range cd {
					data := int(le.Uint32(c[r+42:])) + localLen + 4
					size := uint32(cd[0] - data)
					le.PutUint32(c[r+20:], size)
					le.PutUint32(c[r+24:], size)
				}
			})
		}, check: wantDefect(errOverlap, "f000")},
		{name: "zip bomb: thousands of tiny bzip2 entries", data: func(t *testing.T) []byte {
			// Each makes the bzip2 decoder allocate a 3.6 MB block buffer.
			comp := readTestdata(t, "note.txt.bz2")
			var es []zipEnt
			for i := range 5000 {
				es = append(es, zipEnt{Name: fmt.Sprintf("f%04d", i), Body: "just some text, not a tar\n", Method: methodBzip2, Comp: comp})
			}
			return buildZip(t, zipOpts{}, es...)
		}, heap: 64*mib + 4*mib, check: wantLimit(limit.Expanded, "f0018")},
		{name: "tar.gz bomb: one 1 GiB file", data: func(t *testing.T) []byte {
			d := zeroDeflate(t, tarHeader, gib, tarEnd)
			return gzipOf(d, zeroCRC(tarHeader, gib, tarEnd), 512+gib+1024)
		}, check: wantLimit(limit.File, "pkg/zeros.bin")},
		{name: "tar.gz bomb: many 1 MiB files", data: func(t *testing.T) []byte {
			var b bytes.Buffer
			for i := range 64 {
				b.Write(rawTarHeader(fmt.Sprintf("z%04d", i), '0', mib, "ustar\x0000"))
				b.Write(make([]byte, mib))
			}
			b.Write(tarEnd)
			return gz(t, b.Bytes())
		}, check: wantLimit(limit.Expanded, "z0004")},
		{name: "gzip bomb: 1 GiB of zeros, not a tar", data: func(t *testing.T) []byte {
			// (Zeros from the first byte would be an empty tar.)
			head := []byte("not a tar\n")
			return gzipOf(zeroDeflate(t, head, gib, nil), zeroCRC(head, gib, nil), gib+int64(len(head)))
		}, dist: "zeros.gz", check: wantLimit(limit.File, "zeros")},
		{name: "tar.gz bomb: endless PAX headers", data: func(t *testing.T) []byte {
			rec := "22 comment=aaaaaaaaaa\n"
			pax := append(rawTarHeader("PaxHeaders/x", 'x', int64(len(rec)), "ustar\x0000"), rec...)
			pax = append(pax, make([]byte, 512-len(rec))...)
			return gz(t, bytes.Repeat(pax, 20000))
			// archive/tar hides PAX headers (no entry limit sees them) and
			// allocates for each: the stream bound stops the flood, and
			// the garbage is proportional to it.
		}, lim: &limit.Limits{File: mib, Expanded: 4 * mib, Entries: 100}, heap: 8 * (4*mib + 100*4096 + mib),
			check: wantLimit(limit.Expanded, "")},
		{name: "xz bomb: 4 GiB dictionary", data: func(t *testing.T) []byte {
			return hugeXzDict(xzc(t, []byte("tiny")))
		}, dist: "tiny.xz", check: wantDefect(nil, "")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data(t)
			dist := tc.dist
			if dist == "" {
				dist = "bomb"
			}
			l := lim
			if tc.lim != nil {
				l = *tc.lim
			}
			r := walkBomb(t, data, dist, l)
			tc.check(t, r.err)
			t.Logf("%d input bytes: %v; walk allocated %d bytes, largest buffer %d, took %v",
				len(data), r.err, r.heap, r.maxAlloc, r.took)
			maxHeap := tc.heap
			if maxHeap == 0 {
				maxHeap = 2 * uint64(l.File)
			}
			if r.heap >= maxHeap {
				t.Errorf("walk allocated %d bytes, want < %d", r.heap, maxHeap)
			}
		})
	}
}

func wantLimit(k limit.Kind, path string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		le := as[*limit.Error](t, err)
		if le.Kind != k || le.Path != path {
			t.Errorf("limit error %+v, want kind %s path %q", *le, k, path)
		}
	}
}

func wantDefect(cause error, path string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		e := as[*Error](t, err)
		if e.Path != path || cause != nil && !errors.Is(err, cause) {
			t.Errorf("error %v (path %q), want %v at %q", err, e.Path, cause, path)
		}
	}
}

// TestXzDictionaryBudget checks the container scan that keeps the xz
// decoder from allocating dictionaries the content cannot need.
func TestXzDictionaryBudget(t *testing.T) {
	small := xzc(t, []byte("content"))
	claimed, err := xzScan(small)
	if err != nil || claimed != 7 {
		t.Fatalf("xzScan = %d, %v; want 7, nil", claimed, err)
	}
	// Two streams and padding are one input.
	two := append(append(bytes.Clone(small), 0, 0, 0, 0), small...)
	if claimed, err := xzScan(two); err != nil || claimed != 14 {
		t.Fatalf("two streams: xzScan = %d, %v; want 14, nil", claimed, err)
	}
	r := walk(t, two, "c.xz", noLimits)
	if r.Err != nil || len(r.Files) != 1 || r.Files[0].Data != "contentcontent" {
		t.Fatalf("two streams: %v %s", r.Err, quoteFiles(r.Files))
	}
	// A 64 MiB dictionary is allowed for any block (xz -9).
	if _, err := xzScan(compress(t, []byte("content"), xz.WriterConfig{DictCap: 64 << 20}.NewWriter)); err != nil {
		t.Errorf("64 MiB dictionary refused: %v", err)
	}
	for _, cut := range []int{0, 11, 12, 24, len(small) - 1} {
		if _, err := xzScan(small[:cut]); err == nil {
			t.Errorf("xzScan accepted %d of %d bytes", cut, len(small))
		}
	}
}

// xzClaiming returns an xz stream of one block that declares the LZMA2
// dictionary of property prop and whose index claims uncompressed bytes:
// what the container scan reads, around four bytes of block data that are
// not LZMA2 (the decoder fails on them, after allocating its dictionary).
func xzClaiming(prop byte, uncompressed uint64) []byte {
	var b []byte
	crc := func(p []byte) []byte { return le.AppendUint32(nil, crc32.ChecksumIEEE(p)) }
	varint := func(b []byte, x uint64) []byte {
		for x >= 0x80 {
			b = append(b, byte(x)|0x80)
			x >>= 7
		}
		return append(b, byte(x))
	}
	flags := []byte{0, 1} // CRC32 checks
	b = append(append(append(b, 0xfd, '7', 'z', 'X', 'Z', 0), flags...), crc(flags)...)
	// Block header: size 12 bytes, one filter, no sizes; LZMA2 with prop.
	h := []byte{12/4 - 1, 0, 0x21, 1, prop, 0, 0, 0}
	b = append(append(b, h...), crc(h)...)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0) // data, then its check
	idx := varint(varint([]byte{0, 1}, 12+4+4), uncompressed)
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = append(idx, crc(idx)...)
	b = append(b, idx...)
	foot := append(le.AppendUint32(nil, uint32(len(idx)/4-1)), flags...)
	return append(append(append(b, crc(foot)...), foot...), 'Y', 'Z')
}

// TestXzDictionaryOverPresetRefused checks that a tar.xz cannot make a
// walk allocate an xz dictionary beyond that of xz's largest preset (64
// MiB, -9) by claiming as much content: with the default limits a block
// could claim 769 MiB and declare a 768 MiB dictionary, which the decoder
// allocates and fills as it reads (a 124 MB tar.xz of 512 MiB of files took
// 1.8 GB of peak RSS in dragonfly scan, 2 GB in a 2-thread worker).
func TestXzDictionaryOverPresetRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		prop byte // LZMA2 dictionary property
		dict int64
	}{
		{"128 MiB", 30, 128 << 20},
		{"768 MiB", 35, 768 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lzma2Dict(tc.prop); got != tc.dict {
				t.Fatalf("lzma2Dict(%d) = %d, want %d", tc.prop, got, tc.dict)
			}
			// The claimed content is at least the dictionary and within the
			// tar stream bound of the default limits (769 MiB).
			data := xzClaiming(tc.prop, uint64(tc.dict)+4096)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			r := walk(t, data, "bomb-1.0.tar.xz", limit.Defaults())
			runtime.ReadMemStats(&after)
			if r.Err == nil {
				t.Fatal("walk succeeded, want an error")
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 16<<20 {
				t.Errorf("walk allocated %d MiB before failing (%v), want the dictionary refused before any is allocated", d>>20, r.Err)
			}
			// A limit failure (no verdict in spot checks), not an archive
			// defect: a worker of the previous release scans the archive,
			// and a defect stood against its verdict.
			var e *limit.Error
			if !errors.As(r.Err, &e) || e.Kind != limit.XzDictionary || e.Max != xzMaxDict || strings.Contains(r.Err.Error(), "corrupt") {
				t.Errorf("error %T %v, want the limit %s of %d bytes, not a corrupt stream", r.Err, r.Err, limit.XzDictionary, xzMaxDict)
			}
		})
	}
	// xz -9's 64 MiB dictionary (property 28, what xz -9, -9e, -9 -T0 and
	// Python's lzma at preset 9 write) stays allowed for a block of any
	// size, the next size up (96 MiB) does not. Property 26 is 32 MiB: the
	// bound itself went untested.
	if got := lzma2Dict(28); got != 64<<20 {
		t.Fatalf("lzma2Dict(28) = %d, want 64 MiB", got)
	}
	if _, err := xzScan(xzClaiming(28, 1<<30)); err != nil {
		t.Errorf("64 MiB dictionary refused: %v", err)
	}
	if _, err := xzScan(xzClaiming(29, 1<<30)); !errors.Is(err, errXzDict) {
		t.Errorf("96 MiB dictionary: %v, want refused", err)
	}
}
