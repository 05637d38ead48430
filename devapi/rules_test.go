package devapi

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

func TestRulesHashChangesIffContentChanges(t *testing.T) {
	base := map[string]string{"a": "rule a { condition: true }", "b": "rule b { condition: false }"}
	h := rulesHash(base)
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(h) {
		t.Fatalf("hash %q is not 40 hex digits", h)
	}
	same := map[string]string{"b": "rule b { condition: false }", "a": "rule a { condition: true }"}
	if rulesHash(same) != h {
		t.Fatal("hash depends on map order")
	}
	for name, m := range map[string]map[string]string{
		"source changed": {"a": "rule a { condition: false }", "b": "rule b { condition: false }"},
		"stem renamed":   {"c": "rule a { condition: true }", "b": "rule b { condition: false }"},
		"file added":     {"a": "rule a { condition: true }", "b": "rule b { condition: false }", "c": ""},
		"boundary moved": {"a": "rule a { condition: true }rule b", "b": " { condition: false }"},
		"empty":          {},
	} {
		if rulesHash(m) == h {
			t.Errorf("%s: hash unchanged", name)
		}
	}
}

func TestRulesDirUpdates(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "one.yara", "rule one { condition: true }")
	writeFile(t, dir, "two.yar", "rule two { condition: true }")
	writeFile(t, dir, "notes.txt", "ignored")
	f := newFixture(t, Config{RulesDir: dir, Rules: map[string]string{"mem": "rule mem { condition: true }"}})
	get := func() (string, map[string]string) {
		rec := f.do(http.MethodGet, "/rules", nil)
		var r struct {
			Hash  string            `json:"hash"`
			Rules map[string]string `json:"rules"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return r.Hash, r.Rules
	}
	h1, r1 := get()
	if len(r1) != 3 || r1["one"] == "" || r1["two"] == "" || r1["mem"] == "" {
		t.Fatalf("rules = %v", r1)
	}
	// UpdateRules with identical content keeps the hash (touching mtime).
	now := time.Now()
	if err := os.Chtimes(filepath.Join(dir, "one.yara"), now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := f.s.UpdateRules(); err != nil {
		t.Fatal(err)
	}
	if h, _ := get(); h != h1 {
		t.Fatal("hash changed without a content change")
	}
	// A change is seen by POST /update-rules/ at once ...
	writeFile(t, dir, "one.yara", "rule one { condition: false }")
	rec := f.do(http.MethodPost, "/update-rules/", nil)
	h2, r2 := get()
	if rec.Code != http.StatusOK || h2 == h1 || r2["one"] != "rule one { condition: false }" {
		t.Fatalf("after update-rules: %d, hash %s (was %s), %v", rec.Code, h2, h1, r2)
	}
	// ... and by the cheap check, at most once a second (injected clock).
	writeFile(t, dir, "three.yara", "rule three { condition: true }")
	if h, _ := get(); h != h2 {
		t.Fatal("dir re-read within a second of the last check")
	}
	f.clock.Advance(time.Second)
	h3, r3 := get()
	if h3 == h2 || r3["three"] == "" {
		t.Fatalf("new rule file not picked up: %v", r3)
	}
	// Jobs carry the current hash.
	f.s.Add("p", "1", nil)
	if j := f.lease(1); len(j) != 1 || j[0].Hash != h3 || j[0].Distributions == nil {
		t.Fatalf("job = %+v, want hash %s and distributions []", j, h3)
	}
}
