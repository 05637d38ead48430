package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/protocol"
)

// paxBody encodes PAX records, in the order given ("key", "value", ...).
func paxBody(kv ...string) []byte {
	var b bytes.Buffer
	for i := 0; i+1 < len(kv); i += 2 {
		rec := " " + kv[i] + "=" + kv[i+1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		fmt.Fprintf(&b, "%d%s", n, rec)
	}
	return b.Bytes()
}

// paxTar is a ustar tar of one PAX header of type typ (records kv) and the
// regular member name holding body.
func paxTar(typ byte, name, body string, kv ...string) []byte {
	recs := paxBody(kv...)
	return rawTar(
		rawTarHeader("PaxHeader/x", typ, int64(len(recs)), "ustar\x0000"), recs,
		rawTarHeader(name, '0', int64(len(body)), "ustar\x0000"), []byte(body),
	)
}

// TestTarNamesTarfileReadsOtherwise: where Python's tarfile (pip's
// unpacker) names or sizes a member otherwise than archive/tar, the
// distribution fails: scanned as "readme.txt", a file pip writes as
// "evil.py" would never meet the ".py" rules. Each of these tars gives
// tarfile (3.11-3.13) the member pkg/evil.py.
func TestTarNamesTarfileReadsOtherwise(t *testing.T) {
	const payload = "import os; os.system('x')"
	for _, tc := range []struct {
		name string
		tar  []byte
		want string
	}{
		{"global path", paxTar('g', "pkg/readme.txt", payload, "path", "pkg/evil.py"), `PAX global header sets "path"`},
		{"global size", paxTar('g', "pkg/readme.txt", payload, "size", "4"), `PAX global header sets "size"`},
		{"global GNU.sparse.name", paxTar('g', "pkg/readme.txt", payload, "GNU.sparse.name", "pkg/evil.py"), `PAX global header sets "GNU.sparse.name"`},
		{"local GNU.sparse.name", paxTar('x', "pkg/readme.txt", payload, "GNU.sparse.name", "pkg/evil.py"), "GNU.sparse PAX records"},
		{"local path then GNU.sparse.name", paxTar('x', "pkg/readme.txt", payload, "path", "pkg/readme.txt", "GNU.sparse.name", "pkg/evil.py"), "GNU.sparse PAX records"},
		{"local GNU.sparse.size", paxTar('x', "pkg/evil.py", payload, "GNU.sparse.size", "4096"), "GNU.sparse PAX records"},
		{"local GNU.sparse.realsize", paxTar('x', "pkg/evil.py", payload, "GNU.sparse.realsize", "1"), "GNU.sparse PAX records"},
		{"Solaris X header", paxTar('X', "pkg/readme.txt", payload, "path", "pkg/evil.py"), "Solaris extended header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, in := range []struct {
				name string
				data []byte
			}{{"x-1.0.tar", tc.tar}, {"x-1.0.tar.gz", gz(t, tc.tar)}} {
				r := walk(t, in.data, in.name, noLimits)
				var ae *Error
				if !errors.As(r.Err, &ae) || !strings.Contains(r.Err.Error(), tc.want) {
					t.Fatalf("%s: files %s, err %v; want an *Error saying %q", in.name, quoteFiles(r.Files), r.Err, tc.want)
				}
			}
		})
	}
}

