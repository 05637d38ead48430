package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/devapi"
)

func parseDevAPI(t *testing.T, args []string, env map[string]string) (devapi.Config, error) {
	t.Helper()
	s := newSettings("dragonfly devapi", devapiUsage)
	s.fs.SetOutput(new(bytes.Buffer))
	var f devapiFlags
	f.register(s)
	if err := s.Parse(args, envMap(env), ""); err != nil {
		return devapi.Config{}, err
	}
	return f.config()
}

func TestDevAPIFlags(t *testing.T) {
	cfg, err := parseDevAPI(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LeaseTimeout != 120*time.Second || cfg.MaxAttempts != 3 || cfg.Auth != "none" || cfg.TokenLifetime != time.Hour ||
		cfg.Files != nil || cfg.Rules != nil || cfg.Faults != (devapi.Faults{}) {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, err = parseDevAPI(t,
		[]string{"--max-attempts", "5", "--demo", "--report-error-rate", "0.25"},
		map[string]string{
			"DRAGONFLY_DEVAPI_MAX_ATTEMPTS":     "9", // the flag wins
			"DRAGONFLY_DEVAPI_LEASE_TIMEOUT":    "30",
			"DRAGONFLY_DEVAPI_AUTH":             "cloudflare",
			"DRAGONFLY_DEVAPI_CF_CLIENT_ID":     "id",
			"DRAGONFLY_DEVAPI_CF_CLIENT_SECRET": "secret",
			"DRAGONFLY_DEVAPI_LATENCY":          "15ms",
			"DRAGONFLY_DEVAPI_SYNTHETIC":        "7",
			"DRAGONFLY_DEVAPI_PUBLIC_URL":       "http://devapi:8000",
		})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxAttempts != 5 || cfg.LeaseTimeout != 30*time.Second || cfg.Auth != "cloudflare" || cfg.CFClientID != "id" ||
		cfg.CFClientSecret != "secret" || cfg.Faults.Latency != 15*time.Millisecond || cfg.Faults.ReportErrorRate != 0.25 ||
		cfg.Synthetic != 7 || cfg.PublicURL != "http://devapi:8000" || len(cfg.Files) == 0 || len(cfg.Rules) == 0 {
		t.Errorf("config = %+v", cfg)
	}
	for _, bad := range [][]string{
		{"--auth", "kerberos"}, {"--report-error-rate", "2"}, {"--report-error-rate", "x"}, {"--max-attempts", "0"}, {"--synthetic", "-1"},
	} {
		if _, err := parseDevAPI(t, bad, nil); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// logWatcher is stderr for the command under test: it hands the first
// "devapi listening" log record to addr.
type logWatcher struct {
	w    *io.PipeWriter
	addr chan string
}

func newLogWatcher(t *testing.T) *logWatcher {
	pr, pw := io.Pipe()
	lw := &logWatcher{w: pw, addr: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "devapi listening" {
				select {
				case lw.addr <- rec.Addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() { pw.Close() })
	return lw
}

func (lw *logWatcher) Write(p []byte) (int, error) { return lw.w.Write(p) }

// TestDevAPICommand runs `dragonfly devapi --demo` on a loopback port with
// Cloudflare auth from the environment, leases the demo jobs over HTTP,
// stops it through its context and checks the snapshot it leaves.
func TestDevAPICommand(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "state.json")
	lw := newLogWatcher(t)
	e := &env{
		stdin: strings.NewReader(""), stdout: io.Discard, stderr: lw, dir: t.TempDir(),
		getenv: envMap(map[string]string{
			"DRAGONFLY_DEVAPI_AUTH":             "cloudflare",
			"DRAGONFLY_DEVAPI_CF_CLIENT_ID":     "id",
			"DRAGONFLY_DEVAPI_CF_CLIENT_SECRET": "secret",
		}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, e, []string{"devapi", "--listen", "127.0.0.1:0", "--demo", "--snapshot", snap, "--log-format", "json"})
	}()
	var addr string
	select {
	case addr = <-lw.addr:
	case code := <-done:
		t.Fatalf("devapi exited with %d before listening", code)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/jobs?batch=100", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("lease without credentials: %d, want 302", resp.StatusCode)
	}
	req.Header.Set("CF-Access-Client-Id", "id")
	req.Header.Set("CF-Access-Client-Secret", "secret")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []struct {
		Name          string   `json:"name"`
		Distributions []string `json:"distributions"`
	}
	err = json.NewDecoder(resp.Body).Decode(&jobs)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(jobs) == 0 {
		t.Fatalf("lease: %d %v %+v", resp.StatusCode, err, jobs)
	}
	// The distribution URL points back at this server and needs no credentials.
	dl, err := http.Get(jobs[0].Distributions[0])
	if err != nil {
		t.Fatal(err)
	}
	dl.Body.Close()
	if !strings.HasPrefix(jobs[0].Distributions[0], "http://"+addr+"/packages/") || dl.StatusCode != http.StatusOK {
		t.Fatalf("download %s: %d", jobs[0].Distributions[0], dl.StatusCode)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit status %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("devapi did not stop within 30s of cancellation")
	}
	data, err := os.ReadFile(snap)
	if err != nil || !bytes.Contains(data, []byte(`"status":"pending"`)) {
		t.Fatalf("snapshot after shutdown: %v %.200s", err, data)
	}
}
