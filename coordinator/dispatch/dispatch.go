// Package dispatch is the coordinator's dispatcher: it splits leased jobs
// (releases) into tasks (distributions), hands tasks to worker sessions within
// their credits, re-dispatches the tasks of sessions that end, and aggregates a
// job's distribution results into its one outcome.
//
// The Dispatcher is a state machine behind one mutex. It starts no goroutines
// and never blocks: sessions receive tasks through a non-blocking Sink, and
// finished jobs and events leave through the Done and OnEvent callbacks,
// called without the lock held. Time is passed in by the caller, so tests
// drive it with any clock; calls that take no time (Leave, RulesReady, ...)
// use the latest time any call passed in.
//
// Workers are not trusted. Each session has an identity, given by the
// caller at Join: what the coordinator could establish about who is on the
// other end (its verified client certificate's subject under mutual TLS,
// else the worker id it declares; never a peer address, which workers behind
// one NAT share). Several sessions often share one identity (workers given
// one worker id, one certificate for a whole Deployment), and a
// self-named identity is cheap; every defence below stays correct and live
// for any mapping of sessions to identities. The dispatcher defends against a
// worker that:
//   - claims huge slots or opens many sessions: Join clamps slots to
//     Config.MaxSlots; the tasks all sessions of one identity hold together,
//     and the credits Capacity counts for it, are capped at
//     Config.MaxIdentityCredits; a free slot is preferred to a prefetch
//     credit, then the identity holding the fewest copies (not counting those
//     of the same release), then the session holding the fewest, so
//     identities take turns whatever they claim;
//   - accepts tasks and never answers: Tick dispatches a backup copy of a task
//     outstanding too long to a session of another identity that has a free
//     slot; the first result wins, the other copy's result is dropped. A copy
//     that replaces another (after a hand-back, a loss, a quarantine) is as
//     old as the task's first dispatch, so a task cannot be kept young;
//   - hands every task back (Returned) without draining: a task is not given
//     again to an identity that returned it while another identity could
//     take it (has a free credit, or is busy without overdue copies), nor to
//     the returning session while another session could, and
//     a session that returns more than its slots + prefetch tasks within a
//     minute gets no new tasks for two minutes (EventSessionSuspended,
//     SessionLoad.SuspendedUntil). A task nobody else takes waits, and its
//     job ends the usual way: dropped when its lease ends;
//   - crashes on an input (or dies while scanning it): a distribution that
//     three different identities lost while scanning it fails its job, saying
//     so, instead of being dispatched forever. While fewer than three
//     identities are ready (at a loss of the task, or any earlier one),
//     losses are counted per session instead: three sessions lost fail it;
//   - lies about results: a share of tasks (Config.VerifyRate) is scanned by
//     two identities and compared; a mismatch is settled by a third identity,
//     whose majority quarantines the identity that disagreed, or, without a
//     third, by a fail-safe rule (see below);
//   - claims it could not fetch or scan within limits: a download or limit
//     failure of a task not spot-checked gets one more copy on another
//     identity, whose result stands (see below);
//   - answers fast to pull the backup wait down: task-time samples of one
//     identity make at most half of those used (see Snapshot.TaskTime).
//
// A task has copies (assignments, each with its own task ID) and votes (the
// results of distinct identities). It needs one vote, two when picked for a
// spot check, three after a mismatch. Spot check results compare the outcome
// class (success; failure; download, host or limit failure, which is no verdict)
// and, for successes, the score, the rules (names and weights), the top file
// and its score. Settling a mismatch:
//   - with three votes, two agreeing verdicts win and every verdict that
//     disagrees with them quarantines its identity: it gets no more tasks, its
//     outstanding tasks are dispatched again at once, and its results for jobs
//     not yet finished are discarded and those tasks scanned again;
//   - otherwise (no third identity, no majority): a verdict failure stands
//     against anything; of two or more successes the highest score is
//     reported (a lie can only make a verdict cleaner); a success against a
//     download, host or limit failure leaves the failure standing.
//
// A download, host or limit failure never quarantines anyone (an honest worker on a
// network blip or with smaller limits disagrees that way): it is no vote in a
// majority, and it is counted per identity (IdentityLoad.NoVerdictFailures).
// As the only vote of a task, it is final only after a retry: when another
// identity that holds no copy of the task is ready (or compiling the task's
// rules, as for a spot check below) and the lease is not
// ending (the reserve of the backup policy), one more copy goes to it
// (EventNoVerdictRetry) and its result, verdict or not, is the task's; that
// copy not answering before the lease ends, or no other identity left to take
// it, leaves the first failure standing. At most one retry per task. Every
// other failure is a verdict and final at once. With fewer than two
// identities ready, spot checks are off (Snapshot.SpotChecks) and picked
// tasks finish unchecked, unless a session of another identity is still
// compiling the task's rules (RulesOffered, at most compileWait): then the
// check waits for it.
//
// Bounds: slots per session (MaxSlots), tasks and counted credits per
// identity (MaxIdentityCredits), rules hashes remembered per session (16),
// copies per task (its votes needed + 2), backup copies of one job
// outstanding at once (8, and 8 more backing up overdue backups), votes
// per task (3), identities and
// sessions recorded as having lost a task (3 each), identities and sessions
// recorded as having returned a task (8, oldest forgotten), return times per
// session (its slots + prefetch + 1), no-verdict retries per task (1), the
// quarantine list (MaxQuarantined, oldest evicted), identities remembered for
// their counts after their last session left (1024, oldest forgotten),
// identity strings (256 bytes), speed samples (256), jobs (MaxJobAge), a
// job's texts a task carries (a name or version over protocol.MaxTextBytes,
// a URL over protocol.MaxURLBytes fails the job at Admit).
// Unknown task ids a worker sends are counted, never stored.
package dispatch

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/internal/broadcast"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/score"
)

// maxIdentity bounds an identity string (it comes from a worker).
const maxIdentity = 256

// compileWait is how long a spot check waits for a session still compiling
// the task's rules (RulesOffered) when no other identity is ready: longer
// than an honest worker takes to compile a large rule set, far shorter than
// a lease. A session that never says ready or failed delays such a check
// by this much, once per rules hash.
const compileWait = 30 * time.Second

// maxReady bounds the rules hashes remembered per session (a worker keeps a
// few recent rule sets); beyond it the oldest is forgotten.
const maxReady = 16

// lostLimit is how many different identities must lose a started task before
// its job fails (sessions, while fewer identities are ready).
const lostLimit = 3

// Hand-backs without draining (Returned).
const (
	// maxReturners bounds the identities (and sessions) remembered per task
	// as having returned it; beyond it the oldest is forgotten.
	maxReturners = 8
	// returnWindow is how far back a session's returns are counted; more than
	// its slots + prefetch within it suspend the session for returnBan.
	returnWindow = time.Minute
	returnBan    = 2 * time.Minute
)

// maxJobBackups bounds the backup copies of one job outstanding at once.
// A release whose every distribution runs for the worker's whole task time
// (10 min by default: crafted so, by anyone who can publish to PyPI) makes
// every copy overdue, and a backup of each ran as long again on the free
// slots of other identities: one release of 128 such distributions held
// 256 slots for 10 min, where work was waiting. A silent holder of many
// tasks of one release still gets them backed up, this many at a time, as
// backups answer; those of other jobs are not held back. A backup overdue
// itself is backed up past it, within twice this many (pumpBackups).
const maxJobBackups = 8

// maxGoneIdentities bounds the identities whose counts are remembered after
// their last session left; beyond it the oldest is forgotten.
const maxGoneIdentities = 1024

// What a fleet runs with, for the two settings whose zero value means
// none rather than a default.
const (
	DefaultPrefetch   = 1
	DefaultVerifyRate = 0.02
)

// DefaultMaxDistributions is Config.MaxDistributions's default
// (DRAGONFLY_MAX_DISTRIBUTIONS), as dragonfly-api.md gives it.
const DefaultMaxDistributions = 128

// DefaultMaxIdentityCredits is Config.MaxIdentityCredits's default: the
// slots of four sessions of the default MaxSlots (64).
const DefaultMaxIdentityCredits = 256

