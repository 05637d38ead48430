package scanrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// TestJobs: plain targets first in order, then releases, then the pins of
// the requirements files; malformed ones are errors naming them.
func TestJobs(t *testing.T) {
	dir := t.TempDir()
	req := filepath.Join(dir, "requirements.txt")
	if err := os.WriteFile(req, []byte("# pinned\nb==2.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	jobs, err := Jobs([]string{"pypi:a==1.0", "x.whl", "https://h.example/y.tar.gz", "pypi:c"}, []string{req})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range jobs {
		got = append(got, j.Target)
		if (j.Release != nil) != strings.HasPrefix(j.Target, "pypi:") {
			t.Errorf("%s: release %v", j.Target, j.Release)
		}
	}
	if strings.Join(got, " ") != "x.whl https://h.example/y.tar.gz pypi:a==1.0 pypi:c pypi:b==2.0" || !HasReleases(jobs) || HasReleases(jobs[:2]) {
		t.Errorf("jobs %q", got)
	}
	bad := filepath.Join(dir, "loose.txt")
	if err := os.WriteFile(bad, []byte("a==1\nrequests>=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Jobs(nil, []string{bad}); err == nil || !strings.Contains(err.Error(), bad+":2") {
		t.Errorf("loose requirements: %v", err)
	}
	if _, err := Jobs([]string{"pypi:"}, nil); err == nil {
		t.Error("pypi: without a name accepted")
	}
}

func TestIndexOrigin(t *testing.T) {
	for in, want := range map[string]string{"https://pypi.org/simple": "https://pypi.org", "http://127.0.0.1:8080/simple/": "http://127.0.0.1:8080"} {
		if got, err := IndexOrigin(in); err != nil || got != want {
			t.Errorf("%s: %q, %v", in, got, err)
		}
	}
	if _, err := IndexOrigin("/simple"); err == nil {
		t.Error("a relative index URL accepted")
	}
}

// TestRun: results come in job order with the verdict path's scores and
// reasons; a release without an index fails alone.
func TestRun(t *testing.T) {
	jobs, err := DemoJobs()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(rules.Set{Sources: demo.Rules()})
	if err != nil {
		t.Fatal(err)
	}
	n := len(jobs)
	byName := map[string][]byte{}
	for _, j := range jobs {
		byName[j.Target] = j.Data
	}
	bad := byName["reqeusts-2.31.0.tar.gz"]
	jobs = append(jobs, Job{Target: "broken.tar.gz", Data: bad[:len(bad)/2]})
	more, err := Jobs([]string{"pypi:x==1", filepath.Join(t.TempDir(), "missing.whl")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jobs = append(jobs, more...)
	results, counters := Run(t.Context(), Config{Rules: rs, Threads: 2, Limits: limit.Defaults()}, jobs)
	if len(results) != len(jobs) || counters.Scans == 0 {
		t.Fatalf("%d results for %d jobs, %d scans", len(results), len(jobs), counters.Scans)
	}
	for i, r := range results {
		if r.Target != jobs[i].Target {
			t.Errorf("result %d is %s, want %s", i, r.Target, jobs[i].Target)
		}
	}
	for _, r := range results[:n] {
		if r.Err != nil {
			t.Errorf("%s: %v", r.Target, r.Err)
		}
		if r.Target == "reqeusts-2.31.0.tar.gz" && (r.Scan.Score != 8 || r.Scan.TopFile != "reqeusts-2.31.0/reqeusts/__init__.py") {
			t.Errorf("reqeusts: score %d, top %q", r.Scan.Score, r.Scan.TopFile)
		}
	}
	if r := results[n]; r.Err == nil || !strings.Contains(r.Err.Error(), "broken.tar.gz") {
		t.Errorf("truncated archive: %v", r.Err)
	}
	if r := results[n+1]; r.Err == nil || !strings.Contains(r.Err.Error(), "missing.whl") {
		t.Errorf("missing file: %v", r.Err)
	}
	if r := results[n+2]; r.Err == nil || r.Release == nil || r.Release.Name != "x" {
		t.Errorf("release without an index: %+v", r)
	}
}
