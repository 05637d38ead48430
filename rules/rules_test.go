package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/score"
)

func TestLoadDirFileAndJSON(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, dir, "a.yara", `rule a { condition: true }`)
	testkit.WriteFile(t, dir, "b.yar", `rule b { condition: true }`)
	testkit.WriteFile(t, dir, "notes.txt", `not rules`)
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Stems(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("stems %v", got)
	}
	if len(set.Hash) != 40 || set.Hash != ContentHash(set.Sources) {
		t.Fatalf("hash %q", set.Hash)
	}

	one, err := Load(filepath.Join(dir, "a.yara"))
	if err != nil || len(one.Sources) != 1 || one.Sources["a"] == "" {
		t.Fatalf("single file: %+v %v", one, err)
	}

	doc, _ := json.Marshal(map[string]any{"hash": "abc123", "rules": map[string]string{"x": `rule x { condition: true }`}})
	js := testkit.WriteFile(t, dir, "rules.json", string(doc))
	fromJSON, err := Load(js)
	if err != nil || fromJSON.Hash != "abc123" || fromJSON.Sources["x"] == "" {
		t.Fatalf("json: %+v %v", fromJSON, err)
	}

	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("empty directory accepted")
	}
	if _, err := Load(testkit.WriteFile(t, dir, "bad.json", `{"hash": 1}`)); err == nil {
		t.Fatal("malformed JSON accepted")
	}
}

func TestContentHashChangesWithContent(t *testing.T) {
	a := ContentHash(map[string]string{"a": "x"})
	if a != ContentHash(map[string]string{"a": "x"}) {
		t.Fatal("hash not stable")
	}
	for _, other := range []map[string]string{{"a": "y"}, {"b": "x"}, {"a": "x", "b": ""}} {
		if ContentHash(other) == a {
			t.Fatalf("hash of %v equals hash of a:x", other)
		}
	}
}

func TestCompileErrorNamesFileAndLine(t *testing.T) {
	set := Set{Sources: map[string]string{
		"a_good": "rule good\n{\n condition: true\n}\n",
		"b_bad":  "rule fine { condition: true }\n\nrule broken {\n  condition: undefined_thing\n}\n",
	}}
	_, err := Compile(set)
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want CompileError", err)
	}
	if !strings.HasPrefix(ce.Messages[0], "b_bad.yara:4: ") {
		t.Fatalf("message %q does not name b_bad.yara line 4", ce.Messages[0])
	}
	if !strings.Contains(err.Error(), "b_bad.yara:4") {
		t.Fatalf("error %q", err)
	}
}

func TestIdentifiersUniqueAcrossFiles(t *testing.T) {
	_, err := Compile(Set{Sources: map[string]string{"a": `rule dup { condition: true }`, "b": `rule dup { condition: true }`}})
	var ce *CompileError
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Messages[0], "b.yara:1: ") {
		t.Fatalf("duplicate identifier across files: %v", err)
	}
}