// Config bounds a Dispatcher. Zero durations and counts mean the defaults
// named per field; Prefetch and VerifyRate mean exactly what they say.
type Config struct {
	// Prefetch is how many tasks beyond its slots a worker may hold: 0 (the
	// zero value) none. DefaultPrefetch is what a fleet runs with.
	Prefetch int
	// MaxDistributions fails jobs with more distributions
	// (DRAGONFLY_MAX_DISTRIBUTIONS). Default 128.
	MaxDistributions int
	// LeaseTimeout is the API's lease (JOB_TIMEOUT). A job with tasks still
	// undispatched this long after its lease is dropped without a report: the
	// API re-leases it. Default 120 s.
	LeaseTimeout time.Duration
	// MaxJobAge drops a job this long after its lease began even if copies of
	// its tasks are still outstanding (a silent worker holds them): its report
	// could not be accepted any more. Default MaxAge(LeaseTimeout).
	MaxJobAge time.Duration
	// MaxSlots caps the slots a session may claim
	// (DRAGONFLY_MAX_WORKER_SLOTS): Join clamps larger claims. A session
	// holds at most MaxSlots+Prefetch tasks. Default 64.
	MaxSlots int
	// MaxIdentityCredits caps the tasks all sessions of one identity hold
	// together, and the free credits Capacity (which drives leasing) counts
	// for it: many sessions or huge slots of one identity cannot take the
	// queue. Default 256 (DefaultMaxIdentityCredits).
	MaxIdentityCredits int
	// VerifyRate is the share of tasks scanned by a second identity and
	// compared (DRAGONFLY_VERIFY_RATE): 0 (the zero value) no spot checks;
	// above 1 means 1. DefaultVerifyRate is what a fleet runs with.
	VerifyRate float64
	// Rand returns a number in [0, 1) for picking spot checks. Default
	// math/rand/v2.Float64. Called with the dispatcher's lock held.
	Rand func() float64
	// TaskTimePrior is the assumed assignment-to-result time of a task until
	// 8 results have been seen; then the 90th percentile of the last 256
	// kept (see Snapshot.TaskTime: one identity makes at most half of them)
	// is used. Either is kept within [1 s, LeaseTimeout/2]. Default 15 s.
	TaskTimePrior time.Duration
	// BackupMin and BackupMax bound how long a copy may be outstanding before
	// a backup is dispatched: 3 times the task time, within [BackupMin,
	// BackupMax]. Sooner when the lease is ending: a copy outstanding at
	// least the task time is overdue once its lease has less than task time
	// + BackupMin left (at most LeaseTimeout/2). Defaults 10 s and
	// LeaseTimeout/2.
	BackupMin, BackupMax time.Duration
	// MaxQuarantined bounds the quarantine list; the oldest entry is evicted
	// (and may receive tasks again) beyond it. Default 1024.
	MaxQuarantined int
	// Done receives every finished job, exactly once per admitted lease,
	// without the dispatcher's lock held. Required.
	Done func(Outcome)
	// OnEvent receives events (backups, losses, spot checks, quarantines) in
	// order, without the lock held, before the Done calls of the same
	// dispatcher call. Optional.
	OnEvent func(Event)
}

// Job is a leased release.
type Job struct {
	Name          string
	Version       string
	Distributions []string
	// Attempt and AssignmentID identify the lease; nil when the API omitted them.
	Attempt      *int
	AssignmentID *string
	// RulesHash is the rules commit the job is scanned with and reported under.
	RulesHash string
	// LeasedAt is when the API handed out the lease.
	LeasedAt time.Time
}

// Key identifies a release: a re-lease of the same release has the same key.
func (j *Job) Key() string { return j.Name + "\x00" + j.Version }

// Deadline is when the job's lease at the API ends.
func (j *Job) Deadline(timeout time.Duration) time.Time { return j.LeasedAt.Add(timeout) }

// Task is one distribution handed to a session.
type Task struct {
	// ID is unique per assignment: a task re-dispatched (or copied for a
	// backup or spot check) gets a new ID, so a result under an old one is
	// recognised.
	ID        uint64
	URL       string
	RulesHash string
	Name      string
	Version   string
	Attempt   int
	Deadline  time.Time
}

// Result is a session's answer to a task.
type Result struct {
	TaskID uint64
	// Dist is the distribution's result; nil when Failure is set.
	Dist *score.Distribution
	// Failure is a one-line reason the distribution could not be scanned.
	Failure string
	// FailureKind classifies a failure: the wire's fleetv1.FailureKind name
	// (KindDownload, KindHost and KindLimit are no verdict in spot checks).
	FailureKind string
	Stats       TaskStats
}

// TaskStats are the worker's numbers for one task.
type TaskStats struct {
	BytesDownloaded int64
	BytesExpanded   int64
	Files           int64
	DownloadTime    time.Duration
	ScanTime        time.Duration
	WallTime        time.Duration
}

// Outcome is a finished job.
type Outcome struct {
	Job Job
	// Failure is set when the job failed: the failed distribution's reason
	// or a limit of the job itself.
	Failure string
	// Package is the aggregated result (when Failure is empty).
	Package score.Package
	// InspectorURL links the top file; empty when nothing matched.
	InspectorURL string
	// Stats sum the numbers of the results accepted.
	Stats TaskStats
	// Sessions and Identities whose results the outcome used (sorted): for a
	// spot-checked distribution, every identity whose result was compared.
	Sessions   []string
	Identities []string
	// Verified is how many distributions were checked by two or more
	// identities.
	Verified int
	// Tasks is how many of its distributions were queued as tasks: all of
	// them, or 0 for a job failed when admitted (over
	// Config.MaxDistributions, or a name, version or URL over its limit).
	Tasks int
	// Finished is when the last result arrived.
	Finished time.Time
}

// Sink delivers tasks to a session. Send must not block.
type Sink interface {
	Send(tasks []Task)
}

// Canceller is a Sink that can also withdraw tasks it was sent: copies of a
// task another copy answered, or of a job that ended (reported, failed, or
// dropped or abandoned for the API to lease again), whose results would be
// thrown away. Without it such a copy ran to its end: a release whose
// distributions each run for the worker's whole task time (10 min) held
// every slot it got for 10 min after its job was dropped at the end of its
// 2 min lease, three times over (one per API attempt). Cancel must not
// block; a withdrawn copy stays outstanding until the worker answers it or
// hands it back (a worker that cannot stop it just finishes it), and its
// hand-back is no return held against the session.
type Canceller interface {
	Cancel(taskIDs []uint64)
}

// Dispatcher assigns tasks to sessions. It is safe for concurrent use.
type Dispatcher struct {
	cfg Config

	mu       sync.Mutex
	now      time.Time // the latest time passed in
	seq      uint64
	batches  uint64 // Admit calls: one lease answer each
	nextID   uint64
	sessSeq  uint64
	jobs     map[string]*job
	pending  taskHeap
	backups  []*assign            // overdue copies waiting for a backup
	assigns  map[uint64]*assign   // outstanding copies by task ID
	sessions map[string]*assignee // by session id
	ids      map[string]*idState  // identities with sessions, or remembered for their counts
	goneIDs  []string             // remembered identities without sessions, oldest first
	quar     map[string]*quarantine
	quarSeq  []string // quarantined identities, oldest first
	speed    speed
	rr       uint64 // round-robin counter among equally free sessions
	counters Counters
	out      []delivery // events and outcomes queued under the lock
	changed  broadcast.Signal
	pumps    uint64 // pump runs (tests: which calls do no work)
	// draining: DrainAll was called; every session, and every one that
	// joins, drains.
	draining bool
	// delivering counts finished jobs queued for Done, or in a Done call
	// not yet returned: no longer in flight, not yet in the caller's hands.
	delivering int
}

type delivery struct {
	ev  *Event
	out *Outcome
}

type quarantine struct {
	reason string
	since  time.Time
}

// Counters are cumulative event counts.
type Counters struct {
	JobsAdmitted   int64
	JobsSuperseded int64 // re-leases of a job already in flight, merged
	JobsCompleted  int64
	JobsFailed     int64
	JobsDropped    int64 // past their lease with work undispatched
	JobsAbandoned  int64 // past MaxJobAge, copies still held by workers
	TasksAssigned  int64 // copies sent, of every kind
	TasksRequeued  int64 // from ended sessions, hand-backs, quarantines
	ResultsLate    int64 // for a task ID not outstanding at that session
	// ResultsDropped are results of a task another copy had already
	// answered (losing backups, spot-check copies); ResultsOrphaned those of
	// a job that ended meanwhile.
	ResultsDropped  int64
	ResultsOrphaned int64
	// ResultsDiscarded are results of a quarantined identity thrown away.
	ResultsDiscarded int64
	StartedUnknown   int64 // task ids in Started not outstanding at that session
	SlotsClamped     int64 // sessions that claimed more than MaxSlots
	// TasksReturned are copies handed back by a session not draining;
	// SessionsSuspended the times a session returned more than its slots +
	// prefetch within a minute and got no new tasks for two minutes.
	TasksReturned     int64
	SessionsSuspended int64
	// TasksCancelled are copies withdrawn (Canceller): their task was
	// answered by another copy, or their job ended.
	TasksCancelled int64

	BackupsDispatched int64
	BackupsWon        int64
	TasksLost         int64 // started copies of sessions that ended as lost
	JobsLostFailed    int64 // jobs failed: a distribution lost by 3 identities (or sessions)

	// NoVerdictRetries are download, host or limit failures that got one more copy
	// on another identity; of those, NoVerdictOverruled were settled by that
	// copy's verdict, NoVerdictConfirmed ended as a no-verdict failure (the
	// copy failed so too, or did not answer in time).
	NoVerdictRetries   int64
	NoVerdictOverruled int64
	NoVerdictConfirmed int64

	VerifyPicked       int64
	VerifyAgreed       int64
	VerifyMismatch     int64
	VerifyInconclusive int64
	VerifyDecided      int64
	VerifySkipped      int64
	Quarantines        int64
}

type job struct {
	Job
	seq uint64
	// batch is the Admit call (lease answer) that brought it: the jobs of
	// one batch share a lease deadline.
	batch     uint64
	tasks     []*task
	results   []score.Distribution
	remaining int // tasks not done
	// backups counts its backup copies outstanding whose tasks still need
	// them (at most 2 x maxJobBackups): not those of tasks done
	// (assign.budget).
	backups  int
	finished bool
	stats    TaskStats
}

// task is one distribution of a job.
type task struct {
	job   *job
	index int
	hidx  int // index in the pending heap, -1 when not there
	// want is how many votes of distinct identities the task needs: 1; 2
	// when picked for a spot check; 3 to settle a mismatch.
	want       int
	verify     bool // picked for a spot check and not skipped
	mismatched bool // the mismatch of the current votes was reported
	noThird    bool // settle by the fail-safe rule, no third scan
	done       bool
	copies     []*assign // outstanding copies (still there after done: orphans)
	votes      []vote
	used       []vote   // the votes the task's result rests on, once done
	lostBy     []string // identities that lost it while started (< lostLimit)
	// lostSessions are the last sessions that lost it while started (at
	// most lostLimit); lostFew is set when fewer than lostLimit identities
	// were ready at one of those losses: then sessions count.
	lostSessions []string
	lostFew      bool
	// firstSent is when its first copy was dispatched: copies that replace
	// others are overdue as if sent then.
	firstSent time.Time
	// returners returned it without draining (at most maxReturners, newest
	// last); pick avoids them while someone else could take it.
	returners []returner
	// noVerdict is a download, host or limit failure waiting for a retry's
	// result (not a vote meanwhile); retried is set once a retry was made.
	noVerdict *vote
	retried   bool
}

