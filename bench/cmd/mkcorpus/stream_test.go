package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zip"

	"github.com/dragonfly-fleet/fleet/bench/internal/dist"
)

// wheelFiles reads a wheel's members.
func wheelFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	r, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]string{}
	for _, f := range r.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 32<<10)
		for {
			n, err := rc.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		rc.Close()
		out[f.Name] = b.String()
	}
	return out
}

// TestStreamNextVersions: the stream holds every release and its next
// version, whose files are the same but for at most streamChanged .py files
// and those naming the version; built twice, the bytes are the same.
func TestStreamNextVersions(t *testing.T) {
	list, cache := fixture(t)
	out := t.TempDir()
	cfg := testConfig(list, cache, out)
	ctx := context.Background()
	if _, err := build(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	m, err := buildStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if m.Totals.Distributions != 8 {
		t.Fatalf("%d distributions, want 4 releases of 2", m.Totals.Distributions)
	}
	first := readTree(t, filepath.Join(out, "stream"))
	cfg.Force = true
	if _, err := buildStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	assertSameTrees(t, first, readTree(t, filepath.Join(out, "stream")))
	old := wheelFiles(t, filepath.Join(out, "stream", "dists", wheelName("alpha", "1.0.2")))
	next := wheelFiles(t, filepath.Join(out, "stream", "dists", wheelName("alpha", nextVersion("1.0.2"))))
	changed := 0
	for name, body := range old {
		if strings.Contains(name, ".dist-info/") {
			continue
		}
		nb, ok := next[name]
		switch {
		case !ok:
			t.Errorf("%s missing from the next version", name)
		case nb != body:
			if !strings.HasSuffix(name, ".py") || !strings.HasPrefix(nb, body) {
				t.Errorf("%s changed other than by a line appended", name)
			}
			changed++
		}
	}
	if changed == 0 || changed > streamChanged {
		t.Errorf("%d files changed, want 1 to %d", changed, streamChanged)
	}
	if !strings.Contains(next["alpha-"+nextVersion("1.0.2")+".dist-info/METADATA"], "Version: "+nextVersion("1.0.2")) {
		t.Error("the next version's METADATA does not name it")
	}
	// extract and devapi read the stream like the main corpus.
	sm, err := dist.ReadManifest(filepath.Join(out, "stream"))
	if err != nil || len(sm.Distributions) != 8 {
		t.Fatalf("stream manifest: %v", err)
	}
}
