// Package dispatch is the coordinator's dispatcher: it splits leased jobs
// (releases) into tasks (distributions), hands tasks to worker sessions within
// their credits, re-dispatches the tasks of sessions that end, and aggregates a
// job's distribution results into its one outcome.
//
// The Dispatcher is a state machine behind one mutex. It starts no goroutines
// and never blocks: sessions receive tasks through a non-blocking Sink, and
// finished jobs leave through the Done callback, called without the lock held.
// Time is passed in by the caller, so tests drive it with any clock.
package dispatch

import (
	"container/heap"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/broadcast"
	"github.com/dragonfly-fleet/fleet/score"
)

// Config bounds a Dispatcher.
type Config struct {
	// Prefetch is how many tasks beyond its slots a worker may hold. Default 1.
	Prefetch int
	// MaxDistributions fails jobs with more distributions
	// (DRAGONFLY_MAX_DISTRIBUTIONS). Default 128.
	MaxDistributions int
	// LeaseTimeout is the API's lease (JOB_TIMEOUT). A job with tasks still
	// undispatched this long after its lease is dropped without a report: the
	// API re-leases it. Default 120 s.
	LeaseTimeout time.Duration
	// Done receives every finished job, exactly once per admitted lease,
	// without the dispatcher's lock held. Required.
	Done func(Outcome)
}

// Job is a leased release.
type Job struct {
	Name          string
	Version       string
	Distributions []string
	// Attempt and AssignmentID identify the lease; nil when the API omitted them.
	Attempt      *int
	AssignmentID *string
	// RulesHash is the rules commit the job is scanned with and reported under.
	RulesHash string
	// LeasedAt is when the API handed out the lease.
	LeasedAt time.Time
}

// Key identifies a release: a re-lease of the same release has the same key.
func (j *Job) Key() string { return j.Name + "\x00" + j.Version }

// Deadline is when the job's lease at the API ends.
func (j *Job) Deadline(timeout time.Duration) time.Time { return j.LeasedAt.Add(timeout) }

// Task is one distribution handed to a session.
type Task struct {
	// ID is unique per assignment: a task re-dispatched gets a new ID, so a
	// late result under the old one is recognised and dropped.
	ID        uint64
	URL       string
	RulesHash string
	Name      string
	Version   string
	Attempt   int
	Deadline  time.Time
}

// Result is a session's answer to a task.
type Result struct {
	TaskID uint64
	// Dist is the distribution's result; nil when Failure is set.
	Dist *score.Distribution
	// Failure is a one-line reason the distribution could not be scanned.
	Failure string
	Stats   TaskStats
}

// TaskStats are the worker's numbers for one task.
type TaskStats struct {
	BytesDownloaded int64
	BytesExpanded   int64
	Files           int64
	DownloadTime    time.Duration
	ScanTime        time.Duration
	WallTime        time.Duration
}

// Outcome is a finished job.
type Outcome struct {
	Job Job
	// Failure is set when the job failed: the first failed distribution's reason
	// or a limit of the job itself.
	Failure string
	// Package is the aggregated result (when Failure is empty).
	Package score.Package
	// InspectorURL links the top file; empty when nothing matched.
	InspectorURL string
	// Stats sum the tasks' numbers.
	Stats TaskStats
	// Sessions that returned the job's results.
	Sessions []string
	// Finished is when the last result arrived.
	Finished time.Time
}

// Sink delivers tasks to a session. Send must not block.
type Sink interface {
	Send(tasks []Task)
}

// Dispatcher assigns tasks to sessions. It is safe for concurrent use.
type Dispatcher struct {
	cfg Config

	mu       sync.Mutex
	seq      uint64
	nextID   uint64
	jobs     map[string]*job
	pending  taskHeap
	tasks    map[uint64]*task // outstanding assignments by task ID
	sessions map[string]*session
	rr       uint64 // round-robin counter among equally free sessions
	counters Counters
	done     []Outcome // finished under the lock, delivered after it
	changed  broadcast.Signal
}

// Counters are cumulative event counts.
type Counters struct {
	JobsAdmitted   int64
	JobsSuperseded int64 // re-leases of a job already in flight, merged
	JobsCompleted  int64
	JobsFailed     int64
	JobsDropped    int64 // past their lease with work undispatched
	TasksAssigned  int64
	TasksRequeued  int64 // from ended sessions or hand-backs
	ResultsLate    int64 // for a task no longer assigned to that session
}

type job struct {
	Job
	seq       uint64
	tasks     []*task
	results   []score.Distribution
	remaining int
	finished  bool
	sessions  map[string]bool
	stats     TaskStats
}