type returner struct{ identity, session string }

// vote is an identity's result for a task.
type vote struct {
	identity string
	session  string
	res      Result
}

type copyKind uint8

const (
	copyPrimary copyKind = iota
	copyCheck            // a spot check's second or deciding scan
	copyBackup
)

// assign is one outstanding copy of a task at a session.
type assign struct {
	id       uint64
	task     *task
	session  *assignee
	kind     copyKind
	assigned time.Time
	// since is what overdue is measured from: the task's first dispatch,
	// for a backup its own.
	since    time.Time
	started  bool
	overdue  bool
	queued   bool // in d.backups
	backedUp bool // a backup of it was dispatched
	// cancelled: withdrawn (Canceller) once its task was answered or its
	// job ended.
	cancelled bool
	// budget: a backup copy counted in its job's backups (maxJobBackups),
	// until it goes or its result would be thrown away (withdraw).
	budget bool
	// backupOf is, for a backup copy, the overdue copy it backs up.
	backupOf *assign
}

// assignee is a worker session as the dispatcher sees it: credits, the
// copies it holds, the rules it has ready.
type assignee struct {
	id       string
	identity string
	ident    *idState
	seq      uint64
	slots    int
	claimed  int
	ready    map[string]bool
	readySeq []string // ready's hashes, oldest first
	// compiling holds the rules hashes offered to the session and neither
	// ready nor failed yet, with when each was offered (at most maxReady).
	compiling   map[string]time.Time
	outstanding map[uint64]*assign
	jobs        map[*job]int // outstanding copies per job (release affinity)
	draining    bool
	quarantined bool
	sink        Sink
	lastPick    uint64
	completed   int64
	joined      time.Time
	// returns are the times of its recent hand-backs without draining (at
	// most slots+prefetch+1); returned counts them all. Until
	// suspendedUntil it gets no new tasks.
	returns        []time.Time
	returned       int64
	suspendedUntil time.Time
}

// idState is what the sessions of one identity share.
type idState struct {
	name        string
	sessions    int
	outstanding int          // copies held by all its sessions
	jobs        map[*job]int // of those, per job
	overdue     int          // of those, overdue
	answered    int64        // results its sessions sent for copies they held
	noVerdict   int64        // download, host or limit failures it reported
	returns     int64        // copies its sessions handed back without draining
}

// MaxAge is how long after its lease began a job's report may still be
// worth making and sending: four leases, at least 15 minutes. The API
// expires leases lazily (a report is accepted until someone leases the job
// again), so a report past its lease is often still accepted; one older
// than this is given up. A lease of an hour keeps its jobs 4 hours, where a
// fixed 15 minutes gave up reports the API would still accept, inside their
// lease.
func MaxAge(lease time.Duration) time.Duration {
	if lease > math.MaxInt64/4 {
		return math.MaxInt64
	}
	return max(15*time.Minute, 4*lease)
}

// New returns an empty dispatcher.
func New(cfg Config) *Dispatcher {
	cfg.Prefetch = max(cfg.Prefetch, 0)
	cfg.MaxDistributions = bound.Or(cfg.MaxDistributions, DefaultMaxDistributions)
	cfg.LeaseTimeout = bound.Or(cfg.LeaseTimeout, 120*time.Second)
	cfg.MaxJobAge = bound.Or(cfg.MaxJobAge, MaxAge(cfg.LeaseTimeout))
	cfg.MaxSlots = bound.Or(cfg.MaxSlots, 64)
	cfg.MaxIdentityCredits = bound.Or(cfg.MaxIdentityCredits, DefaultMaxIdentityCredits)
	switch r := cfg.VerifyRate; {
	case r < 0 || math.IsNaN(r):
		cfg.VerifyRate = 0
	case r > 1:
		cfg.VerifyRate = 1
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	cfg.TaskTimePrior = bound.Or(cfg.TaskTimePrior, 15*time.Second)
	cfg.BackupMin = bound.Or(cfg.BackupMin, 10*time.Second)
	cfg.BackupMax = bound.Or(cfg.BackupMax, cfg.LeaseTimeout/2)
	cfg.BackupMax = max(cfg.BackupMax, cfg.BackupMin)
	cfg.MaxQuarantined = bound.Or(cfg.MaxQuarantined, 1024)
	if cfg.Done == nil {
		cfg.Done = func(Outcome) {}
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(Event) {}
	}
	return &Dispatcher{
		cfg:      cfg,
		jobs:     map[string]*job{},
		assigns:  map[uint64]*assign{},
		sessions: map[string]*assignee{},
		ids:      map[string]*idState{},
		quar:     map[string]*quarantine{},
	}
}

// Changed returns a channel closed at the next change that may have grown
// capacity or shrunk the work in flight: a session joined or got rules ready, a
// task finished or was handed back, a job ended. Take it before checking.
func (d *Dispatcher) Changed() <-chan struct{} { return d.changed.Wait() }

func (d *Dispatcher) signal() { d.changed.Notify() }

// lock takes the lock and advances the clock to now (never backwards).
func (d *Dispatcher) lock(now time.Time) {
	d.mu.Lock()
	if now.After(d.now) {
		d.now = now
	}
}

// unlock releases the lock and then delivers events and finished jobs.
func (d *Dispatcher) unlock() {
	out := d.out
	d.out = nil
	d.mu.Unlock()
	for _, x := range out {
		if x.ev != nil {
			d.cfg.OnEvent(*x.ev)
		}
	}
	done := 0
	for _, x := range out {
		if x.out != nil {
			d.cfg.Done(*x.out)
			done++
		}
	}
	if done > 0 {
		d.mu.Lock()
		d.delivering -= done
		d.mu.Unlock()
		d.signal()
	}
}

func (d *Dispatcher) emit(e Event) {
	e.Time = d.now
	d.out = append(d.out, delivery{ev: &e})
}

// taskEvent is an event about task t.
func taskEvent(k EventKind, t *task) Event {
	return Event{Kind: k, Name: t.job.Name, Version: t.job.Version, URL: t.job.Distributions[t.index]}
}

// Join adds a session of a worker identity with the given slots, clamped to
// [1, MaxSlots]. Its tasks arrive through sink. An empty identity stands for
// the session alone ("session " + id). A quarantined identity may join; it
// gets no tasks.
func (d *Dispatcher) Join(id, identity string, slots int, sink Sink, now time.Time) error {
	d.lock(now)
	defer d.unlock()
	if _, ok := d.sessions[id]; ok {
		return fmt.Errorf("session %q already joined", clip.String(id, maxIdentity))
	}
	if identity == "" {
		identity = "session " + id
	}
	identity = clip.String(identity, maxIdentity)
	if slots > d.cfg.MaxSlots {
		d.counters.SlotsClamped++
	}
	d.sessSeq++
	d.sessions[id] = &assignee{
		id: id, identity: identity, ident: d.joinIdentity(identity), seq: d.sessSeq,
		slots: min(max(slots, 1), d.cfg.MaxSlots), claimed: slots,
		ready: map[string]bool{}, compiling: map[string]time.Time{}, outstanding: map[uint64]*assign{}, jobs: map[*job]int{},
		quarantined: d.quar[identity] != nil, sink: sink, joined: now, draining: d.draining,
	}
	// A free session, ready or not: the loader looks again (with none
	// ready for the rules in use, it fetches them every RulesRetry).
	d.signal()
	return nil
}

// joinIdentity returns an identity's shared state, counting one more session.
func (d *Dispatcher) joinIdentity(identity string) *idState {
	st := d.ids[identity]
	switch {
	case st == nil:
		st = &idState{name: identity, jobs: map[*job]int{}}
		d.ids[identity] = st
	case st.sessions == 0:
		d.goneIDs = slices.DeleteFunc(d.goneIDs, func(x string) bool { return x == identity })
	}
	st.sessions++
	return st
}

// leaveIdentity counts one session less; an identity without sessions is
// remembered for its counts (the newest maxGoneIdentities) or forgotten.
func (d *Dispatcher) leaveIdentity(st *idState) {
	if st.sessions--; st.sessions > 0 {
		return
	}
	if st.noVerdict == 0 && st.returns == 0 {
		delete(d.ids, st.name)
		return
	}
	d.goneIDs = append(d.goneIDs, st.name)
	if len(d.goneIDs) > maxGoneIdentities {
		delete(d.ids, d.goneIDs[0])
		d.goneIDs = slices.Delete(d.goneIDs, 0, 1)
	}
}

// SessionCount is how many sessions are joined (cheaper than Snapshot).
func (d *Dispatcher) SessionCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sessions)
}

// Outstanding is how many copies a session holds (0 for an unknown one):
// SessionLoad.Outstanding without a Snapshot.
func (d *Dispatcher) Outstanding(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.sessions[id]; s != nil {
		return len(s.outstanding)
	}
	return 0
}

