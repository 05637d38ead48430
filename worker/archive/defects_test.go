package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// noise is incompressible content, so cutting a compressed stream in the
// middle cuts a file's data.
func noise(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// bigTar holds one small file and one 64 KiB file of noise.
func bigTar(t testing.TB) []byte {
	return makeTar(t, reg("pkg/a.py", "a = 1\n"), reg("pkg/big.bin", noise(64<<10)))
}

// centralRecords returns the offsets of the central directory records of a
// zip built by buildZip.
func centralRecords(b []byte) []int {
	var offs []int
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(sigCentral))
		if j < 0 {
			return offs
		}
		offs = append(offs, i+j)
		i += j + 4
	}
}

// patch returns a copy of b changed by f.
func patch(b []byte, f func(b []byte)) []byte {
	c := bytes.Clone(b)
	f(c)
	return c
}

func flip(b []byte, at int) []byte {
	return patch(b, func(c []byte) { c[at] ^= 0x55 })
}

const anyPath = "*"

func TestWalkDefects(t *testing.T) {
	twoFiles := func(t testing.TB) []byte {
		return buildZip(t, zipOpts{},
			zipEnt{Name: "pkg/a.py", Body: "first file", Method: methodStore},
			zipEnt{Name: "pkg/b.py", Body: strings.Repeat("second ", 50), Method: methodDeflate, Zip64: true})
	}
	tests := []struct {
		name   string
		data   func(t *testing.T) []byte
		path   string // Error.Path, anyPath for any
		is     error  // a cause errors.Is must find, if not nil
		stream string // format of a *streamError cause, if any
		msg    string // the whole message, if given
	}{
		{name: "truncated gzip", data: func(t *testing.T) []byte { b := gz(t, bigTar(t)); return b[:len(b)/2] },
			path: "pkg/big.bin", stream: "gzip", msg: "pkg/big.bin: corrupt gzip stream: unexpected EOF"},
		{name: "corrupt gzip", data: func(t *testing.T) []byte { b := gz(t, bigTar(t)); return flip(b, len(b)/2) },
			path: anyPath, stream: "gzip"},
		{name: "corrupt gzip header", data: func(t *testing.T) []byte { return flip(gz(t, bigTar(t)), 3) },
			path: "", stream: "gzip"},
		{name: "gzip checksum mismatch", data: func(t *testing.T) []byte { b := gz(t, bigTar(t)); return flip(b, len(b)-6) },
			path: "", stream: "gzip"},
		{name: "gzip trailer cut", data: func(t *testing.T) []byte { b := gz(t, bigTar(t)); return b[:len(b)-4] },
			path: "", stream: "gzip", is: io.ErrUnexpectedEOF},
		{name: "truncated bzip2", data: func(t *testing.T) []byte { b := readTestdata(t, "small.tar.bz2"); return b[:len(b)/2] },
			path: anyPath, stream: "bzip2"},
		{name: "corrupt bzip2", data: func(t *testing.T) []byte { b := readTestdata(t, "small.tar.bz2"); return flip(b, len(b)/2) },
			path: anyPath, stream: "bzip2"},
		{name: "truncated bzip2 non-tar", data: func(t *testing.T) []byte { b := readTestdata(t, "note.txt.bz2"); return b[:len(b)-3] },
			path: anyPath, stream: "bzip2"},
		{name: "truncated xz", data: func(t *testing.T) []byte { b := xzc(t, bigTar(t)); return b[:len(b)/2] },
			path: "", stream: "xz"},
		{name: "corrupt xz", data: func(t *testing.T) []byte { b := xzc(t, bigTar(t)); return flip(b, len(b)/2) },
			path: anyPath, stream: "xz"},
		{name: "truncated tar", data: func(t *testing.T) []byte { b := bigTar(t); return b[:len(b)/2] },
			path: "pkg/big.bin", is: io.ErrUnexpectedEOF, msg: "pkg/big.bin: truncated tar: unexpected EOF"},
		{name: "tar cut in a header", data: func(t *testing.T) []byte { return bigTar(t)[:1024+100] },
			path: "", is: io.ErrUnexpectedEOF},
		{name: "bad tar header checksum", data: func(t *testing.T) []byte { return flip(bigTar(t), 1024+150) },
			path: "", is: tar.ErrHeader},
		{name: "bad tar header checksum in tar.gz", data: func(t *testing.T) []byte { return gz(t, flip(bigTar(t), 1024+150)) },
			path: "", is: tar.ErrHeader},
		{name: "bad tar size field", data: func(t *testing.T) []byte {
			return rawTar(patch(rawTarHeader("x.py", '0', 1, "ustar\x0000"), func(h []byte) { copy(h[124:], "9999"); setTarChecksum(h) }))
		}, path: "", is: tar.ErrHeader},
		{name: "truncated zip", data: func(t *testing.T) []byte { b := twoFiles(t); return b[:len(b)/2] }, path: ""},
		{name: "bad central directory signature", data: func(t *testing.T) []byte {
			b := twoFiles(t)
			return patch(b, func(c []byte) { c[centralRecords(c)[1]+3] = 9 })
		}, path: ""},
		{name: "central directory size too large", data: func(t *testing.T) []byte {
			b := twoFiles(t)
			return patch(b, func(c []byte) { le.PutUint32(c[len(c)-10:], 1<<20) })
		}, path: ""},
		{name: "zip crc mismatch", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: "content", Method: methodStore, CRC: ptr[uint32](7)})
		}, path: "a.py", is: errChecksum},
		{name: "zip deflate crc mismatch", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: "content", Method: methodDeflate, CRC: ptr[uint32](7)})
		}, path: "a.py", is: errChecksum},
		{name: "local header names another file", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "pkg/a.py", Body: "ok", Method: methodStore},
				zipEnt{Name: "pkg/harmless.txt", LocalName: ptr("pkg/evil.py"), Body: "evil", Method: methodStore})
		}, path: "pkg/harmless.txt", is: errNameMismatch},
		{name: "local header bad signature", data: func(t *testing.T) []byte {
			return patch(twoFiles(t), func(c []byte) { c[3] = 5 })
		}, path: "pkg/a.py"},
		{name: "local header out of range", data: func(t *testing.T) []byte {
			return patch(twoFiles(t), func(c []byte) { le.PutUint32(c[centralRecords(c)[0]+42:], 1<<30) })
		}, path: "pkg/a.py"},
		{name: "entry data overlaps the next local header", data: func(t *testing.T) []byte {
			return patch(twoFiles(t), func(c []byte) {
				r := centralRecords(c)[0]
				le.PutUint32(c[r+20:], le.Uint32(c[r+20:])+1)
				le.PutUint32(c[r+24:], le.Uint32(c[r+24:])+1)
			})
		}, path: "pkg/a.py", is: errOverlap},
		{name: "zip declares fewer bytes than it inflates to", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: strings.Repeat("x", 1000), Method: methodDeflate, USize: ptr[uint64](100)})
		}, path: "a.py", is: errSizeMismatch, msg: "a.py: content size differs from the declared size"},
		{name: "zip declares more bytes than it inflates to", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: strings.Repeat("x", 1000), Method: methodDeflate, USize: ptr[uint64](1001)})
		}, path: "a.py", is: errSizeMismatch},
		{name: "stored sizes differ", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: "abc", Method: methodStore, USize: ptr[uint64](2)})
		}, path: "a.py", is: errSizeMismatch},
		{name: "corrupt deflate data", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: "abc", Method: methodDeflate, Comp: []byte{0xff, 0xff, 0xff, 0xff}})
		}, path: "a.py", stream: "deflate"},
		{name: "truncated deflate data", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: noise(1000), Method: methodDeflate, Comp: deflate(t, []byte(noise(1000)))[:500]})
		}, path: "a.py", stream: "deflate", is: io.ErrUnexpectedEOF},
		{name: "corrupt lzma properties", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: "abc", Method: methodLZMA, Comp: []byte{9, 20, 4, 0, 1}})
		}, path: "a.py", stream: "lzma"},
		{name: "encrypted entry", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: "abc", Method: methodStore, Flags: flagEncrypted})
		}, path: "a.py", is: errUnsupported},
		{name: "deflate64 entry", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "a.py", Body: "abc", Method: 9, Comp: []byte("xyz")})
		}, path: "a.py", is: errUnsupported},
		{name: "missing zip64 extra field", data: func(t *testing.T) []byte {
			return patch(twoFiles(t), func(c []byte) { le.PutUint32(c[centralRecords(c)[0]+20:], 0xFFFFFFFF) })
		}, path: "pkg/a.py"},
		{name: "corrupt extra field", data: func(t *testing.T) []byte {
			return patch(twoFiles(t), func(c []byte) {
				r := centralRecords(c)[1]
				le.PutUint16(c[r+centralLen+len("pkg/b.py")+2:], 25)
			})
		}, path: "pkg/b.py"},
		{name: "zip spanning disks", data: func(t *testing.T) []byte {
			b := buildZip(t, zipOpts{Zip64: true}, zipEnt{Name: "a.py", Body: "abc", Method: methodStore})
			return patch(b, func(c []byte) { le.PutUint32(c[len(c)-endLen-4:], 2) })
		}, path: ""},
		{name: "empty file name in tar", data: func(t *testing.T) []byte { return rawTar(rawTarHeader("./", '0', 1, "ustar\x0000"), []byte("x")) },
			path: "./", is: errEmptyPath},
		{name: "empty file name in zip", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: ".", Body: "x", Method: methodStore})
		}, path: ".", is: errEmptyPath},
		{name: "unsafe path printed quoted", data: func(t *testing.T) []byte {
			return buildZip(t, zipOpts{}, zipEnt{Name: "../x\n.py", Body: "x", Method: methodStore})
		}, path: "../x\n.py", is: errUnsafePath, msg: `"../x\n.py": unsafe path`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, tc.data(t), "dist", noLimits)
			e := as[*Error](t, r.Err)
			if tc.path != anyPath && e.Path != tc.path {
				t.Errorf("Path %q, want %q (error %v)", e.Path, tc.path, e)
			}
			if tc.is != nil && !errors.Is(r.Err, tc.is) {
				t.Errorf("error %v is not %v", r.Err, tc.is)
			}
			var se *streamError
			if got := errors.As(r.Err, &se); got != (tc.stream != "") || got && se.format != tc.stream {
				t.Errorf("error %v: stream cause %v, want %q", r.Err, se, tc.stream)
			}
			msg := r.Err.Error()
			if strings.ContainsAny(msg, "\n\r") || msg == "" {
				t.Errorf("message %q is not one line", msg)
			}
			if tc.msg != "" && msg != tc.msg {
				t.Errorf("message %q, want %q", msg, tc.msg)
			}
		})
	}
}

