package archive

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

var writeSeeds = flag.Bool("write-seeds", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// fuzzLimits are small, so the fuzzer reaches them.
var fuzzLimits = limit.Limits{File: 64 << 10, Expanded: 256 << 10, Entries: 64}

func FuzzWalk(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := fuzzLimits
		var (
			emitted, links int
			total          int64
		)
		alloc := func(_ context.Context, n int) ([]byte, error) {
			if n < 0 || int64(n) > lim.File {
				t.Fatalf("alloc(%d) over the %d-byte file limit", n, lim.File)
			}
			if total+int64(n) > lim.Expanded {
				t.Fatalf("alloc(%d) after %d bytes: over the %d-byte expanded limit", n, total, lim.Expanded)
			}
			return make([]byte, n), nil
		}
		regular := map[int]bool{} // indexes of emitted files
		emit := func(index int, path string, b []byte) error {
			if index != emitted+links {
				t.Fatalf("emit index %d, want %d", index, emitted+links)
			}
			checkPath(t, path)
			regular[index] = true
			emitted++
			total += int64(len(b))
			if emitted+links > lim.Entries {
				t.Fatalf("%d files and links, over the %d-entry limit", emitted+links, lim.Entries)
			}
			return nil
		}
		link := func(index int, path string, target int) error {
			if index != emitted+links {
				t.Fatalf("link index %d, want %d", index, emitted+links)
			}
			checkPath(t, path)
			if !regular[target] {
				t.Fatalf("link %d %q holds file %d, not an emitted file", index, path, target)
			}
			links++
			if emitted+links > lim.Entries {
				t.Fatalf("%d files and links, over the %d-entry limit", emitted+links, lim.Entries)
			}
			return nil
		}
		st, err := Walk(context.Background(), data, "dist.bin.gz", lim, alloc, emit, link)
		if err != nil {
			var ae *Error
			var le *limit.Error
			if !errors.As(err, &ae) && !errors.As(err, &le) {
				t.Fatalf("error %v (%T) is neither an *Error nor a *limit.Error", err, err)
			}
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error message %q is not one line", msg)
			}
			return
		}
		if st.Files != emitted+links || st.Links != links || st.Expanded != total || st.Entries > lim.Entries || st.Files > st.Entries {
			t.Fatalf("stats %+v after %d files, %d bytes", st, emitted, total)
		}
	})
}

// checkPath fails for a path that is not a clean, relative, valid UTF-8
// path inside the archive: one the coordinator takes as a top file
// (protocol.CheckMemberPath). A raw input's path is its distribution name.
func checkPath(t *testing.T, p string) {
	t.Helper()
	if err := protocol.CheckMemberPath(p); err != nil || hasDrive(p) || strings.ContainsRune(p, '\\') {
		t.Fatalf("bad path %q: %v", p, err)
	}
}

func FuzzDetect(f *testing.F) {
	f.Fuzz(func(t *testing.T, head []byte) {
		got := Detect(head)
		s := sniff(head)
		if got != s && got != tarOf(s) {
			t.Fatalf("Detect = %v, but the magic says %v", got, s)
		}
		if got.String() == "" {
			t.Fatal("empty format name")
		}
		// On the whole input Detect decides as Walk does (its Stats.Format
		// is the authoritative answer): the oracle above holds by
		// construction, this one does not.
		nop := func(int, string, []byte) error { return nil }
		alloc := func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil }
		link := func(int, string, int) error { return nil }
		if st, err := Walk(context.Background(), head, "dist.bin", fuzzLimits, alloc, nop, link); err == nil && st.Format != got {
			t.Fatalf("Detect = %v, Walk read %v", got, st.Format)
		}
	})
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", `C:\x`, "./a//b/../c", "\xff/..", `\\h\s`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := cleanPath(name)
		if err != nil {
			if !errors.Is(err, errUnsafePath) {
				t.Fatalf("cleanPath(%q): %v", name, err)
			}
			return
		}
		if p != "" {
			checkPath(t, p)
		}
	})
}

