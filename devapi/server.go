// Package devapi is a development Dragonfly API server that behaves like the
// real one (vipyrsec/dragonfly-mainframe, read at its 2026-08 sources) as far
// as a scanning client can tell: it refuses what the real server refuses and
// accepts what it accepts, with the same status codes and detail texts. It
// adds fault injection and introspection for tests.
//
// Leases, as the real server's POST /jobs and PUT /package:
//   - every POST /jobs first dead-letters (FAILED, "Worker lease expired
//     after N scan attempts") each expired lease that held the last attempt,
//     then leases up to batch jobs to the caller: never-leased first, then
//     expired leases with attempts left, oldest first. batch 0 only
//     dead-letters; a negative batch is a plain-text 500.
//   - a lease belongs to the identity that took it (see Config.Auth). PUT
//     /package is accepted only from that identity with the current lease's
//     attempt and assignment_id, or with both absent on the first attempt.
//     The lease's expiry itself is not checked (only a re-lease or a dead
//     letter ends it).
//   - 404 "Package `n@v` not found in database.", 409 "Package `n@v` is
//     already in a FINISHED state.", 409 "Package `n@v` exhausted its scan
//     attempt limit.", 409 "Package `n@v` is no longer assigned to this
//     worker lease."; a failed scan (by report) stays open to its lease: a
//     later success finishes it, a later failure replaces the reason.
//   - the body is the union PackageScanResult | PackageScanResultFail (see
//     parseReport); 422 as FastAPI words it; 500 (plain text) where the
//     database would fail: a new rule name given twice, a score beyond
//     32 bits, a NUL byte.
//
// Routes (API routes need authentication when Config.Auth asks for it):
//
//	POST /jobs?batch=N            lease up to N jobs
//	GET  /rules                   {"hash","rules"}
//	PUT  /package                 report a job's outcome
//	GET  /package?name=&version=  scan records of a release (or ?since=unix)
//	POST /package                 404 unknown release, else 409 (already queued)
//	GET  /queue-status            QueueStatus
//	POST /update-rules/           re-read the rules
//	GET  /                        {"server_commit","rules_commit"}
//
// Development routes, with the API's authentication when Config.Auth is set:
//
//	GET|POST /_dev/faults         read / change faults
//	GET  /_dev/stats              Stats (?accepted=N&wait=D: once N reports
//	                              were accepted, or after D, at most 1m)
//	GET  /_dev/reports            every PUT /package and its answer
//
// Unauthenticated:
//
//	GET|HEAD /packages/{h[0:2]}/{h[2:4]}/{h[4:]}/{file}  distribution bytes (h = sha256)
//	GET  /metrics                 Prometheus text format
//	POST /oauth/token             Auth0 token endpoint (Auth "auth0" only)
//	GET  /cdn-cgi/access/login/…  Cloudflare Access login page (Auth "cloudflare" only)
//
// Without authentication the /_dev/ routes let anyone who reaches the server
// change its behaviour: `dragonfly devapi` listens on 127.0.0.1 by default
// and warns when it serves beyond loopback without authentication
// (OpenToAll).
//
// For the demo (dragonfly local --demo, devapi --demo): DemoFiles are the
// built-in demo packages, WaitDrained waits until no job is left to scan, and
// WriteResults prints every release as a table (NOT REPORTED for one the
// fleet never reported, and then an error wrapping ErrUnreported).
package devapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/broadcast"
)

// File is one distribution file, e.g. "requests-2.19.1.tar.gz".
type File struct {
	Name string
	Data []byte
}

// Auth modes.
const (
	AuthNone       = "none"
	AuthCloudflare = "cloudflare"
	AuthAuth0      = "auth0"
)

