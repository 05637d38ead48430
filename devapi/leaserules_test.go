package devapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The tests in this file pin the real server's lease rules
// (vipyrsec/dragonfly-mainframe, src/mainframe/endpoints/job.py and
// package.py, 2026-08): who may report, with which lease fields, in which
// scan state, and the exact answers.

// Two Cloudflare service tokens: two identities.
var (
	asAlice = []string{"CF-Access-Client-Id", "alice", "CF-Access-Client-Secret", "alice-secret"}
	asBob   = []string{"CF-Access-Client-Id", "bob", "CF-Access-Client-Secret", "bob-secret"}
)

func twoIdentities(cfg Config) Config {
	cfg.Auth, cfg.CFClientID, cfg.CFClientSecret = AuthCloudflare, "alice", "alice-secret"
	cfg.CFServiceTokens = map[string]string{"bob": "bob-secret"}
	return cfg
}

// leaseOne leases one job as hdr and fails the test unless there is one.
func (f *fixture) leaseOne(hdr ...string) job {
	f.t.Helper()
	jobs := f.lease(1, hdr...)
	if len(jobs) != 1 {
		f.t.Fatalf("lease = %+v, want one job", jobs)
	}
	return jobs[0]
}

// without returns body without the keys.
func without(body map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(body))
	for k, v := range body {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

// with returns body with the keys set.
func with(body map[string]any, kv ...any) map[string]any {
	out := without(body)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestReportLeaseRules(t *testing.T) {
	const (
		stale    = "Package `pkg@1.0` is no longer assigned to this worker lease."
		finished = "Package `pkg@1.0` is already in a FINISHED state."
		dead     = "Package `pkg@1.0` exhausted its scan attempt limit."
		internal = "Internal Server Error"
	)
	// takenOver: alice's lease expires and the next lease, as by, takes it
	// over; the report has alice's lease fields.
	takenOver := func(by []string) func(f *fixture) any {
		return func(f *fixture) any {
			first := f.leaseOne(asAlice...)
			f.clock.Advance(121 * time.Second)
			f.leaseOne(by...)
			return success(first, 0)
		}
	}
	tests := []struct {
		name string
		cfg  Config
		// setup brings the release pkg 1.0 into the state under test (as
		// alice unless it says otherwise) and returns the report body.
		setup  func(f *fixture) any
		from   []string // the reporter's credentials; default alice
		status int
		detail string // exact detail (JSON) or body text (500)
		// after, for accepted reports, checks pkg's record afterwards.
		after func(t *testing.T, rec scanJSON)
	}{
		{
			name:   "current lease with attempt and assignment_id",
			setup:  func(f *fixture) any { return success(f.leaseOne(asAlice...), 3, "r1") },
			status: http.StatusOK,
			after: func(t *testing.T, rec scanJSON) {
				if rec.Status != "finished" || *rec.Score != 3 || rec.Rules[0] != "r1" || *rec.PendingBy != "alice" {
					t.Errorf("record = %+v", rec)
				}
			},
		},
		{
			name:   "first attempt without attempt and assignment_id (a client from before 2026-07)",
			setup:  func(f *fixture) any { return without(failure(f.leaseOne(asAlice...), "x"), "attempt", "assignment_id") },
			status: http.StatusOK,
		},
		{
			name: "second attempt without attempt and assignment_id",
			setup: func(f *fixture) any {
				f.leaseOne(asAlice...)
				f.clock.Advance(121 * time.Second)
				return without(failure(f.leaseOne(asAlice...), "x"), "attempt", "assignment_id")
			},
			status: http.StatusConflict, detail: stale,
		},
		{
			name:   "attempt without assignment_id",
			setup:  func(f *fixture) any { return without(success(f.leaseOne(asAlice...), 0), "assignment_id") },
			status: http.StatusConflict, detail: stale,
		},
		{
			name:   "assignment_id without attempt",
			setup:  func(f *fixture) any { return without(success(f.leaseOne(asAlice...), 0), "attempt") },
			status: http.StatusConflict, detail: stale,
		},
		{
			name: "attempt and assignment_id null: absent",
			setup: func(f *fixture) any {
				return with(success(f.leaseOne(asAlice...), 0), "attempt", nil, "assignment_id", nil)
			},
			status: http.StatusOK,
		},
		{
			name: "another lease's assignment_id",
			setup: func(f *fixture) any {
				return with(success(f.leaseOne(asAlice...), 0), "assignment_id", "6f1d3c8e-0000-4000-8000-000000000000")
			},
			status: http.StatusConflict, detail: stale,
		},
		{
			name: "assignment_id in upper case: the same UUID",
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				return with(success(j, 0), "assignment_id", strings.ToUpper(j.AssignmentID))
			},
			status: http.StatusOK,
		},
		{
			name:   "the current assignment_id with a wrong attempt",
			setup:  func(f *fixture) any { return with(success(f.leaseOne(asAlice...), 0), "attempt", 2) },
			status: http.StatusConflict, detail: stale,
		},
		{
			name:   "a lease taken over after it expired",
			setup:  takenOver(asAlice),
			status: http.StatusConflict, detail: stale,
		},
		{
			name: "an expired lease nobody took over",
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.clock.Advance(time.Hour)
				return success(j, 0)
			},
			status: http.StatusOK,
		},
		{
			name: "an expired lease on its last attempt before the next /jobs",
			cfg:  Config{MaxAttempts: 1},
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.clock.Advance(time.Hour)
				return failure(j, "x")
			},
			status: http.StatusOK,
		},
		{
			name:   "another identity with the current lease's fields",
			setup:  func(f *fixture) any { return success(f.leaseOne(asAlice...), 0) },
			from:   asBob,
			status: http.StatusConflict, detail: stale,
		},
		{
			name:   "another identity without lease fields on the first attempt",
			setup:  func(f *fixture) any { return without(success(f.leaseOne(asAlice...), 0), "attempt", "assignment_id") },
			from:   asBob,
			status: http.StatusConflict, detail: stale,
		},
		{
			name:   "the identity of a later lease with the earlier lease's fields",
			setup:  takenOver(asBob),
			from:   asBob,
			status: http.StatusConflict, detail: stale,
		},
		{
			name:   "never leased",
			setup:  func(f *fixture) any { return map[string]any{"name": "pkg", "version": "1.0", "reason": "x"} },
			status: http.StatusConflict, detail: stale,
		},
		{
			name: "never leased, with attempt 1 and a made-up assignment",
			setup: func(f *fixture) any {
				return map[string]any{"name": "pkg", "version": "1.0", "attempt": 1, "assignment_id": "6f1d3c8e-0000-4000-8000-000000000000", "reason": "x"}
			},
			status: http.StatusConflict, detail: stale,
		},
		{
			name:   "unknown release",
			setup:  func(f *fixture) any { return map[string]any{"name": "nope", "version": "1.0", "reason": "x"} },
			status: http.StatusNotFound, detail: "Package `nope@1.0` not found in database.",
		},
		{
			name:   "the name spelled otherwise than leased",
			setup:  func(f *fixture) any { return with(success(f.leaseOne(asAlice...), 0), "name", "PKG") },
			status: http.StatusNotFound, detail: "Package `PKG@1.0` not found in database.",
		},
		{
			name: "finished",
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.mustReport(success(j, 1), asAlice...)
				return failure(j, "late")
			},
			status: http.StatusConflict, detail: finished,
		},
		{
			name: "dead-lettered",
			cfg:  Config{MaxAttempts: 1},
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.clock.Advance(121 * time.Second)
				f.lease(1, asAlice...) // dead-letters it
				return success(j, 0)
			},
			status: http.StatusConflict, detail: dead,
		},
		{
			name: "a success from the lease that reported a failure",
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.mustReport(failure(j, "download failed"), asAlice...)
				return success(j, 8, "r1")
			},
			status: http.StatusOK,
			after: func(t *testing.T, rec scanJSON) {
				if rec.Status != "finished" || *rec.Score != 8 || rec.FinishedAt == nil || rec.Reason != nil {
					t.Errorf("record = %+v", rec)
				}
			},
		},
		{
			name: "a second failure from the lease that reported a failure",
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.mustReport(failure(j, "first"), asAlice...)
				return failure(j, "second")
			},
			status: http.StatusOK,
			after: func(t *testing.T, rec scanJSON) {
				if rec.Status != "failed" || rec.Reason == nil || *rec.Reason != "second" || rec.FinishedAt != nil {
					t.Errorf("record = %+v", rec)
				}
			},
		},
		{
			name: "another identity after a failure",
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.mustReport(failure(j, "first"), asAlice...)
				return success(j, 0)
			},
			from:   asBob,
			status: http.StatusConflict, detail: stale,
		},
		{
			name: "a failure, then a report without lease fields (first attempt)",
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.mustReport(failure(j, "first"), asAlice...)
				return without(success(j, 0), "attempt", "assignment_id")
			},
			status: http.StatusOK,
		},
		{
			name:   "a rule name new to the server given twice",
			setup:  func(f *fixture) any { return success(f.leaseOne(asAlice...), 5, "fresh", "fresh") },
			status: http.StatusInternalServerError, detail: internal,
		},
		{
			name: "a rule name the server knows given twice",
			setup: func(f *fixture) any {
				j := f.leaseOne(asAlice...)
				f.s.Add("other", "1", nil)
				f.mustReport(success(f.leaseOne(asAlice...), 1, "known"), asAlice...) // other 1 makes "known" known
				return success(j, 5, "known", "known", "fresh")
			},
			status: http.StatusOK,
			after: func(t *testing.T, rec scanJSON) {
				if !reflect.DeepEqual(rec.Rules, []string{"known", "fresh"}) {
					t.Errorf("rules = %q, want [known fresh]", rec.Rules)
				}
			},
		},
		{
			name:   "a score beyond PostgreSQL's integer",
			setup:  func(f *fixture) any { return success(f.leaseOne(asAlice...), 1<<31) },
			status: http.StatusInternalServerError, detail: internal,
		},
		{
			name:   "a score at PostgreSQL's integer bound",
			setup:  func(f *fixture) any { return success(f.leaseOne(asAlice...), 1<<31-1) },
			status: http.StatusOK,
		},
		{
			name:   "a NUL byte in the reason",
			setup:  func(f *fixture) any { return failure(f.leaseOne(asAlice...), "a\x00b") },
			status: http.StatusInternalServerError, detail: internal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, twoIdentities(Config{Files: []File{sdist("pkg-1.0.tar.gz")}, MaxAttempts: tt.cfg.MaxAttempts}))
			body := tt.setup(f)
			before := lookup(t, f, "pkg", "1.0", asAlice...)
			from := tt.from
			if from == nil {
				from = asAlice
			}
			rec := f.do(http.MethodPut, "/package", body, from...)
			if rec.Code != tt.status {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			switch tt.status {
			case http.StatusOK:
				if rec.Body.String() != "null" {
					t.Errorf("body %s, want null", rec.Body)
				}
			case http.StatusInternalServerError:
				if rec.Body.String() != tt.detail || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
					t.Errorf("body %q (%s), want %q as text", rec.Body, rec.Header().Get("Content-Type"), tt.detail)
				}
			default:
				assertDetail(t, rec, tt.detail)
			}
			after := lookup(t, f, "pkg", "1.0", asAlice...)
			if tt.status != http.StatusOK && !reflect.DeepEqual(before, after) {
				t.Errorf("a refused report changed the record:\nbefore %+v\nafter  %+v", before, after)
			}
			if tt.after != nil {
				tt.after(t, after[len(after)-1])
			}
			// The report log names the caller.
			reps := f.s.Reports()
			if last := reps[len(reps)-1]; last.Status != tt.status || last.Identity != from[1] {
				t.Errorf("report log: %+v", last)
			}
		})
	}
}

