package dispatch

import (
	"strconv"
	"time"
)

// LeaveReason says why a session ended. It decides whether the session's
// started tasks count as lost (toward failing a distribution that crashes
// scanners) or are simply dispatched again.
type LeaveReason int

const (
	// LeaveClean: the worker drained and closed the stream. The zero value:
	// a caller that does not know says nothing that could fail a job.
	LeaveClean LeaveReason = iota
	// LeaveLost: the stream broke or the worker's process died (missed
	// heartbeats, transport error). Its started tasks count as lost.
	LeaveLost
	// LeaveCut: the coordinator ended the session (the worker stopped
	// reading, broke the protocol, shutdown). Not counted as lost: the
	// coordinator's decision says nothing about the input.
	LeaveCut
)

func (r LeaveReason) String() string {
	switch r {
	case LeaveClean:
		return "clean"
	case LeaveLost:
		return "lost"
	case LeaveCut:
		return "cut"
	}
	return "LeaveReason(" + strconv.Itoa(int(r)) + ")"
}

// Failure kinds (Result.FailureKind) that are no verdict on the input: the
// names of the wire's fleetv1.FailureKind values, as its String method gives
// them. A download failure (the worker could not fetch the distribution), a
// host failure (the worker's DRAGONFLY_ALLOWED_HOSTS or its resolver refused
// the URL's host: settings that differ between workers) or a limit failure
// (limits and speed differ between workers) never quarantines anyone and is
// no vote in a spot check's majority. Every other kind, including none, is
// a verdict.
const (
	KindDownload = "FAILURE_KIND_DOWNLOAD"
	KindHost     = "FAILURE_KIND_HOST"
	KindLimit    = "FAILURE_KIND_LIMIT"
)

// EventKind names an event.
type EventKind int

const (
	// EventBackupDispatched: a task outstanding too long was dispatched again
	// to a session of another identity. From names the slow copy's identity.
	EventBackupDispatched EventKind = iota + 1
	// EventBackupWon: a backup copy's result was accepted.
	EventBackupWon
	// EventResultDropped: a result arrived for a task another copy had
	// already answered (the losing copy of a backup or spot check); dropped.
	EventResultDropped
	// EventTaskLost: a started task's session ended with LeaveLost.
	EventTaskLost
	// EventLostFailed: a distribution lost by three different identities
	// failed its job (Reason is the job's failure).
	EventLostFailed
	// EventVerifyPicked: a task was picked for a spot check.
	EventVerifyPicked
	// EventVerifyAgreed: two (or three) identities reported the same result.
	EventVerifyAgreed
	// EventVerifyMismatch: two identities' verdicts disagree. The coordinator
	// logs it at ERROR: one of them may be lying.
	EventVerifyMismatch
	// EventVerifyInconclusive: one side of a spot check was a download or
	// limit failure (no verdict); a third scan or the fail-safe rule decides
	// and nobody is quarantined for it.
	EventVerifyInconclusive
	// EventVerifyDecided: a mismatch was settled, by a majority of three
	// identities (Quarantined names the minority) or by the fail-safe rule.
	EventVerifyDecided
	// EventVerifySkipped: a task picked for a spot check finished unchecked
	// (fewer than two identities, no other identity could take it, or the
	// lease was ending).
	EventVerifySkipped
	// EventQuarantine: an identity was quarantined.
	EventQuarantine
	// EventSessionSuspended: a session not draining handed back more than its
	// slots + prefetch tasks within a minute; it gets no new tasks for two
	// minutes (Reason says so).
	EventSessionSuspended
	// EventNoVerdictRetry: a download, host or limit failure (Identity's, of task
	// TaskID) is held back while one more copy is scanned on another identity;
	// that copy's result is the task's. Nobody is quarantined for it.
	EventNoVerdictRetry
)

var eventNames = [...]string{
	EventBackupDispatched:   "backup_dispatched",
	EventBackupWon:          "backup_won",
	EventResultDropped:      "result_dropped",
	EventTaskLost:           "task_lost",
	EventLostFailed:         "lost_failed",
	EventVerifyPicked:       "verify_picked",
	EventVerifyAgreed:       "verify_agreed",
	EventVerifyMismatch:     "verify_mismatch",
	EventVerifyInconclusive: "verify_inconclusive",
	EventVerifyDecided:      "verify_decided",
	EventVerifySkipped:      "verify_skipped",
	EventQuarantine:         "quarantine",
	EventSessionSuspended:   "session_suspended",
	EventNoVerdictRetry:     "no_verdict_retry",
}

// String is a stable snake_case name, fit for a metric label.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is something the coordinator logs, counts or shows. Strings that come
// from workers (identities, reasons) are bounded.
type Event struct {
	Kind EventKind
	// Time is the dispatcher's clock when it happened.
	Time time.Time
	// Name and Version name the release; empty for a quarantine made through
	// Quarantine.
	Name, Version string
	// URL is the distribution; TaskID the assignment concerned, if any.
	URL    string
	TaskID uint64
	// Session and Identity are who the event is about: the backup's new
	// holder, the session whose result was dropped or that lost the task, the
	// quarantined identity, the suspended session, the identity whose
	// no-verdict failure is retried.
	Session, Identity string
	// From is, for a backup, the identity whose copy was overdue.
	From string
	// Identities are, for spot checks, the identities whose results were
	// compared (in arrival order); for losses, those that lost the task.
	Identities []string
	// Quarantined are the identities a decision quarantined.
	Quarantined []string
	// Reason explains, in one bounded line.
	Reason string
}

// TickReport is what one Tick did that the caller must log.
type TickReport struct {
	// Dropped are jobs given up without a report because their lease ended
	// with work still waiting for a worker: the API leases them again.
	Dropped []Job
	// Abandoned are jobs given up without a report because they outlived
	// Config.MaxJobAge while workers still held copies of their tasks (a
	// silent worker and nobody to back it up).
	Abandoned []Job
	// Backups is how many backup copies this Tick dispatched (each is also an
	// EventBackupDispatched).
	Backups int
}