// Config configures a Server. The zero value serves an empty queue with no
// rules and no authentication.
type Config struct {
	// Files are distributions, grouped into releases by their PyPI file
	// names (see PackagesDir for the conventions and order).
	Files []File
	// PackagesDir, if set, adds every regular file directly in the directory
	// (not its subdirectories; names starting with "." are skipped) as a
	// distribution. Files and PackagesDir are grouped into releases by
	// (name, version) parsed from the file names: sdists
	// name-version.tar.gz|.zip|.tar.bz2|.tar.xz|.tgz, wheels
	// name-version(-build)?-py-abi-plat.whl, eggs
	// name-version(-pyX.Y(-plat)?)?.egg; names compare PEP 503 normalized.
	// An unparseable name fails New. Releases are queued sorted by name,
	// then version.
	PackagesDir string
	// Rules are rule sources by file stem (in memory).
	Rules map[string]string
	// RulesDir, if set, adds its *.yara and *.yar files (stem = file name
	// without the extension; a file wins over a Rules entry of the same
	// stem). Changes are picked up by UpdateRules, POST /update-rules/ and a
	// stat of the directory's entries at most once a second.
	RulesDir string
	// LeaseTimeout is how long a lease stays PENDING before it may be
	// re-leased. Default 120s (the real server's JOB_TIMEOUT).
	LeaseTimeout time.Duration
	// MaxAttempts is how many leases a job gets; an expired lease with this
	// attempt is dead-lettered (FAILED). Default 3.
	MaxAttempts int
	// Auth is "none" (default), "cloudflare" (CF-Access-Client-Id and
	// CF-Access-Client-Secret must equal CFClientID and CFClientSecret or an
	// entry of CFServiceTokens, else a 302 to the Access login page) or
	// "auth0" (a bearer token from POST /oauth/token, issued for the Auth0*
	// credentials, else 401). It guards the API routes and /_dev/.
	//
	// Each caller has an identity, the owner of the leases it takes, as the
	// real server's pending_by: the service token's client id (Cloudflare),
	// the token's subject (Auth0: "auth0|<username>" for the password grant,
	// "<client id>@clients" for client_credentials), or "" for everyone
	// without authentication. A report from another identity than the
	// lease's is refused (409).
	Auth                       string
	CFClientID, CFClientSecret string
	// CFServiceTokens are further Cloudflare service tokens (client id ->
	// secret), each its own identity. Default none.
	CFServiceTokens              map[string]string
	Auth0ClientID                string
	Auth0ClientSecret            string
	Auth0Username, Auth0Password string // for grant_type=password
	// Auth0Users are further users for grant_type=password (username ->
	// password), each its own identity. Default none.
	Auth0Users    map[string]string
	Auth0Audience string // if set, a given audience must equal it
	// TokenLifetime is the lifetime of issued Auth0 tokens. Default 1h.
	TokenLifetime time.Duration
	// PublicURL is the base of distribution URLs (no trailing slash). Default:
	// derived from each /jobs request (scheme + Host header), so the URLs
	// work from wherever the client reached the server.
	PublicURL string
	// Synthetic adds N small synthetic releases after the others:
	// synth-00001 1.0 … each with one tiny deterministic sdist. For load
	// tests. Default 0.
	Synthetic int
	// SnapshotPath, if set, is a JSON snapshot of releases, scan records and
	// leases: loaded by New when it exists, written atomically (temp file +
	// rename) at most once per SnapshotInterval after a change, and on Close.
	SnapshotPath string
	// SnapshotInterval bounds how often the snapshot is written. Default 1s.
	SnapshotInterval time.Duration
	// ReportLogLimit bounds how many reports Reports keeps (the oldest are
	// dropped beyond it; Stats still counts them). Default 200000.
	ReportLogLimit int
	// Faults are the initial faults; see SetFaults.
	Faults Faults
	// Now is the clock for leases, tokens and outages. Default time.Now.
	Now func() time.Time
	// Logger receives request and state logs. Default: discard.
	Logger *slog.Logger

	newID func() string // tests: deterministic scan and assignment ids
}

