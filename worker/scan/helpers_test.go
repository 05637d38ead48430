package scan

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func compile(t testing.TB, sources map[string]string) *rules.Compiled {
	t.Helper()
	return compileSet(t, rules.Set{Sources: sources})
}

func compileSet(t testing.TB, set rules.Set) *rules.Compiled {
	t.Helper()
	c, err := rules.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loadSet reads the rules at path (as rules.Load reads it).
func loadSet(t testing.TB, path string) rules.Set {
	t.Helper()
	set, err := rules.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e := New(cfg)
	t.Cleanup(e.Close)
	return e
}

// tgz builds a gzip tar of the given files, in order.
func tgz(t testing.TB, files ...[2]string) []byte {
	t.Helper()
	ents := make([]tarEnt, len(files))
	for i, f := range files {
		ents[i] = tarEnt{name: f[0], body: f[1]}
	}
	return tgzEnts(t, ents...)
}

// tarEnt is a tar member: a regular file, or a hard link to link.
type tarEnt struct {
	name, body, link string
}

// tgzEnts builds a gzip tar of regular files and hard links, in order.
func tgzEnts(t testing.TB, ents ...tarEnt) []byte {
	t.Helper()
	members := make([]testkit.TarEntry, len(ents))
	for i, f := range ents {
		members[i] = testkit.TarEntry{Name: f.name, Body: []byte(f.body)}
		if f.link != "" {
			members[i] = testkit.TarEntry{Name: f.name, Type: tar.TypeLink, Link: f.link}
		}
	}
	return testkit.GzipFast(t, testkit.Tar(t, members...))
}

// wheel builds a zip of the given files, in order.
func wheel(t testing.TB, files ...[2]string) []byte {
	t.Helper()
	ents := make([]testkit.ZipEntry, len(files))
	for i, f := range files {
		ents[i] = testkit.ZipEntry{Name: f[0], Body: []byte(f[1])}
	}
	return testkit.Zip(t, ents...)
}

// genDist is the generated package genP-1.0 of files: an sdist when p is
// even, else a wheel.
func genDist(t testing.TB, p int, files [][2]string) demo.File {
	t.Helper()
	if p%2 == 0 {
		return demo.File{Name: fmt.Sprintf("gen%d-1.0.tar.gz", p), Data: tgz(t, files...)}
	}
	return demo.File{Name: fmt.Sprintf("gen%d-1.0-py3-none-any.whl", p), Data: wheel(t, files...)}
}

// scanAsPlain scans data with e and with plain (an exhaustive engine) and
// fails the test unless both give the same distribution; it returns e's
// result.
func scanAsPlain(t testing.TB, e, plain *Engine, rs *rules.Compiled, name string, data []byte) Result {
	t.Helper()
	res, err := e.Scan(context.Background(), rs, name, data)
	if err != nil {
		t.Fatal(err)
	}
	want, err := plain.Scan(context.Background(), rs, name, data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Distribution, want.Distribution) {
		t.Fatalf("%s: pruned %+v\nexhaustive %+v", name, res.Distribution, want.Distribution)
	}
	return res
}

// yaraCLI is the path of the yara command line tool; the test fails
// without it.
func yaraCLI(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("yara")
	if err != nil {
		t.Fatal("yara CLI not installed (make setup-test installs it)")
	}
	return bin
}

// writeFile writes data to path, making its directories; any error ends the
// test.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
