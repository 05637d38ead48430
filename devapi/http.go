package devapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/version"
)

// maxBody bounds request bodies (reports carry rule lists, nothing big).
const maxBody = 4 << 20

// route is one API endpoint.
type route struct {
	label   string // metrics label: "PUT /package"
	handler http.HandlerFunc
}

func (s *Server) routes() http.Handler {
	api := map[string]map[string]route{
		"/jobs":          {http.MethodPost: {"POST /jobs", s.handleJobs}},
		"/rules":         {http.MethodGet: {"GET /rules", s.handleRules}},
		"/package":       {http.MethodPut: {"PUT /package", s.handleReport}, http.MethodGet: {"GET /package", s.handleLookup}, http.MethodPost: {"POST /package", s.handleQueue}},
		"/queue-status":  {http.MethodGet: {"GET /queue-status", s.handleQueueStatus}},
		"/update-rules/": {http.MethodPost: {"POST /update-rules/", s.handleUpdateRules}},
		"/update-rules":  {http.MethodPost: {"POST /update-rules/", s.handleUpdateRules}},
		"/":              {http.MethodGet: {"GET /", s.handleRoot}},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/packages/"):
			s.handleDownload(w, r)
			return
		case p == "/metrics":
			s.metrics.handler.ServeHTTP(w, r)
			return
		case p == "/oauth/token" && s.cfg.Auth == AuthAuth0:
			s.handleToken(w, r)
			return
		case strings.HasPrefix(p, "/cdn-cgi/access/login/") && s.cfg.Auth == AuthCloudflare:
			s.handleAccessLogin(w, r)
			return
		case strings.HasPrefix(p, "/_dev/"):
			// The development routes change how the server behaves: they
			// take the same credentials as the API.
			if _, ok := s.authorize(w, r); ok {
				s.handleDev(w, r)
			}
			return
		}
		rt := route{label: "other", handler: func(w http.ResponseWriter, r *http.Request) {
			writeDetail(w, http.StatusNotFound, "Not Found")
		}}
		if methods, ok := api[p]; ok {
			if m, ok := methods[r.Method]; ok {
				rt = m
			} else {
				rt.handler = func(w http.ResponseWriter, r *http.Request) {
					writeDetail(w, http.StatusMethodNotAllowed, "Method Not Allowed")
				}
			}
		}
		s.serveAPI(w, r, rt)
	})
}

// recorder captures the status and the start of the body of an answer,
// and for PUT /package who sent it and how it was understood.
type recorder struct {
	http.ResponseWriter
	status   int
	head     []byte
	identity string  // the authenticated caller
	parsed   *report // the valid report body, if it got that far
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if n := 1024 - len(rec.head); n > 0 {
		rec.head = append(rec.head, b[:min(n, len(b))]...)
	}
	return rec.ResponseWriter.Write(b)
}

// serveAPI runs one API call: latency, outage, auth, then the route; it
// counts the answer and, for PUT /package, records the report.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, rt route) {
	var body []byte
	if rt.label == "PUT /package" {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			writeDetail(w, http.StatusBadRequest, "There was an error parsing the body")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec := &recorder{ResponseWriter: w}
	start := time.Now()
	s.serveAPIChain(rec, r, rt)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	s.log.Debug("devapi: request", "route", rt.label, "status", rec.status, "duration", time.Since(start))
	s.metrics.requests.WithLabelValues(rt.label, strconv.Itoa(rec.status)).Inc()

	s.mu.Lock()
	switch rec.status {
	case http.StatusUnauthorized, http.StatusFound:
		s.http.status401++
	case http.StatusNotFound:
		s.http.status404++
	case http.StatusConflict:
		s.http.status409++
	case http.StatusUnprocessableEntity:
		s.http.status422++
	case http.StatusInternalServerError:
		s.http.status500++
	case http.StatusServiceUnavailable:
		s.http.status503++
	}
	if rt.label == "PUT /package" {
		s.recordReportLocked(body, rec)
	}
	s.mu.Unlock()
}

