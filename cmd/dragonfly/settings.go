package main

// The settings several commands share, and checks of settings.

import (
	"slices"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/fleetauth"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/worker"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
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

// limitSettings are the scanning limits shared by scan, worker and local.
// The four size settings are each their own setting; limit.Sizes.Resolve
// decides what they mean (the reference client's eras) after every source
// (flags, environment, config files) is merged.
type limitSettings struct {
	sizes       limit.Sizes
	expanded    int64
	entries     int
	scanTimeout time.Duration
	matchMemory int64
}

func limitFlags(s *cli.Settings, l *limitSettings) {
	s.Var(cli.Size(&l.sizes.Download, 0), "DRAGONFLY_MAX_DOWNLOAD_SIZE", "maximum bytes downloaded per distribution").
		DefaultText("128MB; unset, --max-scan-size or else --max-size sets it, as the 2023 client read them")
	s.Var(cli.Size(&l.sizes.Scan, 0), "DRAGONFLY_MAX_SCAN_SIZE", "the reference client's limit: alone, the download cap per distribution (2023 client); with --max-download-size, the cap of one file (2026 client)")
	s.Var(cli.Size(&l.sizes.Size, 0), "DRAGONFLY_MAX_SIZE", "the download cap per distribution, as the 2023 client's text also calls it (--max-scan-size wins; ignored with --max-download-size)")
	s.Var(cli.Size(&l.sizes.File, 0), "DRAGONFLY_MAX_FILE_SIZE", "maximum bytes of one file").
		DefaultText("64MiB; unset, --max-scan-size sets it when --max-download-size is set, as the 2026 client read them")
	s.Var(cli.Size(&l.expanded, limit.DefaultExpanded), "DRAGONFLY_MAX_EXPANDED_SIZE", "maximum total bytes of the files of one distribution")
	s.Var(cli.Int(&l.entries, limit.DefaultEntries), "DRAGONFLY_MAX_ARCHIVE_ENTRIES", "maximum entries in one archive")
	s.Var(cli.Duration(&l.scanTimeout, limit.DefaultScanTimeout), "DRAGONFLY_SCAN_TIMEOUT", "maximum YARA time for one file (at least 1s; libyara counts whole seconds, rounded up)")
	s.Var(cli.Size(&l.matchMemory, limit.DefaultMatchMemory), "DRAGONFLY_MAX_MATCH_MEMORY", "maximum memory libyara may hold for the matches of one file's scan, per scanner thread (at least 1MiB; a file built to match millions of times fails instead)")
}

// resolve validates the limits and returns them with the size resolution.
func (l *limitSettings) resolve() (limit.Limits, limit.Resolution, error) {
	if l.entries <= 0 {
		return limit.Limits{}, limit.Resolution{}, atLeast("DRAGONFLY_MAX_ARCHIVE_ENTRIES", l.entries, 1)
	}
	if l.scanTimeout < time.Second {
		// libyara counts whole seconds and reads 0 as no timeout.
		return limit.Limits{}, limit.Resolution{}, cli.Usage("DRAGONFLY_SCAN_TIMEOUT: at least 1s (libyara counts a scan's timeout in whole seconds)")
	}
	if l.matchMemory < minMatchMemory {
		return limit.Limits{}, limit.Resolution{}, cli.Usage("DRAGONFLY_MAX_MATCH_MEMORY=%d: at least %d (1 MiB: below it ordinary files fail)", l.matchMemory, minMatchMemory)
	}
	r := l.sizes.Resolve()
	return limit.Limits{
		Download: r.Download, Expanded: l.expanded, File: r.File,
		Entries: l.entries, ScanTimeout: l.scanTimeout, MatchMemory: l.matchMemory,
	}, r, nil
}

// minMatchMemory is the least DRAGONFLY_MAX_MATCH_MEMORY: a bound near the
// cost of one page of matches (1024 of them) would fail ordinary files.
const minMatchMemory = 1 << 20

// atLeast is the usage error for a setting below its minimum (0 or 1).
func atLeast(env string, n, min int) error {
	if min == 0 {
		return cli.Usage("%s=%d: must not be negative", env, n)
	}
	return cli.Usage("%s=%d: must be positive", env, n)
}

// atMost is the usage error for a setting above its maximum.
func atMost(env string, n, max int) error {
	return cli.Usage("%s=%d: at most %d", env, n, max)
}

// fleetInsecureFlag registers DRAGONFLY_FLEET_INSECURE (coordinator and worker).
func fleetInsecureFlag(s *cli.Settings, p *bool) {
	s.Var(cli.Bool(p, false), "DRAGONFLY_FLEET_INSECURE", "allow the fleet token over plaintext gRPC beyond loopback (a development network only: without TLS anyone on the path reads it)")
}

// tlsFlags registers the TLS files shared by coordinator and worker.
func tlsFlags(s *cli.Settings, f *fleetauth.TLSFiles) {
	s.Var(cli.Bool(&f.On, false), "DRAGONFLY_TLS", "use TLS even without the files below (a worker then verifies the coordinator with the system's roots)")
	s.Var(cli.String(&f.Cert, ""), "DRAGONFLY_TLS_CERT", "PEM certificate of this side")
	s.Var(cli.String(&f.Key, ""), "DRAGONFLY_TLS_KEY", "PEM private key of this side")
	s.Var(cli.String(&f.CA, ""), "DRAGONFLY_TLS_CA", "PEM CA that verifies the other side (on the coordinator: requires worker client certificates, mutual TLS)")
}

// downloadFlags registers the bounds of downloads (worker and scan).
func downloadFlags(s *cli.Settings, c *fetch.Config) {
	s.Var(cli.Duration(&c.StallTimeout, fetch.DefaultStallTimeout), "DRAGONFLY_DOWNLOAD_STALL_TIMEOUT", "abort a download with no progress for this long")
	s.Var(cli.Duration(&c.TotalTimeout, fetch.DefaultTotalTimeout), "DRAGONFLY_DOWNLOAD_TIMEOUT", "cap on one distribution's download, retries included")
	s.Var(cli.Int(&c.Attempts, fetch.DefaultAttempts), "DRAGONFLY_DOWNLOAD_ATTEMPTS", "requests per download when trouble is transient (timeouts, 5xx, 429, resets)")
}

// checkDownloads checks the bounds downloadFlags registers.
func checkDownloads(c *fetch.Config) error {
	if c.Attempts <= 0 {
		return atLeast("DRAGONFLY_DOWNLOAD_ATTEMPTS", c.Attempts, 1)
	}
	return positive(
		durationSetting{"DRAGONFLY_DOWNLOAD_STALL_TIMEOUT", c.StallTimeout},
		durationSetting{"DRAGONFLY_DOWNLOAD_TIMEOUT", c.TotalTimeout})
}

// durationSetting is a duration setting's variable and value, for positive.
type durationSetting struct {
	env string
	d   time.Duration
}

// positive refuses a duration setting of 0 (the parser refuses negative
// ones). The packages read a zero duration as their default, so 0 ran as
// 60s, 2m, 30s or 25s while the startup log's effective configuration said
// 0s; none of these settings documents a meaning for 0.
func positive(settings ...durationSetting) error {
	for _, st := range settings {
		if st.d <= 0 {
			return cli.Usage("%s=%s: must be positive", st.env, cli.FormatDuration(st.d))
		}
	}
	return nil
}

// checkScanning checks what scan and rules profile share: the limits,
// the threads and the output format (*format "" is the first of formats on
// a terminal, json otherwise; formatName names its setting in an error:
// its variable, so that the error names it as the user gave it, or --format
// when it has none).
func checkScanning(e *cli.Env, l *limitSettings, threads int, format *string, formatName string, formats ...string) (limit.Limits, limit.Resolution, error) {
	lim, sizes, err := l.resolve()
	if err != nil {
		return lim, sizes, err
	}
	if threads <= 0 {
		return lim, sizes, atLeast("DRAGONFLY_THREADS", threads, 1)
	}
	if threads > worker.MaxThreads {
		return lim, sizes, atMost("DRAGONFLY_THREADS", threads, worker.MaxThreads)
	}
	if *format == "" {
		*format = "json"
		if cli.IsTerminal(e.Stdout) {
			*format = formats[0]
		}
	}
	if !slices.Contains(formats, *format) {
		return lim, sizes, cli.Usage("%s=%q: not one of %s", formatName, clip.String(*format, 256), strings.Join(formats, ", "))
	}
	return lim, sizes, nil
}
