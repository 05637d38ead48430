package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
)

// apiSettings are the API settings: flag, env, TOML key, a value, and how to
// read the field it sets.
var apiSettings = []struct {
	flag, env, key, value string
	get                   func(*mainframe.Config) string
}{
	{"base-url", "DRAGONFLY_BASE_URL", "base_url", "http://127.0.0.1:8000", func(c *mainframe.Config) string { return c.BaseURL }},
	{"cf-access-client-id", "DRAGONFLY_CF_ACCESS_CLIENT_ID", "cf_access_client_id", "id.access", func(c *mainframe.Config) string { return c.Auth.CFClientID }},
	{"cf-access-client-secret", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "cf_access_client_secret", "cf-s3cret", func(c *mainframe.Config) string { return c.Auth.CFClientSecret }},
	{"auth0-domain", "DRAGONFLY_AUTH0_DOMAIN", "auth0_domain", "tenant.eu.auth0.com", func(c *mainframe.Config) string { return c.Auth.Auth0Domain }},
	{"token-url", "DRAGONFLY_TOKEN_URL", "token_url", "http://127.0.0.1:8000/oauth/token", func(c *mainframe.Config) string { return c.Auth.TokenURL }},
	{"audience", "DRAGONFLY_AUDIENCE", "audience", "https://api.example", func(c *mainframe.Config) string { return c.Auth.Audience }},
	{"grant-type", "DRAGONFLY_GRANT_TYPE", "grant_type", "client_credentials", func(c *mainframe.Config) string { return c.Auth.GrantType }},
	{"client-id", "DRAGONFLY_CLIENT_ID", "client_id", "cid", func(c *mainframe.Config) string { return c.Auth.ClientID }},
	{"client-secret", "DRAGONFLY_CLIENT_SECRET", "client_secret", "client-s3cret", func(c *mainframe.Config) string { return c.Auth.ClientSecret }},
	{"username", "DRAGONFLY_USERNAME", "username", "scanner@example.org", func(c *mainframe.Config) string { return c.Auth.Username }},
	{"password", "DRAGONFLY_PASSWORD", "password", "hunter2-pw", func(c *mainframe.Config) string { return c.Auth.Password }},
	{"api-timeout", "DRAGONFLY_API_TIMEOUT", "api_timeout", "45", func(c *mainframe.Config) string { return c.Timeout.String() }},
}

func parseAPI(t *testing.T, args []string, env map[string]string, toml string) (*mainframe.Config, error) {
	t.Helper()
	s := program.Settings("dragonfly test", "summary")
	s.SetOutput(new(bytes.Buffer), new(bytes.Buffer))
	var cfg mainframe.Config
	apiFlags(s, &cfg)
	return &cfg, s.Parse(args, clitest.Env(env), clitest.ConfigDir(t, toml, ""))
}

