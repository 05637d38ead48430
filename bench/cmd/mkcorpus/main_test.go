package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zip"
	"github.com/ulikunitz/xz"

	"github.com/dragonfly-fleet/fleet/bench/internal/dist"
)

type tarEnt struct {
	name, link string
	typ        byte
	body       string
}

// fakeDeb builds a .deb (ar: debian-binary, control.tar.xz, data.tar.xz).
func fakeDeb(t *testing.T, ents []tarEnt) []byte {
	t.Helper()
	tarXZ := func(ents []tarEnt) []byte {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		for _, e := range ents {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link}
			if e.typ == tar.TypeReg {
				h.Size = int64(len(e.body))
			}
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		xw, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := xw.Write(raw.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := xw.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	member := func(name string, data []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(data))
		ar.Write(data)
		if len(data)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.xz", tarXZ([]tarEnt{{name: "./control", typ: tar.TypeReg, body: "Package: x\n"}}))
	member("data.tar.xz", tarXZ(ents))
	return ar.Bytes()
}

const dp = "./usr/lib/python3/dist-packages/"

// fixture writes two fake packages into a cache and a list naming them.
func fixture(t *testing.T) (list, cache string) {
	t.Helper()
	dir := t.TempDir()
	cache = filepath.Join(dir, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	alpha := fakeDeb(t, []tarEnt{
		{name: "./usr/", typ: tar.TypeDir},
		{name: "./usr/share/doc/python3-alpha/copyright", typ: tar.TypeReg, body: "not repacked"},
		{name: dp + "alpha/", typ: tar.TypeDir},
		{name: dp + "alpha/__init__.py", typ: tar.TypeReg, body: "import os\nos.system('true')\n"},
		{name: dp + "alpha/sub/mod.py", typ: tar.TypeReg, body: strings.Repeat("x = 1\n", 5000)},
		{name: dp + "alpha/sub/same.py", typ: tar.TypeLink, link: dp + "alpha/sub/mod.py"},
		{name: dp + "alpha/cert.pem", typ: tar.TypeSymlink, link: "/etc/ssl/certs/ca.pem"},
		{name: dp + "alpha-1.0.egg-info/PKG-INFO", typ: tar.TypeReg, body: "Debian's own"},
	})
	beta := fakeDeb(t, []tarEnt{
		{name: dp + "beta.py", typ: tar.TypeReg, body: "print('beta')\n"},
	})
	var lines []string
	for _, d := range []struct {
		pkg, ver, file, groups string
		data                   []byte
	}{
		{"python3-alpha", "1:1.0.2+dfsg-3", "python3-alpha_1%3a1.0.2+dfsg-3_all.deb", "main,mega", alpha},
		{"python3-beta.x", "0.5-1", "python3-beta.x_0.5-1_amd64.deb", "main,mega", beta},
	} {
		if err := os.WriteFile(filepath.Join(cache, d.file), d.data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(d.data)
		lines = append(lines, fmt.Sprintf("%s %s %s %s", d.pkg, d.ver, hex.EncodeToString(sum[:]), d.groups))
	}
	list = filepath.Join(dir, "corpus.list")
	if err := os.WriteFile(list, []byte("# test\n"+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return list, cache
}

func testConfig(list, cache, out string) config {
	return config{List: list, Cache: cache, Out: out, Jobs: 2, Mega: true,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// readTree maps every file under dir to its bytes.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertSameTrees(t *testing.T, a, b map[string][]byte) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("builds differ in file count: %d vs %d", len(a), len(b))
	}
	for name, x := range a {
		if !bytes.Equal(x, b[name]) {
			t.Errorf("%s differs between two builds", name)
		}
	}
}

func TestBuildDeterministicAndPyPILike(t *testing.T) {
	list, cache := fixture(t)
	ctx := context.Background()
	out1, out2 := filepath.Join(t.TempDir(), "c1"), filepath.Join(t.TempDir(), "c2")
	m, err := build(ctx, testConfig(list, cache, out1))
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := testConfig(list, cache, out2)
	cfg2.Jobs = 1
	if _, err := build(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	t1, t2 := readTree(t, out1), readTree(t, out2)
	assertSameTrees(t, t1, t2)

	want := []string{"dists/alpha-1.0.2-py3-none-any.whl", "dists/alpha-1.0.2.tar.gz",
		"dists/beta_x-0.5-py3-none-any.whl", "dists/beta_x-0.5.tar.gz"}
	if len(m.Distributions) != len(want) {
		t.Fatalf("got %d distributions, want %d", len(m.Distributions), len(want))
	}
	for i, e := range m.Distributions {
		if e.File != want[i] {
			t.Errorf("distribution %d = %s, want %s", i, e.File, want[i])
		}
		sum := sha256.Sum256(t1[e.File])
		if e.SHA256 != hex.EncodeToString(sum[:]) || e.Size != int64(len(t1[e.File])) {
			t.Errorf("%s: manifest size/digest do not match the file", e.File)
		}
	}
	if m.Big.Single != "dists/alpha-1.0.2-py3-none-any.whl" {
		t.Errorf("big single = %q", m.Big.Single)
	}
	if m.Big.Mega == nil || m.Big.Mega.File != "big/fleet_bench_mega-1.0-py3-none-any.whl" {
		t.Fatalf("mega = %+v", m.Big.Mega)
	}

	// The wheel: package files, then dist-info; RECORD hashes are right;
	// Debian metadata and symlinks are left out; the hard link is resolved.
	whl := t1["dists/alpha-1.0.2-py3-none-any.whl"]
	zr, err := zip.NewReader(bytes.NewReader(whl), int64(len(whl)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	content := map[string][]byte{}
	for _, f := range zr.File {
		names = append(names, f.Name)
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		content[f.Name], _ = io.ReadAll(rc)
		rc.Close()
		if !f.Modified.Equal(epoch) {
			t.Errorf("%s: mtime %v, want %v", f.Name, f.Modified, epoch)
		}
	}
	wantNames := []string{"alpha/__init__.py", "alpha/sub/mod.py", "alpha/sub/same.py",
		"alpha-1.0.2.dist-info/METADATA", "alpha-1.0.2.dist-info/WHEEL", "alpha-1.0.2.dist-info/RECORD"}
	if strings.Join(names, " ") != strings.Join(wantNames, " ") {
		t.Errorf("wheel members %v, want %v", names, wantNames)
	}
	if !bytes.Equal(content["alpha/sub/same.py"], content["alpha/sub/mod.py"]) {
		t.Error("hard link not resolved to the linked content")
	}
	rows, err := csv.NewReader(bytes.NewReader(content["alpha-1.0.2.dist-info/RECORD"])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(wantNames) {
		t.Fatalf("RECORD has %d rows, want %d", len(rows), len(wantNames))
	}
	for _, r := range rows[:len(rows)-1] {
		sum := sha256.Sum256(content[r[0]])
		if r[1] != "sha256="+base64.RawURLEncoding.EncodeToString(sum[:]) || r[2] != fmt.Sprint(len(content[r[0]])) {
			t.Errorf("RECORD row %v does not match %s", r, r[0])
		}
	}

	// The sdist: gzip header without name or mtime, name-version/ prefix,
	// directories, PKG-INFO and setup.py.
	sd := t1["dists/alpha-1.0.2.tar.gz"]
	if !bytes.Equal(sd[:10], []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff}) {
		t.Errorf("gzip header % x", sd[:10])
	}
	x := t.TempDir()
	st, err := dist.Extract(filepath.Join(out1, "dists/alpha-1.0.2.tar.gz"), x)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"PKG-INFO", "setup.py", "alpha/__init__.py", "alpha/sub/same.py"} {
		if _, err := os.Stat(filepath.Join(x, "alpha-1.0.2", p)); err != nil {
			t.Errorf("sdist lacks %s: %v", p, err)
		}
	}
	var sde dist.Entry
	for _, e := range m.Distributions {
		if e.File == "dists/alpha-1.0.2.tar.gz" {
			sde = e
		}
	}
	if st.Files != sde.Files || st.Bytes != sde.Expanded {
		t.Errorf("extracted %d files/%d bytes, manifest says %d/%d", st.Files, st.Bytes, sde.Files, sde.Expanded)
	}
	if m.Big.Mega.Files != 3+1+3 { // alpha's 3, beta's 1, dist-info 3
		t.Errorf("mega wheel has %d files, want 7", m.Big.Mega.Files)
	}
}

func TestBuildRejectsWrongChecksum(t *testing.T) {
	list, cache := fixture(t)
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.Split(string(b), "\n")[1])
	bad := strings.Replace(string(b), f[2], strings.Repeat("0", 64), 1)
	if err := os.WriteFile(list, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = build(context.Background(), testConfig(list, cache, t.TempDir()))
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *ChecksumError", err)
	}
}

func TestBuildMissingWithoutDownload(t *testing.T) {
	list, _ := fixture(t)
	_, err := build(context.Background(), testConfig(list, t.TempDir(), t.TempDir()))
	var me *MissingError
	if !errors.As(err, &me) || len(me.Pkgs) != 2 {
		t.Fatalf("err = %v, want *MissingError for 2 packages", err)
	}
}

// TestBuildRealDebsDeterministic repacks three small packages of the
// committed list twice, from testdata/debs (the three .debs, 126 kB, checked
// in so the test runs on a fresh checkout; build verifies them against the
// list's SHA256s).
func TestBuildRealDebsDeterministic(t *testing.T) {
	refs, _, err := readList("../../corpus.list")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range refs {
		switch d.Pkg {
		case "python3-requests", "python3-six", "python3-idna":
			if _, ok := debFile("testdata/debs", d); !ok {
				t.Fatalf("testdata/debs has no %s %s: the list and the test data disagree", d.Pkg, d.Version)
			}
			lines = append(lines, fmt.Sprintf("%s %s %s main", d.Pkg, d.Version, d.SHA256))
		}
	}
	if len(lines) != 3 {
		t.Fatalf("corpus.list lacks the three test packages: %v", lines)
	}
	list := filepath.Join(t.TempDir(), "small.list")
	if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out1, out2 := t.TempDir(), t.TempDir()
	cfg := testConfig(list, "testdata/debs", out1)
	m, err := build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Out = out2
	if _, err := build(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	assertSameTrees(t, readTree(t, out1), readTree(t, out2))
	if m.Totals.Distributions != 6 || m.Totals.Files < 30 {
		t.Errorf("totals %+v, want 6 distributions and dozens of files", m.Totals)
	}
}

func TestParseList(t *testing.T) {
	good := "# c\npython3-a 1.0-1 " + strings.Repeat("a", 64) + " main\n\npython3-b 2:3~rc1-2 - main,mega # x\n"
	refs, err := parseList(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || refs[1].Version != "2:3~rc1-2" || !refs[1].in(groupMega) || refs[0].in(groupMega) {
		t.Errorf("parsed %+v", refs)
	}
	for _, bad := range []string{
		"python3-a 1.0 main\n",
		"python3-a 1.0 abc main\n",
		"python3-a 1.0 - other\n",
		"Python3-A 1.0 - main\n",
		"python3-a 1.0 - main\npython3-a 1.1 - main\n",
	} {
		_, err := parseList(strings.NewReader(bad))
		var le *ListError
		if !errors.As(err, &le) {
			t.Errorf("%q: err = %v, want *ListError", bad, err)
		}
	}
}

func TestProjectNameAndVersion(t *testing.T) {
	for _, c := range []struct{ pkg, ver, name, version string }{
		{"python3-numpy", "1:1.24.2-1+deb12u1", "numpy", "1.24.2"},
		{"python3-botocore", "1.29.27+repack-1", "botocore", "1.29.27"},
		{"python3-ruamel.yaml", "0.17.21-1", "ruamel_yaml", "0.17.21"},
		{"python3-pandas-lib", "1.5.3+dfsg-2", "pandas_lib", "1.5.3"},
		{"python3-zope.interface", "5.5.2-1+b1", "zope_interface", "5.5.2"},
		{"python3-x", "20230112+git-1", "x", "20230112"},
		{"python3-y", "1.0~rc1-1", "y", "1.0"},
		{"python3-z", "2022.12.1+ds.1-3", "z", "2022.12.1"},
	} {
		if got := projectName(c.pkg); got != c.name {
			t.Errorf("projectName(%q) = %q, want %q", c.pkg, got, c.name)
		}
		if got := projectVersion(c.ver); got != c.version {
			t.Errorf("projectVersion(%q) = %q, want %q", c.ver, got, c.version)
		}
	}
}
