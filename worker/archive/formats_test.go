package archive

import (
	"archive/tar"
	"reflect"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// sdist is a small source distribution with every kind of tar entry.
func sdist(t testing.TB) []byte {
	return makeTar(t,
		tarEntry{Name: "pkg-1.0/", Type: tar.TypeDir},
		reg("pkg-1.0/setup.py", "from setuptools import setup\nsetup()\n"),
		tarEntry{Name: "pkg-1.0/pkg/", Type: tar.TypeDir},
		reg("./pkg-1.0/pkg/__init__.py", "X = 1\n"),
		tarEntry{Name: "pkg-1.0/link", Type: tar.TypeSymlink, Linkname: "setup.py"},
		tarEntry{Name: "pkg-1.0/hard", Type: tar.TypeLink, Linkname: "pkg-1.0/setup.py"},
		tarEntry{Name: "pkg-1.0/chr", Type: tar.TypeChar},
		tarEntry{Name: "pkg-1.0/blk", Type: tar.TypeBlock},
		tarEntry{Name: "pkg-1.0/fifo", Type: tar.TypeFifo},
		reg("pkg-1.0//pkg/./empty.py", ""),
		reg("pkg-1.0/pkg/../README", "readme"),
	)
}

var sdistFiles = []file{
	{"pkg-1.0/setup.py", "from setuptools import setup\nsetup()\n"},
	{"pkg-1.0/pkg/__init__.py", "X = 1\n"},
	{"pkg-1.0/pkg/empty.py", ""},
	{"pkg-1.0/README", "readme"},
}

// sdistLinks is sdist's hard link: a file under its own path holding its
// target's content.
var sdistLinks = []link{{"pkg-1.0/hard", "pkg-1.0/setup.py", "from setuptools import setup\nsetup()\n"}}

// sdistStats counts sdist's four regular files and its hard link (a file
// that adds nothing to Expanded).
func sdistStats(f Format) Stats {
	return Stats{Format: f, Entries: 11, Files: 5, Links: 1, Expanded: int64(len("from setuptools import setup\nsetup()\n") + 6 + 6)}
}

func TestWalkFormats(t *testing.T) {
	wheel := []file{
		{"pkg/__init__.py", "X = 1\n"},
		{"pkg/data.stored", "stored bytes"},
		{"pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: pkg\n"},
	}
	html := "<!DOCTYPE html>\n<html><body>Not Found</body></html>\n"
	lzmaComp := lzmaZip(t, []byte("lzma content\n"))
	zstdComp := zstdZip(t, []byte("zstd content\n"))
	innerZip := stdZip(t, file{"a.py", "A"})
	innerTgz := gz(t, makeTar(t, reg("b.py", "B")))

	tests := []struct {
		name  string
		data  func(t *testing.T) []byte
		dist  string
		files []file
		stats Stats
	}{
		{"tar", func(t *testing.T) []byte { return sdist(t) }, "pkg-1.0.tar", sdistFiles, sdistStats(Tar)},
		{"tar.gz", func(t *testing.T) []byte { return gz(t, sdist(t)) }, "pkg-1.0.tar.gz", sdistFiles, sdistStats(TarGzip)},
		{"tar.xz", func(t *testing.T) []byte { return xzc(t, sdist(t)) }, "pkg-1.0.tar.xz", sdistFiles, sdistStats(TarXz)},
		{"tar.bz2 (command)", func(t *testing.T) []byte { return bz2(t, sdist(t)) }, "pkg-1.0.tar.bz2", sdistFiles, sdistStats(TarBzip2)},
		{"tar.bz2 (testdata)", func(t *testing.T) []byte { return readTestdata(t, "small.tar.bz2") }, "pkg-1.0.tar.bz2",
			[]file{{"pkg-1.0/pkg/__init__.py", "X = 1\n"}, {"pkg-1.0/setup.py", "from setuptools import setup\nsetup(name=\"pkg\")\n"}},
			Stats{Format: TarBzip2, Entries: 4, Files: 2, Expanded: 53}},
		{"pax and gnu long names", func(t *testing.T) []byte {
			return makeTar(t,
				tarEntry{Name: "pkg-1.0/" + strings.Repeat("d", 120) + "/ünï.py", Type: tar.TypeReg, Body: "pax", Format: tar.FormatPAX},
				tarEntry{Name: "pkg-1.0/" + strings.Repeat("g", 150) + ".py", Type: tar.TypeReg, Body: "gnu", Format: tar.FormatGNU},
			)
		}, "pkg-1.0.tar", []file{
			{"pkg-1.0/" + strings.Repeat("d", 120) + "/ünï.py", "pax"},
			{"pkg-1.0/" + strings.Repeat("g", 150) + ".py", "gnu"},
		}, Stats{Format: Tar, Entries: 2, Files: 2, Expanded: 6}},
		{"pax global header named by POSIX's default", func(t *testing.T) []byte {
			rec := "17 comment=hello\n"
			return rawTar(rawTarHeader("/tmp/GlobalHead.1.1", tar.TypeXGlobalHeader, int64(len(rec)), "ustar\x0000"), []byte(rec),
				rawTarHeader("p/a.py", '0', 1, "ustar\x0000"), []byte("a"))
		}, "p.tar", []file{{"p/a.py", "a"}}, Stats{Format: Tar, Entries: 2, Files: 1, Expanded: 1}},
		{"v7 tar", func(t *testing.T) []byte {
			return rawTar(rawTarHeader("old/file.py", '0', 3, ""), []byte("old"))
		}, "old.tar", []file{{"old/file.py", "old"}}, Stats{Format: Tar, Entries: 1, Files: 1, Expanded: 3}},
		{"unknown tar types are files, as in tarfile", func(t *testing.T) []byte {
			return rawTar(rawTarHeader("pkg/x.py", 'Z', 5, "ustar\x0000"), []byte("hello"),
				rawTarHeader("pkg/cont.py", tar.TypeCont, 4, "ustar\x0000"), []byte("cont"),
				rawTarHeader("pkg/areg.py", tar.TypeRegA, 4, "ustar\x0000"), []byte("areg"),
				rawTarHeader("pkg/adir/", tar.TypeRegA, 0, "ustar\x0000"))
		}, "pkg.tar", []file{{"pkg/x.py", "hello"}, {"pkg/cont.py", "cont"}, {"pkg/areg.py", "areg"}},
			Stats{Format: Tar, Entries: 4, Files: 3, Expanded: 13}},
		{"empty tar", func(t *testing.T) []byte { return makeTar(t) }, "e.tar", nil, Stats{Format: Tar}},
		{"empty tar.gz", func(t *testing.T) []byte { return gz(t, makeTar(t)) }, "e.tar.gz", nil, Stats{Format: TarGzip}},
		{"tar.gz in two gzip members, padded", func(t *testing.T) []byte {
			b := sdist(t)
			var out []byte
			out = append(out, gz(t, b[:1000])...)
			out = append(out, 0, 0, 0, 0)
			out = append(out, gz(t, b[1000:])...)
			return append(out, "trailing garbage"...)
		}, "pkg-1.0.tar.gz", sdistFiles, sdistStats(TarGzip)},
		{"wheel (archive/zip)", func(t *testing.T) []byte { return stdZip(t, wheel...) }, "pkg-1.0-py3-none-any.whl",
			wheel, Stats{Format: Zip, Entries: 3, Files: 3, Expanded: 6 + 12 + 32}},
		{"zip with dirs, stored and deflate", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "pkg/"},
				// Not a directory: pip writes a file named "sub\".
				zipEnt{Name: "pkg\\sub\\"},
				zipEnt{Name: "pkg/a.py", Body: "stored", Method: methodStore},
				zipEnt{Name: "pkg\\b.py", Body: strings.Repeat("deflated ", 100), Method: methodDeflate},
			)
		}, "pkg.zip", []file{{"pkg/sub", ""}, {"pkg/a.py", "stored"}, {"pkg/b.py", strings.Repeat("deflated ", 100)}},
			Stats{Format: Zip, Entries: 4, Files: 3, Expanded: 906}},
		{"zip with bzip2, lzma and zstd entries", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "b.txt", Body: "just some text, not a tar\n", Method: methodBzip2, Comp: readTestdata(t, "note.txt.bz2")},
				zipEnt{Name: "l.txt", Body: "lzma content\n", Method: methodLZMA, Comp: lzmaComp},
				zipEnt{Name: "z.txt", Body: "zstd content\n", Method: methodZstd, Comp: zstdComp},
			)
		}, "m.zip", []file{{"b.txt", "just some text, not a tar\n"}, {"l.txt", "lzma content\n"}, {"z.txt", "zstd content\n"}},
			Stats{Format: Zip, Entries: 3, Files: 3, Expanded: 26 + 13 + 13}},
		{"zip64 records", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{Zip64: true},
				zipEnt{Name: "a.py", Body: "zip64 a", Method: methodDeflate, Zip64: true},
				zipEnt{Name: "b.py", Body: "zip64 b", Method: methodStore},
			)
		}, "z.whl", []file{{"a.py", "zip64 a"}, {"b.py", "zip64 b"}}, Stats{Format: Zip, Entries: 2, Files: 2, Expanded: 14}},
		{"self-extracting zip with comment", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{Prefix: []byte("#!/bin/sh\nexec python3 \"$0\"\n"), Comment: "a comment"},
				zipEnt{Name: "__main__.py", Body: "print(1)\n", Method: methodDeflate})
		}, "app.pyz", []file{{"__main__.py", "print(1)\n"}}, Stats{Format: Zip, Entries: 1, Files: 1, Expanded: 9}},
		{"empty zip", func(t *testing.T) []byte { return buildZip(t, zipOpts{}) }, "e.zip", nil, Stats{Format: Zip}},
		{"duplicate zip names are both emitted", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "pkg/x.py", Body: "first", Method: methodDeflate},
				zipEnt{Name: "pkg/x.py", Body: "second", Method: methodStore},
				zipEnt{Name: "pkg/x.py", SameAs: 2, Body: "second", Method: methodStore})
		}, "d.whl", []file{{"pkg/x.py", "first"}, {"pkg/x.py", "second"}, {"pkg/x.py", "second"}},
			Stats{Format: Zip, Entries: 3, Files: 3, Expanded: 17}},
		{"zip symlink and dir modes are files to pip", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "pkg/link", Body: "import os; os.system('x')", Method: methodStore, MadeBy: 3 << 8, ExtAttr: 0o120777 << 16},
				zipEnt{Name: "pkg/d", Body: "", Method: methodStore, MadeBy: 3 << 8, ExtAttr: 0o040755 << 16},
				zipEnt{Name: "pkg/realdir/", Method: methodStore, MadeBy: 3 << 8, ExtAttr: 0o040755 << 16})
		}, "s.whl", []file{{"pkg/link", "import os; os.system('x')"}, {"pkg/d", ""}},
			Stats{Format: Zip, Entries: 3, Files: 2, Expanded: 25}},
		{"non-UTF-8 zip names: CP437 without the flag, U+FFFD with it", func(t *testing.T) []byte {
			return buildZip(t, zipOpts{},
				zipEnt{Name: "caf\x82.py", Body: "cp437", Method: methodStore},
				zipEnt{Name: "bad\xff\xfe.py", Body: "utf8", Method: methodStore, Flags: flagUTF8},
				zipEnt{Name: "ok\u00e9.py", Body: "flagged", Method: methodStore, Flags: flagUTF8},
				zipEnt{Name: "nul.py\x00.evil", Body: "nul", Method: methodStore})
		}, "n.zip", []file{{"café.py", "cp437"}, {"bad\uFFFD.py", "utf8"}, {"oké.py", "flagged"}, {"nul.py", "nul"}},
			Stats{Format: Zip, Entries: 4, Files: 4, Expanded: 5 + 4 + 7 + 3}},
		{"non-UTF-8 tar names", func(t *testing.T) []byte {
			return rawTar(rawTarHeader("pkg/\xff\xfe.py", '0', 1, "ustar\x0000"), []byte("x"))
		}, "n.tar", []file{{"pkg/\uFFFD.py", "x"}}, Stats{Format: Tar, Entries: 1, Files: 1, Expanded: 1}},
		{"nested archives are files", func(t *testing.T) []byte {
			return gz(t, makeTar(t, reg("p/inner.zip", string(innerZip)), reg("p/inner.tar.gz", string(innerTgz))))
		}, "p.tar.gz", []file{{"p/inner.zip", string(innerZip)}, {"p/inner.tar.gz", string(innerTgz)}},
			Stats{Format: TarGzip, Entries: 2, Files: 2, Expanded: int64(len(innerZip) + len(innerTgz))}},
		{"html page is raw", func(t *testing.T) []byte { return []byte(html) }, "pkg-1.0.tar.gz",
			[]file{{"pkg-1.0.tar.gz", html}}, Stats{Format: Raw, Entries: 1, Files: 1, Expanded: int64(len(html))}},
		{"empty input is raw", func(t *testing.T) []byte { return nil }, "x.whl",
			[]file{{"x.whl", ""}}, Stats{Format: Raw, Entries: 1, Files: 1}},
		{"gzip of a non-tar", func(t *testing.T) []byte { return gz(t, []byte(html)) }, "page.html.gz",
			[]file{{"page.html", html}}, Stats{Format: Gzip, Entries: 1, Files: 1, Expanded: int64(len(html))}},
		{"gzip of a large non-tar", func(t *testing.T) []byte { return gz(t, []byte(strings.Repeat(html, 100))) }, "x.tgz",
			[]file{{"x.tar", strings.Repeat(html, 100)}}, Stats{Format: Gzip, Entries: 1, Files: 1, Expanded: int64(100 * len(html))}},
		{"gzip of nothing", func(t *testing.T) []byte { return gz(t, nil) }, "GZ.GZ",
			[]file{{"GZ", ""}}, Stats{Format: Gzip, Entries: 1, Files: 1}},
		{"xz of a non-tar", func(t *testing.T) []byte { return xzc(t, []byte(html)) }, "page.xz",
			[]file{{"page", html}}, Stats{Format: Xz, Entries: 1, Files: 1, Expanded: int64(len(html))}},
		{"bzip2 of a non-tar", func(t *testing.T) []byte { return readTestdata(t, "note.txt.bz2") }, "note.txt.bz2",
			[]file{{"note.txt", "just some text, not a tar\n"}}, Stats{Format: Bzip2, Entries: 1, Files: 1, Expanded: 26}},
		{"zip behind zeros (an empty tar to tarfile, a wheel to zipfile)", func(t *testing.T) []byte {
			return append(make([]byte, 1024), stdZip(t, wheel...)...)
		}, "pkg-1.0-py3-none-any.whl", wheel, Stats{Format: Tar, Entries: 3, Files: 3, Expanded: 50}},
		{"zip appended to a tar", func(t *testing.T) []byte {
			return append(sdist(t), stdZip(t, wheel...)...)
		}, "pkg-1.0.tar", append(append([]file{}, sdistFiles...), wheel...),
			Stats{Format: Tar, Entries: 14, Files: 8, Links: 1, Expanded: sdistStats(Tar).Expanded + 50}},
		{"zip appended to a tar.gz", func(t *testing.T) []byte {
			return append(gz(t, sdist(t)), stdZip(t, wheel...)...)
		}, "pkg-1.0.tar.gz", append(append([]file{}, sdistFiles...), wheel...),
			Stats{Format: TarGzip, Entries: 14, Files: 8, Links: 1, Expanded: sdistStats(Tar).Expanded + 50}},
		{"zip appended to an html page", func(t *testing.T) []byte {
			return append([]byte(html), stdZip(t, wheel...)...)
		}, "x.whl", wheel, Stats{Format: Zip, Entries: 3, Files: 3, Expanded: 50}},
		{"gzip wheel is not unpacked twice", func(t *testing.T) []byte { return gz(t, innerZip) }, "w.whl.gz",
			[]file{{"w.whl", string(innerZip)}}, Stats{Format: Gzip, Entries: 1, Files: 1, Expanded: int64(len(innerZip))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := walk(t, tc.data(t), tc.dist, noLimits)
			if r.Err != nil {
				t.Fatalf("Walk: %v", r.Err)
			}
			if !reflect.DeepEqual(r.Files, tc.files) && !(len(r.Files) == 0 && len(tc.files) == 0) {
				t.Errorf("files\n got %s\nwant %s", quoteFiles(r.Files), quoteFiles(tc.files))
			}
			if r.Stats != tc.stats {
				t.Errorf("stats %+v, want %+v", r.Stats, tc.stats)
			}
			if tc.stats.Links == 1 && !reflect.DeepEqual(r.Links, sdistLinks) {
				t.Errorf("links %+v, want %+v", r.Links, sdistLinks)
			}
		})
	}
}