// TestTarNamesTarfileAgrees: records that change nothing scanned pass: a
// global comment (git archive writes one), a local path, and
// GNU.sparse.name equal to the name archive/tar gives.
func TestTarNamesTarfileAgrees(t *testing.T) {
	for _, tc := range []struct {
		name string
		tar  []byte
		want string
	}{
		{"global comment", paxTar('g', "pkg/a.py", "x", "comment", "0123abcd"), "pkg/a.py"},
		{"local path", paxTar('x', "pkg/readme.txt", "x", "path", "pkg/a.py"), "pkg/a.py"},
		{"local GNU.sparse.name agreeing", paxTar('x', "pkg/a.py", "x", "GNU.sparse.name", "pkg/a.py"), "pkg/a.py"},
		{"local GNU.sparse.size agreeing", paxTar('x', "pkg/a.py", "x", "GNU.sparse.size", "1"), "pkg/a.py"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, gz(t, tc.tar), "x-1.0.tar.gz", noLimits)
			if r.Err != nil || len(r.Files) != 1 || r.Files[0].Path != tc.want || r.Files[0].Data != "x" {
				t.Fatalf("files %s, err %v; want %s", quoteFiles(r.Files), r.Err, tc.want)
			}
		})
	}
}

// TestTarHeaderOnlyTarfileReads: a tar whose first header has a checksum
// field tarfile reads but archive/tar does not (a tab before the digits,
// "0o", base-256) is a tar to pip: it fails the distribution instead of
// being scanned as one file holding the whole tar.
func TestTarHeaderOnlyTarfileReads(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format func(sum int64) []byte
	}{
		{"tab", func(sum int64) []byte { return []byte(fmt.Sprintf("\t%06o\x00", sum)) }},
		{"0o", func(sum int64) []byte { return []byte(fmt.Sprintf("0o%05o\x00", sum)) }},
		{"underscore", func(sum int64) []byte { return []byte(fmt.Sprintf("%03o_%03o\x00", sum>>9, sum&0o777)) }},
		{"base-256", func(sum int64) []byte {
			return []byte{0x80, 0, 0, 0, 0, 0, byte(sum >> 8), byte(sum)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := rawTarHeader("pkg/evil.py", '0', 5, "")
			copy(h[148:156], "        ")
			var sum int64
			for _, c := range h {
				sum += int64(c)
			}
			f := tc.format(sum)
			if len(f) != 8 {
				t.Fatalf("checksum field %q: %d bytes", f, len(f))
			}
			copy(h[148:156], f)
			if !isTar(h) {
				t.Fatalf("isTar: false for checksum field %q", f)
			}
			r := walk(t, gz(t, rawTar(h, []byte("evil!"))), "x-1.0.tar.gz", noLimits)
			var ae *Error
			if !errors.As(r.Err, &ae) || r.Stats.Format != TarGzip {
				t.Fatalf("format %v, files %s, err %v; want a tar.gz that fails", r.Stats.Format, quoteFiles(r.Files), r.Err)
			}
		})
	}
	// A NUL before the digits: tarfile reads 0 (the digits are after the
	// end of its string), archive/tar the digits. A header whose signed sum
	// is 0 (bytes of 0x80 and more make it negative) is a tar to tarfile.
	h := rawTarHeader("pkg/evil.py", '0', 5, "")
	copy(h[148:156], "        ")
	var signed int64
	for _, c := range h {
		signed += int64(int8(c))
	}
	for i := 157; signed > 0 && i < 257; i++ { // the link name: unused by a file
		d := min(signed, 128)
		h[i] = byte(256 - d)
		signed -= d
	}
	copy(h[148:156], "\x00001234")
	if signed != 0 || !isTar(h) {
		t.Fatalf("isTar: false for a checksum field tarfile reads as 0 (signed sum left %d)", signed)
	}
	r := walk(t, gz(t, rawTar(h, []byte("evil!"))), "x-1.0.tar.gz", noLimits)
	if r.Err == nil || r.Stats.Format != TarGzip {
		t.Fatalf("format %v, files %s, err %v; want a tar.gz that fails", r.Stats.Format, quoteFiles(r.Files), r.Err)
	}
	// A wrong checksum in any spelling is no tar: one file.
	h = rawTarHeader("pkg/evil.py", '0', 5, "")
	copy(h[148:156], "\t0o1_7 \x00")
	if isTar(h) {
		t.Fatal("isTar: true for a wrong checksum")
	}
}

