package e2e

import (
	"cmp"
	"encoding/json"
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

	devserver "github.com/dragonfly-fleet/fleet/devapi"
)

// TestWorkerKilledMidRun: devapi + coordinator + 3 workers, 300 jobs; one
// worker is killed with SIGKILL mid-run and restarted. Every job is reported
// exactly once and nothing is refused.
func TestWorkerKilledMidRun(t *testing.T) {
	const releases = 300
	d, _ := serveReleases(t, writeReleases(t, releases, 6, 40<<10), e2eRules)
	_, grpcAddr, _ := startCoordinator(t, d, nil)
	var workers []*proc
	for i := range 3 {
		workers = append(workers, startWorker(t, d, fmt.Sprintf("w%d", i), grpcAddr, nil))
	}
	eventually(t, 60*time.Second, "a third of the jobs to be reported", func() bool {
		return d.stats(t).ReportsAccepted >= releases/3
	})
	workers[1].cmd.Process.Signal(syscall.SIGKILL)
	workers[1].wait(10 * time.Second)
	killedAt := d.stats(t).ReportsAccepted
	startWorker(t, d, "w1-restarted", grpcAddr, nil)
	eventually(t, 120*time.Second, "every job to be reported", func() bool { return d.allDone(t, releases) })
	ok := d.exactlyOnce(t, releases)
	for _, r := range ok {
		// Every generated release holds both tokens: 5 + 1.
		if r.Score == nil || *r.Score != 6 || !slices.Equal(r.RulesMatched, []string{"e2e_exec_b64", "e2e_socket"}) {
			t.Fatalf("report %+v", r)
		}
	}
	t.Logf("300 jobs, worker killed after %d reports: %d accepted, 0 refused", killedAt, len(ok))
}

// TestReleaseWith40Distributions: one release with 40 wheels is spread over
// all three workers and scored exactly as `dragonfly scan` scores its files.
func TestReleaseWith40Distributions(t *testing.T) {
	pkgs := t.TempDir()
	for i := range 40 {
		tag := fmt.Sprintf("cp3%d-cp3%d-manylinux_%d_x86_64", i%10, i%10, i)
		data := makeSdist(t, "bigrel", "2.0", 5+i%4, 30<<10, uint64(1000+i))
		// A wheel is a zip; the engine detects the format from the bytes, so
		// a gzip tar named .whl exercises exactly the same scoring.
		writeFile(t, filepath.Join(pkgs, fmt.Sprintf("bigrel-2.0-%s.whl", tag)), data)
	}
	// One distinct distribution carries an extra high-weight token.
	writeFile(t, filepath.Join(pkgs, "bigrel-2.0.tar.gz"), makeSdist(t, "bigrel", "2.0", 3, 10<<10, 7))
	d, rules := serveReleases(t, pkgs, e2eRules+`rule e2e_only_m2 { meta: weight = 20 strings: $a = "bigrel/m2.py" condition: $a }`)
	// The API answers 503 until the three workers are connected (a window
	// of 1 s, re-armed at every look so that its Retry-After stays short),
	// so no rules and no lease until then: the release is split over all
	// three, rather than taken by the first ones alone.
	d.setFaults(t, `{"unavailable_seconds": 1}`)
	coord, grpcAddr, httpAddr := startCoordinator(t, d, nil)
	for i := range 3 {
		startWorker(t, d, fmt.Sprintf("w%d", i), grpcAddr, nil)
	}
	eventually(t, 60*time.Second, "three workers connected", func() bool {
		if metric(httpAddr, "dragonfly_workers_connected") == 3 {
			return true
		}
		d.setFaults(t, `{"unavailable_seconds": 1}`)
		return false
	})
	eventually(t, 60*time.Second, "the release to be reported", func() bool {
		return d.stats(t).ReportsAccepted == 1
	})
	got := d.exactlyOnce(t, 1)[0]

	// The same files through `dragonfly scan`.
	entries, err := os.ReadDir(pkgs)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"scan", "--format", "json", "--rules", rules}
	for _, e := range entries {
		args = append(args, filepath.Join(pkgs, e.Name()))
	}
	out, err := exec.Command(binary, args...).Output()
	if err != nil {
		t.Fatalf("scan: %v: %s", err, out)
	}
	var best struct {
		score int64
		top   string
		name  string
	}
	best.score = -1 << 62
	rulesUnion := map[string]bool{}
	// The API lists distributions in its own order; ties between equal
	// scores go to the first, so compute the expectation in that order.
	type line struct {
		Target       string   `json:"target"`
		Score        int64    `json:"score"`
		RulesMatched []string `json:"rules_matched"`
		Top          *string  `json:"most_malicious_file"`
	}
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var x line
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, x)
	}
	order := leaseOrder(t, d, "bigrel", "2.0")
	slices.SortStableFunc(lines, func(a, b line) int {
		return cmp.Compare(order[filepath.Base(a.Target)], order[filepath.Base(b.Target)])
	})
	for _, x := range lines {
		for _, r := range x.RulesMatched {
			rulesUnion[r] = true
		}
		if x.Score > best.score {
			best.score, best.name = x.Score, filepath.Base(x.Target)
			best.top = ""
			if x.Top != nil {
				best.top = *x.Top
			}
		}
	}
	want := slices.Sorted(maps.Keys(rulesUnion))
	if got.Score == nil || int64(*got.Score) != best.score || !slices.Equal(got.RulesMatched, want) {
		t.Fatalf("fleet: score %v rules %v; scan: score %d rules %v", got.Score, got.RulesMatched, best.score, want)
	}
	if got.InspectorURL == nil || !strings.HasSuffix(*got.InspectorURL, "/"+best.name+"/"+best.top) {
		t.Fatalf("inspector %v, want it to end in /%s/%s", got.InspectorURL, best.name, best.top)
	}
	// The coordinator logged which workers returned results for the job.
	for _, w := range []string{"w0", "w1", "w2"} {
		if !coord.logged(`"msg":"job finished"`, `"job":"bigrel"`, w) {
			t.Errorf("worker %s took no part in the 41-distribution release", w)
		}
	}
}

