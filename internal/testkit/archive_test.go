package testkit

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// TestArchiveBuilders reads back what Tar, Gzip, GzipFast and Zip build:
// the members in order, with their types, links and bodies.
func TestArchiveBuilders(t *testing.T) {
	tb := Tar(t, TarEntry{Name: "p-1.0/a.py", Body: []byte("print(1)\n")}, TarEntry{Name: "p-1.0/l", Type: tar.TypeSymlink, Link: "a.py", Body: []byte("ignored")})
	for name, gz := range map[string][]byte{"Gzip": Gzip(t, tb), "GzipFast": GzipFast(t, tb)} {
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, tb) {
			t.Errorf("%s: does not decompress to the tar (%v)", name, err)
		}
	}
	tr := tar.NewReader(bytes.NewReader(tb))
	h, err := tr.Next()
	if err != nil || h.Name != "p-1.0/a.py" || h.Typeflag != tar.TypeReg || h.Mode != 0o644 {
		t.Fatalf("first member %+v, %v", h, err)
	}
	if body, _ := io.ReadAll(tr); string(body) != "print(1)\n" {
		t.Errorf("body %q", body)
	}
	if h, err = tr.Next(); err != nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "a.py" || h.Size != 0 {
		t.Fatalf("second member %+v, %v", h, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after two members: %v", err)
	}

	zb := Zip(t, ZipEntry{"pkg/__init__.py", []byte("x = 1\n")}, ZipEntry{"pkg-1.0.dist-info/METADATA", []byte("Name: pkg\n")})
	zr, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 2 || zr.File[0].Name != "pkg/__init__.py" || zr.File[1].Method != zip.Deflate {
		t.Fatalf("zip members %v", zr.File)
	}
	rc, err := zr.File[1].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if body, _ := io.ReadAll(rc); string(body) != "Name: pkg\n" {
		t.Errorf("METADATA %q", body)
	}
}
