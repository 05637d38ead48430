package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/rules"
)

// writeDemo writes the demo distributions into a directory.
func writeDemo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestScanJSON(t *testing.T) {
	dir := writeDemo(t)
	code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json",
		filepath.Join(dir, "reqeusts-2.31.0.tar.gz"), filepath.Join(dir, "tinycolors-1.2.0.tar.gz"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per target, got %q", out)
	}
	var bad, clean map[string]any
	json.Unmarshal([]byte(lines[0]), &bad)
	json.Unmarshal([]byte(lines[1]), &clean)
	if bad["score"] != 8.0 || bad["most_malicious_file"] != "reqeusts-2.31.0/reqeusts/__init__.py" {
		t.Fatalf("bad = %v", bad)
	}
	if rm := bad["rules_matched"].([]any); len(rm) != 2 || rm[0] != "demo_exec_base64" {
		t.Fatalf("rules_matched = %v", rm)
	}
	files := bad["files"].([]any)
	if len(files) != 2 {
		t.Fatalf("files = %v", files)
	}
	if _, has := bad["error"]; has {
		t.Fatalf("error field on success: %v", bad)
	}
	if clean["score"] != 0.0 || clean["most_malicious_file"] != nil || len(clean["files"].([]any)) != 0 {
		t.Fatalf("clean = %v", clean)
	}
}

func TestScanExitCodes(t *testing.T) {
	dir := writeDemo(t)
	bad := filepath.Join(dir, "reqeusts-2.31.0.tar.gz")
	corrupt := filepath.Join(dir, "broken.tar.gz")
	data, _ := os.ReadFile(bad)
	os.WriteFile(corrupt, data[:len(data)/2], 0o644)

	if code, _, _ := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "--fail-score", "9", bad); code != 0 {
		t.Fatalf("score 8 < fail-score 9: exit %d, want 0", code)
	}
	if code, _, _ := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "--fail-score", "8", bad); code != 1 {
		t.Fatalf("score 8 >= fail-score 8: exit %d, want 1", code)
	}
	code, out, _ := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "--fail-score", "1", bad, corrupt)
	if code != 3 {
		t.Fatalf("unscannable target: exit %d, want 3 (wins over 1)", code)
	}
	if !strings.Contains(out, `"error":"`) {
		t.Fatalf("no error field for the corrupt target: %s", out)
	}
	if code, _, _ := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", filepath.Join(dir, "missing.whl")); code != 3 {
		t.Fatalf("missing file: exit %d, want 3", code)
	}
	if code, _, _ := runCLI(t, nil, "scan", "--demo-rules", "--format", "xml", bad); code != 2 {
		t.Fatalf("bad format: exit %d, want 2", code)
	}
	badRules := filepath.Join(t.TempDir(), "bad.yara")
	os.WriteFile(badRules, []byte("rule x { condition: nope }"), 0o644)
	code, _, errOut := runCLI(t, nil, "scan", "--rules", badRules, bad)
	if code != 2 || !strings.Contains(errOut, "bad.yara:1") {
		t.Fatalf("bad rules: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := runCLI(t, nil, "scan"); code != 2 {
		t.Fatalf("no targets: exit %d, want 2", code)
	}
}

func TestScanLimitsFromEnv(t *testing.T) {
	dir := writeDemo(t)
	target := filepath.Join(dir, "reqeusts-2.31.0.tar.gz")
	code, out, _ := runCLI(t, map[string]string{"DRAGONFLY_MAX_FILE_SIZE": "100"}, "scan", "--demo-rules", "--format", "json", target)
	if code != 3 || !strings.Contains(out, "DRAGONFLY_MAX_FILE_SIZE") {
		t.Fatalf("exit %d out %s", code, out)
	}
	code, out, _ = runCLI(t, map[string]string{"DRAGONFLY_MAX_SIZE": "100"}, "scan", "--demo-rules", "--format", "json", target)
	if code != 3 || !strings.Contains(out, "exceeds limit DRAGONFLY_MAX_DOWNLOAD_SIZE (100 bytes)") {
		t.Fatalf("alias DRAGONFLY_MAX_SIZE: exit %d out %s", code, out)
	}
}