func (f *fixture) mustReport(body any, hdr ...string) {
	f.t.Helper()
	if rec := f.do(http.MethodPut, "/package", body, hdr...); rec.Code != http.StatusOK {
		f.t.Fatalf("report %.300v: %d %.300s", body, rec.Code, rec.Body)
	}
}

// TestFailedThenFinishedCounts: a failure report and a later success from
// the same lease leave one finished scan; the report counters count both.
func TestFailedThenFinishedCounts(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz")}})
	j := f.leaseOne()
	f.mustReport(failure(j, "transient"))
	if st := f.s.Stats(); st.Failed != 1 || st.Queue.Failed != 1 || st.Queue.Finished != 0 || st.Queue.TotalBacklog != 0 {
		t.Fatalf("after the failure: %+v", st)
	}
	f.mustReport(success(j, 2))
	st := f.s.Stats()
	if st.Failed != 1 || st.Finished != 1 || st.Queue.Failed != 0 || st.Queue.Finished != 1 || st.ReportsAccepted != 2 {
		t.Fatalf("after the success: %+v", st)
	}
	if got := f.lease(1); len(got) != 0 {
		t.Fatalf("a failed or finished scan was leased again: %+v", got)
	}
}

// TestJobsDeadLetterFirst: every POST /jobs dead-letters the expired leases
// on their last attempt before it leases anything, whatever batch is and
// even when never-leased work fills the batch; a call that fails leaves
// them.
func TestJobsDeadLetterFirst(t *testing.T) {
	tests := []struct {
		batch   string
		status  int
		body    string // exact answer
		leased  string // names(jobs) for a 200
		dead    int64  // dead letters after the call
		expired int    // Exhausted after the call
	}{
		{batch: "1", status: http.StatusOK, leased: "fresh@1#1", dead: 1},
		{batch: "5", status: http.StatusOK, leased: "fresh@1#1 other@1#2", dead: 1},
		{batch: "0", status: http.StatusOK, body: "[]", dead: 1},
		{batch: "-1", status: http.StatusInternalServerError, body: "Internal Server Error", expired: 1},
		{batch: "ten", status: http.StatusUnprocessableEntity, expired: 1,
			body: `{"detail":[{"type":"int_parsing","loc":["query","batch"],"msg":"Input should be a valid integer, unable to parse string as an integer","input":"ten"}]}`},
	}
	for _, tt := range tests {
		t.Run("batch="+tt.batch, func(t *testing.T) {
			f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz")}, MaxAttempts: 2, LeaseTimeout: time.Minute})
			// pkg 1.0 leased twice (its last attempt), other 1 once; both
			// expire; fresh 1 is never leased.
			if got := names(f.lease(1)); got != "pkg@1.0#1" {
				t.Fatalf("setup lease = %q", got)
			}
			f.clock.Advance(61 * time.Second)
			if got := names(f.lease(1)); got != "pkg@1.0#2" {
				t.Fatalf("setup re-lease = %q", got)
			}
			f.s.Add("other", "1", nil)
			if got := names(f.lease(1)); got != "other@1#1" {
				t.Fatalf("setup lease = %q", got)
			}
			f.clock.Advance(61 * time.Second) // both expired: pkg exhausted, other retryable
			f.s.Add("fresh", "1", nil)
			if q := f.s.Stats().Queue; q.Exhausted != 1 || q.Retryable != 1 || q.Queued != 1 {
				t.Fatalf("setup queue = %+v", q)
			}

			rec := f.do(http.MethodPost, "/jobs?batch="+tt.batch, nil)
			if rec.Code != tt.status {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			if tt.body != "" && rec.Body.String() != tt.body {
				t.Errorf("body %s, want %s", rec.Body, tt.body)
			}
			if tt.leased != "" {
				var jobs []job
				if err := json.Unmarshal(rec.Body.Bytes(), &jobs); err != nil || names(jobs) != tt.leased {
					t.Errorf("leased %q (%v), want %q", names(jobs), err, tt.leased)
				}
			}
			st := f.s.Stats()
			if st.DeadLettered != tt.dead || st.Queue.Exhausted != tt.expired {
				t.Errorf("dead-lettered %d, exhausted %d; want %d, %d", st.DeadLettered, st.Queue.Exhausted, tt.dead, tt.expired)
			}
			if rec := lookup(t, f, "pkg", "1.0")[0]; (rec.Status == "failed") != (tt.dead == 1) || rec.DeadLettered != (tt.dead == 1) {
				t.Errorf("pkg record = %+v", rec)
			}
		})
	}
}

// TestDeadLetterOnlyExpiredLastAttempts: a lease on its last attempt that
// has not expired stays; one that expired is dead-lettered by the next
// /jobs even when that call finds nothing to lease.
func TestDeadLetterOnlyExpiredLastAttempts(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("a-1.tar.gz"), sdist("b-1.tar.gz")}, MaxAttempts: 1, LeaseTimeout: time.Minute})
	ja := f.leaseOne()
	f.clock.Advance(30 * time.Second)
	jb := f.leaseOne()
	f.clock.Advance(31 * time.Second) // a expired (61 s), b not (31 s)
	if got := f.lease(10); len(got) != 0 {
		t.Fatalf("lease = %+v", got)
	}
	if st := f.s.Stats(); st.DeadLettered != 1 || st.Queue.InProgress != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if rec := f.report(success(ja, 0)); rec.Code != http.StatusConflict {
		t.Fatalf("report of the dead letter: %d %s", rec.Code, rec.Body)
	}
	f.mustReport(success(jb, 0))
}

