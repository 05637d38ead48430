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
	samples []sample       // oldest first, at most speedWindow
	count   map[string]int // samples per identity
	cache   time.Duration
	dirty   bool
}

type sample struct {
	took     time.Duration
	identity string
}

func (s *speed) add(identity string, took time.Duration) {
	if took < 0 {
		return
	}
	if s.count == nil {
		s.count = map[string]int{}
	}
	if len(s.samples) == speedWindow {
		top := 0
		for _, n := range s.count {
			top = max(top, n)
		}
		i := slices.IndexFunc(s.samples, func(x sample) bool { return s.count[x.identity] == top })
		if s.count[s.samples[i].identity]--; s.count[s.samples[i].identity] == 0 {
			delete(s.count, s.samples[i].identity)
		}
		s.samples = slices.Delete(s.samples, i, i+1)
	}
	s.samples = append(s.samples, sample{took: took, identity: identity})
	s.count[identity]++
	s.dirty = true
}

// quantile returns the speedQuantile of the kept samples (the largest
// identity's share capped as above), or prior with fewer than
// speedMinSamples of them; the result lies within [lo, hi].
func (s *speed) quantile(prior, lo, hi time.Duration) time.Duration {
	q := prior
	if len(s.samples) >= speedMinSamples {
		if s.dirty {
			s.cache = s.compute()
			s.dirty = false
		}
		q = s.cache
	}
	return min(max(q, lo), hi)
}

func (s *speed) compute() time.Duration {
	top, n := "", 0
	for id, c := range s.count {
		if c > n || (c == n && id < top) {
			top, n = id, c
		}
	}
	skip := 0 // the oldest samples of top left out
	if rest := len(s.samples) - n; rest > 0 && n > rest {
		skip = n - rest
	}
	xs := make([]time.Duration, 0, len(s.samples)-skip)
	for _, x := range s.samples {
		if skip > 0 && x.identity == top {
			skip--
			continue
		}
		xs = append(xs, x.took)
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
