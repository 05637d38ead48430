package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// tgzOf builds a .tar.gz of files (path, content pairs).
func tgzOf(t *testing.T, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// checkSARIF holds a log to the SARIF 2.1.0 schema's constraints on what
// scan writes (required properties, types, enums, minimums, URI references,
// ruleIndex pointing at its rule) and returns it decoded.
func checkSARIF(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var log map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&log); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	fail := func(format string, a ...any) { t.Helper(); t.Errorf("sarif: "+format, a...) }
	obj := func(v any, where string) map[string]any {
		m, ok := v.(map[string]any)
		if !ok {
			fail("%s: not an object: %v", where, v)
		}
		return m
	}
	arr := func(v any, where string) []any {
		a, ok := v.([]any)
		if !ok {
			fail("%s: not an array: %v", where, v)
		}
		return a
	}
	str := func(v any, where string) string {
		s, ok := v.(string)
		if !ok {
			fail("%s: not a string: %v", where, v)
		}
		return s
	}
	integer := func(v any, where string, min int64) int64 {
		n, ok := v.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil || i < min {
			fail("%s: not an integer >= %d: %v", where, min, v)
		}
		return i
	}
	message := func(v any, where string) { str(obj(v, where)["text"], where+".text") }
	props := func(v any, where string) {
		if v == nil {
			return
		}
		if tags, ok := obj(v, where)["tags"]; ok {
			for _, tg := range arr(tags, where+".tags") {
				str(tg, where+".tags[]")
			}
		}
	}
	uriRef := func(v any, where string) {
		s := str(v, where)
		if _, err := url.Parse(s); err != nil || strings.ContainsAny(s, " \t\n") || strings.Count(s, "#") > 1 {
			fail("%s: %q is not a percent-encoded URI reference", where, s)
		}
		for _, r := range s {
			if r > 0x7e {
				fail("%s: %q holds a raw non-ASCII character", where, s)
			}
		}
	}
	levels := map[string]bool{"none": true, "note": true, "warning": true, "error": true}
	location := func(v any, where string) {
		l := obj(v, where)
		if m, ok := l["message"]; ok {
			message(m, where+".message")
		}
		pl := obj(l["physicalLocation"], where+".physicalLocation")
		uriRef(obj(pl["artifactLocation"], where+".artifactLocation")["uri"], where+".uri")
		if rg, ok := pl["region"]; ok {
			r := obj(rg, where+".region")
			integer(r["byteOffset"], where+".region.byteOffset", 0)
			integer(r["byteLength"], where+".region.byteLength", 0)
			if sn, ok := r["snippet"]; ok {
				c := obj(sn, where+".snippet")
				text, hasText := c["text"]
				bin, hasBin := c["binary"]
				if hasText == hasBin {
					fail("%s.snippet: want text or binary: %v", where, c)
				}
				if hasText {
					str(text, where+".snippet.text")
				}
				if hasBin {
					if _, err := base64.StdEncoding.DecodeString(str(bin, where+".snippet.binary")); err != nil {
						fail("%s.snippet.binary: %v", where, err)
					}
				}
			}
		}
	}

	if log["version"] != "2.1.0" {
		fail("version %v", log["version"])
	}
	str(log["$schema"], "$schema")
	runs := arr(log["runs"], "runs")
	if len(runs) != 1 {
		t.Fatalf("sarif: %d runs", len(runs))
	}
	run := obj(runs[0], "run")
	driver := obj(obj(run["tool"], "tool")["driver"], "driver")
	if str(driver["name"], "driver.name") == "" {
		fail("driver without name")
	}
	var ids []string
	for i, r := range arr(driver["rules"], "rules") {
		rule := obj(r, fmt.Sprint("rules[", i, "]"))
		ids = append(ids, str(rule["id"], "rule.id"))
		message(rule["shortDescription"], "rule.shortDescription")
		if fd, ok := rule["fullDescription"]; ok {
			message(fd, "rule.fullDescription")
		}
		props(rule["properties"], "rule.properties")
	}
	for i, r := range arr(run["results"], "results") {
		where := fmt.Sprint("results[", i, "]")
		res := obj(r, where)
		message(res["message"], where+".message")
		if !levels[str(res["level"], where+".level")] {
			fail("%s: level %v", where, res["level"])
		}
		id := str(res["ruleId"], where+".ruleId")
		if ix := integer(res["ruleIndex"], where+".ruleIndex", -1); ix < 0 || int(ix) >= len(ids) || ids[ix] != id {
			fail("%s: ruleIndex %d does not point at rule %s", where, ix, id)
		}
		for j, l := range arr(res["locations"], where+".locations") {
			location(l, fmt.Sprint(where, ".locations[", j, "]"))
		}
		props(res["properties"], where+".properties")
	}
	for _, inv := range arr(run["invocations"], "invocations") {
		in := obj(inv, "invocation")
		if _, ok := in["executionSuccessful"].(bool); !ok {
			fail("invocation without executionSuccessful")
		}
		if ns, ok := in["toolExecutionNotifications"]; ok {
			for _, n := range arr(ns, "notifications") {
				nt := obj(n, "notification")
				message(nt["message"], "notification.message")
				if ls, ok := nt["locations"]; ok {
					for _, l := range arr(ls, "notification.locations") {
						location(l, "notification.location")
					}
				}
			}
		}
	}
	return log
}