// TestScanMatchMemorySetting: DRAGONFLY_MAX_MATCH_MEMORY, which the
// match_memory limit failure names, sets the bound: a file that matches
// 200,000 times passes under the default and fails under 1MiB, naming the
// setting. A bound under 1MiB is a usage error.
func TestScanMatchMemorySetting(t *testing.T) {
	dir := t.TempDir()
	rulesPath := testkit.WriteFile(t, dir, "m.yara", "rule many { strings: $a = \"ab\" condition: #a > 0 }\n")
	target := testkit.WriteFile(t, dir, "many.txt", strings.Repeat("ab", 200_000))
	if code, out, errOut := runCLI(t, nil, "scan", "--rules", rulesPath, "--format", "json", target); code != 0 || strings.Contains(out, "match_memory") {
		t.Fatalf("default bound: exit %d, out %.300s, stderr %q", code, out, errOut)
	}
	code, out, _ := runCLI(t, map[string]string{"DRAGONFLY_MAX_MATCH_MEMORY": "1MiB"}, "scan", "--rules", rulesPath, "--format", "json", target)
	if code != 3 || !strings.Contains(out, "exceeds limit DRAGONFLY_MAX_MATCH_MEMORY (1048576 bytes)") {
		t.Fatalf("1MiB: exit %d, out %.500s", code, out)
	}
	if code, _, errOut := runCLI(t, nil, "scan", "--rules", rulesPath, "--max-match-memory", "64", target); code != 2 || !strings.Contains(errOut, "--max-match-memory=64: at least 1048576") {
		t.Fatalf("64 bytes: exit %d, stderr %q", code, errOut)
	}
}

func TestScanDirectoryAndSARIF(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pkg"), 0o755)
	os.WriteFile(filepath.Join(dir, "pkg", "x.py"), []byte(`exec(base64.b64decode("eA=="))`), 0o644)
	code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "sarif", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatal(err)
	}
	r := log.Runs[0]
	if log.Version != "2.1.0" || len(r.Results) != 1 || r.Results[0].RuleID != "demo_exec_base64" || r.Results[0].Level != "error" {
		t.Fatalf("sarif = %s", out)
	}
	if uri := r.Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI; !strings.HasSuffix(uri, "/pkg/x.py") {
		t.Fatalf("uri %q", uri)
	}
	if len(r.Tool.Driver.Rules) != 1 || r.Tool.Driver.Rules[0].ID != "demo_exec_base64" {
		t.Fatalf("driver rules %+v", r.Tool.Driver.Rules)
	}
}

func TestScanDemoTable(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "scan", "--demo", "--demo-rules", "--format", "table")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "TARGET") || !strings.Contains(out, "reqeusts-2.31.0.tar.gz") || !strings.Contains(out, "demo_exec_base64,demo_setup_download") {
		t.Fatalf("table = %s", out)
	}
}

