package mainframe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/protocol"
)

// Job is one leased release.
type Job struct {
	Name, Version string
	// Distributions are the download URLs of every file of the release; may
	// be empty.
	Distributions []string
	// Hash is the rules commit the server holds now.
	Hash string
	// Attempt counts the leases of this job including this one; nil when the
	// server did not send it (servers before 2026-07).
	Attempt *int
	// AssignmentID identifies this lease; nil when the server did not send it.
	AssignmentID *string
	// LeasedAt is when the request that leased it was sent, by time.Now
	// (Lease sets it; zero when the source of jobs does not know): the
	// lease began no earlier. The try that succeeded may come minutes after
	// the call began (a token fetch, 429 and 503 answers and their
	// Retry-After), so the call's start is not the lease's.
	LeasedAt time.Time
}

// wireJob is a job as the server sends it; pointers tell absent from zero.
type wireJob struct {
	Name          *string   `json:"name"`
	Version       *string   `json:"version"`
	Distributions *[]string `json:"distributions"`
	Hash          *string   `json:"hash"`
	Attempt       *int      `json:"attempt"`
	AssignmentID  *string   `json:"assignment_id"`
}

// Lease leases up to batch jobs (POST /jobs?batch=N). An empty queue gives an
// empty, non-nil slice. Each job must be reported within the lease (120 s).
// An answer that is not an array of jobs fails; a malformed job in it (a
// field missing or of the wrong type, an empty distribution URL, a NUL in
// its name or version) is left out and logged, and the others are returned:
// failing the whole batch for one job would leave every job of it leased
// without a report, each losing one of its three attempts, again at every
// re-lease the bad job shares with them. See the package documentation for
// when a lease is retried.
func (c *Client) Lease(ctx context.Context, batch int) ([]Job, error) {
	const endpoint = "POST /jobs"
	if batch < 1 {
		return nil, fmt.Errorf("%s: batch %d: want at least 1", endpoint, batch)
	}
	body, sent, err := c.do(ctx, call{method: http.MethodPost, path: "/jobs?batch=" + strconv.Itoa(batch), endpoint: endpoint, lease: true})
	if err != nil {
		return nil, err
	}
	jobs, skipped, err := decodeJobs(body)
	if err != nil {
		return nil, fmt.Errorf("%s: malformed response: %w", endpoint, err)
	}
	// One line each for the first few: an answer of a million nulls must
	// not write a million lines.
	for _, e := range skipped.first {
		c.log.Error("leased job malformed; left out (it stays leased until its lease ends)", "endpoint", endpoint, "err", e)
	}
	if more := skipped.n - len(skipped.first); more > 0 {
		c.log.Error("leased jobs malformed; more left out", "endpoint", endpoint, "more", more)
	}
	for i := range jobs {
		jobs[i].LeasedAt = sent
	}
	return jobs, nil
}

// maxLeaseID bounds a job's rules hash (a commit hash) and assignment_id
// (a UUID).
const maxLeaseID = 256

// maxSkippedLogged is how many malformed jobs of one answer are logged one
// by one; the rest are counted in one line.
const maxSkippedLogged = 5

// maxJSONValue bounds the JSON value an error quotes: encoding/json puts a
// number's whole literal in an UnmarshalTypeError ("number 1111..."), and an
// answer may hold megabytes of one.
const maxJSONValue = 64

// skips is what a lease's answer left out: why, for the first
// maxSkippedLogged, and how many in all (an answer of millions of malformed
// jobs keeps no error for each).
type skips struct {
	first []error
	n     int
}

