package mainframe

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c := mustNew(t, Config{})
	cfg := c.cfg
	if cfg.BaseURL != DefaultBaseURL || cfg.Timeout != DefaultTimeout || cfg.Attempts != DefaultAttempts ||
		cfg.BaseBackoff != DefaultBaseBackoff || cfg.MaxBackoff != DefaultMaxBackoff || cfg.MaxResponseBytes != DefaultMaxResponseBytes {
		t.Errorf("defaults = %+v", cfg)
	}
	if !strings.HasPrefix(cfg.UserAgent, "dragonfly-fleet/") {
		t.Errorf("user agent %q", cfg.UserAgent)
	}
	if c.tokens != nil {
		t.Error("no Auth0 configured, yet a token cache")
	}

	c = mustNew(t, Config{BaseURL: "http://127.0.0.1:8000///", Auth: Auth{ClientID: "id", ClientSecret: "s", Username: "u", Password: "p"}})
	a := c.cfg.Auth
	if c.BaseURL() != "http://127.0.0.1:8000" {
		t.Errorf("base URL %q", c.BaseURL())
	}
	if a.TokenURL != "https://vipyrsec.us.auth0.com/oauth/token" || a.Audience != DefaultAudience || a.GrantType != GrantPassword || a.RefreshMargin != time.Minute {
		t.Errorf("auth defaults = %+v", a)
	}
	c = mustNew(t, Config{Auth: Auth{Auth0Domain: "tenant.eu.auth0.com", GrantType: GrantClientCredentials, ClientID: "id", ClientSecret: "s"}})
	if c.cfg.Auth.TokenURL != "https://tenant.eu.auth0.com/oauth/token" {
		t.Errorf("token URL %q", c.cfg.Auth.TokenURL)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"base url scheme", Config{BaseURL: "dragonfly.vipyrsec.com"}, `DRAGONFLY_BASE_URL "dragonfly.vipyrsec.com": want an http:// or https:// URL`},
		{"base url credentials", Config{BaseURL: "https://u:p@x.example"}, "DRAGONFLY_BASE_URL"},
		{"base url query", Config{BaseURL: "https://x.example/?a=1"}, "no query"},
		{"cf id alone", Config{Auth: Auth{CFClientID: "id"}}, "DRAGONFLY_CF_ACCESS_CLIENT_SECRET is required when DRAGONFLY_CF_ACCESS_CLIENT_ID is set"},
		{"cf secret alone", Config{Auth: Auth{CFClientSecret: "s"}}, "DRAGONFLY_CF_ACCESS_CLIENT_ID is required"},
		{"cf secret newline", Config{Auth: Auth{CFClientID: "id", CFClientSecret: "s\n"}}, "DRAGONFLY_CF_ACCESS_CLIENT_SECRET contains white space"},
		{"grant type", Config{Auth: Auth{ClientID: "id", ClientSecret: "s", GrantType: "implicit"}}, `DRAGONFLY_GRANT_TYPE "implicit": want password or client_credentials`},
		{"password grant needs user", Config{Auth: Auth{ClientID: "id", ClientSecret: "s"}}, "DRAGONFLY_USERNAME and DRAGONFLY_PASSWORD are required"},
		{"client secret", Config{Auth: Auth{ClientID: "id", Username: "u", Password: "p"}}, "DRAGONFLY_CLIENT_SECRET is required"},
		{"password without client id", Config{Auth: Auth{Username: "u", Password: "p"}}, "DRAGONFLY_USERNAME is set but DRAGONFLY_CLIENT_ID is not"},
		{"domain with scheme", Config{Auth: Auth{ClientID: "id", ClientSecret: "s", Username: "u", Password: "p", Auth0Domain: "https://x.auth0.com"}}, "DRAGONFLY_AUTH0_DOMAIN"},
		{"token url", Config{Auth: Auth{ClientID: "id", ClientSecret: "s", Username: "u", Password: "p", TokenURL: "ftp://x"}}, "DRAGONFLY_TOKEN_URL"},
		{"timeout", Config{Timeout: -time.Second}, "DRAGONFLY_API_TIMEOUT"},
		{"several at once", Config{BaseURL: "x", Auth: Auth{CFClientID: "id"}}, "DRAGONFLY_CF_ACCESS_CLIENT_SECRET is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