func TestScanJSONCountsEveryFile(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pkg", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "pkg", "a.py"), []byte("x = 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "pkg", "sub", "b.py"), []byte(`exec(base64.b64decode("eA=="))`), 0o644)
	os.WriteFile(filepath.Join(dir, "pkg", "empty.txt"), nil, 0o644)
	code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Files        []any `json:"files"`
		FilesScanned int   `json:"files_scanned"`
		BytesScanned int64 `json:"bytes_scanned"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	// Three files scanned (one matched), 6 + 30 + 0 bytes.
	if got.FilesScanned != 3 || got.BytesScanned != 36 || len(got.Files) != 1 {
		t.Fatalf("files_scanned %d, bytes_scanned %d, matched files %d; want 3, 36, 1: %s", got.FilesScanned, got.BytesScanned, len(got.Files), out)
	}
}

// TestScanRulesRequired: scan names its rules explicitly; --demo says
// nothing about them.
func TestScanRulesRequired(t *testing.T) {
	dir := writeDemo(t)
	target := filepath.Join(dir, "reqeusts-2.31.0.tar.gz")
	for _, args := range [][]string{{"scan", target}, {"scan", "--demo"}, {"scan", "--demo", "--format", "json"}} {
		code, out, errOut := runCLI(t, nil, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "no rules: give --rules PATH") ||
			!strings.Contains(errOut, "--rules-from-api") || !strings.Contains(errOut, "--demo-rules") {
			t.Errorf("%v: exit %d stdout %q stderr %q", args, code, out, errOut)
		}
	}
	code, _, errOut := runCLI(t, map[string]string{"DRAGONFLY_RULES": "/some/rules"}, "scan", "--demo-rules", target)
	if code != 2 || !strings.Contains(errOut, "one rule source only, got --rules (env DRAGONFLY_RULES), --demo-rules (flag --demo-rules)") {
		t.Errorf("two sources: exit %d stderr %q", code, errOut)
	}
	// --rules-from-api=false is no choice.
	code, _, errOut = runCLI(t, nil, "scan", "--rules-from-api=false", "--demo-rules", "--format", "json", target)
	if code != 0 {
		t.Errorf("exit %d stderr %q", code, errOut)
	}
	// The variable works like the flag, and standard error names the set.
	code, out, errOut := runCLI(t, map[string]string{"DRAGONFLY_DEMO_RULES": "true", "DRAGONFLY_FORMAT": "json"}, "scan", "--demo")
	if code != 0 || !strings.HasPrefix(out, "{") {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
	}
	demoSet := rules.Set{Sources: demo.Rules()}
	if want := "rules from the built-in demo rules: hash " + rules.ContentHash(demoSet.Sources) + ", "; !strings.Contains(errOut, want) || !regexp.MustCompile(`, \d+ rules\n`).MatchString(errOut) {
		t.Errorf("stderr %q lacks %q and a rule count", errOut, want)
	}
	// A rules file is named as the source.
	rulesFile := filepath.Join(t.TempDir(), "one.yara")
	os.WriteFile(rulesFile, []byte(`rule one_rule { meta: weight = 2 strings: $a = "exec(" condition: $a }`), 0o644)
	code, _, errOut = runCLI(t, nil, "scan", target, "--rules", rulesFile, "--format", "json")
	if code != 0 || !strings.Contains(errOut, "rules from "+rulesFile+": hash ") || !strings.Contains(errOut, ", 1 rule\n") {
		t.Errorf("exit %d stderr %q", code, errOut)
	}
}

// fakeRulesAPI serves GET /rules like the Dragonfly API behind Cloudflare
// Access: the service token is required.
type fakeRulesAPI struct {
	srv    *httptest.Server
	status atomic.Int32 // 0: serve the rules
	hash   atomic.Value // string
	calls  atomic.Int32
}

func newFakeRulesAPI(t *testing.T, cfID, cfSecret string) *fakeRulesAPI {
	f := &fakeRulesAPI{}
	f.hash.Store("0123abcd")
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		if r.Header.Get("CF-Access-Client-Id") != cfID || r.Header.Get("CF-Access-Client-Secret") != cfSecret || r.Header.Get("Authorization") != "" {
			http.Redirect(w, r, "https://login.example/cdn-cgi/access/login", http.StatusFound)
			return
		}
		if st := f.status.Load(); st != 0 {
			http.Error(w, `{"detail":"trouble"}`, int(st))
			return
		}
		if r.Method != http.MethodGet || r.URL.Path != "/rules" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"hash":  f.hash.Load().(string),
			"rules": map[string]string{"api": `rule api_rule { meta: weight = 3 strings: $a = "evil_marker" condition: $a }`},
		})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func runScanEnv(t *testing.T, e *cli.Env, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e.Stdout, e.Stderr, e.Stdin = &stdout, &stderr, strings.NewReader("")
	code := run(context.Background(), e, args)
	return code, stdout.String(), stderr.String()
}

// TestScanRulesFromAPI: the API's rules with the coordinator's credentials
// (here the 2024-25 client's Cloudflare token in DRAGONFLY_CLIENT_ID/SECRET),
// cached by hash, used from the cache only when the API is unreachable.
func TestScanRulesFromAPI(t *testing.T) {
	api := newFakeRulesAPI(t, "id.access", "s3cret")
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "x.py"), []byte("evil_marker()\n"), 0o644)
	cache := t.TempDir()
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	vars := map[string]string{"DRAGONFLY_BASE_URL": api.srv.URL, "DRAGONFLY_CLIENT_ID": "id.access", "DRAGONFLY_CLIENT_SECRET": "s3cret"}
	e := &cli.Env{Getenv: clitest.Env(vars), Dir: t.TempDir(), CacheDir: func() (string, error) { return cache, nil }, Now: func() time.Time { return now }}
	scanArgs := []string{"scan", "--rules-from-api", "--format", "json", target}

	code, out, errOut := runScanEnv(t, e, scanArgs...)
	if code != 0 || !strings.Contains(out, `"score":3`) {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
	}
	want := "rules from the Dragonfly API at " + api.srv.URL + " (credentials: cloudflare access service token (from DRAGONFLY_CLIENT_ID and DRAGONFLY_CLIENT_SECRET, as the 2024-25 client sent it)): hash 0123abcd, 1 rule"
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr %q lacks %q", errOut, want)
	}
	cached := filepath.Join(cache, "dragonfly-fleet", "rules", "0123abcd.json")
	fi, err := os.Stat(cached)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v %v", fi, err)
	}
	// The cached file is a GET /rules document: --rules reads it.
	if code, _, errOut := runCLI(t, nil, "scan", "--rules", cached, "--format", "json", target); code != 0 {
		t.Errorf("--rules on the cached file: exit %d %s", code, errOut)
	}

	// The API is down (503 after the retries): the cached set, with a warning.
	api.status.Store(http.StatusServiceUnavailable)
	now = now.Add(3 * time.Hour)
	code, out, errOut = runScanEnv(t, e, scanArgs...)
	if code != 0 || !strings.Contains(out, `"score":3`) {
		t.Fatalf("API down: exit %d stdout %q stderr %q", code, out, errOut)
	}
	for _, w := range []string{"warning: the Dragonfly API is unreachable", "503", "using the cached rule set 0123abcd fetched 3h00m ago (" + cached + ")",
		"rules from the cache of the Dragonfly API at " + api.srv.URL + " (fetched 3h00m ago): hash 0123abcd, 1 rule"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("API down: stderr %q lacks %q", errOut, w)
		}
	}

	// Refused credentials are no outage: no fallback.
	api.status.Store(0)
	bad := map[string]string{"DRAGONFLY_BASE_URL": api.srv.URL, "DRAGONFLY_CF_ACCESS_CLIENT_ID": "id.access", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET": "wrong"}
	e.Getenv = clitest.Env(bad)
	code, out, errOut = runScanEnv(t, e, scanArgs...)
	if code != 2 || out != "" || !strings.Contains(errOut, "redirected") || strings.Contains(errOut, "cached") || strings.Contains(errOut, "wrong") {
		t.Errorf("bad credentials: exit %d stdout %q stderr %q", code, out, errOut)
	}
	api.status.Store(http.StatusUnauthorized)
	e.Getenv = clitest.Env(vars)
	if code, _, errOut := runScanEnv(t, e, scanArgs...); code != 2 || !strings.Contains(errOut, "401") || strings.Contains(errOut, "cached rule set") {
		t.Errorf("401: exit %d stderr %q", code, errOut)
	}

	// Nothing cached from another API: an error naming the cache.
	other := httptest.NewServer(http.NotFoundHandler())
	other.Close()
	e.Getenv = clitest.Env(map[string]string{"DRAGONFLY_BASE_URL": other.URL})
	code, _, errOut = runScanEnv(t, e, scanArgs...)
	if code != 2 || !strings.Contains(errOut, "is unreachable") || !strings.Contains(errOut, "no rule set from "+other.URL+" is cached in "+filepath.Join(cache, "dragonfly-fleet", "rules")) {
		t.Errorf("other API down: exit %d stderr %q", code, errOut)
	}

	// A hash that is no safe file name is used but not cached.
	api.status.Store(0)
	api.hash.Store("../../escape")
	e.Getenv = clitest.Env(vars)
	code, _, errOut = runScanEnv(t, e, scanArgs...)
	if code != 0 || !strings.Contains(errOut, `warning: rule set not cached: hash "../../escape" is not a safe file name`) {
		t.Errorf("hostile hash: exit %d stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(cache, "escape.json")); err == nil {
		t.Error("a file escaped the cache directory")
	}
}

func TestScanFormatVariable(t *testing.T) {
	dir := writeDemo(t)
	target := filepath.Join(dir, "reqeusts-2.31.0.tar.gz")
	code, out, errOut := runCLI(t, map[string]string{"DRAGONFLY_FORMAT": "table"}, "scan", "--demo-rules", target)
	if code != 0 || !strings.HasPrefix(out, "TARGET") {
		t.Errorf("DRAGONFLY_FORMAT: exit %d stdout %q stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, map[string]string{"DRAGONFLY_SCAN_FORMAT": "table"}, "scan", "--demo-rules", target)
	if code != 0 || !strings.HasPrefix(out, "TARGET") || !strings.Contains(errOut, "warning: DRAGONFLY_SCAN_FORMAT is deprecated: use DRAGONFLY_FORMAT") {
		t.Errorf("DRAGONFLY_SCAN_FORMAT: exit %d stdout %q stderr %q", code, out, errOut)
	}
	// Flags after the target.
	code, out, _ = runCLI(t, nil, "scan", target, "--demo-rules", "--format", "table")
	if code != 0 || !strings.HasPrefix(out, "TARGET") {
		t.Errorf("flags after the target: exit %d stdout %q", code, out)
	}
}

// TestScanSymlinkedDirectory: a directory target named through a symbolic
// link (no trailing slash: `ln -s /src/pkg-1.0 pkg; dragonfly scan pkg`) is
// the directory it names. filepath.WalkDir does not follow a root that is a
// link, so the walk saw nothing and the target read clean, exit 0, with
// none of its files scanned.
func TestScanSymlinkedDirectory(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.MkdirAll(filepath.Join(real, "pkg"), 0o755)
	os.WriteFile(filepath.Join(real, "pkg", "x.py"), []byte(`exec(base64.b64decode("eA=="))`), 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "--fail-score", "1", link)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (the file under the link matches): %s %s", code, out, errOut)
	}
	var res struct {
		Score        int64  `json:"score"`
		FilesScanned int    `json:"files_scanned"`
		Top          string `json:"most_malicious_file"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.FilesScanned != 1 || res.Score == 0 || res.Top != "pkg/x.py" {
		t.Fatalf("result %s: want the one file under the link scanned", out)
	}
}

