package dist

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zip"
)

func writeTarGz(t *testing.T, p string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeZip(t *testing.T, p string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"p-1/setup.py": "setup()\n", "p-1/p/__init__.py": "x = 1\n"}
	for _, name := range []string{"p-1.tar.gz", "p-1-py3-none-any.whl"} {
		src := filepath.Join(dir, name)
		if name == "p-1.tar.gz" {
			writeTarGz(t, src, files)
		} else {
			writeZip(t, src, files)
		}
		dst := filepath.Join(dir, "x-"+name)
		st, err := Extract(src, dst)
		if err != nil {
			t.Fatal(err)
		}
		if st.Files != 2 || st.Bytes != int64(len("setup()\n")+len("x = 1\n")) {
			t.Errorf("%s: stats %+v", name, st)
		}
		for p, body := range files {
			b, err := os.ReadFile(filepath.Join(dst, p))
			if err != nil || string(b) != body {
				t.Errorf("%s: %s = %q, %v; want %q", name, p, b, err, body)
			}
		}
	}
}

func TestExtractRejectsEscapes(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{"../evil.py", "/abs.py", "a/../../evil.py"} {
		src := filepath.Join(dir, "bad.tar.gz")
		writeTarGz(t, src, map[string]string{bad: "x"})
		_, err := Extract(src, filepath.Join(dir, "out"))
		var ue *UnsafePathError
		if !errors.As(err, &ue) {
			t.Errorf("%s: err = %v, want *UnsafePathError", bad, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "evil.py")); err == nil {
		t.Error("a member escaped the target directory")
	}
	var ke *UnknownKindError
	if _, err := Extract(filepath.Join(dir, "x.rar"), dir); !errors.As(err, &ke) {
		t.Errorf("err = %v, want *UnknownKindError", err)
	}
}

func TestSum(t *testing.T) {
	got := Sum([]Entry{{Size: 1, Expanded: 10, Files: 2}, {Size: 3, Expanded: 30, Files: 4}})
	want := Totals{Distributions: 2, Size: 4, Expanded: 40, Files: 6}
	if got != want {
		t.Errorf("Sum = %+v, want %+v", got, want)
	}
}
