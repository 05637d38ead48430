package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// file is one emitted file.
type file struct {
	Path string
	Data string
}

// result is everything one Walk did.
type result struct {
	Stats  Stats
	Err    error
	Files  []file // emitted and counted
	Failed []file // emitted after their read failed (content undefined)
	Links  []link // hard links reported
	Allocs int    // buffers taken
	Emits  int    // buffers handed back
	Bytes  int64  // bytes allocated
}

// link is one reported hard link: its path and the file it holds.
type link struct {
	Path   string
	Target string // the target file's path
	Data   string // the target file's content
}

// walk runs Walk with an allocator that records what it hands out, an
// emitter that checks the index sequence and keeps copies of the files, and
// a link callback that checks the link's target is an earlier file.
func walk(t testing.TB, data []byte, name string, lim limit.Limits) result {
	t.Helper()
	var r result
	byIndex := map[int]file{} // every emitted file, by index
	next := 0
	alloc := func(ctx context.Context, n int) ([]byte, error) {
		r.Allocs++
		r.Bytes += int64(n)
		return make([]byte, n), nil
	}
	emit := func(index int, path string, b []byte) error {
		r.Emits++
		if index != next {
			t.Errorf("emit index %d, want %d", index, next)
		}
		next++
		f := file{path, string(b)}
		byIndex[index] = f
		r.Files = append(r.Files, f)
		return nil
	}
	onLink := func(index int, path string, target int) error {
		if index != next {
			t.Errorf("link index %d, want %d", index, next)
		}
		next++
		f, ok := byIndex[target]
		if !ok || target >= index {
			t.Errorf("link %d %q to %d: not an earlier emitted file", index, path, target)
		}
		r.Links = append(r.Links, link{path, f.Path, f.Data})
		return nil
	}
	r.Stats, r.Err = Walk(context.Background(), data, name, lim, alloc, emit, onLink)
	if r.Allocs != r.Emits {
		t.Errorf("%d buffers allocated, %d handed back to emit", r.Allocs, r.Emits)
	}
	if r.Stats.Links != len(r.Links) {
		t.Errorf("%d links reported, Stats.Links %d", len(r.Links), r.Stats.Links)
	}
	if regular := r.Stats.Files - r.Stats.Links; regular < len(r.Files) {
		if r.Err == nil {
			t.Errorf("%d files emitted, Stats.Files %d (%d links), no error", len(r.Files), r.Stats.Files, r.Stats.Links)
		}
		r.Failed = r.Files[regular:]
		r.Files = r.Files[:regular]
	}
	return r
}

// noLinks is a Link callback for walks of inputs without hard links.
func noLinks(int, string, int) error { return errors.New("unexpected hard link") }

// noLimits are limits that never trigger in the tests.
var noLimits = limit.Limits{}

// tarEntry describes one tar member for tarOf.
type tarEntry struct {
	Name     string
	Type     byte
	Body     string
	Size     int64 // overrides len(Body) in the header when > 0
	Linkname string
	Format   tar.Format
}

func reg(name, body string) tarEntry { return tarEntry{Name: name, Type: tar.TypeReg, Body: body} }

// makeTar writes entries with archive/tar.
func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		size := int64(len(e.Body))
		if e.Type != tar.TypeReg && e.Type != tar.TypeRegA && e.Type != tar.TypeCont && e.Type != 'Z' {
			size = 0
		}
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Size: size, Linkname: e.Linkname,
			Mode: 0o644, ModTime: time.Unix(1700000000, 0), Format: e.Format}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.Name, err)
		}
		if size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawTarHeader builds one 512-byte tar header block by hand, for names and
// types archive/tar will not write. magic is "" for a v7 header.
func rawTarHeader(name string, typ byte, size int64, magic string) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "14000000000\x00")
	b[156] = typ
	if magic != "" {
		copy(b[257:265], magic)
	}
	setTarChecksum(b)
	return b
}