// RulesReady records that a session can scan with the rules hash. A hash
// already ready changes nothing (workers may repeat it).
func (d *Dispatcher) RulesReady(id, hash string) {
	d.mu.Lock()
	defer d.unlock()
	s := d.sessions[id]
	if s == nil || s.ready[hash] {
		return
	}
	s.ready[hash] = true
	delete(s.compiling, hash)
	s.readySeq = append(s.readySeq, hash)
	if len(s.readySeq) > maxReady {
		delete(s.ready, s.readySeq[0])
		s.readySeq = slices.Delete(s.readySeq, 0, 1)
	}
	d.pump()
	d.signal()
}

// RulesOffered records that a session was sent the rules hash and is
// compiling it: for up to compileWait a spot check (or a no-verdict
// failure's retry) waits for it instead of being given up because no other
// identity is ready yet. Right after a rules change a worker that only
// claims to be ready is otherwise the one ready identity, and every task
// leased then went unchecked.
func (d *Dispatcher) RulesOffered(id, hash string, now time.Time) {
	d.lock(now)
	defer d.unlock()
	s := d.sessions[id]
	if s == nil || s.ready[hash] {
		return
	}
	if _, ok := s.compiling[hash]; ok {
		return
	}
	// An offer never answered (a set replaced before it was sent, an
	// answer that crossed the offer) holds no check once compileWait is
	// over: it must not keep the session's later offers out.
	for h, at := range s.compiling {
		if d.now.Sub(at) >= compileWait {
			delete(s.compiling, h)
		}
	}
	if len(s.compiling) < maxReady {
		s.compiling[hash] = now
	}
}

// RulesFailed records that a session could not compile the rules hash.
func (d *Dispatcher) RulesFailed(id, hash string) {
	d.mu.Lock()
	defer d.unlock()
	if s := d.sessions[id]; s != nil {
		delete(s.compiling, hash)
	}
}

// ForgetRulesAt records that a session no longer holds a rules hash.
func (d *Dispatcher) ForgetRulesAt(id, hash string) {
	d.mu.Lock()
	defer d.unlock()
	if s := d.sessions[id]; s != nil {
		delete(s.compiling, hash)
		if s.ready[hash] {
			delete(s.ready, hash)
			s.readySeq = slices.DeleteFunc(s.readySeq, func(h string) bool { return h == hash })
		}
	}
}

// Drain stops assigning tasks to a session.
func (d *Dispatcher) Drain(id string) {
	d.mu.Lock()
	defer d.unlock()
	if s := d.sessions[id]; s != nil {
		s.draining = true
	}
}

// DrainAll stops assigning tasks to every session, present and to come (the
// coordinator is shutting down): once no task is outstanding, none will be
// (Snapshot.TasksRunning stays 0), and the tasks still queued wait for their
// job's lease to end (the API leases the job again). A spot check or a
// no-verdict retry whose copy cannot come (not assigned, or handed back)
// ends as when no other identity is ready: the check is skipped, the first
// failure stands.
func (d *Dispatcher) DrainAll() {
	d.mu.Lock()
	defer d.unlock()
	d.draining = true
	for _, s := range d.sessions {
		s.draining = true
	}
	d.pump()
	d.signal()
}

// Started marks tasks of a session as started (the worker is scanning them).
// Only a started task counts as lost when its session ends with LeaveLost.
// It is idempotent (workers repeat the running set with every heartbeat);
// ids not outstanding at the session are counted, not kept.
func (d *Dispatcher) Started(id string, taskIDs []uint64, now time.Time) {
	d.lock(now)
	defer d.unlock()
	s := d.sessions[id]
	if s == nil {
		return
	}
	for _, tid := range taskIDs {
		if a := s.outstanding[tid]; a != nil {
			a.started = true
		} else {
			d.counters.StartedUnknown++
		}
	}
}

// Leave ends a session: its outstanding tasks go back to the front of the
// queue and to other sessions at once. With LeaveLost, each started task
// counts as lost by the session's identity; a distribution lost by three
// different identities fails its job, or by three sessions while fewer than
// three identities are ready (counting the leaving one).
func (d *Dispatcher) Leave(id string, why LeaveReason) {
	d.mu.Lock()
	defer d.unlock()
	s := d.sessions[id]
	if s == nil {
		return
	}
	few := why == LeaveLost && d.readyIdentities() < lostLimit
	delete(d.sessions, id)
	for _, a := range sortedAssigns(s.outstanding) {
		t := a.task
		d.unassign(a)
		if !t.live() {
			continue
		}
		// A withdrawn copy (of a task reopened since) was being stopped:
		// its end says nothing about the input.
		if why == LeaveLost && a.started && !a.cancelled && d.lost(t, s, few) {
			continue
		}
		if d.schedule(t) {
			d.counters.TasksRequeued++
		}
	}
	d.leaveIdentity(s.ident)
	d.pump()
	d.signal()
}

// lost records that a session lost a started task, with few set when fewer
// than lostLimit identities were ready; it reports whether that failed the
// task's job.
func (d *Dispatcher) lost(t *task, s *assignee, few bool) bool {
	d.counters.TasksLost++
	if !slices.Contains(t.lostBy, s.identity) {
		t.lostBy = append(t.lostBy, s.identity)
	}
	if !slices.Contains(t.lostSessions, s.id) {
		if len(t.lostSessions) == lostLimit {
			t.lostSessions = slices.Delete(t.lostSessions, 0, 1)
		}
		t.lostSessions = append(t.lostSessions, s.id)
	}
	t.lostFew = t.lostFew || few
	e := taskEvent(EventTaskLost, t)
	e.Session, e.Identity, e.Identities = s.id, s.identity, slices.Clone(t.lostBy)
	d.emit(e)
	url := clip.String(t.job.Distributions[t.index], 1024)
	var reason string
	switch {
	case len(t.lostBy) >= lostLimit:
		reason = fmt.Sprintf("distribution %s: lost by %d different workers while scanning it (%s); it may crash scanners",
			url, len(t.lostBy), joinList(clipAll(t.lostBy)))
	case t.lostFew && len(t.lostSessions) >= lostLimit:
		reason = fmt.Sprintf("distribution %s: lost by %d worker sessions while scanning it (sessions %s of %s; "+
			"counted per session: fewer than %d worker identities were ready); it may crash scanners",
			url, len(t.lostSessions), joinList(clipAll(t.lostSessions)), joinList(clipAll(t.lostBy)), lostLimit)
	default:
		return false
	}
	reason = clip.String(reason, clip.Default)
	d.counters.JobsLostFailed++
	e = taskEvent(EventLostFailed, t)
	e.Identities, e.Reason = slices.Clone(t.lostBy), reason
	d.emit(e)
	d.finish(t.job, reason, d.now)
	return true
}

// Returned re-queues tasks a session handed back without running them
// (copies withdrawn with Canceller are simply let go). A
// session not draining (Drain) that hands tasks back is avoided for them
// while another identity (or session) could take them, and one that returns
// more than its slots + prefetch within a minute gets no new tasks for two
// minutes. Returns are timed by the latest time any call passed in. Ids the
// session does not hold are ignored; with none it holds, nothing happens.
func (d *Dispatcher) Returned(id string, taskIDs []uint64) {
	d.mu.Lock()
	defer d.unlock()
	s := d.sessions[id]
	if s == nil {
		return
	}
	n, freed := 0, 0
	for _, tid := range taskIDs {
		a := s.outstanding[tid]
		if a == nil {
			continue
		}
		freed++
		t := a.task
		d.unassign(a)
		if a.cancelled {
			// Withdrawn: handing it back is what was asked (a task
			// reopened since, by a quarantine, waits for a new copy).
			d.schedule(t)
			continue
		}
		n++
		if !s.draining {
			d.counters.TasksReturned++
			s.returned++
			s.ident.returns++
			if t.live() {
				t.returnedBy(s)
			}
		}
		if d.schedule(t) {
			d.counters.TasksRequeued++
		}
	}
	if freed == 0 {
		return
	}
	if n > 0 && !s.draining {
		d.strike(s, n)
	}
	d.pump()
	d.signal()
}

// returnedBy records that s handed the task back (the newest maxReturners).
func (t *task) returnedBy(s *assignee) {
	t.returners = slices.DeleteFunc(t.returners, func(r returner) bool { return r.session == s.id })
	if len(t.returners) == maxReturners {
		t.returners = slices.Delete(t.returners, 0, 1)
	}
	t.returners = append(t.returners, returner{identity: s.identity, session: s.id})
}

// strike counts n returns of a session not draining; more than its slots +
// prefetch within returnWindow suspend it for returnBan.
func (d *Dispatcher) strike(s *assignee, n int) {
	limit := s.slots + d.cfg.Prefetch
	cut := d.now.Add(-returnWindow)
	s.returns = slices.DeleteFunc(s.returns, func(at time.Time) bool { return !at.After(cut) })
	for range min(n, limit+1-len(s.returns)) {
		s.returns = append(s.returns, d.now)
	}
	if len(s.returns) <= limit {
		return
	}
	s.returns = s.returns[:0]
	s.suspendedUntil = d.now.Add(returnBan)
	d.counters.SessionsSuspended++
	d.emit(Event{Kind: EventSessionSuspended, Session: s.id, Identity: s.identity,
		Reason: fmt.Sprintf("handed back more than %d tasks (slots %d + prefetch %d) within %s without draining: no new tasks for %s",
			limit, s.slots, d.cfg.Prefetch, returnWindow, returnBan)})
}

// suspended reports whether a session is kept from new tasks for its returns.
func (d *Dispatcher) suspended(s *assignee) bool { return d.now.Before(s.suspendedUntil) }