// TestWriteFuzzSeeds checks that testdata/fuzz/Fuzz{Walk,Detect} hold the
// seeds the archives the tests generate make (the archives are built
// deterministically), so a change to the generators cannot leave the fuzz
// seed corpora stale; with -write-seeds it rewrites them instead:
// go test -run TestWriteFuzzSeeds -write-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	small := makeTar(t,
		tarEntry{Name: "p-1/", Type: tar.TypeDir},
		reg("p-1/setup.py", "setup()\n"),
		tarEntry{Name: "p-1/l", Type: tar.TypeSymlink, Linkname: "setup.py"},
		tarEntry{Name: "p-1/" + strings.Repeat("d", 110) + "/ü.py", Type: tar.TypeReg, Body: "pax", Format: tar.FormatPAX},
		tarEntry{Name: "p-1/" + strings.Repeat("g", 110) + ".py", Type: tar.TypeReg, Body: "gnu", Format: tar.FormatGNU},
	)
	wheel := stdZip(t, file{"p/__init__.py", "X = 1\n"}, file{"p/d.stored", "stored"}, file{"p-1.dist-info/RECORD", "p/__init__.py,,\n"})
	seeds := map[string][]byte{
		"tar":           small,
		"tar-gz":        gz(t, small),
		"tar-xz":        xzc(t, small),
		"tar-bz2":       readTestdata(t, "small.tar.bz2"),
		"bz2":           readTestdata(t, "note.txt.bz2"),
		"v7-tar":        rawTar(rawTarHeader("old.py", '0', 3, ""), []byte("old"), rawTarHeader("x", 'Z', 1, "ustar\x0000"), []byte("z")),
		"empty-tar":     makeTar(t),
		"gz":            gz(t, []byte("<html>not a tar</html>\n")),
		"xz":            xzc(t, []byte("not a tar\n")),
		"wheel":         wheel,
		"zip-empty":     buildZip(t, zipOpts{}),
		"zip-zip64":     buildZip(t, zipOpts{Zip64: true}, zipEnt{Name: "a.py", Body: "zip64", Method: methodDeflate, Zip64: true}),
		"zip-sfx":       buildZip(t, zipOpts{Prefix: []byte("#!/bin/sh\n"), Comment: "c"}, zipEnt{Name: "m.py", Body: "print(1)\n", Method: methodStore}),
		"zip-dup":       buildZip(t, zipOpts{}, zipEnt{Name: "x", Body: "1", Method: methodStore}, zipEnt{Name: "x", SameAs: 1, Body: "1", Method: methodStore}),
		"zip-names":     buildZip(t, zipOpts{}, zipEnt{Name: "caf\x82/", Method: methodStore}, zipEnt{Name: "caf\x82/\xff.py", Body: "n", Method: methodStore, Flags: flagUTF8}),
		"zip-methods":   buildZip(t, zipOpts{}, zipEnt{Name: "l", Body: "lzma content\n", Method: methodLZMA, Comp: lzmaZip(t, []byte("lzma content\n"))}, zipEnt{Name: "z", Body: "zstd content\n", Method: methodZstd, Comp: zstdZip(t, []byte("zstd content\n"))}),
		"zip-mismatch":  buildZip(t, zipOpts{}, zipEnt{Name: "a", LocalName: ptr("b"), Body: "x", Method: methodStore}),
		"zip-after-tar": append(makeTar(t, reg("t.py", "t")), wheel...),
		"tar-unsafe":    rawTar(rawTarHeader("../x", '0', 1, "ustar\x0000"), []byte("x")),
		"raw-html":      []byte("<!DOCTYPE html>\n<html></html>\n"),
		"tar-links": makeTar(t, reg("p-1/data.txt", "d"), hard("p-1/mod.py", "p-1/data.txt"), hard("p-1/b", "p-1/mod.py"),
			dir("p-1/d/"), hard("p-1/e", "p-1/d"), symlink("p-1/s", "data.txt"), hard("p-1/b", "./p-1/data.txt")),
		"tar-link-symlink": makeTar(t, reg("p-1/data.txt", "d"), symlink("p-1/s", "data.txt"), hard("p-1/f", "p-1/s")),
	}
	for target, pick := range map[string]func(b []byte) []byte{
		"FuzzWalk":   func(b []byte) []byte { return b },
		"FuzzDetect": func(b []byte) []byte { return b[:min(len(b), 2048)] },
	} {
		dir := filepath.Join("testdata", "fuzz", target)
		if *writeSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", pick(data))
			file := filepath.Join(dir, "seed-"+name)
			if *writeSeeds {
				if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if got, err := os.ReadFile(file); err != nil || string(got) != body {
				t.Errorf("%s is stale or missing (%v): go test -run TestWriteFuzzSeeds -write-seeds ./worker/archive/ rewrites it", file, err)
			}
		}
	}
}
