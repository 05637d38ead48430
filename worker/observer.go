package worker

import (
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
)

// Observer receives a worker's events, for metrics. Calls must be fast and
// safe for concurrent use.
type Observer interface {
	// Downloaded is called after each distribution download.
	Downloaded(bytes int64, took time.Duration, err error)
	// FileScanned is called after each file scan.
	FileScanned(size int, took time.Duration)
	// TaskDone is called with each task's result; limit names the limit a
	// failure broke ("" otherwise).
	TaskDone(r *fleetv1.TaskResult, limit string)
	// RulesCompiled is called after each rules compilation.
	RulesCompiled(took time.Duration, err error)
	// Connection is called when the session state changes: connected to a
	// coordinator, and with rules compiled and ready to scan.
	Connection(connected, rulesReady bool)
	// FileSkipped is called for each file no rule's filetype admits (read
	// and checked, not scanned).
	FileSkipped(size int)
	// MatchCacheHit is called for each file whose matches came from the
	// match cache or a scan of the same bytes in flight.
	MatchCacheHit(size int)
	// SubsetCompiled is called after each rule subset compilation (err: it
	// fell back to the whole set).
	SubsetCompiled(took time.Duration, err error)
}

type nopObserver struct{}

func (nopObserver) Downloaded(int64, time.Duration, error) {}
func (nopObserver) FileScanned(int, time.Duration)         {}
func (nopObserver) TaskDone(*fleetv1.TaskResult, string)   {}
func (nopObserver) RulesCompiled(time.Duration, error)     {}
func (nopObserver) Connection(bool, bool)                  {}
func (nopObserver) FileSkipped(int)                        {}
func (nopObserver) MatchCacheHit(int)                      {}
func (nopObserver) SubsetCompiled(time.Duration, error)    {}

// NopObserver returns an Observer that ignores every event.
func NopObserver() Observer { return nopObserver{} }
