package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFiles: every secret also comes from DRAGONFLY_<NAME>_FILE (or the
// config key <key>_file), with real files and modes.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	token := writeFile(t, filepath.Join(dir, "token"), "s3cret-token\n", 0o600)
	twoNewlines := writeFile(t, filepath.Join(dir, "two"), "tok\n\n", 0o400)
	crlf := writeFile(t, filepath.Join(dir, "crlf"), "tok\r\n", 0o644)
	noNewline := writeFile(t, filepath.Join(dir, "bare"), "bare-token", 0o640)
	worldWritable := writeFile(t, filepath.Join(dir, "ww"), "tok\n", 0o666)
	big := writeFile(t, filepath.Join(dir, "big"), strings.Repeat("x", maxSecretFile+1), 0o600)

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
		{name: "config key _file", toml: `fleet_token_file = "` + token + `"`, want: "s3cret-token"},
		{name: "config key _file relative to the config file", toml: `fleet_token_file = "token"`, want: "s3cret-token"},
		{name: "config key and key_file", toml: "fleet_token = \"a\"\nfleet_token_file = \"token\"", err: "Config.toml: fleet_token and fleet_token_file are both set: set one"},
		{name: "config _file refused like the variable", toml: `fleet_token_file = "ww"`, err: "Config.toml: fleet_token_file: " + worldWritable + ": writable by anyone"},
		{name: "env file beats config", env: map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": noNewline}, toml: `fleet_token = "toml"`, want: "bare-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cdir := dir
			if tt.toml != "" {
				writeFile(t, filepath.Join(dir, "Config.toml"), tt.toml, 0o600)
				t.Cleanup(func() { removeFile(t, filepath.Join(dir, "Config.toml")) })
			}
			c, _, _, err := parseCoordinator(t, tt.args, tt.env, cdir)
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
			if c.token != tt.want {
				t.Errorf("token %q, want %q", c.token, tt.want)
			}
		})
	}
}

// TestSecretSettings: every credential is a secret (file form, hidden
// default), and no non-secret offers a file form.
func TestSecretSettings(t *testing.T) {
	want := map[string]bool{
		"DRAGONFLY_FLEET_TOKEN": true, "DRAGONFLY_CF_ACCESS_CLIENT_ID": true, "DRAGONFLY_CF_ACCESS_CLIENT_SECRET": true,
		"DRAGONFLY_CLIENT_ID": true, "DRAGONFLY_CLIENT_SECRET": true, "DRAGONFLY_USERNAME": true, "DRAGONFLY_PASSWORD": true,
		"DRAGONFLY_STATUS_TOKEN": true,
		// devapi: the credentials it accepts.
		"DRAGONFLY_DEVAPI_CF_ACCESS_CLIENT_ID": true, "DRAGONFLY_DEVAPI_CF_ACCESS_CLIENT_SECRET": true, "DRAGONFLY_DEVAPI_CF_SERVICE_TOKENS": true,
		"DRAGONFLY_DEVAPI_AUTH0_CLIENT_SECRET": true, "DRAGONFLY_DEVAPI_AUTH0_PASSWORD": true, "DRAGONFLY_DEVAPI_AUTH0_USERS": true,
	}
	seen := map[string]bool{}
	for name, c := range commands {
		if c.flags == nil {
			continue
		}
		s := newSettings(name, "")
		c.flags(s)
		for _, st := range s.list {
			if st.secret != want[st.env] {
				t.Errorf("%s: %s secret = %v, want %v", name, st.env, st.secret, want[st.env])
			}
			if st.secret {
				seen[st.env] = true
				if st.def != "" {
					t.Errorf("%s: secret %s shows a default %q", name, st.env, st.def)
				}
			}
		}
	}
	for env := range want {
		if !seen[env] {
			t.Errorf("no command registers the secret %s", env)
		}
	}
	// A secret's file form works for any setting marked secret.
	var p string
	s := newSettings("t", "")
	s.Var(stringVal(&p, ""), "DRAGONFLY_PASSWORD", "x").markSecret()
	f := writeFile(t, filepath.Join(t.TempDir(), "pw"), "pw\n", 0o600)
	if err := s.Parse(nil, envMap(map[string]string{"DRAGONFLY_PASSWORD_FILE": f}), ""); err != nil || p != "pw" {
		t.Errorf("password %q, %v", p, err)
	}
	// ... and not for others: DRAGONFLY_BASE_URL_FILE means nothing.
	var u string
	s = newSettings("t", "")
	s.Var(stringVal(&u, "default"), "DRAGONFLY_BASE_URL", "x")
	if err := s.Parse(nil, envMap(map[string]string{"DRAGONFLY_BASE_URL_FILE": f}), ""); err != nil || u != "default" {
		t.Errorf("base url %q, %v", u, err)
	}
}

// TestSecretsNeverShown: neither --help nor the effective configuration shows
// a secret's value.
func TestSecretsNeverShown(t *testing.T) {
	vars := map[string]string{
		"DRAGONFLY_FLEET_TOKEN": "fleet-s3cret", "DRAGONFLY_CF_ACCESS_CLIENT_ID": "cf-id-s3cret", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET": "cf-s3cret",
		"DRAGONFLY_PASSWORD": "pw-s3cret", "DRAGONFLY_USERNAME": "user-s3cret", "DRAGONFLY_CLIENT_ID": "cid-s3cret", "DRAGONFLY_CLIENT_SECRET": "cs-s3cret",
	}
	_, s, _, err := parseCoordinator(t, nil, vars, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	log, err := newLogger(&logBuf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	s.logConfig(log)
	for _, v := range vars {
		if strings.Contains(logBuf.String(), v) {
			t.Errorf("effective configuration shows %q: %s", v, logBuf.String())
		}
	}
	if !strings.Contains(logBuf.String(), `"fleet_token":"set"`) || !strings.Contains(logBuf.String(), `"password":"set"`) {
		t.Errorf("secrets not shown as set: %s", logBuf.String())
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Error(err)
	}
}