func (s *Server) serveAPIChain(w http.ResponseWriter, r *http.Request, rt route) {
	s.faultMu.Lock()
	latency := s.faults.Latency
	down := s.now().Before(s.unavailable)
	remaining := s.unavailable.Sub(s.now())
	s.faultMu.Unlock()
	if latency > 0 {
		if err := wait(r.Context(), latency); err != nil {
			return // the client is gone
		}
	}
	if down {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(remaining.Seconds()))))
		writeDetail(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	identity, ok := s.authorize(w, r)
	if !ok {
		return
	}
	if rec, ok := w.(*recorder); ok {
		rec.identity = identity
	}
	rt.handler(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, identity)))
}

// identityKey is the request context key of the caller's identity.
type identityKey struct{}

// identity returns the authenticated caller of an API request.
func identity(r *http.Request) string {
	id, _ := r.Context().Value(identityKey{}).(string)
	return id
}

func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordReportLocked appends a ReportRecord for a PUT /package answer.
func (s *Server) recordReportLocked(body []byte, rec *recorder) {
	s.nreport++
	if rec.status == http.StatusOK {
		s.http.reportsAccepted++
		s.accepted.Notify()
	}
	rr := ReportRecord{Seq: s.nreport, Time: s.now(), Status: rec.status, Identity: clip.String(rec.identity, 0)}
	if p := rec.parsed; p != nil {
		rr.Name, rr.Version, rr.Attempt, rr.AssignmentID = p.name, p.version, p.attempt, deref(p.assignmentID)
		if p.success {
			score := p.score
			rr.Kind, rr.Score, rr.InspectorURL, rr.RulesMatched, rr.Commit = "success", &score, p.inspectorURL, p.rules, p.commit
		} else {
			rr.Kind, rr.Reason = "failure", p.reason
		}
		s.finishRecordLocked(rr, rec)
		return
	}
	// Not understood (422, or an answer before parsing): keep what can be read.
	var b struct {
		Name         any      `json:"name"`
		Version      any      `json:"version"`
		Attempt      any      `json:"attempt"`
		AssignmentID any      `json:"assignment_id"`
		Score        *float64 `json:"score"`
		InspectorURL *string  `json:"inspector_url"`
		RulesMatched []string `json:"rules_matched"`
		Commit       string   `json:"commit"`
		Reason       *string  `json:"reason"`
	}
	// Best effort: a body answered 422 may not fit; Unmarshal fills what it can.
	_ = json.Unmarshal(body, &b)
	rr.Name, _ = b.Name.(string)
	rr.Version, _ = b.Version.(string)
	rr.AssignmentID, _ = b.AssignmentID.(string)
	if f, ok := b.Attempt.(float64); ok {
		n := int(f)
		rr.Attempt = &n
	}
	if rec.status != http.StatusUnprocessableEntity {
		// Answered before parsing (authentication, outage, fault, 413):
		// say what the body looked like.
		switch {
		case b.Score != nil && b.Reason == nil:
			rr.Kind = "success"
			n := int(*b.Score)
			rr.Score = &n
			rr.InspectorURL, rr.RulesMatched, rr.Commit = b.InspectorURL, b.RulesMatched, b.Commit
		case b.Reason != nil && b.Score == nil:
			rr.Kind = "failure"
			rr.Reason = *b.Reason
		}
	}
	s.finishRecordLocked(rr, rec)
}

// maxRecordRules bounds the rule names a ReportRecord keeps.
const maxRecordRules = 1024