// TestScanEmptyTarget: an empty target (`dragonfly scan "$PKG"` with PKG
// unset) names no file: it could not be scanned (exit 3), where it read as
// a clean, empty file (exit 0).
func TestScanEmptyTarget(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "")
	if code != 3 || !strings.Contains(out, `"error"`) {
		t.Fatalf("exit %d, want 3 with an error: %s %s", code, out, errOut)
	}
}

// TestScanNotesArchivesInADirectory: a directory target is an unpacked
// distribution, so an archive in it is scanned as its bytes (as the fleet
// scans an archive inside a package): a directory of downloaded wheels
// reads clean. Standard error says so, and how to scan what they hold.
func TestScanNotesArchivesInADirectory(t *testing.T) {
	dir := t.TempDir()
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	fw, err := zw.Create("evil/x.py")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte(`exec(base64.b64decode("eA=="))`))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "evil-1.0-py3-none-any.whl"), zb.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "README.txt"), []byte("notes"), 0o644)
	code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "1 archive scanned as bytes, not unpacked") || !strings.Contains(errOut, "DIR/*") {
		t.Errorf("standard error %q, want the note on the archive scanned as bytes", errOut)
	}
	// Given as a target, the wheel is unpacked and its file matches.
	if code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "--fail-score", "1", filepath.Join(dir, "evil-1.0-py3-none-any.whl")); code != 1 || strings.Contains(errOut, "note:") {
		t.Errorf("the wheel as a target: exit %d, want 1 and no note: %s %s", code, out, errOut)
	}
	os.Remove(filepath.Join(dir, "evil-1.0-py3-none-any.whl"))
	if _, _, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", dir); strings.Contains(errOut, "note:") {
		t.Errorf("a directory without archives: %q", errOut)
	}
}

