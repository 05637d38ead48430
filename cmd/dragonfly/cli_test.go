package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/worker"
)

// command is the command name of dragonfly.
func command(t *testing.T, name string) cli.Command {
	t.Helper()
	c, ok := program.Lookup(name)
	if !ok {
		t.Fatalf("no command %s", name)
	}
	return c
}

// runCLI runs dragonfly with args and returns the exit status and output.
func runCLI(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: clitest.Env(vars), Dir: t.TempDir()}
	code := run(context.Background(), e, args)
	return code, stdout.String(), stderr.String()
}

// TestHelp: help in every spelling goes to stdout with status 0; usage
// errors go to stderr with status 2.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"help"}} {
		code, out, errOut := runCLI(t, nil, args...)
		if code != 0 || !strings.Contains(out, "usage: dragonfly <command>") || !strings.Contains(out, "coordinator") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	for _, c := range program.Commands() {
		name := c.Name
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {name, "-help"}, {"help", name}} {
			code, out, errOut := runCLI(t, nil, args...)
			if code != 0 || !strings.Contains(out, "usage: dragonfly "+name) || errOut != "" {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		}
	}
	code, out, errOut := runCLI(t, nil)
	if code != 2 || out != "" || !strings.Contains(errOut, "usage: dragonfly <command>") {
		t.Errorf("no command: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, nil, "frobnicate")
	if code != 2 || out != "" || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, nil, "worker", "--threads", "x")
	if code != 2 || out != "" || !strings.Contains(errOut, `dragonfly worker: invalid argument "x" for "--threads" flag: not an integer (see --help)`) {
		t.Errorf("bad flag: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, nil, "coordinator", "--bulk-sise", "3")
	if code != 2 || !strings.Contains(errOut, "unknown flag: --bulk-sise (did you mean --bulk-size?)") {
		t.Errorf("unknown flag: exit %d, stderr %q", code, errOut)
	}
}

// TestHelpText: placeholders name the type, defaults are written as people
// write them, secrets show no default or value.
func TestHelpText(t *testing.T) {
	vars := map[string]string{"DRAGONFLY_FLEET_TOKEN": "fleet-s3cret", "DRAGONFLY_PASSWORD": "pw-s3cret", "DRAGONFLY_THREADS": "77"}
	_, scanHelp, _ := runCLI(t, vars, "scan", "--help")
	_, workerHelp, _ := runCLI(t, vars, "worker", "--help")
	_, coordHelp, _ := runCLI(t, vars, "coordinator", "--help")
	for _, want := range []string{
		"--threads int   [env DRAGONFLY_THREADS]", "scanner threads (default number of CPUs available)",
		"--max-file-size size   [env DRAGONFLY_MAX_FILE_SIZE]", "--max-expanded-size size", "(default 512MiB)",
		"--scan-timeout duration   [env DRAGONFLY_SCAN_TIMEOUT]", "(default 10s)",
		"--allowed-hosts list   [env DRAGONFLY_ALLOWED_HOSTS]", "--rules string   [env DRAGONFLY_RULES]",
		"--rules-from-api   [env DRAGONFLY_RULES_FROM_API]", "--demo-rules   [env DRAGONFLY_DEMO_RULES]",
		"--format string   [env DRAGONFLY_FORMAT]", "--max-download-size size   [env DRAGONFLY_MAX_DOWNLOAD_SIZE]",
		"--config string   [env DRAGONFLY_CONFIG]", "--password string   [env DRAGONFLY_PASSWORD, DRAGONFLY_PASSWORD_FILE]",
	} {
		if !strings.Contains(scanHelp, want) {
			t.Errorf("scan help lacks %q", want)
		}
	}
	for _, want := range []string{"--memory-limit size", "(default none)", "(default 25s)", "--worker-metrics-addr string", "--coordinator-addr string", "(default files.pythonhosted.org)"} {
		if !strings.Contains(workerHelp, want) {
			t.Errorf("worker help lacks %q", want)
		}
	}
	for _, want := range []string{"--heartbeat-interval duration   [env DRAGONFLY_HEARTBEAT_INTERVAL]", "(default 5s)", "(default 1m)", "(default 2m)",
		"--outbox-path string   [env DRAGONFLY_OUTBOX_PATH]", "--listen-addr string   [env DRAGONFLY_LISTEN_ADDR]", "(default :50051)",
		"--fleet-token string   [env DRAGONFLY_FLEET_TOKEN, DRAGONFLY_FLEET_TOKEN_FILE]"} {
		if !strings.Contains(coordHelp, want) {
			t.Errorf("coordinator help lacks %q", want)
		}
	}
	// The status help names the coordinator's metrics port.
	if _, statusHelp, _ := runCLI(t, nil, "status", "--help"); !strings.Contains(statusHelp, "port "+coordinator.DefaultMetricsPort+")") {
		t.Errorf("status help lacks the metrics port %s", coordinator.DefaultMetricsPort)
	}
	for name, help := range map[string]string{"scan": scanHelp, "worker": workerHelp, "coordinator": coordHelp} {
		for _, bad := range []string{"fleet-s3cret", "pw-s3cret", "77", "4611686018427387904", "1m0s", "value   [env", "--heartbeat ", "--outbox ", "--listen "} {
			if strings.Contains(help, bad) {
				t.Errorf("%s help shows %q", name, bad)
			}
		}
	}
	// The build (or test) machine's CPU count is no default.
	for name, help := range map[string]string{"scan": scanHelp, "worker": workerHelp} {
		_, after, _ := strings.Cut(help, "--threads int   [env DRAGONFLY_THREADS]\n")
		line, _, _ := strings.Cut(after, "\n")
		if !strings.HasSuffix(line, "(default number of CPUs available)") || strings.Contains(line, strconv.Itoa(runtime.NumCPU())) {
			t.Errorf("%s: --threads usage %q", name, line)
		}
	}
}

// TestVersion: --version and version print the version, the VCS revision and
// the Go version.
func TestVersion(t *testing.T) {
	code, a, errOut := runCLI(t, nil, "--version")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d stderr %q", code, errOut)
	}
	code, b, _ := runCLI(t, nil, "version")
	if code != 0 || a != b {
		t.Fatalf("version %q != --version %q", b, a)
	}
	lines := strings.Split(strings.TrimSpace(a), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "dragonfly ") || !strings.HasPrefix(lines[1], "revision: ") ||
		lines[2] != "go: "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("version output %q", a)
	}
	if code, _, _ := runCLI(t, nil, "version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

// TestFlagsAnywhere: flags may follow positional arguments; "--" ends them;
// Go's single-dash long form still works.
func TestFlagsAnywhere(t *testing.T) {
	newScan := func() (*scanConfig, *cli.Settings) {
		var c scanConfig
		s := program.Settings("dragonfly scan", "")
		s.SetOutput(new(bytes.Buffer), new(bytes.Buffer))
		c.register(s)
		return &c, s
	}
	tests := []struct {
		name    string
		args    []string
		format  string
		threads int
		rules   string
		pos     []string
	}{
		{name: "flags after the target", args: []string{"--rules", "r", "pkg.whl", "--format", "table"}, format: "table", rules: "r", pos: []string{"pkg.whl"}},
		{name: "-- ends flags", args: []string{"--rules", "r", "--", "--format", "table"}, rules: "r", pos: []string{"--format", "table"}},
		{name: "single-dash long form", args: []string{"-threads=6", "a", "-format", "json"}, threads: 6, format: "json", pos: []string{"a"}},
		{name: "= form", args: []string{"a", "--threads=3", "b"}, threads: 3, pos: []string{"a", "b"}},
		{name: "a value may start with a dash", args: []string{"--rules", "-odd-name", "a"}, rules: "-odd-name", pos: []string{"a"}},
		{name: "a dash-led value of a single-dash flag", args: []string{"-rules", "-threads", "a"}, rules: "-threads", pos: []string{"a"}},
		{name: "bool between targets", args: []string{"a", "--demo-rules", "b"}, pos: []string{"a", "b"}},
		{name: "single dash alone is a target", args: []string{"-", "--format", "json"}, format: "json", pos: []string{"-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := newScan()
			if err := s.Parse(tt.args, clitest.Env(nil), ""); err != nil {
				t.Fatal(err)
			}
			if tt.threads == 0 {
				tt.threads = runtime.GOMAXPROCS(0)
			}
			if c.format != tt.format || c.threads != tt.threads || c.rules != tt.rules || strings.Join(s.Args(), "|") != strings.Join(tt.pos, "|") {
				t.Errorf("format %q threads %d rules %q args %q", c.format, c.threads, c.rules, s.Args())
			}
		})
	}
	// A bool flag takes no value from the next argument.
	c, s := newScan()
	if err := s.Parse([]string{"--demo", "x.whl"}, clitest.Env(nil), ""); err != nil || !c.demo || strings.Join(s.Args(), "") != "x.whl" {
		t.Errorf("demo %v args %q err %v", c.demo, s.Args(), err)
	}
}

// TestDeprecatedNames: old spellings work for one release with a warning
// naming the new one; the reference client's aliases work without one.
func TestDeprecatedNames(t *testing.T) {
	tests := []struct {
		name    string
		command string
		args    []string
		env     map[string]string
		check   func(*cli.Settings) bool
		warn    string // "" for none
	}{
		{name: "--heartbeat", command: "coordinator", args: []string{"--heartbeat", "2s"}, check: flagIs("heartbeat-interval", "2s"),
			warn: "dragonfly coordinator: warning: --heartbeat is deprecated: use --heartbeat-interval"},
		{name: "--outbox", command: "coordinator", args: []string{"--outbox", "/var/ob.db"}, check: flagIs("outbox-path", "/var/ob.db"), warn: "--outbox is deprecated: use --outbox-path"},
		{name: "--listen", command: "coordinator", args: []string{"--listen=:1"}, check: flagIs("listen-addr", ":1"), warn: "--listen is deprecated: use --listen-addr"},
		{name: "-listen single dash", command: "coordinator", args: []string{"-listen", ":1"}, check: flagIs("listen-addr", ":1"), warn: "--listen is deprecated: use --listen-addr"},
		{name: "worker --coordinator", command: "worker", args: []string{"--coordinator", "c:50051"}, check: flagIs("coordinator-addr", "c:50051"), warn: "--coordinator is deprecated: use --coordinator-addr"},
		{name: "worker --metrics-addr", command: "worker", args: []string{"--metrics-addr", ""}, check: flagIs("worker-metrics-addr", ""), warn: "--metrics-addr is deprecated: use --worker-metrics-addr"},
		{name: "DRAGONFLY_SCAN_FORMAT", command: "scan", env: map[string]string{"DRAGONFLY_SCAN_FORMAT": "sarif"}, check: flagIs("format", "sarif"),
			warn: "DRAGONFLY_SCAN_FORMAT is deprecated: use DRAGONFLY_FORMAT"},
		{name: "DRAGONFLY_FORMAT wins over the old name", command: "scan", env: map[string]string{"DRAGONFLY_SCAN_FORMAT": "sarif", "DRAGONFLY_FORMAT": "json"}, check: flagIs("format", "json")},
		{name: "DRAGONFLY_STATUS_URL", command: "status", env: map[string]string{"DRAGONFLY_STATUS_URL": "http://c:9090"}, check: flagIs("coordinator", "http://c:9090"),
			warn: "DRAGONFLY_STATUS_URL is deprecated: use DRAGONFLY_STATUS_COORDINATOR"},
		{name: "new names: no warning", command: "coordinator", args: []string{"--heartbeat-interval", "3s", "--listen-addr", ":2"}, check: flagIs("heartbeat-interval", "3s")},
		{name: "reference names: no warning", command: "worker", env: map[string]string{"DRAGONFLY_MAX_SIZE": "1000", "DRAGONFLY_THREADS": "2"}, check: flagIs("max-size", "1KB")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := program.Settings("dragonfly "+tt.command, "")
			var stderr bytes.Buffer
			s.SetOutput(new(bytes.Buffer), &stderr)
			command(t, tt.command).Flags(s)
			if err := s.Parse(tt.args, clitest.Env(tt.env), t.TempDir()); err != nil {
				t.Fatal(err)
			}
			if !tt.check(s) {
				t.Errorf("value not set")
			}
			if tt.warn == "" && stderr.Len() > 0 {
				t.Errorf("unexpected warning %q", stderr.String())
			}
			if tt.warn != "" && !strings.Contains(stderr.String(), tt.warn) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.warn)
			}
		})
	}
	// Old and new spelling at once are one setting given twice.
	s := program.Settings("dragonfly coordinator", "")
	s.SetOutput(new(bytes.Buffer), new(bytes.Buffer))
	command(t, "coordinator").Flags(s)
	if err := s.Parse([]string{"--heartbeat", "1s", "--heartbeat-interval", "2s"}, clitest.Env(nil), ""); err == nil || !strings.Contains(err.Error(), "--heartbeat-interval and --heartbeat both given") &&
		!strings.Contains(err.Error(), "--heartbeat and --heartbeat-interval both given") {
		t.Errorf("err = %v", err)
	}
}

