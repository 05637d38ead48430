package devapi

import (
	"container/list"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// status is the state of one scan record, as the real server's scans table.
type status uint8

const (
	statusQueued   status = iota // waiting, never leased
	statusPending                // leased (possibly expired, see lazy expiry)
	statusFinished               // a success report was accepted
	statusFailed                 // a failure report was accepted, or dead-lettered
)

func (s status) String() string {
	switch s {
	case statusQueued:
		return "queued"
	case statusPending:
		return "pending"
	case statusFinished:
		return "finished"
	case statusFailed:
		return "failed"
	}
	return "unknown"
}

func parseStatus(s string) (status, error) {
	for st := statusQueued; st <= statusFailed; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown scan status %q", s)
}

// dist is one distribution file.
type dist struct {
	name  string // file name, e.g. requests-2.19.1.tar.gz
	path  string // URL path: /packages/{h[0:2]}/{h[2:4]}/{h[4:]}/{name}
	sha   string // sha256 hex of data
	data  []byte
	added bool // added at runtime (Add): the snapshot keeps its bytes
}

// release is one (name, version) and its scan records.
type release struct {
	key     string // normalized name + "\x00" + version
	name    string
	version string
	files   []*dist
	scans   []*scan // oldest first; the last is the current one
}

func (r *release) current() *scan {
	if len(r.scans) == 0 {
		return nil
	}
	return r.scans[len(r.scans)-1]
}

// scan is one scan record: one queueing of a release and its fate.
type scan struct {
	id           string
	seq          uint64 // global queueing order
	rel          *release
	status       status
	attempt      int
	assignment   string
	owner        string // identity that holds (or last held) the lease: the real server's pending_by
	queuedAt     time.Time
	pendingAt    time.Time
	finishedAt   time.Time     // when the scan reached its terminal state (success, failure or dead letter)
	lease        *list.Element // in state.pending or state.final while status is pending
	deadLettered bool
	score        int
	inspectorURL *string
	rules        []string
	commit       string
	reason       string
}

func (sc *scan) expiry(timeout time.Duration) time.Time { return sc.pendingAt.Add(timeout) }

// apiError is an application error answered as {"detail": msg} with code.
type apiError struct {
	code   int
	detail string
}

func (e *apiError) Error() string { return e.detail }

// leased is what one lease hands out, copied out of the locked state.
type leased struct {
	name, version string
	files         []*dist // immutable once created
	attempt       int
	assignment    string
}

// counters are the state's monotonic counts.
type counters struct {
	leases       int64
	deadLettered int64
	finished     int64 // success reports accepted
	failed       int64 // failure reports accepted
}

// tally counts scans by terminal state (not reports: a scan whose failure
// report is followed by a success from the same lease moves from failed to
// finished).
type tally struct {
	finished int // status finished
	failed   int // status failed by a report (dead letters are counters.deadLettered)
}

// state is the job queue. It is not safe for concurrent use: Server guards
// it with its mutex.
//
// Complexity: leasing n jobs is O(n) amortized plus the expired leases it
// dead-letters: never-leased scans sit in a FIFO (queue); leased ones in
// two lists ordered by lease time, pending (attempts left: re-leased when
// expired) and final (the last attempt: dead-lettered when expired), whose
// fronts are the oldest leases and therefore the first to expire. A report
// removes its scan from its list in O(1).
type state struct {
	timeout     time.Duration
	maxAttempts int

	releases map[string]*release
	order    []*release // release listing order
	queue    fifo       // never-leased scans, queueing order
	pending  *list.List // of *scan with attempt < maxAttempts, by pendingAt ascending
	final    *list.List // of *scan with attempt >= maxAttempts, by pendingAt ascending
	nextSeq  uint64
	count    counters
	scans    tally
	// knownRules are the rule names of every accepted success report: the
	// real server's rules table, which only reports fill. A duplicate name
	// in rules_matched fails (500) only when the name is new (two inserts of
	// one unique name); a known one is looked up once and goes through.
	knownRules map[string]struct{}
	newID      func() string
}

// newState returns an empty queue; newID mints scan and assignment ids
// (default: random UUIDs).
func newState(timeout time.Duration, maxAttempts int, newID func() string) *state {
	if newID == nil {
		newID = uuid.NewString
	}
	return &state{
		timeout:     timeout,
		maxAttempts: maxAttempts,
		releases:    map[string]*release{},
		pending:     list.New(),
		final:       list.New(),
		knownRules:  map[string]struct{}{},
		newID:       newID,
	}
}

func releaseKey(name, version string) string { return normalizeName(name) + "\x00" + version }

// addRelease adds the files to release (name, version), creating it if
// needed, and queues a new scan unless one is queued or pending already.
// Files already present (same name) are skipped.
func (st *state) addRelease(name, version string, files []*dist, now time.Time) *release {
	key := releaseKey(name, version)
	r := st.releases[key]
	if r == nil {
		r = &release{key: key, name: name, version: version}
		st.releases[key] = r
		st.order = append(st.order, r)
	}
	for _, f := range files {
		if !slices.ContainsFunc(r.files, func(g *dist) bool { return g.name == f.name }) {
			r.files = append(r.files, f)
		}
	}
	if c := r.current(); c == nil || c.status == statusFinished || c.status == statusFailed {
		st.enqueue(r, now)
	}
	return r
}

// enqueue appends a new queued scan record to r.
func (st *state) enqueue(r *release, now time.Time) *scan {
	st.nextSeq++
	sc := &scan{id: st.newID(), seq: st.nextSeq, rel: r, status: statusQueued, queuedAt: now}
	r.scans = append(r.scans, sc)
	st.queue.push(sc)
	return sc
}

// queuePackage answers POST /package as the real server does: it looks the
// release up on "PyPI" (here: the releases this server knows; 404 if
// unknown) and inserts a scan row, which the unique (name, version)
// constraint refuses (409) for every release that has one, whatever its
// state. Every known release has one, so the call never queues anything;
// Server.Add queues a release again.
func (st *state) queuePackage(name, version string) error {
	if st.releases[releaseKey(name, version)] == nil {
		return &apiError{http.StatusNotFound, fmt.Sprintf("Package %s@%s was not found on PyPI", name, version)}
	}
	return &apiError{http.StatusConflict, fmt.Sprintf("Package %s@%s is already queued for scanning", name, version)}
}

// expired reports whether a pending scan's lease has run out at now. As the
// real server (pending_at < now - JOB_TIMEOUT), a lease lasts the whole
// timeout and expires strictly after it.
func (st *state) expired(sc *scan, now time.Time) bool {
	return now.Sub(sc.pendingAt) > st.timeout
}

// leaseList is the list a pending scan sits in: final once it holds its
// last attempt.
func (st *state) leaseList(sc *scan) *list.List {
	if sc.attempt >= st.maxAttempts {
		return st.final
	}
	return st.pending
}

// unlease takes a pending scan out of its lease list.
func (st *state) unlease(sc *scan) {
	if sc.lease != nil {
		st.leaseList(sc).Remove(sc.lease)
		sc.lease = nil
	}
}

// lease is POST /jobs in one transaction, as the real server runs it: first
// every expired lease that held its last attempt is dead-lettered (FAILED),
// whatever n is; then up to n jobs are handed to owner: never-leased scans
// first (queueing order), then expired leases with attempts left, oldest
// first. n may be 0 (dead-lettering only).
func (st *state) lease(n int, now time.Time, owner string) []leased {
	for e := st.final.Front(); e != nil; e = st.final.Front() {
		sc := e.Value.(*scan)
		if !st.expired(sc, now) {
			break
		}
		st.unlease(sc)
		st.deadLetter(sc, now)
	}
	var out []leased
	for len(out) < n {
		sc := st.queue.pop()
		if sc == nil {
			break
		}
		out = append(out, st.grant(sc, now, owner))
	}
	for len(out) < n {
		front := st.pending.Front()
		if front == nil {
			break
		}
		sc := front.Value.(*scan)
		if !st.expired(sc, now) {
			break
		}
		st.unlease(sc)
		out = append(out, st.grant(sc, now, owner))
	}
	return out
}

// grant leases sc to owner: attempt+1, a new assignment, pending since now.
func (st *state) grant(sc *scan, now time.Time, owner string) leased {
	sc.status = statusPending
	sc.attempt++
	sc.assignment = st.newID()
	sc.owner = owner
	sc.pendingAt = now
	st.insertPending(sc)
	st.count.leases++
	return leased{name: sc.rel.name, version: sc.rel.version, files: sc.rel.files, attempt: sc.attempt, assignment: sc.assignment}
}

// insertPending puts a pending scan into its lease list, ordered by
// pendingAt. With a non-decreasing clock this is a push to the back; an
// injected clock that goes backwards costs a walk from the back.
func (st *state) insertPending(sc *scan) {
	l := st.leaseList(sc)
	e := l.Back()
	for e != nil && e.Value.(*scan).pendingAt.After(sc.pendingAt) {
		e = e.Prev()
	}
	if e == nil {
		sc.lease = l.PushFront(sc)
	} else {
		sc.lease = l.InsertAfter(sc, e)
	}
}

// deadLetterReason is the real server's fail_reason of a dead letter.
func (st *state) deadLetterReason() string {
	return fmt.Sprintf("Worker lease expired after %d scan attempts", st.maxAttempts)
}

func (st *state) deadLetter(sc *scan, now time.Time) {
	sc.status = statusFailed
	sc.deadLettered = true
	sc.finishedAt = now
	sc.reason = st.deadLetterReason()
	st.count.deadLettered++
}

// report is one parsed PUT /package body.
type report struct {
	name, version string
	attempt       *int
	assignmentID  *string
	success       bool
	score         int
	inspectorURL  *string
	rules         []string
	commit        string
	reason        string
}

// errInternal is the real server's answer to an unhandled exception (a
// database error at commit): Starlette's plain-text 500.
var errInternal = &apiError{http.StatusInternalServerError, "Internal Server Error"}

// hasNUL reports whether any of the strings holds a NUL byte, which
// PostgreSQL refuses in text (psycopg2 raises before the query runs).
func hasNUL(ss ...string) bool {
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
	return false
}

// apply records a report from identity as the real server's PUT /package
// does, in its order of checks:
//
//  1. 404 "Package `n@v` not found in database." when no scan has exactly
//     this name and version (the name is compared as leased, not
//     normalized);
//  2. 409 "... is already in a FINISHED state." for a finished scan;
//  3. 409 "... exhausted its scan attempt limit." for a dead letter;
//  4. 409 "... is no longer assigned to this worker lease." unless the
//     scan was leased to identity and the report names the current lease:
//     attempt and assignment_id both equal to it, or both absent while the
//     scan is on its first attempt. A never-leased scan is nobody's lease.
//  5. 500 (plain text) when the database would refuse the row: a score
//     outside PostgreSQL's integer range, a rule name new to the server
//     given twice, a NUL byte in a stored string.
//
// A failed scan (by report, not dead-lettered) passes these checks like a
// pending one, so the lease that failed it may report again: a success
// finishes it, another failure replaces the reason. The lease's expiry is
// not checked: an expired lease nobody took over still reports.
//
// On an error the state is untouched.
func (st *state) apply(rep *report, now time.Time, identity string) error {
	if hasNUL(rep.name, rep.version) {
		return errInternal
	}
	r := st.releases[releaseKey(rep.name, rep.version)]
	if r == nil || r.name != rep.name || r.current() == nil {
		return &apiError{http.StatusNotFound, fmt.Sprintf("Package `%s@%s` not found in database.", rep.name, rep.version)}
	}
	sc := r.current()
	if sc.status == statusFinished {
		return &apiError{http.StatusConflict, fmt.Sprintf("Package `%s@%s` is already in a FINISHED state.", rep.name, rep.version)}
	}
	if sc.deadLettered {
		return &apiError{http.StatusConflict, fmt.Sprintf("Package `%s@%s` exhausted its scan attempt limit.", rep.name, rep.version)}
	}
	assignmentMatches := rep.attempt != nil && *rep.attempt == sc.attempt &&
		rep.assignmentID != nil && sc.assignment != "" && *rep.assignmentID == sc.assignment
	legacyFirst := rep.attempt == nil && rep.assignmentID == nil && sc.attempt == 1
	workerMatches := sc.attempt > 0 && sc.owner == identity
	if !workerMatches || !(assignmentMatches || legacyFirst) {
		return &apiError{http.StatusConflict, fmt.Sprintf("Package `%s@%s` is no longer assigned to this worker lease.", rep.name, rep.version)}
	}
	var distinct []string
	if rep.success {
		if rep.score < math.MinInt32 || rep.score > math.MaxInt32 || hasNUL(rep.commit) ||
			(rep.inspectorURL != nil && hasNUL(*rep.inspectorURL)) || hasNUL(rep.rules...) {
			return errInternal
		}
		// The rules as the server stores them: one row per distinct name.
		seen := make(map[string]struct{}, len(rep.rules))
		for _, name := range rep.rules {
			if _, dup := seen[name]; dup {
				if _, known := st.knownRules[name]; !known {
					return errInternal
				}
				continue
			}
			seen[name] = struct{}{}
			distinct = append(distinct, name)
		}
	} else if hasNUL(rep.reason) {
		return errInternal
	}

	switch sc.status {
	case statusPending:
		st.unlease(sc)
	case statusFailed:
		st.scans.failed--
	}
	sc.finishedAt = now
	if rep.success {
		sc.status = statusFinished
		sc.score = rep.score
		sc.inspectorURL = rep.inspectorURL
		sc.rules = distinct
		for _, name := range distinct {
			st.knownRules[name] = struct{}{}
		}
		sc.commit = rep.commit
		st.scans.finished++
		st.count.finished++
	} else {
		sc.status = statusFailed
		sc.reason = rep.reason
		st.scans.failed++
		st.count.failed++
	}
	return nil
}

// QueueStatus is the answer of GET /queue-status. Every count is of scan
// records (one per queueing of a release), evaluated at the time of the call
// without changing anything (expiry is lazy: only /jobs acts on it).
type QueueStatus struct {
	// Queued: scans waiting that were never leased.
	Queued int `json:"queued"`
	// InProgress: leased scans whose lease has not expired.
	InProgress int `json:"in_progress"`
	// Retryable: leased scans whose lease expired and whose attempt is below
	// MaxAttempts; the next /jobs calls re-lease them.
	Retryable int `json:"retryable"`
	// Exhausted: leased scans whose lease expired with attempt >= MaxAttempts;
	// the next /jobs call (any batch, even 0) dead-letters them (FAILED).
	Exhausted int `json:"exhausted"`
	// Stranded: the part of Retryable+Exhausted whose lease expired more than
	// one LeaseTimeout ago: nobody has called /jobs to collect them for a
	// whole lease period (no scanner running, or it is stuck).
	Stranded int `json:"stranded"`
	// TotalBacklog: every scan not yet finished or failed:
	// Queued + InProgress + Retryable + Exhausted.
	TotalBacklog int `json:"total_backlog"`
	// OldestAgeSeconds: now minus queued_at of the oldest scan in
	// TotalBacklog; 0 when the backlog is empty.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// Finished and Failed count scans in those states (failed includes
	// dead-lettered ones; a failed scan its lease then reports a success for
	// moves to finished).
	Finished int `json:"finished"`
	Failed   int `json:"failed"`
}

// queueStatus walks the lease lists (O(leased)), not the whole history.
func (st *state) queueStatus(now time.Time) QueueStatus {
	q := QueueStatus{Queued: st.queue.len()}
	var oldest time.Time
	if sc := st.queue.peek(); sc != nil {
		oldest = sc.queuedAt
	}
	for _, l := range []*list.List{st.pending, st.final} {
		for e := l.Front(); e != nil; e = e.Next() {
			sc := e.Value.(*scan)
			if oldest.IsZero() || sc.queuedAt.Before(oldest) {
				oldest = sc.queuedAt
			}
			if !st.expired(sc, now) {
				q.InProgress++
				continue
			}
			if sc.attempt >= st.maxAttempts {
				q.Exhausted++
			} else {
				q.Retryable++
			}
			if now.Sub(sc.expiry(st.timeout)) > st.timeout {
				q.Stranded++
			}
		}
	}
	q.TotalBacklog = q.Queued + q.InProgress + q.Retryable + q.Exhausted
	if !oldest.IsZero() {
		q.OldestAgeSeconds = max(0, now.Sub(oldest).Seconds())
	}
	q.Finished = st.scans.finished
	q.Failed = st.scans.failed + int(st.count.deadLettered)
	return q
}

// fifo is a queue of scans with amortized O(1) push and pop.
type fifo struct {
	items []*scan
	head  int
}

func (q *fifo) push(sc *scan) { q.items = append(q.items, sc) }

func (q *fifo) pop() *scan {
	if q.head == len(q.items) {
		return nil
	}
	sc := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return sc
}

func (q *fifo) peek() *scan {
	if q.head == len(q.items) {
		return nil
	}
	return q.items[q.head]
}

func (q *fifo) len() int { return len(q.items) - q.head }
