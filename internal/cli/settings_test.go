package cli

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/spf13/pflag"
)

func TestSettingsPrecedence(t *testing.T) {
	tests := []struct {
		name string
		src  clitest.Sources
		want int
	}{
		{name: "default", want: 1},
		{name: "Config.toml", src: clitest.Sources{TOML: "threads = 2"}, want: 2},
		{name: "Config-dev.toml over Config.toml", src: clitest.Sources{TOML: "threads = 2", DevTOML: "threads = 3"}, want: 3},
		{name: "env over files", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_THREADS": "4"}, TOML: "threads = 2", DevTOML: "threads = 3"}, want: 4},
		{name: "flag over all", src: clitest.Sources{Args: []string{"--threads", "5"}, Env: map[string]string{"DRAGONFLY_THREADS": "4"}, TOML: "threads = 2", DevTOML: "threads = 3"}, want: 5},
		{name: "flag=value form", src: clitest.Sources{Args: []string{"-threads=6"}, Env: map[string]string{"DRAGONFLY_THREADS": "4"}}, want: 6},
		{name: "empty env is unset", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_THREADS": ""}, TOML: "threads = 2"}, want: 2},
		{name: "upper-case TOML key", src: clitest.Sources{TOML: "THREADS = 7"}, want: 7},
		{name: "dev file alone", src: clitest.Sources{DevTOML: "threads = 8"}, want: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("test", "summary")
			var threads int
			var other string
			s.Var(Int(&threads, 1), "DRAGONFLY_THREADS", "scanner threads")
			s.Var(String(&other, "x"), "DRAGONFLY_OTHER", "another setting")
			if err := tt.src.Parse(t, s); err != nil {
				t.Fatal(err)
			}
			if threads != tt.want {
				t.Errorf("threads = %d, want %d", threads, tt.want)
			}
			if other != "x" {
				t.Errorf("an unset setting changed: %q", other)
			}
		})
	}
}

func TestSettingsAliases(t *testing.T) {
	envs := []string{"DRAGONFLY_MAX_SCAN_SIZE", "DRAGONFLY_MAX_SIZE", "DRAGONFLY_MAX_DOWNLOAD_SIZE"}
	tests := []struct {
		name string
		src  clitest.Sources
		want int64
	}{
		{name: "canonical", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "1000"}}, want: 1000},
		{name: "second name", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SIZE": "2000"}}, want: 2000},
		{name: "third name", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_DOWNLOAD_SIZE": "3000"}}, want: 3000},
		{name: "canonical wins", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SIZE": "2000", "DRAGONFLY_MAX_SCAN_SIZE": "1000"}}, want: 1000},
		{name: "TOML key of an alias", src: clitest.Sources{TOML: "max_size = 4000"}, want: 4000},
		{name: "env alias over TOML canonical", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SIZE": "2000"}, TOML: "max_scan_size = 4000"}, want: 2000},
		{name: "default", want: 128000000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("test", "summary")
			var size int64
			s.Var(Size(&size, 128000000), envs[0], "download cap").Alias(envs[1:]...)
			if err := tt.src.Parse(t, s); err != nil {
				t.Fatal(err)
			}
			if size != tt.want {
				t.Errorf("size = %d, want %d", size, tt.want)
			}
		})
	}
}

func TestSettingsBadValues(t *testing.T) {
	tests := []struct {
		name string
		src  clitest.Sources
		want string
	}{
		{name: "env integer", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_THREADS": "abc"}}, want: `DRAGONFLY_THREADS="abc": not an integer`},
		{name: "env duration", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_LOAD_DURATION": "soon"}}, want: `DRAGONFLY_LOAD_DURATION="soon": not a duration`},
		{name: "env negative duration", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_LOAD_DURATION": "-5"}}, want: `DRAGONFLY_LOAD_DURATION="-5": negative duration`},
		{name: "env size", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "12 parsecs"}}, want: `DRAGONFLY_MAX_SCAN_SIZE="12 parsecs": not a size`},
		{name: "env size zero", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "0"}}, want: `DRAGONFLY_MAX_SCAN_SIZE="0": size must be positive`},
		{name: "env alias named", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SIZE": "lots"}}, want: `DRAGONFLY_MAX_SIZE="lots": not a size`},
		{name: "env bool", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_PPROF": "yes please"}}, want: `DRAGONFLY_PPROF="yes please": not a boolean`},
		{name: "Config.toml", src: clitest.Sources{TOML: `threads = "abc"`}, want: `Config.toml: threads = "abc": not an integer`},
		{name: "Config-dev.toml", src: clitest.Sources{TOML: "threads = 2", DevTOML: `load_duration = "soon"`}, want: `Config-dev.toml: load_duration = "soon": not a duration`},
		{name: "malformed TOML", src: clitest.Sources{TOML: "threads = = 2"}, want: "Config.toml"},
		{name: "flag", src: clitest.Sources{Args: []string{"--threads", "abc"}}, want: `invalid argument "abc" for "--threads" flag: not an integer`},
		{name: "unknown flag", src: clitest.Sources{Args: []string{"--thread", "2"}}, want: "unknown flag: --thread (did you mean --threads?)"},
		{name: "single-dash unknown flag", src: clitest.Sources{Args: []string{"-thread=2"}}, want: "unknown shorthand flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("test", "summary")
			s.SetOutput(new(bytes.Buffer), new(bytes.Buffer))
			var threads int
			var load time.Duration
			var size int64
			var pprof bool
			s.Var(Int(&threads, 1), "DRAGONFLY_THREADS", "scanner threads")
			s.Var(Duration(&load, time.Minute), "DRAGONFLY_LOAD_DURATION", "idle poll")
			s.Var(Size(&size, 1000), "DRAGONFLY_MAX_SCAN_SIZE", "download cap").Alias("DRAGONFLY_MAX_SIZE")
			s.Var(Bool(&pprof, false), "DRAGONFLY_PPROF", "profiling")
			err := tt.src.Parse(t, s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// valueCase is one text of a setting, from the environment or, with toml,
// a line of Config.toml, and the value it must give.
type valueCase[T comparable] struct {
	in   string
	toml bool
	want T
}

// checkValues parses each case into the setting env that newValue makes
// and compares what it holds then.
func checkValues[T comparable](t *testing.T, env string, newValue func(*T) Value, cases []valueCase[T]) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.in, func(t *testing.T) {
			s := New("test", "summary")
			var got T
			s.Var(newValue(&got), env, "the setting under test")
			src := clitest.Sources{Env: map[string]string{env: tt.in}}
			if tt.toml {
				src = clitest.Sources{TOML: tt.in}
			}
			if err := src.Parse(t, s); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("%q = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSettingsDurations(t *testing.T) {
	checkValues(t, "DRAGONFLY_LOAD_DURATION", func(p *time.Duration) Value { return Duration(p, time.Hour) }, []valueCase[time.Duration]{
		{in: "60", want: time.Minute},
		{in: "0", want: 0},
		{in: "90s", want: 90 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: " 2h ", want: 2 * time.Hour},
		{in: "load_duration = 45", toml: true, want: 45 * time.Second},
		{in: `load_duration = "2m"`, toml: true, want: 2 * time.Minute},
	})
}

func TestSettingsSizes(t *testing.T) {
	checkValues(t, "DRAGONFLY_MAX_SCAN_SIZE", func(p *int64) Value { return Size(p, 1) }, []valueCase[int64]{
		{in: "128000000", want: 128000000},
		{in: "512MiB", want: 512 << 20},
		{in: "64 MiB", want: 64 << 20},
		{in: "10KiB", want: 10 << 10},
		{in: "2GiB", want: 2 << 30},
		{in: "64MB", want: 64_000_000},
		{in: "5KB", want: 5000},
		{in: "1GB", want: 1_000_000_000},
		{in: "300B", want: 300},
		{in: "max_scan_size = 128000000", toml: true, want: 128000000},
		{in: "max_scan_size = 1.28e8", toml: true, want: 128000000},
		{in: `max_scan_size = "16MiB"`, toml: true, want: 16 << 20},
	})
}

func TestSettingsListsAndBools(t *testing.T) {
	s := New("test", "summary")
	var hosts []string
	var pprof, quiet bool
	s.Var(List(&hosts, []string{"files.pythonhosted.org"}), "DRAGONFLY_ALLOW_HOSTS", "download hosts")
	s.Var(Bool(&pprof, false), "DRAGONFLY_PPROF", "profiling")
	s.Var(Bool(&quiet, false), "DRAGONFLY_QUIET", "less output")
	err := s.Parse([]string{"--quiet", "rest"}, clitest.Env(map[string]string{"DRAGONFLY_PPROF": "1"}), clitest.ConfigDir(t, `allow_hosts = ["a.example", " b.example "]`, ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || hosts[0] != "a.example" || hosts[1] != "b.example" || !pprof || !quiet {
		t.Errorf("hosts %q pprof %v quiet %v", hosts, pprof, quiet)
	}
	if args := s.Args(); len(args) != 1 || args[0] != "rest" {
		t.Errorf("args = %q", args)
	}
}

func TestSettingsUsage(t *testing.T) {
	s := New("dragonfly test", "usage: dragonfly test [flags]")
	var out bytes.Buffer
	s.SetOutput(&out, new(bytes.Buffer))
	var threads int
	var secret string
	var load time.Duration
	s.Var(Int(&threads, 4), "DRAGONFLY_THREADS", "scanner threads")
	s.Var(String(&secret, ""), "DRAGONFLY_PASSWORD", "a secret")
	s.Var(Duration(&load, time.Minute), "DRAGONFLY_LOAD_DURATION", "idle poll")
	var req string
	s.FlagP(String(&req, ""), "requirement", "r", "a requirements file")
	// The environment is read after the flags, so --help must not print it.
	err := s.Parse([]string{"--help"}, clitest.Env(map[string]string{"DRAGONFLY_PASSWORD": "hunter2", "DRAGONFLY_THREADS": "99"}), "")
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("err = %v, want pflag.ErrHelp", err)
	}
	help := out.String()
	for _, want := range []string{"usage: dragonfly test [flags]", "--threads int   [env DRAGONFLY_THREADS]", "scanner threads (default 4)", "idle poll (default 1m)", "--password string   [env DRAGONFLY_PASSWORD]", "  -r, --requirement string\n"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "hunter2") || strings.Contains(help, "99") {
		t.Errorf("help shows an environment value:\n%s", help)
	}
}

// TestUsageSaysWhichSourcesTheCommandReads: the help's header names the
// config files only for a command that reads them (Parse given a
// directory), and a command without settings prints no empty Flags section.
func TestUsageSaysWhichSourcesTheCommandReads(t *testing.T) {
	help := func(dir string, settings func(*Settings)) string {
		s := New("dragonfly test", "usage: dragonfly test [flags]")
		var out bytes.Buffer
		s.SetOutput(&out, new(bytes.Buffer))
		settings(s)
		if err := s.Parse([]string{"--help"}, clitest.Env(nil), dir); !errors.Is(err, pflag.ErrHelp) {
			t.Fatalf("err = %v, want pflag.ErrHelp", err)
		}
		return out.String()
	}
	var threads int
	var path string
	withEnv := func(s *Settings) { s.Var(Int(&threads, 4), "DRAGONFLY_THREADS", "scanner threads") }
	flagOnly := func(s *Settings) { s.Flag(String(&path, ""), "out", "where to write") }
	for _, tc := range []struct {
		name, dir string
		settings  func(*Settings)
		want      []string
		not       []string
	}{
		{"config files", t.TempDir(), withEnv, []string{"Config.toml", "--config", "--threads"}, nil},
		{"environment only", "", withEnv, []string{"this command reads no\nconfig file", "--threads"}, []string{"Config.toml", "--config"}},
		{"flags only", "", flagOnly, []string{"\nFlags:\n", "--out"}, []string{"Config.toml", "environment"}},
		{"no settings", "", func(*Settings) {}, []string{"usage: dragonfly test [flags]\n"}, []string{"Flags"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := help(tc.dir, tc.settings)
			for _, w := range tc.want {
				if !strings.Contains(h, w) {
					t.Errorf("help lacks %q:\n%s", w, h)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(h, n) {
					t.Errorf("help has %q:\n%s", n, h)
				}
			}
		})
	}
}

// TestAsGiven: a usage error about a setting given as a flag names the
// flag; about one from the environment, or about no setting, it is left
// as it is.
func TestAsGiven(t *testing.T) {
	s := New("dragonfly test", "usage: dragonfly test [flags]")
	s.SetOutput(new(bytes.Buffer), new(bytes.Buffer))
	var threads, bulk int
	s.Var(Int(&threads, 4), "DRAGONFLY_THREADS", "scanner threads")
	s.Var(Int(&bulk, 20), "DRAGONFLY_BULK_SIZE", "jobs per lease")
	if err := s.Parse([]string{"--threads", "0"}, clitest.Env(map[string]string{"DRAGONFLY_BULK_SIZE": "0"}), ""); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"DRAGONFLY_THREADS=0: must be positive":   "--threads=0: must be positive",
		"DRAGONFLY_THREADS: empty":                "--threads: empty",
		"DRAGONFLY_BULK_SIZE=0: must be positive": "DRAGONFLY_BULK_SIZE=0: must be positive",
		"unexpected arguments: x":                 "unexpected arguments: x",
		"DRAGONFLY_OTHER=1: no such setting":      "DRAGONFLY_OTHER=1: no such setting",
	} {
		if got := s.asGiven(in); got != want {
			t.Errorf("asGiven(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAsGivenNamesTheVariableOrKeyGiven: a usage error naming a variable
// of a setting set from another of its variables, or from a config file,
// names the variable (the key) that was set: devapi's log level read from
// DRAGONFLY_DEVAPI_LOG_LEVEL=bogus was refused as DRAGONFLY_LOG_LEVEL, which
// was not set.
func TestAsGivenNamesTheVariableOrKeyGiven(t *testing.T) {
	dir := t.TempDir()
	clitest.WriteFile(t, filepath.Join(dir, "Config.toml"), "devapi_log_format = \"xml\"\n", 0o600)
	s := New("dragonfly test", "usage: dragonfly test [flags]")
	s.SetOutput(new(bytes.Buffer), new(bytes.Buffer))
	var level, format string
	s.Var(String(&level, "info"), "DRAGONFLY_DEVAPI_LOG_LEVEL", "log level").Alias("DRAGONFLY_LOG_LEVEL")
	s.Var(String(&format, "auto"), "DRAGONFLY_DEVAPI_LOG_FORMAT", "log format").Alias("DRAGONFLY_LOG_FORMAT")
	if err := s.Parse(nil, clitest.Env(map[string]string{"DRAGONFLY_DEVAPI_LOG_LEVEL": "bogus"}), dir); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		`DRAGONFLY_LOG_LEVEL="bogus": not one of debug, info, warn, error`: `DRAGONFLY_DEVAPI_LOG_LEVEL="bogus": not one of debug, info, warn, error`,
		`DRAGONFLY_LOG_FORMAT="xml": not one of text, json, auto`:          `Config.toml: devapi_log_format = "xml": not one of text, json, auto`,
	} {
		if got := s.asGiven(in); got != want {
			t.Errorf("asGiven(%q) = %q, want %q", in, got, want)
		}
	}
}
