package scanreport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/scanrun"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// tgz builds a .tar.gz of regular files.
func tgz(t *testing.T, files ...testkit.TarEntry) []byte {
	return testkit.Gzip(t, testkit.Tar(t, files...))
}

// report scans the targets with the rules at rulesPath as dragonfly scan
// does (default limits, two threads) and writes the results in format.
func report(t *testing.T, format, rulesPath string, showStrings bool, targets ...string) string {
	t.Helper()
	set, err := rules.Load(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := scanrun.Jobs(targets, nil)
	if err != nil {
		t.Fatal(err)
	}
	results, _ := scanrun.Run(t.Context(), scanrun.Config{Rules: rs, Threads: 2, Limits: limit.Defaults(), MatchDetails: showStrings}, jobs)
	var buf bytes.Buffer
	if err := Write(&buf, format, rs, results, showStrings); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Target, r.Err)
		}
	}
	return buf.String()
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
	testkit.WriteFile(t, filepath.Join(base, "unpacked", "sub dir"), "x#1.py", "MARKER\n")
	testkit.WriteFile(t, base, "raw file.py", "MARKER\n")
	archivePath := filepath.Join(base, "pkg 1.0.tar.gz")
	if err := os.WriteFile(archivePath, tgz(t, testkit.TarEntry{Name: "pkg 1.0/a#b c.py", Body: []byte("MARKER")}, testkit.TarEntry{Name: "pkg 1.0/%41.py", Body: []byte("MARKER")}), 0o644); err != nil {
		t.Fatal(err)
	}
	rulesPath := testkit.WriteFile(t, t.TempDir(), "sarif.yar", sarifRules)
	out := report(t, "sarif", rulesPath, false, filepath.Join(base, "unpacked"), archivePath, filepath.Join(base, "raw file.py"))
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
	res := scanrun.Result{Target: "pypi:demo==1.0", Scan: scan.Result{Distribution: score.Distribution{Files: files}}, Release: &scanrun.Release{
		Name: "demo", Version: "1.0",
		Distributions: []scanrun.Distribution{
			{Filename: "demo-1.0.tar.gz", URL: "https://files.example/packages/aa/demo-1.0.tar.gz"},
			{Filename: "demo-1.0-py3-none-any.whl", URL: "https://files.example/packages/bb/demo-1.0-py3-none-any.whl"},
		},
	}}
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, rs, []scanrun.Result{res}); err != nil {
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

// cliMatch is one line of yara -s -L: offset, data length and the data as
// the CLI prints it.
type cliMatch struct {
	offset int64
	length int
	data   string
}

// yaraCLI runs yara -s -L and returns each (rule, string)'s matches in the
// CLI's order. The yara CLI is part of the test setup (make setup-test): its
// absence fails the test.
func yaraCLI(t *testing.T, rulesPath, target string) map[[2]string][]cliMatch {
	t.Helper()
	bin, err := exec.LookPath("yara")
	if err != nil {
		t.Fatalf("the yara CLI is needed to check offsets (make setup-test installs it): %v", err)
	}
	out, err := exec.Command(bin, "-s", "-L", rulesPath, target).Output()
	if err != nil {
		t.Fatalf("yara: %v", err)
	}
	got := map[[2]string][]cliMatch{}
	line := regexp.MustCompile(`^0x([0-9a-f]+):([0-9]+):(\$[A-Za-z0-9_]*): (.*)$`)
	rule := ""
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			rule, _, _ = strings.Cut(l, " ")
			continue
		}
		off, _ := strconv.ParseInt(m[1], 16, 64)
		n, _ := strconv.Atoi(m[2])
		k := [2]string{rule, m[3]}
		got[k] = append(got[k], cliMatch{off, n, m[4]})
	}
	return got
}

// cliEscape prints bytes as the yara CLI prints a text string's data:
// printable ASCII (the backslash too) as itself, other bytes as \xNN.
func cliEscape(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x20 && c <= 0x7e {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
	}
	return sb.String()
}

// unescapeData reverses matchData.
func unescapeData(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			if i+3 >= len(s) || s[i+1] != 'x' {
				t.Fatalf("bad escape in %q", s)
			}
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil || s[i+2:i+4] != strings.ToLower(s[i+2:i+4]) {
				t.Fatalf("bad escape in %q", s)
			}
			out = append(out, byte(v))
			i += 3
			continue
		}
		if s[i] < 0x20 || s[i] > 0x7e {
			t.Fatalf("raw byte %#x in %q", s[i], s)
		}
		out = append(out, s[i])
	}
	return out
}

