package cli

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// fleetSettings are a few settings of a coordinator: enough for the config
// file and secret machinery.
type fleetSettings struct {
	bulkSize int
	token    string
}

// parseFleet parses args, env and the config files in dir into
// fleetSettings.
func parseFleet(t *testing.T, args []string, env map[string]string, dir string) (*fleetSettings, *Settings, error) {
	t.Helper()
	var f fleetSettings
	s := New("dragonfly coordinator", "summary")
	s.SetOutput(new(bytes.Buffer), new(bytes.Buffer))
	s.Var(Int(&f.bulkSize, 1), "DRAGONFLY_BULK_SIZE", "most jobs leased per request")
	s.Var(String(&f.token, ""), "DRAGONFLY_FLEET_TOKEN", "shared secret").MarkSecret()
	err := s.Parse(args, clitest.Env(env), dir)
	return &f, s, err
}

func exitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return -1
}

// TestConfigSyntaxErrorHidesSecret: a TOML error in a secret's value does
// not quote it. The parser's message did: `fleet_token = "s3cret\u00"`
// read `expected four hexadecimal digits after '\u', but got
// "\"s3cret\\u00\"" instead`, on stderr and so in the container's log.
// The message still names the file, the line and the key; the errors of
// other keys keep the parser's words.
func TestConfigSyntaxErrorHidesSecret(t *testing.T) {
	for _, line := range []string{
		`fleet_token = "s3cretXYZ\u00"`,
		`fleet_token = "s3cretXYZ\UFFFF"`,
		`fleet_token = "s3cretXYZ\x4"`,
		`FLEET_TOKEN = 98_76_`,
		`fleet_token = 0xs3cretXYZ`,
		// Inline tables and dotted keys are refused as settings, but
		// first parsed: the last key names the setting first.
		`fleet_token = {a = "s3cretXYZ\u00"}`,
		`fleet_token.a = "s3cretXYZ\u00"`,
		`fleet_token = [{a = "s3cretXYZ\u00"}]`,
	} {
		_, _, err := parseFleet(t, nil, nil, clitest.ConfigDir(t, "bulk_size = 2\n"+line, ""))
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%s: err %v, want a usage error", line, err)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "s3cret") || strings.Contains(msg, "98_76") {
			t.Errorf("%s: the error quotes the secret: %s", line, msg)
		}
		if !strings.Contains(msg, "Config.toml: line 2:") || !strings.Contains(strings.ToLower(msg), `"fleet_token`) {
			t.Errorf("%s: the error does not name the file, line and key: %s", line, msg)
		}
	}
	// Not a secret: the parser's message, which helps.
	_, _, err := parseFleet(t, nil, nil, clitest.ConfigDir(t, `bulk_size = "2\u00"`, ""))
	if err == nil || !strings.Contains(err.Error(), `after '\u'`) {
		t.Errorf("bulk_size: err %v, want the parser's message", err)
	}
}