// Admit adds leased jobs and returns how many were new. A job whose release
// is already in flight (the API re-leased it) takes over the new lease
// identity and keeps its progress.
func (d *Dispatcher) Admit(jobs []Job, now time.Time) (admitted int) {
	d.lock(now)
	defer d.unlock()
	d.batches++
	for _, j := range jobs {
		if old := d.jobs[j.Key()]; old != nil {
			old.Attempt, old.AssignmentID, old.LeasedAt = j.Attempt, j.AssignmentID, j.LeasedAt
			d.counters.JobsSuperseded++
			continue
		}
		admitted++
		d.counters.JobsAdmitted++
		d.seq++
		js := &job{Job: j, seq: d.seq, batch: d.batches}
		switch why := oversized(j); {
		case len(j.Distributions) > d.cfg.MaxDistributions:
			d.finish(js, fmt.Sprintf("%d distributions: exceeds limit DRAGONFLY_MAX_DISTRIBUTIONS (%d distributions)", len(j.Distributions), d.cfg.MaxDistributions), now)
			continue
		case why != "":
			// Never sent: one task of it would be over the stream's
			// message limit and end every session it is sent to.
			d.finish(js, why, now)
			continue
		case len(j.Distributions) == 0:
			d.finish(js, "", now)
			continue
		}
		d.jobs[j.Key()] = js
		js.results = make([]score.Distribution, len(j.Distributions))
		js.remaining = len(j.Distributions)
		for i := range j.Distributions {
			t := &task{job: js, index: i, hidx: -1, want: 1}
			js.tasks = append(js.tasks, t)
			// Picked here, checked when a second identity can take a
			// copy: now, or by the time the first copy answers (workers
			// still joining, a session that held the job cut). Tick gives
			// the check up while no other identity is ready or compiling
			// the rules (otherIdentitySoon), or when the lease is ending.
			if d.cfg.VerifyRate > 0 && d.cfg.Rand() < d.cfg.VerifyRate {
				t.verify, t.want = true, 2
				d.counters.VerifyPicked++
				d.emit(taskEvent(EventVerifyPicked, t))
			}
			heap.Push(&d.pending, t)
		}
	}
	d.pump()
	return admitted
}

// oversized says which text of a job is longer than a task may carry (the
// API's answer may hold megabytes of one string), or "".
func oversized(j Job) string {
	switch {
	case len(j.Name) > protocol.MaxTextBytes:
		return fmt.Sprintf("name of %d bytes: exceeds the limit of %d bytes", len(j.Name), protocol.MaxTextBytes)
	case len(j.Version) > protocol.MaxTextBytes:
		return fmt.Sprintf("version of %d bytes: exceeds the limit of %d bytes", len(j.Version), protocol.MaxTextBytes)
	}
	for _, u := range j.Distributions {
		if len(u) > protocol.MaxURLBytes {
			return fmt.Sprintf("distribution %s...: URL of %d bytes: exceeds the limit of %d bytes", clip.String(u, 256), len(u), protocol.MaxURLBytes)
		}
	}
	return ""
}

// Result records a session's result. A result for a task ID that is not
// outstanding at that session is dropped (ResultsLate), as is one for a task
// another copy already answered (ResultsDropped).
func (d *Dispatcher) Result(id string, r Result, now time.Time) {
	d.lock(now)
	defer d.unlock()
	s := d.sessions[id]
	var a *assign
	if s != nil {
		a = s.outstanding[r.TaskID]
	}
	if a == nil {
		d.counters.ResultsLate++
		return
	}
	t := a.task
	d.unassign(a)
	s.completed++
	s.ident.answered++
	d.speed.add(s.identity, now.Sub(a.assigned))
	defer func() {
		d.pump()
		d.signal()
	}()
	switch {
	case s.quarantined:
		d.counters.ResultsDiscarded++
		d.schedule(t)
		return
	case t.job.finished:
		d.counters.ResultsOrphaned++
		return
	case t.done || t.voted(s.identity):
		d.counters.ResultsDropped++
		e := taskEvent(EventResultDropped, t)
		e.TaskID, e.Session, e.Identity = r.TaskID, s.id, s.identity
		d.emit(e)
		return
	}
	if r.Dist == nil {
		// One line the API can store: a worker's reason of nothing but
		// spaces or control characters would make a report that can never
		// be sent.
		r.Failure = clip.Line(r.Failure, protocol.MaxTextBytes)
		if r.Failure == "" {
			r.Failure = "distribution " + clip.String(t.job.Distributions[t.index], 1024) + ": scan failed"
		}
	}
	if a.kind == copyBackup {
		d.counters.BackupsWon++
		e := taskEvent(EventBackupWon, t)
		e.TaskID, e.Session, e.Identity = r.TaskID, s.id, s.identity
		d.emit(e)
	}
	t.job.stats.add(r.Stats)
	v := vote{identity: s.identity, session: s.id, res: r}
	if classOf(r) == classNoVerdict {
		s.ident.noVerdict++
	}
	if d.retry(t, v) {
		return
	}
	if t.noVerdict != nil {
		// The retry of a no-verdict failure answered: its result is the task's.
		t.noVerdict = nil
		if classOf(r) == classNoVerdict {
			d.counters.NoVerdictConfirmed++
		} else {
			d.counters.NoVerdictOverruled++
		}
	}
	t.votes = append(t.votes, v)
	if t.want == 2 && len(t.votes) == 1 && len(t.copies) == 0 && !d.otherIdentitySoon(t) {
		// A spot check no second identity can take: spot checks are off.
		d.giveUp(t, "spot checks off: fewer than two identities ready")
		return
	}
	d.evaluate(t)
	d.schedule(t)
}

// retry holds back a download, host or limit failure, the first vote of a task
// not spot-checked, and asks for one more copy on another identity: when the
// task was not retried yet, its lease is not ending (the backup reserve) and
// a copy on another identity runs or another identity is ready or compiling
// the task's rules (otherIdentitySoon, as a spot check waits). It reports
// whether it did.
func (d *Dispatcher) retry(t *task, v vote) bool {
	if t.want != 1 || t.retried || len(t.votes) > 0 || classOf(v.res) != classNoVerdict {
		return false
	}
	if !d.now.Before(t.job.Deadline(d.cfg.LeaseTimeout).Add(-d.timing().reserve)) {
		return false
	}
	t.noVerdict = &v
	if len(t.copies) == 0 && !d.otherIdentitySoon(t) {
		t.noVerdict = nil
		return false
	}
	t.retried = true
	d.counters.NoVerdictRetries++
	e := taskEvent(EventNoVerdictRetry, t)
	e.TaskID, e.Session, e.Identity = v.res.TaskID, v.session, v.identity
	e.Reason = clip.String("one more copy on another identity after "+describe(v.res), clip.Default)
	d.emit(e)
	d.schedule(t)
	return true
}

// Tick is the dispatcher's clock; the coordinator calls it every second. It
// marks copies outstanding too long as overdue (measured from the task's
// first dispatch, for a backup from its own) and dispatches backups of them,
// finishes spot checks and no-verdict retries that cannot be completed (a
// copy they wait for is overdue or unplaced, and no other identity is ready
// or compiling the rules, or the lease is ending), ends suspensions that are over, drops jobs whose
// lease ended with work still waiting for a worker, and abandons jobs that
// outlived MaxJobAge.
func (d *Dispatcher) Tick(now time.Time) TickReport {
	d.lock(now)
	defer d.unlock()
	tm := d.timing()
	var rep TickReport

	// Each pass looks at everything but sorts only what it acts on (by task
	// ID or admission order), so that runs are reproducible.
	var overdue []*assign
	for _, a := range d.assigns {
		if !a.overdue && a.task.live() && tm.overdue(a.since, a.task.job.Deadline(d.cfg.LeaseTimeout), now) {
			overdue = append(overdue, a)
		}
	}
	slices.SortFunc(overdue, func(a, b *assign) int { return cmp.Compare(a.id, b.id) })
	for _, a := range overdue {
		a.overdue, a.queued = true, true
		a.session.ident.overdue++
		d.backups = append(d.backups, a)
	}

	d.settleStuck(now, tm.reserve)

	var drop []*job
	for _, js := range d.jobs {
		if !now.Before(js.Deadline(d.cfg.LeaseTimeout)) {
			drop = append(drop, js)
		}
	}
	slices.SortFunc(drop, func(a, b *job) int { return cmp.Compare(a.seq, b.seq) })
	for _, js := range drop {
		switch {
		case slices.ContainsFunc(js.tasks, func(t *task) bool { return t.live() && len(t.copies) == 0 }):
			d.counters.JobsDropped++
			rep.Dropped = append(rep.Dropped, js.Job)
		case !now.Before(js.LeasedAt.Add(d.cfg.MaxJobAge)):
			d.counters.JobsAbandoned++
			rep.Abandoned = append(rep.Abandoned, js.Job)
		default:
			continue
		}
		js.finished = true
		d.removePending(js)
		delete(d.jobs, js.Key())
	}

	resumed := false
	for _, s := range d.sessions {
		if !s.suspendedUntil.IsZero() && !now.Before(s.suspendedUntil) {
			s.suspendedUntil, resumed = time.Time{}, true
		}
	}

	before := d.counters.BackupsDispatched
	d.pump()
	rep.Backups = int(d.counters.BackupsDispatched - before)
	if len(rep.Dropped) > 0 || rep.Backups > 0 || resumed {
		d.signal()
	}
	return rep
}