// dig walks decoded JSON by object keys and array indexes; nil where
// something is missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// sarifResults are the results of a checked log: rule, URI and regions.
type sarifHit struct {
	rule, uri string
	regions   []map[string]any
}

func sarifHits(log map[string]any) []sarifHit {
	var out []sarifHit
	run := log["runs"].([]any)[0].(map[string]any)
	for _, r := range run["results"].([]any) {
		res := r.(map[string]any)
		h := sarifHit{rule: res["ruleId"].(string)}
		for _, l := range res["locations"].([]any) {
			pl := l.(map[string]any)["physicalLocation"].(map[string]any)
			h.uri = pl["artifactLocation"].(map[string]any)["uri"].(string)
			if rg, ok := pl["region"]; ok {
				h.regions = append(h.regions, rg.(map[string]any))
			}
		}
		out = append(out, h)
	}
	return out
}

const sarifRules = `rule sarif_marker {
  meta:
    description = "the marker string, with \"quotes\""
    weight = 5
    filetype = ".py  .txt"
  strings:
    $m = "MARKER"
  condition:
    $m
}
rule sarif_plain { strings: $m = "MARKER" condition: $m }
`

// TestSARIFRulesAndURIs: rules carry their description, weight and
// filetype; artifact URIs are percent-encoded file:// URIs for local paths
// (spaces and "#" in directory, archive and member names), ARCHIVE#member
// for archive members, and a release's distribution URL#path.
func TestSARIFRulesAndURIs(t *testing.T) {
	base := filepath.Join(t.TempDir(), "with space#hash")
	if err := os.MkdirAll(filepath.Join(base, "unpacked", "sub dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeRuleFile(t, filepath.Join(base, "unpacked", "sub dir"), "x#1.py", "MARKER\n")
	writeRuleFile(t, base, "raw file.py", "MARKER\n")
	archivePath := filepath.Join(base, "pkg 1.0.tar.gz")
	if err := os.WriteFile(archivePath, tgzOf(t, [2]string{"pkg 1.0/a#b c.py", "MARKER"}, [2]string{"pkg 1.0/%41.py", "MARKER"}), 0o644); err != nil {
		t.Fatal(err)
	}
	rulesPath := writeRuleFile(t, t.TempDir(), "sarif.yar", sarifRules)
	code, out, errOut := runCLI(t, nil, "scan", "--rules", rulesPath, "--format", "sarif",
		filepath.Join(base, "unpacked"), archivePath, filepath.Join(base, "raw file.py"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	log := checkSARIF(t, []byte(out))
	enc := strings.NewReplacer(" ", "%20", "#", "%23")
	wantURIs := map[string]bool{
		"file://" + enc.Replace(filepath.Join(base, "unpacked", "sub dir", "x#1.py")):     true,
		"file://" + enc.Replace(archivePath) + "#" + enc.Replace("pkg 1.0/a#b c.py"):      true,
		"file://" + enc.Replace(archivePath) + "#" + enc.Replace("pkg 1.0/") + "%2541.py": true,
		"file://" + enc.Replace(filepath.Join(base, "raw file.py")):                       true,
	}
	gotURIs := map[string]int{}
	for _, h := range sarifHits(log) {
		gotURIs[h.uri]++
		u, err := url.Parse(h.uri)
		if err != nil || u.Scheme != "file" {
			t.Errorf("uri %q: %v", h.uri, err)
			continue
		}
		// Decoded, the URI names the file and the member again.
		if !strings.HasPrefix(u.Path, base) || (u.Fragment != "" && !strings.HasPrefix(u.Fragment, "pkg 1.0/")) {
			t.Errorf("uri %q decodes to path %q fragment %q", h.uri, u.Path, u.Fragment)
		}
	}
	for uri := range wantURIs {
		if gotURIs[uri] != 2 { // both rules
			t.Errorf("uri %s: %d results, want 2 (got %v)", uri, gotURIs[uri], gotURIs)
		}
	}
	if len(gotURIs) != len(wantURIs) {
		t.Errorf("URIs %v, want %v", gotURIs, wantURIs)
	}

	rulesOut, _ := dig(log, "runs", 0, "tool", "driver", "rules").([]any)
	if len(rulesOut) != 2 {
		t.Fatalf("rules %v", rulesOut)
	}
	const desc = `the marker string, with "quotes"`
	if dig(rulesOut, 0, "id") != "sarif_marker" || dig(rulesOut, 0, "shortDescription", "text") != desc || dig(rulesOut, 0, "fullDescription", "text") != desc {
		t.Errorf("rule %v", rulesOut[0])
	}
	if fmt.Sprint(dig(rulesOut, 0, "properties", "weight")) != "5" || dig(rulesOut, 0, "properties", "filetype") != ".py  .txt" {
		t.Errorf("properties %v", dig(rulesOut, 0, "properties"))
	}
	if dig(rulesOut, 1, "shortDescription", "text") != "YARA rule sarif_plain" || dig(rulesOut, 1, "fullDescription") != nil {
		t.Errorf("rule without description %v", rulesOut[1])
	}
	if fmt.Sprint(dig(rulesOut, 1, "properties", "weight")) != "0" || dig(rulesOut, 1, "properties", "filetype") != nil {
		t.Errorf("properties %v", dig(rulesOut, 1, "properties"))
	}
}

// TestSARIFReleaseURIs: a pypi: release's files are its distributions'
// download URLs with the path in the fragment.
func TestSARIFReleaseURIs(t *testing.T) {
	rs, err := rules.Compile(rules.Set{Sources: map[string]string{"s": sarifRules}})
	if err != nil {
		t.Fatal(err)
	}
	hit := score.NewFile("x", []score.Rule{{Name: "sarif_plain"}})
	files := []score.File{
		{Path: "demo-1.0.tar.gz/demo-1.0/setup#1.py", Rules: hit.Rules},
		{Path: "demo-1.0-py3-none-any.whl/demo/ä b.py", Rules: hit.Rules},
	}
	res := scanResult{target: "pypi:demo==1.0", res: scan.Result{Distribution: score.Distribution{Files: files}}, release: &releaseResult{
		name: "demo", version: "1.0",
		dists: []distResult{
			{Filename: "demo-1.0.tar.gz", URL: "https://files.example/packages/aa/demo-1.0.tar.gz"},
			{Filename: "demo-1.0-py3-none-any.whl", URL: "https://files.example/packages/bb/demo-1.0-py3-none-any.whl"},
		},
	}}
	var buf bytes.Buffer
	if err := writeSARIF(&buf, rs, []scanResult{res}); err != nil {
		t.Fatal(err)
	}
	hits := sarifHits(checkSARIF(t, buf.Bytes()))
	want := []string{
		"https://files.example/packages/aa/demo-1.0.tar.gz#demo-1.0/setup%231.py",
		"https://files.example/packages/bb/demo-1.0-py3-none-any.whl#demo/%C3%A4%20b.py",
	}
	if len(hits) != 2 || hits[0].uri != want[0] || hits[1].uri != want[1] {
		t.Fatalf("hits %+v, want URIs %q", hits, want)
	}
}