func TestConfigFileBounds(t *testing.T) {
	dir := t.TempDir()
	clitest.WriteFile(t, filepath.Join(dir, "Config.toml"), "bulk_size = 1\n"+strings.Repeat("# padding\n", maxConfigFile/10+1), 0o600)
	if _, _, err := parseFleet(t, nil, nil, dir); err == nil || !strings.Contains(err.Error(), "larger than") || exitCode(err) != 2 {
		t.Errorf("err = %v", err)
	}
	// A hostile key is cut before it enters the message.
	long := strings.Repeat("k", 100_000)
	_, _, err := parseFleet(t, nil, nil, clitest.ConfigDir(t, long+" = 1", ""))
	if err == nil || len(err.Error()) > 4096 || !strings.Contains(err.Error(), "…[cut") {
		t.Errorf("err of %d bytes: %.200v", len(fmtErr(err)), err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestConfigFileKnownKeys: a key another command of the program reads is
// accepted; an unknown one is refused naming the nearest known key.
func TestConfigFileKnownKeys(t *testing.T) {
	var threads int
	p := &Program{Name: "dragonfly"}
	p.Register(Command{Name: "worker", Flags: func(s *Settings) { s.Var(Int(&threads, 1), "DRAGONFLY_THREADS", "threads") }})
	for toml, want := range map[string]string{
		"threads = 3":          "",
		"bulk_size = 3":        "",
		"threds = 3":           `Config.toml: unknown key "threds" (did you mean threads?)`,
		`fleet_token_file = 1`: "fleet_token_file: open", // a known key: its file is missing
	} {
		var n int
		var tok string
		s := p.Settings("dragonfly coordinator", "")
		s.Var(Int(&n, 1), "DRAGONFLY_BULK_SIZE", "bulk")
		s.Var(String(&tok, ""), "DRAGONFLY_FLEET_TOKEN", "token").MarkSecret()
		err := s.Parse(nil, clitest.Env(nil), clitest.ConfigDir(t, toml, ""))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: err = %v, want %q", toml, err, want)
		}
	}
	// Settings of their own know only their keys.
	var n int
	s := New("dragonfly coordinator", "")
	s.Var(Int(&n, 1), "DRAGONFLY_BULK_SIZE", "bulk")
	if err := s.Parse(nil, clitest.Env(nil), clitest.ConfigDir(t, "threads = 3", "")); err == nil || !strings.Contains(err.Error(), `unknown key "threads"`) {
		t.Errorf("err = %v", err)
	}
}

func TestNearest(t *testing.T) {
	keys := []string{"bulk_size", "threads", "base_url", "max_file_size", "max_size", "max_scan_size"}
	for in, want := range map[string]string{
		"bulk_sise": "bulk_size", "thread": "threads", "baseurl": "base_url", "base-url": "base_url",
		"max_fil_size": "max_file_size", "max_sizes": "max_size", "nothing_alike_at_all": "", "": "",
	} {
		if got := Nearest(in, keys); got != want {
			t.Errorf("nearest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSecretFiles: every secret also comes from DRAGONFLY_<NAME>_FILE (or the
// config key <key>_file), with real files and modes.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	token := clitest.WriteFile(t, filepath.Join(dir, "token"), "s3cret-token\n", 0o600)
	twoNewlines := clitest.WriteFile(t, filepath.Join(dir, "two"), "tok\n\n", 0o400)
	crlf := clitest.WriteFile(t, filepath.Join(dir, "crlf"), "tok\r\n", 0o644)
	noNewline := clitest.WriteFile(t, filepath.Join(dir, "bare"), "bare-token", 0o640)
	worldWritable := clitest.WriteFile(t, filepath.Join(dir, "ww"), "tok\n", 0o666)
	big := clitest.WriteFile(t, filepath.Join(dir, "big"), strings.Repeat("x", maxSecretFile+1), 0o600)
	empty := clitest.WriteFile(t, filepath.Join(dir, "empty"), "", 0o600)
	newlineOnly := clitest.WriteFile(t, filepath.Join(dir, "newline"), "\n", 0o600)

	tests := []struct {
		name string
		args []string
		env  map[string]string
		toml string
		want string
		err  string
	}{
		{name: "file", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": token}, want: "s3cret-token"},
		{name: "one trailing newline only", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": twoNewlines}, want: "tok\n"},
		{name: "CRLF is one newline", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": crlf}, want: "tok"},
		{name: "no newline", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": noNewline}, want: "bare-token"},
		{name: "variable", env: map[string]string{"DRAGONFLY_FLEET_TOKEN": "from-env"}, want: "from-env"},
		{name: "empty _FILE is unset", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": "", "DRAGONFLY_FLEET_TOKEN": "from-env"}, want: "from-env"},
		{name: "both are an error naming both", env: map[string]string{"DRAGONFLY_FLEET_TOKEN": "x", "DRAGONFLY_FLEET_TOKEN_FILE": token},
			err: "DRAGONFLY_FLEET_TOKEN and DRAGONFLY_FLEET_TOKEN_FILE are both set: set one"},
		{name: "an empty variable beside _FILE is unset (compose passes unset ones as empty)", env: map[string]string{"DRAGONFLY_FLEET_TOKEN": "", "DRAGONFLY_FLEET_TOKEN_FILE": token}, want: "s3cret-token"},
		{name: "a flag beats both", args: []string{"--fleet-token", "from-flag"}, env: map[string]string{"DRAGONFLY_FLEET_TOKEN": "x", "DRAGONFLY_FLEET_TOKEN_FILE": token}, want: "from-flag"},
		{name: "world-writable file refused", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": worldWritable},
			err: "DRAGONFLY_FLEET_TOKEN_FILE: " + worldWritable + ": writable by anyone (mode 0666): refused"},
		{name: "missing file", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": filepath.Join(dir, "nope")}, err: "DRAGONFLY_FLEET_TOKEN_FILE: open "},
		{name: "directory", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": dir}, err: "not a regular file"},
		{name: "too big", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": big}, err: "larger than 65536 bytes"},
		{name: "an empty file is unset (compose mounts every secret, the unused ones empty)", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": empty}, want: ""},
		{name: "a lone newline is empty too", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": newlineOnly}, want: ""},
		{name: "device refused", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": "/dev/zero"}, err: "not a regular file"},
		{name: "config _file empty is unset", toml: `fleet_token_file = "empty"`, want: ""},
		{name: "config key _file", toml: `fleet_token_file = "` + token + `"`, want: "s3cret-token"},
		{name: "config key _file relative to the config file", toml: `fleet_token_file = "token"`, want: "s3cret-token"},
		{name: "config key and key_file", toml: "fleet_token = \"a\"\nfleet_token_file = \"token\"", err: "Config.toml: fleet_token and fleet_token_file are both set: set one"},
		{name: "config _file refused like the variable", toml: `fleet_token_file = "ww"`, err: "Config.toml: fleet_token_file: " + worldWritable + ": writable by anyone"},
		{name: "env file beats config", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": noNewline}, toml: `fleet_token = "toml"`, want: "bare-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.toml != "" {
				clitest.WriteFile(t, filepath.Join(dir, "Config.toml"), tt.toml, 0o600)
				t.Cleanup(func() { removeFile(t, filepath.Join(dir, "Config.toml")) })
			}
			f, _, err := parseFleet(t, tt.args, tt.env, dir)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				for _, secret := range []string{"s3cret-token", "bare-token"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error shows the secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.token != tt.want {
				t.Errorf("token %q, want %q", f.token, tt.want)
			}
		})
	}
}

// TestSecretFileFormOnlyForSecrets: a secret's file form works for any
// setting marked secret, and not for others.
func TestSecretFileFormOnlyForSecrets(t *testing.T) {
	var p string
	s := New("t", "")
	s.Var(String(&p, ""), "DRAGONFLY_PASSWORD", "x").MarkSecret()
	f := clitest.WriteFile(t, filepath.Join(t.TempDir(), "pw"), "pw\n", 0o600)
	if err := s.Parse(nil, clitest.Env(map[string]string{"DRAGONFLY_PASSWORD_FILE": f}), ""); err != nil || p != "pw" {
		t.Errorf("password %q, %v", p, err)
	}
	// ... and not for others: DRAGONFLY_BASE_URL_FILE means nothing.
	var u string
	s = New("t", "")
	s.Var(String(&u, "default"), "DRAGONFLY_BASE_URL", "x")
	if err := s.Parse(nil, clitest.Env(map[string]string{"DRAGONFLY_BASE_URL_FILE": f}), ""); err != nil || u != "default" {
		t.Errorf("base url %q, %v", u, err)
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Error(err)
	}
}

// TestSecretFileFIFO: a secret file that is a FIFO (or a symlink to one) is
// refused as not a regular file; it must not hang the start waiting for a
// writer that never comes.
func TestSecretFileFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, env, toml string }{
		{"variable", fifo, ""},
		{"symlink", link, ""},
		{"config key", "", `fleet_token_file = "fifo"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cdir := t.TempDir()
			env := map[string]string{}
			if c.env != "" {
				env["DRAGONFLY_FLEET_TOKEN_FILE"] = c.env
			}
			if c.toml != "" {
				cdir = dir
				clitest.WriteFile(t, filepath.Join(dir, "Config.toml"), c.toml, 0o600)
				t.Cleanup(func() { removeFile(t, filepath.Join(dir, "Config.toml")) })
			}
			err := testkit.NoHang(t, fifo, func() error {
				_, _, err := parseFleet(t, nil, env, cdir)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("err = %v, want a refusal naming a non-regular file", err)
			}
		})
	}
}

// TestEmptySecretFileIsUnset: an empty secrets file counts as unset (README;
// compose mounts every secret file, the unused ones empty), from a variable
// or a config key: the next source applies, the setting is not set, and the
// effective configuration does not log it as "set".
func TestEmptySecretFileIsUnset(t *testing.T) {
	dir := t.TempDir()
	empty := clitest.WriteFile(t, filepath.Join(dir, "empty"), "", 0o600)
	newline := clitest.WriteFile(t, filepath.Join(dir, "newline"), "\n", 0o600)
	for _, tc := range []struct {
		name      string
		env       map[string]string
		toml, dev string
		want      string
	}{
		{name: "env file empty, config key", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": empty}, toml: `fleet_token = "toml"`, want: "toml"},
		{name: "env file a lone newline, config key", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": newline}, toml: `fleet_token = "toml"`, want: "toml"},
		{name: "config _file empty, lower file's key", dev: `fleet_token_file = "empty"`, toml: `fleet_token = "toml"`, want: "toml"},
		{name: "env file empty alone", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": empty}, want: ""},
		{name: "config _file empty alone", toml: `fleet_token_file = "empty"`, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, content := range map[string]string{"Config.toml": tc.toml, "Config-dev.toml": tc.dev} {
				if content != "" {
					clitest.WriteFile(t, filepath.Join(dir, name), content, 0o600)
					t.Cleanup(func() { removeFile(t, filepath.Join(dir, name)) })
				}
			}
			f, s, err := parseFleet(t, nil, tc.env, dir)
			if err != nil {
				t.Fatal(err)
			}
			if f.token != tc.want {
				t.Errorf("token %q, want %q", f.token, tc.want)
			}
			if set := s.IsSet("fleet-token"); set != (tc.want != "") {
				t.Errorf("IsSet = %v, want %v", set, tc.want != "")
			}
			var buf bytes.Buffer
			s.LogConfig(slog.New(slog.NewJSONHandler(&buf, nil)))
			if logged := strings.Contains(buf.String(), `"fleet_token":"set"`); logged != (tc.want != "") {
				t.Errorf("logged as set: %v, want %v:\n%s", logged, tc.want != "", buf.String())
			}
		})
	}
}