// clipRecord bounds what a record keeps of its input: each string to
// clip.Default bytes with a marker, the rule list to maxRecordRules names.
func clipRecord(rr *ReportRecord) {
	for _, p := range []*string{&rr.Name, &rr.Version, &rr.AssignmentID, &rr.Commit, &rr.Reason, &rr.Detail} {
		*p = clip.String(*p, 0)
	}
	if rr.InspectorURL != nil {
		u := clip.String(*rr.InspectorURL, 0)
		rr.InspectorURL = &u
	}
	if len(rr.RulesMatched) > maxRecordRules {
		rr.RulesMatched = rr.RulesMatched[:maxRecordRules]
	}
	if rr.RulesMatched != nil {
		rules := make([]string, len(rr.RulesMatched))
		for i, name := range rr.RulesMatched {
			rules[i] = clip.String(name, 0)
		}
		rr.RulesMatched = rules
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// finishRecordLocked adds the answer's detail to rr and appends it to the
// report log.
func (s *Server) finishRecordLocked(rr ReportRecord, rec *recorder) {
	if rec.status != http.StatusOK {
		var d struct {
			Detail json.RawMessage `json:"detail"`
		}
		switch {
		case json.Unmarshal(rec.head, &d) == nil:
			var text string
			if json.Unmarshal(d.Detail, &text) == nil {
				rr.Detail = text
			} else {
				rr.Detail = string(d.Detail)
			}
		case !bytes.HasPrefix(rec.head, []byte("<")):
			rr.Detail = string(rec.head) // a plain-text answer (500)
		}
	}
	clipRecord(&rr)
	s.metrics.reports.WithLabelValues(reportKind(rr.Kind), strconv.Itoa(rec.status)).Inc()
	if len(s.reports) >= s.cfg.ReportLogLimit {
		n := copy(s.reports, s.reports[len(s.reports)-s.cfg.ReportLogLimit+1:])
		s.reports = s.reports[:n]
	}
	s.reports = append(s.reports, rr)
}

func reportKind(k string) string {
	if k == "" {
		return "invalid"
	}
	return k
}

// writeJSON answers v as JSON with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code, data = http.StatusInternalServerError, []byte(`{"detail":"Internal Server Error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// writeDetail answers FastAPI's {"detail": text}.
func writeDetail(w http.ResponseWriter, code int, detail string) {
	writeJSON(w, code, map[string]string{"detail": detail})
}

// writeInternal answers as Starlette does for an unhandled exception: a
// plain-text 500.
func writeInternal(w http.ResponseWriter) {
	const text = "Internal Server Error"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(text)))
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, text)
}

// writeError answers an error from the state or validation.
func writeError(w http.ResponseWriter, err error) {
	var ve *validationError
	var ae *apiError
	switch {
	case errors.As(err, &ve):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": ve.errs})
	case errors.As(err, &ae) && ae != errInternal:
		writeDetail(w, ae.code, ae.detail)
	default:
		writeInternal(w)
	}
}

// baseURL is the base of distribution URLs for r.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// jobJSON is one leased job, exactly the real server's fields.
type jobJSON struct {
	Name          string   `json:"name"`
	Version       string   `json:"version"`
	Distributions []string `json:"distributions"`
	Hash          string   `json:"hash"`
	Attempt       int      `json:"attempt"`
	AssignmentID  string   `json:"assignment_id"`
}