func setTarChecksum(b []byte) {
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b[:512] {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// rawTar concatenates header blocks and padded bodies and the end blocks.
func rawTar(parts ...[]byte) []byte {
	var buf bytes.Buffer
	for _, p := range parts {
		buf.Write(p)
		if pad := len(p) % 512; pad != 0 {
			buf.Write(make([]byte, 512-pad))
		}
	}
	buf.Write(make([]byte, 1024))
	return buf.Bytes()
}

// compress writes b through the compressor newW makes over a buffer and
// returns the compressed bytes.
func compress[W io.WriteCloser](t testing.TB, b []byte, newW func(io.Writer) (W, error)) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newW(&buf)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write(b)
	if err := errors.Join(err, w.Close()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	return compress(t, b, func(w io.Writer) (*gzip.Writer, error) { return gzip.NewWriter(w), nil })
}

func xzc(t testing.TB, b []byte) []byte { return compress(t, b, xz.NewWriter) }

func deflate(t testing.TB, b []byte) []byte {
	return compress(t, b, func(w io.Writer) (*flate.Writer, error) { return flate.NewWriter(w, flate.DefaultCompression) })
}

// lzmaZip compresses b in zip's LZMA framing: version, properties size,
// properties, then the raw LZMA stream with an end marker.
func lzmaZip(t testing.TB, b []byte) []byte {
	classic := compress(t, b, lzma.WriterConfig{EOSMarker: true, SizeInHeader: false}.NewWriter) // props(1) dict(4) size(8) stream
	out := []byte{9, 20, 5, 0}
	out = append(out, classic[:5]...)
	return append(out, classic[13:]...)
}

func zstdZip(t testing.TB, b []byte) []byte {
	t.Helper()
	e, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.EncodeAll(b, nil)
}

// bz2 compresses with the bzip2 command (make setup-test installs it; the
// test fails without it); testdata/*.bz2 cover the format without it too.
func bz2(t testing.TB, b []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("bzip2"); err != nil {
		t.Fatal("no bzip2 command (make setup-test installs it)")
	}
	cmd := exec.Command("bzip2", "-c", "-9")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bzip2: %v", err)
	}
	return out
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// zipEnt describes one entry for buildZip, which writes zips by hand so
// the tests control every field.
type zipEnt struct {
	Name      string
	LocalName *string // local header name, if it differs
	Body      string
	Method    uint16
	Flags     uint16
	Comp      []byte  // compressed bytes; derived from Body and Method if nil
	USize     *uint64 // declared uncompressed size, if not len(Body)
	CRC       *uint32 // declared CRC-32, if not that of Body
	MadeBy    uint16
	ExtAttr   uint32
	Zip64     bool   // sizes and offset in a zip64 extra field
	SameAs    int    // 1-based index of an earlier entry whose local header this record points to
	Extra     []byte // more central directory extra fields, after the zip64 one
}

type zipOpts struct {
	Prefix  []byte // bytes before the archive (self-extracting)
	Comment string
	Zip64   bool    // write zip64 end records
	Count   *uint64 // declared entry count, if not the real one
}

func ptr[T any](v T) *T { return &v }

func buildZip(t testing.TB, o zipOpts, ents ...zipEnt) []byte {
	t.Helper()
	var out bytes.Buffer
	out.Write(o.Prefix)
	base := out.Len()
	var cd bytes.Buffer
	offsets := make([]uint64, len(ents))
	for i, e := range ents {
		comp := e.Comp
		if comp == nil {
			switch e.Method {
			case methodStore:
				comp = []byte(e.Body)
			case methodDeflate:
				comp = deflate(t, []byte(e.Body))
			default:
				t.Fatalf("entry %q: give Comp for method %d", e.Name, e.Method)
			}
		}
		usize := uint64(len(e.Body))
		if e.USize != nil {
			usize = *e.USize
		}
		var crc uint32
		if e.CRC != nil {
			crc = *e.CRC
		} else {
			crc = crc32.ChecksumIEEE([]byte(e.Body))
		}
		csize := uint64(len(comp))
		off := uint64(out.Len() - base)
		if e.SameAs > 0 {
			off = offsets[e.SameAs-1]
		}
		offsets[i] = off
		flags := e.Flags
		var extra []byte
		s32 := func(v uint64) uint32 { return uint32(v) }
		if e.Zip64 {
			extra = le.AppendUint16(extra, 1)
			extra = le.AppendUint16(extra, 24)
			extra = le.AppendUint64(extra, usize)
			extra = le.AppendUint64(extra, csize)
			extra = le.AppendUint64(extra, off)
			s32 = func(uint64) uint32 { return 0xFFFFFFFF }
		}
		extra = append(extra, e.Extra...)
		if e.SameAs == 0 {
			name := e.Name
			if e.LocalName != nil {
				name = *e.LocalName
			}
			var lh []byte
			lh = append(lh, sigLocal...)
			lh = le.AppendUint16(lh, 20)
			lh = le.AppendUint16(lh, flags)
			lh = le.AppendUint16(lh, e.Method)
			lh = le.AppendUint32(lh, 0) // time, date
			lh = le.AppendUint32(lh, crc)
			lh = le.AppendUint32(lh, uint32(csize))
			lh = le.AppendUint32(lh, uint32(usize))
			lh = le.AppendUint16(lh, uint16(len(name)))
			lh = le.AppendUint16(lh, 0)
			lh = append(lh, name...)
			out.Write(lh)
			out.Write(comp)
		}
		var ch []byte
		ch = append(ch, sigCentral...)
		ch = le.AppendUint16(ch, e.MadeBy)
		ch = le.AppendUint16(ch, 20)
		ch = le.AppendUint16(ch, flags)
		ch = le.AppendUint16(ch, e.Method)
		ch = le.AppendUint32(ch, 0)
		ch = le.AppendUint32(ch, crc)
		ch = le.AppendUint32(ch, s32(csize))
		ch = le.AppendUint32(ch, s32(usize))
		ch = le.AppendUint16(ch, uint16(len(e.Name)))
		ch = le.AppendUint16(ch, uint16(len(extra)))
		ch = le.AppendUint16(ch, 0) // comment
		ch = le.AppendUint16(ch, 0) // disk
		ch = le.AppendUint16(ch, 0) // internal attributes
		ch = le.AppendUint32(ch, e.ExtAttr)
		ch = le.AppendUint32(ch, s32(off))
		ch = append(ch, e.Name...)
		ch = append(ch, extra...)
		cd.Write(ch)
	}
	cdOff := uint64(out.Len() - base)
	out.Write(cd.Bytes())
	count := uint64(len(ents))
	if o.Count != nil {
		count = *o.Count
	}
	c16, sz32, off32 := uint16(count), uint32(cd.Len()), uint32(cdOff)
	if o.Zip64 {
		z := uint64(out.Len() - base)
		var r []byte
		r = append(r, sigEnd64...)
		r = le.AppendUint64(r, end64Len-12)
		r = le.AppendUint16(r, 45)
		r = le.AppendUint16(r, 45)
		r = le.AppendUint32(r, 0)
		r = le.AppendUint32(r, 0)
		r = le.AppendUint64(r, count)
		r = le.AppendUint64(r, count)
		r = le.AppendUint64(r, uint64(cd.Len()))
		r = le.AppendUint64(r, cdOff)
		r = append(r, sigLoc64...)
		r = le.AppendUint32(r, 0)
		r = le.AppendUint64(r, z)
		r = le.AppendUint32(r, 1)
		out.Write(r)
		c16, sz32, off32 = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
	}
	var end []byte
	end = append(end, sigEnd...)
	end = le.AppendUint32(end, 0)
	end = le.AppendUint16(end, c16)
	end = le.AppendUint16(end, c16)
	end = le.AppendUint32(end, sz32)
	end = le.AppendUint32(end, off32)
	end = le.AppendUint16(end, uint16(len(o.Comment)))
	end = append(end, o.Comment...)
	out.Write(end)
	return out.Bytes()
}

// stdZip writes files with archive/zip, as wheel builders do; method per
// file: deflate unless the name ends in ".stored".
func stdZip(t testing.TB, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		m := zip.Deflate
		if filepath.Ext(f.Path) == ".stored" {
			m = zip.Store
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Path, Method: m})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// as returns the E in err's chain (an *Error, a *limit.Error), failing the
// test if there is none.
func as[E error](t testing.TB, err error) E {
	t.Helper()
	e, ok := errors.AsType[E](err)
	if !ok {
		t.Fatalf("error %v (%T) is not a %T", err, err, e)
	}
	return e
}

func quoteFiles(fs []file) string {
	var b bytes.Buffer
	for _, f := range fs {
		fmt.Fprintf(&b, "%s=%s ", strconv.Quote(f.Path), strconv.Quote(f.Data))
	}
	return b.String()
}