type task struct {
	job     *job
	index   int
	id      uint64   // current assignment, 0 when pending
	session *session // nil when pending
	done    bool
	hidx    int // index in the pending heap, -1 when not there
}

type session struct {
	id          string
	slots       int
	ready       map[string]bool
	outstanding map[uint64]*task
	draining    bool
	sink        Sink
	lastPick    uint64
	completed   int64
	joined      time.Time
}

// New returns an empty dispatcher.
func New(cfg Config) *Dispatcher {
	if cfg.Prefetch < 0 {
		cfg.Prefetch = 0
	} else if cfg.Prefetch == 0 {
		cfg.Prefetch = 1
	}
	if cfg.MaxDistributions <= 0 {
		cfg.MaxDistributions = 128
	}
	if cfg.LeaseTimeout <= 0 {
		cfg.LeaseTimeout = 120 * time.Second
	}
	if cfg.Done == nil {
		cfg.Done = func(Outcome) {}
	}
	return &Dispatcher{
		cfg:      cfg,
		jobs:     map[string]*job{},
		tasks:    map[uint64]*task{},
		sessions: map[string]*session{},
	}
}

// Changed returns a channel closed at the next change that may have grown
// capacity or shrunk the work in flight: a session joined or got rules ready, a
// task finished or was handed back, a job ended. Take it before checking.
func (d *Dispatcher) Changed() <-chan struct{} { return d.changed.Wait() }

func (d *Dispatcher) signal() { d.changed.Notify() }

// unlock releases the lock and then delivers finished jobs.
func (d *Dispatcher) unlock() {
	done := d.done
	d.done = nil
	d.mu.Unlock()
	for _, o := range done {
		d.cfg.Done(o)
	}
}

// Join adds a session with the given slots. Its tasks arrive through sink.
func (d *Dispatcher) Join(id string, slots int, sink Sink, now time.Time) error {
	d.mu.Lock()
	defer d.unlock()
	if _, ok := d.sessions[id]; ok {
		return fmt.Errorf("session %q already joined", id)
	}
	d.sessions[id] = &session{
		id: id, slots: max(slots, 1), ready: map[string]bool{},
		outstanding: map[uint64]*task{}, sink: sink, joined: now,
	}
	return nil
}

// RulesReady records that a session can scan with the rules hash.
func (d *Dispatcher) RulesReady(id, hash string) {
	d.mu.Lock()
	defer d.unlock()
	s := d.sessions[id]
	if s == nil {
		return
	}
	s.ready[hash] = true
	d.pump()
	d.signal()
}

// ForgetRulesAt records that a session no longer holds a rules hash.
func (d *Dispatcher) ForgetRulesAt(id, hash string) {
	d.mu.Lock()
	defer d.unlock()
	if s := d.sessions[id]; s != nil {
		delete(s.ready, hash)
	}
}

// Drain stops assigning tasks to a session.
func (d *Dispatcher) Drain(id string) {
	d.mu.Lock()
	defer d.unlock()
	if s := d.sessions[id]; s != nil {
		s.draining = true
	}
}

// Leave ends a session: its outstanding tasks go back to the front of the
// queue and to other sessions at once.
func (d *Dispatcher) Leave(id string) {
	d.mu.Lock()
	defer d.unlock()
	s := d.sessions[id]
	if s == nil {
		return
	}
	delete(d.sessions, id)
	for tid, t := range s.outstanding {
		delete(d.tasks, tid)
		d.requeue(t)
	}
	d.pump()
	d.signal()
}

// Returned re-queues tasks a session handed back without running them.
func (d *Dispatcher) Returned(id string, taskIDs []uint64) {
	d.mu.Lock()
	defer d.unlock()
	s := d.sessions[id]
	if s == nil {
		return
	}
	for _, tid := range taskIDs {
		t := d.tasks[tid]
		if t == nil || t.session != s {
			continue
		}
		delete(d.tasks, tid)
		delete(s.outstanding, tid)
		d.requeue(t)
	}
	d.pump()
	d.signal()
}

// requeue puts an unfinished task of a live job back in the queue.
func (d *Dispatcher) requeue(t *task) {
	t.session, t.id = nil, 0
	if t.job.finished || t.done {
		return
	}
	d.counters.TasksRequeued++
	heap.Push(&d.pending, t)
}

