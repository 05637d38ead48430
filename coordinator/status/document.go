package status

import (
	"math"
	"slices"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
)

// Document is the coordinator's status: the body of /status.json and what
// /status renders. Lists are newest first.
type Document struct {
	Generated time.Time `json:"generated"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	// RulesHash is the rules in use ("" before the first load).
	RulesHash string    `json:"rules_hash"`
	Fleet     Fleet     `json:"fleet"`
	Workers   []Worker  `json:"workers"`
	API       API       `json:"api"`
	Results   []Result  `json:"recent_results"`
	Failures  []Failure `json:"recent_failures"`
}

// Fleet sums up the fleet's state and counts since the coordinator started.
type Fleet struct {
	Workers    int `json:"workers"`
	SlotsTotal int `json:"slots_total"`
	SlotsBusy  int `json:"slots_busy"`
	// JobsInFlight are leased jobs not finished; TasksWaiting their
	// distributions waiting for a worker, the oldest leased
	// OldestWaitingSeconds ago; TasksRunning those assigned to workers.
	JobsInFlight         int     `json:"jobs_in_flight"`
	TasksWaiting         int     `json:"tasks_waiting"`
	OldestWaitingSeconds float64 `json:"oldest_waiting_seconds"`
	TasksRunning         int     `json:"tasks_running"`
	// OutboxReports wait for the API to accept them.
	OutboxReports int `json:"outbox_reports"`
	// DesiredWorkers is dragonfly_fleet_desired_workers.
	DesiredWorkers      int     `json:"desired_workers"`
	DistributionsPerJob float64 `json:"distributions_per_job"`
	// Counts since start.
	JobsLeased        int64 `json:"jobs_leased"`
	JobsSucceeded     int64 `json:"jobs_succeeded"`
	JobsFailed        int64 `json:"jobs_failed"`
	JobsDropped       int64 `json:"jobs_dropped"`
	ReportsAccepted   int64 `json:"reports_accepted"`
	ReportsConflicted int64 `json:"reports_conflicted"`
	ReportsRejected   int64 `json:"reports_rejected"`
	ReportsAbandoned  int64 `json:"reports_abandoned"`
	TasksDispatched   int64 `json:"tasks_dispatched"`
	TasksRequeued     int64 `json:"tasks_requeued"`
}

// Worker is one connected worker session.
type Worker struct {
	SessionID string `json:"session_id"`
	WorkerID  string `json:"worker_id"`
	Host      string `json:"host"`
	Version   string `json:"version"`
	Slots     int    `json:"slots"`
	// Busy is the slots holding a task; Held the tasks it holds, prefetched
	// ones included.
	Busy     int  `json:"busy"`
	Held     int  `json:"tasks_held"`
	Draining bool `json:"draining"`
	// RulesHashes are the rule sets the worker has compiled and ready.
	RulesHashes   []string  `json:"rules_hashes"`
	Connected     time.Time `json:"connected"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// JobsDone counts jobs it returned results for; TasksDone distributions.
	JobsDone  int64 `json:"jobs_done"`
	TasksDone int64 `json:"tasks_done"`
}

// API is the Dragonfly API's health as the coordinator sees it.
type API struct {
	// LastLease and LastReport are the last successful lease and report
	// (zero: none yet).
	LastLease  time.Time `json:"last_lease,omitzero"`
	LastReport time.Time `json:"last_report,omitzero"`
	// WindowSeconds is the span of the endpoint counts.
	WindowSeconds float64    `json:"window_seconds"`
	Endpoints     []Endpoint `json:"endpoints"`
	// LastError is the last failed lease, report attempt, rules update or
	// token request.
	LastError *Error `json:"last_error,omitempty"`
	// Queue is the last successful GET /queue-status; QueueError the
	// failure of the polls since.
	Queue      *Queue `json:"queue,omitempty"`
	QueueError *Error `json:"queue_error,omitempty"`
}

// Endpoint counts the HTTP tries of one API endpoint within the window.
type Endpoint struct {
	Endpoint string `json:"endpoint"`
	Requests int64  `json:"requests"`
	// Errors are tries with no response or a troubled status (see Trouble).
	Errors     int64     `json:"errors"`
	LastStatus int       `json:"last_status"`
	LastCall   time.Time `json:"last_call"`
}

