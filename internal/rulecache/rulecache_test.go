package rulecache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNewestFromTheSameAPI: the most recently written set from the base
// URL wins; sets from another API, files that do not name their own hash,
// unreadable, oversized or unsafe ones are passed over.
func TestNewestFromTheSameAPI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rules")
	const base = "https://api.example"
	at := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	put := func(c entry, age time.Duration) string {
		t.Helper()
		if err := write(dir, c); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, c.Hash+".json")
		if err := os.Chtimes(p, at.Add(-age), at.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rules := map[string]string{"a": "rule a { condition: true }"}
	put(entry{Hash: "old", Rules: rules, BaseURL: base}, 3*time.Hour)
	want := put(entry{Hash: "new", Rules: rules, BaseURL: base, Fetched: at}, 2*time.Hour)
	put(entry{Hash: "other", Rules: rules, BaseURL: "https://other.example"}, time.Hour)
	renamed := put(entry{Hash: "moved", Rules: rules, BaseURL: base}, time.Minute)
	if err := os.Rename(renamed, filepath.Join(dir, "elsewhere.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "garbage.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	big, err := os.Create(filepath.Join(dir, "big.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(MaxFile + 1); err != nil {
		t.Fatal(err)
	}
	big.Close()

	c, path, err := newest(dir, base)
	if err != nil || path != want || c.Hash != "new" || !c.Fetched.Equal(at) || c.Rules["a"] == "" {
		t.Fatalf("newest = %+v %s %v; want %s", c, path, err, want)
	}
	if _, _, err := newest(dir, "https://nobody.example"); err == nil {
		t.Error("a set from another API was used")
	}
	if _, _, err := newest(filepath.Join(dir, "none"), base); err == nil {
		t.Error("no directory, no error")
	}
}

// TestWriteRefusesUnsafeHashes: the hash comes from the server; only a
// plain file name becomes a file, owner only.
func TestWriteRefusesUnsafeHashes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rules")
	for _, h := range []string{"../../escape", ".hidden", "a/b", "", strings.Repeat("x", 200)} {
		if err := write(dir, entry{Hash: h}); err == nil || !strings.Contains(err.Error(), "not a safe file name") {
			t.Errorf("hash %q: %v", h, err)
		}
	}
	if err := write(dir, entry{Hash: "abc-1.2_3", Rules: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "abc-1.2_3.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", fi, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}