const showStringsRules = `rule text_strings {
  strings:
    $m = "MARKER"
    $b = /ER\\x..\x20M/
  condition:
    any of them
}
rule hex_string { strings: $h = { 01 02 } condition: $h }
rule long_match { strings: $re = /XB{600}C/ condition: $re }
rule no_strings { condition: filesize > 10 }
`

// showStringsSample holds 20 MARKERs (16 listed, 4 omitted), one of them
// beside a backslash and control bytes, a hex match, and a 602-byte match
// (data kept: 512 bytes, shown: 64).
func showStringsSample() []byte {
	var b bytes.Buffer
	b.WriteString("start MARKER\\x\x01\x02 MARKER\t")
	for i := range 18 {
		fmt.Fprintf(&b, "line %d MARKER\n", i)
	}
	b.WriteString("X" + strings.Repeat("B", 600) + "C\n")
	return b.Bytes()
}

// TestShowStringsMatchesYaraCLI: offsets, lengths and data of scan
// --show-strings are those the yara CLI prints with -s -L for the same
// file, the first 16 per string, the rest counted.
func TestShowStringsMatchesYaraCLI(t *testing.T) {
	dir := t.TempDir()
	rulesPath := testkit.WriteFile(t, dir, "show.yar", showStringsRules)
	sample := filepath.Join(dir, "sample.bin")
	if err := os.WriteFile(sample, showStringsSample(), 0o644); err != nil {
		t.Fatal(err)
	}
	want := yaraCLI(t, rulesPath, sample)
	if len(want[[2]string{"text_strings", "$m"}]) != 20 || len(want[[2]string{"long_match", "$re"}]) != 1 {
		t.Fatalf("yara CLI output unexpected: %v", want)
	}

	out := report(t, "json", rulesPath, true, sample)
	var res struct {
		Files []struct {
			Path    string `json:"path"`
			Matches []struct {
				Rule   string `json:"rule"`
				String string `json:"string"`
				Offset int64  `json:"offset"`
				Length int    `json:"length"`
				Data   string `json:"data"`
			} `json:"matches"`
			Omitted *int `json:"matches_omitted"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Files) != 1 || res.Files[0].Omitted == nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := map[[2]string][]cliMatch{}
	for _, m := range res.Files[0].Matches {
		k := [2]string{m.Rule, m.String}
		data := unescapeData(t, m.Data)
		if len(data) > 64 || len(data) > m.Length {
			t.Errorf("%v at %d: %d bytes of data for length %d", k, m.Offset, len(data), m.Length)
		}
		shown := cliEscape(data)
		if k[1] == "$h" {
			shown = strings.ToUpper(fmt.Sprintf("% x", data))
		}
		got[k] = append(got[k], cliMatch{m.Offset, m.Length, shown})
	}
	omitted := 0
	for k, cli := range want {
		if len(cli) > 16 {
			omitted += len(cli) - 16
			cli = cli[:16]
		}
		ours := got[k]
		if len(ours) != len(cli) {
			t.Errorf("%v: %d matches, the CLI %d", k, len(ours), len(cli))
			continue
		}
		for i := range cli {
			o, c := ours[i], cli[i]
			if o.offset != c.offset || o.length != c.length || !strings.HasPrefix(strings.ToLower(c.data), strings.ToLower(o.data)) ||
				(c.length <= 64 && !strings.EqualFold(c.data, o.data)) {
				t.Errorf("%v #%d: ours %+v, the CLI %+v", k, i, o, c)
			}
		}
	}
	if len(got) != len(want) || *res.Files[0].Omitted != omitted || omitted != 4 {
		t.Errorf("strings %v (CLI %v); omitted %d, want %d", got, want, *res.Files[0].Omitted, omitted)
	}
	// The long match: libyara keeps 512 bytes of its 602, we show 64.
	if lm := got[[2]string{"long_match", "$re"}]; len(lm) != 1 || lm[0].length != 512 || lm[0].data != "X"+strings.Repeat("B", 63) {
		t.Errorf("long match %+v", lm)
	}
	// The escaping: the backslash and control bytes as \xNN, lower case.
	for _, m := range res.Files[0].Matches {
		if m.String == "$b" && m.Data != `ER\x5cx\x01\x02 M` {
			t.Errorf("$b data %q", m.Data)
		}
	}
}

// TestShowStringsTableAndSARIF: the table lists each matched file's strings
// under it; SARIF gives each match a region with its bytes as a snippet
// (text or base64); without --show-strings nothing of it appears.
func TestShowStringsTableAndSARIF(t *testing.T) {
	dir := t.TempDir()
	rulesPath := testkit.WriteFile(t, dir, "show.yar", showStringsRules)
	archivePath := filepath.Join(dir, "pkg-1.0.tar.gz")
	if err := os.WriteFile(archivePath, tgz(t, testkit.TarEntry{Name: "pkg-1.0/sample.bin", Body: showStringsSample()}, testkit.TarEntry{Name: "pkg-1.0/clean.txt", Body: []byte("short")}), 0o644); err != nil {
		t.Fatal(err)
	}

	out := report(t, "table", rulesPath, true, archivePath)
	squeeze := regexp.MustCompile(` +`)
	flat := squeeze.ReplaceAllString(out, " ")
	for _, want := range []string{
		"\n" + archivePath + ": pkg-1.0/sample.bin (score 0, hex_string,long_match,no_strings,text_strings)\n",
		"\n hex_string $h 0xe 2 \\x01\\x02\n",
		"\n long_match $re 0x11c 512 X" + strings.Repeat("B", 63) + "\n",
		"\n text_strings $m 0x6 6 MARKER\n",
		"\n text_strings $b 0xa 8 ER\\x5cx\\x01\\x02 M\n",
		"\n (4 more matches not shown: at most 16 per string)\n",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "clean.txt") {
		t.Errorf("table lists a file without matches:\n%s", out)
	}

	out = report(t, "sarif", rulesPath, true, archivePath)
	byRule := map[string]sarifHit{}
	for _, h := range sarifHits(checkSARIF(t, []byte(out))) {
		byRule[h.rule] = h
	}
	text := byRule["text_strings"]
	if len(text.regions) != 17 { // 16 of $m, 1 of $b
		t.Fatalf("text_strings: %d regions", len(text.regions))
	}
	if r := text.regions[0]; fmt.Sprint(r["byteOffset"]) != "6" || fmt.Sprint(r["byteLength"]) != "6" || dig(r, "snippet", "text") != "MARKER" {
		t.Errorf("first region %v", r)
	}
	hex := byRule["hex_string"]
	if len(hex.regions) != 1 || dig(hex.regions[0], "snippet", "binary") != base64.StdEncoding.EncodeToString([]byte{1, 2}) {
		t.Errorf("hex_string regions %v", hex.regions)
	}
	if h := byRule["no_strings"]; len(h.regions) != 0 || !strings.HasSuffix(h.uri, "#pkg-1.0/sample.bin") {
		t.Errorf("no_strings %+v", h)
	}
	if !strings.Contains(out, `"matchesOmitted": 4`) {
		t.Errorf("SARIF does not count the omitted matches")
	}

	// Without --show-strings: no matches in any format.
	out = report(t, "json", rulesPath, false, archivePath)
	if strings.Contains(out, `"matches"`) || !strings.Contains(out, "text_strings") {
		t.Errorf("json without --show-strings: %s", out)
	}
	out = report(t, "sarif", rulesPath, false, archivePath)
	if strings.Contains(out, "region") {
		t.Errorf("sarif without --show-strings: %s", out)
	}
}

// TestSARIFRegionIsTheWholeMatch: a SARIF region is the bytes a viewer
// marks: a 602-byte match is a region of 602 bytes, not of the 512 bytes
// of data libyara keeps (which the JSON's "length" counts, as yara -s
// does).
func TestSARIFRegionIsTheWholeMatch(t *testing.T) {
	dir := t.TempDir()
	rulesPath := testkit.WriteFile(t, dir, "show.yar", showStringsRules)
	sample := filepath.Join(dir, "sample.bin")
	if err := os.WriteFile(sample, showStringsSample(), 0o644); err != nil {
		t.Fatal(err)
	}
	byRule := map[string]sarifHit{}
	for _, h := range sarifHits(checkSARIF(t, []byte(report(t, "sarif", rulesPath, true, sample)))) {
		byRule[h.rule] = h
	}
	if r := byRule["long_match"].regions; len(r) != 1 || fmt.Sprint(r[0]["byteOffset"]) != "284" || fmt.Sprint(r[0]["byteLength"]) != "602" {
		t.Errorf("long_match regions %v, want one at 284 of 602 bytes", r)
	}
	if r := byRule["text_strings"].regions; len(r) == 0 || fmt.Sprint(r[0]["byteLength"]) != "6" {
		t.Errorf("text_strings regions %v", r)
	}
}

// TestTableQuotesControlCharacters: the table goes to a terminal, and names
// in it come from the scanned input: a hostile archive member named
// "x\r\x1b[2K..." (or a file name in a downloads directory) must not move
// the cursor and overwrite a matched target's row with a clean-looking one.
// A name with a control character (or a bidi override, or invalid UTF-8) is
// shown quoted, as clip.Path quotes it; plain names stay as they are.
func TestTableQuotesControlCharacters(t *testing.T) {
	dir := t.TempDir()
	rulesPath := testkit.WriteFile(t, dir, "r.yar", `rule evil { meta: weight = 10 strings: $a = "EVIL" condition: $a }`)
	fake := "\r\x1b[2Kpkg-1.0.tar.gz  0  -  -\x1b[8m"
	member := "pkg-1.0/x.py" + fake + "\t\u202e"
	archivePath := filepath.Join(dir, "pkg\x1b[1A-1.0.tar.gz")
	if err := os.WriteFile(archivePath, tgz(t, testkit.TarEntry{Name: member, Body: []byte("EVIL")}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, show := range []bool{false, true} {
		out := report(t, "table", rulesPath, show, archivePath)
		for i, r := range out {
			if r != '\n' && !strconv.IsPrint(r) {
				t.Fatalf("show-strings %v: table holds %U at byte %d:\n%q", show, r, i, out)
			}
		}
		if !strings.Contains(out, strconv.Quote(member)[1:20]) {
			t.Errorf("show-strings %v: the member's name is not shown quoted:\n%q", show, out)
		}
	}
	// JSON keeps the names exact, escaped: encoding/json leaves the
	// bidi override raw, which reorders the terminal's line.
	for _, format := range []string{"json", "sarif"} {
		out := report(t, format, rulesPath, true, archivePath)
		if i := strings.IndexFunc(out, func(r rune) bool { return r != '\n' && clip.Hidden(r) }); i >= 0 {
			t.Errorf("%s holds %q at byte %d:\n%q", format, out[i:i+3], i, out)
		}
	}
	var res JSONResult
	if err := json.Unmarshal([]byte(report(t, "json", rulesPath, false, archivePath)), &res); err != nil {
		t.Fatal(err)
	}
	if res.Target != archivePath || res.MostMaliciousFile == nil || *res.MostMaliciousFile != member {
		t.Errorf("json: target %q, top file %v", res.Target, res.MostMaliciousFile)
	}
	// Plain names are not quoted.
	plain := filepath.Join(dir, "plain-1.0.tar.gz")
	if err := os.WriteFile(plain, tgz(t, testkit.TarEntry{Name: "plain-1.0/a \"b\".py", Body: []byte("EVIL")}), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := report(t, "table", rulesPath, true, plain); !strings.Contains(out, "\n"+plain+" ") || !strings.Contains(out, ` plain-1.0/a "b".py`) {
		t.Errorf("plain names changed:\n%s", out)
	}
}

// TestCellQuotesInvalidUTF8: a name that is not UTF-8 (a file name on disk,
// an archive member's raw bytes) is shown quoted, as one with a control
// character is: a terminal decodes such bytes its own way.
// TestTableQuotesControlCharacters covers the control characters.
func TestCellQuotesInvalidUTF8(t *testing.T) {
	for _, name := range []string{"pkg\xff-1.0.tar.gz", "pkg-1.0/\xc3(.py", "pkg-1.0/\xe2\x80.py"} {
		got := cell(name)
		if got != clip.Path(name) || got == name {
			t.Errorf("cell(%q) = %q, want it quoted as %q", name, got, clip.Path(name))
		}
	}
	if got := cell("pkg-1.0/é.py"); got != "pkg-1.0/é.py" {
		t.Errorf("a printable UTF-8 name changed: %q", got)
	}
}

// TestSnippetDELIsBinary: matched data holding DEL (0x7f), a control
// character, is given as base64, like the other control characters; tab,
// newline and carriage return stay text.
func TestSnippetDELIsBinary(t *testing.T) {
	for _, tc := range []struct {
		data string
		text bool
	}{
		{"exec(\x7f)", false},
		{"exec(\x1b)", false},
		{"exec(\t\r\n)", true},
		{"exec(é)", true},
		{"exec(\xff)", false},
	} {
		c := snippet([]byte(tc.data))
		if (c.Text != nil) != tc.text || (c.Binary != nil) == tc.text {
			t.Errorf("snippet(%q): text %v, binary %v; want text %v", tc.data, c.Text != nil, c.Binary != nil, tc.text)
		}
	}
}