// TestScanRefusesAnEmptyRuleSet: rules that compile to no rule it can
// report (a file of comments, private rules only) would read every target
// clean: exit 2.
func TestScanRefusesAnEmptyRuleSet(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yara"), []byte("// rules to come\n"), 0o644)
	code, out, errOut := runCLI(t, nil, "scan", "--rules", dir, "--format", "json", dir)
	if code != 2 || !strings.Contains(errOut, "holds no rule") || out != "" {
		t.Fatalf("exit %d, want 2 and the reason: %q %q", code, out, errOut)
	}
	// Private rules only: YARA reports none of their matches.
	os.WriteFile(filepath.Join(dir, "a.yara"), []byte("private rule p { condition: true }\n"), 0o644)
	if code, out, errOut := runCLI(t, nil, "scan", "--rules", dir, "--format", "json", dir); code != 2 || !strings.Contains(errOut, "holds no rule") {
		t.Fatalf("private rules only: exit %d, want 2: %q %q", code, out, errOut)
	}
	// A global rule is reported like any other: accepted.
	os.WriteFile(filepath.Join(dir, "a.yara"), []byte("global rule g { condition: true }\n"), 0o644)
	if code, out, errOut := runCLI(t, nil, "scan", "--rules", dir, "--format", "json", dir); code != 0 {
		t.Fatalf("a global rule: exit %d, want 0: %q %q", code, out, errOut)
	}
}

