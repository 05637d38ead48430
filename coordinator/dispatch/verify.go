package dispatch

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/score"
)

// class is a result's outcome class for spot checks.
type class uint8

const (
	classSuccess   class = iota
	classFailure         // a verdict: the input cannot be scanned
	classNoVerdict       // a download, host or limit failure: says nothing about the input
)

func classOf(r Result) class {
	switch {
	case r.Dist != nil:
		return classSuccess
	case r.FailureKind == KindDownload || r.FailureKind == KindHost || r.FailureKind == KindLimit:
		return classNoVerdict
	}
	return classFailure
}

// agree compares two results: the outcome class, and for successes the
// score, the rules (names and weights), the top file and its score.
func agree(a, b Result) bool {
	ca, cb := classOf(a), classOf(b)
	if ca != cb {
		return false
	}
	if ca != classSuccess {
		return true
	}
	x, y := a.Dist, b.Dist
	return x.Score == y.Score && x.TopFile == y.TopFile && x.TopScore == y.TopScore && sameRules(x.Rules, y.Rules)
}

func sameRules(a, b []score.Hit) bool {
	if len(a) != len(b) {
		return false
	}
	order := func(x, y score.Hit) int {
		if c := strings.Compare(x.Name, y.Name); c != 0 {
			return c
		}
		return cmp.Compare(x.Weight, y.Weight)
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, order)
	slices.SortFunc(b, order)
	return slices.Equal(a, b)
}

func identities(vs []vote) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.identity
	}
	return out
}

// describe is a short, bounded account of a result for event reasons.
func describe(r Result) string {
	switch classOf(r) {
	case classSuccess:
		return fmt.Sprintf("score %d, %d rules, top file %q (%d)", r.Dist.Score, len(r.Dist.Rules), clip.String(r.Dist.TopFile, 256), r.Dist.TopScore)
	case classNoVerdict:
		return "no verdict (" + clip.String(r.Failure, 256) + ")"
	}
	return "failure (" + clip.String(r.Failure, 256) + ")"
}

func describeVotes(vs []vote) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = clip.String(v.identity, 128) + ": " + describe(v.res)
	}
	return strings.Join(parts, "; ")
}

// evaluate settles a live task once it has the votes it wants.
func (d *Dispatcher) evaluate(t *task) {
	if !t.live() || len(t.votes) < t.want {
		return
	}
	v := t.votes
	if t.want == 1 {
		d.complete(t, v[0], v[:1])
		return
	}
	if !slices.ContainsFunc(v[1:], func(x vote) bool { return !agree(v[0].res, x.res) }) {
		d.counters.VerifyAgreed++
		e := taskEvent(EventVerifyAgreed, t)
		e.Identities = identities(v)
		d.emit(e)
		d.complete(t, v[0], v)
		return
	}
	if t.want == 2 {
		if !t.mismatched {
			t.mismatched = true
			k := EventVerifyMismatch
			if classOf(v[0].res) == classNoVerdict || classOf(v[1].res) == classNoVerdict {
				k = EventVerifyInconclusive
				d.counters.VerifyInconclusive++
			} else {
				d.counters.VerifyMismatch++
			}
			e := taskEvent(k, t)
			e.Identities, e.Reason = identities(v), clip.String(describeVotes(v), clip.Default)
			d.emit(e)
		}
		// A third identity decides: one already holding a copy (a backup),
		// or any other that is ready.
		if !t.noThird && (len(t.copies) > 0 || d.otherIdentity(t)) {
			t.want = 3
			return
		}
		d.fallback(t, "no third identity")
		return
	}
	d.decide(t)
}

// decide settles a mismatch with three votes: two agreeing verdicts win and
// quarantine every verdict that disagrees; without such a majority the
// fail-safe rule decides.
func (d *Dispatcher) decide(t *task) {
	var verdicts []vote
	for _, v := range t.votes {
		if classOf(v.res) != classNoVerdict {
			verdicts = append(verdicts, v)
		}
	}
	var major, minor []vote
	for _, v := range verdicts {
		major, minor = nil, nil
		for _, w := range verdicts {
			if agree(v.res, w.res) {
				major = append(major, w)
			} else {
				minor = append(minor, w)
			}
		}
		if len(major) >= 2 {
			break
		}
	}
	if len(major) < 2 {
		d.fallback(t, "no majority")
		return
	}
	d.counters.VerifyDecided++
	e := taskEvent(EventVerifyDecided, t)
	e.Identities, e.Quarantined = identities(t.votes), identities(minor)
	e.Reason = clip.String("majority of "+strings.Join(clipAll(identities(major)), ", ")+": "+describeVotes(t.votes), clip.Default)
	d.emit(e)
	// Settle first, quarantine, then end the job: the minority's other
	// results in this very job are discarded before it can be reported.
	d.settle(t, major[0], major)
	for _, m := range minor {
		d.quarantine(m.identity, clip.String(fmt.Sprintf("spot check of %s %s distribution %s: reported %s; %s reported %s",
			clip.String(t.job.Name, 256), clip.String(t.job.Version, 128), clip.String(t.job.Distributions[t.index], 512),
			describe(m.res), strings.Join(clipAll(identities(major)), " and "), describe(major[0].res)), clip.Default))
	}
	d.conclude(t.job, major[0])
}