func TestPyNumber(t *testing.T) {
	for in, want := range map[string]int64{
		"0000644\x00": 0o644, " 644 \x00x": 0o644, "\t644\n": 0o644, "0o644": 0o644, "0O6_44": 0o644,
		"+17": 0o17, "-17": -0o17, "\x00123": 0, "        ": 0, "\x1c17\x1f": 0o17,
		"\x80\x00\x00\x00\x00\x00\x01\x00": 256, "\xff\xff\xff\xff\xff\xff\xff\xff": -1,
	} {
		if got, ok := pyNumber([]byte(in)); !ok || got != want {
			t.Errorf("pyNumber(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"8", "0x10", "1 2", "é"} {
		if got, ok := pyNumber([]byte(in)); ok {
			t.Errorf("pyNumber(%q) = %d; want no number", in, got)
		}
	}
}

// TestLongPathFails: a member path longer than protocol.MaxPathBytes (PATH_MAX:
// pip cannot write it) fails the distribution in tar and zip alike, with a
// bounded message; held, a megabyte name would be kept for every file and
// link that matched, and would make the report's inspector_url huge.
func TestLongPathFails(t *testing.T) {
	ok := "pkg/" + strings.Repeat("d/", (protocol.MaxPathBytes-8)/2) + "a.py"
	long := "pkg/" + strings.Repeat("d", protocol.MaxPathBytes) + ".py"
	if p, err := cleanPath(ok); err != nil || len(p) > protocol.MaxPathBytes {
		t.Fatalf("cleanPath of %d bytes: %d, %v", len(ok), len(p), err)
	}
	for _, in := range []struct {
		name string
		data []byte
	}{
		{"x-1.0.tar.gz", gz(t, makeTar(t, reg(long, "evil")))},
		{"x-1.0-py3-none-any.whl", stdZip(t, file{long, "evil"})},
		{"x-1.0.tar.gz", gz(t, makeTar(t, reg("pkg/a.py", "evil"), tarEntry{Name: long, Type: tar.TypeLink, Linkname: "pkg/a.py"}))},
	} {
		r := walk(t, in.data, in.name, noLimits)
		if !errors.Is(r.Err, errLongPath) || len(r.Err.Error()) > 8<<10 {
			t.Errorf("%s: err %.200v (%d bytes); want errLongPath, bounded", in.name, r.Err, len(fmt.Sprint(r.Err)))
		}
	}
	r := walk(t, gz(t, makeTar(t, reg(ok, "x"))), "x-1.0.tar.gz", noLimits)
	if r.Err != nil || len(r.Files) != 1 {
		t.Fatalf("a path of %d bytes: files %d, err %v", len(ok), len(r.Files), r.Err)
	}
}

// TestPathLengthBoundary: a clean path of exactly protocol.MaxPathBytes is
// kept, one byte more fails with errLongPath; the coordinator
// (protocol.CheckMemberPath) draws the line at the same byte, so no path
// the walk keeps is one the coordinator refuses.
func TestPathLengthBoundary(t *testing.T) {
	at := "pkg/" + strings.Repeat("d", protocol.MaxPathBytes-len("pkg/.py")) + ".py"
	if len(at) != protocol.MaxPathBytes {
		t.Fatalf("test path of %d bytes", len(at))
	}
	if p, err := cleanPath(at); err != nil || p != at {
		t.Errorf("cleanPath of %d bytes: %d bytes, %v; want it kept", len(at), len(p), err)
	}
	if err := protocol.CheckMemberPath(at); err != nil {
		t.Errorf("CheckMemberPath of %d bytes: %v", len(at), err)
	}
	over := "pkg/d" + at[len("pkg/"):]
	if _, err := cleanPath(over); !errors.Is(err, errLongPath) {
		t.Errorf("cleanPath of %d bytes: %v, want errLongPath", len(over), err)
	}
	if protocol.CheckMemberPath(over) == nil {
		t.Errorf("CheckMemberPath accepts %d bytes", len(over))
	}
}

// member is a whole ustar member: its header block and its padded body.
func member(name string, typ byte, body string) []byte {
	return rawTar(rawTarHeader(name, typ, int64(len(body)), "ustar\x0000"), []byte(body))[:512+(len(body)+511)/512*512]
}

// meta is a meta header of type typ (x, g, L, K) holding data.
func meta(typ byte, data []byte) []byte {
	return append(rawTarHeader("././@meta", typ, int64(len(data)), "ustar\x0000"), pad512(data)...)
}

func pad512(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

// TestTarHeadersTarfileReadsOtherwise: headers that Python's tarfile
// (3.11) reads otherwise than archive/tar, found by a differential harness:
// each tar below gives tarfile a member pkg/evil.py holding the payload,
// which archive/tar gave another name or hid inside another member's data.
// The distribution fails.
func TestTarHeadersTarfileReadsOtherwise(t *testing.T) {
	const payload = "import os; os.system('x')"
	evil := member("pkg/evil.py", '0', payload) // 1024 bytes
	sizeNUL := rawTarHeader("pkg/readme.txt", '0', 0, "ustar\x0000")
	copy(sizeNUL[124:136], "\x0000000002000") // 1024 to archive/tar, 0 to tarfile
	setTarChecksum(sizeNUL)
	dirByName := rawTarHeader("pkg/readme.txt/", 0, int64(len(evil)), "ustar\x0000")
	fileByName := rawTarHeader("pkg/readme.txt", 0, int64(len(evil)), "ustar\x0000")
	long := func(name string) []byte { return meta('L', append([]byte(name), 0)) }
	for _, tc := range []struct {
		name string
		tar  []byte
		want error
	}{
		{"size field with a NUL first", slices.Concat(sizeNUL, evil), errTarSizeField},
		{"type 0 made a directory by its PAX path only", slices.Concat(meta('x', paxBody("path", "pkg/evil.py/")), fileByName, member("pkg/readme2.txt", '0', payload)), errTarDirKind},
		{"type 0 made a directory by its long name only", slices.Concat(long("pkg/evil.py/"), fileByName, member("pkg/readme2.txt", '0', payload)), errTarDirKind},
		{"type 0 a directory by its name field only", slices.Concat(meta('x', paxBody("path", "pkg/readme.txt")), dirByName, evil), errTarDirKind},
		{"two PAX headers", slices.Concat(meta('x', paxBody("path", "pkg/evil.py")), meta('x', paxBody("path", "pkg/readme.txt")), member("x", '0', payload)), errTarChain},
		{"two long names", slices.Concat(long("pkg/evil.py"), long("pkg/readme.txt"), member("x", '0', payload)), errTarChain},
		{"a PAX path and a long name", slices.Concat(meta('x', paxBody("path", "pkg/evil.py")), long("pkg/readme.txt"), member("x", '0', payload)), errTarChain},
		{"a global header after a PAX header", slices.Concat(meta('x', paxBody("path", "pkg/evil.py")), meta('g', paxBody("comment", "c")), member("pkg/readme.txt", '0', payload)), errTarChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, gz(t, pad512(slices.Concat(tc.tar, make([]byte, 1024)))), "x-1.0.tar.gz", noLimits)
			if !errors.Is(r.Err, tc.want) {
				t.Fatalf("files %s, err %v; want %v", quoteFiles(r.Files), r.Err, tc.want)
			}
		})
	}
}

// TestTarHeadersBothRead: header chains both readers take alike pass: a
// PAX path, a long name, a global header before a PAX header (git archive
// writes one first), type 0 files and directories.
func TestTarHeadersBothRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		tar  []byte
		want string
	}{
		{"PAX path", slices.Concat(meta('x', paxBody("path", "pkg/a.py")), member("x", '0', "A")), "pkg/a.py"},
		{"long name", slices.Concat(meta('L', []byte("pkg/a.py\x00")), member("x", '0', "A")), "pkg/a.py"},
		{"global then PAX", slices.Concat(meta('g', paxBody("comment", "c")), meta('x', paxBody("path", "pkg/a.py")), member("x", '0', "A")), "pkg/a.py"},
		{"type 0 file", member("pkg/a.py", 0, "A"), "pkg/a.py"},
		{"type 0 directory, then a file", slices.Concat(member("pkg/", 0, ""), member("pkg/a.py", '0', "A")), "pkg/a.py"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, gz(t, slices.Concat(tc.tar, make([]byte, 1024))), "x-1.0.tar.gz", noLimits)
			if r.Err != nil || len(r.Files) != 1 || r.Files[0].Path != tc.want || r.Files[0].Data != "A" {
				t.Fatalf("files %s, err %v; want %s", quoteFiles(r.Files), r.Err, tc.want)
			}
		})
	}
}