// Admit adds leased jobs. A job whose release is already in flight (the API
// re-leased it) takes over the new lease identity and keeps its progress.
func (d *Dispatcher) Admit(jobs []Job, now time.Time) {
	d.mu.Lock()
	defer d.unlock()
	for _, j := range jobs {
		if old := d.jobs[j.Key()]; old != nil {
			old.Attempt, old.AssignmentID, old.LeasedAt = j.Attempt, j.AssignmentID, j.LeasedAt
			d.counters.JobsSuperseded++
			continue
		}
		d.counters.JobsAdmitted++
		d.seq++
		js := &job{Job: j, seq: d.seq, sessions: map[string]bool{}}
		switch {
		case len(j.Distributions) > d.cfg.MaxDistributions:
			d.finish(js, fmt.Sprintf("%d distributions: exceeds limit DRAGONFLY_MAX_DISTRIBUTIONS (%d distributions)", len(j.Distributions), d.cfg.MaxDistributions), now)
			continue
		case len(j.Distributions) == 0:
			d.finish(js, "", now)
			continue
		}
		d.jobs[j.Key()] = js
		js.results = make([]score.Distribution, len(j.Distributions))
		js.remaining = len(j.Distributions)
		for i := range j.Distributions {
			t := &task{job: js, index: i, hidx: -1}
			js.tasks = append(js.tasks, t)
			heap.Push(&d.pending, t)
		}
	}
	d.pump()
}

// Result records a session's result. A result for a task that is no longer
// assigned to that session (re-dispatched meanwhile) is dropped.
func (d *Dispatcher) Result(id string, r Result, now time.Time) {
	d.mu.Lock()
	defer d.unlock()
	s := d.sessions[id]
	t := d.tasks[r.TaskID]
	if s == nil || t == nil || t.session != s {
		d.counters.ResultsLate++
		return
	}
	delete(d.tasks, r.TaskID)
	delete(s.outstanding, r.TaskID)
	s.completed++
	t.session, t.id, t.done = nil, 0, true
	js := t.job
	if !js.finished {
		js.sessions[id] = true
		js.stats.add(r.Stats)
		if r.Dist == nil {
			reason := r.Failure
			if reason == "" {
				reason = "distribution " + js.Distributions[t.index] + ": scan failed"
			}
			d.finish(js, reason, now)
		} else {
			js.results[t.index] = *r.Dist
			js.remaining--
			if js.remaining == 0 {
				d.finish(js, "", now)
			}
		}
	}
	d.pump()
	d.signal()
}

// Expire drops jobs whose lease ended while some of their tasks were still
// waiting for a worker: the API will lease them again, to us or to another
// client, so a report from us would only conflict. It returns the dropped jobs.
func (d *Dispatcher) Expire(now time.Time) []Job {
	d.mu.Lock()
	defer d.unlock()
	var dropped []Job
	for key, js := range d.jobs {
		if now.Before(js.Deadline(d.cfg.LeaseTimeout)) {
			continue
		}
		waiting := false
		for _, t := range js.tasks {
			if !t.done && t.session == nil {
				waiting = true
				break
			}
		}
		if !waiting {
			continue
		}
		js.finished = true
		d.removePending(js)
		delete(d.jobs, key)
		d.counters.JobsDropped++
		dropped = append(dropped, js.Job)
	}
	if len(dropped) > 0 {
		d.signal()
	}
	return dropped
}

// finish ends a job with its outcome: it stops its waiting tasks (running ones
// finish as orphans; their results are ignored) and queues the outcome.
func (d *Dispatcher) finish(js *job, failure string, now time.Time) {
	js.finished = true
	d.removePending(js)
	delete(d.jobs, js.Key())
	o := Outcome{Job: js.Job, Failure: failure, Stats: js.stats, Finished: now}
	for s := range js.sessions {
		o.Sessions = append(o.Sessions, s)
	}
	slices.Sort(o.Sessions)
	if failure != "" {
		d.counters.JobsFailed++
		o.Package = score.Package{Top: -1, RulesMatched: []string{}}
	} else {
		d.counters.JobsCompleted++
		o.Package = score.Aggregate(js.results)
		if o.Package.Top >= 0 && o.Package.TopFile != "" {
			o.InspectorURL = score.InspectorURL(js.Name, js.Version, js.Distributions[o.Package.Top], o.Package.TopFile)
		}
	}
	d.done = append(d.done, o)
}

func (d *Dispatcher) removePending(js *job) {
	for _, t := range js.tasks {
		if t.hidx >= 0 {
			heap.Remove(&d.pending, t.hidx)
		}
	}
}

