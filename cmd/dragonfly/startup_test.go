package main

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// logRecords decodes JSON log lines.
func logRecords(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		recs = append(recs, m)
	}
	return recs
}

func findRecords(recs []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// startStopped runs a long-running command with a context that has already
// ended: it parses, logs its startup and stops at once.
func startStopped(t *testing.T, vars map[string]string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: clitest.Env(vars), Dir: t.TempDir()}
	code := run(ctx, e, args)
	return code, stderr.String()
}

// TestStartupLogsConfiguration: coordinator, worker and local log their
// effective configuration once at startup, secrets as "set", with the
// effective limits and the era the size settings were read in.
func TestStartupLogsConfiguration(t *testing.T) {
	secrets := map[string]string{"DRAGONFLY_FLEET_TOKEN": "fleet-s3cret-0123456789", "DRAGONFLY_CLIENT_ID": "id.access", "DRAGONFLY_CLIENT_SECRET": "cs-s3cret"}
	vars := map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "100MB", "DRAGONFLY_BULK_SIZE": "7", "DRAGONFLY_LOG_FORMAT": "json",
		"DRAGONFLY_BASE_URL": "http://127.0.0.1:1", "DRAGONFLY_METRICS_ADDR": ""}
	for k, v := range secrets {
		vars[k] = v
	}
	tests := []struct {
		command string
		args    []string
		limits  bool
		api     bool
	}{
		{command: "coordinator", args: []string{"--listen-addr", "127.0.0.1:0"}, api: true},
		{command: "worker", args: []string{"--coordinator-addr", "127.0.0.1:1"}, limits: true},
		{command: "local", limits: true, api: true},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			_, out := startStopped(t, vars, append([]string{tt.command}, tt.args...)...)
			for _, v := range secrets {
				if v != "id.access" && strings.Contains(out, v) {
					t.Errorf("log shows a secret %q", v)
				}
			}
			recs := logRecords(t, out)
			cfgs := findRecords(recs, "effective configuration")
			if len(cfgs) != 1 {
				t.Fatalf("%d effective configuration records:\n%s", len(cfgs), out)
			}
			c := cfgs[0]
			if c["fleet_token"] != nil && c["fleet_token"] != "set" {
				t.Errorf("fleet_token = %v", c["fleet_token"])
			}
			if tt.command != "worker" {
				src, _ := c["sources"].(map[string]any)
				if c["bulk_size"] != 7.0 || c["heartbeat_interval"] != 5.0 || c["client_id"] != "set" || c["password"] != nil || src["bulk_size"] != "env DRAGONFLY_BULK_SIZE" {
					t.Errorf("configuration = %v", c)
				}
			}
			if tt.command != "coordinator" && c["max_scan_size"] != 100e6 {
				t.Errorf("max_scan_size = %v", c["max_scan_size"])
			}
			lims := findRecords(recs, "effective limits")
			if tt.limits {
				if len(lims) != 1 || lims[0]["era"] != string(limit.Era2023) || lims[0]["download_size"] != 100e6 || lims[0]["file_size"] != float64(64<<20) || lims[0]["scan_timeout"] != 10.0 {
					t.Errorf("limits = %v", lims)
				}
			} else if len(lims) != 0 {
				t.Errorf("coordinator logs worker limits: %v", lims)
			}
			apis := findRecords(recs, "dragonfly api")
			if tt.api && (len(apis) != 1 || !strings.HasPrefix(apis[0]["credentials"].(string), "cloudflare access service token (from DRAGONFLY_CLIENT_ID")) {
				t.Errorf("api records = %v", apis)
			}
		})
	}
}

// TestDefaultThreadsAreTheCPUsAvailable: unset, DRAGONFLY_THREADS is the
// CPUs the process may use, as the reference client's available_parallelism
// reads them: a container's CPU limit (which the Go runtime's GOMAXPROCS
// follows), not every CPU of the host. A worker limited to 2 CPUs on a
// 64-CPU node took 64 slots: the coordinator leased work for 64 scans at
// once that 2 CPUs finished past the 120 s lease.
func TestDefaultThreadsAreTheCPUsAvailable(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs to tell the CPU limit from the CPU count")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	vars := map[string]string{"DRAGONFLY_LOG_FORMAT": "json", "DRAGONFLY_BASE_URL": "http://127.0.0.1:1", "DRAGONFLY_METRICS_ADDR": "", "DRAGONFLY_INSECURE": "true"}
	for _, args := range [][]string{{"worker", "--coordinator-addr", "127.0.0.1:1"}, {"local"}} {
		_, out := startStopped(t, vars, args...)
		cfgs := findRecords(logRecords(t, out), "effective configuration")
		if len(cfgs) != 1 || cfgs[0]["threads"] != 1.0 {
			t.Errorf("%s: threads = %v with 1 CPU available of %d, want 1:\n%s", args[0], cfgs, runtime.NumCPU(), out)
		}
	}
}

// TestStartupHidesBaseURLCredentials: a base URL with credentials in it is
// refused, naming the setting, and neither the startup log nor the error
// shows the credentials.
func TestStartupHidesBaseURLCredentials(t *testing.T) {
	vars := map[string]string{"DRAGONFLY_FLEET_TOKEN": "fleet-s3cret-0123456789", "DRAGONFLY_LOG_FORMAT": "json",
		"DRAGONFLY_METRICS_ADDR": "", "DRAGONFLY_BASE_URL": "https://apiuser:hunter2@dragonfly.example"}
	code, out := startStopped(t, vars, "coordinator", "--listen-addr", "127.0.0.1:0")
	if code != 2 || !strings.Contains(out, "DRAGONFLY_BASE_URL") {
		t.Errorf("exit %d, want 2 naming DRAGONFLY_BASE_URL:\n%s", code, out)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "apiuser") {
		t.Errorf("output shows the URL's credentials:\n%s", out)
	}
}

// TestStatusWithoutTokenWarns: a coordinator serving its status page
// without a token, on an address others can reach, says so; on loopback,
// or with a token, it does not.
func TestStatusWithoutTokenWarns(t *testing.T) {
	const warning = "the status page needs no token"
	for _, tc := range []struct {
		name, addr, token string
		warn              bool
	}{
		{"all interfaces, no token", "0.0.0.0:0", "", true},
		{"loopback, no token", "127.0.0.1:0", "", false},
		{"all interfaces, a token", "0.0.0.0:0", "status-s3cret", false},
	} {
		vars := map[string]string{"DRAGONFLY_FLEET_TOKEN": "fleet-s3cret-0123456789", "DRAGONFLY_LOG_FORMAT": "json",
			"DRAGONFLY_BASE_URL": "http://127.0.0.1:1", "DRAGONFLY_METRICS_ADDR": tc.addr, "DRAGONFLY_STATUS_TOKEN": tc.token}
		code, out := startStopped(t, vars, "coordinator", "--listen-addr", "127.0.0.1:0")
		if code != 0 || strings.Contains(out, warning) != tc.warn {
			t.Errorf("%s: exit %d, warning %v, want exit 0 and warning %v:\n%s", tc.name, code, strings.Contains(out, warning), tc.warn, out)
		}
	}
}
