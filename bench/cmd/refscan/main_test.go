package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"

	"github.com/dragonfly-fleet/fleet/bench/internal/dist"
)

// TestBenchRulesCompile compiles the committed rule set with libyara the
// way the API client does (files joined with "\n") and checks its shape.
func TestBenchRulesCompile(t *testing.T) {
	r, err := compileDir("../../rules")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Destroy()
	rules := r.GetRules()
	if n := len(rules); n < 30 || n > 60 {
		t.Errorf("%d rules, want 30-60", n)
	}
	seen := map[string]bool{}
	weighted, negative := 0, 0
	for _, rule := range rules {
		if seen[rule.Identifier()] {
			t.Errorf("duplicate rule %s", rule.Identifier())
		}
		seen[rule.Identifier()] = true
		for _, m := range rule.Metas() {
			if w, ok := m.Value.(int); ok && m.Identifier == "weight" {
				weighted++
				if w < 0 {
					negative++
				}
			}
		}
	}
	if weighted != len(rules) || negative == 0 {
		t.Errorf("%d of %d rules have an integer weight, %d negative", weighted, len(rules), negative)
	}
	src, err := filepath.Glob("../../rules/*.yara")
	if err != nil {
		t.Fatal(err)
	}
	regexes := 0
	for _, f := range src {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("written for this project's benchmark")) && !bytes.Contains(b, []byte("Written for this project's benchmark")) {
			t.Errorf("%s lacks the header saying these are benchmark signatures", f)
		}
		regexes += len(regexp.MustCompile(`(?m)^\s*\$\w*\s*=\s*/`).FindAll(b, -1))
	}
	if regexes < 3 || regexes > 6 {
		t.Errorf("%d regex strings, want 3-6", regexes)
	}
}

func TestRunScansEachDistribution(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	corpus := filepath.Join(dir, "corpus")
	for _, d := range []string{rules, filepath.Join(corpus, "dists")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) { testkit.WriteFile(t, filepath.Dir(p), filepath.Base(p), s) }
	write(filepath.Join(rules, "a.yara"), `rule hit_a { strings: $a = "evil_marker" condition: $a }`)
	write(filepath.Join(rules, "b.yara"), `rule hit_b { strings: $b = "second_marker" condition: $b }`)

	files := map[string]string{
		"p-1/setup.py":  "evil_marker second_marker",
		"p-1/p/x.py":    "evil_marker",
		"p-1/p/none.py": "clean",
	}
	var ents []testkit.TarEntry
	var total int64
	for _, name := range []string{"p-1/setup.py", "p-1/p/x.py", "p-1/p/none.py"} {
		total += int64(len(files[name]))
		ents = append(ents, testkit.TarEntry{Name: name, Body: []byte(files[name])})
	}
	write(filepath.Join(corpus, "dists", "p-1.tar.gz"), string(testkit.Gzip(t, testkit.Tar(t, ents...))))
	m := dist.Manifest{Distributions: []dist.Entry{{File: "dists/p-1.tar.gz", Kind: dist.Sdist}}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(corpus, dist.ManifestName), string(b))

	tmp := t.TempDir()
	var out bytes.Buffer
	cfg := config{Rules: rules, Corpus: corpus, Tmp: tmp, Timeout: 10 * time.Second}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	var res result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Distributions != 1 || res.Files != 3 || res.Bytes != total || res.Matches != 3 {
		t.Errorf("result %+v, want 1 distribution, 3 files, %d bytes, 3 matches", res, total)
	}
	if res.RuleFiles["hit_a"] != 2 || res.RuleFiles["hit_b"] != 1 {
		t.Errorf("rule files %v", res.RuleFiles)
	}
	left, err := os.ReadDir(tmp)
	if err != nil || len(left) != 0 {
		t.Errorf("scratch left behind: %v %v", left, err)
	}
}