// Faults are injected failures.
type Faults struct {
	// ReportErrorRate is the share of PUT /package requests answered 503
	// without touching state, in [0, 1]. Deterministic: the k-th report
	// (counting from the last SetFaults) fails iff
	// floor(k*rate) > floor((k-1)*rate), so rate 0.25 fails every 4th.
	ReportErrorRate float64
	// Latency is added before every API answer (not downloads, metrics,
	// tokens or /_dev/).
	Latency time.Duration
	// DownloadLatency is added before every distribution download's answer:
	// a package host's round trip (files.pythonhosted.org's, say), which a
	// worker should overlap with its scans.
	DownloadLatency time.Duration
}

// ReportRecord is one PUT /package request and the server's answer. Its
// strings are cut to 2 KiB with a marker (package clip) and RulesMatched
// to its first 1,024 names: a hostile report cannot make the log hold its
// megabytes ReportLogLimit times.
type ReportRecord struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	// Identity is the authenticated caller ("" without authentication).
	Identity     string `json:"identity,omitempty"`
	Name         string `json:"name,omitempty"`
	Version      string `json:"version,omitempty"`
	Attempt      *int   `json:"attempt,omitempty"`
	AssignmentID string `json:"assignment_id,omitempty"`
	// Kind is "success" or "failure" as the server understood the body
	// (see PUT /package), or "" when it was not understood (422). A report
	// answered before parsing (authentication, outage, fault, 413) is
	// classified by its fields (score without reason: success; reason
	// without score: failure).
	Kind         string   `json:"kind"`
	Score        *int     `json:"score,omitempty"`
	InspectorURL *string  `json:"inspector_url,omitempty"`
	RulesMatched []string `json:"rules_matched,omitempty"`
	Commit       string   `json:"commit,omitempty"`
	Reason       string   `json:"reason,omitempty"`
	// Status is the HTTP status answered; Detail the "detail" text of an
	// error answer (or a summary of a 422's errors).
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// checkCredentials checks an auth mode's settings: its client id and
// secret, and its further credentials (none with an empty side; what says
// what such a pair is missing).
func checkCredentials(mode, id, secret string, further map[string]string, what string) error {
	if id == "" || secret == "" {
		return fmt.Errorf("devapi: %s auth needs a client id and secret", mode)
	}
	for k, v := range further {
		if k == "" || v == "" {
			return errors.New("devapi: " + what)
		}
	}
	return nil
}

// Stats are the server's counters since New (restored from a snapshot where
// they describe the state: leases, dead-lettered, finished, failed).
type Stats struct {
	Leases          int64 `json:"leases"`           // jobs handed out by /jobs
	Reports         int64 `json:"reports"`          // PUT /package requests answered
	ReportsAccepted int64 `json:"reports_accepted"` // PUT /package answered 200
	// StatusNNN count API answers (every authenticated route) by status.
	Status401 int64 `json:"status_401"` // 401, and Cloudflare's 302 to its login page
	Status404 int64 `json:"status_404"`
	Status409 int64 `json:"status_409"`
	Status422 int64 `json:"status_422"`
	Status500 int64 `json:"status_500"`
	Status503 int64 `json:"status_503"`
	// DeadLettered: scans FAILED because their last lease expired.
	DeadLettered int64 `json:"dead_lettered"`
	// Finished / Failed: accepted success / failure reports. A failed scan
	// stays open to its lease, so one scan may count in both, or twice in
	// Failed; Queue.Finished and Queue.Failed count scans.
	Finished int64       `json:"finished"`
	Failed   int64       `json:"failed"`
	Queue    QueueStatus `json:"queue"`
	// StatsWaiting counts the GET /_dev/stats?accepted=N requests waiting
	// (the one asking counts itself when it answers; at most 64).
	StatsWaiting int `json:"stats_waiting"`
}