// Error is a failure with its time and where it happened.
type Error struct {
	Time    time.Time `json:"time"`
	Source  string    `json:"source"`
	Message string    `json:"message"`
}

// Queue is the API's queue status (GET /queue-status).
type Queue struct {
	Fetched          time.Time `json:"fetched"`
	Queued           int64     `json:"queued"`
	InProgress       int64     `json:"in_progress"`
	Retryable        int64     `json:"retryable"`
	Exhausted        int64     `json:"exhausted"`
	Stranded         int64     `json:"stranded"`
	TotalBacklog     int64     `json:"total_backlog"`
	OldestAgeSeconds *float64  `json:"oldest_age_seconds"`
}

// ReportState is where a job's report stands.
type ReportState string

// Report states.
const (
	ReportQueued   ReportState = "queued"   // in the outbox, not sent yet
	ReportRetrying ReportState = "retrying" // an attempt failed; will be sent again
	ReportAccepted ReportState = "accepted"
	ReportConflict ReportState = "conflict" // 409: finished, dead-lettered or leased again
	ReportRejected ReportState = "rejected" // another final 4xx
	// ReportAbandoned: not accepted within the report max age; given up.
	ReportAbandoned ReportState = "abandoned"
)

// Result is a job whose scan succeeded.
type Result struct {
	Finished time.Time `json:"finished"`
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Attempt  *int      `json:"attempt,omitempty"`
	Score    int64     `json:"score"`
	// Rules are the matched rule identifiers, heaviest first (then by name).
	Rules        []string `json:"rules"`
	InspectorURL string   `json:"inspector_url,omitempty"`
	// Distributions scanned; Files and BytesScanned over all of them.
	Distributions int   `json:"distributions"`
	Files         int64 `json:"files"`
	BytesScanned  int64 `json:"bytes_scanned"`
	// Workers are the IDs of the workers that scanned it.
	Workers []string `json:"workers"`
	// ElapsedSeconds runs from the lease to the last result.
	ElapsedSeconds float64     `json:"elapsed_seconds"`
	Report         ReportState `json:"report"`
}

// FailureKind says what failed.
type FailureKind string

// Failure kinds.
const (
	FailureScan    FailureKind = "scan"    // the job failed (reported as a failure)
	FailureDropped FailureKind = "dropped" // lease ended before dispatch; not reported
	FailureReport  FailureKind = "report"  // the API refused the report for good
	FailureWorker  FailureKind = "worker"  // a worker session broke
	// FailureMismatch: a spot check found two workers disagreeing.
	FailureMismatch FailureKind = "mismatch"
	// FailureQuarantine: a worker was quarantined (it lied in a spot check).
	FailureQuarantine FailureKind = "quarantine"
	// FailureLost: a distribution lost by three workers failed its job.
	FailureLost FailureKind = "lost"
)

// Failure is a failed job, refused report or broken worker session.
type Failure struct {
	Time    time.Time   `json:"time"`
	Kind    FailureKind `json:"kind"`
	Name    string      `json:"name,omitempty"`
	Version string      `json:"version,omitempty"`
	Attempt *int        `json:"attempt,omitempty"`
	Reason  string      `json:"reason"`
	Workers []string    `json:"workers,omitempty"`
	// Report is where a scan failure's report stands.
	Report ReportState `json:"report,omitempty"`
}

