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

// TestResolveAuth covers the credential modes of the reference client's eras
// (dragonfly-api.md, "Authentication").
func TestResolveAuth(t *testing.T) {
	tests := []struct {
		name    string
		in      Auth
		want    Auth
		mode    string
		wantErr string
	}{
		{name: "none", in: Auth{}, want: Auth{}, mode: "none"},
		{name: "cloudflare (2025-)", in: Auth{CFClientID: "cf-id", CFClientSecret: "cf-s"},
			want: Auth{CFClientID: "cf-id", CFClientSecret: "cf-s"}, mode: "cloudflare access service token"},
		{name: "2024-25: client id and secret alone are a cloudflare token", in: Auth{ClientID: "id", ClientSecret: "s"},
			want: Auth{CFClientID: "id", CFClientSecret: "s"}, mode: "cloudflare access service token (from DRAGONFLY_CLIENT_ID and DRAGONFLY_CLIENT_SECRET, as the 2024-25 client sent it)"},
		{name: "2024-25 with an explicit password grant and no user (the spec names only client_credentials)", in: Auth{ClientID: "id", ClientSecret: "s", GrantType: GrantPassword},
			want: Auth{CFClientID: "id", CFClientSecret: "s", GrantType: GrantPassword}, mode: "cloudflare access service token (from DRAGONFLY_CLIENT_ID"},
		{name: "2023: password grant", in: Auth{ClientID: "id", ClientSecret: "s", Username: "u", Password: "p"},
			want: Auth{ClientID: "id", ClientSecret: "s", Username: "u", Password: "p"}, mode: "auth0 password grant"},
		{name: "username alone keeps auth0 (New then asks for the password)", in: Auth{ClientID: "id", ClientSecret: "s", Username: "u"},
			want: Auth{ClientID: "id", ClientSecret: "s", Username: "u"}, mode: "auth0 password grant"},
		{name: "password alone keeps auth0", in: Auth{ClientID: "id", ClientSecret: "s", Password: "p"},
			want: Auth{ClientID: "id", ClientSecret: "s", Password: "p"}, mode: "auth0 password grant"},
		{name: "explicit client_credentials keeps auth0", in: Auth{ClientID: "id", ClientSecret: "s", GrantType: GrantClientCredentials},
			want: Auth{ClientID: "id", ClientSecret: "s", GrantType: GrantClientCredentials}, mode: "auth0 client_credentials grant"},
		{name: "client id without secret stays auth0 (New names the missing secret)", in: Auth{ClientID: "id"},
			want: Auth{ClientID: "id"}, mode: "auth0 password grant"},
		{name: "cloudflare and auth0 at once", in: Auth{CFClientID: "cf-id", CFClientSecret: "cf-s", ClientID: "id", ClientSecret: "s", Username: "u", Password: "p"},
			want: Auth{CFClientID: "cf-id", CFClientSecret: "cf-s", ClientID: "id", ClientSecret: "s", Username: "u", Password: "p"}, mode: "cloudflare access service token + auth0 password grant"},
		{name: "a misspelt grant is an error, not a cloudflare token", in: Auth{ClientID: "id", ClientSecret: "s", GrantType: "client-credentials"},
			wantErr: `DRAGONFLY_GRANT_TYPE "client-credentials": want password or client_credentials`},
		{name: "a grant with a trailing space is an error", in: Auth{ClientID: "id", ClientSecret: "s", GrantType: "client_credentials "},
			wantErr: `DRAGONFLY_GRANT_TYPE "client_credentials ": want password or client_credentials`},
		{name: "an unknown grant is an error", in: Auth{ClientID: "id", ClientSecret: "s", GrantType: "implicit"},
			wantErr: `DRAGONFLY_GRANT_TYPE "implicit"`},
		{name: "two cloudflare tokens are ambiguous", in: Auth{CFClientID: "cf-id", CFClientSecret: "cf-s", ClientID: "id", ClientSecret: "s"},
			wantErr: "DRAGONFLY_CF_ACCESS_CLIENT_ID/SECRET are set too"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cred, err := ResolveAuth(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "cf-s") || strings.Contains(err.Error(), `"s"`) {
					t.Errorf("error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("auth = %+v, want %+v", got, tt.want)
			}
			if !strings.HasPrefix(cred.String(), tt.mode) {
				t.Errorf("credentials = %q, want %q", cred, tt.mode)
			}
		})
	}
}

// TestResolveAuthLegacyClient: a 2024-25 environment makes a client that
// sends the Cloudflare headers and asks Auth0 for nothing.
func TestResolveAuthLegacyClient(t *testing.T) {
	a, cred, err := ResolveAuth(Auth{ClientID: "id.access", ClientSecret: "s3cret"})
	if err != nil || !cred.LegacyCloudflare {
		t.Fatalf("resolve: %v %+v", err, cred)
	}
	c := mustNew(t, Config{Auth: a})
	if c.tokens != nil {
		t.Error("a cloudflare token, yet an Auth0 token cache")
	}
	if !c.cfg.Auth.cfAuth() || c.cfg.Auth.CFClientID != "id.access" || c.cfg.Auth.CFClientSecret != "s3cret" {
		t.Errorf("auth = %+v", c.cfg.Auth)
	}
}

// TestConfigErrorsHideURLCredentials: a base or token URL refused for the
// credentials, query or fragment it carries is named in the error without
// them.
func TestConfigErrorsHideURLCredentials(t *testing.T) {
	auth := func(tokenURL string) Auth {
		return Auth{ClientID: "id", ClientSecret: "s", Username: "u", Password: "p", TokenURL: tokenURL}
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{BaseURL: "https://user:hunter2@x.example"}, `DRAGONFLY_BASE_URL "https://[redacted]@x.example": credentials in the URL are not allowed`},
		{Config{BaseURL: "https://hunter2@x.example"}, "DRAGONFLY_BASE_URL"},
		{Config{BaseURL: "https://x.example/api?key=hunter2"}, `DRAGONFLY_BASE_URL "https://x.example/api?[redacted]": no query or fragment allowed`},
		{Config{BaseURL: "https://x.example/#hunter2"}, "no query or fragment allowed"},
		{Config{BaseURL: "https://user:hunter2@x.example:port"}, "DRAGONFLY_BASE_URL"},
		{Config{Auth: auth("https://u:hunter2@auth.example/oauth/token")}, "DRAGONFLY_TOKEN_URL"},
		{Config{Auth: auth("https://auth.example/oauth/token?client_secret=hunter2")}, "DRAGONFLY_TOKEN_URL"},
		// A password holding an unescaped '/' parses as host "user:12" and
		// path "/hunter2@x.example": refused, and nothing past the scheme
		// shown.
		{Config{BaseURL: "https://user:12/hunter2@x.example"}, `DRAGONFLY_BASE_URL "https://[redacted]": an '@' in the URL`},
		{Config{Auth: auth("https://u:12/hunter2@auth.example/oauth/token")}, `DRAGONFLY_TOKEN_URL "https://[redacted]"`},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.cfg.BaseURL, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the URL's credential: %v", err)
		}
	}
}