// Server is a development Dragonfly API. It is safe for concurrent use.
type Server struct {
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	rules   *rules
	tokens  *tokens
	metrics *metrics
	handler http.Handler

	mu      sync.Mutex // guards st, dists, reports, httpStats
	st      *state
	dists   map[string]*dist // by URL path
	reports []ReportRecord
	nreport int64
	http    httpStats

	faultMu     sync.Mutex // guards the fault fields
	faults      Faults
	faultCount  uint64
	unavailable time.Time // every API call answers 503 until then

	accepted broadcast.Signal // notified at each report accepted (WaitAccepted)
	waits    chan struct{}    // one token per GET /_dev/stats waiting (maxStatsWaits)
	waitsEnd chan struct{}    // closed by EndWaits
	endOnce  sync.Once

	snapMu    sync.Mutex // serializes snapshot writes
	snapKick  chan struct{}
	snapStop  chan struct{}
	snapDone  chan struct{}
	closeOnce sync.Once
	onSnap    func() // test hook, called after each debounced write
}

type httpStats struct {
	status401, status404, status409, status422, status500, status503 int64
	reportsAccepted                                                  int64
}

// New builds a server from cfg: it reads PackagesDir and RulesDir, groups the
// distributions into releases, loads the snapshot if there is one and starts
// the snapshot writer (stopped by Close).
func New(cfg Config) (*Server, error) {
	if cfg.LeaseTimeout <= 0 {
		cfg.LeaseTimeout = 120 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Auth == "" {
		cfg.Auth = AuthNone
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.SnapshotInterval <= 0 {
		cfg.SnapshotInterval = time.Second
	}
	if cfg.ReportLogLimit <= 0 {
		cfg.ReportLogLimit = 200000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	switch cfg.Auth {
	case AuthNone:
	case AuthCloudflare:
		if err := checkCredentials("cloudflare", cfg.CFClientID, cfg.CFClientSecret, cfg.CFServiceTokens, "a cloudflare service token needs a client id and secret"); err != nil {
			return nil, err
		}
	case AuthAuth0:
		if err := checkCredentials("auth0", cfg.Auth0ClientID, cfg.Auth0ClientSecret, cfg.Auth0Users, "an auth0 user needs a name and password"); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("devapi: unknown auth mode %q (want none, cloudflare or auth0)", cfg.Auth)
	}
	if err := checkFaults(cfg.Faults); err != nil {
		return nil, fmt.Errorf("devapi: %w", err)
	}

	s := &Server{
		waits:    make(chan struct{}, maxStatsWaits),
		waitsEnd: make(chan struct{}),
		cfg:      cfg,
		now:      cfg.Now,
		log:      cfg.Logger,
		st:       newState(cfg.LeaseTimeout, cfg.MaxAttempts, cfg.newID),
		dists:    map[string]*dist{},
		faults:   cfg.Faults,
		tokens:   newTokens(cfg.TokenLifetime),
	}
	var err error
	if s.rules, err = newRules(cfg.Rules, cfg.RulesDir); err != nil {
		return nil, fmt.Errorf("devapi: %w", err)
	}
	groups, err := s.configReleases()
	if err != nil {
		return nil, fmt.Errorf("devapi: %w", err)
	}
	now := s.now()
	if cfg.SnapshotPath != "" {
		if err := s.loadSnapshot(cfg.SnapshotPath, groups); err != nil {
			return nil, fmt.Errorf("devapi: %w", err)
		}
	}
	for _, g := range groups {
		r := s.st.releases[releaseKey(g.name, g.version)]
		if r == nil {
			s.st.addRelease(g.name, g.version, g.files, now)
			continue
		}
		// Known from the snapshot: only add files it did not have.
		for _, f := range g.files {
			if !containsDist(r.files, f.name) {
				r.files = append(r.files, f)
			}
		}
	}
	s.metrics = newMetrics(s)
	s.handler = s.routes()
	if cfg.SnapshotPath != "" {
		s.snapKick = make(chan struct{}, 1)
		s.snapStop = make(chan struct{})
		s.snapDone = make(chan struct{})
		go s.snapshotLoop()
	}
	return s, nil
}

func containsDist(files []*dist, name string) bool {
	for _, f := range files {
		if f.name == name {
			return true
		}
	}
	return false
}

// group is a release assembled from configured files.
type group struct {
	name, version string
	files         []*dist
}

// configReleases reads Files, PackagesDir and Synthetic into releases in
// queueing order: the files' releases sorted by normalized name then
// version, then the synthetic ones.
func (s *Server) configReleases() ([]group, error) {
	files := append([]File(nil), s.cfg.Files...)
	if dir := s.cfg.PackagesDir; dir != "" {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("read packages dir: %w", err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("read package: %w", err)
			}
			files = append(files, File{Name: e.Name(), Data: data})
		}
	}
	type key struct{ norm, version string }
	byKey := map[key]*group{}
	byName := map[string][]byte{}
	var keys []key
	for _, f := range files {
		if prev, ok := byName[f.Name]; ok {
			if !bytes.Equal(prev, f.Data) {
				return nil, fmt.Errorf("distribution %q given twice with different content", f.Name)
			}
			continue
		}
		byName[f.Name] = f.Data
		name, version, err := parseFileName(f.Name)
		if err != nil {
			return nil, err
		}
		k := key{normalizeName(name), version}
		g := byKey[k]
		if g == nil {
			g = &group{name: name, version: version}
			byKey[k] = g
			keys = append(keys, k)
		}
		if isSdist(f.Name) {
			g.name = name // the sdist spells the project name as uploaded
		}
		g.files = append(g.files, s.newDist(f.Name, f.Data, false))
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].norm != keys[j].norm {
			return keys[i].norm < keys[j].norm
		}
		return compareVersions(keys[i].version, keys[j].version) < 0
	})
	out := make([]group, 0, len(keys)+s.cfg.Synthetic)
	for _, k := range keys {
		g := byKey[k]
		sort.Slice(g.files, func(i, j int) bool { return g.files[i].name < g.files[j].name })
		out = append(out, *g)
	}
	if s.cfg.Synthetic > 0 {
		syn := newSynthesizer()
		for i := 1; i <= s.cfg.Synthetic; i++ {
			name := fmt.Sprintf("synth-%05d", i)
			file, data, err := syn.sdist(name, "1.0")
			if err != nil {
				return nil, fmt.Errorf("synthetic release: %w", err)
			}
			out = append(out, group{name: name, version: "1.0", files: []*dist{s.newDist(file, data, false)}})
		}
	}
	return out, nil
}