func TestUnsafePaths(t *testing.T) {
	names := []string{
		"../evil.py",
		"..",
		"pkg/../../evil.py",
		"pkg/sub/../../../evil.py",
		"/etc/passwd",
		"//host/share/x",
		`\\host\share\x`,
		`C:\Windows\x.py`,
		"C:/Windows/x.py",
		"c:x.py",
		"./A:",
		"pkg/../C:x.py",
		`..\..\evil.py`,
		`pkg\..\..\evil.py`,
	}
	for _, name := range names {
		t.Run("tar "+name, func(t *testing.T) {
			data := rawTar(rawTarHeader("pkg/ok.py", '0', 2, "ustar\x0000"), []byte("ok"),
				rawTarHeader(name, '0', 1, "ustar\x0000"), []byte("x"))
			r := walk(t, data, "x.tar", noLimits)
			e := as[*Error](t, r.Err)
			if e.Path != name || !errors.Is(r.Err, errUnsafePath) {
				t.Errorf("error %v (path %q), want unsafe path %q", r.Err, e.Path, name)
			}
			if len(r.Files) != 1 || r.Files[0].Path != "pkg/ok.py" {
				t.Errorf("files %s, want only pkg/ok.py before the failure", quoteFiles(r.Files))
			}
		})
		t.Run("zip "+name, func(t *testing.T) {
			data := buildZip(t, zipOpts{},
				zipEnt{Name: "pkg/ok.py", Body: "ok", Method: methodStore},
				zipEnt{Name: name, Body: "x", Method: methodStore})
			r := walk(t, data, "x.zip", noLimits)
			e := as[*Error](t, r.Err)
			if e.Path != name || !errors.Is(r.Err, errUnsafePath) {
				t.Errorf("error %v (path %q), want unsafe path %q", r.Err, e.Path, name)
			}
			if len(r.Files) != 0 || r.Allocs != 0 {
				t.Errorf("zip emitted %d files, allocated %d: the directory is checked first", len(r.Files), r.Allocs)
			}
		})
	}
	t.Run("unsafe symlink and directory names fail too", func(t *testing.T) {
		for _, e := range []tarEntry{
			{Name: "../outside/", Type: tar.TypeDir},
			{Name: "/abs/link", Type: tar.TypeSymlink, Linkname: "x"},
		} {
			r := walk(t, makeTar(t, e), "x.tar", noLimits)
			if !errors.Is(r.Err, errUnsafePath) {
				t.Errorf("%s: error %v, want unsafe path", e.Name, r.Err)
			}
		}
	})
}

func TestCleanPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"pkg-1.0/setup.py", "pkg-1.0/setup.py"},
		{"./pkg-1.0/setup.py", "pkg-1.0/setup.py"},
		{"pkg//a///b", "pkg/a/b"},
		{"pkg/./a/./b", "pkg/a/b"},
		{"pkg/../b", "b"},
		{"pkg/sub/../../b", "b"},
		{`pkg\win\x.py`, "pkg/win/x.py"},
		{"dir/", "dir"},
		{"./", ""},
		{".", ""},
		{"", ""},
		{"a\x00b", "a"},
		{"bad\xffname", "bad\uFFFDname"},
		{"1:x", "1:x"},
		{"a/C:/x", "a/C:/x"},
		{"...", "..."},
		{"..a/b", "..a/b"},
	}
	for _, tc := range tests {
		got, err := cleanPath(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