// settleStuck finishes the spot checks and no-verdict retries that lack a
// vote no copy will bring: their lease ends within reserve, or no other
// identity is ready or compiling the rules (none is while the dispatcher
// drains: see DrainAll). While it drains, a copy still outstanding, overdue
// or not, is waited for: no backup could replace it.
func (d *Dispatcher) settleStuck(now time.Time, reserve time.Duration) {
	var stuck []*task
	for _, js := range d.jobs {
		for _, t := range js.tasks {
			if t.live() && (t.want >= 2 || t.noVerdict != nil) && t.lacking() > 0 {
				stuck = append(stuck, t)
			}
		}
	}
	slices.SortFunc(stuck, func(a, b *task) int { return cmp.Or(cmp.Compare(a.job.seq, b.job.seq), cmp.Compare(a.index, b.index)) })
	for _, t := range stuck {
		switch {
		case !t.live(): // its job ended meanwhile
		case !now.Before(t.job.Deadline(d.cfg.LeaseTimeout).Add(-reserve)):
			d.giveUp(t, "the lease is ending")
		case d.draining && len(t.votes)+len(t.copies) >= t.want:
			// Draining, no backup will be sent: a copy still running,
			// overdue or not, brings the vote (the drain waits for it).
		case !d.otherIdentitySoon(t) && (t.want >= 2 || len(t.copies) == 0):
			// A retry copy still running may answer before the lease ends.
			d.giveUp(t, "no other identity is ready")
		}
	}
}

// Expire is Tick returning the jobs it dropped and abandoned.
//
// Deprecated: call Tick, which tells the two apart and reports backups.
func (d *Dispatcher) Expire(now time.Time) []Job {
	r := d.Tick(now)
	return append(r.Dropped, r.Abandoned...)
}

// finish ends a job with its outcome: it stops its waiting tasks (running
// copies finish as orphans; their results are ignored) and queues the outcome.
func (d *Dispatcher) finish(js *job, failure string, now time.Time) {
	js.finished = true
	d.removePending(js)
	delete(d.jobs, js.Key())
	o := Outcome{Job: js.Job, Failure: failure, Stats: js.stats, Tasks: len(js.tasks), Finished: now}
	for _, t := range js.tasks {
		if !t.done {
			continue
		}
		if len(t.used) >= 2 {
			o.Verified++
		}
		for _, v := range t.used {
			o.Sessions = append(o.Sessions, v.session)
			o.Identities = append(o.Identities, v.identity)
		}
	}
	slices.Sort(o.Sessions)
	o.Sessions = slices.Compact(o.Sessions)
	slices.Sort(o.Identities)
	o.Identities = slices.Compact(o.Identities)
	if failure != "" {
		d.counters.JobsFailed++
		o.Package = score.Package{Top: -1, RulesMatched: []string{}}
	} else {
		d.counters.JobsCompleted++
		o.Package = score.Aggregate(js.results)
		if o.Package.Top >= 0 && o.Package.TopFile != "" {
			o.InspectorURL = score.InspectorURL(js.Name, js.Version, js.Distributions[o.Package.Top], o.Package.TopFile)
		}
	}
	d.out = append(d.out, delivery{out: &o})
	d.delivering++
}

func (d *Dispatcher) removePending(js *job) {
	for _, t := range js.tasks {
		if t.hidx >= 0 {
			heap.Remove(&d.pending, t.hidx)
		}
		d.withdraw(t)
	}
}

// withdraw cancels the outstanding copies of a task that is done or whose
// job ended, at the sessions whose sinks can (Canceller). The copies stay
// outstanding until answered or handed back.
func (d *Dispatcher) withdraw(t *task) {
	var by map[*assignee][]uint64
	for _, a := range t.copies {
		if a.budget {
			// Its result would be thrown away: it stops counting against
			// the job's backups even while it runs on (a worker of the
			// previous release finishes it; a hostile one may never hand
			// it back: 8 such copies kept the job from every backup).
			a.budget = false
			t.job.backups--
		}
		if a.cancelled {
			continue
		}
		if _, ok := a.session.sink.(Canceller); !ok {
			continue
		}
		a.cancelled = true
		if by == nil {
			by = map[*assignee][]uint64{}
		}
		by[a.session] = append(by[a.session], a.id)
		d.counters.TasksCancelled++
	}
	for s, ids := range by {
		s.sink.(Canceller).Cancel(ids)
	}
}

// complete settles a task on chosen, resting on the votes used, and ends
// its job if that was its last task or a failure.
func (d *Dispatcher) complete(t *task, chosen vote, used []vote) {
	d.settle(t, chosen, used)
	d.conclude(t.job, chosen)
}

// settle marks a task done with chosen's result without ending its job.
func (d *Dispatcher) settle(t *task, chosen vote, used []vote) {
	t.done, t.used = true, slices.Clone(used)
	d.withdraw(t)
	d.schedule(t)
	t.job.remaining--
	if chosen.res.Dist != nil {
		t.job.results[t.index] = *chosen.res.Dist
	}
}

// conclude ends a job after one of its tasks settled on chosen: at once for
// a failure, else once no task remains.
func (d *Dispatcher) conclude(js *job, chosen vote) {
	switch {
	case js.finished:
	case chosen.res.Dist == nil:
		d.finish(js, chosen.res.Failure, d.now)
	case js.remaining == 0:
		d.finish(js, "", d.now)
	}
}

// undo reopens a done task of a live job whose result rested on a discarded
// vote.
func (d *Dispatcher) undo(t *task) {
	t.done, t.used = false, nil
	t.job.remaining++
	t.job.results[t.index] = score.Distribution{}
}

func (t *task) live() bool { return !t.done && !t.job.finished }

// holds reports whether an identity has a copy of or a vote for the task.
func (t *task) holds(identity string) bool {
	return t.voted(identity) || slices.ContainsFunc(t.copies, func(a *assign) bool { return a.session.identity == identity })
}

// voted reports whether an identity has a vote for the task, or a no-verdict
// failure waiting for its retry.
func (t *task) voted(identity string) bool {
	return (t.noVerdict != nil && t.noVerdict.identity == identity) ||
		slices.ContainsFunc(t.votes, func(v vote) bool { return v.identity == identity })
}

// avoid ranks a session for a task it was handed back by: 0 not by its
// identity, 1 by another session of its identity, 2 by itself.
func (t *task) avoid(s *assignee) int {
	a := 0
	for _, r := range t.returners {
		switch {
		case r.session == s.id:
			return 2
		case r.identity == s.identity:
			a = 1
		}
	}
	return a
}

// need is how many more copies a live task must have dispatched.
func (d *Dispatcher) need(t *task) int {
	if !t.live() {
		return 0
	}
	return t.want - len(t.votes) - len(t.copies)
}

// lacking is how many votes a task lacks that no copy still on time will
// bring: those of overdue copies and of copies not dispatched yet.
func (t *task) lacking() int {
	n := t.want - len(t.votes)
	for _, c := range t.copies {
		if !c.overdue {
			n--
		}
	}
	return n
}

// schedule puts a task in the pending heap iff it needs more copies; it
// reports whether it pushed it.
func (d *Dispatcher) schedule(t *task) bool {
	n := d.need(t)
	switch {
	case n > 0 && t.hidx < 0:
		heap.Push(&d.pending, t)
		return true
	case n <= 0 && t.hidx >= 0:
		heap.Remove(&d.pending, t.hidx)
	}
	return false
}

// assign sends a copy of t to s (through batches, sent at the end of pump).
func (d *Dispatcher) assign(t *task, s *assignee, kind copyKind, batches map[*assignee][]Task) *assign {
	d.nextID++
	if t.firstSent.IsZero() {
		t.firstSent = d.now
	}
	a := &assign{id: d.nextID, task: t, session: s, kind: kind, assigned: d.now, since: t.firstSent}
	if kind == copyBackup {
		a.since = d.now
	}
	s.outstanding[a.id] = a
	s.jobs[t.job]++
	s.ident.outstanding++
	s.ident.jobs[t.job]++
	d.assigns[a.id] = a
	t.copies = append(t.copies, a)
	if kind == copyBackup {
		a.budget = true
		t.job.backups++
	}
	d.counters.TasksAssigned++
	attempt := 0
	if t.job.Attempt != nil {
		attempt = *t.job.Attempt
	}
	batches[s] = append(batches[s], Task{
		ID: a.id, URL: t.job.Distributions[t.index], RulesHash: t.job.RulesHash,
		Name: t.job.Name, Version: t.job.Version, Attempt: attempt,
		Deadline: t.job.Deadline(d.cfg.LeaseTimeout),
	})
	return a
}

// unassign removes an outstanding copy from its session and task. A backup
// copy that goes without answering (its session ended, was handed back)
// leaves the overdue copy it backed up without a backup: that copy is queued
// for another one.
func (d *Dispatcher) unassign(a *assign) {
	s, t := a.session, a.task
	delete(s.outstanding, a.id)
	if s.jobs[t.job]--; s.jobs[t.job] <= 0 {
		delete(s.jobs, t.job)
	}
	s.ident.outstanding--
	if a.overdue {
		s.ident.overdue--
	}
	if s.ident.jobs[t.job]--; s.ident.jobs[t.job] <= 0 {
		delete(s.ident.jobs, t.job)
	}
	delete(d.assigns, a.id)
	if a.budget {
		t.job.backups--
	}
	if i := slices.Index(t.copies, a); i >= 0 {
		t.copies = slices.Delete(t.copies, i, i+1)
	}
	if o := a.backupOf; o != nil && d.assigns[o.id] == o && o.backedUp && t.live() {
		o.backedUp = false
		if o.overdue && !o.queued {
			o.queued = true
			d.backups = append(d.backups, o)
		}
	}
}

