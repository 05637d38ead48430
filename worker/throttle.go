package worker

import (
	"context"
	"log/slog"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
)

// Lines a coordinator's messages make the worker write are throttled per
// kind: a coordinator (a hostile one, an impostor the worker dialed) sends
// them at a rate it picks, a line each (a repeated Welcome or Drain, an
// Assign of tasks already held or over the worker's room, a rule set
// refused, replaced, evicted, ready or that does not compile, a task that
// fails before any download). An honest coordinator causes a few a minute
// at most.
const (
	coordLogEvery = time.Minute
	// coordLogBurst is the lines of one kind per coordLogEvery, as the
	// coordinator's session lines (coordinator.sessionLogBurst).
	coordLogBurst = 4
	// failureLogBurst is the "distribution failed" lines of one failure
	// kind (download, host, archive, scan; a limit counts per limit:
	// download_size, file_size, ...) per coordLogEvery, and failureLogTotal
	// those of all kinds: a worker with an honest coordinator fails a few
	// distributions a minute, but one that assigns tasks on a host the
	// worker does not allow had a line of up to 5 KiB per task of a few
	// dozen bytes, at the pace of its round trips. Per kind, and per limit,
	// so that a flood of one (a crafted release's corrupt archives, or its
	// distributions over the download limit) does not hide the first
	// failure of another; the first line of each per coordLogEvery is let
	// through even when failureLogTotal is used up (floods of five others
	// used it up, and hid every other failure for the minute), so at most
	// failureLogTotal plus one a kind and limit. Every failure is still
	// counted in the metrics and reported with its reason.
	failureLogBurst = 20
	failureLogTotal = 100
	// maxLogKinds bounds the kinds the throttle remembers: the worker's
	// are a fixed set, a few dozen.
	maxLogKinds = 64
)

// logLimited logs msg at level through log, at most burst lines of it
// per coordLogEvery.
func (w *Worker) logLimited(log *slog.Logger, level slog.Level, burst int, msg string, attrs ...any) {
	w.logLimitedAs(msg, log, level, burst, msg, attrs...)
}

// logLimitedAs is logLimited counting msg's lines under kind, one of a
// fixed set (the throttle keeps one entry per kind, and at most
// maxLogKinds).
func (w *Worker) logLimitedAs(kind string, log *slog.Logger, level slog.Level, burst int, msg string, attrs ...any) {
	ok, held := w.logs.Allow(kind, burst, time.Now())
	if !ok {
		return
	}
	if held > 0 {
		attrs = append(attrs, "suppressed", held)
	}
	log.Log(context.Background(), level, msg, attrs...)
}

// logFailure logs a distribution's failure, at most failureLogBurst lines
// per failure kind (per limit for a limit) and failureLogTotal in all per
// coordLogEvery, but the first of each kind and limit always.
func (w *Worker) logFailure(log *slog.Logger, f *fleetv1.TaskFailure) {
	kind := f.GetKind().String()
	key, attrs := "distribution failed: "+kind, []any{"kind", kind, "reason", f.GetReason()}
	if l := f.GetLimit(); l != "" {
		key += ": " + l
		attrs = append(attrs, "limit", l)
	}
	ok, held := w.logs.AllowEach("distribution failed", failureLogTotal, key, failureLogBurst, time.Now())
	if !ok {
		return
	}
	if held > 0 {
		attrs = append(attrs, "suppressed", held)
	}
	log.Warn("distribution failed", attrs...)
}
