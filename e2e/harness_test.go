// Package e2e runs the fleet as real processes: the dragonfly binary is built
// once, then devapi, a coordinator and workers are started, killed and
// restarted on loopback ports, and the outcome is read back from devapi.
package e2e

import (
	"bytes"
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

	devserver "github.com/dragonfly-fleet/fleet/devapi"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
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
	log  *testkit.SyncBuffer
	done chan struct{}
	err  error
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
	return startBinary(t, name, binary, wrap, env, args...)
}

// startBinary is startWrapped running the dragonfly binary bin (another
// release's, say) instead of the one built for the tests.
func startBinary(t *testing.T, name, bin string, wrap []string, env map[string]string, args ...string) *proc {
	t.Helper()
	argv := append(append(append([]string(nil), wrap...), bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DRAGONFLY_LOG_FORMAT=json"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = t.TempDir()
	p := &proc{t: t, name: name, cmd: cmd, log: &testkit.SyncBuffer{}, done: make(chan struct{})}
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
			keepLog(t, name, p.log.String())
		}
	})
	return p
}

// keepLog writes a failed test's whole process log into
// $DRAGONFLY_E2E_LOG_DIR (when set), for a look beyond the tail.
func keepLog(t *testing.T, name, log string) {
	dir := os.Getenv("DRAGONFLY_E2E_LOG_DIR")
	if dir == "" {
		return
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+name+".log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Logf("keep log: %v", err)
		return
	}
	t.Logf("whole %s log: %s", name, path)
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
	return decodeJSON(resp, v)
}