func flagIs(name, want string) func(*cli.Settings) bool {
	return func(s *cli.Settings) bool {
		st := s.Lookup(name)
		return st != nil && st.IsSet() && st.Value().String() == want
	}
}

// flagExceptions are the settings whose flag is not derived from their
// variable, and why. (Flag-only settings have no variable and are checked
// to have no key instead.)
var flagExceptions = map[string]string{}

// TestSettingNames walks every command's settings: one name per setting,
// flag and key derived from the variable.
func TestSettingNames(t *testing.T) {
	for _, c := range program.Commands() {
		name := c.Name
		if c.Flags == nil {
			continue
		}
		s := program.Settings("dragonfly "+name, "")
		c.Flags(s)
		keys := map[string]string{}
		for _, st := range s.All() {
			if st.Env() == "" {
				if st.Flag() == "" {
					t.Errorf("%s: a setting without flag or variable", name)
				}
				continue
			}
			if !strings.HasPrefix(st.Env(), "DRAGONFLY_") || strings.ToUpper(st.Env()) != st.Env() {
				t.Errorf("%s: variable %q is not DRAGONFLY_ in upper case", name, st.Env())
			}
			if want := cli.FlagFor(st.Env(), s.Namespace()); st.Flag() != want && flagExceptions[name+" --"+st.Flag()] == "" {
				t.Errorf("%s: --%s is set by %s: the flag should be --%s", name, st.Flag(), st.Env(), want)
			}
			for _, env := range st.Vars() {
				k := cli.KeyFor(env)
				if other, dup := keys[k]; dup && other != st.Env() {
					t.Errorf("%s: key %s belongs to %s and %s", name, k, other, st.Env())
				}
				keys[k] = st.Env()
			}
			for _, old := range st.OldFlags() {
				if old == st.Flag() {
					t.Errorf("%s: --%s is its own deprecated alias", name, old)
				}
			}
		}
	}
	// The renames of this release, each with its old spelling kept.
	for _, r := range []struct{ command, flag, env, old string }{
		{"coordinator", "heartbeat-interval", "DRAGONFLY_HEARTBEAT_INTERVAL", "heartbeat"},
		{"coordinator", "outbox-path", "DRAGONFLY_OUTBOX_PATH", "outbox"},
		{"coordinator", "listen-addr", "DRAGONFLY_LISTEN_ADDR", "listen"},
		{"local", "heartbeat-interval", "DRAGONFLY_HEARTBEAT_INTERVAL", "heartbeat"},
		{"worker", "coordinator-addr", "DRAGONFLY_COORDINATOR_ADDR", "coordinator"},
		{"worker", "worker-metrics-addr", "DRAGONFLY_WORKER_METRICS_ADDR", "metrics-addr"},
		{"scan", "format", "DRAGONFLY_FORMAT", ""},
		{"status", "coordinator", "DRAGONFLY_STATUS_COORDINATOR", ""},
		{"status", "timeout", "DRAGONFLY_STATUS_TIMEOUT", ""},
		{"healthcheck", "timeout", "DRAGONFLY_HEALTHCHECK_TIMEOUT", ""},
	} {
		s := program.Settings(r.command, "")
		command(t, r.command).Flags(s)
		st := s.Lookup(r.flag)
		if st == nil || st.Env() != r.env || st.Flag() != r.flag {
			t.Errorf("%s: --%s is not %s", r.command, r.flag, r.env)
			continue
		}
		if r.old != "" && s.Lookup(r.old) != st {
			t.Errorf("%s: --%s is not an alias of --%s", r.command, r.old, r.flag)
		}
	}
}

