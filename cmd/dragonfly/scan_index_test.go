package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/internal/scanreport"
)

// fakeIndex is a PEP 691 package index serving demo releases, with one file
// whose published sha256 is wrong.
func fakeIndex(t *testing.T) *httptest.Server {
	t.Helper()
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, f := range files {
		byName[f.Name] = f.Data
	}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := strings.CutPrefix(r.URL.Path, "/files/"); ok {
			data, ok := byName[name]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Write(data)
			return
		}
		project := strings.Trim(strings.TrimPrefix(r.URL.Path, "/simple/"), "/")
		type file struct {
			Filename string            `json:"filename"`
			URL      string            `json:"url"`
			Hashes   map[string]string `json:"hashes"`
		}
		var out []file
		for name, data := range byName {
			if !strings.HasPrefix(name, project+"-") {
				continue
			}
			sum := sha256.Sum256(data)
			digest := hex.EncodeToString(sum[:])
			if project == "reqeusts" {
				digest = strings.Repeat("0", 64) // published wrong
			}
			out = append(out, file{Filename: name, URL: srv.URL + "/files/" + name, Hashes: map[string]string{"sha256": digest}})
		}
		if len(out) == 0 {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.pypi.simple.v1+json")
		json.NewEncoder(w).Encode(map[string]any{"meta": map[string]string{"api-version": "1.1"}, "name": project, "files": out})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestScanRelease: pypi:NAME scans every distribution of the release from
// the index, verified against its sha256, and reports it like the fleet
// (score the maximum over distributions, inspector link to the top file of
// the top distribution); a file whose published digest is wrong fails its
// release with exit 3.
func TestScanRelease(t *testing.T) {
	idx := fakeIndex(t)
	code, out, stderr := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "--index-url", idx.URL+"/simple", "pypi:multiwheel", "pypi:reqeusts==2.31.0")
	if code != 3 {
		t.Fatalf("exit %d, want 3 (reqeusts has a wrong digest)\n%s\n%s", code, out, stderr)
	}
	var got []scanreport.JSONResult
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r scanreport.JSONResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, r)
	}
	if len(got) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(got), out)
	}
	mw := got[0]
	if mw.Target != "pypi:multiwheel==1.0.0" || mw.Error != "" {
		t.Fatalf("multiwheel: %+v", mw)
	}
	if mw.Distributions == nil || len(*mw.Distributions) != 5 {
		t.Fatalf("multiwheel distributions %+v, want 5", mw.Distributions)
	}
	var top string
	for _, d := range *mw.Distributions {
		if len(d.SHA256) != 64 || !strings.HasPrefix(d.URL, idx.URL+"/files/") {
			t.Errorf("distribution %+v", d)
		}
		if d.Score == 4 {
			top = d.Filename
		}
	}
	if mw.Score != 4 || top != "multiwheel-1.0.0-cp312-cp312-win_amd64.whl" {
		t.Fatalf("multiwheel score %d (top %q), want 4 from the win_amd64 wheel", mw.Score, top)
	}
	if mw.MostMaliciousFile == nil || *mw.MostMaliciousFile != top+"/multiwheel/_install.py" {
		t.Fatalf("most malicious file %v, want the path prefixed with its distribution", mw.MostMaliciousFile)
	}
	wantURL := "https://inspector.pypi.io/project/multiwheel/1.0.0/files/" + top + "/multiwheel/_install.py"
	if mw.InspectorURL == nil || *mw.InspectorURL != wantURL {
		t.Fatalf("inspector_url %v, want %s", mw.InspectorURL, wantURL)
	}
	for _, f := range mw.Files {
		if !strings.HasPrefix(f.Path, "multiwheel-1.0.0") {
			t.Errorf("file %q not prefixed with its distribution", f.Path)
		}
	}
	rq := got[1]
	if rq.Target != "pypi:reqeusts==2.31.0" || !strings.Contains(rq.Error, "sha256") || rq.Score != 0 {
		t.Fatalf("reqeusts: %+v, want a digest error", rq)
	}
}

// TestScanRequirements: -r scans every pin of a requirements file; a line
// that is not an exact pin is a usage error naming file and line.
func TestScanRequirements(t *testing.T) {
	idx := fakeIndex(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "requirements.txt")
	if err := os.WriteFile(good, []byte("# pinned\nmultiwheel==1.0.0\ntinycolors==1.2.0 ; python_version >= '3.8'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "--index-url", idx.URL+"/simple", "-r", good)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	if n := strings.Count(out, "\n"); n != 2 || !strings.Contains(out, `"target":"pypi:tinycolors==1.2.0"`) {
		t.Fatalf("%d lines: %s", n, out)
	}
	bad := filepath.Join(dir, "loose.txt")
	if err := os.WriteFile(bad, []byte("multiwheel==1.0.0\nrequests>=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, nil, "scan", "--demo-rules", "--index-url", idx.URL+"/simple", "-r", bad)
	if code != 2 || !strings.Contains(stderr, fmt.Sprintf("%s:2", bad)) {
		t.Fatalf("exit %d, stderr %q: want 2 naming %s:2", code, stderr, bad)
	}
}
