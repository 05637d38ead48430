// Package rulecache fetches the Dragonfly API's current rule set for
// dragonfly scan --rules-from-api and keeps every set it fetched on disk,
// by hash, so that a scan still runs when the API is unreachable.
//
// Each set is a file DIR/HASH.json (DIR is dragonfly-fleet/rules under the
// user cache directory), written atomically and readable by its owner only:
// a GET /rules document ({"hash", "rules"}, so --rules reads it) plus the
// base URL it came from and when. Only a hash that is a safe file name
// becomes a file; a file read back is bounded (MaxFile), must name its own
// hash and the same base URL, and must be the user's own: the directory and
// the file owned by the user and writable by nobody else.
package rulecache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"syscall"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/version"
)

// Attempts is how many times Fetch tries GET /rules before it falls back to
// the cache: a terminal user waits for it.
const Attempts = 3

// MaxFile bounds one cached rule set (the API client's response bound).
const MaxFile = mainframe.DefaultMaxResponseBytes + 1<<20

// Config configures Fetch.
type Config struct {
	// API are the coordinator's API settings (base URL, credentials,
	// timeout); the reference client's credential conventions are applied
	// (mainframe.ResolveAuth).
	API mainframe.Config
	// CacheDir is the user cache directory (os.UserCacheDir); an error
	// means no cache: nothing is written and nothing can be fallen back on.
	CacheDir func() (string, error)
	// Now is the clock of the fetch times and ages. Default time.Now.
	Now func() time.Time
	// Warn receives each warning (a set not cached, a cached set used).
	// Default: none.
	Warn func(msg string)
}

// entry is one cached rule set: a GET /rules document (so --rules accepts
// the file) plus where and when it was fetched.
type entry struct {
	Hash    string            `json:"hash"`
	Rules   map[string]string `json:"rules"`
	BaseURL string            `json:"base_url"`
	Fetched time.Time         `json:"fetched"`
}

// Fetch returns the current rule set from the Dragonfly API, caching it, and
// a description of where it came from. When the API is unreachable (network
// trouble, 5xx, 408, 429, token endpoint down) it returns the newest set
// cached from the same base URL, with a warning naming its hash and age;
// refused credentials and other answers are errors, as is an unusable API
// configuration.
func Fetch(ctx context.Context, cfg Config) (rules.Set, string, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Warn == nil {
		cfg.Warn = func(string) {}
	}
	a, cred, err := mainframe.ResolveAuth(cfg.API.Auth)
	if err != nil {
		return rules.Set{}, "", err
	}
	cfg.API.Auth = a
	cfg.API.UserAgent = version.UserAgent()
	cfg.API.Attempts = Attempts
	client, err := mainframe.New(cfg.API)
	if err != nil {
		return rules.Set{}, "", err
	}
	base := client.BaseURL()
	from := "the Dragonfly API at " + base + " (credentials: " + cred.String() + ")"
	dir, dirErr := cfg.CacheDir()
	if dirErr == nil {
		dir = filepath.Join(dir, "dragonfly-fleet", "rules")
	}

	rs, err := client.Rules(ctx)
	if err == nil {
		set := rules.Set{Hash: rs.Hash, Sources: rs.Rules}
		if dirErr != nil {
			cfg.Warn(fmt.Sprintf("rule set not cached: %v", dirErr))
		} else if err := write(dir, entry{Hash: rs.Hash, Rules: rs.Rules, BaseURL: base, Fetched: cfg.Now().UTC()}); err != nil {
			cfg.Warn("rule set not cached: " + clip.Error(err, 512))
		}
		return set, from, nil
	}
	if !unreachable(err) || ctx.Err() != nil {
		return rules.Set{}, "", fmt.Errorf("rules from the Dragonfly API: %s", clip.Error(err, 1024))
	}
	if dirErr != nil {
		return rules.Set{}, "", fmt.Errorf("the Dragonfly API is unreachable (%s) and there is no cache: %v", clip.Error(err, 1024), dirErr)
	}
	c, path, cerr := newest(dir, base)
	if cerr != nil {
		return rules.Set{}, "", fmt.Errorf("the Dragonfly API is unreachable (%s) and no rule set from %s is cached in %s: %w", clip.Error(err, 1024), base, dir, cerr)
	}
	age := status.FormatDuration(cfg.Now().Sub(c.Fetched))
	cfg.Warn(fmt.Sprintf("the Dragonfly API is unreachable (%s); using the cached rule set %s fetched %s ago (%s)", clip.Error(err, 1024), c.Hash, age, path))
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

// safeHash is what a rule set hash must look like to become a file name;
// the hash comes from the server.
var safeHash = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)

// write writes c to dir/HASH.json (atomically, owner only).
func write(dir string, c entry) error {
	if !safeHash.MatchString(c.Hash) {
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

// newest returns the most recently fetched rule set in dir that came from
// base, and its path.
func newest(dir, base string) (entry, string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return entry{}, "", err
	}
	if err := ownOnly(fi); err != nil {
		return entry{}, "", fmt.Errorf("%s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return entry{}, "", err
	}
	type cand struct {
		path string
		mod  time.Time
	}
	var cands []cand
	for _, de := range entries {
		name := de.Name()
		if de.Type().IsRegular() && filepath.Ext(name) == ".json" && safeHash.MatchString(name[:len(name)-len(".json")]) {
			if fi, err := de.Info(); err == nil && fi.Size() <= MaxFile {
				cands = append(cands, cand{filepath.Join(dir, name), fi.ModTime()})
			}
		}
	}
	// Newest first: every fetch rewrites its file, so the first set from base
	// is the one fetched last.
	sort.Slice(cands, func(i, j int) bool { return cands[i].mod.After(cands[j].mod) })
	for _, cd := range cands {
		// Without following a link or blocking on a FIFO: the file may
		// have been replaced since it was listed.
		f, err := os.OpenFile(cd.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || ownOnly(fi) != nil {
			f.Close()
			continue
		}
		// A file over MaxFile is cut there and fails to decode.
		data, err := io.ReadAll(io.LimitReader(f, MaxFile))
		f.Close()
		var c entry
		if err != nil || json.Unmarshal(data, &c) != nil || c.BaseURL != base || c.Rules == nil ||
			filepath.Base(cd.path) != c.Hash+".json" {
			continue
		}
		return c, cd.path, nil
	}
	return entry{}, "", errors.New("none found")
}

// ownOnly refuses a cache directory or file that someone other than the
// user could have written (its owner, or a group or other write bit): its
// rule set would become the scan's rules.
func ownOnly(fi os.FileInfo) error {
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("writable by others (mode %v): not used", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by user %d, not %d: not used", st.Uid, os.Geteuid())
	}
	return nil
}