// TestLeaseOwnerAuth0: with Auth0 the lease belongs to the token's
// subject: a new token of the same user reports it, another user or a
// client_credentials token of the same client does not.
func TestLeaseOwnerAuth0(t *testing.T) {
	f := newFixture(t, Config{
		Auth: AuthAuth0, Auth0ClientID: "cid", Auth0ClientSecret: "csecret",
		Auth0Username: "scanner", Auth0Password: "pw", Auth0Users: map[string]string{"other": "pw2"},
		Files: []File{sdist("pkg-1.0.tar.gz")},
	})
	bearer := func(body string) []string {
		code, m := token(t, f, "application/json", body)
		if code != http.StatusOK {
			t.Fatalf("token %s: %d %v", body, code, m)
		}
		return []string{"Authorization", "Bearer " + m["access_token"].(string)}
	}
	const cc = `{"grant_type":"client_credentials","client_id":"cid","client_secret":"csecret"}`
	scanner := `{"grant_type":"password","client_id":"cid","client_secret":"csecret","username":"scanner","password":"pw"}`
	other := `{"grant_type":"password","client_id":"cid","client_secret":"csecret","username":"other","password":"pw2"}`
	j := f.leaseOne(bearer(scanner)...)
	for _, who := range []struct{ name, token string }{{"another user", other}, {"a machine token of the same client", cc}} {
		rec := f.do(http.MethodPut, "/package", success(j, 0), bearer(who.token)...)
		if rec.Code != http.StatusConflict {
			t.Fatalf("%s: %d %s", who.name, rec.Code, rec.Body)
		}
		assertDetail(t, rec, "Package `pkg@1.0` is no longer assigned to this worker lease.")
	}
	f.s.RevokeTokens()
	f.mustReport(success(j, 0), bearer(scanner)...) // a new token, the same subject
	var ids []string
	for _, r := range f.s.Reports() {
		ids = append(ids, r.Identity)
	}
	if want := []string{"auth0|other", "cid@clients", "auth0|scanner"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("identities in the report log = %q, want %q", ids, want)
	}
}