// Snapshot returns the current status.
func (m *Monitor) Snapshot() Document {
	now := m.cfg.Now()
	st := m.state(now)
	doc := Document{
		Generated: now, Version: m.cfg.Version, Started: m.started, RulesHash: st.rulesHash,
		Workers: []Worker{}, Results: []Result{}, Failures: []Failure{},
	}
	f := &doc.Fleet
	f.Workers, f.SlotsTotal, f.SlotsBusy = len(st.workers), st.snap.SlotsTotal, st.busy
	f.JobsInFlight, f.TasksWaiting, f.TasksRunning = st.snap.JobsInFlight, st.snap.TasksWaiting, st.snap.TasksRunning
	f.OldestWaitingSeconds = st.oldestWaiting.Seconds()
	f.OutboxReports = st.outbox
	f.DesiredWorkers, f.DistributionsPerJob = st.desired, st.distsPerJob
	f.TasksDispatched, f.TasksRequeued = st.snap.Counters.TasksAssigned, st.snap.Counters.TasksRequeued
	doc.Workers = append(doc.Workers, st.workers...)

	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.counts
	f.JobsLeased, f.JobsSucceeded, f.JobsFailed, f.JobsDropped = c.leased, c.scannedOK, c.scannedFailed, c.dropped
	f.ReportsAccepted, f.ReportsConflicted, f.ReportsRejected, f.ReportsAbandoned = c.accepted, c.conflicts, c.rejected, c.abandoned
	for i := range doc.Workers {
		if w := m.workers[doc.Workers[i].SessionID]; w != nil {
			doc.Workers[i].JobsDone = w.jobs
		}
	}
	doc.Results = append(doc.Results, m.results.list()...)
	doc.Failures = append(doc.Failures, m.failures.list()...)
	a := &doc.API
	a.LastLease, a.LastReport = m.lastLease, m.lastReport
	a.WindowSeconds = m.cfg.ErrorWindow.Seconds()
	a.Endpoints = []Endpoint{}
	for name, e := range m.endpoints {
		req, errs := e.win.sum(now)
		a.Endpoints = append(a.Endpoints, Endpoint{Endpoint: name, Requests: req, Errors: errs, LastStatus: e.lastStatus, LastCall: e.lastCall})
	}
	slices.SortFunc(a.Endpoints, func(x, y Endpoint) int {
		if x.Endpoint < y.Endpoint {
			return -1
		}
		if x.Endpoint > y.Endpoint {
			return 1
		}
		return 0
	})
	if m.lastError != nil {
		e := *m.lastError
		a.LastError = &e
	}
	if m.queue != nil {
		q := *m.queue
		a.Queue = &q
	}
	if m.queueErr != nil {
		e := *m.queueErr
		a.QueueError = &e
	}
	return doc
}

// DesiredWorkers is how many workers the current backlog needs:
//
//	ceil((apiWaiting + jobsInFlight) × distributionsPerJob / slotsPerWorker)
//
// clamped to [0, maxWorkers]. Every distribution of that work would then
// find a free slot at once. The Monitor feeds it:
//   - apiWaiting: the API's queued + retryable jobs at the last successful
//     GET /queue-status (its in_progress ones include ours, counted in
//     jobsInFlight; its exhausted ones will be dead-lettered, not leased),
//     minus the jobs leased since that poll, floored at 0; 0 when the poll
//     is older than Config.QueueMaxAge or never succeeded;
//   - jobsInFlight: leased jobs not finished;
//   - distributionsPerJob: the average over the last
//     Config.DistributionsWindow finished jobs (Config.DistributionsPerJob
//     before any);
//   - slotsPerWorker: the connected workers' average slots
//     (Config.SlotsPerWorker while none is connected).
func DesiredWorkers(apiWaiting, jobsInFlight int64, distributionsPerJob, slotsPerWorker float64, maxWorkers int) int {
	if slotsPerWorker <= 0 || distributionsPerJob <= 0 {
		return 0
	}
	jobs := max(apiWaiting, 0) + max(jobsInFlight, 0)
	want := math.Ceil(float64(jobs) * distributionsPerJob / slotsPerWorker)
	if want > float64(maxWorkers) {
		return max(maxWorkers, 0)
	}
	return int(want)
}

// state is the coordinator state read for a scrape or a page.
type state struct {
	attached      bool
	snap          dispatch.Snapshot
	workers       []Worker
	busy          int
	oldestWaiting time.Duration
	outbox        int
	rulesHash     string
	apiWaiting    int64
	distsPerJob   float64
	slotsPerW     float64
	desired       int
}