// TestNamesFromURLsAreMemberPaths: a non-archive file, or a compressed
// stream's one file, is named after the distribution's URL; whatever that
// name is, the file's path is one the coordinator takes as a top file
// (protocol.CheckMemberPath). A "..", "." or "a\x00b" name from an odd or
// hostile URL ended every session that scanned it and matched a rule.
func TestNamesFromURLsAreMemberPaths(t *testing.T) {
	src := []byte("print('x')\n")
	long := strings.Repeat("\u00e9", protocol.MaxPathBytes) + ".py"
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"evil.py", src, "evil.py"},
		{"a\\b.py", src, "a\\b.py"},
		{"..", src, "_"},
		{".", src, "_"},
		{"", src, "_"},
		{"/", src, "_"},
		{"x/..", src, "_"},
		{"dir/evil.py", src, "evil.py"},
		{"evil.py\x00.txt", src, "evil.py"},
		{"\xffevil.py", src, "\uFFFDevil.py"},
		{long, src, strings.Repeat("\u00e9", protocol.MaxPathBytes/2)},
		{"evil.py.gz", gz(t, src), "evil.py"},
		{"...gz", gz(t, src), "_"},
		{"x/..gz", gz(t, src), "_"},
		{"a\x00b.gz", gz(t, src), "a"},
	} {
		r := walk(t, tc.data, tc.name, limit.Limits{})
		if r.Err != nil || len(r.Files) != 1 {
			t.Fatalf("%q: %d files, %v", tc.name, len(r.Files), r.Err)
		}
		p := r.Files[0].Path
		if err := protocol.CheckMemberPath(p); err != nil {
			t.Errorf("%q: path %q refused: %v", tc.name, p, err)
		}
		if p != tc.want {
			t.Errorf("%q: path %q, want %q", tc.name, clip.String(p, 64), clip.String(tc.want, 64))
		}
	}
}

// TestNameFromURLAtTheLengthLimit: a file named after its URL keeps a name
// of protocol.MaxPathBytes bytes whole and cuts one byte longer to the
// limit, a path the coordinator takes (protocol.CheckMemberPath).
func TestNameFromURLAtTheLengthLimit(t *testing.T) {
	src := []byte("print('x')\n")
	for _, n := range []int{protocol.MaxPathBytes, protocol.MaxPathBytes + 1} {
		name := strings.Repeat("a", n)
		r := walk(t, src, name, limit.Limits{})
		if r.Err != nil || len(r.Files) != 1 {
			t.Fatalf("name of %d bytes: %d files, %v", n, len(r.Files), r.Err)
		}
		p := r.Files[0].Path
		if err := protocol.CheckMemberPath(p); err != nil {
			t.Errorf("name of %d bytes: path of %d bytes refused: %v", n, len(p), err)
		}
		if want := name[:protocol.MaxPathBytes]; p != want {
			t.Errorf("name of %d bytes: path of %d bytes, want the first %d", n, len(p), len(want))
		}
	}
}