// newDist registers a distribution's bytes under its PyPI-like path. Callers
// hold s.mu or run before the server is shared.
func (s *Server) newDist(name string, data []byte, added bool) *dist {
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	path := "/packages/" + h[0:2] + "/" + h[2:4] + "/" + h[4:] + "/" + name
	if d, ok := s.dists[path]; ok {
		return d
	}
	d := &dist{name: name, path: path, sha: h, data: data, added: added}
	s.dists[path] = d
	return d
}

// Handler returns the HTTP handler serving the API.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the snapshot writer and writes a final snapshot. It is safe to
// call more than once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.cfg.SnapshotPath == "" {
			return
		}
		close(s.snapStop)
		<-s.snapDone
		err = s.writeSnapshot()
	})
	return err
}

// SetFaults replaces the faults and restarts the ReportErrorRate count. An
// invalid value (a rate outside [0, 1], a negative latency) is ignored with a
// log line; use POST /_dev/faults for a checked change.
func (s *Server) SetFaults(f Faults) {
	if err := checkFaults(f); err != nil {
		s.log.Warn("devapi: faults ignored", "err", err)
		return
	}
	s.faultMu.Lock()
	s.faults = f
	s.faultCount = 0
	s.faultMu.Unlock()
}

func checkFaults(f Faults) error {
	if !(f.ReportErrorRate >= 0 && f.ReportErrorRate <= 1) {
		return fmt.Errorf("report error rate %v outside [0, 1]", f.ReportErrorRate)
	}
	if f.Latency < 0 || f.DownloadLatency < 0 {
		return fmt.Errorf("negative latency %v", min(f.Latency, f.DownloadLatency))
	}
	return nil
}