func TestMetadata(t *testing.T) {
	c, err := Compile(Set{Hash: "h", Sources: map[string]string{"m": `
rule weighted { meta: weight = 7 filetype = ".py setup.py" condition: true }
rule negative { meta: weight = -3 condition: true }
rule textweight { meta: weight = "9" condition: true }
rule boolweight { meta: weight = true condition: true }
rule noweight { meta: description = "x" condition: true }
rule firstwins { meta: weight = 1 weight = 2 condition: true }
`}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash() != "h" || c.Len() != 6 {
		t.Fatalf("hash %s len %d", c.Hash(), c.Len())
	}
	want := map[string]score.Rule{
		"weighted":   {Name: "weighted", Weight: 7, Filetypes: []string{".py", "setup.py"}},
		"negative":   {Name: "negative", Weight: -3},
		"textweight": {Name: "textweight"},
		"boolweight": {Name: "boolweight"},
		"noweight":   {Name: "noweight"},
		"firstwins":  {Name: "firstwins", Weight: 1},
	}
	for name, w := range want {
		got, ok := c.Rule(name)
		if !ok || got.Name != w.Name || got.Weight != w.Weight || !slices.Equal(got.Filetypes, w.Filetypes) {
			t.Errorf("rule %s = %+v, want %+v", name, got, w)
		}
	}
}

func TestFiletypeMetadata(t *testing.T) {
	// The "filetype" value is split as the reference client splits it: on
	// each single space, empty entries kept; a tab is not a separator.
	cases := []struct {
		meta string // YARA source of the value
		want []string
	}{
		{`""`, []string{""}},
		{`" "`, []string{"", ""}},
		{`".py"`, []string{".py"}},
		{`".py "`, []string{".py", ""}},
		{`" .py"`, []string{"", ".py"}},
		{`".py  .txt"`, []string{".py", "", ".txt"}},
		{`".py\t.txt"`, []string{".py\t.txt"}},
	}
	var src strings.Builder
	for i, tc := range cases {
		fmt.Fprintf(&src, "rule f%d { meta: filetype = %s condition: true }\n", i, tc.meta)
	}
	src.WriteString("rule nofiletype { meta: weight = 1 condition: true }\n")
	src.WriteString("rule notext { meta: filetype = 3 condition: true }\n")
	src.WriteString("rule twice { meta: filetype = \".py\" filetype = \".txt\" condition: true }\n")
	c, err := Compile(Set{Sources: map[string]string{"f": src.String()}})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		r, ok := c.Rule(fmt.Sprintf("f%d", i))
		if !ok || !slices.Equal(r.Filetypes, tc.want) {
			t.Errorf("filetype = %s: filetypes %q, want %q", tc.meta, r.Filetypes, tc.want)
		}
	}
	for name, want := range map[string][]string{"nofiletype": nil, "notext": nil, "twice": {".py"}} {
		if r, _ := c.Rule(name); !slices.Equal(r.Filetypes, want) || (want == nil && r.Filetypes != nil) {
			t.Errorf("rule %s: filetypes %q, want %q", name, r.Filetypes, want)
		}
	}
	// ".py  .txt" holds an empty entry: the rule counts in every file.
	r, _ := c.Rule("f5")
	if f := score.NewFile("pkg/data.bin", []score.Rule{r}); len(f.Rules) != 1 {
		t.Errorf("rule with filetype \".py  .txt\" does not count for pkg/data.bin: %+v", f)
	}
	r, _ = c.Rule("f2")
	if f := score.NewFile("pkg/data.bin", []score.Rule{r}); len(f.Rules) != 0 {
		t.Errorf("rule with filetype \".py\" counts for pkg/data.bin: %+v", f)
	}
}

func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"hash":"abc","rules":{"a":"rule a { condition: true }"}}`))
	f.Add([]byte(`{"rules":{}}`))
	f.Add([]byte(`{"hash":null,"rules":{"a":""}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseJSON(data)
		if err != nil {
			return
		}
		if s.Sources == nil || s.Hash == "" {
			t.Fatalf("accepted document without rules or hash: %+v", s)
		}
		// Compiling whatever was accepted must fail cleanly or succeed.
		if c, err := Compile(s); err == nil && c.Hash() != s.Hash {
			t.Fatalf("compiled hash %q, want %q", c.Hash(), s.Hash)
		}
	})
}

// TestLoadDirRefusesSpecialFiles: a rules directory (a cloned rules
// repository may hold symbolic links) whose .yara entry is a FIFO, or a link
// to a device that never ends, fails with an error instead of hanging or
// reading until memory runs out; a file larger than MaxSourceBytes fails
// too.
func TestLoadDirRefusesSpecialFiles(t *testing.T) {
	t.Run("fifo", func(t *testing.T) {
		dir := t.TempDir()
		testkit.WriteFile(t, dir, "a.yara", `rule a { condition: true }`)
		fifo := filepath.Join(dir, "b.yar")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		err := testkit.NoHang(t, fifo, func() error { _, err := Load(dir); return err })
		if err == nil {
			t.Fatal("a FIFO in the rules directory loaded")
		}
	})
	t.Run("device", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.yara")); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := Load(dir); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("/dev/zero loaded as rules")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("reading /dev/zero as a rule file did not stop")
		}
	})
	t.Run("too large", func(t *testing.T) {
		dir := t.TempDir()
		f, err := os.Create(filepath.Join(dir, "big.yara"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(MaxSourceBytes + 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := Load(dir); err == nil {
			t.Fatal("a rule file over MaxSourceBytes loaded")
		}
		if _, err := Load(filepath.Join(dir, "big.yara")); err == nil {
			t.Fatal("a rule file over MaxSourceBytes loaded")
		}
	})
}
