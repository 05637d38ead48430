// Package e2e runs the fleet as real processes: the dragonfly binary is built
// once, then devapi, a coordinator and workers are started, killed and
// restarted on loopback ports, and the outcome is read back from devapi.
package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dragonfly-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dragonfly")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/dragonfly")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running dragonfly process.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs `dragonfly args...` with env (on top of a clean environment).
func start(t *testing.T, name string, env map[string]string, args ...string) *proc {
	t.Helper()
	return startWrapped(t, name, nil, env, args...)
}

// startWrapped runs `wrap... dragonfly args...`, e.g. with wrap
// ["ip", "netns", "exec", ns] to run dragonfly in a network namespace.
func startWrapped(t *testing.T, name string, wrap []string, env map[string]string, args ...string) *proc {
	t.Helper()
	argv := append(append(append([]string(nil), wrap...), binary), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DRAGONFLY_LOG_FORMAT=json"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = t.TempDir()
	p := &proc{t: t, name: name, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("---- %s log ----\n%s", name, tail(p.log.String(), 60))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// failIfExited ends the test at once if the process has exited (it is
// being waited for to come up).
func (p *proc) failIfExited() {
	p.t.Helper()
	select {
	case <-p.done:
		p.t.Fatalf("%s exited while starting: %v", p.name, p.err)
	default:
	}
}

func (p *proc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.name, timeout)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// logged reports whether the process logged a line containing all of parts.
func (p *proc) logged(parts ...string) bool {
	for _, line := range strings.Split(p.log.String(), "\n") {
		all := true
		for _, part := range parts {
			if !strings.Contains(line, part) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func freePort(t *testing.T) string {
	t.Helper()
	return freePortOn(t, "127.0.0.1")
}

// freePortOn returns a free host:port on the address host, for a process
// the test starts next. The port is picked at random below the kernel's
// ephemeral range (32768 and up): a port handed out by listening on :0 comes
// from that range, and before the process binds it the source port of any
// outgoing connection (the fleet makes many) may take it.
func freePortOn(t *testing.T, host string) string {
	t.Helper()
	for range 200 {
		addr := net.JoinHostPort(host, strconv.Itoa(20000+rand.IntN(12000)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free port in 20000-31999")
	return ""
}

// eventually polls cond until it holds or the deadline passes. External
// processes are observed only through their HTTP interfaces, so polling with
// a deadline is the synchronization available.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// devStats are devapi's /_dev/stats.
type devStats struct {
	Leases          int64 `json:"leases"`
	Reports         int64 `json:"reports"`
	ReportsAccepted int64 `json:"reports_accepted"`
	Status409       int64 `json:"status_409"`
	Status404       int64 `json:"status_404"`
	Status422       int64 `json:"status_422"`
	Status500       int64 `json:"status_500"`
	Status503       int64 `json:"status_503"`
	Status401       int64 `json:"status_401"`
	DeadLettered    int64 `json:"dead_lettered"`
	Finished        int64 `json:"finished"`
	Failed          int64 `json:"failed"`
	Queue           struct {
		TotalBacklog int `json:"total_backlog"`
	} `json:"queue"`
}

type devReport struct {
	Seq          int64    `json:"seq"`
	Name         string   `json:"name"`
	Version      string   `json:"version"`
	Attempt      *int     `json:"attempt"`
	Kind         string   `json:"kind"`
	Score        *int     `json:"score"`
	InspectorURL *string  `json:"inspector_url"`
	RulesMatched []string `json:"rules_matched"`
	Commit       string   `json:"commit"`
	Reason       string   `json:"reason"`
	Status       int      `json:"status"`
}

// devapi is a running development API.
type devapi struct {
	*proc
	url string
}

func startDevAPI(t *testing.T, args ...string) *devapi {
	t.Helper()
	return startDevAPIOn(t, "127.0.0.1", args...)
}

// startDevAPIOn starts devapi listening on the address host.
func startDevAPIOn(t *testing.T, host string, args ...string) *devapi {
	t.Helper()
	addr := freePortOn(t, host)
	p := start(t, "devapi", nil, append([]string{"devapi", "--listen", addr}, args...)...)
	d := &devapi{proc: p, url: "http://" + addr}
	eventually(t, 30*time.Second, "devapi to listen", func() bool {
		p.failIfExited()
		var s devStats
		return getJSON(d.url+"/_dev/stats", &s) == nil
	})
	return d
}

func (d *devapi) stats(t *testing.T) devStats {
	t.Helper()
	var s devStats
	if err := getJSON(d.url+"/_dev/stats", &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (d *devapi) reports(t *testing.T) []devReport {
	t.Helper()
	var r []devReport
	if err := getJSON(d.url+"/_dev/reports", &r); err != nil {
		var wrapped struct {
			Reports []devReport `json:"reports"`
		}
		if err2 := getJSON(d.url+"/_dev/reports", &wrapped); err2 != nil {
			t.Fatal(err)
		}
		r = wrapped.Reports
	}
	return r
}

// exactlyOnce checks that every release got exactly one accepted report and
// none was refused.
func (d *devapi) exactlyOnce(t *testing.T, releases int) []devReport {
	t.Helper()
	accepted := map[string]int{}
	var ok []devReport
	for _, r := range d.reports(t) {
		if r.Status == 200 {
			accepted[r.Name+"@"+r.Version]++
			ok = append(ok, r)
		}
	}
	for k, n := range accepted {
		if n != 1 {
			t.Errorf("%s reported %d times", k, n)
		}
	}
	if len(accepted) != releases {
		t.Errorf("%d releases reported, want %d", len(accepted), releases)
	}
	s := d.stats(t)
	if s.Status409 != 0 || s.Status422 != 0 || s.Status500 != 0 || s.DeadLettered != 0 {
		t.Errorf("refused reports: %+v", s)
	}
	return ok
}

const fleetToken = "e2e-fleet-token"

// fleetProcs starts a coordinator for the devapi and returns its gRPC address.
func startCoordinator(t *testing.T, d *devapi, extra map[string]string) (*proc, string, string) {
	t.Helper()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	return startCoordinatorAt(t, d, grpcAddr, httpAddr, extra), grpcAddr, httpAddr
}

// startCoordinatorAt starts a coordinator serving gRPC on grpcAddr and
// metrics on httpAddr (a restart reuses the addresses of the process it
// replaces, so workers reconnect to it).
func startCoordinatorAt(t *testing.T, d *devapi, grpcAddr, httpAddr string, extra map[string]string) *proc {
	t.Helper()
	env := map[string]string{
		"DRAGONFLY_BASE_URL":           d.url,
		"DRAGONFLY_LISTEN_ADDR":        grpcAddr,
		"DRAGONFLY_METRICS_ADDR":       httpAddr,
		"DRAGONFLY_FLEET_TOKEN":        fleetToken,
		"DRAGONFLY_LOAD_DURATION":      "1",
		"DRAGONFLY_HEARTBEAT_INTERVAL": "1s",
		"DRAGONFLY_LOG_LEVEL":          "debug",
	}
	for k, v := range extra {
		env[k] = v
	}
	p := start(t, "coordinator", env, "coordinator")
	eventually(t, 30*time.Second, "coordinator to serve", func() bool {
		p.failIfExited()
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

func startWorker(t *testing.T, name, coordinator string, extra map[string]string) *proc {
	t.Helper()
	env := map[string]string{
		"DRAGONFLY_COORDINATOR_ADDR": coordinator,
		"DRAGONFLY_FLEET_TOKEN":      fleetToken,
		"DRAGONFLY_ALLOWED_HOSTS":    "127.0.0.1",
		"DRAGONFLY_THREADS":          "1",
		"DRAGONFLY_WORKER_ID":        name,
		"DRAGONFLY_LOG_LEVEL":        "debug",
	}
	for k, v := range extra {
		env[k] = v
	}
	return start(t, name, env, "worker")
}

// makeSdist builds name-version.tar.gz with files of about size bytes of
// text; every third file carries a token the e2e rules match.
func makeSdist(name, version string, files, size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	var buf bytes.Buffer
	// BestSpeed and strconv instead of fmt: the test binary runs under the
	// race detector, where building 100 MB of sdists the slow way takes
	// minutes.
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	for i := range files {
		var b strings.Builder
		line := make([]byte, 0, 32)
		for b.Len() < size {
			line = append(line[:0], "value_"...)
			line = strconv.AppendInt(line, int64(rng.IntN(1e6)), 10)
			line = append(line, " = "...)
			line = strconv.AppendInt(line, int64(rng.IntN(1e6)), 10)
			line = append(line, '\n')
			b.Write(line)
		}
		switch i % 3 {
		case 0:
			b.WriteString("exec(base64.b64decode('eA=='))\n")
		case 1:
			b.WriteString("import socket; socket.socket()\n")
		}
		body := b.String()
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%s-%s/%s/m%d.py", name, version, name, i), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// writeReleases writes n releases of one sdist each into a new directory.
func writeReleases(t *testing.T, n, files, size int) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		name := fmt.Sprintf("pkg%04d", i)
		if err := os.WriteFile(filepath.Join(dir, name+"-1.0.tar.gz"), makeSdist(name, "1.0", files, size, uint64(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const e2eRules = `
rule e2e_exec_b64 { meta: weight = 5 filetype = ".py" strings: $a = "exec(base64.b64decode(" condition: $a }
rule e2e_socket { meta: weight = 1 strings: $a = "socket.socket(" condition: $a }
`

func writeRules(t *testing.T, dir, stem, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, stem+".yara"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}