// state reads the attached coordinator (without holding m.mu while doing so)
// and the Monitor's own figures.
func (m *Monitor) state(now time.Time) state {
	var st state
	if src := m.source(); src != nil {
		st.attached = true
		ds := src.Dispatcher().Snapshot()
		st.snap = ds
		if !ds.OldestWaiting.IsZero() {
			st.oldestWaiting = max(now.Sub(ds.OldestWaiting), 0)
		}
		st.outbox = src.Outbox().Len()
		st.rulesHash = src.RulesHash()
		seen := src.LastSeen()
		infos := map[string]int{}
		sessions := src.Sessions()
		for i, s := range sessions {
			infos[s.SessionID] = i
		}
		slots := 0
		for _, d := range ds.Sessions {
			i, ok := infos[d.ID]
			if !ok {
				continue // joined the dispatcher, not yet listed (or just left)
			}
			s := sessions[i]
			busy := min(d.Outstanding, d.Slots)
			st.busy += busy
			slots += d.Slots
			st.workers = append(st.workers, Worker{
				SessionID: s.SessionID, WorkerID: s.WorkerID, Host: s.Host, Version: s.Version,
				Slots: d.Slots, Busy: busy, Held: d.Outstanding, Draining: d.Draining,
				RulesHashes: append([]string{}, d.RulesReady...), Connected: s.Started,
				LastHeartbeat: seen[s.SessionID], TasksDone: d.Completed,
			})
		}
		if len(st.workers) > 0 {
			st.slotsPerW = float64(slots) / float64(len(st.workers))
		}
	}
	m.mu.Lock()
	if q := m.queue; q != nil && now.Sub(q.Fetched) <= m.cfg.QueueMaxAge {
		st.apiWaiting = max(q.Queued+q.Retryable-(m.counts.leased-m.leasedAtPoll), 0)
	}
	st.distsPerJob = m.cfg.DistributionsPerJob
	if n := m.dists.len(); n > 0 {
		sum := 0
		for _, d := range m.dists.items() {
			sum += d
		}
		st.distsPerJob = float64(sum) / float64(n)
	}
	m.mu.Unlock()
	if st.slotsPerW == 0 {
		st.slotsPerW = m.cfg.SlotsPerWorker
	}
	st.desired = DesiredWorkers(st.apiWaiting, int64(st.snap.JobsInFlight), st.distsPerJob, st.slotsPerW, m.cfg.MaxWorkers)
	return st
}

// ring keeps the last n items.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func newRing[T any](n int) ring[T] { return ring[T]{buf: make([]T, n)} }

func (r *ring[T]) add(v T) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

func (r *ring[T]) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// items returns the items oldest first (shared storage: read only, under the lock).
func (r *ring[T]) items() []T {
	if !r.full {
		return r.buf[:r.next]
	}
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}

// list returns a copy, newest first.
func (r *ring[T]) list() []T {
	out := slices.Clone(r.items())
	slices.Reverse(out)
	return out
}

// newest returns the newest item matching ok, nil if none.
func (r *ring[T]) newest(ok func(*T) bool) *T {
	n := r.len()
	for i := 1; i <= n; i++ {
		j := (r.next - i + len(r.buf)) % len(r.buf)
		if ok(&r.buf[j]) {
			return &r.buf[j]
		}
	}
	return nil
}

// window counts requests and errors over a sliding span, in 15 slots.
type window struct {
	slot    time.Duration
	buckets [windowSlots]bucket
}

const windowSlots = 15

type bucket struct {
	idx            int64 // slot number (time / slot)
	requests, errs int64
}

type endpointState struct {
	win        *window
	lastStatus int
	lastCall   time.Time
}

func newWindow(span time.Duration) *window {
	return &window{slot: max(span/windowSlots, time.Nanosecond)}
}

func (w *window) add(now time.Time, isErr bool) {
	idx := now.UnixNano() / int64(w.slot)
	b := &w.buckets[idx%windowSlots]
	if b.idx != idx {
		*b = bucket{idx: idx}
	}
	b.requests++
	if isErr {
		b.errs++
	}
}

// sum counts the slots within the span ending now.
func (w *window) sum(now time.Time) (requests, errs int64) {
	idx := now.UnixNano() / int64(w.slot)
	for _, b := range w.buckets {
		if b.idx > idx-windowSlots && b.idx <= idx {
			requests += b.requests
			errs += b.errs
		}
	}
	return requests, errs
}
