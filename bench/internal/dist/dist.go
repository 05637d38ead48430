// Package dist describes the benchmark corpus (its manifest) and unpacks its
// distributions: gzip-compressed tar sdists and zip wheels, the two kinds
// bench/cmd/mkcorpus writes.
package dist

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zip"
)

// ManifestName is the manifest's file name inside a corpus directory.
const ManifestName = "manifest.json"

// Kind says how a distribution is packed.
type Kind string

const (
	// Sdist is a gzip-compressed tar with a name-version/ prefix.
	Sdist Kind = "sdist"
	// Wheel is a zip (deflate) with a name-version.dist-info/ directory.
	Wheel Kind = "wheel"
)

// Entry is one distribution file of the corpus.
type Entry struct {
	// File is the path relative to the corpus directory, with / separators.
	File string `json:"file"`
	Kind Kind   `json:"kind"`
	// Name and Version are the PyPI-style project name and version.
	Name    string `json:"name"`
	Version string `json:"version"`
	// Debs are the Debian packages (name=version) the content came from.
	Debs []string `json:"debs"`
	// Size is the archive's size in bytes (what a worker downloads).
	Size int64 `json:"size"`
	// Expanded is the sum of the sizes of its regular files.
	Expanded int64 `json:"expanded"`
	// Files is the number of regular files in it.
	Files int `json:"files"`
	// SHA256 is the hex digest of the archive.
	SHA256 string `json:"sha256"`
}

// Totals sums a group of entries.
type Totals struct {
	Distributions int   `json:"distributions"`
	Size          int64 `json:"size"`
	Expanded      int64 `json:"expanded"`
	Files         int   `json:"files"`
}

// Big names the large-package targets.
type Big struct {
	// Single is the main-corpus distribution with the largest expanded size
	// (a real package, >= 50 MB expanded with the committed list).
	Single string `json:"single"`
	// Mega is the synthesised wheel near the 128 MB download limit; it is not
	// part of Distributions.
	Mega *Entry `json:"mega,omitempty"`
}

// Manifest lists every distribution of a corpus.
type Manifest struct {
	// ListSHA256 is the digest of the corpus.list the corpus was built from.
	ListSHA256    string  `json:"list_sha256"`
	Distributions []Entry `json:"distributions"`
	Totals        Totals  `json:"totals"`
	Big           Big     `json:"big"`
}

// Files lists the archive file names of the main distributions, or with
// big those of the big targets (the single big sdist, then the mega wheel
// when there is one).
func (m *Manifest) Files(big bool) []string {
	var files []string
	if big {
		files = append(files, m.Big.Single)
		if m.Big.Mega != nil {
			files = append(files, m.Big.Mega.File)
		}
		return files
	}
	for _, e := range m.Distributions {
		files = append(files, e.File)
	}
	return files
}

// Sum returns the totals of entries.
func Sum(entries []Entry) Totals {
	var t Totals
	for _, e := range entries {
		t.Distributions++
		t.Size += e.Size
		t.Expanded += e.Expanded
		t.Files += e.Files
	}
	return t
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	return &m, nil
}

// KindOf tells the kind of an archive from its file name.
func KindOf(name string) (Kind, error) {
	switch {
	case strings.HasSuffix(name, ".tar.gz"):
		return Sdist, nil
	case strings.HasSuffix(name, ".whl") || strings.HasSuffix(name, ".zip"):
		return Wheel, nil
	}
	return "", &UnknownKindError{Name: name}
}

// UnknownKindError reports an archive whose name ends neither in .tar.gz nor .whl.
type UnknownKindError struct{ Name string }

func (e *UnknownKindError) Error() string { return "unknown archive kind: " + e.Name }

// UnsafePathError reports an archive member that would land outside the target.
type UnsafePathError struct{ Name string }

func (e *UnsafePathError) Error() string { return "unsafe member path: " + e.Name }

// Stats counts what Extract wrote.
type Stats struct {
	Files int
	Bytes int64
}

// Extract unpacks the archive at src into the directory dst (created if
// missing), writing regular files and directories only.
func Extract(src, dst string) (Stats, error) {
	kind, err := KindOf(src)
	if err != nil {
		return Stats{}, err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return Stats{}, fmt.Errorf("create %s: %w", dst, err)
	}
	if kind == Sdist {
		return extractTarGz(src, dst)
	}
	return extractZip(src, dst)
}

func target(dst, name string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	if clean == "." || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", &UnsafePathError{Name: name}
	}
	return filepath.Join(dst, filepath.FromSlash(clean)), nil
}

func writeFile(p string, r io.Reader, mode fs.FileMode) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return 0, fmt.Errorf("create dir: %w", err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode.Perm()|0o600)
	if err != nil {
		return 0, fmt.Errorf("create file: %w", err)
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("write %s: %w", p, err)
	}
	return n, nil
}

func extractTarGz(src, dst string) (st Stats, err error) {
	f, err := os.Open(src)
	if err != nil {
		return st, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return st, fmt.Errorf("gzip %s: %w", src, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("tar %s: %w", src, err)
		}
		p, err := target(dst, h.Name)
		if err != nil {
			return st, err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return st, fmt.Errorf("create dir: %w", err)
			}
		case tar.TypeReg:
			n, err := writeFile(p, tr, h.FileInfo().Mode())
			if err != nil {
				return st, err
			}
			st.Files++
			st.Bytes += n
		}
	}
}

func extractZip(src, dst string) (st Stats, err error) {
	zr, err := zip.OpenReader(src)
	if err != nil {
		return st, fmt.Errorf("zip %s: %w", src, err)
	}
	defer zr.Close()
	for _, zf := range zr.File {
		p, err := target(dst, zf.Name)
		if err != nil {
			return st, err
		}
		if strings.HasSuffix(zf.Name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return st, fmt.Errorf("create dir: %w", err)
			}
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			return st, fmt.Errorf("zip member %s: %w", zf.Name, err)
		}
		n, err := writeFile(p, rc, zf.Mode())
		rc.Close()
		if err != nil {
			return st, err
		}
		st.Files++
		st.Bytes += n
	}
	return st, nil
}

// CopyFile copies the file src to dst (created or truncated).
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