// handleJobs is POST /jobs?batch=N. As on the real server, batch has no
// bounds: 0 leases nothing (but still dead-letters), a negative batch fails
// the transaction (PostgreSQL refuses a negative LIMIT): a plain 500 and
// nothing dead-lettered.
func (s *Server) handleJobs(w http.ResponseWriter, r *http.Request) {
	n, err := queryInt(r.URL.Query()["batch"], "batch", 1)
	if err != nil {
		writeError(w, err)
		return
	}
	if n < 0 {
		writeInternal(w)
		return
	}
	hash := s.currentRules().hash
	s.mu.Lock()
	before := s.st.count
	jobs := s.st.lease(n, s.now(), identity(r))
	changed := s.st.count != before
	s.mu.Unlock()
	if changed {
		s.changed()
	}
	base := s.baseURL(r)
	out := make([]jobJSON, len(jobs))
	for i, j := range jobs {
		urls := make([]string, len(j.files))
		for k, f := range j.files {
			urls[k] = base + f.path
		}
		out[i] = jobJSON{Name: j.name, Version: j.version, Distributions: urls, Hash: hash, Attempt: j.attempt, AssignmentID: j.assignment}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRules(w http.ResponseWriter, r *http.Request) {
	rs := s.currentRules()
	writeJSON(w, http.StatusOK, map[string]any{"hash": rs.hash, "rules": rs.sources})
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	rs := s.currentRules()
	writeJSON(w, http.StatusOK, map[string]string{"server_commit": version.String(), "rules_commit": rs.hash})
}

func (s *Server) handleUpdateRules(w http.ResponseWriter, r *http.Request) {
	if err := s.rules.reload(); err != nil {
		s.log.Error("devapi: update rules", "err", err)
		writeDetail(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"hash": s.currentRules().hash})
}

// reportFault reports whether this PUT /package is one ReportErrorRate fails.
func (s *Server) reportFault() bool {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	rate := s.faults.ReportErrorRate
	if rate <= 0 {
		return false
	}
	s.faultCount++
	k := float64(s.faultCount)
	return math.Floor(k*rate+1e-9) > math.Floor((k-1)*rate+1e-9)
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeDetail(w, http.StatusBadRequest, "There was an error parsing the body")
		return
	}
	if len(body) > maxBody {
		writeDetail(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return
	}
	if s.reportFault() {
		writeDetail(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	rep, err := parseReport(body)
	if err != nil {
		writeError(w, err)
		return
	}
	if rec, ok := w.(*recorder); ok {
		rec.parsed = rep
	}
	s.mu.Lock()
	err = s.st.apply(rep, s.now(), identity(r))
	s.mu.Unlock()
	if err != nil {
		writeError(w, err)
		return
	}
	s.changed()
	writeJSON(w, http.StatusOK, nil)
}

func (s *Server) handleQueue(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		writeDetail(w, http.StatusBadRequest, "There was an error parsing the body")
		return
	}
	name, ver, err := parseNameVersion(body)
	if err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	err = s.st.queuePackage(name, ver)
	s.mu.Unlock()
	writeError(w, err) // never nil: see queuePackage
}

// scanJSON is one scan record of GET /package.
type scanJSON struct {
	ScanID       string     `json:"scan_id"`
	Name         string     `json:"name"`
	Version      string     `json:"version"`
	Status       string     `json:"status"`
	Score        *int       `json:"score"`
	InspectorURL *string    `json:"inspector_url"`
	Rules        []string   `json:"rules"`
	Commit       *string    `json:"commit"`
	Reason       *string    `json:"reason"`
	Attempt      int        `json:"attempt"`
	AssignmentID *string    `json:"assignment_id"`
	PendingBy    *string    `json:"pending_by"`
	DeadLettered bool       `json:"dead_lettered"`
	QueuedAt     *time.Time `json:"queued_at"`
	PendingAt    *time.Time `json:"pending_at"`
	// FinishedAt is set for finished scans only, as the real server's
	// finished_at; DeadLetteredAt for dead letters.
	FinishedAt     *time.Time `json:"finished_at"`
	DeadLetteredAt *time.Time `json:"dead_lettered_at"`
	Distributions  []string   `json:"distributions"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Server) scanToJSON(sc *scan, base string) scanJSON {
	out := scanJSON{
		ScanID: sc.id, Name: sc.rel.name, Version: sc.rel.version, Status: sc.status.String(),
		Rules: []string{}, Attempt: sc.attempt, AssignmentID: strPtr(sc.assignment),
		DeadLettered: sc.deadLettered, QueuedAt: timePtr(sc.queuedAt), PendingAt: timePtr(sc.pendingAt),
		Distributions: make([]string, len(sc.rel.files)),
	}
	out.PendingBy = strPtr(sc.owner) // null without authentication
	for i, f := range sc.rel.files {
		out.Distributions[i] = base + f.path
	}
	switch sc.status {
	case statusFinished:
		score := sc.score
		out.Score, out.InspectorURL, out.Commit = &score, sc.inspectorURL, strPtr(sc.commit)
		out.Rules = append(out.Rules, sc.rules...)
		out.FinishedAt = timePtr(sc.finishedAt)
	case statusFailed:
		out.Reason = strPtr(sc.reason)
		if sc.deadLettered {
			out.DeadLetteredAt = timePtr(sc.finishedAt)
		}
	}
	return out
}

// handleLookup answers GET /package as the real server: ?name= (every
// version), ?name=&version=, ?since=unix (scans finished since then, with or
// without name); no name and no since, or version with since, is a 400
// "Bad Request". Names compare exactly, as stored. Records come in release
// order, oldest scan first (the real server orders by queued_at, newest
// first).
func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, ver := q.Get("name"), q.Get("version")
	hasName, hasVersion, hasSince := q.Has("name"), q.Has("version"), q.Has("since")
	var since time.Time
	if hasSince {
		n, err := queryInt(q["since"], "since", 0)
		if err != nil {
			writeError(w, err)
			return
		}
		since = time.Unix(int64(n), 0)
	}
	if (!hasName && !hasSince) || (hasVersion && hasSince) {
		writeDetail(w, http.StatusBadRequest, "Bad Request")
		return
	}
	base := s.baseURL(r)
	out := []scanJSON{}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rels []*release
	if hasName && hasVersion {
		if rel := s.st.releases[releaseKey(name, ver)]; rel != nil && rel.name == name {
			rels = append(rels, rel)
		}
	} else {
		for _, rel := range s.st.order {
			if !hasName || rel.name == name {
				rels = append(rels, rel)
			}
		}
	}
	for _, rel := range rels {
		for _, sc := range rel.scans {
			if hasSince && (sc.status != statusFinished || sc.finishedAt.Before(since)) {
				continue
			}
			out = append(out, s.scanToJSON(sc, base))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleQueueStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	q := s.st.queueStatus(s.now())
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, q)
}

// handleDownload serves a distribution's bytes (GET and HEAD, no auth).
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.faultMu.Lock()
	latency := s.faults.DownloadLatency
	s.faultMu.Unlock()
	if latency > 0 {
		if err := wait(r.Context(), latency); err != nil {
			return // the client is gone
		}
	}
	s.mu.Lock()
	d := s.dists[r.URL.Path]
	s.mu.Unlock()
	if d == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+d.sha+`"`)
	http.ServeContent(w, r, d.name, time.Time{}, bytes.NewReader(d.data))
}

// devFaults is the body of POST /_dev/faults; absent fields stay unchanged.
type devFaults struct {
	ReportErrorRate      *float64 `json:"report_error_rate"`
	LatencyMS            *float64 `json:"latency_ms"`
	DownloadLatencyMS    *float64 `json:"download_latency_ms"`
	UnavailableSeconds   *float64 `json:"unavailable_seconds"`
	TokenLifetimeSeconds *float64 `json:"token_lifetime_seconds"`
	RevokeTokens         bool     `json:"revoke_tokens"`
}

type devFaultsState struct {
	ReportErrorRate      float64    `json:"report_error_rate"`
	LatencyMS            float64    `json:"latency_ms"`
	DownloadLatencyMS    float64    `json:"download_latency_ms"`
	UnavailableUntil     *time.Time `json:"unavailable_until"`
	TokenLifetimeSeconds float64    `json:"token_lifetime_seconds"`
}

// handleDev serves the development routes (authorized by the caller).
func (s *Server) handleDev(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_dev/stats" && r.Method == http.MethodGet:
		if err := s.waitStats(r); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, errTooManyWaits) {
				code = http.StatusTooManyRequests
			}
			writeDetail(w, code, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, s.Stats())
	case r.URL.Path == "/_dev/reports" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Reports())
	case r.URL.Path == "/_dev/faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.faultState())
	case r.URL.Path == "/_dev/faults" && r.Method == http.MethodPost:
		var f devFaults
		dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeDetail(w, http.StatusBadRequest, "bad faults body: "+err.Error())
			return
		}
		if err := s.applyDevFaults(f); err != nil {
			writeDetail(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, s.faultState())
	default:
		writeDetail(w, http.StatusNotFound, "Not Found")
	}
}

