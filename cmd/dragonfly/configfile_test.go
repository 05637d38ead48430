package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// parseCoordinator parses the coordinator's settings, as dragonfly
// coordinator does, and returns them with the warnings written.
func parseCoordinator(t *testing.T, args []string, env map[string]string, dir string) (*coordinatorCmd, *cli.Settings, string, error) {
	t.Helper()
	var c coordinatorCmd
	s := program.Settings("dragonfly coordinator", "summary")
	var stdout, stderr bytes.Buffer
	s.SetOutput(&stdout, &stderr)
	c.register(s)
	err := s.Parse(args, clitest.Env(env), dir)
	return &c, s, stderr.String(), err
}

func TestConfigFileKeys(t *testing.T) {
	tests := []struct {
		name          string
		toml, devToml string
		want          string // substring of the error; "" for none
		notWant       string
	}{
		{name: "known keys", toml: "bulk_size = 7\nheartbeat_interval = \"2s\"\nbase_url = \"http://127.0.0.1:8000\""},
		{name: "a key only the worker reads is fine for the coordinator", toml: "threads = 3\nmax_file_size = \"1MiB\"\nworker_metrics_addr = \":9091\""},
		{name: "a key only scan reads is fine too", toml: "format = \"json\"\nrules = \"/rules\"\nfail_score = 5"},
		{name: "secret file key", toml: "password_file = \"/nonexistent\""}, // the coordinator reads it: an error, but not an unknown key
		{name: "typo", toml: "bulk_sise = 7", want: `Config.toml: unknown key "bulk_sise" (did you mean bulk_size?)`},
		{name: "typo in the dev file", toml: "bulk_size = 7", devToml: "heartbeat_intervall = \"1s\"", want: `Config-dev.toml: unknown key "heartbeat_intervall" (did you mean heartbeat_interval?)`},
		{name: "variable name as key", toml: `DRAGONFLY_BASE_URL = "http://x"`, want: `Config.toml: unknown key "DRAGONFLY_BASE_URL": keys are written without DRAGONFLY_ and in lower case: base_url`},
		{name: "lower-case variable name as key", toml: `dragonfly_bulk_size = 3`, want: "keys are written without DRAGONFLY_ and in lower case: bulk_size"},
		{name: "far from anything", toml: `zzzzqqqq = 1`, want: `unknown key "zzzzqqqq"`, notWant: "did you mean"},
		{name: "the config file itself is no key", toml: `config = "other.toml"`, want: `unknown key "config"`},
		{name: "every unknown key is named", toml: "bulk_sise = 1\nthreds = 2", want: `unknown key "threds" (did you mean threads?)`},
		{name: "table", toml: "[api]\nbase_url = \"x\"", want: `Config.toml: "api": a table is not a setting (flat keys only`},
		{name: "table of a known name", toml: "[base_url]\nx = 1", want: `Config.toml: "base_url": a table is not a setting (flat keys only`},
		{name: "inline table", toml: `allowed_hosts = { a = 1 }`, want: `"allowed_hosts": a table is not a setting`},
		{name: "array of tables", toml: "[[allowed_hosts]]\na = 1", want: `"allowed_hosts": a table is not a setting`},
		{name: "array holding a table", toml: `allowed_hosts = ["a", { b = 1 }]`, want: "allowed_hosts: a table is not a setting"},
		{name: "nested array", toml: `allowed_hosts = [["a"], ["b"]]`, want: "allowed_hosts: nested arrays are not settings"},
		{name: "date", toml: `load_duration = 1979-05-27`, want: "load_duration: a date is not a setting"},
		{name: "same key twice in two cases", toml: "bulk_size = 1\nBULK_SIZE = 2", want: `keys "BULK_SIZE" and "bulk_size" are one key`},
		{name: "value error names file and key", toml: `bulk_size = "x"`, want: `Config.toml: bulk_size = "x": not an integer`},
		{name: "value error in the dev file", devToml: `heartbeat_interval = "soon"`, want: `Config-dev.toml: heartbeat_interval = "soon": not a duration`},
		{name: "malformed", toml: "bulk_size = = 2", want: "Config.toml: toml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := parseCoordinator(t, nil, nil, clitest.ConfigDir(t, tt.toml, tt.devToml))
			if tt.want == "" {
				if err != nil && strings.Contains(err.Error(), "unknown key") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("err = %v, should not contain %q", err, tt.notWant)
			}
			if code := exitCode(err); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
		})
	}
}

func exitCode(err error) int {
	var ee *cli.ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return -1
}

