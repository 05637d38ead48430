package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/devapi"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
)

func parseDevAPI(t *testing.T, args []string, env map[string]string) (devapi.Config, error) {
	t.Helper()
	_, cfg, err := parseDevAPIFlags(t, args, env)
	return cfg, err
}

func parseDevAPIFlags(t *testing.T, args []string, env map[string]string) (devapiFlags, devapi.Config, error) {
	t.Helper()
	s := program.Settings("dragonfly devapi", help("devapi"))
	s.SetOutput(new(bytes.Buffer), new(bytes.Buffer))
	var f devapiFlags
	f.register(s)
	if err := s.Parse(args, clitest.Env(env), ""); err != nil {
		return f, devapi.Config{}, err
	}
	cfg, err := f.config()
	return f, cfg, err
}

func TestDevAPIFlags(t *testing.T) {
	f, cfg, err := parseDevAPIFlags(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.listen != "127.0.0.1:8000" {
		t.Errorf("default listen address %q, want loopback 127.0.0.1:8000", f.listen)
	}
	if cfg.LeaseTimeout != 120*time.Second || cfg.MaxAttempts != 3 || cfg.Auth != "none" || cfg.TokenLifetime != time.Hour ||
		cfg.Files != nil || cfg.Rules != nil || cfg.Faults != (devapi.Faults{}) || cfg.CFServiceTokens != nil || cfg.Auth0Users != nil {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, err = parseDevAPI(t,
		[]string{"--max-attempts", "5", "--demo", "--report-error-rate", "0.25"},
		map[string]string{
			"DRAGONFLY_DEVAPI_MAX_ATTEMPTS":      "9", // the flag wins
			"DRAGONFLY_DEVAPI_LEASE_TIMEOUT":     "30",
			"DRAGONFLY_DEVAPI_AUTH":              "cloudflare",
			"DRAGONFLY_DEVAPI_CF_CLIENT_ID":      "id",
			"DRAGONFLY_DEVAPI_CF_CLIENT_SECRET":  "secret",
			"DRAGONFLY_DEVAPI_LATENCY":           "15ms",
			"DRAGONFLY_DEVAPI_SYNTHETIC":         "7",
			"DRAGONFLY_DEVAPI_PUBLIC_URL":        "http://devapi:8000",
			"DRAGONFLY_DEVAPI_LISTEN":            ":8000",
			"DRAGONFLY_DEVAPI_CF_SERVICE_TOKENS": "second.access=s2, third.access=s3==",
			"DRAGONFLY_DEVAPI_AUTH0_USERS":       "other=pw",
		})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxAttempts != 5 || cfg.LeaseTimeout != 30*time.Second || cfg.Auth != "cloudflare" || cfg.CFClientID != "id" ||
		cfg.CFClientSecret != "secret" || cfg.Faults.Latency != 15*time.Millisecond || cfg.Faults.ReportErrorRate != 0.25 ||
		cfg.Synthetic != 7 || cfg.PublicURL != "http://devapi:8000" || len(cfg.Files) == 0 || len(cfg.Rules) == 0 {
		t.Errorf("config = %+v", cfg)
	}
	if want := map[string]string{"second.access": "s2", "third.access": "s3=="}; !maps.Equal(cfg.CFServiceTokens, want) {
		t.Errorf("service tokens = %v, want %v", cfg.CFServiceTokens, want)
	}
	if want := map[string]string{"other": "pw"}; !maps.Equal(cfg.Auth0Users, want) {
		t.Errorf("auth0 users = %v, want %v", cfg.Auth0Users, want)
	}
	for _, bad := range [][]string{
		{"--auth", "kerberos"}, {"--report-error-rate", "2"}, {"--report-error-rate", "x"}, {"--max-attempts", "0"}, {"--synthetic", "-1"},
		{"--cf-service-tokens", "id"}, {"--cf-service-tokens", "=secret"}, {"--cf-service-tokens", "a=1,a=2"}, {"--auth0-users", "u="},
	} {
		if _, err := parseDevAPI(t, bad, nil); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// devapiUsage is what dragonfly devapi --help prints.
func devapiUsage() string {
	s := program.Settings("dragonfly devapi", help("devapi"))
	var f devapiFlags
	f.register(s)
	var out bytes.Buffer
	s.Usage(&out)
	return out.String()
}

// TestDevAPIUsageAndSecrets: the help says where the server listens and
// that /_dev/ takes the API's credentials, shows no secret, and secrets may
// come from files.
func TestDevAPIUsageAndSecrets(t *testing.T) {
	help := devapiUsage()
	for _, want := range []string{"127.0.0.1:8000", "take the API's credentials", "--cf-service-tokens", "--auth0-users"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	secret := filepath.Join(t.TempDir(), "cf-secret")
	if err := os.WriteFile(secret, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseDevAPI(t, []string{"--auth", "cloudflare", "--cf-client-id", "id"},
		map[string]string{"DRAGONFLY_DEVAPI_CF_CLIENT_SECRET_FILE": secret})
	if err != nil || cfg.CFClientSecret != "from-a-file" {
		t.Fatalf("secret from a file: %q, %v", cfg.CFClientSecret, err)
	}
}

// TestDevAPIHelpNamesCurrentFlags: the help's own text names the flags by
// their current spelling, not the deprecated ones that warn (--listen,
// --cf-client-id), which go away in the next release.
func TestDevAPIHelpNamesCurrentFlags(t *testing.T) {
	help := devapiUsage()
	for _, old := range []string{"--listen ", "--cf-client-id", "--cf-client-secret"} {
		if strings.Contains(help, old) {
			t.Errorf("help names the deprecated %q:\n%s", strings.TrimSpace(old), help)
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
	e := &cli.Env{
		Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: lw, Dir: t.TempDir(),
		Getenv: clitest.Env(map[string]string{
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
	// The development routes take the same credentials.
	for _, hdr := range [][]string{nil, {"CF-Access-Client-Id", "id", "CF-Access-Client-Secret", "secret"}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/_dev/stats", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: http.StatusFound, true: http.StatusOK}[hdr != nil]; resp.StatusCode != want {
			t.Fatalf("GET /_dev/stats with %v: %d, want %d", hdr, resp.StatusCode, want)
		}
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
	// A request waiting for reports when the server stops is answered, not
	// dropped at the shutdown deadline.
	devStats := func(query string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/_dev/stats"+query, nil)
		req.Header.Set("CF-Access-Client-Id", "id")
		req.Header.Set("CF-Access-Client-Secret", "secret")
		return client.Do(req)
	}
	waited := make(chan error, 1)
	go func() {
		resp, err := devStats("?accepted=1000&wait=1m")
		if err == nil {
			var st devapi.Stats
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != http.StatusOK || st.Leases == 0) {
				err = fmt.Errorf("answered %d with %+v", resp.StatusCode, st)
			}
		}
		waited <- err
	}()
	// Wait until the server holds the request (stats_waiting), asking
	// again at once: no sleep, bounded by the test's deadline.
	for waiting := 0; waiting == 0; {
		resp, err := devStats("")
		if err != nil {
			t.Fatal(err)
		}
		var st devapi.Stats
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		waiting = st.StatsWaiting
	}
	cancel()
	if err := <-waited; err != nil {
		t.Errorf("GET /_dev/stats?accepted=1000 waiting at shutdown: %v", err)
	}
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