// TestFleetBoundsUsage: settings that bound the fleet refuse values that
// would make it bounce tasks or stop every task at once, naming the
// setting as it was given (flag or variable).
func TestFleetBoundsUsage(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{map[string]string{"DRAGONFLY_PREFETCH": "17"}, []string{"coordinator", "--insecure"}, "DRAGONFLY_PREFETCH=17: at most 16"},
		{nil, []string{"coordinator", "--insecure", "--max-sessions-per-identity", "0"}, "--max-sessions-per-identity=0: must be positive"},
		{nil, []string{"worker", "--coordinator-addr", "127.0.0.1:1", "--max-task-time", "0s"}, "--max-task-time=0s: must be positive"},
		// libyara would read a sub-second timeout as none at all.
		{nil, []string{"worker", "--coordinator-addr", "127.0.0.1:1", "--scan-timeout", "500ms"}, "--scan-timeout: at least 1s"},
		{map[string]string{"DRAGONFLY_SCAN_TIMEOUT": "0.5s"}, []string{"scan", "--demo-rules", "x"}, "DRAGONFLY_SCAN_TIMEOUT: at least 1s"},
		// A worker's token shorter than any a coordinator takes: it started
		// and was refused on every connection.
		{map[string]string{"DRAGONFLY_FLEET_TOKEN": "short"}, []string{"worker", "--coordinator-addr", "127.0.0.1:1"}, "DRAGONFLY_FLEET_TOKEN: 5 bytes, and a coordinator takes only tokens of at least 16"},
	} {
		code, _, errOut := runCLI(t, tc.vars, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v %v: exit %d, %q; want 2 and %q", tc.vars, tc.args, code, errOut, tc.want)
		}
	}
}

