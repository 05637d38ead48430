package devapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func threeReleases() []File {
	return []File{sdist("bbb-1.0.tar.gz"), sdist("aaa-1.0.tar.gz"), sdist("ccc-2.0.tar.gz"), sdist("aaa-0.9.zip")}
}

func TestLeaseOrderNeverLeasedFirstThenExpiredOldestFirst(t *testing.T) {
	f := newFixture(t, Config{Files: threeReleases(), LeaseTimeout: time.Minute})
	if got, want := names(f.lease(2)), "aaa@0.9#1 aaa@1.0#1"; got != want {
		t.Fatalf("first lease = %q, want %q", got, want)
	}
	f.clock.Advance(10 * time.Second)
	if got, want := names(f.lease(1)), "bbb@1.0#1"; got != want {
		t.Fatalf("second lease = %q, want %q", got, want)
	}
	// Not expired yet: only the never-leased ccc is left.
	f.clock.Advance(50 * time.Second) // aaa leases are exactly 60s old: not expired (strictly after)
	if got, want := names(f.lease(5)), "ccc@2.0#1"; got != want {
		t.Fatalf("third lease = %q, want %q", got, want)
	}
	if got := f.lease(5); len(got) != 0 {
		t.Fatalf("nothing expired, got %q", names(got))
	}
	f.clock.Advance(time.Second) // aaa expired (61s), bbb 51s old
	if got, want := names(f.lease(5)), "aaa@0.9#2 aaa@1.0#2"; got != want {
		t.Fatalf("re-lease = %q, want %q", got, want)
	}
	f.clock.Advance(10 * time.Second) // bbb 61s, ccc 11s + ... ccc leased at +60s: 11s
	if got, want := names(f.lease(5)), "bbb@1.0#2"; got != want {
		t.Fatalf("re-lease = %q, want %q", got, want)
	}
	// A new release added at runtime goes before expired work.
	f.s.Add("zzz", "1", []File{sdist("zzz-1.tar.gz")})
	f.clock.Advance(time.Hour) // everything expired
	if got, want := names(f.lease(10)), "zzz@1#1 ccc@2.0#2 aaa@0.9#3 aaa@1.0#3 bbb@1.0#3"; got != want {
		t.Fatalf("lease after Add = %q, want %q", got, want)
	}
}

func TestReleaseGoesToAnotherCallerWithNewAssignment(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz")}})
	first := f.lease(1)
	if len(first) != 1 || first[0].Attempt != 1 {
		t.Fatalf("first lease = %+v", first)
	}
	f.clock.Advance(121 * time.Second)
	second := f.lease(1)
	if len(second) != 1 || second[0].Attempt != 2 || second[0].AssignmentID == first[0].AssignmentID {
		t.Fatalf("second lease = %+v, first %+v", second, first)
	}
	// The old lease's report is refused for good.
	rec := f.report(success(first[0], 0))
	if rec.Code != http.StatusConflict {
		t.Fatalf("old lease report: %d %s", rec.Code, rec.Body)
	}
	assertDetail(t, rec, "Package `pkg@1.0` is no longer assigned to this worker lease.")
	// An old report that only carries the old attempt number is refused too.
	old := success(first[0], 0)
	delete(old, "assignment_id")
	if rec := f.report(old); rec.Code != http.StatusConflict {
		t.Fatalf("old attempt report: %d %s", rec.Code, rec.Body)
	}
	if rec := f.report(success(second[0], 3, "r1")); rec.Code != http.StatusOK || rec.Body.String() != "null" {
		t.Fatalf("current lease report: %d %s", rec.Code, rec.Body)
	}
	rec = f.report(success(second[0], 3, "r1"))
	if rec.Code != http.StatusConflict {
		t.Fatalf("second report: %d %s", rec.Code, rec.Body)
	}
	assertDetail(t, rec, "Package `pkg@1.0` is already in a FINISHED state.")
}

func TestDeadLetterAfterMaxAttempts(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz")}, MaxAttempts: 2, LeaseTimeout: time.Minute})
	var last []job
	for attempt := 1; attempt <= 2; attempt++ {
		last = f.lease(1)
		if len(last) != 1 || last[0].Attempt != attempt {
			t.Fatalf("lease %d = %+v", attempt, last)
		}
		f.clock.Advance(61 * time.Second)
	}
	if st := f.s.Stats(); st.Queue.Exhausted != 1 || st.DeadLettered != 0 {
		t.Fatalf("before dead-letter: %+v", st)
	}
	if got := f.lease(1); len(got) != 0 {
		t.Fatalf("third lease = %+v, want none (dead-lettered)", got)
	}
	st := f.s.Stats()
	if st.DeadLettered != 1 || st.Queue.TotalBacklog != 0 || st.Queue.Failed != 1 {
		t.Fatalf("after dead-letter: %+v", st)
	}
	rec := f.report(success(last[0], 1))
	if rec.Code != http.StatusConflict {
		t.Fatalf("report after dead-letter: %d %s", rec.Code, rec.Body)
	}
	assertDetail(t, rec, "Package `pkg@1.0` exhausted its scan attempt limit.")
	// GET /package shows the failed scan.
	recs := lookup(t, f, "pkg", "1.0")
	if len(recs) != 1 || recs[0].Status != "failed" || !recs[0].DeadLettered || recs[0].Attempt != 2 ||
		recs[0].Reason == nil || *recs[0].Reason != "Worker lease expired after 2 scan attempts" ||
		recs[0].DeadLetteredAt == nil || recs[0].FinishedAt != nil {
		t.Fatalf("lookup = %+v", recs)
	}
}

