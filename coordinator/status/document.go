package status

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
)

// Document is the coordinator's status: the body of /status.json and what
// /status renders. Lists are newest first.
type Document struct {
	Generated time.Time `json:"generated"`
	Version   string    `json:"version"`
	Revision  string    `json:"revision"`
	Started   time.Time `json:"started"`
	// RulesHash is the rules in use ("" before the first load).
	RulesHash string `json:"rules_hash"`
	// Draining is true once the coordinator began shutting down.
	Draining bool `json:"draining"`
	// Alerts is what needs an operator now (outbox trouble, quarantined
	// workers), errors first.
	Alerts []Alert `json:"alerts"`
	Fleet  Fleet   `json:"fleet"`
	// Workers are the connected sessions, by session ID.
	Workers    []Worker   `json:"workers"`
	API        API        `json:"api"`
	Outbox     Outbox     `json:"outbox"`
	SpotChecks SpotChecks `json:"spot_checks"`
	// Quarantined are the identities the dispatcher quarantined, oldest
	// first, each with the releases its results went into.
	Quarantined []Quarantined `json:"quarantined"`
	// TopRules are the rules of the current rule set with the most matches
	// since it was loaded (at most Config.TopRules).
	TopRules []RuleMatches `json:"top_rules"`
	Results  []Result      `json:"recent_results"`
	Failures []Failure     `json:"recent_failures"`
}

// Alert levels.
const (
	AlertError   = "error"
	AlertWarning = "warning"
)

// Alert is something an operator should act on.
type Alert struct {
	Level  string `json:"level"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
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
	// Identity is who the worker is for spot checks and quarantine (its
	// certificate subject, else its worker ID).
	Identity string `json:"identity"`
	Host     string `json:"host"`
	Version  string `json:"version"`
	Slots    int    `json:"slots"`
	// Busy is the slots holding a task; Held the tasks it holds, prefetched
	// ones included; Overdue those held past the backup deadline.
	Busy        int  `json:"busy"`
	Held        int  `json:"tasks_held"`
	Overdue     int  `json:"tasks_overdue"`
	Draining    bool `json:"draining"`
	Quarantined bool `json:"quarantined"`
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
	// Queue is the last good GET /queue-status (asked on demand, at most
	// once per Config.QueueRefresh); QueueError the failure of the last
	// attempt when it failed.
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

// Queue is the API's queue status (GET /queue-status) when it was fetched.
type Queue struct {
	// Fetched is when the API answered.
	Fetched time.Time `json:"fetched"`
	mainframe.QueueStatus
}

// Outbox is the report queue's state: reports waiting for the API, the
// health of its file, and what opening the file found.
type Outbox struct {
	Reports int `json:"reports"`
	// Full: leasing pauses until reports drain.
	Full bool `json:"full"`
	// WriteFailing is set while writes to the file fail (since
	// FailingSince, LastError the last one): NotDurable reports are then
	// in memory only, and leasing pauses.
	WriteFailing bool      `json:"write_failing"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	NotDurable   int       `json:"not_durable"`
	// PendingDeletes are reports sent but still on disk (a crash would send
	// them again).
	PendingDeletes int `json:"pending_deletes"`
	// WriteFailures counts failed write transactions since start.
	WriteFailures uint64 `json:"write_failures"`
	// Recovery is what opening the file at startup found wrong (nil: nothing).
	Recovery *OutboxRecovery `json:"recovery,omitempty"`
}

// OutboxRecovery is what opening the outbox file found and did.
type OutboxRecovery struct {
	// CorruptPath is where a corrupt file was moved (a fresh one was
	// started); CorruptCause why; Salvaged the reports read from it.
	CorruptPath  string `json:"corrupt_path,omitempty"`
	CorruptCause string `json:"corrupt_cause,omitempty"`
	Salvaged     int    `json:"salvaged"`
	// Unreadable records are not reports; the first few are listed.
	Unreadable        int                `json:"unreadable"`
	UnreadableRecords []UnreadableRecord `json:"unreadable_records"`
	// UnreadableKept counts the records in the bucket "reports-unreadable".
	UnreadableKept int `json:"unreadable_kept"`
	// MoveError is why unreadable records could not be moved aside.
	MoveError string `json:"move_error,omitempty"`
}

// UnreadableRecord is an outbox record that is not a report.
type UnreadableRecord struct {
	Key   string `json:"key"`
	Cause string `json:"cause"`
}

