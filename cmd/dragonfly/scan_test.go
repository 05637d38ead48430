package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
)

func runScanCmd(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: envMap(vars), dir: t.TempDir()}
	code := run(context.Background(), e, args)
	return code, stdout.String(), stderr.String()
}

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
	code, out, errOut := runScanCmd(t, nil, "scan", "--demo-rules", "--format", "json",
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

	if code, _, _ := runScanCmd(t, nil, "scan", "--demo-rules", "--format", "json", "--fail-score", "9", bad); code != 0 {
		t.Fatalf("score 8 < fail-score 9: exit %d, want 0", code)
	}
	if code, _, _ := runScanCmd(t, nil, "scan", "--demo-rules", "--format", "json", "--fail-score", "8", bad); code != 1 {
		t.Fatalf("score 8 >= fail-score 8: exit %d, want 1", code)
	}
	code, out, _ := runScanCmd(t, nil, "scan", "--demo-rules", "--format", "json", "--fail-score", "1", bad, corrupt)
	if code != 3 {
		t.Fatalf("unscannable target: exit %d, want 3 (wins over 1)", code)
	}
	if !strings.Contains(out, `"error":"`) {
		t.Fatalf("no error field for the corrupt target: %s", out)
	}
	if code, _, _ := runScanCmd(t, nil, "scan", "--demo-rules", "--format", "json", filepath.Join(dir, "missing.whl")); code != 3 {
		t.Fatalf("missing file: exit %d, want 3", code)
	}
	if code, _, _ := runScanCmd(t, nil, "scan", "--demo-rules", "--format", "xml", bad); code != 2 {
		t.Fatalf("bad format: exit %d, want 2", code)
	}
	badRules := filepath.Join(t.TempDir(), "bad.yara")
	os.WriteFile(badRules, []byte("rule x { condition: nope }"), 0o644)
	code, _, errOut := runScanCmd(t, nil, "scan", "--rules", badRules, bad)
	if code != 2 || !strings.Contains(errOut, "bad.yara:1") {
		t.Fatalf("bad rules: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := runScanCmd(t, nil, "scan"); code != 2 {
		t.Fatalf("no targets: exit %d, want 2", code)
	}
}

func TestScanLimitsFromEnv(t *testing.T) {
	dir := writeDemo(t)
	target := filepath.Join(dir, "reqeusts-2.31.0.tar.gz")
	code, out, _ := runScanCmd(t, map[string]string{"DRAGONFLY_MAX_FILE_SIZE": "100"}, "scan", "--demo-rules", "--format", "json", target)
	if code != 3 || !strings.Contains(out, "DRAGONFLY_MAX_FILE_SIZE") {
		t.Fatalf("exit %d out %s", code, out)
	}
	code, out, _ = runScanCmd(t, map[string]string{"DRAGONFLY_MAX_SIZE": "100"}, "scan", "--demo-rules", "--format", "json", target)
	if code != 3 || !strings.Contains(out, "DRAGONFLY_MAX_SCAN_SIZE") {
		t.Fatalf("alias DRAGONFLY_MAX_SIZE: exit %d out %s", code, out)
	}
}

func TestScanDirectoryAndSARIF(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pkg"), 0o755)
	os.WriteFile(filepath.Join(dir, "pkg", "x.py"), []byte(`exec(base64.b64decode("eA=="))`), 0o644)
	code, out, errOut := runScanCmd(t, nil, "scan", "--demo-rules", "--format", "sarif", dir)
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
	code, out, errOut := runScanCmd(t, nil, "scan", "--demo", "--demo-rules", "--format", "table")
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
	code, out, errOut := runScanCmd(t, nil, "scan", "--demo-rules", "--format", "json", dir)
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
