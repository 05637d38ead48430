package main

import (
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/internal/cli"
)

// apiFlags registers the Dragonfly API settings (base URL, credentials,
// timeout) on s, filling cfg. The names are the reference client's
// (DRAGONFLY_*; in Config.toml the same names lower-cased without the
// prefix). Credentials are secrets: no default or value is ever shown, and
// each may come from a file (DRAGONFLY_PASSWORD_FILE, password_file).
// DRAGONFLY_GRANT_TYPE stays "" unless set, so that resolveAPI can tell an
// explicit grant from the default.
func apiFlags(s *cli.Settings, cfg *mainframe.Config) {
	a := &cfg.Auth
	s.Var(cli.String(&cfg.BaseURL, mainframe.DefaultBaseURL), "DRAGONFLY_BASE_URL", "Dragonfly API base URL")
	s.Var(cli.Duration(&cfg.Timeout, mainframe.DefaultTimeout), "DRAGONFLY_API_TIMEOUT", "timeout of one API request, token requests included (seconds or a duration)")

	s.Var(cli.String(&a.CFClientID, ""), "DRAGONFLY_CF_ACCESS_CLIENT_ID", "Cloudflare Access service token id (with --cf-access-client-secret)").MarkSecret()
	s.Var(cli.String(&a.CFClientSecret, ""), "DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "Cloudflare Access service token secret").MarkSecret()

	s.Var(cli.String(&a.ClientID, ""), "DRAGONFLY_CLIENT_ID", "Auth0 client id; without --username, --password and --grant-type client_credentials, with --client-secret: a Cloudflare Access service token (the 2024-25 client)").MarkSecret()
	s.Var(cli.String(&a.ClientSecret, ""), "DRAGONFLY_CLIENT_SECRET", "Auth0 client secret (or Cloudflare, see --client-id)").MarkSecret()
	s.Var(cli.String(&a.Username, ""), "DRAGONFLY_USERNAME", "Auth0 user name (password grant)").MarkSecret()
	s.Var(cli.String(&a.Password, ""), "DRAGONFLY_PASSWORD", "Auth0 password (password grant)").MarkSecret()
	s.Var(cli.String(&a.GrantType, ""), "DRAGONFLY_GRANT_TYPE", "Auth0 grant: password or client_credentials").DefaultText(mainframe.GrantPassword)
	s.Var(cli.String(&a.Auth0Domain, mainframe.DefaultAuth0Domain), "DRAGONFLY_AUTH0_DOMAIN", "Auth0 tenant; tokens come from https://DOMAIN/oauth/token")
	s.Var(cli.String(&a.TokenURL, ""), "DRAGONFLY_TOKEN_URL", "Auth0 token endpoint, overriding the one derived from --auth0-domain")
	s.Var(cli.String(&a.Audience, mainframe.DefaultAudience), "DRAGONFLY_AUDIENCE", "Auth0 audience (API identifier) of the tokens")
}

// resolveAPI applies the reference client's credential conventions to cfg
// (mainframe.ResolveAuth) and says which credentials it sends.
func resolveAPI(cfg *mainframe.Config) (mainframe.Credentials, error) {
	a, cred, err := mainframe.ResolveAuth(cfg.Auth)
	if err != nil {
		return cred, cli.Usage("%v", err)
	}
	cfg.Auth = a
	return cred, nil
}
