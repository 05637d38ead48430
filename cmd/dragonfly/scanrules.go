package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/version"
)

// scanAPIAttempts is how many times scan tries GET /rules before it falls
// back to the cache: a terminal user waits for it.
const scanAPIAttempts = 3

// maxCachedRules bounds one cached rule set (the API client's response bound).
const maxCachedRules = mainframe.DefaultMaxResponseBytes + 1<<20

// cachedRules is one cached rule set: a GET /rules document (so --rules
// accepts the file) plus where and when it was fetched.
type cachedRules struct {
	Hash    string            `json:"hash"`
	Rules   map[string]string `json:"rules"`
	BaseURL string            `json:"base_url"`
	Fetched time.Time         `json:"fetched"`
}

// apiRules fetches the current rule set from the Dragonfly API and caches it
// under the user cache directory (dragonfly-fleet/rules/HASH.json). When the
// API is unreachable (network trouble, 5xx, 408, 429, token endpoint down)
// it uses the newest set cached from the same base URL, with a warning
// naming its hash and age; refused credentials and other answers are errors.
func apiRules(ctx context.Context, e *cli.Env, cfg mainframe.Config) (rules.Set, string, error) {
	cred, err := resolveAPI(&cfg)
	if err != nil {
		return rules.Set{}, "", err
	}
	cfg.UserAgent = version.UserAgent()
	cfg.Attempts = scanAPIAttempts
	client, err := mainframe.New(cfg)
	if err != nil {
		return rules.Set{}, "", cli.Usage("%v", err)
	}
	base := client.BaseURL()
	from := "the Dragonfly API at " + base + " (credentials: " + cred.String() + ")"
	dir, dirErr := e.UserCacheDir()
	if dirErr == nil {
		dir = filepath.Join(dir, "dragonfly-fleet", "rules")
	}

	rs, err := client.Rules(ctx)
	if err == nil {
		set := rules.Set{Hash: rs.Hash, Sources: rs.Rules}
		if dirErr != nil {
			fmt.Fprintf(e.Stderr, "dragonfly scan: warning: rule set not cached: %v\n", dirErr)
		} else if err := writeCachedRules(dir, cachedRules{Hash: rs.Hash, Rules: rs.Rules, BaseURL: base, Fetched: e.Clock().UTC()}); err != nil {
			fmt.Fprintf(e.Stderr, "dragonfly scan: warning: rule set not cached: %s\n", clip.Error(err, 512))
		}
		return set, from, nil
	}
	if !unreachable(err) || ctx.Err() != nil {
		return rules.Set{}, "", cli.Exit(2, fmt.Errorf("rules from the Dragonfly API: %s", clip.Error(err, 1024)))
	}
	if dirErr != nil {
		return rules.Set{}, "", cli.Exit(2, fmt.Errorf("the Dragonfly API is unreachable (%s) and there is no cache: %v", clip.Error(err, 1024), dirErr))
	}
	c, path, cerr := newestCachedRules(dir, base)
	if cerr != nil {
		return rules.Set{}, "", cli.Exit(2, fmt.Errorf("the Dragonfly API is unreachable (%s) and no rule set from %s is cached in %s: %w", clip.Error(err, 1024), base, dir, cerr))
	}
	age := status.FormatDuration(e.Clock().Sub(c.Fetched))
	fmt.Fprintf(e.Stderr, "dragonfly scan: warning: the Dragonfly API is unreachable (%s); using the cached rule set %s fetched %s ago (%s)\n",
		clip.Error(err, 1024), c.Hash, age, path)
	return rules.Set{Hash: c.Hash, Sources: c.Rules}, "the cache of the Dragonfly API at " + base + " (fetched " + age + " ago)", nil
}

// unreachable reports whether err means the API could not be reached or was
// unavailable, as opposed to an answer (refused credentials, a redirect to
// a login page, a malformed document).
func unreachable(err error) bool {
	var ae *mainframe.APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == 408 || ae.Status == 429
	}
	var auth *mainframe.AuthError
	if errors.As(err, &auth) {
		return false
	}
	var te *mainframe.TokenError
	if errors.As(err, &te) {
		return !te.Final()
	}
	var ue *url.Error
	return errors.As(err, &ue)
}

// cacheHash is what a rule set hash must look like to become a file name;
// the hash comes from the server.
var cacheHash = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)

// writeCachedRules writes c to dir/HASH.json (atomically, owner only).
func writeCachedRules(dir string, c cachedRules) error {
	if !cacheHash.MatchString(c.Hash) {
		return fmt.Errorf("hash %q is not a safe file name", clip.String(c.Hash, 256))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".rules-*.tmp")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, c.Hash+".json")); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// newestCachedRules returns the most recently fetched rule set in dir that
// came from base, and its path.
func newestCachedRules(dir, base string) (cachedRules, string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return cachedRules{}, "", err
	}
	type cand struct {
		path string
		mod  time.Time
	}
	var cands []cand
	for _, de := range entries {
		name := de.Name()
		if de.Type().IsRegular() && filepath.Ext(name) == ".json" && cacheHash.MatchString(name[:len(name)-len(".json")]) {
			if fi, err := de.Info(); err == nil {
				cands = append(cands, cand{filepath.Join(dir, name), fi.ModTime()})
			}
		}
	}
	// Newest first: every fetch rewrites its file, so the first set from base
	// is the one fetched last.
	sort.Slice(cands, func(i, j int) bool { return cands[i].mod.After(cands[j].mod) })
	for _, cd := range cands {
		data, err := readBounded(cd.path, maxCachedRules)
		if err != nil {
			continue
		}
		var c cachedRules
		if json.Unmarshal(data, &c) != nil || c.BaseURL != base || c.Rules == nil ||
			filepath.Base(cd.path) != c.Hash+".json" {
			continue
		}
		return c, cd.path, nil
	}
	return cachedRules{}, "", errors.New("none found")
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return data, nil
}