// pump assigns waiting tasks, oldest job first, to the sessions with the most
// free credits that have the task's rules ready.
func (d *Dispatcher) pump() {
	if d.pending.Len() == 0 || !d.anyFree() {
		return
	}
	var (
		skipped []*task
		batches = map[*session][]Task{}
	)
	for d.pending.Len() > 0 {
		t := heap.Pop(&d.pending).(*task)
		s := d.pick(t.job.RulesHash)
		if s == nil {
			skipped = append(skipped, t)
			if !d.anyFree() {
				break
			}
			continue
		}
		d.nextID++
		t.id, t.session = d.nextID, s
		s.outstanding[t.id] = t
		d.tasks[t.id] = t
		d.counters.TasksAssigned++
		attempt := 0
		if t.job.Attempt != nil {
			attempt = *t.job.Attempt
		}
		batches[s] = append(batches[s], Task{
			ID: t.id, URL: t.job.Distributions[t.index], RulesHash: t.job.RulesHash,
			Name: t.job.Name, Version: t.job.Version, Attempt: attempt,
			Deadline: t.job.Deadline(d.cfg.LeaseTimeout),
		})
	}
	for _, t := range skipped {
		heap.Push(&d.pending, t)
	}
	for s, b := range batches {
		s.sink.Send(b)
	}
}

func (d *Dispatcher) free(s *session) int {
	if s.draining || len(s.ready) == 0 {
		return 0
	}
	return s.slots + d.cfg.Prefetch - len(s.outstanding)
}

func (d *Dispatcher) anyFree() bool {
	for _, s := range d.sessions {
		if d.free(s) > 0 {
			return true
		}
	}
	return false
}

// pick returns the session with the most free credits ready for hash, the
// least recently picked among equals; nil if none.
func (d *Dispatcher) pick(hash string) *session {
	var best *session
	bestFree := 0
	for _, s := range d.sessions {
		f := d.free(s)
		if f <= 0 || !s.ready[hash] {
			continue
		}
		if best == nil || f > bestFree || (f == bestFree && s.lastPick < best.lastPick) {
			best, bestFree = s, f
		}
	}
	if best != nil {
		d.rr++
		best.lastPick = d.rr
	}
	return best
}

// Capacity is how many more tasks the fleet could start now: the free credits
// of the sessions that have rules ready, minus the tasks already waiting.
func (d *Dispatcher) Capacity() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	free := 0
	for _, s := range d.sessions {
		free += d.free(s)
	}
	return free - d.pending.Len()
}

// Has reports whether a release is in flight.
func (d *Dispatcher) Has(name, version string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.jobs[(&Job{Name: name, Version: version}).Key()]
	return ok
}

// SessionInfo describes a session for operators.
type SessionInfo struct {
	ID          string
	Slots       int
	Outstanding int
	Draining    bool
	RulesReady  []string
	Completed   int64
	Joined      time.Time
}

// Snapshot describes the dispatcher's state for operators.
type Snapshot struct {
	Sessions []SessionInfo
	// JobsInFlight are admitted jobs not finished yet.
	JobsInFlight int
	// TasksWaiting wait for a worker; OldestWaiting is the lease time of the
	// oldest job with a waiting task (zero when none).
	TasksWaiting  int
	OldestWaiting time.Time
	TasksRunning  int
	SlotsTotal    int
	Counters      Counters
}

// Snapshot returns the current state.
func (d *Dispatcher) Snapshot() Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	snap := Snapshot{JobsInFlight: len(d.jobs), TasksWaiting: d.pending.Len(), TasksRunning: len(d.tasks), Counters: d.counters}
	if d.pending.Len() > 0 {
		snap.OldestWaiting = d.pending[0].job.LeasedAt
	}
	for _, s := range d.sessions {
		info := SessionInfo{ID: s.id, Slots: s.slots, Outstanding: len(s.outstanding), Draining: s.draining, Completed: s.completed, Joined: s.joined}
		for h := range s.ready {
			info.RulesReady = append(info.RulesReady, h)
		}
		slices.Sort(info.RulesReady)
		snap.Sessions = append(snap.Sessions, info)
		snap.SlotsTotal += s.slots
	}
	slices.SortFunc(snap.Sessions, func(a, b SessionInfo) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return snap
}

func (s *TaskStats) add(o TaskStats) {
	s.BytesDownloaded += o.BytesDownloaded
	s.BytesExpanded += o.BytesExpanded
	s.Files += o.Files
	s.DownloadTime += o.DownloadTime
	s.ScanTime += o.ScanTime
	s.WallTime = max(s.WallTime, o.WallTime)
}

// taskHeap orders waiting tasks: oldest job first, then distribution order.
type taskHeap []*task

func (h taskHeap) Len() int { return len(h) }
func (h taskHeap) Less(i, j int) bool {
	if h[i].job.seq != h[j].job.seq {
		return h[i].job.seq < h[j].job.seq
	}
	return h[i].index < h[j].index
}
func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *taskHeap) Push(x any) {
	t := x.(*task)
	t.hidx = len(*h)
	*h = append(*h, t)
}
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.hidx = -1
	*h = old[:len(old)-1]
	return t
}