// decodeJobs decodes a lease's answer: the well-formed jobs, and why others
// were left out. err is set only when the answer is not an array.
func decodeJobs(body []byte) (jobs []Job, skipped skips, err error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, skips{}, fmt.Errorf("got JSON %s, want %s of jobs", clip.String(te.Value, maxJSONValue), jsonType(te.Type))
		}
		return nil, skips{}, err
	}
	// Not len(raw) of them: an answer of millions of malformed jobs would
	// hold as many empty ones for the lease's whole life.
	jobs = []Job{}
	for i, r := range raw {
		j, err := decodeJob(r)
		if err != nil {
			if skipped.n++; len(skipped.first) < maxSkippedLogged {
				skipped.first = append(skipped.first, fmt.Errorf("job %d: %w", i, err))
			}
			continue
		}
		jobs = append(jobs, j)
	}
	return jobs, skipped, nil
}

// decodeJob decodes one job of a lease's answer.
func decodeJob(r json.RawMessage) (Job, error) {
	var w *wireJob
	if err := json.Unmarshal(r, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			v := clip.String(te.Value, maxJSONValue)
			if te.Field == "" {
				return Job{}, fmt.Errorf("got JSON %s, want an object", v)
			}
			return Job{}, fmt.Errorf("field %q: got JSON %s, want %s", te.Field, v, jsonType(te.Type))
		}
		return Job{}, err
	}
	if w == nil {
		return Job{}, errors.New("null")
	}
	var missing []string
	if w.Name == nil || *w.Name == "" {
		missing = append(missing, "name")
	}
	if w.Version == nil || *w.Version == "" {
		missing = append(missing, "version")
	}
	if w.Distributions == nil {
		missing = append(missing, "distributions")
	}
	if w.Hash == nil {
		missing = append(missing, "hash")
	}
	if len(missing) > 0 {
		return Job{}, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	name, version := clip.String(*w.Name, 256), clip.String(*w.Version, 128)
	if len(*w.Name) > protocol.MaxTextBytes || len(*w.Version) > protocol.MaxTextBytes {
		// A task could not carry it, and a report would echo it.
		return Job{}, fmt.Errorf("(%q %q): name of %d bytes or version of %d: over the %d a task carries", name, version, len(*w.Name), len(*w.Version), protocol.MaxTextBytes)
	}
	if len(*w.Hash) > maxLeaseID || w.AssignmentID != nil && len(*w.AssignmentID) > maxLeaseID {
		// A commit hash and a UUID: a report would echo megabytes of
		// either, and the outbox would keep them.
		return Job{}, fmt.Errorf("(%q %q): hash or assignment_id over %d bytes", name, version, maxLeaseID)
	}
	if strings.ContainsRune(*w.Name, 0) || strings.ContainsRune(*w.Version, 0) {
		// Name and version joined with a NUL key a release (in flight and
		// in the outbox): "a\x00b" version "c" and "a" version "b\x00c"
		// would be one release.
		return Job{}, fmt.Errorf("(%q %q): NUL in name or version", name, version)
	}
	if slices.Contains(*w.Distributions, "") {
		return Job{}, fmt.Errorf("(%s %s): empty distribution URL", name, version)
	}
	return Job{
		Name: *w.Name, Version: *w.Version, Distributions: *w.Distributions, Hash: *w.Hash,
		Attempt: w.Attempt, AssignmentID: w.AssignmentID,
	}, nil
}

// jsonType names the JSON type a Go type decodes from.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

// RuleSet is the current YARA rule set (GET /rules).
type RuleSet struct {
	// Hash is the rules commit.
	Hash string `json:"hash"`
	// Rules maps a file stem to its YARA source.
	Rules RuleFiles `json:"rules"`
}

// RuleFiles maps a rule file's stem to its YARA source. Decoded from JSON,
// it holds at most protocol.MaxRuleFiles files: an answer with more is an
// error once one file more was read (a 64 MiB answer of five million empty
// files decoded whole held 500 MiB, past the coordinator's memory limit).
type RuleFiles map[string]string