// leaseOrder asks devapi for the release's distribution order via its
// lookup endpoint (the order /jobs hands them out in).
func leaseOrder(t *testing.T, d *devapi, name, version string) map[string]int {
	t.Helper()
	var recs []struct {
		Distributions []string `json:"distributions"`
	}
	if err := d.getJSON(fmt.Sprintf("/package?name=%s&version=%s", name, version), &recs); err != nil {
		t.Fatal(err)
	}
	order := map[string]int{}
	if len(recs) == 0 {
		t.Fatalf("GET /package: no scan of %s %s", name, version)
	}
	for i, u := range recs[0].Distributions {
		order[filepath.Base(u)] = i
	}
	return order
}

// TestRulesChangeMidRun: after the rules change, later reports carry the new
// commit.
func TestRulesChangeMidRun(t *testing.T) {
	const releases = 120
	d, rules := serveReleases(t, writeReleases(t, releases, 4, 40<<10), e2eRules)
	_, grpcAddr, _ := startCoordinator(t, d, nil)
	startWorker(t, d, "w0", grpcAddr, nil)
	eventually(t, 60*time.Second, "some reports", func() bool { return d.stats(t).ReportsAccepted >= 20 })
	before := d.rulesCommit(t)
	writeRules(t, rules, "extra", `rule e2e_new_rule { meta: weight = 50 strings: $a = "value_" condition: $a }`)
	d.post(t, "/update-rules/", "")
	after := d.rulesCommit(t)
	if after == before {
		t.Fatal("rules hash did not change")
	}
	switchedAt := d.stats(t).ReportsAccepted
	eventually(t, 120*time.Second, "every job", func() bool { return d.allDone(t, releases) })
	ok := d.exactlyOnce(t, releases)
	slices.SortFunc(ok, func(a, b devserver.ReportRecord) int { return cmp.Compare(a.Seq, b.Seq) })
	newCount := 0
	for i, r := range ok {
		if r.Score == nil {
			t.Errorf("report without a score: %+v", r)
			continue
		}
		switch r.Commit {
		case after:
			newCount++
			if *r.Score != 56 {
				t.Errorf("report under the new rules scored %d, want 56: %+v", *r.Score, r)
			}
		case before:
			if int64(i) > switchedAt+30 {
				t.Errorf("report %d still under the old rules long after the switch", i)
			}
			if *r.Score != 6 {
				t.Errorf("report under the old rules scored %d: %+v", *r.Score, r)
			}
		default:
			t.Errorf("report with unknown commit %q", r.Commit)
		}
	}
	if last := ok[len(ok)-1]; last.Commit != after {
		t.Fatalf("last report commit %s, want the new %s", last.Commit, after)
	}
	t.Logf("rules switched after %d reports; %d of %d reports carry the new commit", switchedAt, newCount, releases)
}