// pump assigns waiting tasks in the pending heap's order (oldest lease
// answer first; in one, smaller releases first), then backups of overdue
// copies to free slots of other identities.
func (d *Dispatcher) pump() {
	d.pumps++
	if d.draining {
		// No copy will be assigned: a check or retry that lacks one ends
		// now (the coordinator's clock, which would end it, has stopped).
		d.settleStuck(d.now, d.timing().reserve)
	}
	if (d.pending.Len() == 0 && len(d.backups) == 0) || !d.anyFree() {
		return
	}
	var skipped []*task
	batches := map[*assignee][]Task{}
	for d.pending.Len() > 0 {
		t := heap.Pop(&d.pending).(*task)
		s := d.pick(t, false)
		if s == nil {
			skipped = append(skipped, t)
			if !d.anyFree() {
				break
			}
			continue
		}
		kind := copyPrimary
		if t.want >= 2 && len(t.copies)+len(t.votes) > 0 {
			kind = copyCheck
		}
		d.assign(t, s, kind, batches)
		d.schedule(t) // a spot check needs a second copy: try another identity
	}
	for _, t := range skipped {
		heap.Push(&d.pending, t)
	}
	d.pumpBackups(batches)
	for s, b := range batches {
		s.sink.Send(b)
	}
}

// pumpBackups dispatches a backup for each overdue copy whose task still
// lacks votes, to a free slot of an identity that holds no copy or vote of
// it. Copies per task are capped at their votes needed + 2, backups of one
// job outstanding at once at maxJobBackups (twice that for backups of
// backups overdue themselves).
func (d *Dispatcher) pumpBackups(batches map[*assignee][]Task) {
	keep := d.backups[:0]
	for _, a := range d.backups {
		t := a.task
		if d.assigns[a.id] != a || a.backedUp || !t.live() {
			a.queued = false
			continue
		}
		// Votes lacking beyond those the pending heap will dispatch: the
		// overdue copies not backed up yet. None, or the cap: done with it.
		if t.lacking()-max(d.need(t), 0) <= 0 || len(t.copies) >= t.want+2 {
			a.queued = false
			continue
		}
		limit := maxJobBackups
		if a.kind == copyBackup {
			// A backup overdue itself gets a backup past the cap, within
			// as many again: its holder is as silent as the copy it backs
			// up, and 8 silent backups held every other backup of the job
			// back (one identity holding a release's tasks and another
			// its first 8 backups, both silent, kept it unreported until
			// MaxJobAge, every API attempt).
			limit *= 2
		}
		if t.job.backups >= limit {
			keep = append(keep, a) // its turn comes when one of them ends
			continue
		}
		s := d.pick(t, true)
		if s == nil {
			keep = append(keep, a)
			continue
		}
		a.backedUp, a.queued = true, false
		b := d.assign(t, s, copyBackup, batches)
		b.backupOf = a
		d.counters.BackupsDispatched++
		e := taskEvent(EventBackupDispatched, t)
		e.TaskID, e.Session, e.Identity, e.From = b.id, s.id, s.identity, a.session.identity
		e.Reason = fmt.Sprintf("task %d outstanding %s at %s", a.id, d.now.Sub(a.assigned).Round(time.Second), a.session.id)
		d.emit(e)
	}
	clear(d.backups[len(keep):])
	d.backups = keep
}

// open reports whether a session takes new tasks at all: rules ready, not
// draining, quarantined or suspended.
func (d *Dispatcher) open(s *assignee) bool {
	return !s.draining && !s.quarantined && len(s.ready) > 0 && !d.suspended(s)
}

// free is how many more copies a session may be sent: its slots + prefetch
// not held, within what its identity may still hold.
func (d *Dispatcher) free(s *assignee) int {
	if !d.open(s) {
		return 0
	}
	return min(s.slots+d.cfg.Prefetch-len(s.outstanding), d.cfg.MaxIdentityCredits-s.ident.outstanding)
}

func (d *Dispatcher) anyFree() bool {
	for _, s := range d.sessions {
		if d.free(s) > 0 {
			return true
		}
	}
	return false
}

// takes reports whether a session could take a copy of t, busy or not: open,
// ready for its rules, of an identity holding no copy or vote of it.
func (d *Dispatcher) takes(s *assignee, t *task) bool {
	return d.open(s) && s.ready[t.job.RulesHash] && !t.holds(s.identity)
}

// pickKey ranks candidates for a copy; lower is better.
type pickKey struct {
	noSlot    bool   // only a prefetch credit is free
	idOverdue int    // overdue copies its identity holds
	unproven  bool   // for a backup: its identity never answered
	idLoad    int    // copies its identity holds, not counting the task's job
	load      int    // copies the session holds, not counting the task's job
	noAff     bool   // the session holds no copy of the task's job
	last      uint64 // when it was last picked
	seq       uint64 // join order
}

func (k pickKey) less(o pickKey) bool {
	return cmp.Or(
		falseFirst(k.noSlot, o.noSlot),
		cmp.Compare(k.idOverdue, o.idOverdue),
		falseFirst(k.unproven, o.unproven),
		cmp.Compare(k.idLoad, o.idLoad),
		cmp.Compare(k.load, o.load),
		falseFirst(k.noAff, o.noAff),
		cmp.Compare(k.last, o.last),
		cmp.Compare(k.seq, o.seq),
	) < 0
}

// falseFirst compares two flags, false before true.
func falseFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// pick returns a session for a copy of t: one that takes it (see takes) with
// a free credit (a free slot for a backup). Some wait for others that could
// take t: sessions that take it and have a free credit, or are busy but
// hold no overdue copy (they answer; a silent identity's full queue is no
// reason to wait). Sessions that handed t back are skipped while another
// could take it: a returning identity while another identity could, the
// returning session while another session of its identity could. A backup
// waits for an identity holding no overdue copy while one could take it: a
// silent identity's free slots do not take the backups of the silent.
// Among the rest, a free slot wins
// over a prefetch credit (a task never queues while a slot is idle); then
// the identity holding the fewest overdue copies; for a backup, one whose
// identity has answered before; then the identity holding the fewest copies,
// then the session holding the fewest (copies of t's own job not counted: a
// release stays together, release affinity); then one already holding a
// copy of t's job; then the least recently picked. Identities so take turns
// whatever slots or sessions they claim, and backups go to identities that
// answer.
func (d *Dispatcher) pick(t *task, backup bool) *assignee {
	// The least avoided sessions that could take t (see above), and for a
	// backup whether one of them holds no overdue copy.
	floor, clean := 0, false
	if len(t.returners) > 0 || backup {
		floor = 2
		var cleanAt [3]bool
		for _, s := range d.sessions {
			if d.takes(s, t) && (s.ident.overdue == 0 || d.free(s) > 0) {
				a := t.avoid(s)
				floor = min(floor, a)
				cleanAt[a] = cleanAt[a] || s.ident.overdue == 0
			}
		}
		clean = backup && cleanAt[floor]
	}
	var best *assignee
	var bestKey pickKey
	hash, held := t.job.RulesHash, t.noVerdict != nil || len(t.copies)+len(t.votes) > 0
	for _, s := range d.sessions {
		if !s.ready[hash] || d.free(s) <= 0 || (held && t.holds(s.identity)) ||
			(len(t.returners) > 0 && t.avoid(s) > floor) || (clean && s.ident.overdue > 0) {
			continue
		}
		slot := len(s.outstanding) < s.slots
		if backup && !slot {
			continue
		}
		held := s.jobs[t.job]
		k := pickKey{
			noSlot: !slot, idOverdue: s.ident.overdue, unproven: backup && s.ident.answered == 0,
			idLoad: s.ident.outstanding - s.ident.jobs[t.job], load: len(s.outstanding) - held,
			noAff: held == 0, last: s.lastPick, seq: s.seq,
		}
		if best == nil || k.less(bestKey) {
			best, bestKey = s, k
		}
	}
	if best != nil {
		d.rr++
		best.lastPick = d.rr
	}
	return best
}

// readyIdentities counts the identities with a session that could take a
// task: rules ready, not draining, quarantined or suspended.
func (d *Dispatcher) readyIdentities() int {
	ids := map[string]bool{}
	for _, s := range d.sessions {
		if d.open(s) {
			ids[s.identity] = true
		}
	}
	return len(ids)
}

// otherIdentity reports whether some session could take a further copy of t:
// ready for its rules, not draining, quarantined or suspended, of an
// identity holding no copy or vote of it (busy or not).
func (d *Dispatcher) otherIdentity(t *task) bool {
	for _, s := range d.sessions {
		if d.takes(s, t) {
			return true
		}
	}
	return false
}

// otherIdentitySoon is otherIdentity, or a session of another identity
// still compiling the task's rules, offered them less than compileWait ago
// (and neither draining, quarantined nor suspended), while the task's job
// was leased less than compileWait ago: a worker that reconnects again and
// again, compiling anew each time, delays a check by compileWait at most.
func (d *Dispatcher) otherIdentitySoon(t *task) bool {
	if d.otherIdentity(t) {
		return true
	}
	if d.now.Sub(t.job.LeasedAt) >= compileWait {
		return false
	}
	for _, s := range d.sessions {
		at, ok := s.compiling[t.job.RulesHash]
		if ok && d.now.Sub(at) < compileWait && !s.draining && !s.quarantined && !d.suspended(s) && !t.holds(s.identity) {
			return true
		}
	}
	return false
}

// Capacity is how many more tasks of jobs scanned with the rules hash the
// fleet could start now: the free credits of the sessions that have those
// rules ready ("" for any rules), at most MaxIdentityCredits less what it
// holds per identity, minus the tasks already waiting. Sessions that cannot
// scan with the rules new jobs get (still compiling them, or failing to)
// count for nothing: jobs leased for them would wait, their leases running
// out.
func (d *Dispatcher) Capacity(hash string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.credits(nil, hash) - d.pending.Len()
}