func TestAPIFlagsDefaults(t *testing.T) {
	cfg, err := parseAPI(t, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Auth
	// The grant type stays "" unless set, so that ResolveAuth can tell an
	// explicit grant from the default (mainframe fills in "password").
	if cfg.BaseURL != mainframe.DefaultBaseURL || cfg.Timeout != 30*time.Second || a.Auth0Domain != "vipyrsec.us.auth0.com" ||
		a.Audience != "https://dragonfly.vipyrsec.com" || a.GrantType != "" || a.TokenURL != "" ||
		a.CFClientID != "" || a.CFClientSecret != "" || a.ClientID != "" || a.ClientSecret != "" || a.Username != "" || a.Password != "" {
		t.Errorf("defaults = %+v", cfg)
	}
	if _, err := mainframe.New(*cfg); err != nil {
		t.Errorf("defaults do not make a client: %v", err)
	}
}

func TestAPIFlagsEverySource(t *testing.T) {
	want := func(s string) string {
		if s == "45" {
			return "45s"
		}
		return s
	}
	for _, st := range apiSettings {
		t.Run(st.env, func(t *testing.T) {
			for source, run := range map[string]func() (*mainframe.Config, error){
				"flag": func() (*mainframe.Config, error) { return parseAPI(t, []string{"--" + st.flag, st.value}, nil, "") },
				"env":  func() (*mainframe.Config, error) { return parseAPI(t, nil, map[string]string{st.env: st.value}, "") },
				"toml": func() (*mainframe.Config, error) { return parseAPI(t, nil, nil, st.key+" = "+quoteTOML(st.value)) },
			} {
				cfg, err := run()
				if err != nil {
					t.Fatalf("%s: %v", source, err)
				}
				if got := st.get(cfg); got != want(st.value) {
					t.Errorf("%s: got %q, want %q", source, got, want(st.value))
				}
			}
		})
	}
}

func quoteTOML(v string) string {
	if v == "45" {
		return v // an integer of seconds
	}
	return `"` + v + `"`
}

func TestAPIFlagsTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{"10": 10 * time.Second, "1m": time.Minute, "2500ms": 2500 * time.Millisecond} {
		cfg, err := parseAPI(t, nil, map[string]string{"DRAGONFLY_API_TIMEOUT": in}, "")
		if err != nil || cfg.Timeout != want {
			t.Errorf("%q: %v, %v", in, cfg.Timeout, err)
		}
	}
	if _, err := parseAPI(t, nil, map[string]string{"DRAGONFLY_API_TIMEOUT": "fast"}, ""); err == nil || !strings.Contains(err.Error(), `DRAGONFLY_API_TIMEOUT="fast": not a duration`) {
		t.Errorf("err = %v", err)
	}
}