// TestConfigFileValues: values of every type reach the settings; arrays join
// with commas.
func TestConfigFileValues(t *testing.T) {
	toml := `
bulk_size = 7
heartbeat_interval = "2s"
load_duration = 45
pprof = true
base_url = "http://127.0.0.1:8000"
`
	c, _, _, err := parseCoordinator(t, nil, nil, clitest.ConfigDir(t, toml, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.f.coord.BulkSize != 7 || c.f.coord.HeartbeatInterval != 2*time.Second || c.f.coord.LoadDuration != 45*time.Second || !c.f.pprof || c.f.api.BaseURL != "http://127.0.0.1:8000" {
		t.Errorf("config = %+v", c.f)
	}
	var w workerCmd
	s := program.Settings("dragonfly worker", "")
	w.register(s)
	if err := s.Parse(nil, clitest.Env(nil), clitest.ConfigDir(t, `allowed_hosts = ["a.example", "http://b.example:8000"]`, "")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(w.f.cfg.Fetch.AllowedHosts, "|"); got != "a.example|http://b.example:8000" {
		t.Errorf("allowed hosts %q", got)
	}
}

// TestConfigFlag: --config and DRAGONFLY_CONFIG name one file that replaces
// Config.toml and Config-dev.toml.
func TestConfigFlag(t *testing.T) {
	dir := clitest.ConfigDir(t, "bulk_size = 2", "bulk_size = 3")
	other := clitest.WriteFile(t, filepath.Join(t.TempDir(), "fleet.toml"), "bulk_size = 9", 0o600)
	broken := clitest.WriteFile(t, filepath.Join(t.TempDir(), "broken.toml"), "bulk_sise = 9", 0o600)

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want int
		err  string
	}{
		{name: "default files", want: 3},
		{name: "--config replaces both", args: []string{"--config", other}, want: 9},
		{name: "--config=", args: []string{"--config=" + other}, want: 9},
		{name: "DRAGONFLY_CONFIG", env: map[string]string{"DRAGONFLY_CONFIG": other}, want: 9},
		{name: "flag over variable", args: []string{"--config", other}, env: map[string]string{"DRAGONFLY_CONFIG": broken}, want: 9},
		{name: "env still wins over the file", args: []string{"--config", other}, env: map[string]string{"DRAGONFLY_BULK_SIZE": "4"}, want: 4},
		{name: "named file must exist", args: []string{"--config", filepath.Join(dir, "nope.toml")}, err: "config file " + filepath.Join(dir, "nope.toml")},
		{name: "named file is checked, under its path", args: []string{"--config", broken}, err: broken + `: unknown key "bulk_sise" (did you mean bulk_size?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s, _, err := parseCoordinator(t, tt.args, tt.env, dir)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.f.coord.BulkSize != tt.want {
				t.Errorf("bulk size %d, want %d (files %v)", c.f.coord.BulkSize, tt.want, s.Files())
			}
		})
	}
}

// TestConfigFileDeprecatedKey: an old key works with a warning naming the new
// one; old and new in one file are an error.
func TestConfigFileDeprecatedKey(t *testing.T) {
	var c scanConfig
	s := program.Settings("dragonfly scan", "")
	var stderr bytes.Buffer
	s.SetOutput(new(bytes.Buffer), &stderr)
	c.register(s)
	if err := s.Parse(nil, clitest.Env(nil), clitest.ConfigDir(t, `scan_format = "sarif"`, "")); err != nil {
		t.Fatal(err)
	}
	if c.format != "sarif" || !strings.Contains(stderr.String(), "Config.toml: scan_format is deprecated: use format") {
		t.Errorf("format %q, stderr %q", c.format, stderr.String())
	}
	s = program.Settings("dragonfly scan", "")
	c.register(s)
	err := s.Parse(nil, clitest.Env(nil), clitest.ConfigDir(t, "scan_format = \"sarif\"\nformat = \"json\"", ""))
	if err == nil || !strings.Contains(err.Error(), "Config.toml: format and scan_format are both set: they are one setting (DRAGONFLY_FORMAT)") {
		t.Errorf("err = %v", err)
	}
}

// TestLimitsAcrossSources: the era is decided after flags, environment and
// config files are merged, whichever source set each of the four.
func TestLimitsAcrossSources(t *testing.T) {
	tests := []struct {
		name     string
		src      clitest.Sources
		download int64
		file     int64
		era      limit.Era
	}{
		{name: "2023 environment", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "100"}}, download: 100, file: limit.DefaultFile, era: limit.Era2023},
		{name: "2023 Config.toml", src: clitest.Sources{TOML: "max_scan_size = 100"}, download: 100, file: limit.DefaultFile, era: limit.Era2023},
		{name: "2023 flag", src: clitest.Sources{Args: []string{"--max-scan-size", "100"}}, download: 100, file: limit.DefaultFile, era: limit.Era2023},
		{name: "2026 environment", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_DOWNLOAD_SIZE": "32MiB", "DRAGONFLY_MAX_SCAN_SIZE": "16MiB"}}, download: 32 << 20, file: 16 << 20, era: limit.Era2026},
		{name: "2026 split: download in Config.toml, scan size in the environment", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "16MiB"}, TOML: `max_download_size = "32MiB"`}, download: 32 << 20, file: 16 << 20, era: limit.Era2026},
		{name: "2026 split: download by flag, scan size in Config-dev.toml", src: clitest.Sources{Args: []string{"--max-download-size=32MiB"}, DevTOML: `max_scan_size = "16MiB"`}, download: 32 << 20, file: 16 << 20, era: limit.Era2026},
		{name: "2026 split over both files", src: clitest.Sources{TOML: `max_scan_size = "16MiB"`, DevTOML: `max_download_size = "32MiB"`}, download: 32 << 20, file: 16 << 20, era: limit.Era2026},
		{name: "2023 env MAX_SIZE with a TOML file cap", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SIZE": "200"}, TOML: "max_file_size = 7"}, download: 200, file: 7, era: limit.Era2023},
		{name: "flag over env for the same variable", src: clitest.Sources{Args: []string{"--max-scan-size", "300"}, Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "100"}}, download: 300, file: limit.DefaultFile, era: limit.Era2023},
		{name: "defaults", download: limit.DefaultDownload, file: limit.DefaultFile, era: limit.EraDefault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w workerCmd
			s := program.Settings("dragonfly worker", "")
			w.register(s)
			if err := tt.src.Parse(t, s); err != nil {
				t.Fatal(err)
			}
			if err := w.f.validate(); err != nil {
				t.Fatal(err)
			}
			if w.f.cfg.Limits.Download != tt.download || w.f.cfg.Limits.File != tt.file || w.f.sizes.Era != tt.era {
				t.Errorf("download %d file %d era %q; want %d %d %q", w.f.cfg.Limits.Download, w.f.cfg.Limits.File, w.f.sizes.Era, tt.download, tt.file, tt.era)
			}
		})
	}
}

func TestLogLimits(t *testing.T) {
	var w workerCmd
	s := program.Settings("dragonfly worker", "")
	w.register(s)
	env := map[string]string{"DRAGONFLY_MAX_DOWNLOAD_SIZE": "32MiB", "DRAGONFLY_MAX_SCAN_SIZE": "16MiB", "DRAGONFLY_MAX_SIZE": "1GB", "DRAGONFLY_SCAN_TIMEOUT": "30"}
	if err := s.Parse(nil, clitest.Env(env), ""); err != nil {
		t.Fatal(err)
	}
	if err := w.f.validate(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w.f.sizes.Log(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: cli.DurationSeconds})), w.f.cfg.Limits)
	out := buf.String()
	for _, want := range []string{`"msg":"effective limits","era":"2026 client","download_size":33554432,"expanded_size":536870912,"file_size":16777216,"archive_entries":65536,"scan_timeout":30,"match_memory":67108864}`,
		`"msg":"limit setting ignored","setting":"DRAGONFLY_MAX_SIZE`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if w.f.cfg.Limits.ScanTimeout != 30*time.Second {
		t.Errorf("scan timeout %v", w.f.cfg.Limits.ScanTimeout)
	}
}

// TestWorkerMatchCacheSetting: DRAGONFLY_MATCH_CACHE_SIZE (or
// --match-cache-size) reaches the worker's configuration: 0 and off turn
// the cache off (NoMatchCache), a size sets it, unset is the default.
func TestWorkerMatchCacheSetting(t *testing.T) {
	for _, tc := range []struct {
		env    map[string]string
		args   []string
		size   int64
		noneOn bool
	}{
		{size: scan.DefaultMatchCacheSize},
		{env: map[string]string{"DRAGONFLY_MATCH_CACHE_SIZE": "0"}, noneOn: true},
		{env: map[string]string{"DRAGONFLY_MATCH_CACHE_SIZE": "off"}, noneOn: true},
		{args: []string{"--match-cache-size", "off"}, noneOn: true},
		{env: map[string]string{"DRAGONFLY_MATCH_CACHE_SIZE": "8MiB"}, size: 8 << 20},
	} {
		var c workerCmd
		s := program.Settings("dragonfly worker", "summary")
		s.SetOutput(io.Discard, io.Discard)
		c.register(s)
		if err := s.Parse(tc.args, clitest.Env(tc.env), t.TempDir()); err != nil {
			t.Fatalf("%v %v: %v", tc.env, tc.args, err)
		}
		cfg := c.f.config(slog.New(slog.DiscardHandler))
		if cfg.NoMatchCache != tc.noneOn || !tc.noneOn && cfg.MatchCacheSize != tc.size {
			t.Errorf("%v %v: NoMatchCache %v, size %d; want %v, %d", tc.env, tc.args, cfg.NoMatchCache, cfg.MatchCacheSize, tc.noneOn, tc.size)
		}
	}
}
