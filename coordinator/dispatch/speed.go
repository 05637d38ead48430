package dispatch

import (
	"slices"
	"time"
)

// The fleet's speed: how long tasks take from assignment to result.
const (
	// speedWindow is how many recent assignment-to-result times are kept.
	speedWindow = 256
	// speedMinSamples is how many it takes before they replace the prior.
	speedMinSamples = 8
	// speedQuantile is the quantile of recent times that is "a normal task".
	speedQuantile = 0.9
	// backupFactor times that quantile is how long a copy may stay
	// outstanding before a backup is dispatched (within BackupMin..BackupMax).
	backupFactor = 3
)

// speed keeps recent assignment-to-result times, each with the identity that
// answered. One identity cannot pull the backup wait down with fast
// answers: when the window is full, a new sample replaces the oldest of the
// identity holding the most (so a flood replaces its own samples, not the
// others'), and while two or more identities have samples, the one holding
// the most is counted with at most as many (its most recent) as all others
// together: at most half of those the quantile is taken of.
type speed struct {
	ids map[string]*speedQueue // identities with samples
	// bySize holds the identities by how many samples they hold (a queue's
	// pos is its index in its slot); top is the largest size held.
	bySize [speedWindow + 2][]*speedQueue
	top    int
	n      int    // samples kept, at most speedWindow
	seq    uint64 // samples ever added
	cache  time.Duration
	dirty  bool
}

// speedQueue is one identity's samples, oldest first.
type speedQueue struct {
	identity string
	samples  []sample
	pos      int
}

type sample struct {
	took time.Duration
	seq  uint64 // order of arrival
}

// resize moves q from size slot from to slot to (0: none).
func (s *speed) resize(q *speedQueue, from, to int) {
	if from > 0 {
		b := s.bySize[from]
		last := b[len(b)-1]
		b[q.pos], last.pos = last, q.pos
		b[len(b)-1] = nil
		s.bySize[from] = b[:len(b)-1]
	}
	if to > 0 {
		q.pos = len(s.bySize[to])
		s.bySize[to] = append(s.bySize[to], q)
	}
}

func (s *speed) add(identity string, took time.Duration) {
	if took < 0 {
		return
	}
	if s.ids == nil {
		s.ids = map[string]*speedQueue{}
	}
	q := s.ids[identity]
	if q == nil {
		q = &speedQueue{identity: identity}
		s.ids[identity] = q
	}
	s.seq++
	q.samples = append(q.samples, sample{took: took, seq: s.seq})
	s.resize(q, len(q.samples)-1, len(q.samples))
	s.top = max(s.top, len(q.samples))
	s.n++
	s.dirty = true
	if s.n <= speedWindow {
		return
	}
	// Drop the oldest sample of an identity holding the most.
	v := s.bySize[s.top][0]
	v.samples = v.samples[1:]
	s.resize(v, s.top, len(v.samples))
	if len(v.samples) == 0 {
		delete(s.ids, v.identity)
	}
	if len(s.bySize[s.top]) == 0 {
		s.top--
	}
	s.n--
}

// quantile returns the speedQuantile of the kept samples (the largest
// identity's share capped as above), or prior with fewer than
// speedMinSamples of them; the result lies within [lo, hi].
func (s *speed) quantile(prior, lo, hi time.Duration) time.Duration {
	q := prior
	if s.n >= speedMinSamples {
		if s.dirty {
			s.cache = s.compute()
			s.dirty = false
		}
		q = s.cache
	}
	return min(max(q, lo), hi)
}

func (s *speed) compute() time.Duration {
	top := s.bySize[s.top][0]
	xs := make([]time.Duration, 0, s.n)
	for _, c := range s.ids {
		ss := c.samples
		// With others present, the largest counts with as many samples as
		// all others together: its most recent.
		if rest := s.n - len(ss); c == top && rest > 0 && len(ss) > rest {
			ss = ss[len(ss)-rest:]
		}
		for _, x := range ss {
			xs = append(xs, x.took)
		}
	}
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(float64(len(xs))*speedQuantile))]
}

// timing is the backup policy's numbers at one moment.
type timing struct {
	// typical is the observed quantile (or the prior), at least 1 s and at
	// most half the lease.
	typical time.Duration
	// wait is how long a copy may be outstanding before it is overdue:
	// backupFactor*typical within [BackupMin, BackupMax].
	wait time.Duration
	// reserve is the lease time a backup needs to finish: typical+BackupMin,
	// at most half the lease. A copy outstanding at least typical is overdue
	// once its job's lease has less than reserve left.
	reserve time.Duration
}

func (d *Dispatcher) timing() timing {
	lease := d.cfg.LeaseTimeout
	typ := d.speed.quantile(d.cfg.TaskTimePrior, time.Second, lease/2)
	return timing{
		typical: typ,
		wait:    min(max(backupFactor*typ, d.cfg.BackupMin), d.cfg.BackupMax),
		reserve: min(typ+d.cfg.BackupMin, lease/2),
	}
}

// overdue reports whether a copy assigned at assigned, of a job whose lease
// ends at deadline, should get a backup at now.
func (tm timing) overdue(assigned, deadline, now time.Time) bool {
	elapsed := now.Sub(assigned)
	if elapsed >= tm.wait {
		return true
	}
	return elapsed >= tm.typical && deadline.Sub(now) <= tm.reserve
}
