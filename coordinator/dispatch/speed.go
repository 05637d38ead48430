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

// speed keeps the most recent assignment-to-result times in a ring.
type speed struct {
	ring  [speedWindow]time.Duration
	n     int // samples ever added (the ring holds min(n, speedWindow))
	cache time.Duration
	dirty bool
}

func (s *speed) add(d time.Duration) {
	if d < 0 {
		return
	}
	s.ring[s.n%speedWindow] = d
	s.n++
	s.dirty = true
}

// quantile returns the speedQuantile of the kept samples, or prior with fewer
// than speedMinSamples of them; the result lies within [lo, hi].
func (s *speed) quantile(prior, lo, hi time.Duration) time.Duration {
	q := prior
	if s.n >= speedMinSamples {
		if s.dirty {
			k := min(s.n, speedWindow)
			xs := slices.Clone(s.ring[:k])
			slices.Sort(xs)
			s.cache = xs[min(k-1, int(float64(k)*speedQuantile))]
			s.dirty = false
		}
		q = s.cache
	}
	return min(max(q, lo), hi)
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