// Unavailable makes every API call answer 503 for d from now (Config.Now);
// d <= 0 ends an outage.
func (s *Server) Unavailable(d time.Duration) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if d <= 0 {
		s.unavailable = time.Time{}
		return
	}
	s.unavailable = s.now().Add(d)
}

// SetTokenLifetime changes the lifetime of Auth0 tokens issued from now on.
func (s *Server) SetTokenLifetime(d time.Duration) { s.tokens.setLifetime(d) }

// RevokeTokens invalidates every issued Auth0 token (the next API call with
// one answers 401).
func (s *Server) RevokeTokens() { s.tokens.revokeAll() }

// UpdateRules re-reads RulesDir. The rules hash changes iff the content
// (stems and sources) changed.
func (s *Server) UpdateRules() error {
	if err := s.rules.reload(); err != nil {
		return fmt.Errorf("devapi: %w", err)
	}
	return nil
}

// RulesHash returns the current rules hash (after the cheap RulesDir check).
func (s *Server) RulesHash() string {
	rs := s.currentRules()
	return rs.hash
}

func (s *Server) currentRules() ruleSet {
	rs, err := s.rules.current(s.now())
	if err != nil {
		s.log.Warn("devapi: rules check failed, serving the last rules", "err", err)
	}
	return rs
}

// Add adds a release at runtime (or files to a known one) and queues a scan
// of it unless one is queued or pending already. New releases come after
// all existing ones in the queue (insertion order).
func (s *Server) Add(name, version string, files []File) {
	s.mu.Lock()
	ds := make([]*dist, len(files))
	for i, f := range files {
		ds[i] = s.newDist(f.Name, f.Data, true)
	}
	s.st.addRelease(name, version, ds, s.now())
	s.mu.Unlock()
	s.changed()
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Leases:          s.st.count.leases,
		Reports:         s.nreport,
		ReportsAccepted: s.http.reportsAccepted,
		Status401:       s.http.status401,
		Status404:       s.http.status404,
		Status409:       s.http.status409,
		Status422:       s.http.status422,
		Status500:       s.http.status500,
		Status503:       s.http.status503,
		DeadLettered:    s.st.count.deadLettered,
		Finished:        s.st.count.finished,
		Failed:          s.st.count.failed,
		Queue:           s.st.queueStatus(s.now()),
		StatsWaiting:    len(s.waits),
	}
}

// WaitAccepted waits until at least n reports were accepted (PUT /package
// answered 200) and reports true, or false when ctx ends or EndWaits is
// called first.
func (s *Server) WaitAccepted(ctx context.Context, n int64) bool {
	for {
		ch := s.accepted.Wait()
		s.mu.Lock()
		got := s.http.reportsAccepted
		s.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-s.waitsEnd:
			return false
		}
	}
}

// EndWaits ends every wait of WaitAccepted (GET /_dev/stats?accepted=N),
// now and later, so that a server shutting down answers them at once
// instead of holding their connections until its shutdown deadline.
func (s *Server) EndWaits() { s.endOnce.Do(func() { close(s.waitsEnd) }) }

// Reports returns the PUT /package requests in the order they were answered
// (the last ReportLogLimit of them).
func (s *Server) Reports() []ReportRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ReportRecord(nil), s.reports...)
}

// changed schedules a snapshot write.
func (s *Server) changed() {
	if s.snapKick == nil {
		return
	}
	select {
	case s.snapKick <- struct{}{}:
	default:
	}
}