// UnmarshalJSON decodes a JSON object of strings as into a map (null
// leaves no map, a key given twice keeps its last value, a second object
// adds to the first), up to protocol.MaxRuleFiles files. Each member is
// decoded from b in place: a json.Decoder copied b into a buffer grown by
// doubling, 3 times the largest file besides the string itself.
func (f *RuleFiles) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*f = nil
		return nil
	}
	if !json.Valid(b) {
		return errors.New("rules: not valid JSON")
	}
	if b[0] != '{' {
		return errors.New("rules: not an object")
	}
	m := *f
	if m == nil {
		m = RuleFiles{}
	}
	// b is one valid JSON object: keys are strings, values follow a colon,
	// members are separated by commas.
	i := skipSpace(b, 1)
	for b[i] != '}' {
		end := stringEnd(b, i)
		var stem string
		if err := json.Unmarshal(b[i:end], &stem); err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		i = skipSpace(b, skipSpace(b, end)+1) // past the colon
		var src string
		switch b[i] {
		case '"':
			end = stringEnd(b, i)
			if err := json.Unmarshal(b[i:end], &src); err != nil {
				return fmt.Errorf("rules[%s]: %w", clip.String(stem, 64), err)
			}
		case 'n': // null: the empty string, as in a map
			end = i + len("null")
		default:
			return fmt.Errorf("rules[%s]: not a string", clip.String(stem, 64))
		}
		if _, dup := m[stem]; !dup && len(m) == protocol.MaxRuleFiles {
			return fmt.Errorf("rules: more than %d files, the most a rule set may have", protocol.MaxRuleFiles)
		}
		m[stem] = src
		if i = skipSpace(b, end); b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	*f = m
	return nil
}

// skipSpace returns the index of the first byte of b at or after i that is
// not JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i]
// (b is valid JSON).
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// Rules fetches the current rule set.
func (c *Client) Rules(ctx context.Context) (RuleSet, error) {
	var rs RuleSet
	if err := c.get(ctx, "/rules", &rs); err != nil {
		return RuleSet{}, err
	}
	if rs.Hash == "" || rs.Rules == nil {
		return RuleSet{}, errors.New("GET /rules: malformed response: want hash and rules")
	}
	return rs, nil
}

// get fetches path (GET) and decodes the answer into each of vs.
func (c *Client) get(ctx context.Context, path string, vs ...any) error {
	endpoint := "GET " + path
	body, _, err := c.do(ctx, call{method: http.MethodGet, path: path, endpoint: endpoint})
	if err != nil {
		return err
	}
	for _, v := range vs {
		if err := json.Unmarshal(body, v); err != nil {
			return fmt.Errorf("%s: malformed response: %w", endpoint, err)
		}
	}
	return nil
}

// Report is one job's outcome (PUT /package). Exactly one of Success and
// Reason is set.
type Report struct {
	Name, Version string
	// Attempt and AssignmentID are echoed exactly as leased; nil ones are
	// left out of the body.
	Attempt      *int
	AssignmentID *string
	// Success is the result of a complete scan.
	Success *Success
	// Reason is why the scan failed. It is sent on one line (line breaks
	// and tabs become spaces). A failure report is terminal on the server:
	// send one only for real scan failures.
	Reason string
}

// Key identifies the release a report is for (a re-lease has the same key).
func (r *Report) Key() string { return r.Name + "\x00" + r.Version }

// Success is a complete scan's result.
type Success struct {
	// Score is the package score (maximum distribution score).
	Score int64
	// InspectorURL points at the most malicious file; nil (JSON null) when
	// nothing matched.
	InspectorURL *string
	// RulesMatched are the matched rule identifiers; sent sorted and
	// duplicate-free ([] when none).
	RulesMatched []string
	// Commit is the hash of the rules actually used.
	Commit string
}

// bodyHead is what both shapes of PUT /package's body start with.
type bodyHead struct {
	Name         string  `json:"name"`
	Version      string  `json:"version"`
	Attempt      *int    `json:"attempt,omitempty"`
	AssignmentID *string `json:"assignment_id,omitempty"`
}

type successBody struct {
	bodyHead
	Score        int64    `json:"score"`
	InspectorURL *string  `json:"inspector_url"`
	RulesMatched []string `json:"rules_matched"`
	Commit       string   `json:"commit"`
}

type failureBody struct {
	bodyHead
	Reason string `json:"reason"`
}

