package e2e

import (
	"archive/tar"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// previousRelease is the commit of the release before this one. A
// coordinator and workers one release apart speak the same protocol version
// (PROTOCOL_VERSION_1), so they must work together: every leased job ends in
// exactly one report, with the verdict of a fleet of this release. Move it
// on at each release.
const previousRelease = "e7010a8"

// buildPreviousRelease builds the previous release's dragonfly binary from
// git (git archive into dir, then go build, without -race) and returns its
// path. It skips the test, saying why, only when the git history holding
// the release is not there (a tarball, a shallow clone): CI runs on a full
// clone, where it builds.
func buildPreviousRelease(t *testing.T) string {
	t.Helper()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("no git work tree (%v): the previous release %s cannot be built; run from a git clone", err, previousRelease)
	}
	root := strings.TrimSpace(string(top))
	if err := exec.Command("git", "-C", root, "cat-file", "-e", previousRelease+"^{commit}").Run(); err != nil {
		t.Skipf("the previous release %s is not in this clone's history (a shallow clone? git fetch --unshallow): %v", previousRelease, err)
	}
	dir := t.TempDir()
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", previousRelease)
	untar := exec.Command("tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr, untar.Stderr = &stderr, &stderr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v: %s", previousRelease, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar %s: %v: %s", previousRelease, err, stderr.String())
	}
	bin := filepath.Join(dir, "dragonfly-"+previousRelease)
	start := time.Now()
	build := exec.Command("go", "build", "-o", bin, "./cmd/dragonfly")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the previous release %s: %v\n%s", previousRelease, err, out)
	}
	t.Logf("built the previous release %s in %v", previousRelease, time.Since(start).Round(100*time.Millisecond))
	return bin
}

// compatVerdict is what a report says of a release, as compared across
// fleets (not the reason's wording, nor the rules commit).
type compatVerdict struct {
	Kind         string
	Score        string
	RulesMatched string
	InspectorURL string
}

func (v compatVerdict) String() string {
	return fmt.Sprintf("%s score=%s rules=[%s] url=%s", v.Kind, v.Score, v.RulesMatched, v.InspectorURL)
}

// compatCorpus is the packages every mix scans (besides devapi's --demo
// ones): generated sdists matching both e2e rules, and one holding a member
// path over 4,096 bytes (a worker of this release fails it).
func compatCorpus(t *testing.T) string {
	pkgs := writeReleases(t, 16, 4, 16<<10)
	long := "longpath-1.0/" + strings.Repeat("d/", 2200) + "evil.py"
	writeFile(t, filepath.Join(pkgs, "longpath-1.0.tar.gz"), testkit.GzipFast(t, testkit.Tar(t,
		testkit.TarEntry{Name: "longpath-1.0/setup.py", Body: []byte("print('hi')\n")},
		testkit.TarEntry{Name: long, Body: []byte("exec(base64.b64decode('eA=='))\n")},
	)))
	return pkgs
}

// compatMix runs one fleet (a coordinator of coordBin, workers of this
// release) over pkgs and devapi's demo packages, with a rules change and a
// worker drained by SIGTERM mid-run, and returns each release's verdict.
// Every job must be reported exactly once.
func compatMix(t *testing.T, coordBin, pkgs string) map[string]compatVerdict {
	d, rulesDir := serveReleases(t, pkgs, e2eRules, "--demo")
	releases := d.stats(t).Queue.TotalBacklog
	// Downloads take a while, so the rules change and the SIGTERM find
	// tasks in flight.
	d.setFaults(t, `{"download_latency_ms": 300}`)
	grpcAddr := freePort(t)
	coord := startCoordinatorBinary(t, coordBin, d, grpcAddr, freePort(t), nil)
	w0 := startWorker(t, d, "w0", grpcAddr, nil)
	startWorker(t, d, "w1", grpcAddr, nil)

	eventually(t, 120*time.Second, "a quarter of the jobs to be reported", func() bool {
		return d.stats(t).ReportsAccepted >= int64(releases/4)
	})
	// A rules change that changes no verdict: every worker compiles the
	// new set and the jobs leased from now on are scanned with it.
	writeRules(t, rulesDir, "zz_compat", `rule zz_compat_never { meta: weight = 3 strings: $a = "compat-never-0x5eed" condition: $a }`)
	eventually(t, 120*time.Second, "half of the jobs to be reported", func() bool {
		return d.stats(t).ReportsAccepted >= int64(releases/2)
	})
	w0.signal(syscall.SIGTERM)
	if code := w0.wait(60 * time.Second); code != 0 {
		t.Errorf("w0 drained with exit code %d", code)
	}
	startWorker(t, d, "w2", grpcAddr, nil)
	eventually(t, 180*time.Second, "every job to be reported", func() bool { return d.allDone(t, releases) })
	ok := d.exactlyOnce(t, releases)
	if coordBin == binary && coord.logged("worker session ended") {
		t.Errorf("a worker session ended in error:\n%s", grep(coord.log.String(), "worker session ended"))
	}
	out := map[string]compatVerdict{}
	for _, r := range ok {
		v := compatVerdict{Kind: r.Kind, Score: "null", RulesMatched: strings.Join(r.RulesMatched, ","), InspectorURL: "null"}
		if r.Score != nil {
			v.Score = fmt.Sprint(*r.Score)
		}
		if r.InspectorURL != nil {
			v.InspectorURL = *r.InspectorURL
		}
		out[r.Name+"@"+r.Version] = v
	}
	return out
}