// decodeJSON reads a 200 answer's JSON body into v and closes it.
func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("%s %s: %d %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// devapi is a running development API. With --auth its API and its
// /_dev/ routes take credentials: the harness sends the ones devapi was
// started with (parsed from its arguments).
type devapi struct {
	*proc
	url string
	// auth is devapi's --auth mode ("" or "none": no credentials); the
	// credentials are its --cf-access-client-id/--cf-access-client-secret or
	// --auth0-client-id/--auth0-client-secret.
	auth                 string
	cfID, cfSecret       string
	auth0ID, auth0Secret string
	client               *http.Client
	mu                   sync.Mutex
	token                string // a cached Auth0 token
}

func startDevAPI(t *testing.T, args ...string) *devapi {
	t.Helper()
	return startDevAPIOn(t, "127.0.0.1", args...)
}

// serveReleases starts devapi serving the releases in pkgs with the rule
// source src as its rules, and args. It returns devapi and the rules
// directory (a test may change the rules there).
func serveReleases(t *testing.T, pkgs, src string, args ...string) (*devapi, string) {
	t.Helper()
	rules := t.TempDir()
	writeRules(t, rules, "e2e", src)
	return startDevAPI(t, append([]string{"--packages", pkgs, "--rules", rules}, args...)...), rules
}

// startDevAPIOn starts devapi listening on the address host.
func startDevAPIOn(t *testing.T, host string, args ...string) *devapi {
	t.Helper()
	addr := freePortOn(t, host)
	p := start(t, "devapi", nil, append([]string{"devapi", "--listen-addr", addr}, args...)...)
	d := &devapi{proc: p, url: "http://" + addr, client: &http.Client{
		Timeout: 30 * time.Second,
		// A redirect is Cloudflare's login page: an auth error, not a page.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	for i := 0; i+1 < len(args); i++ {
		switch v := args[i+1]; args[i] {
		case "--auth":
			d.auth = v
		case "--cf-access-client-id":
			d.cfID = v
		case "--cf-access-client-secret":
			d.cfSecret = v
		case "--auth0-client-id":
			d.auth0ID = v
		case "--auth0-client-secret":
			d.auth0Secret = v
		}
	}
	eventually(t, 30*time.Second, "devapi to listen", func() bool {
		p.failIfExited()
		var s devserver.Stats
		return d.getJSON("/_dev/stats", &s) == nil
	})
	return d
}

// origin is devapi's origin as a worker's DRAGONFLY_ALLOWED_HOSTS entry:
// the scheme and host:port its distribution links use.
func (d *devapi) origin() string { return d.url }

// do sends a request to devapi with its credentials. An Auth0 token is
// fetched once and again after a 401 (tokens expire and are revoked by the
// fault switches).
func (d *devapi) do(method, path, body string) (*http.Response, error) {
	for try := 0; ; try++ {
		req, err := http.NewRequest(method, d.url+path, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		switch d.auth {
		case "cloudflare":
			req.Header.Set("CF-Access-Client-Id", d.cfID)
			req.Header.Set("CF-Access-Client-Secret", d.cfSecret)
		case "auth0":
			tok, err := d.auth0Token(try > 0)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := d.client.Do(req)
		if err != nil || resp.StatusCode != http.StatusUnauthorized || d.auth != "auth0" || try > 0 {
			return resp, err
		}
		resp.Body.Close()
	}
}

// auth0Token returns the cached token, or a new one (client credentials
// grant) when there is none or renew is set.
func (d *devapi) auth0Token(renew bool) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.token != "" && !renew {
		return d.token, nil
	}
	b, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": d.auth0ID, "client_secret": d.auth0Secret})
	resp, err := d.client.Post(d.url+"/oauth/token", "application/json", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := decodeJSON(resp, &tok); err != nil {
		return "", fmt.Errorf("devapi token: %w", err)
	}
	d.token = tok.AccessToken
	return d.token, nil
}

// getJSON GETs path from devapi into v.
func (d *devapi) getJSON(path string, v any) error {
	resp, err := d.do(http.MethodGet, path, "")
	if err != nil {
		return err
	}
	return decodeJSON(resp, v)
}

// post POSTs body to path and fails the test unless devapi answers 200.
func (d *devapi) post(t *testing.T, path, body string) {
	t.Helper()
	resp, err := d.do(http.MethodPost, path, body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s %s: %d %s", path, body, resp.StatusCode, b)
	}
}

func (d *devapi) stats(t *testing.T) devserver.Stats {
	t.Helper()
	var s devserver.Stats
	if err := d.getJSON("/_dev/stats", &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (d *devapi) reports(t *testing.T) []devserver.ReportRecord {
	t.Helper()
	var r []devserver.ReportRecord
	if err := d.getJSON("/_dev/reports", &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// rulesCommit is the hash of devapi's current rules (GET /).
func (d *devapi) rulesCommit(t *testing.T) string {
	t.Helper()
	var meta struct {
		RulesCommit string `json:"rules_commit"`
	}
	if err := d.getJSON("/", &meta); err != nil {
		t.Fatal(err)
	}
	if meta.RulesCommit == "" {
		t.Fatal("devapi names no rules commit")
	}
	return meta.RulesCommit
}

// exactlyOnce checks that every release got exactly one accepted report and
// none was refused.
func (d *devapi) exactlyOnce(t *testing.T, releases int) []devserver.ReportRecord {
	t.Helper()
	accepted := map[string]int{}
	var ok []devserver.ReportRecord
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

const fleetToken = "e2e-fleet-token-0123456789"

// startCoordinator starts a coordinator for the devapi and returns it, its
// gRPC address and its HTTP (metrics and status) address.
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
	return startCoordinatorBinary(t, binary, d, grpcAddr, httpAddr, extra)
}

// startCoordinatorBinary is startCoordinatorAt running the binary bin.
func startCoordinatorBinary(t *testing.T, bin string, d *devapi, grpcAddr, httpAddr string, extra map[string]string) *proc {
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
	p := startBinary(t, "coordinator", bin, nil, env, "coordinator")
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

// startWorker starts a worker for the coordinator at coordinator that may
// download from d (its origin is the one allowed host).
func startWorker(t *testing.T, d *devapi, name, coordinator string, extra map[string]string) *proc {
	t.Helper()
	return startWorkerBinary(t, binary, d, name, coordinator, extra)
}

// startWorkerBinary is startWorker running the binary bin.
func startWorkerBinary(t *testing.T, bin string, d *devapi, name, coordinator string, extra map[string]string) *proc {
	t.Helper()
	env := map[string]string{
		"DRAGONFLY_COORDINATOR_ADDR": coordinator,
		"DRAGONFLY_FLEET_TOKEN":      fleetToken,
		"DRAGONFLY_ALLOWED_HOSTS":    d.origin(),
		"DRAGONFLY_THREADS":          "1",
		"DRAGONFLY_WORKER_ID":        name,
		"DRAGONFLY_LOG_LEVEL":        "debug",
	}
	for k, v := range extra {
		env[k] = v
	}
	return startBinary(t, name, bin, nil, env, "worker")
}

// vmHWM is a process's peak resident set size (VmHWM in /proc/PID/status),
// in bytes.
func (p *proc) vmHWM(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("%s: VmHWM %q: %v", p.name, v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("%s: no VmHWM in /proc/%d/status", p.name, p.cmd.Process.Pid)
	return 0
}

// makeSdist builds name-version.tar.gz with files of about size bytes of
// text; every third file carries a token the e2e rules match.
func makeSdist(t *testing.T, name, version string, files, size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	bodies := make([]string, files)
	// strconv instead of fmt: the test binary runs under the race
	// detector, where building 100 MB of sdists the slow way takes minutes.
	line := make([]byte, 0, 32)
	for i := range bodies {
		var b strings.Builder
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
		bodies[i] = b.String()
	}
	return sdist(t, name, version, bodies...)
}

// sdist is name-version.tar.gz holding one file of each body,
// name-version/name/m0.py, m1.py and so on (gzip at its fastest).
func sdist(t *testing.T, name, version string, bodies ...string) []byte {
	ents := make([]testkit.TarEntry, len(bodies))
	for i, b := range bodies {
		ents[i] = testkit.TarEntry{Name: fmt.Sprintf("%s-%s/%s/m%d.py", name, version, name, i), Body: []byte(b)}
	}
	return testkit.GzipFast(t, testkit.Tar(t, ents...))
}

// writeReleases writes n releases of one sdist each into a new directory.
func writeReleases(t *testing.T, n, files, size int) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		name := fmt.Sprintf("pkg%04d", i)
		writeFile(t, filepath.Join(dir, name+"-1.0.tar.gz"), makeSdist(t, name, "1.0", files, size, uint64(i)))
	}
	return dir
}

const e2eRules = `
rule e2e_exec_b64 { meta: weight = 5 filetype = ".py" strings: $a = "exec(base64.b64decode(" condition: $a }
rule e2e_socket { meta: weight = 1 strings: $a = "socket.socket(" condition: $a }
`

func writeRules(t *testing.T, dir, stem, src string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, stem+".yara"), []byte(src))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