// maxStatsWait bounds the wait of GET /_dev/stats?accepted=N&wait=D, and
// maxStatsWaits how many such requests wait at once (more are answered 429).
const (
	maxStatsWait  = time.Minute
	maxStatsWaits = 64
)

var errTooManyWaits = fmt.Errorf("more than %d requests already wait for accepted reports", maxStatsWaits)

// waitStats serves the wait of GET /_dev/stats?accepted=N&wait=D: it
// returns once N reports were accepted, after D (at most maxStatsWait), or
// when the caller goes away, so that a harness waiting for the end of a run
// asks once instead of polling. Without accepted it returns at once. At
// most maxStatsWaits requests wait at once; more get errTooManyWaits.
func (s *Server) waitStats(r *http.Request) error {
	q := r.URL.Query()
	if !q.Has("accepted") {
		return nil
	}
	n, err := strconv.ParseInt(q.Get("accepted"), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("accepted must be a count of reports, not %q", clip.String(q.Get("accepted"), clip.Default))
	}
	wait := maxStatsWait
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			return fmt.Errorf("wait must be a duration such as 5s, not %q", clip.String(v, clip.Default))
		}
		wait = min(wait, maxStatsWait)
	}
	select {
	case s.waits <- struct{}{}:
		defer func() { <-s.waits }()
	default:
		return errTooManyWaits
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	s.WaitAccepted(ctx, n)
	return nil
}

