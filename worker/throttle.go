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
// refused, replaced or that does not compile, a task that fails before any
// download). An honest coordinator causes a few a minute at most.
const (
	coordLogEvery = time.Minute
	// coordLogBurst is the lines of one kind per coordLogEvery, as the
	// coordinator's session lines (coordinator.sessionLogBurst).
	coordLogBurst = 4
	// failureLogBurst is the "distribution failed" lines per coordLogEvery:
	// a worker with an honest coordinator fails a few distributions a
	// minute, but one that assigns tasks on a host the worker does not
	// allow had a line of up to 5 KiB per task of a few dozen bytes, at
	// the pace of its round trips. Every failure is still counted in the
	// metrics and reported with its reason.
	failureLogBurst = 60
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

// logLimited logs msg at level through log, at most burst lines of kind
// (the message, unless several share one) per coordLogEvery.
func (w *Worker) logLimited(log *slog.Logger, level slog.Level, burst int, msg string, attrs ...any) {
	ok, held := w.logs.allow(msg, burst, time.Now())
	if !ok {
		return
	}
	if held > 0 {
		attrs = append(attrs, "suppressed", held)
	}
	log.Log(context.Background(), level, msg, attrs...)
}