func TestReportAcceptedAfterExpiryBeforeRelease(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz")}, MaxAttempts: 1})
	j := f.lease(1)
	f.clock.Advance(10 * time.Minute) // expired, and at MaxAttempts: exhausted, not yet dead-lettered
	if q := f.s.Stats().Queue; q.Exhausted != 1 || q.Stranded != 1 {
		t.Fatalf("queue = %+v", q)
	}
	if rec := f.report(failure(j[0], "scan timeout")); rec.Code != http.StatusOK {
		t.Fatalf("late report: %d %s", rec.Code, rec.Body)
	}
	if got := f.lease(1); len(got) != 0 {
		t.Fatalf("lease after report = %+v", got)
	}
	st := f.s.Stats()
	if st.Failed != 1 || st.DeadLettered != 0 || st.Queue.Failed != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestReportWithoutLeaseFieldsFromOldClients(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz"), sdist("other-1.0.tar.gz")}})
	// Never leased: refused.
	rec := f.report(map[string]any{"name": "pkg", "version": "1.0", "reason": "x"})
	if rec.Code != http.StatusConflict {
		t.Fatalf("report of queued job: %d %s", rec.Code, rec.Body)
	}
	f.lease(2)
	rec = f.report(map[string]any{"name": "pkg", "version": "1.0", "score": 5, "rules_matched": []string{"a"}, "commit": "c"})
	if rec.Code != http.StatusOK {
		t.Fatalf("old-client report: %d %s", rec.Code, rec.Body)
	}
	recs := lookup(t, f, "pkg", "1.0")
	if len(recs) != 1 || recs[0].Status != "finished" || *recs[0].Score != 5 || recs[0].Rules[0] != "a" {
		t.Fatalf("lookup = %+v", recs)
	}
}

func TestDuplicateRulesIs500AndStateUnchanged(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz")}})
	j := f.lease(1)[0]
	rec := f.report(success(j, 5, "a", "b", "a"))
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != "Internal Server Error" ||
		rec.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("duplicate rules: %d %q %q", rec.Code, rec.Body, rec.Header().Get("Content-Type"))
	}
	if recs := lookup(t, f, "pkg", "1.0"); recs[0].Status != "pending" {
		t.Fatalf("state changed: %+v", recs[0])
	}
	if rec := f.report(success(j, 5, "a", "b")); rec.Code != http.StatusOK {
		t.Fatalf("fixed report: %d %s", rec.Code, rec.Body)
	}
	if reps := f.s.Reports(); len(reps) != 2 || reps[0].Status != 500 || reps[0].Detail != "Internal Server Error" || reps[0].Kind != "success" {
		t.Fatalf("report log = %+v", reps)
	}
}

// TestQueuePackageAsTheRealServer: POST /package looks the release up (404
// unknown) and then meets the unique (name, version) row every known
// release has (409), whatever its state; Server.Add is how a test queues a
// release again, as a new scan record.
func TestQueuePackageAsTheRealServer(t *testing.T) {
	f := newFixture(t, Config{Files: []File{sdist("pkg-1.0.tar.gz")}})
	queue := func(name, version string) *httptest.ResponseRecorder {
		return f.do(http.MethodPost, "/package", map[string]string{"name": name, "version": version})
	}
	rec := queue("pkg", "1.0")
	if rec.Code != http.StatusConflict {
		t.Fatalf("queue of a queued release: %d %s", rec.Code, rec.Body)
	}
	assertDetail(t, rec, "Package pkg@1.0 is already queued for scanning")
	j := f.lease(1)[0]
	if rec := f.report(success(j, 1)); rec.Code != http.StatusOK {
		t.Fatalf("report: %d %s", rec.Code, rec.Body)
	}
	if rec := queue("pkg", "1.0"); rec.Code != http.StatusConflict {
		t.Fatalf("queue of a finished release: %d %s", rec.Code, rec.Body)
	}
	rec = queue("nope", "1.0")
	if rec.Code != http.StatusNotFound {
		t.Fatalf("queue unknown: %d %s", rec.Code, rec.Body)
	}
	assertDetail(t, rec, "Package nope@1.0 was not found on PyPI")
	if recs := lookup(t, f, "pkg", "1.0"); len(recs) != 1 || recs[0].Status != "finished" {
		t.Fatalf("lookup after refused queueing = %+v", recs)
	}

	f.s.Add("pkg", "1.0", nil)
	recs := lookup(t, f, "pkg", "1.0")
	if len(recs) != 2 || recs[0].Status != "finished" || recs[1].Status != "queued" {
		t.Fatalf("lookup after Add = %+v", recs)
	}
	again := f.lease(1)
	if len(again) != 1 || again[0].Attempt != 1 || again[0].AssignmentID == j.AssignmentID {
		t.Fatalf("lease of requeued = %+v", again)
	}
}
