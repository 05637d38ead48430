// Package fakeapi is an in-memory Dragonfly API for tests of the
// coordinator: a queue of jobs leased in order, a rule set, and the reports
// it received, with switches for the failures a test needs (rules that do
// not load, reports that fail or conflict). It implements the API the
// coordinator uses (coordinator.API) and GET /queue-status.
package fakeapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
)

// API is safe for concurrent use.
type API struct {
	mu          sync.Mutex
	queue       []mainframe.Job
	rules       mainframe.RuleSet
	rulesErr    error
	rulesGot    int
	leases      []int // batch sizes asked
	reports     []mainframe.Report
	reportErr   error
	reportTries int
	conflict    map[string]bool
	queueAsked  int
	changed     chan struct{}
}

// New returns an API serving rules and the jobs, leased in order.
func New(rules mainframe.RuleSet, jobs ...mainframe.Job) *API {
	return &API{queue: jobs, rules: rules, conflict: map[string]bool{}, changed: make(chan struct{}, 1)}
}

// Lease hands out up to n jobs (POST /jobs?batch=n).
func (a *API) Lease(_ context.Context, n int) ([]mainframe.Job, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.leases = append(a.leases, n)
	n = min(n, len(a.queue))
	out := slices.Clone(a.queue[:n])
	a.queue = a.queue[n:]
	return out, nil
}

// Rules returns the rule set (GET /rules).
func (a *API) Rules(context.Context) (mainframe.RuleSet, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rulesGot++
	return a.rules, a.rulesErr
}

// Report records a report (PUT /package): an accepted one, or the error set
// by FailReports, or a 409 for a release set by Conflict (recorded too). A
// report the real client could not encode (mainframe.ErrUnsendable) is
// refused with its error, unrecorded.
func (a *API) Report(_ context.Context, r mainframe.Report) error {
	a.mu.Lock()
	a.reportTries++
	if err := a.reportErr; err != nil {
		a.mu.Unlock()
		return err
	}
	// The real client encodes the body first: a report it cannot encode
	// never reaches the API.
	if _, err := r.MarshalJSON(); err != nil {
		a.mu.Unlock()
		return fmt.Errorf("PUT /package: %w", err)
	}
	a.reports = append(a.reports, r)
	conflict := a.conflict[r.Name]
	a.mu.Unlock()
	select {
	case a.changed <- struct{}{}:
	default:
	}
	if conflict {
		return &mainframe.APIError{Endpoint: "PUT /package", Status: http.StatusConflict, Detail: "no longer assigned to this worker lease"}
	}
	return nil
}

// QueueStatus answers GET /queue-status with the jobs not yet leased.
func (a *API) QueueStatus(context.Context) (mainframe.QueueStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queueAsked++
	return mainframe.QueueStatus{Queued: int64(len(a.queue)), TotalBacklog: int64(len(a.queue))}, nil
}

// Add queues more jobs.
func (a *API) Add(jobs ...mainframe.Job) {
	a.mu.Lock()
	a.queue = append(a.queue, jobs...)
	a.mu.Unlock()
}

// SetRules changes the rule set GET /rules returns, and its error.
func (a *API) SetRules(rs mainframe.RuleSet, err error) {
	a.mu.Lock()
	a.rules, a.rulesErr = rs, err
	a.mu.Unlock()
}

// FailReports makes every later report fail with err (nil: accept again).
func (a *API) FailReports(err error) {
	a.mu.Lock()
	a.reportErr = err
	a.mu.Unlock()
}

// Conflict answers the reports of the release name with 409.
func (a *API) Conflict(name string) {
	a.mu.Lock()
	a.conflict[name] = true
	a.mu.Unlock()
}

// Reports returns the reports received (accepted or answered 409).
func (a *API) Reports() []mainframe.Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reports)
}

// Leases returns the batch sizes asked so far.
func (a *API) Leases() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.leases)
}

// ReportTries counts report attempts, failed ones included.
func (a *API) ReportTries() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reportTries
}

// QueueStatusCalls counts GET /queue-status calls.
func (a *API) QueueStatusCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.queueAsked
}

// RulesFetches counts GET /rules calls.
func (a *API) RulesFetches() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rulesGot
}

// WaitReports waits (up to a minute) until n reports arrived and returns
// them.
func (a *API) WaitReports(t testing.TB, n int) []mainframe.Report {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		if r := a.Reports(); len(r) >= n {
			return r
		}
		select {
		case <-a.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %d reports; have %d", n, len(a.Reports()))
		}
	}
}