// ReadyFor reports whether a session that takes tasks has the rules hash
// ready (busy or not).
func (d *Dispatcher) ReadyFor(hash string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.sessions {
		if d.open(s) && s.ready[hash] {
			return true
		}
	}
	return false
}

// Idle reports whether a session that takes tasks (not draining,
// quarantined or suspended) holds fewer copies than its slots + prefetch,
// whatever rules it has ready: also one that has none ready (its worker
// could not compile any set offered to it), which Capacity does not count.
func (d *Dispatcher) Idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.sessions {
		if !s.draining && !s.quarantined && !d.suspended(s) &&
			len(s.outstanding) < s.slots+d.cfg.Prefetch && s.ident.outstanding < d.cfg.MaxIdentityCredits {
			return true
		}
	}
	return false
}

// credits sums the free credits of the sessions ready for hash (any
// session for ""), each identity's within what it may still hold; per,
// when not nil, receives each identity's.
func (d *Dispatcher) credits(per map[string]int, hash string) int {
	if per == nil {
		per = make(map[string]int, len(d.ids))
	}
	for _, s := range d.sessions {
		if hash != "" && !s.ready[hash] {
			continue
		}
		if f := d.free(s); f > 0 {
			per[s.identity] += f
		}
	}
	free := 0
	for id, f := range per {
		f = min(f, d.cfg.MaxIdentityCredits-d.ids[id].outstanding)
		per[id] = f
		free += f
	}
	return free
}

// Has reports whether a release is in flight.
func (d *Dispatcher) Has(name, version string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.jobs[(&Job{Name: name, Version: version}).Key()]
	return ok
}

// SessionLoad is a session's load and credits, for operators.
type SessionLoad struct {
	ID       string
	Identity string
	// Slots is the effective slot count; SlotsClaimed what the worker asked.
	Slots        int
	SlotsClaimed int
	// Outstanding counts the copies held (including losing copies of tasks
	// answered elsewhere), Started those the worker said it runs, Overdue
	// those outstanding too long.
	Outstanding int
	Started     int
	Overdue     int
	Draining    bool
	Quarantined bool
	RulesReady  []string
	Completed   int64
	Joined      time.Time
	// Returned counts the copies it handed back without draining;
	// SuspendedUntil, when in the future, is when it gets new tasks again
	// after returning more than its slots + prefetch within a minute.
	Returned       int64
	SuspendedUntil time.Time
}

// IdentityLoad is one worker identity's share, for operators: identities
// with sessions, and those remembered for their counts after their last
// session left (the newest 1024).
type IdentityLoad struct {
	Identity string
	Sessions int
	// Outstanding counts the copies all its sessions hold; Credits the free
	// credits Capacity counts for it (Outstanding + Credits is at most
	// Config.MaxIdentityCredits).
	Outstanding int
	Credits     int
	// NoVerdictFailures are the download, host or limit failures it reported (no
	// verdict: never a reason to quarantine, but a worker that often cannot
	// fetch may be lying); Returned the copies its sessions handed back
	// without draining.
	NoVerdictFailures int64
	Returned          int64
}

// QuarantineInfo is a quarantined identity.
type QuarantineInfo struct {
	Identity string
	Reason   string
	Since    time.Time
}

// SpotChecks is the state of result verification.
type SpotChecks struct {
	// Rate is the configured share of tasks checked.
	Rate float64
	// Identities are the identities ready for tasks (connected, rules ready,
	// not draining, quarantined or suspended).
	Identities int
	// Active is false when spot checks are off: Rate is 0 or fewer than two
	// identities are ready.
	Active bool
}

// Snapshot describes the dispatcher's state for operators.
type Snapshot struct {
	Sessions []SessionLoad
	// JobsInFlight are admitted jobs not finished yet.
	JobsInFlight int
	// TasksWaiting wait for a worker; OldestWaiting is the lease time of the
	// oldest job with a waiting task (zero when none).
	TasksWaiting  int
	OldestWaiting time.Time
	// TasksRunning are outstanding copies (all kinds).
	TasksRunning int
	// Delivering are finished jobs on their way to Config.Done: no longer
	// in flight, and not yet returned from Done (a shutdown that waits for
	// the jobs in flight waits for these too, or their reports would be
	// left out of the flush).
	Delivering int
	// BackupsWaiting are overdue copies whose backup waits for a free slot of
	// another identity.
	BackupsWaiting int
	SlotsTotal     int
	// TaskTime is the task time the backup policy uses now (90th percentile
	// of recent results, or the prior), BackupAfter how long a copy may be
	// outstanding before a backup. Recent results are the last 256 kept: when
	// full, a new one replaces the oldest of the identity holding the most
	// (a flood of fast answers replaces its own); while two or more
	// identities have results kept, the largest share counts with as many
	// (its most recent) as all others together, so no identity pulls the
	// task time (and the backup wait) down alone.
	TaskTime    time.Duration
	BackupAfter time.Duration
	SpotChecks  SpotChecks
	Quarantined []QuarantineInfo
	// Identities are the identities' shares, sorted.
	Identities []IdentityLoad
	Counters   Counters
}

// Snapshot returns the current state.
func (d *Dispatcher) Snapshot() Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	tm := d.timing()
	snap := Snapshot{
		JobsInFlight: len(d.jobs), TasksWaiting: d.pending.Len(), TasksRunning: len(d.assigns), Delivering: d.delivering,
		BackupsWaiting: len(d.backups), TaskTime: tm.typical, BackupAfter: tm.wait, Counters: d.counters,
	}
	if d.pending.Len() > 0 {
		snap.OldestWaiting = d.pending[0].job.LeasedAt
	}
	ids := d.readyIdentities()
	snap.SpotChecks = SpotChecks{Rate: d.cfg.VerifyRate, Identities: ids, Active: d.cfg.VerifyRate > 0 && ids >= 2}
	for _, s := range d.sessions {
		info := SessionLoad{
			ID: s.id, Identity: s.identity, Slots: s.slots, SlotsClaimed: s.claimed, Outstanding: len(s.outstanding),
			Draining: s.draining, Quarantined: s.quarantined, Completed: s.completed, Joined: s.joined,
			Returned: s.returned,
		}
		if d.suspended(s) {
			info.SuspendedUntil = s.suspendedUntil
		}
		for _, a := range s.outstanding {
			if a.started {
				info.Started++
			}
			if a.overdue {
				info.Overdue++
			}
		}
		for h := range s.ready {
			info.RulesReady = append(info.RulesReady, h)
		}
		slices.Sort(info.RulesReady)
		snap.Sessions = append(snap.Sessions, info)
		snap.SlotsTotal += s.slots
	}
	slices.SortFunc(snap.Sessions, func(a, b SessionLoad) int { return cmp.Compare(a.ID, b.ID) })
	credits := make(map[string]int, len(d.ids))
	d.credits(credits, "")
	for _, st := range d.ids {
		snap.Identities = append(snap.Identities, IdentityLoad{
			Identity: st.name, Sessions: st.sessions, Outstanding: st.outstanding, Credits: credits[st.name],
			NoVerdictFailures: st.noVerdict, Returned: st.returns,
		})
	}
	slices.SortFunc(snap.Identities, func(a, b IdentityLoad) int { return cmp.Compare(a.Identity, b.Identity) })
	for _, id := range d.quarSeq {
		q := d.quar[id]
		snap.Quarantined = append(snap.Quarantined, QuarantineInfo{Identity: id, Reason: q.reason, Since: q.since})
	}
	return snap
}

// sortedAssigns returns copies in task ID order (deterministic iteration).
func sortedAssigns(m map[uint64]*assign) []*assign {
	out := make([]*assign, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *assign) int { return cmp.Compare(a.id, b.id) })
	return out
}

// sortedJobs returns the jobs in flight, oldest first.
func (d *Dispatcher) sortedJobs() []*job {
	out := make([]*job, 0, len(d.jobs))
	for _, js := range d.jobs {
		out = append(out, js)
	}
	slices.SortFunc(out, func(a, b *job) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

func joinList(xs []string) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

func (s *TaskStats) add(o TaskStats) {
	s.BytesDownloaded += o.BytesDownloaded
	s.BytesExpanded += o.BytesExpanded
	s.Files += o.Files
	s.DownloadTime += o.DownloadTime
	s.ScanTime += o.ScanTime
	s.WallTime = max(s.WallTime, o.WallTime)
}

// taskHeap orders waiting tasks: oldest lease answer (Admit call) first;
// within one, the release of fewer distributions first, then admission
// order, then distribution order. The jobs of one answer share a lease
// deadline: in admission order, a release of 128 slow distributions leased
// before small ones held their every task back until their leases ended
// (dropped, an API attempt lost each time, dead-lettered after 3), where
// fewest first lets the most releases start in time. The key is fixed at
// Admit (len(Distributions), never the tasks left), as a heap needs.
type taskHeap []*task

func (h taskHeap) Len() int { return len(h) }
func (h taskHeap) Less(i, j int) bool {
	a, b := h[i].job, h[j].job
	return cmp.Or(
		cmp.Compare(a.batch, b.batch),
		cmp.Compare(len(a.Distributions), len(b.Distributions)),
		cmp.Compare(a.seq, b.seq),
		cmp.Compare(h[i].index, h[j].index),
	) < 0
}
func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *taskHeap) Push(x any) {
	t := x.(*task)
	t.hidx = len(*h)
	*h = append(*h, t)
}
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.hidx = -1
	*h = old[:len(old)-1]
	return t
}