// failingWriter refuses every write, as a closed pipe or a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestScanExitStatuses: a report that cannot be written is exit 3, not 1
// (which says a target scored at --fail-score or more); a negative
// --fail-score is a usage error, not "never".
func TestScanExitStatuses(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x.py"), []byte("print(1)\n"), 0o644)
	var stderr bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: failingWriter{}, Stderr: &stderr, Getenv: clitest.Env(nil), Dir: t.TempDir()}
	if code := run(context.Background(), e, []string{"scan", "--demo-rules", "--format", "json", dir}); code != 3 || !strings.Contains(stderr.String(), "broken pipe") {
		t.Errorf("report not written: exit %d, want 3: %q", code, stderr.String())
	}
	if code, _, errOut := runCLI(t, nil, "scan", "--demo-rules", "--fail-score", "-1", dir); code != 2 || !strings.Contains(errOut, "--fail-score=-1: want 0") {
		t.Errorf("--fail-score -1: exit %d, want 2: %q", code, errOut)
	}
}

// TestScanNotesSkippedSymlinks: symbolic links under a directory target are
// skipped, not followed (as in an archive): a directory of links would read
// clean, so standard error says how many were skipped.
func TestScanNotesSkippedSymlinks(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "x.py")
	os.WriteFile(outside, []byte(`exec(base64.b64decode("eA=="))`), 0o644)
	pkg := filepath.Join(dir, "pkg")
	os.MkdirAll(pkg, 0o755)
	if err := os.Symlink(outside, filepath.Join(pkg, "x.py")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", dir)
	if code != 0 || !strings.Contains(errOut, "1 symbolic link skipped, not followed") {
		t.Fatalf("exit %d, stderr %q, want the note: %s", code, errOut, out)
	}
}

// TestScanWarnsOfGlobalRules: a global rule that is false makes every rule
// of the set match nothing (one namespace): the target reads clean, as the
// reference client would read it, but standard error says why it may.
func TestScanWarnsOfGlobalRules(t *testing.T) {
	dir, target := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yara"), []byte("global rule off { condition: false }\nrule hit { meta: weight = 5 strings: $a = \"EVILMARK\" condition: $a }\n"), 0o644)
	os.WriteFile(filepath.Join(target, "setup.py"), []byte("EVILMARK\n"), 0o644)
	code, out, errOut := runCLI(t, nil, "scan", "--rules", dir, "--format", "json", target)
	if code != 0 || !strings.Contains(out, `"score":0`) {
		t.Fatalf("exit %d, want 0 and a clean result: %q %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "warning: the rule set holds 1 global rule (off)") || !strings.Contains(errOut, "every release read clean") {
		t.Fatalf("standard error %q: want a warning naming the global rule", errOut)
	}
	os.WriteFile(filepath.Join(dir, "a.yara"), []byte("rule hit { meta: weight = 5 strings: $a = \"EVILMARK\" condition: $a }\n"), 0o644)
	if code, out, errOut := runCLI(t, nil, "scan", "--rules", dir, "--format", "json", target); code != 0 || strings.Contains(errOut, "global") || !strings.Contains(out, `"score":5`) {
		t.Fatalf("no global rule: exit %d: %q %q", code, out, errOut)
	}
}
