package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zip"
)

// Fixed packing parameters: changing any of them changes every byte of the
// corpus, so they are constants, not options.
const (
	gzipLevel    = 9 // what setuptools' sdist uses
	deflateLevel = 6 // zlib's default, what bdist_wheel uses
)

// epoch is the mtime of every member: Debian 12's release day.
var epoch = time.Date(2023, time.June, 10, 0, 0, 0, 0, time.UTC)

// counts are the content statistics of one written archive.
type counts struct {
	Files    int
	Expanded int64
}

func metadata(name, version, origin string) []byte {
	return fmt.Appendf(nil, "Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\n"+
		"Home-page: https://example.invalid/%s\nLicense: see the Debian package\n"+
		"Classifier: Programming Language :: Python :: 3\nRequires-Python: >=3.7\n\n"+
		"Repacked from %s for the Dragonfly Fleet benchmark corpus.\n",
		name, version, "Benchmark repack of "+origin, name, origin)
}

func setupPy(name, version string) []byte {
	return fmt.Appendf(nil, "from setuptools import find_packages, setup\n\n"+
		"setup(\n    name=%q,\n    version=%q,\n    packages=find_packages(),\n    include_package_data=True,\n)\n",
		name, version)
}

// writeSdist writes name-version.tar.gz content to w: a PAX tar under the
// name-version/ prefix with directory entries, PKG-INFO and setup.py,
// gzip level 9 with an empty header (no name, zero mtime).
func writeSdist(w io.Writer, name, version, origin string, files []member) (counts, error) {
	var c counts
	prefix := name + "-" + version + "/"
	all := append([]member{
		{Path: "PKG-INFO", Mode: 0o644, Data: metadata(name, version, origin)},
		{Path: "setup.py", Mode: 0o644, Data: setupPy(name, version)},
	}, files...)
	type ent struct {
		name string
		m    *member
	}
	dirs := map[string]bool{prefix: true}
	ents := []ent{{name: prefix}}
	for i := range all {
		m := &all[i]
		p := prefix + m.Path
		for d := path.Dir(p); d != "." && !dirs[d+"/"]; d = path.Dir(d) {
			dirs[d+"/"] = true
			ents = append(ents, ent{name: d + "/"})
		}
		ents = append(ents, ent{name: p, m: m})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })

	bw := bufio.NewWriterSize(w, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzipLevel)
	if err != nil {
		return c, fmt.Errorf("gzip writer: %w", err)
	}
	tw := tar.NewWriter(zw)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeDir, Mode: 0o755}
		if e.m != nil {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(e.m.Mode.Perm()), int64(len(e.m.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return c, fmt.Errorf("tar header %s: %w", e.name, err)
		}
		if e.m != nil {
			if _, err := tw.Write(e.m.Data); err != nil {
				return c, fmt.Errorf("tar %s: %w", e.name, err)
			}
			c.Files++
			c.Expanded += int64(len(e.m.Data))
		}
	}
	if err := tw.Close(); err != nil {
		return c, fmt.Errorf("tar close: %w", err)
	}
	if err := zw.Close(); err != nil {
		return c, fmt.Errorf("gzip close: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return c, fmt.Errorf("flush sdist: %w", err)
	}
	return c, nil
}

// wheelWriter writes a wheel: members in the order added (callers add them
// sorted), then name-version.dist-info/{METADATA,WHEEL,RECORD}.
type wheelWriter struct {
	bw     *bufio.Writer
	zw     *zip.Writer
	record bytes.Buffer
	rec    *csv.Writer
	seen   map[string]bool
	c      counts
}

func newWheelWriter(w io.Writer) *wheelWriter {
	bw := bufio.NewWriterSize(w, 1<<20)
	zw := zip.NewWriter(bw)
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, deflateLevel)
	})
	ww := &wheelWriter{bw: bw, zw: zw, seen: map[string]bool{}}
	ww.rec = csv.NewWriter(&ww.record)
	ww.rec.UseCRLF = false
	return ww
}

// add writes one member; a path already written is skipped and reported false.
func (ww *wheelWriter) add(p string, mode fs.FileMode, data []byte) (bool, error) {
	if ww.seen[p] {
		return false, nil
	}
	ww.seen[p] = true
	h := &zip.FileHeader{Name: p, Method: zip.Deflate, Modified: epoch}
	h.SetMode(mode.Perm())
	f, err := ww.zw.CreateHeader(h)
	if err != nil {
		return false, fmt.Errorf("zip header %s: %w", p, err)
	}
	if _, err := f.Write(data); err != nil {
		return false, fmt.Errorf("zip %s: %w", p, err)
	}
	sum := sha256.Sum256(data)
	if err := ww.rec.Write([]string{p, "sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]), strconv.Itoa(len(data))}); err != nil {
		return false, fmt.Errorf("record %s: %w", p, err)
	}
	ww.c.Files++
	ww.c.Expanded += int64(len(data))
	return true, nil
}

// finish adds the dist-info files and closes the archive.
func (ww *wheelWriter) finish(name, version, origin string) (counts, error) {
	di := name + "-" + version + ".dist-info/"
	if _, err := ww.add(di+"METADATA", 0o644, metadata(name, version, origin)); err != nil {
		return ww.c, err
	}
	wheel := "Wheel-Version: 1.0\nGenerator: dragonfly-fleet-mkcorpus\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
	if _, err := ww.add(di+"WHEEL", 0o644, []byte(wheel)); err != nil {
		return ww.c, err
	}
	if err := ww.rec.Write([]string{di + "RECORD", "", ""}); err != nil {
		return ww.c, fmt.Errorf("record: %w", err)
	}
	ww.rec.Flush()
	if err := ww.rec.Error(); err != nil {
		return ww.c, fmt.Errorf("record: %w", err)
	}
	record := bytes.Clone(ww.record.Bytes())
	h := &zip.FileHeader{Name: di + "RECORD", Method: zip.Deflate, Modified: epoch}
	h.SetMode(0o644)
	f, err := ww.zw.CreateHeader(h)
	if err != nil {
		return ww.c, fmt.Errorf("zip header RECORD: %w", err)
	}
	if _, err := f.Write(record); err != nil {
		return ww.c, fmt.Errorf("zip RECORD: %w", err)
	}
	ww.c.Files++
	ww.c.Expanded += int64(len(record))
	if err := ww.zw.Close(); err != nil {
		return ww.c, fmt.Errorf("zip close: %w", err)
	}
	if err := ww.bw.Flush(); err != nil {
		return ww.c, fmt.Errorf("flush wheel: %w", err)
	}
	return ww.c, nil
}

// writeWheel writes name-version-py3-none-any.whl content to w.
func writeWheel(w io.Writer, name, version, origin string, files []member) (counts, error) {
	ww := newWheelWriter(w)
	for _, m := range files {
		if _, err := ww.add(m.Path, m.Mode, m.Data); err != nil {
			return ww.c, err
		}
	}
	return ww.finish(name, version, origin)
}

func sdistName(name, version string) string { return name + "-" + version + ".tar.gz" }
func wheelName(name, version string) string {
	return strings.ReplaceAll(name, "-", "_") + "-" + version + "-py3-none-any.whl"
}