func TestGoNumber(t *testing.T) {
	for in, want := range map[string]int64{
		"00000002000\x00": 1024, "\x0000000002000": 1024, " 17 ": 0o17, "": 0, "\x00\x00": 0,
		"\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00": 1024, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff": -1,
	} {
		if got, ok := goNumber([]byte(in)); !ok || got != want {
			t.Errorf("goNumber(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"8", "1 2", "\t17"} {
		if got, ok := goNumber([]byte(in)); ok {
			t.Errorf("goNumber(%q) = %d; want a failure, as archive/tar's", in, got)
		}
	}
}

// TestHeaderTapHostileRegion: agrees reads what archive/tar read, but never
// trusts it: sizes past the region, negative or near the int64 limit end
// the check without a panic.
func TestHeaderTapHostileRegion(t *testing.T) {
	for _, size := range [][]byte{
		{0x80, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // near MaxInt64
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, // negative
		[]byte("77777777777\x00"),
		[]byte("00000001000\x00"), // exactly the rest of the region
	} {
		h := rawTarHeader("././@meta", 'x', 0, "ustar\x0000")
		copy(h[124:136], size)
		setTarChecksum(h)
		for _, region := range [][]byte{h, slices.Concat(h, make([]byte, 512)), slices.Concat(h, make([]byte, 1000))} {
			tap := &headerTap{buf: region}
			if err := tap.agrees(&tar.Header{Name: "x"}); err != nil && !errors.Is(err, errTarSizeField) {
				t.Errorf("size %q, region %d: %v", size, len(region), err)
			}
		}
	}
}

// TestSparseUnreadDataFails: an old GNU sparse member whose real size is 0
// and whose 1024 stored bytes no map entry names: reading its empty content
// makes archive/tar check nothing, and the headers after it (here a chain
// tarfile reads as pkg/evil.py) would be looked for inside that data. The
// member is read to its end, where archive/tar refuses it: the failure
// names the member (archive/tar's next header read only happens to refuse
// it too, naming nothing).
func TestSparseUnreadDataFails(t *testing.T) {
	sp := rawTarHeader("pkg/a.txt", tar.TypeGNUSparse, 1024, "ustar  \x00")
	copy(sp[483:495], "00000000000\x00") // real size 0, no map entries
	setTarChecksum(sp)
	long := func(name string) []byte { return meta('L', append([]byte(name), 0)) }
	b := slices.Concat(sp, make([]byte, 1024), long("pkg/evil.py"), long("pkg/readme.txt"), member("x", '0', "import os; os.system('x')"), make([]byte, 1024))
	r := walk(t, gz(t, b), "x-1.0.tar.gz", noLimits)
	var ae *Error
	if !errors.As(r.Err, &ae) || ae.Path != "pkg/a.txt" {
		t.Fatalf("files %s, err %v; want the distribution to fail at pkg/a.txt", quoteFiles(r.Files), r.Err)
	}
}