func clipAll(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = clip.String(x, 128)
	}
	return out
}

// fallback settles a mismatch without a majority, failing safe: a verdict
// failure stands; of two or more successes the highest score wins (then the
// most rules, then the first); a single success against download or limit
// failures leaves the failure standing.
func (d *Dispatcher) fallback(t *task, why string) {
	var fail, noVerdict *vote
	var succ []vote
	for i, v := range t.votes {
		switch classOf(v.res) {
		case classFailure:
			if fail == nil {
				fail = &t.votes[i]
			}
		case classNoVerdict:
			if noVerdict == nil {
				noVerdict = &t.votes[i]
			}
		default:
			succ = append(succ, v)
		}
	}
	var chosen vote
	switch {
	case fail != nil:
		chosen = *fail
	case len(succ) >= 2:
		chosen = succ[0]
		for _, v := range succ[1:] {
			if x, y := v.res.Dist, chosen.res.Dist; x.Score > y.Score || (x.Score == y.Score && len(x.Rules) > len(y.Rules)) {
				chosen = v
			}
		}
	case noVerdict != nil:
		chosen = *noVerdict
	default:
		chosen = t.votes[0]
	}
	d.counters.VerifyDecided++
	e := taskEvent(EventVerifyDecided, t)
	e.Identities = identities(t.votes)
	e.Reason = clip.String(why+": reported "+chosen.identity+"'s "+describe(chosen.res)+" (fail-safe)", clip.Default)
	d.emit(e)
	d.complete(t, chosen, t.votes)
}

// giveUp ends the wait for a further copy of a spot-checked task, or of a
// no-verdict failure's retry, that cannot be placed or answer in time: the
// check is skipped, a mismatch is settled without a third, or the no-verdict
// failure stands.
func (d *Dispatcher) giveUp(t *task, why string) {
	switch t.want {
	case 1:
		if t.noVerdict == nil {
			return
		}
		t.votes = append(t.votes, *t.noVerdict)
		t.noVerdict = nil
		d.counters.NoVerdictConfirmed++
	case 2:
		t.verify, t.want = false, 1
		d.counters.VerifySkipped++
		e := taskEvent(EventVerifySkipped, t)
		e.Identities, e.Reason = identities(t.votes), why
		d.emit(e)
	case 3:
		t.noThird, t.want = true, 2
	default:
		return
	}
	d.evaluate(t)
	d.schedule(t)
}

// Quarantine stops giving tasks to an identity's sessions, present and
// future, until a restart. Its outstanding tasks are dispatched again at
// once; its results for jobs not yet finished are discarded and those tasks
// scanned again. Quarantining a quarantined identity does nothing.
func (d *Dispatcher) Quarantine(identity, reason string) {
	d.mu.Lock()
	defer d.unlock()
	d.quarantine(clip.String(identity, maxIdentity), clip.String(reason, clip.Default))
	d.pump()
	d.signal()
}

// Quarantined reports whether an identity is quarantined.
func (d *Dispatcher) Quarantined(identity string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.quar[clip.String(identity, maxIdentity)] != nil
}

func (d *Dispatcher) quarantine(identity, reason string) {
	if d.quar[identity] != nil {
		return
	}
	d.quar[identity] = &quarantine{reason: reason, since: d.now}
	d.quarSeq = append(d.quarSeq, identity)
	if len(d.quarSeq) > d.cfg.MaxQuarantined {
		old := d.quarSeq[0]
		d.quarSeq = slices.Delete(d.quarSeq, 0, 1)
		delete(d.quar, old)
		for _, s := range d.sessions {
			if s.identity == old {
				s.quarantined = false
			}
		}
	}
	d.counters.Quarantines++
	d.emit(Event{Kind: EventQuarantine, Identity: identity, Reason: reason})

	var touched []*task
	for _, s := range d.sessions {
		if s.identity != identity {
			continue
		}
		s.quarantined = true
		for _, a := range sortedAssigns(s.outstanding) {
			d.unassign(a)
			touched = append(touched, a.task)
		}
	}
	var revote []*task
	for _, js := range d.sortedJobs() {
		for _, t := range js.tasks {
			if t.noVerdict != nil && t.noVerdict.identity == identity {
				// Its failure waited for a retry: the retry's result, or a
				// further copy's, is the task's.
				t.noVerdict = nil
				d.counters.ResultsDiscarded++
				touched = append(touched, t)
			}
			i := slices.IndexFunc(t.votes, func(v vote) bool { return v.identity == identity })
			if i < 0 {
				continue
			}
			t.votes = slices.Delete(t.votes, i, i+1)
			if t.done && !slices.ContainsFunc(t.used, func(v vote) bool { return v.identity == identity }) {
				continue // outvoted already: the task's result does not rest on it
			}
			d.counters.ResultsDiscarded++
			if t.done {
				d.undo(t)
			}
			revote = append(revote, t)
		}
	}
	for _, t := range revote {
		if !t.live() {
			continue
		}
		t.want, t.mismatched, t.noThird = 1, false, false
		if t.verify {
			t.want = 2
		}
		d.evaluate(t)
		touched = append(touched, t)
	}
	for _, t := range touched {
		if d.schedule(t) {
			d.counters.TasksRequeued++
		}
	}
}
