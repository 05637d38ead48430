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

// TestNewestTrustsOnlyTheUsersOwnFiles: the fallback runs a cached set as
// the scan's rules, so a set another user could have written (a cache
// directory, or a file, writable by group or others, or owned by another
// user: XDG_CACHE_HOME on a shared /tmp, a shared CI cache) is not used: a
// planted set that matches nothing would make every target read clean.
func TestNewestTrustsOnlyTheUsersOwnFiles(t *testing.T) {
	const base = "https://api.example"
	rules := map[string]string{"a": "rule a { condition: false }"}
	fresh := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "rules")
		if err := write(dir, entry{Hash: "planted", Rules: rules, BaseURL: base}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := newest(dir, base); err != nil {
			t.Fatalf("the user's own set: %v", err)
		}
		return dir
	}
	t.Run("directory writable by others", func(t *testing.T) {
		dir := fresh(t)
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if c, _, err := newest(dir, base); err == nil {
			t.Fatalf("used %q from a directory anyone can write", c.Hash)
		}
	})
	t.Run("file writable by group", func(t *testing.T) {
		dir := fresh(t)
		if err := os.Chmod(filepath.Join(dir, "planted.json"), 0o660); err != nil {
			t.Fatal(err)
		}
		if c, _, err := newest(dir, base); err == nil {
			t.Fatalf("used %q, a file the group can write", c.Hash)
		}
	})
	t.Run("file of another user", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to give a file away")
		}
		dir := fresh(t)
		if err := os.Chown(filepath.Join(dir, "planted.json"), 12345, 12345); err != nil {
			t.Fatal(err)
		}
		if c, _, err := newest(dir, base); err == nil {
			t.Fatalf("used %q, another user's file", c.Hash)
		}
	})
}