// TestReportBodyUnion: the body is validated as the real server's union
// PackageScanResult | PackageScanResultFail (pydantic smart mode).
func TestReportBodyUnion(t *testing.T) {
	one, two := 1, 2
	aid := "6f1d3c8e-0000-4000-8000-00000000000a"
	tests := []struct {
		name, body string
		want       *report
	}{
		{"success needs only name, version and commit", `{"name":"n","version":"1","commit":"c"}`,
			&report{name: "n", version: "1", success: true, rules: []string{}, commit: "c"}},
		{"failure", `{"name":"n","version":"1","reason":"r"}`,
			&report{name: "n", version: "1", reason: "r"}},
		{"commit and reason: three fields each, the tie goes to success", `{"name":"n","version":"1","commit":"c","reason":"r"}`,
			&report{name: "n", version: "1", success: true, rules: []string{}, commit: "c"}},
		{"score and reason without commit: only the failure fits", `{"name":"n","version":"1","score":9,"reason":"r"}`,
			&report{name: "n", version: "1", reason: "r"}},
		{"more success fields win", `{"name":"n","version":"1","score":9,"rules_matched":["a"],"commit":"c","reason":"r"}`,
			&report{name: "n", version: "1", success: true, score: 9, rules: []string{"a"}, commit: "c"}},
		{"lease fields count for both", `{"name":"n","version":"1","attempt":2,"assignment_id":"` + aid + `","commit":"c","reason":"r"}`,
			&report{name: "n", version: "1", success: true, rules: []string{}, commit: "c", attempt: &two, assignmentID: &aid}},
		{"a null reason is no failure", `{"name":"n","version":"1","commit":"c","reason":null}`,
			&report{name: "n", version: "1", success: true, rules: []string{}, commit: "c"}},
		{"a null commit is no success", `{"name":"n","version":"1","commit":null,"reason":"r"}`,
			&report{name: "n", version: "1", reason: "r"}},
		{"unknown fields are ignored", `{"name":"n","version":"1","reason":"r","extra":[1]}`,
			&report{name: "n", version: "1", reason: "r"}},
		{"lax integers", `{"name":"n","version":"1","commit":"c","score":"7","attempt":1.0}`,
			&report{name: "n", version: "1", success: true, score: 7, rules: []string{}, commit: "c", attempt: &one}},
		{"a boolean is an integer", `{"name":"n","version":"1","commit":"c","score":true}`,
			&report{name: "n", version: "1", success: true, score: 1, rules: []string{}, commit: "c"}},
		{"null inspector_url", `{"name":"n","version":"1","commit":"c","inspector_url":null}`,
			&report{name: "n", version: "1", success: true, rules: []string{}, commit: "c"}},
	}
	for _, tt := range tests {
		got, err := parseReport([]byte(tt.body))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: parseReport(%s) = %+v, %v; want %+v", tt.name, tt.body, got, err, tt.want)
		}
	}

	// Refused bodies: 422 with the errors of both models.
	refused := []struct {
		name, body, want string
	}{
		{"empty body", ``, `[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]`},
		{"null body", `null`, `[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]`},
		{"not an object", `[1]`, `[` +
			`{"type":"model_attributes_type","loc":["body","PackageScanResult"],"msg":"Input should be a valid dictionary or object to extract fields from","input":[1]},` +
			`{"type":"model_attributes_type","loc":["body","PackageScanResultFail"],"msg":"Input should be a valid dictionary or object to extract fields from","input":[1]}]`},
		{"neither commit nor reason", `{"name":"n","version":"1"}`, `[` +
			`{"type":"missing","loc":["body","PackageScanResult","commit"],"msg":"Field required","input":{"name":"n","version":"1"}},` +
			`{"type":"missing","loc":["body","PackageScanResultFail","reason"],"msg":"Field required","input":{"name":"n","version":"1"}}]`},
		{"attempt 0", `{"name":"n","version":"1","commit":"c","attempt":0}`, `[` +
			`{"type":"greater_than_equal","loc":["body","PackageScanResult","attempt"],"msg":"Input should be greater than or equal to 1","input":0,"ctx":{"ge":1}},` +
			`{"type":"missing","loc":["body","PackageScanResultFail","reason"],"msg":"Field required","input":{"attempt":0,"commit":"c","name":"n","version":"1"}},` +
			`{"type":"greater_than_equal","loc":["body","PackageScanResultFail","attempt"],"msg":"Input should be greater than or equal to 1","input":0,"ctx":{"ge":1}}]`},
		{"a null score", `{"name":"n","version":"1","commit":"c","score":null}`, `[` +
			`{"type":"int_type","loc":["body","PackageScanResult","score"],"msg":"Input should be a valid integer","input":null},` +
			`{"type":"missing","loc":["body","PackageScanResultFail","reason"],"msg":"Field required","input":{"commit":"c","name":"n","score":null,"version":"1"}}]`},
	}
	f := newFixture(t, Config{})
	for _, tt := range refused {
		rec := f.report(tt.body)
		var got struct {
			Detail json.RawMessage `json:"detail"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != http.StatusUnprocessableEntity || err != nil {
			t.Errorf("%s: %d %s", tt.name, rec.Code, rec.Body)
			continue
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, got.Detail); err != nil || compact.String() != tt.want {
			t.Errorf("%s: detail\n%s\nwant\n%s", tt.name, compact.String(), tt.want)
		}
	}
}

// TestDevRoutesNeedTheAPIsAuth: with authentication configured the /_dev/
// routes take the API's credentials; a refused call changes nothing.
func TestDevRoutesNeedTheAPIsAuth(t *testing.T) {
	routes := []struct{ method, path, body string }{
		{http.MethodGet, "/_dev/stats", ""},
		{http.MethodGet, "/_dev/reports", ""},
		{http.MethodGet, "/_dev/faults", ""},
		{http.MethodPost, "/_dev/faults", `{"unavailable_seconds":60,"revoke_tokens":true}`},
	}
	modes := []struct {
		name    string
		cfg     Config
		refused int
		creds   func(t *testing.T, f *fixture) []string
	}{
		{"none", Config{}, 0, func(*testing.T, *fixture) []string { return nil }},
		{"cloudflare", twoIdentities(Config{}), http.StatusFound, func(*testing.T, *fixture) []string { return asBob }},
		{"auth0", Config{Auth: AuthAuth0, Auth0ClientID: "cid", Auth0ClientSecret: "csecret"}, http.StatusUnauthorized,
			func(t *testing.T, f *fixture) []string {
				_, m := token(t, f, "application/json", `{"grant_type":"client_credentials","client_id":"cid","client_secret":"csecret"}`)
				return []string{"Authorization", "Bearer " + m["access_token"].(string)}
			}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			for _, rt := range routes {
				f := newFixture(t, mode.cfg)
				creds := mode.creds(t, f)
				if mode.refused != 0 {
					for _, bad := range [][]string{nil, {"CF-Access-Client-Id", "bob", "CF-Access-Client-Secret", "alice-secret"}, {"Authorization", "Bearer forged"}} {
						rec := f.do(rt.method, rt.path, rt.body, bad...)
						if rec.Code != mode.refused {
							t.Fatalf("%s %s with %v: %d, want %d", rt.method, rt.path, bad, rec.Code, mode.refused)
						}
					}
					if st := f.s.faultState(); st.UnavailableUntil != nil {
						t.Fatalf("a refused %s %s changed the faults: %+v", rt.method, rt.path, st)
					}
				}
				if rec := f.do(rt.method, rt.path, rt.body, creds...); rec.Code != http.StatusOK {
					t.Fatalf("%s %s with credentials: %d %s", rt.method, rt.path, rec.Code, rec.Body)
				}
			}
		})
	}
}
