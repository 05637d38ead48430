package coordinator

import (
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
)

// Observer receives the coordinator's events, for metrics and the status
// page. Calls must be fast and safe for concurrent use.
type Observer interface {
	// Leased is called after each lease request with the jobs it returned.
	Leased(jobs int, err error)
	// JobFinished is called once per finished job (success or failure).
	JobFinished(o dispatch.Outcome)
	// JobDropped is called for a job dropped unreported: past its lease with
	// a distribution still waiting for a worker, or abandoned past the max
	// job age while workers held its tasks.
	JobDropped(j dispatch.Job)
	// Reported is called after each report attempt, except one accepted or
	// refused for good while a new lease of its release superseded it: that
	// outcome does not stand (the report is sent again under the new lease),
	// and the job's is the later attempt's.
	Reported(r outbox.Report, err error, took time.Duration)
	// ReportAbandoned is called when a report is given up: it was not accepted
	// within the report max age, err being its last attempt's error (not when
	// a new lease superseded it meanwhile: it is sent again).
	ReportAbandoned(r outbox.Report, err error)
	// RulesUpdated is called after each rules fetch that changed or failed.
	RulesUpdated(ok bool)
	// SessionStarted and SessionEnded bracket a worker session.
	SessionStarted(info SessionInfo)
	SessionEnded(info SessionInfo, err error)
	// DispatchEvent is called for each dispatcher event: backups, lost
	// tasks, spot checks, quarantines.
	DispatchEvent(e dispatch.Event)
	// OutboxHealth is called every second with the outbox's health.
	OutboxHealth(h outbox.Health)
}

// SessionInfo describes a worker session.
type SessionInfo struct {
	SessionID string
	WorkerID  string
	// Identity is who the worker is for limits, refusals, spot checks and
	// quarantine (see the package doc): "cert:<subject>" under mutual TLS,
	// else its worker id.
	Identity string
	Host     string
	Version  string
	Slots    int
	Started  time.Time
}

type nopObserver struct{}

func (nopObserver) Leased(int, error)                            {}
func (nopObserver) JobFinished(dispatch.Outcome)                 {}
func (nopObserver) JobDropped(dispatch.Job)                      {}
func (nopObserver) Reported(outbox.Report, error, time.Duration) {}
func (nopObserver) ReportAbandoned(outbox.Report, error)         {}
func (nopObserver) RulesUpdated(bool)                            {}
func (nopObserver) SessionStarted(SessionInfo)                   {}
func (nopObserver) SessionEnded(SessionInfo, error)              {}
func (nopObserver) DispatchEvent(dispatch.Event)                 {}
func (nopObserver) OutboxHealth(outbox.Health)                   {}

// NopObserver returns an Observer that ignores every event.
func NopObserver() Observer { return nopObserver{} }
