package e2e

// Fault scenarios of issue 6 ("Faults to survive"), each with real processes.
// Every test has a short version that runs in `go test ./e2e/` and a long one
// selected with DRAGONFLY_E2E_LONG=1. Each logs one "RESULT" line with the
// numbers RELIABILITY.md records.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	devserver "github.com/dragonfly-fleet/fleet/devapi"
)

// longRun selects the long versions of the fault scenarios.
var longRun = os.Getenv("DRAGONFLY_E2E_LONG") == "1"

func pick[T any](short, long T) T {
	if longRun {
		return long
	}
	return short
}

// slowRule makes YARA walk every byte of every file (about 0.07 CPU-seconds
// per MB here), so a task lasts long enough to be interrupted.
const slowRule = `rule e2e_slow { condition: for any i in (0..filesize-1) : ( uint32(i) == 0x41424344 ) }`

// slowScanEnv is the worker environment of the scenarios that need scans to
// take time, with extra on top: the releases they generate (and the files of
// one release) share their padding, which the workers' match cache
// (DRAGONFLY_MATCH_CACHE_SIZE) would answer after the first scan without
// scanning again, so it is off.
func slowScanEnv(extra map[string]string) map[string]string {
	env := map[string]string{"DRAGONFLY_SCAN_TIMEOUT": "5m", "DRAGONFLY_MATCH_CACHE_SIZE": "off"}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// makePaddedSdist builds name-version.tar.gz with files .py files of size
// bytes of one repeated line, the first carrying both e2e tokens: large to
// scan, a few kilobytes to download. It streams the tar into gzip (sdist
// would hold files*size bytes of tar at once: 96 MiB for the drain test).
func makePaddedSdist(name, version string, files, size int) []byte {
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	line := "x = 'padding line for a slow scan'\n"
	pad := strings.Repeat(line, size/len(line))
	for i := range files {
		body := pad
		if i == 0 {
			body = "exec(base64.b64decode('eA=='))\nimport socket; socket.socket()\n" + pad
		}
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%s-%s/%s/m%d.py", name, version, name, i), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// writePaddedReleases writes n releases pkgNNNN-1.0 with the same
// makePaddedSdist content (compressed once: gzip under the race detector is
// slow).
func writePaddedReleases(t *testing.T, n, size int) string {
	t.Helper()
	dir := t.TempDir()
	data := makePaddedSdist("padded", "1.0", 1, size)
	for i := range n {
		name := fmt.Sprintf("pkg%04d", i)
		writeFile(t, filepath.Join(dir, name+"-1.0.tar.gz"), data)
	}
	return dir
}

func releaseNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("pkg%04d", i)
	}
	return names
}

// setFaults posts a fault switch body to devapi's /_dev/faults.
func (d *devapi) setFaults(t *testing.T, body string) {
	t.Helper()
	d.post(t, "/_dev/faults", body)
}

// allDone reports whether every one of devapi's n releases is finished or
// failed (nothing queued or leased).
func (d *devapi) allDone(t *testing.T, n int) bool {
	t.Helper()
	s := d.stats(t)
	return s.Queue.TotalBacklog == 0 && s.Queue.Finished+s.Queue.Failed == n
}

// scanStatus is GET /package's status of name 1.0 ("queued", "pending", ...).
func (d *devapi) scanStatus(t *testing.T, name string) string {
	t.Helper()
	var recs []struct {
		Status string `json:"status"`
	}
	if err := d.getJSON(fmt.Sprintf("/package?name=%s&version=1.0", name), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		return ""
	}
	return recs[len(recs)-1].Status
}

// tally counts devapi's report log.
type tally struct {
	puts, accepted, duplicates, s409, s503 int
}

func (d *devapi) tally(t *testing.T) tally {
	t.Helper()
	var tl tally
	seen := map[string]int{}
	for _, r := range d.reports(t) {
		tl.puts++
		switch r.Status {
		case 200:
			tl.accepted++
			seen[r.Name+"@"+r.Version]++
			if seen[r.Name+"@"+r.Version] > 1 {
				tl.duplicates++
			}
		case 409:
			tl.s409++
		case 503:
			tl.s503++
		}
	}
	return tl
}

// scrape reads the samples of the coordinator's /metrics, by series
// (name and labels as written).
func scrape(t *testing.T, httpAddr string) map[string]float64 {
	t.Helper()
	m, err := samples(httpAddr)
	if err != nil {
		t.Fatalf("scrape %s: %v", httpAddr, err)
	}
	return m
}

// metric reads one series of the coordinator's /metrics; 0 when it cannot
// be read (yet): for polls.
func metric(httpAddr, series string) float64 {
	m, _ := samples(httpAddr)
	return m[series]
}

// samples reads the samples of the /metrics at httpAddr.
func samples(httpAddr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

// runtimeSample is the coordinator's goroutines and memory after a forced GC.
type runtimeSample struct {
	goroutines    float64
	heapInuse     float64
	residentBytes float64
}

func (s runtimeSample) String() string {
	return fmt.Sprintf("goroutines=%.0f heap_inuse=%.1fMiB rss=%.1fMiB", s.goroutines, s.heapInuse/(1<<20), s.residentBytes/(1<<20))
}

// pprofEnv serves the coordinator's Go profiles on a free loopback port
// (for sampleRuntime's forced GC), returned with the environment.
func pprofEnv(t *testing.T, env map[string]string) (map[string]string, string) {
	t.Helper()
	addr := freePort(t)
	out := map[string]string{"DRAGONFLY_PPROF": "true", "DRAGONFLY_PPROF_ADDR": addr}
	for k, v := range env {
		out[k] = v
	}
	return out, addr
}

// sampleRuntime forces a GC through the coordinator's pprof handler on
// pprofAddr (see pprofEnv) and reads the runtime gauges from its /metrics
// on httpAddr.
func sampleRuntime(t *testing.T, httpAddr, pprofAddr string) runtimeSample {
	t.Helper()
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pprof heap: %d", resp.StatusCode)
	}
	m := scrape(t, httpAddr)
	return runtimeSample{m["go_goroutines"], m["go_memstats_heap_inuse_bytes"], m["process_resident_memory_bytes"]}
}

// sessionsOf returns the session ids the coordinator gave worker id.
func sessionsOf(coord *proc, workerID string) []string {
	re := regexp.MustCompile(`"session":"([^"]+)","worker_id":"` + regexp.QuoteMeta(workerID) + `"`)
	var ids []string
	for _, line := range strings.Split(coord.log.String(), "\n") {
		if strings.Contains(line, `"msg":"worker connected"`) {
			if m := re.FindStringSubmatch(line); m != nil {
				ids = append(ids, m[1])
			}
		}
	}
	return ids
}

// finishedLine returns the coordinator's "job finished" log line of name.
// awaitFinishedLine is finishedLine once the line is there (at most 30 s):
// the coordinator queues a report before it logs "job finished", so the API
// may hold the report before the line is in the coordinator's log.
func awaitFinishedLine(t *testing.T, coord *proc, name string) string {
	t.Helper()
	var line string
	eventually(t, 30*time.Second, "the coordinator's \"job finished\" line of "+name, func() bool {
		line = finishedLine(coord, name)
		return line != ""
	})
	return line
}

func finishedLine(coord *proc, name string) string {
	for _, line := range strings.Split(coord.log.String(), "\n") {
		if strings.Contains(line, `"msg":"job finished"`) && strings.Contains(line, `"job":"`+name+`"`) {
			return line
		}
	}
	return ""
}

// TestFaultWorkerLoss: a coordinator and 4 workers; every few seconds a
// random worker is killed with SIGKILL and restarted. Every job is reported
// exactly once with the right score, no report is refused, and the
// coordinator's goroutines and heap do not grow.
func TestFaultWorkerLoss(t *testing.T) {
	jobs := pick(120, 2000)
	// Each job costs its worker some YARA time, so kills land on busy
	// workers.
	d, _ := serveReleases(t, writePaddedReleases(t, jobs, pick(256<<10, 1<<20)), e2eRules+slowRule)
	coordEnv, pprofAddr := pprofEnv(t, map[string]string{"DRAGONFLY_LOG_LEVEL": "info"})
	_, grpcAddr, httpAddr := startCoordinator(t, d, coordEnv)
	workerEnv := slowScanEnv(map[string]string{"DRAGONFLY_LOG_LEVEL": "info"})
	workers := make([]*proc, 4)
	for i := range workers {
		workers[i] = startWorker(t, d, fmt.Sprintf("w%d", i), grpcAddr, workerEnv)
	}
	eventually(t, 90*time.Second, "4 workers connected and the first reports", func() bool {
		return metric(httpAddr, "dragonfly_workers_connected") == 4 && d.stats(t).ReportsAccepted >= 10
	})
	before := sampleRuntime(t, httpAddr, pprofAddr)

	// The long run kills a worker every 3 s. The short run kills one every
	// 8 accepted reports instead, so it kills as often on a fast machine as
	// on a loaded one.
	var killTick <-chan time.Time
	const killStep = 8
	if longRun {
		tk := time.NewTicker(3 * time.Second)
		defer tk.Stop()
		killTick = tk.C
	}
	rng := rand.New(rand.NewPCG(6, 1))
	kills := 0
	killNow := func() {
		i := rng.IntN(len(workers))
		workers[i].signal(syscall.SIGKILL)
		workers[i].wait(10 * time.Second)
		kills++
		workers[i] = startWorker(t, d, fmt.Sprintf("w%d", i), grpcAddr, workerEnv)
	}
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	nextKillAt := d.stats(t).ReportsAccepted + killStep
	deadline := time.Now().Add(pick(4*time.Minute, 30*time.Minute))
	for done := false; !done; {
		select {
		case <-killTick:
			killNow()
		case <-poll.C:
			s := d.stats(t)
			done = s.Queue.TotalBacklog == 0 && s.Queue.Finished+s.Queue.Failed == jobs
			if !longRun && !done && s.ReportsAccepted >= nextKillAt {
				killNow()
				nextKillAt = s.ReportsAccepted + killStep
			}
			if !done && time.Now().After(deadline) {
				t.Fatalf("%d kills; not every job reported in time: %+v", kills, s)
			}
		}
	}
	ok := d.exactlyOnce(t, jobs)
	for _, r := range ok {
		if r.Score == nil || *r.Score != 6 || !slices.Equal(r.RulesMatched, []string{"e2e_exec_b64", "e2e_socket"}) {
			t.Fatalf("report %+v", r)
		}
	}
	// Quiesce: the last restarted workers are connected, nothing in flight,
	// nothing waiting to be sent.
	eventually(t, 60*time.Second, "the coordinator to quiesce", func() bool {
		m := scrape(t, httpAddr)
		return m["dragonfly_workers_connected"] == 4 && m["dragonfly_jobs_in_flight"] == 0 && m["dragonfly_outbox_reports"] == 0
	})
	// Goroutines settle (idle HTTP connections close, ended sessions'
	// goroutines exit): wait for them to come back to the level of the
	// start, with a small allowance for idle keep-alive connections.
	const goroutineSlack = 10
	var after runtimeSample
	eventually(t, 60*time.Second, fmt.Sprintf("goroutines to settle within %d of the start (%v)", goroutineSlack, before), func() bool {
		after = sampleRuntime(t, httpAddr, pprofAddr)
		return after.goroutines <= before.goroutines+goroutineSlack
	})
	// The heap after a forced GC: what the coordinator keeps. Bounded
	// state (recent results, counters) may add a little; per-job or
	// per-session leaks of 2,000 jobs and a hundred sessions would not fit.
	if limit := before.heapInuse*1.5 + 8<<20; after.heapInuse > limit {
		t.Errorf("coordinator heap grew: %v -> %v (limit %.1f MiB)", before, after, limit/(1<<20))
	}
	tl := d.tally(t)
	m := scrape(t, httpAddr)
	t.Logf("RESULT worker-loss jobs=%d kills=%d puts=%d accepted=%d duplicates=%d 409=%d requeued=%.0f sessions=%.0f before[%v] after[%v]",
		jobs, kills, tl.puts, tl.accepted, tl.duplicates, tl.s409, m["dragonfly_tasks_requeued_total"], m["dragonfly_sessions_started_total"], before, after)
	if kills < 3 {
		t.Errorf("only %d workers killed: the run was too short to test anything", kills)
	}
}

// TestFaultAPITrouble: 30% of PUT /package answer 503, slow answers, Auth0
// tokens that expire every few seconds (and one revocation), and a 10 s
// outage of the whole API. Every result is delivered once the API recovers,
// none twice.
func TestFaultAPITrouble(t *testing.T) {
	jobs := pick(150, 1000)
	const clientID, clientSecret = "e2e-client", "e2e-client-secret-value"
	d, _ := serveReleases(t, writeReleases(t, jobs, 2, 8<<10), e2eRules,
		"--auth", "auth0", "--auth0-client-id", clientID, "--auth0-client-secret", clientSecret,
		"--token-lifetime", "3s", "--report-error-rate", "0.3", "--latency", "150ms")
	_, grpcAddr, httpAddr := startCoordinator(t, d, map[string]string{
		"DRAGONFLY_CLIENT_ID": clientID, "DRAGONFLY_CLIENT_SECRET": clientSecret,
		"DRAGONFLY_GRANT_TYPE": "client_credentials", "DRAGONFLY_TOKEN_URL": d.url + "/oauth/token",
		"DRAGONFLY_LOG_LEVEL": "info",
	})
	for i := range 3 {
		startWorker(t, d, fmt.Sprintf("w%d", i), grpcAddr, map[string]string{"DRAGONFLY_LOG_LEVEL": "info"})
	}
	eventually(t, 90*time.Second, "a third of the jobs", func() bool { return d.stats(t).ReportsAccepted >= int64(jobs/3) })
	d.setFaults(t, `{"revoke_tokens": true}`)
	eventually(t, 60*time.Second, "reports after the revocation", func() bool { return d.stats(t).ReportsAccepted >= int64(jobs/2) })
	beforeOutage := d.stats(t)
	d.setFaults(t, `{"unavailable_seconds": 10}`)
	eventually(t, 30*time.Second, "the outage to end", func() bool {
		var f struct {
			UnavailableUntil *time.Time `json:"unavailable_until"`
		}
		return d.getJSON("/_dev/faults", &f) == nil && f.UnavailableUntil == nil
	})
	afterOutage := d.stats(t)
	if afterOutage.Status503 == beforeOutage.Status503 {
		t.Error("no API call answered 503 during the outage")
	}
	deadline := time.Now().Add(pick(3*time.Minute, 12*time.Minute))
	eventually(t, time.Until(deadline), "every job", func() bool { return d.allDone(t, jobs) })
	d.exactlyOnce(t, jobs)
	s := d.stats(t)
	tl := d.tally(t)
	if tl.s503 < jobs/4 {
		t.Errorf("only %d reports answered 503: the faults were not injected", tl.s503)
	}
	m := scrape(t, httpAddr)
	refreshes := m[`dragonfly_api_token_refreshes_total{result="ok"}`]
	if refreshes < 3 {
		t.Errorf("%v token refreshes: the tokens did not expire", refreshes)
	}
	t.Logf("RESULT api-trouble jobs=%d puts=%d accepted=%d duplicates=%d 409=%d put_503=%d all_503=%d outage_503=%d 401=%d token_refreshes=%.0f",
		jobs, tl.puts, tl.accepted, tl.duplicates, tl.s409, tl.s503, s.Status503, afterOutage.Status503-beforeOutage.Status503, s.Status401, refreshes)
}

// TestFaultWorkerDrainLargeScan: SIGTERM while a worker scans a large
// distribution. With a long grace the worker finishes the scan and reports
// it before exiting; with a short grace it cancels the scan and hands the
// task back, and another worker scans it. Either way the job is reported
// exactly once.
func TestFaultWorkerDrainLargeScan(t *testing.T) {
	size := 3 << 20
	for _, tc := range []struct {
		name     string
		files    int
		grace    string
		finishes bool
	}{
		{"finishes within grace", pick(6, 32), "10m", true},
		// The scan must outlast the grace by far on a fast idle machine
		// (about 0.05 s per MiB there): 48 MiB is some 2.5 s against 150 ms.
		{"handed back after grace", pick(16, 32), "150ms", false},
	} {
		files := tc.files
		t.Run(tc.name, func(t *testing.T) {
			pkgs := t.TempDir()
			writeFile(t, filepath.Join(pkgs, "bigpkg-1.0.tar.gz"), makePaddedSdist("bigpkg", "1.0", files, size))
			d, _ := serveReleases(t, pkgs, e2eRules+slowRule)
			coord, grpcAddr, httpAddr := startCoordinator(t, d, nil)
			w := startWorker(t, d, "w0", grpcAddr, slowScanEnv(map[string]string{"DRAGONFLY_DRAIN_GRACE": tc.grace}))
			eventually(t, 60*time.Second, "the worker to scan", func() bool {
				return metric(httpAddr, "dragonfly_scanner_slots_busy") >= 1
			})
			w.signal(syscall.SIGTERM)
			if code := w.wait(pick(5*time.Minute, 10*time.Minute)); code != 0 {
				t.Fatalf("worker exit %d after SIGTERM", code)
			}
			if !w.logged("stopping: draining", `"running":1`) {
				t.Fatal("the worker was not stopped mid-scan")
			}
			first := sessionsOf(coord, "w0")
			if len(first) != 1 {
				t.Fatalf("sessions of w0: %v", first)
			}
			if tc.finishes {
				eventually(t, 30*time.Second, "the report", func() bool { return d.allDone(t, 1) })
				if line := awaitFinishedLine(t, coord, "bigpkg"); !strings.Contains(line, first[0]) {
					t.Fatalf("job not finished by the draining worker: %s", line)
				}
			} else {
				if !w.logged("drain grace over; cancelling started tasks") {
					t.Fatal("the worker did not cancel its scan at the end of the grace")
				}
				if d.stats(t).Reports != 0 {
					t.Fatal("a report was sent for a cancelled scan")
				}
				startWorker(t, d, "w1", grpcAddr, slowScanEnv(nil))
				eventually(t, pick(5*time.Minute, 10*time.Minute), "the report", func() bool { return d.allDone(t, 1) })
				second := sessionsOf(coord, "w1")
				if line := awaitFinishedLine(t, coord, "bigpkg"); len(second) != 1 || !strings.Contains(line, second[0]) || strings.Contains(line, first[0]) {
					t.Fatalf("job not finished by the second worker alone: %s", line)
				}
			}
			ok := d.exactlyOnce(t, 1)
			if ok[0].Score == nil || *ok[0].Score != 6 {
				t.Fatalf("report %+v", ok[0])
			}
			tl := d.tally(t)
			t.Logf("RESULT worker-drain case=%q size=%dMiB grace=%s puts=%d accepted=%d duplicates=%d 409=%d",
				tc.name, files*size>>20, tc.grace, tl.puts, tl.accepted, tl.duplicates, tl.s409)
		})
	}
}

// TestFaultCoordinatorCrash: the API refuses reports, finished reports pile
// up in the coordinator's durable outbox, and the coordinator is killed with
// SIGKILL while jobs are in flight. Restarted on the same outbox it delivers
// the waiting reports under their original leases without scanning again;
// the jobs that were in flight are leased again by the API (after its short
// lease timeout) and reported. Every job is reported exactly once.
func TestFaultCoordinatorCrash(t *testing.T) {
	jobs := pick(24, 200)
	// 8 MiB of slow-scanned padding (some 0.4 s a job on an idle machine):
	// a job seen in flight is still in flight a few milliseconds later, at
	// the kill (with 1 MiB both could finish in between, and no job was
	// left to be re-leased).
	const lease = "25s"
	d, _ := serveReleases(t, writePaddedReleases(t, jobs, 8<<20), e2eRules+slowRule, "--lease-timeout", lease)
	env := map[string]string{
		"DRAGONFLY_OUTBOX_PATH":   filepath.Join(t.TempDir(), "outbox.db"),
		"DRAGONFLY_LEASE_TIMEOUT": lease,
	}
	grpcAddr, httpAddr := freePort(t), freePort(t)
	coord := startCoordinatorAt(t, d, grpcAddr, httpAddr, env)
	for i := range 2 {
		startWorker(t, d, fmt.Sprintf("w%d", i), grpcAddr, slowScanEnv(nil))
	}
	eventually(t, 90*time.Second, "a quarter of the jobs", func() bool { return d.stats(t).ReportsAccepted >= int64(jobs/4) })
	// The API refuses every report (503) until the first coordinator is
	// dead, and keeps leasing, so reports wait in the outbox while jobs are
	// in flight for as long as the test needs to see it. (An 8 s outage of
	// the whole API ended by itself in CI before a scrape saw that moment:
	// with no leases, the jobs in flight drained, the kill came after the
	// outage, while the first coordinator delivered a waiting report, and
	// the second's resend got a 409.)
	d.setFaults(t, `{"report_error_rate": 1}`)
	var atKill map[string]float64
	eventually(t, 30*time.Second, "reports waiting in the outbox and jobs in flight", func() bool {
		atKill = scrape(t, httpAddr)
		return atKill["dragonfly_outbox_reports"] >= 1 && atKill["dragonfly_jobs_in_flight"] >= 1
	})
	coord.signal(syscall.SIGKILL)
	coord.wait(10 * time.Second)
	d.setFaults(t, `{"report_error_rate": 0}`)
	before := d.stats(t)
	coord2 := startCoordinatorAt(t, d, grpcAddr, httpAddr, env)
	eventually(t, pick(4*time.Minute, 10*time.Minute), "every job", func() bool { return d.allDone(t, jobs) })
	ok := d.exactlyOnce(t, jobs)

	accepted := map[string]devserver.ReportRecord{}
	for _, r := range ok {
		accepted[r.Name] = r
		if r.Score == nil || *r.Score != 6 {
			t.Errorf("report %+v", r)
		}
	}
	// Reports finished by the first coordinator and not accepted before it
	// died were in its outbox (it logs "job finished" only once the report
	// is durable): the second one must deliver them under their first lease
	// without scanning them again.
	var fromOutbox, movedToNewLease, releasedAgain int
	for _, name := range releaseNames(jobs) {
		r := accepted[name]
		if finishedLine(coord, name) != "" && r.Seq > before.Reports {
			fromOutbox++
			if finishedLine(coord2, name) != "" {
				t.Errorf("%s was scanned again after the restart instead of coming from the outbox", name)
			}
			switch {
			case r.Attempt != nil && *r.Attempt == 1:
				// Delivered under the lease it was scanned for.
			case coord2.logged(`"msg":"job re-leased while its report waits; report moved to the new lease"`, `"job":"`+name+`"`):
				// Its lease ran out before the API came back; the API leased
				// it again and the waiting report moved to the new lease.
				movedToNewLease++
			default:
				attempt := "none"
				if r.Attempt != nil {
					attempt = fmt.Sprint(*r.Attempt)
				}
				t.Errorf("%s delivered from the outbox under attempt %s without a re-lease", name, attempt)
			}
		}
		if r.Attempt != nil && *r.Attempt > 1 {
			releasedAgain++
		}
	}
	if fromOutbox == 0 {
		t.Errorf("no report delivered from the outbox after the restart (outbox held %v at the kill)", atKill["dragonfly_outbox_reports"])
	}
	if releasedAgain == 0 {
		t.Errorf("no job re-leased after the restart (%v in flight at the kill)", atKill["dragonfly_jobs_in_flight"])
	}
	tl := d.tally(t)
	t.Logf("RESULT coordinator-crash jobs=%d outbox_at_kill=%.0f in_flight_at_kill=%.0f delivered_from_outbox=%d of_them_moved_to_a_new_lease=%d re_leased=%d puts=%d accepted=%d duplicates=%d 409=%d 503=%d",
		jobs, atKill["dragonfly_outbox_reports"], atKill["dragonfly_jobs_in_flight"], fromOutbox, movedToNewLease, releasedAgain, tl.puts, tl.accepted, tl.duplicates, tl.s409, tl.s503)
}

// netns is a network namespace joined to the root namespace by a veth pair.
type netns struct {
	name, hostIf, nsIf, hostIP, nsIP string
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetns creates a namespace and a veth pair with addresses in
// 10.213.N.0/24. Cleanup deletes both, also when the test fails. Without
// root, iproute2 or nftables the test fails (it does not skip): `make
// setup-test` installs both, and CI runs as root.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the network partition test needs root (network namespaces, veth, nftables); run the e2e tests as root, as CI does")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the network partition test needs %s (iproute2 and nftables: make setup-test installs them): %v", tool, err)
		}
	}
	removeStaleNetns(t)
	pid := os.Getpid()
	n := &netns{
		name:   fmt.Sprintf("dfe2e%d", pid),
		hostIf: fmt.Sprintf("dfh%d", pid%10000000),
		nsIf:   fmt.Sprintf("dfn%d", pid%10000000),
		hostIP: fmt.Sprintf("10.213.%d.1", pid%250+1),
		nsIP:   fmt.Sprintf("10.213.%d.2", pid%250+1),
	}
	if err := run("ip", "netns", "add", n.name); err != nil {
		t.Fatalf("network namespaces unavailable: %v", err)
	}
	t.Cleanup(func() {
		// Deleting the namespace deletes its veth end, and with it the pair.
		if err := run("ip", "netns", "del", n.name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		run("ip", "link", "del", n.hostIf) // gone already unless the move failed
	})
	for _, c := range [][]string{
		{"ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.name},
		{"ip", "addr", "add", n.hostIP + "/24", "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
		{"ip", "-n", n.name, "addr", "add", n.nsIP + "/24", "dev", n.nsIf},
		{"ip", "-n", n.name, "link", "set", n.nsIf, "up"},
		{"ip", "-n", n.name, "link", "set", "lo", "up"},
	} {
		if err := run(c[0], c[1:]...); err != nil {
			t.Fatalf("netns setup: %v", err)
		}
	}
	return n
}

// removeStaleNetns deletes the namespaces of earlier test processes that
// died without their cleanup (killed, or stopped by the test timeout).
func removeStaleNetns(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		pid, ok := strings.CutPrefix(name, "dfe2e")
		if !ok {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its test process still runs
		}
		if err := run("ip", "netns", "del", name); err != nil {
			t.Logf("stale namespace %s: %v", name, err)
		}
	}
}

// cut drops every packet in and out of the namespace (a partition: no
// resets, no errors, silence); restore lifts it.
func (n *netns) cut(t *testing.T) {
	t.Helper()
	rules := fmt.Sprintf(`table inet dfcut {
  chain in { type filter hook input priority 0; policy accept; iifname "%[1]s" drop; }
  chain out { type filter hook output priority 0; policy accept; oifname "%[1]s" drop; }
}
`, n.nsIf)
	cmd := exec.Command("ip", "netns", "exec", n.name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cut: %v: %s", err, out)
	}
	if err := run("ip", "netns", "exec", n.name, "nft", "list", "table", "inet", "dfcut"); err != nil {
		t.Fatalf("cut: %v", err)
	}
}

func (n *netns) restore(t *testing.T) {
	t.Helper()
	if err := run("ip", "netns", "exec", n.name, "nft", "delete", "table", "inet", "dfcut"); err != nil {
		t.Fatalf("restore: %v", err)
	}
}

// TestFaultNetworkPartition: a worker in its own network namespace is cut off
// from the coordinator while it scans. The coordinator ends its session after
// the heartbeat timeout and the jobs it held are scanned and reported by the
// other workers while it is still cut off; its own results for them are never
// used. When the link comes back it reconnects and finishes the remaining
// jobs. Nothing is reported twice.
func TestFaultNetworkPartition(t *testing.T) {
	n := newNetns(t)
	jobs := pick(12, 40)
	partition := pick(10*time.Second, 30*time.Second)
	pkgs := writePaddedReleases(t, jobs, pick(2<<20, 4<<20))
	rules := t.TempDir()
	writeRules(t, rules, "e2e", e2eRules+slowRule)
	d := startDevAPIOn(t, n.hostIP, "--packages", pkgs, "--rules", rules)
	grpcAddr, httpAddr := freePortOn(t, n.hostIP), freePort(t)
	// Every worker reaches the coordinator on the veth address, not on
	// loopback (the cut-off worker from its namespace; the others connect
	// from the host's 10.213.N.1), so the fleet token crosses a non-loopback
	// address in plaintext: both ends must allow it explicitly
	// (DRAGONFLY_FLEET_INSECURE), or the worker does not send it and the
	// coordinator refuses it. This link exists only inside the test machine.
	coord := startCoordinatorAt(t, d, grpcAddr, httpAddr, map[string]string{"DRAGONFLY_HEARTBEAT_INTERVAL": "1s", "DRAGONFLY_FLEET_INSECURE": "true"})
	workerEnv := slowScanEnv(map[string]string{"DRAGONFLY_FLEET_INSECURE": "true"})
	cutoff := startWrapped(t, "wpart", []string{"ip", "netns", "exec", n.name}, slowScanEnv(map[string]string{
		"DRAGONFLY_COORDINATOR_ADDR": grpcAddr, "DRAGONFLY_FLEET_TOKEN": fleetToken, "DRAGONFLY_FLEET_INSECURE": "true",
		"DRAGONFLY_ALLOWED_HOSTS": d.origin(), "DRAGONFLY_THREADS": "1",
		"DRAGONFLY_WORKER_ID": "wpart", "DRAGONFLY_LOG_LEVEL": "debug",
	}), "worker")
	// The cut-off worker is alone at first, so the jobs leased now are its.
	eventually(t, 90*time.Second, "the worker in the namespace to scan", func() bool {
		return metric(httpAddr, "dragonfly_scanner_slots_busy") >= 1
	})
	n.cut(t)
	cutAt := time.Now()
	var held []string
	for _, name := range releaseNames(jobs) {
		if d.scanStatus(t, name) == "pending" {
			held = append(held, name)
		}
	}
	if len(held) == 0 {
		t.Fatal("no job leased for the worker before the cut")
	}
	first := sessionsOf(coord, "wpart")
	if len(first) != 1 {
		t.Fatalf("sessions of wpart before the cut: %v", first)
	}
	// The others join once the coordinator has given up on the cut-off
	// worker, so what they scan first is what it held, and jobs are left
	// for it when they stop.
	eventually(t, 60*time.Second, "the coordinator to end the cut-off worker's session", func() bool {
		return coord.logged(`"msg":"worker session ended; its tasks were re-dispatched"`, `"worker_id":"wpart"`, "worker missed its heartbeats")
	})
	others := []*proc{startWorker(t, d, "w1", grpcAddr, workerEnv), startWorker(t, d, "w2", grpcAddr, workerEnv)}

	eventually(t, 90*time.Second, "the cut-off worker's jobs to be reported by the others", func() bool {
		for _, name := range held {
			if s := d.scanStatus(t, name); s != "finished" {
				return false
			}
		}
		return true
	})
	redispatchedAfter := time.Since(cutAt)
	for _, name := range held {
		line := awaitFinishedLine(t, coord, name)
		if line == "" || strings.Contains(line, "-wpart") {
			t.Errorf("%s held by the cut-off worker was not finished by the others alone: %q", name, line)
		}
	}
	// Stop the other workers now (they hand back what they have not
	// started), so the remaining jobs need the cut-off worker once it is
	// back, and keep the partition for its full length.
	for _, w := range others {
		w.signal(syscall.SIGTERM)
	}
	for _, w := range others {
		if code := w.wait(2 * time.Minute); code != 0 {
			t.Fatalf("%s exit %d", w.name, code)
		}
	}
	<-time.After(time.Until(cutAt.Add(partition)))
	remaining := jobs - int(d.stats(t).Finished)
	partitionLasted := time.Since(cutAt)
	n.restore(t)
	eventually(t, 2*time.Minute, "every job after the link came back", func() bool { return d.allDone(t, jobs) })
	// The others may have finished every job before they were stopped
	// (a fast machine), so wait for the reconnect itself rather than
	// inferring it from the jobs.
	var sessions []string
	eventually(t, 2*time.Minute, "the cut-off worker to reconnect", func() bool {
		sessions = sessionsOf(coord, "wpart")
		return len(sessions) >= 2
	})
	if remaining > 0 {
		var byReturned int
		for _, name := range releaseNames(jobs) {
			if strings.Contains(finishedLine(coord, name), sessions[len(sessions)-1]) {
				byReturned++
			}
		}
		if byReturned == 0 {
			t.Errorf("%d jobs remained after the partition, none finished by the returned worker", remaining)
		}
	}
	d.exactlyOnce(t, jobs)
	// Scans the cut-off worker finished for jobs it had lost: their results
	// died with its session (the coordinator had re-dispatched the tasks).
	stale := 0
	for _, name := range held {
		if cutoff.logged(`"msg":"distribution scanned"`, `"job":"`+name+`"`) {
			stale++
		}
	}
	m := scrape(t, httpAddr)
	tl := d.tally(t)
	t.Logf("RESULT network-partition jobs=%d partition=%v held_at_cut=%d reported_by_others_after=%v stale_scans_dropped=%d results_late=%.0f remaining_after_partition=%d reconnects=%d puts=%d accepted=%d duplicates=%d 409=%d",
		jobs, partitionLasted.Round(time.Second), len(held), redispatchedAfter.Round(100*time.Millisecond), stale, m["dragonfly_results_late_total"], remaining, len(sessions)-1, tl.puts, tl.accepted, tl.duplicates, tl.s409)
}