// TestUsageErrorNamesTheSettingAsGiven: a setting's validation error names
// it as the user gave it: the flag when it came from a flag (it named the
// variable, which was not set), the variable when it came from the
// environment.
func TestUsageErrorNamesTheSettingAsGiven(t *testing.T) {
	code, _, errOut := runCLI(t, nil, "status", "--interval", "500ms", "--watch")
	if code != 2 || !strings.Contains(errOut, "--interval=500ms: at least 1s") || strings.Contains(errOut, "DRAGONFLY_STATUS_INTERVAL") {
		t.Errorf("from a flag: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, map[string]string{"DRAGONFLY_STATUS_INTERVAL": "500ms"}, "status", "--watch")
	if code != 2 || !strings.Contains(errOut, "DRAGONFLY_STATUS_INTERVAL=500ms: at least 1s") {
		t.Errorf("from the environment: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "coordinator", "--insecure", "--prefetch", "99")
	if code != 2 || !strings.Contains(errOut, "--prefetch=99: at most 16") {
		t.Errorf("coordinator from a flag: exit %d, stderr %q", code, errOut)
	}
}

// TestHeartbeatAndLeaseWithinWhatWorks: the coordinator refuses a
// heartbeat interval a worker would clamp (to [1s, 5m]): the two sides
// then disagree on when a session is silent (200ms: the coordinator drops
// every idle worker, which heartbeats each second, after 600 ms; 1h: every
// idle worker leaves the coordinator after 15 min without its heartbeat),
// and from 3,074,457,346 s three intervals wrap negative (no Hello arrives
// in time). All were accepted and the coordinator started.
func TestHeartbeatAndLeaseWithinWhatWorks(t *testing.T) {
	for _, tc := range []struct {
		src  clitest.Sources
		want string
	}{
		{clitest.Sources{Args: []string{"--heartbeat-interval", "200ms"}}, "DRAGONFLY_HEARTBEAT_INTERVAL=200ms: between 1s and 5m"},
		{clitest.Sources{Env: map[string]string{"DRAGONFLY_HEARTBEAT_INTERVAL": "1h"}}, "DRAGONFLY_HEARTBEAT_INTERVAL=1h: between 1s and 5m"},
		{clitest.Sources{Env: map[string]string{"DRAGONFLY_HEARTBEAT_INTERVAL": "3074457346"}}, "DRAGONFLY_HEARTBEAT_INTERVAL=854015h55m46s: between 1s and 5m"},
		{clitest.Sources{Args: []string{"--heartbeat-interval", "0"}}, "DRAGONFLY_HEARTBEAT_INTERVAL=0s: between 1s and 5m"},
		{clitest.Sources{Args: []string{"--heartbeat-interval", "1s"}}, ""},
		{clitest.Sources{Args: []string{"--heartbeat-interval", "5m"}}, ""},
		// The lease: below 10 s every task's lease ends as it starts;
		// above a day JOB_TIMEOUT was misread. Both were accepted.
		{clitest.Sources{Args: []string{"--lease-timeout", "5s"}}, "DRAGONFLY_LEASE_TIMEOUT=5s: between 10s and 24h"},
		{clitest.Sources{Env: map[string]string{"DRAGONFLY_LEASE_TIMEOUT": "0"}}, "DRAGONFLY_LEASE_TIMEOUT=0s: between 10s and 24h"},
		{clitest.Sources{Env: map[string]string{"DRAGONFLY_LEASE_TIMEOUT": "2562047h"}}, "DRAGONFLY_LEASE_TIMEOUT=2562047h: between 10s and 24h"},
		{clitest.Sources{Args: []string{"--lease-timeout", "10s"}}, ""},
		{clitest.Sources{Args: []string{"--lease-timeout", "24h"}}, ""},
	} {
		var c coordinatorCmd
		s := program.Settings("dragonfly coordinator", "")
		c.register(s)
		if err := tc.src.Parse(t, s); err != nil {
			t.Fatal(err)
		}
		err := c.f.validate()
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && !strings.Contains(got, tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.src, err, tc.want)
		}
	}
}

// TestZeroDurationsRefused: a duration setting of 0 is refused, naming the
// setting as given. The packages read a zero duration as their default, so
// DRAGONFLY_DRAIN_GRACE=0 ran as 25s and so on, while the startup log's
// effective configuration said 0s. (DRAGONFLY_LOAD_DURATION=0, which the
// reference client takes, is 1s: TestReferenceClientsZeroLoadDuration.)
func TestZeroDurationsRefused(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		src  clitest.Sources
		want string
	}{
		{"coordinator", clitest.Sources{Env: map[string]string{"DRAGONFLY_LEASE_TIMEOUT": "0s"}}, "DRAGONFLY_LEASE_TIMEOUT=0s: between 10s and 24h"},
		{"coordinator", clitest.Sources{Env: map[string]string{"DRAGONFLY_API_TIMEOUT": "0"}}, "DRAGONFLY_API_TIMEOUT=0s: must be positive"},
		{"coordinator", clitest.Sources{TOML: "drain_timeout = 0\n"}, "DRAGONFLY_DRAIN_TIMEOUT=0s: must be positive"},
		{"coordinator", clitest.Sources{Args: []string{"--load-duration", "1s"}}, ""},
		{"worker", clitest.Sources{Env: map[string]string{"DRAGONFLY_DRAIN_GRACE": "0"}}, "DRAGONFLY_DRAIN_GRACE=0s: must be positive"},
		{"worker", clitest.Sources{Env: map[string]string{"DRAGONFLY_DOWNLOAD_STALL_TIMEOUT": "0"}}, "DRAGONFLY_DOWNLOAD_STALL_TIMEOUT=0s: must be positive"},
		{"worker", clitest.Sources{Args: []string{"--download-timeout", "0"}}, "DRAGONFLY_DOWNLOAD_TIMEOUT=0s: must be positive"},
		{"worker", clitest.Sources{Args: []string{"--drain-grace", "1s"}}, ""},
	} {
		s := program.Settings("dragonfly "+tc.cmd, "")
		validate := func() error { return nil }
		switch tc.cmd {
		case "coordinator":
			var c coordinatorCmd
			c.register(s)
			validate = c.f.validate
		case "worker":
			var c workerCmd
			c.register(s)
			validate = c.f.validate
		}
		if err := tc.src.Parse(t, s); err != nil {
			t.Fatal(err)
		}
		err := validate()
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && !strings.Contains(got, tc.want)) {
			t.Errorf("%s %+v: %v, want %q", tc.cmd, tc.src, err, tc.want)
		}
	}
	// Through the command, as the user sees it: the flag as given.
	code, _, errOut := runCLI(t, nil, "scan", "--demo-rules", "--download-timeout", "0", "--demo")
	if code != 2 || !strings.Contains(errOut, "--download-timeout=0s: must be positive") {
		t.Errorf("scan --download-timeout 0: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI(t, map[string]string{"DRAGONFLY_API_TIMEOUT": "0"}, "scan", "--rules-from-api", "--base-url", "http://127.0.0.1:1", "x.whl")
	if code != 2 || !strings.Contains(errOut, "DRAGONFLY_API_TIMEOUT=0s: must be positive") {
		t.Errorf("scan --rules-from-api with DRAGONFLY_API_TIMEOUT=0: exit %d, %q", code, errOut)
	}
}

// TestChoiceErrorsNameTheSettingAsGiven: an output format or fail score
// that is not allowed is named as the user gave it (the variable, or the
// config file and key); it was always named --format or --fail-score,
// though no flag was given.
func TestChoiceErrorsNameTheSettingAsGiven(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{map[string]string{"DRAGONFLY_FORMAT": "xml"}, []string{"scan", "--demo-rules", "--demo"}, `DRAGONFLY_FORMAT="xml": not one of table, json, sarif`},
		{nil, []string{"scan", "--demo-rules", "--demo", "--format", "xml"}, `--format="xml": not one of table, json, sarif`},
		{map[string]string{"DRAGONFLY_FAIL_SCORE": "-1"}, []string{"scan", "--demo-rules", "--demo"}, "DRAGONFLY_FAIL_SCORE=-1: want 0 (never fail)"},
		{map[string]string{"DRAGONFLY_STATUS_FORMAT": "yaml"}, []string{"status"}, `DRAGONFLY_STATUS_FORMAT="yaml": not one of table, json`},
	} {
		code, _, errOut := runCLI(t, tc.vars, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v %v: exit %d, %q; want 2 and %q", tc.vars, tc.args, code, errOut, tc.want)
		}
	}
	// From a config file: the file and the key.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Config.toml"), []byte("format = \"xml\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: clitest.Env(nil), Dir: dir}
	if code := run(context.Background(), e, []string{"scan", "--demo-rules", "--demo"}); code != 2 || !strings.Contains(stderr.String(), `Config.toml: format = "xml": not one of`) {
		t.Errorf("from Config.toml: exit %d, %q", code, stderr.String())
	}
}

// TestReferenceClientsZeroLoadDuration: DRAGONFLY_LOAD_DURATION=0 (or
// load_duration = 0 in Config.toml), which the reference client takes (it
// polls again at once), starts the coordinator with the shortest wait it
// keeps, 1s, as its effective configuration says. Refused, a drop-in
// configuration stopped the coordinator at start; before, it ran as 60s.
func TestReferenceClientsZeroLoadDuration(t *testing.T) {
	for _, src := range []clitest.Sources{
		{Env: map[string]string{"DRAGONFLY_LOAD_DURATION": "0"}},
		{TOML: "load_duration = 0\n"},
	} {
		var c coordinatorCmd
		s := program.Settings("dragonfly coordinator", "")
		c.register(s)
		if err := src.Parse(t, s); err != nil {
			t.Fatal(err)
		}
		if err := c.f.validate(); err != nil || c.f.coord.LoadDuration != minLoadDuration {
			t.Errorf("%+v: %v, load duration %s; want accepted as %s", src, err, c.f.coord.LoadDuration, minLoadDuration)
		}
	}
}

// TestEmptyListenAddressesRefused: an empty DRAGONFLY_PPROF_ADDR (compose
// files pass unset variables through as empty, and a string setting takes
// "") with profiles on, or an empty DRAGONFLY_LISTEN_ADDR, is refused.
// net.Listen reads "" as every interface on a random port: the profiles,
// loopback by default, were served to the network ("serving Go profiles"
// pprof_addr=[::]:33091), and the gRPC listener was on a port no worker
// knew, the coordinator ready.
func TestEmptyListenAddressesRefused(t *testing.T) {
	token := map[string]string{"DRAGONFLY_FLEET_TOKEN": "0123456789abcdef0123", "DRAGONFLY_BASE_URL": "http://127.0.0.1:1"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range token {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{with("DRAGONFLY_PPROF_ADDR", ""), []string{"coordinator", "--pprof", "--listen-addr", "127.0.0.1:0", "--metrics-addr", ""}, "DRAGONFLY_PPROF_ADDR: empty"},
		{with("DRAGONFLY_PPROF_ADDR", " "), []string{"local", "--pprof", "--metrics-addr", ""}, "DRAGONFLY_PPROF_ADDR: empty"},
		{with("DRAGONFLY_LISTEN_ADDR", ""), []string{"coordinator", "--metrics-addr", ""}, "DRAGONFLY_LISTEN_ADDR: empty"},
	} {
		code, errOut := startStopped(t, tc.vars, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, tailOf(errOut), tc.want)
		}
	}
	// Off, an empty address is nothing to serve: no error.
	code, errOut := startStopped(t, with("DRAGONFLY_PPROF_ADDR", ""), "coordinator", "--listen-addr", "127.0.0.1:0", "--metrics-addr", "")
	if code == 2 || !strings.Contains(errOut, "coordinator started") {
		t.Errorf("pprof off, empty address: exit %d, stderr %q; want the coordinator started", code, tailOf(errOut))
	}
}

// tailOf keeps the end of a long stderr for a test failure.
func tailOf(s string) string {
	if len(s) > 600 {
		return "…" + s[len(s)-600:]
	}
	return s
}

// TestThreadsAndSlotsHaveAnUpperBound: DRAGONFLY_THREADS and
// DRAGONFLY_MAX_WORKER_SLOTS past their bounds are usage errors. Unbounded,
// 4294967296 threads wrapped the Hello's slots to 0 after the scanner
// allocated for them, and a slot cap near MaxInt64 overflowed the answers a
// message may carry.
func TestThreadsAndSlotsHaveAnUpperBound(t *testing.T) {
	token := map[string]string{"DRAGONFLY_FLEET_TOKEN": "0123456789abcdef0123", "DRAGONFLY_BASE_URL": "http://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"worker", "--threads", "1025", "--coordinator-addr", "127.0.0.1:1", "--allowed-hosts", "http://127.0.0.1:1"}, "--threads=1025: at most 1024"},
		{[]string{"worker", "--threads", "4294967296", "--coordinator-addr", "127.0.0.1:1", "--allowed-hosts", "http://127.0.0.1:1"}, "--threads=4294967296: at most 1024"},
		{[]string{"scan", "--threads", "1025", "--demo-rules", "."}, "--threads=1025: at most 1024"},
		{[]string{"coordinator", "--max-worker-slots", "65537", "--listen-addr", "127.0.0.1:0", "--metrics-addr", ""}, "--max-worker-slots=65537: at most 65536"},
	} {
		code, errOut := startStopped(t, token, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, tailOf(errOut), tc.want)
		}
	}
	vars := map[string]string{"DRAGONFLY_THREADS": "2000", "DRAGONFLY_COORDINATOR_ADDR": "127.0.0.1:1", "DRAGONFLY_ALLOWED_HOSTS": "http://127.0.0.1:1"}
	for k, v := range token {
		vars[k] = v
	}
	if code, errOut := startStopped(t, vars, "worker"); code != 2 || !strings.Contains(errOut, "DRAGONFLY_THREADS=2000: at most 1024") {
		t.Errorf("DRAGONFLY_THREADS=2000: exit %d, stderr %q; want 2 and the variable named", code, tailOf(errOut))
	}
	code, errOut := startStopped(t, token, "coordinator", "--max-worker-slots", "65536", "--listen-addr", "127.0.0.1:0", "--metrics-addr", "")
	if code == 2 || !strings.Contains(errOut, "coordinator started") {
		t.Errorf("--max-worker-slots 65536: exit %d, stderr %q; want the coordinator started", code, tailOf(errOut))
	}
}

// TestDefaultThreadsWithinBound: on a machine of more CPUs than
// worker.MaxThreads (or with GOMAXPROCS set above it) the default threads,
// one per CPU, are cut to the bound: worker and scan start without
// DRAGONFLY_THREADS. They were refused at start ("DRAGONFLY_THREADS=1124:
// at most 1024"), naming a setting the operator never set.
func TestDefaultThreadsWithinBound(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(worker.MaxThreads + 100))
	vars := map[string]string{"DRAGONFLY_FLEET_TOKEN": "0123456789abcdef0123"}
	code, errOut := startStopped(t, vars, "worker", "--coordinator-addr", "127.0.0.1:1", "--allowed-hosts", "http://127.0.0.1:1")
	if code == 2 || !strings.Contains(errOut, "worker started") || !strings.Contains(errOut, fmt.Sprintf(`"threads":%d`, worker.MaxThreads)) {
		t.Errorf("worker: exit %d, stderr %q; want it started with %d threads", code, tailOf(errOut), worker.MaxThreads)
	}
	dir := t.TempDir()
	if code, errOut := startStopped(t, vars, "scan", "--demo-rules", dir); strings.Contains(errOut, "DRAGONFLY_THREADS") {
		t.Errorf("scan: exit %d, stderr %q; want no thread bound", code, tailOf(errOut))
	}
	if code, errOut := startStopped(t, vars, "rules", "profile", "--rules", dir, dir); strings.Contains(errOut, "DRAGONFLY_THREADS") {
		t.Errorf("rules profile: exit %d, stderr %q; want no thread bound", code, tailOf(errOut))
	}
}
