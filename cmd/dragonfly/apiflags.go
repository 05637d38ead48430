package main

import "github.com/dragonfly-fleet/fleet/coordinator/mainframe"

// apiFlags registers the Dragonfly API settings (base URL, credentials,
// timeout) on s, filling cfg. The names are the reference client's
// (DRAGONFLY_*; in Config.toml the same names lower-cased without the
// prefix). Secrets have no default, so the help never prints one; prefer the
// environment or Config.toml to flags for them (flags show in ps).
func apiFlags(s *settings, cfg *mainframe.Config) {
	a := &cfg.Auth
	s.String(&cfg.BaseURL, "base-url", mainframe.DefaultBaseURL, "Dragonfly API base URL", "DRAGONFLY_BASE_URL")
	s.Duration(&cfg.Timeout, "api-timeout", mainframe.DefaultTimeout, "timeout of one API request, token requests included (seconds or a duration)", "DRAGONFLY_API_TIMEOUT")

	s.String(&a.CFClientID, "cf-access-client-id", "", "Cloudflare Access service token id (with --cf-access-client-secret)", "DRAGONFLY_CF_ACCESS_CLIENT_ID")
	s.String(&a.CFClientSecret, "cf-access-client-secret", "", "Cloudflare Access service token secret (secret: prefer the environment)", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET")

	s.String(&a.ClientID, "client-id", "", "Auth0 client id; setting it turns Auth0 authentication on", "DRAGONFLY_CLIENT_ID")
	s.String(&a.ClientSecret, "client-secret", "", "Auth0 client secret (secret: prefer the environment)", "DRAGONFLY_CLIENT_SECRET")
	s.String(&a.Username, "username", "", "Auth0 user name (password grant)", "DRAGONFLY_USERNAME")
	s.String(&a.Password, "password", "", "Auth0 password (password grant; secret: prefer the environment)", "DRAGONFLY_PASSWORD")
	s.String(&a.GrantType, "grant-type", mainframe.GrantPassword, "Auth0 grant: password or client_credentials", "DRAGONFLY_GRANT_TYPE")
	s.String(&a.Auth0Domain, "auth0-domain", mainframe.DefaultAuth0Domain, "Auth0 tenant; tokens come from https://DOMAIN/oauth/token", "DRAGONFLY_AUTH0_DOMAIN")
	s.String(&a.TokenURL, "token-url", "", "Auth0 token endpoint, overriding the one derived from --auth0-domain", "DRAGONFLY_TOKEN_URL")
	s.String(&a.Audience, "audience", mainframe.DefaultAudience, "Auth0 audience (API identifier) of the tokens", "DRAGONFLY_AUDIENCE")
}
