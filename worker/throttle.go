package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"
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
	// kind (download, host, limit, archive, scan) per coordLogEvery: a
	// worker with an honest coordinator fails a few distributions a
	// minute, but one that assigns tasks on a host the worker does not
	// allow had a line of up to 5 KiB per task of a few dozen bytes, at
	// the pace of its round trips. Per kind, so that a flood of one kind
	// (a crafted release's corrupt archives) does not hide the first
	// failure of another; 5 kinds, at most 100 lines a minute in all.
	// Every failure is still counted in the metrics and reported with its
	// reason.
	failureLogBurst = 20
)

// logThrottle lets lines through at most burst times per kind and
// interval, counting what it held back: the first line after says how many
// ("suppressed"). It is coordinator/conngate.go's throttle for the fixed
// set of kinds a worker logs. Safe for concurrent use (task goroutines log
// failures).
type logThrottle struct {
	mu    sync.Mutex
	kinds map[string]*throttled
}

type throttled struct {
	last       time.Time // when the kind's interval began
	n          int       // lines let through since
	suppressed int64
}

// allow reports whether a line of kind may be logged at now (at most burst
// per coordLogEvery), and how many were held back since the last one.
func (t *logThrottle) allow(kind string, burst int, now time.Time) (bool, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kinds == nil {
		t.kinds = map[string]*throttled{}
	}
	e := t.kinds[kind]
	if e == nil {
		t.kinds[kind] = &throttled{last: now, n: 1}
		return true, 0
	}
	if now.Sub(e.last) < coordLogEvery {
		if e.n < burst {
			e.n++
			return true, 0
		}
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.n, e.suppressed = now, 1, 0
	return true, n
}

// logLimited logs msg at level through log, at most burst lines of it
// per coordLogEvery.
func (w *Worker) logLimited(log *slog.Logger, level slog.Level, burst int, msg string, attrs ...any) {
	w.logLimitedAs(msg, log, level, burst, msg, attrs...)
}

// logLimitedAs is logLimited counting msg's lines under kind, one of a
// fixed set (the throttle keeps one entry per kind).
func (w *Worker) logLimitedAs(kind string, log *slog.Logger, level slog.Level, burst int, msg string, attrs ...any) {
	ok, held := w.logs.allow(kind, burst, time.Now())
	if !ok {
		return
	}
	if held > 0 {
		attrs = append(attrs, "suppressed", held)
	}
	log.Log(context.Background(), level, msg, attrs...)
}