// SpotChecks is the state of result verification: a share of tasks
// (Rate) scanned by two worker identities and compared.
type SpotChecks struct {
	// Active is true when tasks are being checked: Rate > 0 and at least
	// two identities ready.
	Active bool `json:"active"`
	// Rate is the configured share (<= 0: off).
	Rate float64 `json:"rate"`
	// Identities are the worker identities ready for tasks.
	Identities int `json:"identities_ready"`
	// State says it in words: "on", "off: fewer than two workers", "off:
	// DRAGONFLY_VERIFY_RATE is 0".
	State string `json:"state"`
	// Counts since start.
	Picked       int64 `json:"picked"`
	Agreed       int64 `json:"agreed"`
	Mismatches   int64 `json:"mismatches"`
	Inconclusive int64 `json:"inconclusive"`
	Decided      int64 `json:"decided"`
	Skipped      int64 `json:"skipped"`
	// Recent are the latest mismatches, decisions, inconclusive checks and
	// quarantines (at most Config.RecentSpotChecks).
	Recent []SpotCheck `json:"recent"`
}

// SpotCheckKind says what a spot check event was.
type SpotCheckKind string

// Spot check event kinds.
const (
	// SpotMismatch: two identities' verdicts disagree; one may be lying.
	SpotMismatch SpotCheckKind = "mismatch"
	// SpotDecided: a mismatch was settled (by a majority of three, or the
	// fail-safe rule).
	SpotDecided SpotCheckKind = "decided"
	// SpotInconclusive: one side could not download or hit a limit.
	SpotInconclusive SpotCheckKind = "inconclusive"
	// SpotQuarantine: an identity was quarantined.
	SpotQuarantine SpotCheckKind = "quarantine"
)

// SpotCheck is one spot check event.
type SpotCheck struct {
	Time    time.Time     `json:"time"`
	Kind    SpotCheckKind `json:"kind"`
	Name    string        `json:"name,omitempty"`
	Version string        `json:"version,omitempty"`
	URL     string        `json:"url,omitempty"`
	// Identities are those whose results were compared; Quarantined those
	// a decision quarantined.
	Identities  []string `json:"identities,omitempty"`
	Quarantined []string `json:"quarantined,omitempty"`
	Reason      string   `json:"reason"`
}

