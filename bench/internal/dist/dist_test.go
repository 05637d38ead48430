package dist

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// writeTarGz writes a gzip tar of files (name: body) to p.
func writeTarGz(t *testing.T, p string, files map[string]string) {
	t.Helper()
	var ents []testkit.TarEntry
	for name, body := range files {
		ents = append(ents, testkit.TarEntry{Name: name, Body: []byte(body)})
	}
	testkit.WriteFile(t, filepath.Dir(p), filepath.Base(p), string(testkit.Gzip(t, testkit.Tar(t, ents...))))
}

// writeZip writes a zip of files (name: body) to p.
func writeZip(t *testing.T, p string, files map[string]string) {
	t.Helper()
	var ents []testkit.ZipEntry
	for name, body := range files {
		ents = append(ents, testkit.ZipEntry{Name: name, Body: []byte(body)})
	}
	testkit.WriteFile(t, filepath.Dir(p), filepath.Base(p), string(testkit.Zip(t, ents...)))
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

// TestManifestFiles: the main distributions in order, or the big targets.
func TestManifestFiles(t *testing.T) {
	m := &Manifest{
		Distributions: []Entry{{File: "a.tar.gz"}, {File: "b.whl"}},
		Big:           Big{Single: "big.tar.gz", Mega: &Entry{File: "mega.whl"}},
	}
	if got := m.Files(false); !slices.Equal(got, []string{"a.tar.gz", "b.whl"}) {
		t.Fatalf("main: %q", got)
	}
	if got := m.Files(true); !slices.Equal(got, []string{"big.tar.gz", "mega.whl"}) {
		t.Fatalf("big: %q", got)
	}
	m.Big.Mega = nil
	if got := m.Files(true); !slices.Equal(got, []string{"big.tar.gz"}) {
		t.Fatalf("big without mega: %q", got)
	}
}