// grep returns the lines of s holding part.
func grep(s, part string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, part) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPreviousReleaseCompat: a coordinator of the previous release with
// workers of this one reports every job exactly once
// with the verdicts a fleet of this release gives (same kind, score,
// rules_matched and inspector_url), across a rules change and a worker
// drained mid-run.
func TestPreviousReleaseCompat(t *testing.T) {
	old := buildPreviousRelease(t)
	pkgs := compatCorpus(t)
	start := time.Now()
	want := compatMix(t, binary, pkgs)
	t.Logf("this release alone: %d releases in %v", len(want), time.Since(start).Round(100*time.Millisecond))
	if v := want["longpath@1.0"]; v.Kind != "failure" {
		t.Fatalf("longpath@1.0: %v, want a failure", v)
	}
	start = time.Now()
	got := compatMix(t, old, pkgs)
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: %v, want %v", k, got[k], want[k])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d releases reported, want %d", len(got), len(want))
	}
	t.Logf("previous coordinator, workers of this release: %d releases in %v", len(got), time.Since(start).Round(100*time.Millisecond))
}

// TestPreviousReleaseWorkerRefused: a coordinator of this release refuses a
// worker of the previous release, saying so, and a worker of this release
// then scans every job. That release's walk gives other verdicts whatever the
// rules: it skips tar hard links (a hard-linked setup.py whose target matched
// a ".py" rule read clean: score 0 where this release reports 5), and it
// scans a member path over 4,096 bytes that is not the top file (score 1
// where this release fails the distribution). Had it been used, spot checks
// between the two releases would also quarantine whichever was the minority.
func TestPreviousReleaseWorkerRefused(t *testing.T) {
	old := buildPreviousRelease(t)
	pkgs := writeReleases(t, 4, 3, 8<<10)
	writeFile(t, filepath.Join(pkgs, "hardlink-1.0.tar.gz"), testkit.GzipFast(t, testkit.Tar(t,
		testkit.TarEntry{Name: "hardlink-1.0/data.txt", Body: []byte("exec(base64.b64decode('eA=='))\n")},
		testkit.TarEntry{Name: "hardlink-1.0/setup.py", Type: tar.TypeLink, Link: "hardlink-1.0/data.txt"},
	)))
	writeFile(t, filepath.Join(pkgs, "longpath2-1.0.tar.gz"), testkit.GzipFast(t, testkit.Tar(t,
		testkit.TarEntry{Name: "longpath2-1.0/setup.py", Body: []byte("import socket\nsocket.socket()\n")},
		testkit.TarEntry{Name: "longpath2-1.0/" + strings.Repeat("d/", 2200) + "x.txt", Body: []byte("hello\n")},
	)))
	const releases = 6
	d, _ := serveReleases(t, pkgs, e2eRules)
	coord, grpcAddr, _ := startCoordinator(t, d, nil)
	w := startWorkerBinary(t, old, d, "old", grpcAddr, map[string]string{"DRAGONFLY_ALLOWED_HOSTS": "127.0.0.1"})
	eventually(t, 60*time.Second, "the old worker to be refused (or to scan every job)", func() bool {
		return coord.logged("worker refused: it is of the previous release") || d.allDone(t, releases)
	})
	if !d.allDone(t, releases) && !w.logged("upgrade the worker") {
		eventually(t, 30*time.Second, "the old worker to log why it was refused", func() bool { return w.logged("upgrade the worker") })
	}
	startWorker(t, d, "new", grpcAddr, nil)
	eventually(t, 120*time.Second, "every job to be reported", func() bool { return d.allDone(t, releases) })
	for _, r := range d.exactlyOnce(t, releases) {
		switch r.Name {
		case "hardlink":
			if r.Score == nil || *r.Score != 5 || !slices.Equal(r.RulesMatched, []string{"e2e_exec_b64"}) {
				t.Errorf("hardlink: %s score %s rules %v, want 5 [e2e_exec_b64] (the hard-linked setup.py)", r.Kind, scoreText(r.Score), r.RulesMatched)
			}
		case "longpath2":
			if r.Kind != "failure" {
				t.Errorf("longpath2: %s score %s rules %v, want a failure (a member path over 4,096 bytes)", r.Kind, scoreText(r.Score), r.RulesMatched)
			}
		}
	}
}

// scoreText is a report's score, or "null".
func scoreText(p *int) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}
