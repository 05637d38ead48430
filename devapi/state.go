package devapi

import (
	"container/list"
	"fmt"
	"net/http"
	"slices"
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
	queuedAt     time.Time
	pendingAt    time.Time
	finishedAt   time.Time
	lease        *list.Element // in state.pending while status is pending
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

// state is the job queue. It is not safe for concurrent use: Server guards
// it with its mutex.
//
// Complexity: leasing n jobs is O(n) amortized (plus the expired leases it
// dead-letters on the way): never-leased scans sit in a FIFO (queue), leased
// ones in a list ordered by lease time (pending), whose front is the oldest
// lease and therefore the first to expire. A report removes its scan from
// pending in O(1).
type state struct {
	timeout     time.Duration
	maxAttempts int

	releases map[string]*release
	order    []*release // release listing order
	queue    fifo       // never-leased scans, queueing order
	pending  *list.List // of *scan, by pendingAt ascending
	nextSeq  uint64
	count    counters
	newID    func() string
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

// requeue queues release name@version again (POST /package).
func (st *state) requeue(name, version string, now time.Time) (*scan, error) {
	r := st.releases[releaseKey(name, version)]
	if r == nil {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("Package %s@%s not found", name, version)}
	}
	if c := r.current(); c != nil && (c.status == statusQueued || c.status == statusPending) {
		return nil, &apiError{http.StatusConflict, fmt.Sprintf("Package %s@%s is already %s", name, version, c.status)}
	}
	return st.enqueue(r, now), nil
}

// expired reports whether a pending scan's lease has run out at now. As the
// real server (pending_at < now - JOB_TIMEOUT), a lease lasts the whole
// timeout and expires strictly after it.
func (st *state) expired(sc *scan, now time.Time) bool {
	return now.Sub(sc.pendingAt) > st.timeout
}

// lease hands out up to n jobs: never-leased scans first (queueing order),
// then expired leases, oldest first. An expired lease whose attempt already
// reached maxAttempts is dead-lettered (FAILED) instead.
func (st *state) lease(n int, now time.Time) []leased {
	var out []leased
	for len(out) < n {
		sc := st.queue.pop()
		if sc == nil {
			break
		}
		out = append(out, st.grant(sc, now))
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
		st.pending.Remove(front)
		sc.lease = nil
		if sc.attempt >= st.maxAttempts {
			st.deadLetter(sc, now)
			continue
		}
		out = append(out, st.grant(sc, now))
	}
	return out
}

// grant leases sc: attempt+1, a new assignment, pending since now.
func (st *state) grant(sc *scan, now time.Time) leased {
	sc.status = statusPending
	sc.attempt++
	sc.assignment = st.newID()
	sc.pendingAt = now
	st.insertPending(sc)
	st.count.leases++
	return leased{name: sc.rel.name, version: sc.rel.version, files: sc.rel.files, attempt: sc.attempt, assignment: sc.assignment}
}

// insertPending keeps pending ordered by pendingAt. With a non-decreasing
// clock this is a push to the back; an injected clock that goes backwards
// costs a walk from the back.
func (st *state) insertPending(sc *scan) {
	e := st.pending.Back()
	for e != nil && e.Value.(*scan).pendingAt.After(sc.pendingAt) {
		e = e.Prev()
	}
	if e == nil {
		sc.lease = st.pending.PushFront(sc)
	} else {
		sc.lease = st.pending.InsertAfter(sc, e)
	}
}

func (st *state) deadLetter(sc *scan, now time.Time) {
	sc.status = statusFailed
	sc.deadLettered = true
	sc.finishedAt = now
	sc.reason = fmt.Sprintf("dead-lettered: lease expired %d times without a report", sc.attempt)
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

// errDuplicateRules is the 500 the real server answers when rules_matched
// repeats a rule (its unique index on the scan's rules fails).
var errDuplicateRules = &apiError{http.StatusInternalServerError, "Internal Server Error"}

// apply records a report. It returns an *apiError (404, 409, 500) and leaves
// the state untouched, or nil when the report was accepted.
func (st *state) apply(rep *report, now time.Time) error {
	r := st.releases[releaseKey(rep.name, rep.version)]
	if r == nil || r.current() == nil {
		return &apiError{http.StatusNotFound, fmt.Sprintf("Package %s@%s not found", rep.name, rep.version)}
	}
	sc := r.current()
	id := rep.name + "@" + rep.version
	switch sc.status {
	case statusFinished:
		return &apiError{http.StatusConflict, fmt.Sprintf("Package %s is already in a FINISHED state", id)}
	case statusFailed:
		if sc.deadLettered {
			return &apiError{http.StatusConflict, fmt.Sprintf("Package %s is in a FAILED state: dead-lettered after %d attempts", id, sc.attempt)}
		}
		return &apiError{http.StatusConflict, fmt.Sprintf("Package %s is already in a FAILED state", id)}
	case statusQueued:
		return &apiError{http.StatusConflict, fmt.Sprintf("Package %s is QUEUED and not leased to anyone", id)}
	}
	if (rep.assignmentID != nil && *rep.assignmentID != sc.assignment) || (rep.attempt != nil && *rep.attempt != sc.attempt) {
		return &apiError{http.StatusConflict, fmt.Sprintf("Package %s is no longer assigned to this worker lease", id)}
	}
	if rep.success {
		seen := make(map[string]struct{}, len(rep.rules))
		for _, name := range rep.rules {
			if _, dup := seen[name]; dup {
				return errDuplicateRules
			}
			seen[name] = struct{}{}
		}
	}
	st.pending.Remove(sc.lease)
	sc.lease = nil
	sc.finishedAt = now
	if rep.success {
		sc.status = statusFinished
		sc.score = rep.score
		sc.inspectorURL = rep.inspectorURL
		sc.rules = slices.Clone(rep.rules)
		sc.commit = rep.commit
		st.count.finished++
	} else {
		sc.status = statusFailed
		sc.reason = rep.reason
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
	// the next /jobs call that reaches them dead-letters them (FAILED).
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
	// Finished and Failed count terminal scans (failed includes dead-lettered).
	Finished int `json:"finished"`
	Failed   int `json:"failed"`
}

// queueStatus walks the pending list (O(leased)), not the whole history.
func (st *state) queueStatus(now time.Time) QueueStatus {
	q := QueueStatus{Queued: st.queue.len()}
	var oldest time.Time
	if sc := st.queue.peek(); sc != nil {
		oldest = sc.queuedAt
	}
	for e := st.pending.Front(); e != nil; e = e.Next() {
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
	q.TotalBacklog = q.Queued + q.InProgress + q.Retryable + q.Exhausted
	if !oldest.IsZero() {
		q.OldestAgeSeconds = max(0, now.Sub(oldest).Seconds())
	}
	q.Finished = int(st.count.finished)
	q.Failed = int(st.count.failed + st.count.deadLettered)
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