// TestWrongTokenIsRefused: a worker with a wrong token never joins: the
// coordinator refuses it (Unauthenticated) without logging the token, and
// the worker gives up after 3 refused sessions, exiting non-zero with an
// ERROR line that says why.
func TestWrongTokenIsRefused(t *testing.T) {
	d := startDevAPI(t, "--demo")
	coord, grpcAddr, httpAddr := startCoordinator(t, d, nil)
	const wrongToken = "wrong-token-Xq81"
	bad := startWorker(t, d, "intruder", grpcAddr, map[string]string{"DRAGONFLY_FLEET_TOKEN": wrongToken})
	if code := bad.wait(60 * time.Second); code == 0 {
		t.Fatal("worker with a wrong token exited 0")
	}
	if !bad.logged(`"level":"ERROR"`, "the coordinator refused this worker", `"tries":3`, "Unauthenticated") {
		t.Fatalf("worker log has no ERROR line for the refusal:\n%s", tail(bad.log.String(), 20))
	}
	if !coord.logged("worker refused", "invalid fleet token") {
		t.Fatal("coordinator did not log the refusal")
	}
	if strings.Contains(coord.log.String(), wrongToken) {
		t.Fatal("coordinator logged the presented token")
	}
	var st struct {
		Workers []any `json:"workers"`
	}
	if err := getJSON("http://"+httpAddr+"/status.json", &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	if len(st.Workers) != 0 {
		t.Fatalf("refused worker listed: %+v", st.Workers)
	}
	if n := metric(httpAddr, "dragonfly_sessions_started_total"); n != 0 {
		t.Fatalf("%v sessions started for a refused worker", n)
	}
	if d.stats(t).Leases != 0 {
		t.Fatal("jobs leased for a fleet with no accepted worker")
	}
}

// TestWorkerSIGTERMMidTask: a worker stopped while it scans still gets its
// job reported, exactly once.
func TestWorkerSIGTERMMidTask(t *testing.T) {
	pkgs := t.TempDir()
	// Big enough to take a while under the slow rule below.
	writeFile(t, filepath.Join(pkgs, "slowpkg-1.0.tar.gz"), makeSdist(t, "slowpkg", "1.0", 4, 4<<20, 5))
	writeFile(t, filepath.Join(pkgs, "other-1.0.tar.gz"), makeSdist(t, "other", "1.0", 2, 10<<10, 6))
	d, _ := serveReleases(t, pkgs, e2eRules+slowRule)
	_, grpcAddr, _ := startCoordinator(t, d, nil)
	w := startWorker(t, d, "w0", grpcAddr, map[string]string{"DRAGONFLY_THREADS": "1"})
	// The slow job's task started on the worker (assigned is not enough:
	// the worker may not have taken it up yet, or be on the other job).
	eventually(t, 60*time.Second, "the worker to run the slow task", func() bool {
		return w.logged(`"msg":"distribution started"`, `"job":"slowpkg"`)
	})
	w.signal(syscall.SIGTERM)
	if code := w.wait(60 * time.Second); code != 0 {
		t.Fatalf("worker exit %d after SIGTERM", code)
	}
	if !w.logged("stopping: draining", `"running":1`) {
		t.Fatal("worker was not stopped mid-task")
	}
	// A second worker picks up whatever was handed back.
	startWorker(t, d, "w1", grpcAddr, nil)
	eventually(t, 120*time.Second, "both jobs", func() bool { return d.allDone(t, 2) })
	d.exactlyOnce(t, 2)
}