// TestAPIFlagsReferenceConfig reads a reference-client style Config.toml and
// environment into a working client configuration.
func TestAPIFlagsReferenceConfig(t *testing.T) {
	toml := `
base_url = "http://127.0.0.1:8000"
client_id = "cid"
username = "scanner@example.org"
audience = "https://dragonfly.vipyrsec.com"
`
	env := map[string]string{"DRAGONFLY_CLIENT_SECRET": "client-s3cret", "DRAGONFLY_PASSWORD": "hunter2-pw", "DRAGONFLY_TOKEN_URL": "http://127.0.0.1:8000/oauth/token"}
	cfg, err := parseAPI(t, nil, env, toml)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mainframe.New(*cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if c.BaseURL() != "http://127.0.0.1:8000" {
		t.Errorf("base URL %q", c.BaseURL())
	}
	// Without the password the configuration is refused, naming the variable.
	delete(env, "DRAGONFLY_PASSWORD")
	cfg, err = parseAPI(t, nil, env, toml)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mainframe.New(*cfg); err == nil || !strings.Contains(err.Error(), "DRAGONFLY_PASSWORD") {
		t.Errorf("err = %v", err)
	}
}

func TestAPIFlagsHelpHidesSecrets(t *testing.T) {
	s := program.Settings("dragonfly test", "summary")
	var out bytes.Buffer
	s.SetOutput(&out, new(bytes.Buffer))
	var cfg mainframe.Config
	apiFlags(s, &cfg)
	env := map[string]string{}
	for _, st := range apiSettings {
		env[st.env] = st.value
	}
	_ = s.Parse([]string{"-h"}, clitest.Env(env), clitest.ConfigDir(t, `password = "toml-pw-123"`, ""))
	help := out.String()
	for _, st := range apiSettings {
		typ := "string"
		if st.flag == "api-timeout" {
			typ = "duration"
		}
		if !strings.Contains(help, "--"+st.flag+" "+typ+"   [env "+st.env) {
			t.Errorf("help lacks --%s %s [env %s]", st.flag, typ, st.env)
		}
	}
	for _, secret := range []string{"DRAGONFLY_CF_ACCESS_CLIENT_ID", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "DRAGONFLY_CLIENT_ID", "DRAGONFLY_CLIENT_SECRET", "DRAGONFLY_USERNAME", "DRAGONFLY_PASSWORD"} {
		if !strings.Contains(help, "[env "+secret+", "+secret+"_FILE]") {
			t.Errorf("help does not offer %s_FILE", secret)
		}
	}
	for _, secret := range []string{"cf-s3cret", "client-s3cret", "hunter2-pw", "toml-pw-123"} {
		if strings.Contains(help, secret) {
			t.Errorf("help shows %q:\n%s", secret, help)
		}
	}
	if !strings.Contains(help, "(default https://dragonfly.vipyrsec.com)") || !strings.Contains(help, "(default 30s)") || !strings.Contains(help, "(default password)") {
		t.Errorf("help lacks the defaults:\n%s", help)
	}
}

// TestPlaintextAPICredentialsWarned: API credentials bound for an http://
// URL of a host that is not loopback are warned about at start, naming the
// setting (the fleet token is refused there without
// DRAGONFLY_FLEET_INSECURE; the Cloudflare secret and the Auth0 password
// went without a word). https, loopback and no credentials are quiet.
func TestPlaintextAPICredentialsWarned(t *testing.T) {
	cf := map[string]string{"DRAGONFLY_CF_ACCESS_CLIENT_ID": "cf-id", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET": "cf-secret"}
	auth0 := map[string]string{"DRAGONFLY_CLIENT_ID": "cid", "DRAGONFLY_CLIENT_SECRET": "cs", "DRAGONFLY_USERNAME": "u", "DRAGONFLY_PASSWORD": "p"}
	for _, tc := range []struct {
		name  string
		creds map[string]string
		vars  map[string]string
		want  []string // settings warned about
	}{
		{"cloudflare over http", cf, map[string]string{"DRAGONFLY_BASE_URL": "http://192.0.2.1:8000"}, []string{"DRAGONFLY_BASE_URL"}},
		{"auth0 over http", auth0, map[string]string{"DRAGONFLY_BASE_URL": "http://api.invalid", "DRAGONFLY_TOKEN_URL": "http://auth.invalid/oauth/token"}, []string{"DRAGONFLY_BASE_URL", "DRAGONFLY_TOKEN_URL"}},
		{"auth0 token URL only", auth0, map[string]string{"DRAGONFLY_BASE_URL": "https://api.invalid", "DRAGONFLY_TOKEN_URL": "http://auth.invalid/oauth/token"}, []string{"DRAGONFLY_TOKEN_URL"}},
		{"https", cf, map[string]string{"DRAGONFLY_BASE_URL": "https://api.invalid"}, nil},
		{"loopback", cf, map[string]string{"DRAGONFLY_BASE_URL": "http://127.0.0.1:1"}, nil},
		{"localhost", cf, map[string]string{"DRAGONFLY_BASE_URL": "http://localhost:1"}, nil},
		{"no credentials", nil, map[string]string{"DRAGONFLY_BASE_URL": "http://192.0.2.1:8000"}, nil},
	} {
		vars := map[string]string{"DRAGONFLY_FLEET_TOKEN": "0123456789abcdef0123"}
		for _, m := range []map[string]string{tc.creds, tc.vars} {
			for k, v := range m {
				vars[k] = v
			}
		}
		_, errOut := startStopped(t, vars, "coordinator", "--listen-addr", "127.0.0.1:0", "--metrics-addr", "")
		if !strings.Contains(errOut, "coordinator started") {
			t.Errorf("%s: the coordinator did not start: %q", tc.name, tailOf(errOut))
			continue
		}
		for _, env := range []string{"DRAGONFLY_BASE_URL", "DRAGONFLY_TOKEN_URL"} {
			want := slices.Contains(tc.want, env)
			got := strings.Contains(errOut, "plaintext: "+env+" is an http:// URL")
			if got != want {
				t.Errorf("%s: warned about %s: %v, want %v", tc.name, env, got, want)
			}
		}
		if strings.Contains(errOut, "cf-secret") {
			t.Errorf("%s: the secret is in the log", tc.name)
		}
	}
}
