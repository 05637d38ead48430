package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/cli"
)

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
	for _, c := range program.Commands() {
		name := c.Name
		if c.Flags == nil {
			continue
		}
		s := program.Settings(name, "")
		c.Flags(s)
		for _, st := range s.All() {
			if st.Secret() != want[st.Env()] {
				t.Errorf("%s: %s secret = %v, want %v", name, st.Env(), st.Secret(), want[st.Env()])
			}
			if st.Secret() {
				seen[st.Env()] = true
				if st.Default() != "" {
					t.Errorf("%s: secret %s shows a default %q", name, st.Env(), st.Default())
				}
			}
		}
	}
	for env := range want {
		if !seen[env] {
			t.Errorf("no command registers the secret %s", env)
		}
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
	log, err := cli.NewLogger(&logBuf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	s.LogConfig(log)
	for _, v := range vars {
		if strings.Contains(logBuf.String(), v) {
			t.Errorf("effective configuration shows %q: %s", v, logBuf.String())
		}
	}
	if !strings.Contains(logBuf.String(), `"fleet_token":"set"`) || !strings.Contains(logBuf.String(), `"password":"set"`) {
		t.Errorf("secrets not shown as set: %s", logBuf.String())
	}
}

// TestFleetTokenGRPCCannotCarry: a fleet token with a byte gRPC metadata
// cannot carry (a secrets file's second trailing newline, a CR, a
// non-ASCII rune) stops coordinator and worker at start, naming the byte
// and not the token. The coordinator started, said ready and leased
// nothing; every worker failed each connection with "header key
// authorization contains value with non-printable ASCII characters".
func TestFleetTokenGRPCCannotCarry(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, content, want string
	}{
		{"two newlines", token + "\n\n", "byte 0x0a at offset 32 of 33"},
		{"a lone CR", token + "\r", "byte 0x0d at offset 32 of 33"},
		{"non-ASCII", "é" + token, "byte 0xc3 at offset 0"},
	} {
		path := filepath.Join(t.TempDir(), "fleet_token")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{"DRAGONFLY_FLEET_TOKEN_FILE": path, "DRAGONFLY_BASE_URL": "http://127.0.0.1:1"}
		for _, args := range [][]string{
			{"coordinator", "--listen-addr", "127.0.0.1:0", "--metrics-addr", ""},
			{"worker", "--coordinator-addr", "127.0.0.1:1"},
		} {
			code, errOut := startStopped(t, vars, args...)
			if code != 2 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "printable ASCII") {
				t.Errorf("%s: %s: exit %d, stderr %q; want 2 and %q", tc.name, args[0], code, errOut, tc.want)
			}
			if strings.Contains(errOut, token) {
				t.Errorf("%s: %s: the error shows the token: %q", tc.name, args[0], errOut)
			}
		}
	}
}