func (s *Server) applyDevFaults(f devFaults) error {
	s.faultMu.Lock()
	next := s.faults
	s.faultMu.Unlock()
	if f.ReportErrorRate != nil {
		next.ReportErrorRate = *f.ReportErrorRate
	}
	if f.LatencyMS != nil {
		next.Latency = time.Duration(*f.LatencyMS * float64(time.Millisecond))
	}
	if f.DownloadLatencyMS != nil {
		next.DownloadLatency = time.Duration(*f.DownloadLatencyMS * float64(time.Millisecond))
	}
	if err := checkFaults(next); err != nil {
		return err
	}
	if f.TokenLifetimeSeconds != nil && *f.TokenLifetimeSeconds <= 0 {
		return fmt.Errorf("token lifetime must be positive")
	}
	if f.ReportErrorRate != nil || f.LatencyMS != nil || f.DownloadLatencyMS != nil {
		s.SetFaults(next)
	}
	if f.UnavailableSeconds != nil {
		s.Unavailable(time.Duration(*f.UnavailableSeconds * float64(time.Second)))
	}
	if f.TokenLifetimeSeconds != nil {
		s.SetTokenLifetime(time.Duration(*f.TokenLifetimeSeconds * float64(time.Second)))
	}
	if f.RevokeTokens {
		s.RevokeTokens()
	}
	return nil
}

func (s *Server) faultState() devFaultsState {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	st := devFaultsState{
		ReportErrorRate:      s.faults.ReportErrorRate,
		LatencyMS:            float64(s.faults.Latency) / float64(time.Millisecond),
		DownloadLatencyMS:    float64(s.faults.DownloadLatency) / float64(time.Millisecond),
		TokenLifetimeSeconds: s.tokens.getLifetime().Seconds(),
	}
	if s.now().Before(s.unavailable) {
		st.UnavailableUntil = timePtr(s.unavailable)
	}
	return st
}
