// Package demo holds Dragonfly Fleet's built-in demo: a few defanged sample
// releases (sdists and wheels, built in memory from the source tree under
// packages/) and the demo rule set that scores them. `dragonfly scan --demo`,
// `dragonfly local --demo` and `dragonfly devapi --demo` use it, and so do tests.
package demo

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed all:packages rules
var content embed.FS

// File is one distribution file of a demo release.
type File struct {
	Name string // e.g. "reqeusts-2.31.0.tar.gz"
	Data []byte
}

// mtime is the fixed modification time of every archive entry, so the demo
// archives are the same bytes on every build.
var mtime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Files builds the demo distributions, sorted by name. Each directory under
// packages/ is one distribution whose name is the directory name; its tree is
// the archive's content (.tar.gz as a gzip tar, .whl as a zip).
func Files() ([]File, error) {
	ents, err := fs.ReadDir(content, "packages")
	if err != nil {
		return nil, err
	}
	var out []File
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		root := path.Join("packages", e.Name())
		var data []byte
		switch {
		case strings.HasSuffix(e.Name(), ".tar.gz"):
			data, err = buildTarGz(root)
		case strings.HasSuffix(e.Name(), ".whl"), strings.HasSuffix(e.Name(), ".zip"):
			data, err = buildZip(root)
		default:
			err = fmt.Errorf("demo: %s: unknown archive type", e.Name())
		}
		if err != nil {
			return nil, err
		}
		out = append(out, File{Name: e.Name(), Data: data})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Rules returns the demo rule sources by file stem.
func Rules() map[string]string {
	out := map[string]string{}
	ents, _ := fs.ReadDir(content, "rules")
	for _, e := range ents {
		data, err := content.ReadFile(path.Join("rules", e.Name()))
		if err != nil {
			continue
		}
		out[strings.TrimSuffix(e.Name(), path.Ext(e.Name()))] = string(data)
	}
	return out
}

// walkFiles lists the regular files under root, relative to root, sorted.
func walkFiles(root string) ([]string, error) {
	var files []string
	err := fs.WalkDir(content, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func buildTarGz(root string) ([]byte, error) {
	files, err := walkFiles(root)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(gz)
	dirs := map[string]bool{}
	for _, f := range files {
		// Each directory gets an entry before its first file, like real sdists.
		var parents []string
		for d := path.Dir(f); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			hdr := &tar.Header{Name: parents[i] + "/", Mode: 0o755, ModTime: mtime, Typeflag: tar.TypeDir, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
		}
		data, err := content.ReadFile(path.Join(root, f))
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: f, Mode: 0o644, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func buildZip(root string) ([]byte, error) {
	files, err := walkFiles(root)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		data, err := content.ReadFile(path.Join(root, f))
		if err != nil {
			return nil, err
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f, Method: zip.Deflate, Modified: mtime})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