// ErrUnsendable marks a report that cannot be encoded as a body the API
// accepts (no name, both shapes or neither, a success without a commit).
// Sending it again cannot help: drop it, and the API leases the job again.
var ErrUnsendable = errors.New("report cannot be sent")

// MarshalJSON encodes r as the body of PUT /package: the success or the
// failure shape of the API, field for field. The reason goes as one line
// of printable text (clip.Line: no NUL or control character reaches the
// server's database). An error wraps ErrUnsendable.
func (r Report) MarshalJSON() ([]byte, error) {
	if r.Name == "" || r.Version == "" {
		return nil, fmt.Errorf("%w: name and version are required", ErrUnsendable)
	}
	reason := clip.Line(r.Reason, protocol.MaxTextBytes)
	head := bodyHead{Name: r.Name, Version: r.Version, Attempt: r.Attempt, AssignmentID: r.AssignmentID}
	var v any
	switch {
	case r.Success != nil && r.Reason != "":
		return nil, fmt.Errorf("%w: %s %s: both success and failure reason set", ErrUnsendable, r.Name, r.Version)
	case r.Success != nil:
		s := r.Success
		if s.Commit == "" {
			return nil, fmt.Errorf("%w: %s %s: success without rules commit", ErrUnsendable, r.Name, r.Version)
		}
		rules := slices.Clone(s.RulesMatched)
		slices.Sort(rules)
		rules = slices.Compact(rules)
		if rules == nil {
			rules = []string{}
		}
		v = successBody{bodyHead: head, Score: s.Score, InspectorURL: s.InspectorURL, RulesMatched: rules, Commit: s.Commit}
	case reason != "":
		v = failureBody{bodyHead: head, Reason: reason}
	default:
		return nil, fmt.Errorf("%w: %s %s: neither success nor a readable failure reason", ErrUnsendable, r.Name, r.Version)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnsendable, r.Name, r.Version, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Report sends a job's outcome (PUT /package). A *APIError with Final() true
// (404, 409, 422) means the report can never be accepted: log and drop it.
func (c *Client) Report(ctx context.Context, r Report) error {
	const endpoint = "PUT /package"
	body, err := r.MarshalJSON()
	if err != nil {
		return fmt.Errorf("%s: %w", endpoint, err)
	}
	_, _, err = c.do(ctx, call{method: http.MethodPut, path: "/package", endpoint: endpoint, body: body})
	return err
}

// Metadata is the server's GET / answer.
type Metadata struct {
	ServerCommit string `json:"server_commit"`
	RulesCommit  string `json:"rules_commit"`
}

// Metadata fetches the server and rules commits (GET /).
func (c *Client) Metadata(ctx context.Context) (Metadata, error) {
	var m Metadata
	if err := c.get(ctx, "/", &m); err != nil {
		return Metadata{}, err
	}
	return m, nil
}

// QueueStatus is the server's queue snapshot (GET /queue-status).
type QueueStatus struct {
	Queued       int64 `json:"queued"`
	InProgress   int64 `json:"in_progress"`
	Retryable    int64 `json:"retryable"`
	Exhausted    int64 `json:"exhausted"`
	Stranded     int64 `json:"stranded"`
	TotalBacklog int64 `json:"total_backlog"`
	// OldestAgeSeconds is the age of the oldest waiting job; nil when the
	// server sent none (null or absent).
	OldestAgeSeconds *float64 `json:"oldest_age_seconds"`
	// Fields holds every field of the response, the ones above included.
	Fields map[string]json.RawMessage `json:"-"`
}

// QueueStatus fetches the server's queue snapshot. Older servers lack the
// endpoint (404) and a fresh server may answer 503 until its first snapshot.
func (c *Client) QueueStatus(ctx context.Context) (QueueStatus, error) {
	var q QueueStatus
	if err := c.get(ctx, "/queue-status", &q, &q.Fields); err != nil {
		return QueueStatus{}, err
	}
	return q, nil
}