// Quarantined is a quarantined worker identity: it gets no tasks. Its
// results may have been lies: Releases lists the releases whose reports
// used them, to be queued again on the Dragonfly API (POST /package).
type Quarantined struct {
	Identity string    `json:"identity"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	// Releases finished from WindowSeconds before Since on, newest first.
	Releases      []Release `json:"releases"`
	WindowSeconds float64   `json:"window_seconds"`
	// Complete is false when Config.ReleasesPerIdentity cut the list: the
	// older ones are in the coordinator's log ("job finished" lines list
	// the identities as workers).
	Complete bool `json:"complete"`
}

// Release is a release a worker identity took part in scanning.
type Release struct {
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Finished time.Time `json:"finished"`
	// Failed: the job was reported as a failure.
	Failed bool `json:"failed,omitempty"`
}

// RuleMatches counts the finished jobs a rule matched.
type RuleMatches struct {
	Rule    string `json:"rule"`
	Matches int64  `json:"matches"`
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
	// Grade is the score's grade (see Grade).
	Grade string `json:"grade"`
	// Rules are the matched rule identifiers, heaviest first (then by name).
	Rules        []string `json:"rules"`
	InspectorURL string   `json:"inspector_url,omitempty"`
	// Distributions scanned; Files and BytesScanned over all of them.
	Distributions int   `json:"distributions"`
	Files         int64 `json:"files"`
	BytesScanned  int64 `json:"bytes_scanned"`
	// Workers are the identities of the workers whose results the report
	// used (identities, not session IDs: see Worker.Identity).
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
	FailureDropped FailureKind = "dropped" // not reported: lease ended with a distribution waiting, or past the max job age
	FailureReport  FailureKind = "report"  // the API refused the report for good
	FailureWorker  FailureKind = "worker"  // a worker session broke
	// FailureLost: a distribution lost by three workers failed its job.
	FailureLost FailureKind = "lost"
	// FailureQuarantine: a worker identity was quarantined (it disagreed
	// with the majority of a spot check); see Document.Quarantined.
	FailureQuarantine FailureKind = "quarantine"
)

// Failure is a failed job, refused report, broken worker session or
// quarantined worker.
type Failure struct {
	Time    time.Time   `json:"time"`
	Kind    FailureKind `json:"kind"`
	Name    string      `json:"name,omitempty"`
	Version string      `json:"version,omitempty"`
	Attempt *int        `json:"attempt,omitempty"`
	Reason  string      `json:"reason"`
	// Workers are the identities of the workers concerned.
	Workers []string `json:"workers,omitempty"`
	// Report is where a scan failure's report stands.
	Report ReportState `json:"report,omitempty"`

	seq uint64 // its order among failures (Monitor.addFailure)
}

// Status returns the coordinator's status: src's snapshot, the API's queue
// status (asked through src when older than Config.QueueRefresh, waited for
// at most Config.QueueTimeout), and the Monitor's own records.
func (m *Monitor) Status(ctx context.Context, src Source) Document {
	view := m.queueView(ctx, src)
	return m.document(src.Snapshot(), view)
}

// document builds the status from a snapshot of the coordinator and the
// queue view last asked for.
func (m *Monitor) document(snap coordinator.Snapshot, view coordinator.QueueView) Document {
	now := m.cfg.Now()
	m.recordQueue(now, view)
	d := m.derive(now, snap)
	doc := Document{
		Generated: now, Version: m.cfg.Version, Revision: m.cfg.Revision, Started: m.started,
		RulesHash: snap.RulesHash, Draining: snap.Draining,
		Alerts: []Alert{}, Workers: d.workers, Quarantined: []Quarantined{}, Results: []Result{}, Failures: []Failure{},
	}
	ds := snap.Dispatch
	f := &doc.Fleet
	f.Workers, f.SlotsTotal, f.SlotsBusy = len(d.workers), ds.SlotsTotal, d.busy
	f.JobsInFlight, f.TasksWaiting, f.TasksRunning = ds.JobsInFlight, ds.TasksWaiting, ds.TasksRunning
	f.OldestWaitingSeconds = d.oldestWaiting.Seconds()
	f.OutboxReports = snap.Outbox.Reports
	f.DesiredWorkers, f.DistributionsPerJob = d.desired, d.distsPerJob
	f.TasksDispatched, f.TasksRequeued = ds.Counters.TasksAssigned, ds.Counters.TasksRequeued
	doc.Outbox = outboxStatus(snap.Outbox)
	doc.SpotChecks = spotCheckStatus(ds)
	m.rules.setCurrent(snap.RulesHash)
	doc.TopRules = m.rules.top(snap.RulesHash, m.cfg.TopRules)

	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.counts
	f.JobsLeased, f.JobsSucceeded, f.JobsFailed, f.JobsDropped = c.leased, c.scannedOK, c.scannedFailed, c.dropped
	f.ReportsAccepted, f.ReportsConflicted, f.ReportsRejected, f.ReportsAbandoned = c.accepted, c.conflicts, c.rejected, c.abandoned
	for i := range doc.Workers {
		doc.Workers[i].JobsDone = m.jobsBySession[doc.Workers[i].SessionID]
	}
	doc.Results = append(doc.Results, m.results.list()...)
	doc.Failures = append(doc.Failures, m.failureList()...)
	doc.SpotChecks.Recent = append([]SpotCheck{}, m.spotChecks.list()...)
	for _, q := range ds.Quarantined {
		rels, complete := m.releases.list(q.Identity, q.Since, now)
		doc.Quarantined = append(doc.Quarantined, Quarantined{
			Identity: q.Identity, Reason: q.Reason, Since: q.Since, Releases: rels, Complete: complete,
			WindowSeconds: m.cfg.ReleaseWindow.Seconds(),
		})
	}
	a := &doc.API
	a.LastLease, a.LastReport = m.lastLease, m.lastReport
	a.WindowSeconds = m.cfg.ErrorWindow.Seconds()
	a.Endpoints = []Endpoint{}
	for name, e := range m.endpoints {
		req, errs := e.win.sum(now)
		a.Endpoints = append(a.Endpoints, Endpoint{Endpoint: name, Requests: req, Errors: errs, LastStatus: e.lastStatus, LastCall: e.lastCall})
	}
	slices.SortFunc(a.Endpoints, func(x, y Endpoint) int { return cmp.Compare(x.Endpoint, y.Endpoint) })
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
	doc.Alerts = alerts(doc)
	return doc
}

// outboxStatus is the outbox part of a snapshot, as the document has it.
func outboxStatus(o coordinator.OutboxState) Outbox {
	h := o.Health
	out := Outbox{
		Reports: o.Reports, Full: o.Full, WriteFailing: h.WriteFailing, FailingSince: h.Since, LastError: h.LastError,
		NotDurable: h.NotDurable, PendingDeletes: h.PendingDeletes, WriteFailures: h.Failures,
	}
	r := o.Recovery
	if r.Corrupt() || r.Unreadable > 0 || r.MoveError != "" || r.UnreadableKept > 0 {
		rec := &OutboxRecovery{
			CorruptPath: r.CorruptPath, CorruptCause: r.CorruptCause, Salvaged: r.Salvaged,
			Unreadable: r.Unreadable, UnreadableKept: r.UnreadableKept, MoveError: r.MoveError,
			UnreadableRecords: []UnreadableRecord{},
		}
		for _, u := range r.UnreadableRecords {
			rec.UnreadableRecords = append(rec.UnreadableRecords, UnreadableRecord{Key: u.Key, Cause: u.Cause})
		}
		out.Recovery = rec
	}
	return out
}

// Spot check states, in words.
const (
	spotOn       = "on"
	spotOffRate  = "off: DRAGONFLY_VERIFY_RATE is 0"
	spotOffFewer = "off: fewer than two workers"
)

func spotCheckStatus(ds dispatch.Snapshot) SpotChecks {
	sc := ds.SpotChecks
	c := ds.Counters
	out := SpotChecks{
		Active: sc.Active, Rate: max(sc.Rate, 0), Identities: sc.Identities,
		Picked: c.VerifyPicked, Agreed: c.VerifyAgreed, Mismatches: c.VerifyMismatch,
		Inconclusive: c.VerifyInconclusive, Decided: c.VerifyDecided, Skipped: c.VerifySkipped,
		Recent: []SpotCheck{},
	}
	switch {
	case sc.Rate <= 0:
		out.State = spotOffRate
	case sc.Active:
		out.State = spotOn
	default:
		out.State = spotOffFewer
	}
	return out
}

// alerts lists what needs an operator, errors first.
func alerts(doc Document) []Alert {
	out := []Alert{}
	o := doc.Outbox
	if o.WriteFailing {
		out = append(out, Alert{Level: AlertError, Title: "Outbox writes are failing",
			Detail: "since " + o.FailingSince.UTC().Format(time.RFC3339) + ": " + plural(o.NotDurable, "report is", "reports are") +
				" held in memory only (a crash loses them) and leasing is paused until writes succeed. Last error: " + o.LastError})
	}
	if r := o.Recovery; r != nil {
		if r.CorruptPath != "" {
			out = append(out, Alert{Level: AlertError, Title: "Outbox file was corrupt at startup",
				Detail: "moved aside to " + r.CorruptPath + " and a fresh file started; " + plural(r.Salvaged, "report", "reports") +
					" salvaged. Cause: " + r.CorruptCause + ". Reports not salvaged were lost: their jobs are leased again by the API."})
		}
		if r.Unreadable > 0 || r.MoveError != "" {
			d := plural(r.Unreadable, "record", "records") + " in the outbox are not reports"
			if r.MoveError != "" {
				d += "; moving them aside failed (" + r.MoveError + "), the next start tries again"
			} else {
				d += "; moved to the bucket \"reports-unreadable\" for an operator"
			}
			out = append(out, Alert{Level: AlertError, Title: "Unreadable outbox records at startup", Detail: d})
		}
	}
	if n := len(doc.Quarantined); n > 0 {
		out = append(out, Alert{Level: AlertError, Title: plural(n, "worker identity", "worker identities") + " quarantined",
			Detail: "a spot check caught results that disagree with the majority; see Quarantined workers for the releases to queue again"})
	}
	if o.Full && !o.WriteFailing {
		out = append(out, Alert{Level: AlertWarning, Title: "Outbox full",
			Detail: "leasing is paused until the API accepts the " + plural(o.Reports, "report", "reports") + " waiting"})
	}
	if doc.Draining {
		out = append(out, Alert{Level: AlertWarning, Title: "Draining", Detail: "the coordinator is shutting down: no leases, workers drain"})
	}
	for i := range out {
		out[i].Detail = clip.String(out[i].Detail, clip.Default)
	}
	return out
}

// DesiredWorkers is how many workers the current backlog needs:
//
//	ceil((apiWaiting + jobsInFlight) × distributionsPerJob / slotsPerWorker)
//
// clamped to [0, maxWorkers]. Every distribution of that work would then
// find a free slot at once. The Monitor feeds it:
//   - apiWaiting: the API's queued + retryable jobs at the last good
//     GET /queue-status (its in_progress ones include ours, counted in
//     jobsInFlight; its exhausted ones will be dead-lettered, not leased),
//     minus the jobs leased since the Monitor saw that answer, floored at 0;
//     0 when the answer is older than Config.QueueStale or never came;
//   - jobsInFlight: leased jobs not finished;
//   - distributionsPerJob: the average over the last
//     Config.DistributionsWindow finished jobs of the distributions each
//     queued as tasks (0 for a job failed when admitted: over
//     DRAGONFLY_MAX_DISTRIBUTIONS, it needed no slot);
//     Config.DistributionsPerJob before any;
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

// derived is what a scrape or a page computes from a snapshot.
type derived struct {
	workers       []Worker
	busy          int
	oldestWaiting time.Duration
	apiWaiting    int64
	distsPerJob   float64
	slotsPerW     float64
	desired       int
}

func (m *Monitor) derive(now time.Time, snap coordinator.Snapshot) derived {
	d := derived{workers: []Worker{}}
	ds := snap.Dispatch
	if !ds.OldestWaiting.IsZero() {
		d.oldestWaiting = max(now.Sub(ds.OldestWaiting), 0)
	}
	sessions := make(map[string]int, len(snap.Sessions))
	for i, s := range snap.Sessions {
		sessions[s.SessionID] = i
	}
	slots := 0
	for _, x := range ds.Sessions {
		i, ok := sessions[x.ID]
		if !ok {
			continue // joined the dispatcher, not yet listed (or just left)
		}
		s := snap.Sessions[i]
		busy := min(x.Outstanding, x.Slots)
		d.busy += busy
		slots += x.Slots
		d.workers = append(d.workers, Worker{
			SessionID: s.SessionID, WorkerID: s.WorkerID, Identity: x.Identity, Host: s.Host, Version: s.Version,
			Slots: x.Slots, Busy: busy, Held: x.Outstanding, Overdue: x.Overdue, Draining: x.Draining, Quarantined: x.Quarantined,
			RulesHashes: append([]string{}, x.RulesReady...), Connected: s.Started, LastHeartbeat: s.LastSeen, TasksDone: x.Completed,
		})
	}
	if len(d.workers) > 0 {
		d.slotsPerW = float64(slots) / float64(len(d.workers))
	} else {
		d.slotsPerW = m.cfg.SlotsPerWorker
	}
	m.mu.Lock()
	if q := m.queue; q != nil && now.Sub(q.Fetched) <= m.cfg.QueueStale {
		d.apiWaiting = max(q.Queued+q.Retryable-(m.counts.leased-m.leasedAtQueue), 0)
	}
	d.distsPerJob = m.cfg.DistributionsPerJob
	if n := m.dists.len(); n > 0 {
		sum := 0
		for _, x := range m.dists.items() {
			sum += x
		}
		d.distsPerJob = float64(sum) / float64(n)
	}
	m.mu.Unlock()
	waiting := d.apiWaiting
	if snap.Draining || snap.Outbox.Full || snap.Outbox.Health.WriteFailing {
		// Leasing is paused: workers added now would find nothing to do
		// (the API's queue waits for the outbox, or for the next
		// coordinator); those the jobs in flight need are still wanted.
		waiting = 0
	}
	d.desired = DesiredWorkers(waiting, int64(ds.JobsInFlight), d.distsPerJob, d.slotsPerW, m.cfg.MaxWorkers)
	return d
}

// queueView asks src for the API's queue status (cached by src for
// Config.QueueRefresh; waited for at most Config.QueueTimeout) and records it.
func (m *Monitor) queueView(ctx context.Context, src Source) coordinator.QueueView {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.QueueTimeout)
	defer cancel()
	return src.QueueStatus(ctx, m.cfg.QueueRefresh)
}

// recordQueue keeps a queue view: a newer answer replaces the last good
// one, a failure is kept beside it. Each answer and failure counts once in
// dragonfly_api_queue_polls_total however many pages and scrapes see it.
func (m *Monitor) recordQueue(now time.Time, v coordinator.QueueView) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !v.Fetched.IsZero() && (m.queue == nil || v.Fetched.After(m.queue.Fetched)) {
		m.queueOK++
		m.queue = queueFrom(v.Status, v.Fetched)
		m.leasedAtQueue = m.counts.leased
		m.queueErr = nil
	}
	if v.Err == nil {
		return
	}
	if !sameError(v.Err, m.lastQueueErr) {
		m.queueFailed++
		m.lastQueueErr = v.Err
		m.queueErr = &Error{Time: now, Source: "queue-status", Message: clip.Error(v.Err, clip.Default)}
	}
}

func queueFrom(q mainframe.QueueStatus, fetched time.Time) *Queue {
	q.Fields = nil // the document keeps the known fields only
	if q.OldestAgeSeconds != nil {
		age := *q.OldestAgeSeconds
		q.OldestAgeSeconds = &age
	}
	return &Queue{Fetched: fetched, QueueStatus: q}
}
