package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/verdict"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// keepRules is how many compiled rule sets a worker holds at once.
const keepRules = 3

// coordinatorSession is the worker's side of one session with the
// coordinator (one stream's state). Only the session goroutine touches it; the
// receive goroutine, task goroutines and compile goroutines report to it
// through channels. The session goroutine is the stream's only sender.
type coordinatorSession struct {
	w      *Worker
	stream fleetv1.FleetService_ConnectClient
	ctx    context.Context // the stream's; cancelled when the session ends
	cancel context.CancelCauseFunc

	queue    []queued                      // assigned, not started
	running  map[uint64]context.CancelFunc // started
	rulesets map[string]*rules.Compiled    // ready rule sets
	lastUse  map[string]time.Time          // for eviction
	// compiling is the hash of the one rule set being compiled, when busy;
	// next is the newest set pushed meanwhile, compiled after it (a newer
	// one replaces it).
	compiling string
	busy      bool
	next      *fleetv1.RuleSet
	draining  bool
	welcomed  bool
	interval  time.Duration
	// maxRequest is the largest message the coordinator takes
	// (Welcome.max_request_bytes within [MinRequestBytes,
	// protocol.MaxRequestBytes]; protocol.LegacyRequestBytes when unsaid).
	maxRequest int

	done     chan taskDone    // from task goroutines
	compiled chan compileDone // from compile goroutines
	fetches  sync.WaitGroup   // downloads ahead (queued tasks)
	pending  []*fleetv1.TaskResult
}

// queued is an assigned task waiting for a slot. The first Threads queued
// tasks download meanwhile (ahead), so that a freed slot starts scanning at
// once instead of waiting on the network.
type queued struct {
	task  *fleetv1.Task
	bound taskBound
	ahead *download // nil until fetchAhead
}

// download is a queued task's download, made while the task waits for a
// slot. Its context ends at the task's bound, at the session's end, or when
// the task is handed back (drop).
type download struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when f is set
	f      *verdict.Fetched
	began  time.Time // when the download started
}

// drop gives up a queued task's download, if any: handed back, the task is
// not this worker's any more.
func (q *queued) drop() {
	if q.ahead != nil {
		q.ahead.cancel()
	}
}

type taskDone struct {
	id     uint64
	result *fleetv1.TaskResult // nil: cancelled, hand it back
}

type compileDone struct {
	hash string
	rs   *rules.Compiled
	err  error
	took time.Duration
}

// session serves one stream until it breaks (error), the coordinator closes it
// after a drain (nil), or ctx ends (drain, then nil).
func (w *Worker) session(ctx context.Context) error {
	// The stream outlives ctx by the drain grace: results of started tasks
	// must still reach the coordinator.
	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stream, err := w.client.Connect(sctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s := &coordinatorSession{
		w: w, stream: stream, ctx: sctx, cancel: cancel,
		running: map[uint64]context.CancelFunc{}, rulesets: map[string]*rules.Compiled{},
		lastUse:    map[string]time.Time{},
		interval:   5 * time.Second,
		maxRequest: protocol.LegacyRequestBytes,
		done:       make(chan taskDone, w.cfg.Threads+4),
		compiled:   make(chan compileDone, 1),
	}
	in := make(chan *fleetv1.ConnectResponse)
	recvDone := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			select {
			case in <- m:
			case <-sctx.Done():
				recvDone <- context.Cause(sctx)
				return
			}
		}
	}()
	err = s.run(ctx, in, recvDone)
	cancel(errSessionOver)
	// Wait for the task and compile goroutines so none outlives the session.
	for len(s.running) > 0 {
		d := <-s.done
		delete(s.running, d.id)
	}
	if s.busy {
		<-s.compiled
	}
	s.fetches.Wait()
	// The engine keeps a plan of each rule set it scanned with, and so the
	// set: no task of this session will use them again.
	for _, rs := range s.rulesets {
		w.forgetRules(rs)
	}
	return err
}

// forgetRules drops what the scan engine keeps of rs.
func (w *Worker) forgetRules(rs *rules.Compiled) {
	if w.verdict.Engine != nil {
		w.verdict.Engine.Forget(rs)
	}
}

var (
	errSessionOver = errors.New("session over")
	errSendStalled = errors.New("coordinator stopped reading: a send blocked for 3 heartbeat intervals")
)

// send sends m. A Send blocked for 3 heartbeat intervals (a coordinator that
// keeps the connection but stops reading) ends the session: Send returns
// only when the stream's context ends, and the stream outlives the worker's
// own context by design, so nothing else would end it.
func (s *coordinatorSession) send(m *fleetv1.ConnectRequest) error {
	stalled := time.AfterFunc(3*s.interval, func() { s.cancel(errSendStalled) })
	err := s.stream.Send(m)
	stalled.Stop()
	if err != nil {
		if context.Cause(s.ctx) == errSendStalled {
			return errSendStalled
		}
		if errors.Is(err, io.EOF) {
			// The real error comes from Recv.
			return errors.New("stream closed by coordinator")
		}
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

func (s *coordinatorSession) run(ctx context.Context, in <-chan *fleetv1.ConnectResponse, recvDone <-chan error) error {
	w := s.w
	if err := s.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
		WorkerId: w.cfg.WorkerID, Version: w.cfg.Version, ProtocolVersion: protocol.Version,
		Slots: uint32(w.cfg.Threads), Host: w.cfg.Host, Mode: fleetv1.WorkerMode_WORKER_MODE_SCAN,
	}}}); err != nil {
		return err
	}
	hb := time.NewTicker(s.interval)
	defer hb.Stop()
	lastHeard := time.Now()
	stopping := ctx.Done()
	var grace <-chan time.Time
	for {
		select {
		case err := <-recvDone:
			if errors.Is(err, io.EOF) && s.draining {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("coordinator closed the stream")
			}
			return fmt.Errorf("receive: %w", err)
		case m := <-in:
			lastHeard = time.Now()
			if err := s.handle(m, hb); err != nil {
				return err
			}
		case d := <-s.done:
			if err := s.finished(d); err != nil {
				return err
			}
			// Batch results that finished together.
			for more := true; more; {
				select {
				case d := <-s.done:
					if err := s.finished(d); err != nil {
						return err
					}
				default:
					more = false
				}
			}
			if err := s.flushResults(); err != nil {
				return err
			}
			if err := s.startTasks(); err != nil {
				return err
			}
		case c := <-s.compiled:
			if err := s.compiledSet(c); err != nil {
				return err
			}
		case <-hb.C:
			if time.Since(lastHeard) > 3*s.interval {
				return errors.New("coordinator missed its heartbeats")
			}
			if err := s.heartbeat(); err != nil {
				return err
			}
		case <-stopping:
			stopping = nil
			w.log.Info("stopping: draining", "running", len(s.running), "queued", len(s.queue), "grace", w.cfg.Grace)
			if err := s.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Draining{Draining: &fleetv1.Draining{}}}); err != nil {
				return err
			}
			if err := s.drain(); err != nil {
				return err
			}
			t := time.NewTimer(w.cfg.Grace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			grace = nil
			w.log.Warn("drain grace over; cancelling started tasks (the coordinator re-dispatches them)", "running", len(s.running))
			for _, cancel := range s.running {
				cancel()
			}
		}
		if s.draining && len(s.running) == 0 && len(s.queue) == 0 && len(s.pending) == 0 {
			// Everything handed back or answered: close our side and wait for
			// the coordinator to close its.
			if err := s.stream.CloseSend(); err != nil {
				return fmt.Errorf("close: %w", err)
			}
			return s.awaitClose(recvDone, in)
		}
	}
}

// finished takes a task goroutine's end: its result waits to be sent, or
// the task, cancelled, is handed back.
func (s *coordinatorSession) finished(d taskDone) error {
	delete(s.running, d.id)
	if d.result != nil {
		s.pending = append(s.pending, d.result)
		return nil
	}
	return s.handBack([]uint64{d.id}, "cancelled")
}

// awaitClose waits (bounded) for the coordinator to end the stream after our
// CloseSend.
func (s *coordinatorSession) awaitClose(recvDone <-chan error, in <-chan *fleetv1.ConnectResponse) error {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case err := <-recvDone:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-in:
		case <-t.C:
			return nil
		}
	}
}

// handle applies one message from the coordinator.
func (s *coordinatorSession) handle(m *fleetv1.ConnectResponse, hb *time.Ticker) error {
	w := s.w
	switch msg := m.GetMsg().(type) {
	case *fleetv1.ConnectResponse_Welcome:
		s.welcome(msg.Welcome, hb)
		w.obs.Connection(true, len(s.rulesets) > 0)
		w.logLimited(w.log, slog.LevelInfo, coordLogBurst, "connected to coordinator", "session", clip.String(msg.Welcome.GetSessionId(), protocol.MaxIDBytes), "slots", w.cfg.Threads,
			"coordinator_version", clip.String(msg.Welcome.GetCoordinatorVersion(), protocol.MaxIDBytes))
	case *fleetv1.ConnectResponse_RuleSet:
		return s.ruleSet(msg.RuleSet)
	case *fleetv1.ConnectResponse_Assign:
		return s.assign(msg.Assign.GetTasks())
	case *fleetv1.ConnectResponse_Drain:
		w.logLimited(w.log, slog.LevelInfo, coordLogBurst, "coordinator asked to drain", "running", len(s.running), "queued", len(s.queue))
		return s.drain()
	case *fleetv1.ConnectResponse_Cancel:
		return s.cancelTasks(msg.Cancel.GetTaskIds())
	case *fleetv1.ConnectResponse_Heartbeat:
	}
	return nil
}

// welcome applies the coordinator's settings, within the worker's bounds
// (logged once per session when a value is out of them).
func (s *coordinatorSession) welcome(m *fleetv1.Welcome, hb *time.Ticker) {
	first := !s.welcomed
	s.welcomed = true
	if d := m.GetHeartbeatInterval().AsDuration(); d > 0 {
		s.interval = min(max(d, MinHeartbeat), MaxHeartbeat)
		hb.Reset(s.interval)
		if first && s.interval != d {
			s.w.log.Warn("coordinator heartbeat interval out of bounds; clamped", "asked", d, "used", s.interval, "min", MinHeartbeat, "max", MaxHeartbeat)
		}
	}
	if n := int64(m.GetMaxRequestBytes()); n > 0 {
		s.maxRequest = int(min(max(n, MinRequestBytes), protocol.MaxRequestBytes))
		if first && int64(s.maxRequest) != n {
			s.w.log.Warn("coordinator message limit out of bounds; clamped", "asked", n, "used", s.maxRequest, "min", MinRequestBytes, "max", protocol.MaxRequestBytes)
		}
	}
}

// assign queues assigned tasks, up to Threads + MaxPrefetch held, and hands
// back the rest (all of them while draining).
func (s *coordinatorSession) assign(tasks []*fleetv1.Task) error {
	w := s.w
	// A task id already held (queued or running) is a coordinator bug;
	// running or handing back the copy would answer that task twice.
	held := make(map[uint64]bool, len(s.queue)+len(s.running))
	for _, q := range s.queue {
		held[q.task.GetTaskId()] = true
	}
	for id := range s.running {
		held[id] = true
	}
	room := w.cfg.Threads + w.cfg.MaxPrefetch - len(s.queue) - len(s.running)
	now := time.Now()
	var back, over, unknown []uint64
	dups := 0
	for _, t := range tasks {
		if held[t.GetTaskId()] {
			dups++
			continue
		}
		held[t.GetTaskId()] = true
		switch {
		case s.draining:
			back = append(back, t.GetTaskId())
		case room <= 0:
			over = append(over, t.GetTaskId())
		case len(t.GetUrl()) > protocol.MaxURLBytes:
			// The coordinator fails such a job itself: it never sends one.
			s.pending = append(s.pending, urlTooLong(t))
			w.obs.TaskDone(s.pending[len(s.pending)-1], "")
		case len(t.GetRulesHash()) > protocol.MaxIDBytes:
			// No such set is ever ready here (ruleSet refuses its hash).
			unknown = append(unknown, t.GetTaskId())
		default:
			s.queue = append(s.queue, queued{task: heldTask(t), bound: w.cfg.boundTask(now)})
			room--
		}
	}
	if dups > 0 {
		w.logLimited(w.log, slog.LevelWarn, coordLogBurst, "coordinator assigned tasks already held; ignoring the copies", "copies", dups)
	}
	if err := s.flushResults(); err != nil {
		return err
	}
	if len(unknown) > 0 {
		if err := s.handBack(unknown, fmt.Sprintf("rules not ready: a rules hash over %d bytes", protocol.MaxIDBytes)); err != nil {
			return err
		}
	}
	if len(back) > 0 {
		if err := s.handBack(back, "draining"); err != nil {
			return err
		}
	}
	if len(over) > 0 {
		limit := w.cfg.Threads + w.cfg.MaxPrefetch
		w.logLimited(w.log, slog.LevelWarn, coordLogBurst, "coordinator assigned more tasks than this worker holds; handing back the rest", "handed_back", len(over), "slots", w.cfg.Threads, "prefetch", w.cfg.MaxPrefetch)
		if err := s.handBack(over, fmt.Sprintf("over credit: this worker holds at most %d tasks (%d slots + %d prefetched)", limit, w.cfg.Threads, w.cfg.MaxPrefetch)); err != nil {
			return err
		}
	}
	return s.startTasks()
}

// cancelTasks stops the tasks the coordinator withdrew (their release
// ended, or another copy answered: a result would be thrown away): a
// queued one is handed back at once, a running one is cancelled (a scan
// stops before its next file) and handed back when it stops (finished).
// Ids not held are ignored: answered meanwhile, or never this worker's.
func (s *coordinatorSession) cancelTasks(ids []uint64) error {
	withdrawn := make(map[uint64]bool, len(ids)) // at most 64 KiB of ids (checkResponse)
	for _, id := range ids {
		withdrawn[id] = true
	}
	back := s.takeQueued(func(t *fleetv1.Task) bool { return withdrawn[t.GetTaskId()] })
	stopped := 0
	for id, cancel := range s.running {
		if withdrawn[id] {
			cancel()
			stopped++
		}
	}
	s.w.log.Debug("coordinator withdrew tasks", "queued", len(back), "running", stopped)
	if len(back) > 0 {
		if err := s.handBack(back, "cancelled by the coordinator"); err != nil {
			return err
		}
	}
	return s.startTasks()
}

// takeQueued takes the queued tasks that match out of the queue, stops
// their downloads ahead, and returns their ids (to hand back).
func (s *coordinatorSession) takeQueued(match func(*fleetv1.Task) bool) []uint64 {
	var ids []uint64
	kept := s.queue[:0]
	for _, q := range s.queue {
		if match(q.task) {
			ids = append(ids, q.task.GetTaskId())
			q.drop()
			continue
		}
		kept = append(kept, q)
	}
	clear(s.queue[len(kept):]) // (their downloads ahead)
	s.queue = kept
	return ids
}

// heldTask is what the worker keeps of an assigned task: its id, URL and
// rules hash (within their bounds, checked by assign) and its job's name
// and version cut for the logs. Not the task itself: a hostile coordinator
// may fill its other fields, or unknown ones, with megabytes, which the
// queue would hold until the task ran.
func heldTask(t *fleetv1.Task) *fleetv1.Task {
	return &fleetv1.Task{
		TaskId: t.GetTaskId(), Url: t.GetUrl(), RulesHash: t.GetRulesHash(),
		Job: &fleetv1.JobRef{Name: clip.String(t.GetJob().GetName(), 256), Version: clip.String(t.GetJob().GetVersion(), 256)},
	}
}

// urlTooLong is the failure of a task whose URL is over
// protocol.MaxURLBytes, which the coordinator fails as a job of its own.
func urlTooLong(t *fleetv1.Task) *fleetv1.TaskResult {
	u := t.GetUrl()
	return &fleetv1.TaskResult{TaskId: t.GetTaskId(), Stats: &fleetv1.TaskStats{}, Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{
		Reason: fmt.Sprintf("distribution %s...: URL of %d bytes: exceeds the limit of %d bytes", clip.String(u, 256), len(u), protocol.MaxURLBytes),
		Kind:   fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD,
	}}}
}

// drain stops taking tasks and hands back the ones not started.
func (s *coordinatorSession) drain() error {
	s.draining = true
	if len(s.queue) == 0 {
		return nil
	}
	ids := make([]uint64, len(s.queue))
	for i := range s.queue {
		ids[i] = s.queue[i].task.GetTaskId()
		s.queue[i].drop()
	}
	s.queue = nil
	return s.handBack(ids, "draining")
}

// handBack returns tasks to the coordinator, in messages below its limit.
func (s *coordinatorSession) handBack(ids []uint64, reason string) error {
	reason = clip.String(reason, protocol.MaxTextBytes)
	// Each id costs at most a 10-byte varint in the packed field.
	per := max((s.maxRequest-envelope-protowire.SizeBytes(len(reason)))/binary.MaxVarintLen64, 1)
	for len(ids) > 0 {
		n := min(len(ids), per)
		if err := s.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_TaskReturn{TaskReturn: &fleetv1.TaskReturn{TaskIds: ids[:n], Reason: reason}}}); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// heartbeat tells the coordinator the tasks held and which are running.
func (s *coordinatorSession) heartbeat() error {
	ids := make([]uint64, 0, len(s.running))
	for id := range s.running {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return s.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{
		TasksHeld: uint32(len(s.queue) + len(s.running)), TasksRunning: uint32(len(s.running)), RunningTaskIds: ids,
	}}})
}

// envelope is what a TaskResults message costs beyond its results.
const envelope = 64

// flushResults sends the pending results in messages below the
// coordinator's limit. A single result too large for any message is sent as
// a failure of its task that says so.
func (s *coordinatorSession) flushResults() error {
	room := s.maxRequest - envelope
	for len(s.pending) > 0 {
		var batch []*fleetv1.TaskResult
		size := 0
		for _, r := range s.pending {
			// runTask fitted it to the limit when the task ended (and the
			// Observer saw it so): cut again only if a later Welcome
			// lowered the limit.
			r = fitMessage(r, s.maxRequest, s.w.log)
			n := protowire.SizeBytes(proto.Size(r))
			if len(batch) > 0 && size+n > room {
				break
			}
			batch = append(batch, r)
			size += n
		}
		s.pending = s.pending[len(batch):]
		if err := s.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: batch}}}); err != nil {
			s.pending = nil
			return err
		}
	}
	s.pending = nil
	return nil
}

// fitMessage returns r, or, when r does not fit in a message of maxRequest
// bytes, the failure of its task that says so (logged).
func fitMessage(r *fleetv1.TaskResult, maxRequest int, log *slog.Logger) *fleetv1.TaskResult {
	n := protowire.SizeBytes(proto.Size(r))
	if n <= maxRequest-envelope {
		return r
	}
	log.Warn("distribution result too large for a message; reported as a failure", "task", r.GetTaskId(), "bytes", n, "limit", maxRequest)
	return tooLarge(r, n, maxRequest)
}

// tooLarge replaces a result that cannot fit in a message by a failure of
// its task naming the cause.
func tooLarge(r *fleetv1.TaskResult, size, max int) *fleetv1.TaskResult {
	return &fleetv1.TaskResult{TaskId: r.GetTaskId(), Stats: r.GetStats(), Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{
		Reason: fmt.Sprintf("distribution result of %d bytes exceeds the %d-byte message limit of the fleet protocol (a file path or rule list that large)", size, max),
		Kind:   fleetv1.FailureKind_FAILURE_KIND_LIMIT, Limit: string(limit.MessageSize),
	}}}
}

// startTasks starts queued tasks while slots are free, and tells the
// coordinator which tasks run now when any started.
func (s *coordinatorSession) startTasks() error {
	started := 0
	defer func() {
		if started > 0 && !s.draining {
			// Best effort: a send error also ends the session through Recv.
			_ = s.heartbeat()
		}
	}()
	for len(s.queue) > 0 && len(s.running) < s.w.cfg.Threads && !s.draining {
		q := s.queue[0]
		t := q.task
		// Cleared, not only sliced off: the backing array would keep the
		// task's download ahead (its whole distribution) alive after the
		// task ends, until an append moves the queue.
		s.queue[0] = queued{}
		s.queue = s.queue[1:]
		if !time.Now().Before(q.bound.at) {
			// Its time is up before it ran: not the distribution's fault.
			q.drop()
			if err := s.handBack([]uint64{t.GetTaskId()}, "its time bound passed while it waited for a slot"); err != nil {
				return err
			}
			continue
		}
		rs, ok := s.rulesets[t.GetRulesHash()]
		if !ok {
			q.drop()
			if err := s.handBack([]uint64{t.GetTaskId()}, "rules "+clip.String(t.GetRulesHash(), 128)+" not ready"); err != nil {
				return err
			}
			continue
		}
		s.lastUse[t.GetRulesHash()] = time.Now()
		maxRequest := s.maxRequest
		ctx, cancel := context.WithCancel(s.ctx)
		s.running[t.GetTaskId()] = cancel
		started++
		go func() {
			defer cancel()
			r := s.w.runTask(ctx, t, rs, q.bound, q.ahead, maxRequest)
			s.done <- taskDone{id: t.GetTaskId(), result: r}
		}()
	}
	s.fetchAheads()
	return nil
}

// fetchAheads starts the downloads of the tasks next in line, one per slot:
// what a coordinator assigns beyond that holds no downloaded bytes here. A
// task whose rules are not ready downloads nothing: unless they are ready
// when a slot frees, it is handed back.
func (s *coordinatorSession) fetchAheads() {
	if s.draining {
		return
	}
	for i := range min(len(s.queue), s.w.cfg.Threads) {
		q := &s.queue[i]
		if _, ready := s.rulesets[q.task.GetRulesHash()]; ready && q.ahead == nil {
			q.ahead = s.fetchAhead(*q)
		}
	}
}

// fetchAhead starts the download of a task that waits for a slot. It ends
// at the task's bound (the cause runTask reads), at the session's end, or
// when the task is handed back.
func (s *coordinatorSession) fetchAhead(q queued) *download {
	ctx, cancel := context.WithDeadlineCause(s.ctx, q.bound.at, &taskTimeError{b: q.bound})
	d := &download{ctx: ctx, cancel: cancel, done: make(chan struct{}), began: time.Now()}
	url := q.task.GetUrl()
	s.fetches.Go(func() {
		defer close(d.done)
		f := s.w.verdict.Fetch(ctx, url)
		// Observed here, taken or not: a task handed back after its
		// download still cost the worker that download.
		if f.Stats.Attempts > 0 || f.Err == nil {
			s.w.obs.Downloaded(f.Stats.Bytes, f.Stats.Duration, f.Err)
		}
		d.f = f
	})
	return d
}

// ruleSet compiles a pushed rule set in the background, one at a time: a
// set pushed while another compiles waits, and a newer one replaces it (the
// coordinator is told the replaced set is evicted, so it assigns no task
// for it here).
func (s *coordinatorSession) ruleSet(rs *fleetv1.RuleSet) error {
	hash := rs.GetHash()
	if len(hash) > protocol.MaxIDBytes {
		// A commit hash is 40 bytes; one of megabytes would go whole into
		// every log line and status about it (a status over the send
		// limit ends the session). Not compiled, not answered.
		s.w.logLimited(s.w.log, slog.LevelError, coordLogBurst, "rule set refused: its hash is too long", "bytes", len(hash), "max", protocol.MaxIDBytes, "hash", clip.String(hash, 64))
		return nil
	}
	if _, ok := s.rulesets[hash]; ok {
		return s.send(rulesStatus(hash, nil, 0, false))
	}
	if err := protocol.CheckRuleSet(rs.GetSources()); err != nil {
		// Not compiled: answered as a set that does not compile.
		s.w.logLimited(s.w.log, slog.LevelError, coordLogBurst, "rule set refused", "hash", hash, "err", err)
		return s.send(rulesStatus(hash, err, 0, false))
	}
	switch {
	case s.busy && s.compiling == hash:
		return nil
	case !s.busy:
		s.startCompile(rs)
		return nil
	}
	old := s.next
	s.next = rs
	if old == nil || old.GetHash() == hash {
		return nil
	}
	s.w.logLimited(s.w.log, slog.LevelWarn, coordLogBurst, "rule set replaced by a newer one before it was compiled", "hash", clip.String(old.GetHash(), 128), "newer", clip.String(hash, 128))
	return s.send(rulesStatus(old.GetHash(), nil, 0, true))
}

// startCompile compiles rs on a goroutine that reports to s.compiled.
func (s *coordinatorSession) startCompile(rs *fleetv1.RuleSet) {
	s.busy, s.compiling = true, rs.GetHash()
	set := rules.Set{Hash: rs.GetHash(), Sources: rs.GetSources()}
	compile := s.w.cfg.compileRules
	go func() {
		start := time.Now()
		c, err := compile(set)
		s.compiled <- compileDone{hash: set.Hash, rs: c, err: err, took: time.Since(start)}
	}()
}

func rulesStatus(hash string, err error, took time.Duration, evicted bool) *fleetv1.ConnectRequest {
	st := &fleetv1.RulesStatus{Hash: hash, CompileTime: durationpb.New(took), Evicted: evicted}
	if err != nil {
		st.Error = clip.Error(err, protocol.MaxTextBytes)
	}
	return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: st}}
}

func (s *coordinatorSession) compiledSet(c compileDone) error {
	s.busy, s.compiling = false, ""
	if s.next != nil {
		s.startCompile(s.next)
		s.next = nil
	}
	s.w.obs.RulesCompiled(c.took, c.err)
	if c.err != nil {
		s.w.logLimited(s.w.log, slog.LevelError, coordLogBurst, "rules do not compile", "hash", c.hash, "err", clip.Error(c.err, protocol.MaxTextBytes))
		return s.send(rulesStatus(c.hash, c.err, c.took, false))
	}
	s.rulesets[c.hash] = c.rs
	s.lastUse[c.hash] = time.Now()
	s.w.obs.Connection(true, true)
	s.w.logLimited(s.w.log, slog.LevelInfo, coordLogBurst, "rules ready", "hash", c.hash, "rules", c.rs.Len(), "compile_time", c.took.Round(time.Millisecond))
	if err := s.send(rulesStatus(c.hash, nil, c.took, false)); err != nil {
		return err
	}
	if err := s.evict(); err != nil {
		return err
	}
	s.fetchAheads()
	return nil
}

// evict drops the least recently used rule sets beyond keepRules, and
// tells the coordinator. Sets no queued task names go first; when every set
// held is named by queued tasks, the least recently used goes anyway and its
// queued tasks are handed back: a coordinator could otherwise queue a task
// for each set before pushing it and keep as many sets as the worker holds
// tasks, each up to protocol.MaxRuleSetBytes of sources, which compile to
// hundreds of MiB. (A running task keeps the set it scans with until it
// ends.)
func (s *coordinatorSession) evict() error {
	for len(s.rulesets) > keepRules {
		inUse := map[string]bool{}
		for _, q := range s.queue {
			inUse[q.task.GetRulesHash()] = true
		}
		var victim string
		found := false
		for h := range s.rulesets {
			switch {
			case !found, inUse[victim] && !inUse[h],
				inUse[victim] == inUse[h] && s.lastUse[h].Before(s.lastUse[victim]):
				victim, found = h, true
			}
		}
		s.w.forgetRules(s.rulesets[victim])
		delete(s.rulesets, victim)
		delete(s.lastUse, victim)
		if err := s.send(rulesStatus(victim, nil, 0, true)); err != nil {
			return err
		}
		if !inUse[victim] {
			continue
		}
		back := s.takeQueued(func(t *fleetv1.Task) bool { return t.GetRulesHash() == victim })
		s.w.logLimited(s.w.log, slog.LevelWarn, coordLogBurst, "rule set evicted while queued tasks named it; handing them back", "hash", clip.String(victim, 128), "tasks", len(back), "kept", keepRules)
		if err := s.handBack(back, fmt.Sprintf("rules %s evicted: this worker holds at most %d rule sets", clip.String(victim, 128), keepRules)); err != nil {
			return err
		}
	}
	return nil
}

// taskBound is when a task must be over, by this worker's clock: its arrival
// plus MaxTaskTime (on the monotonic clock: a step of the wall clock changes
// nothing).
//
// The task's lease deadline is not the bound: the coordinator keeps a job
// whose copies are all out past its lease (up to its MaxJobAge, four leases
// and at least 15 min) and reports it then, so a slow scan is still a verdict; failing
// it at the lease would turn it into a final failure report. MaxTaskTime
// (10 min by default) ends a task before the coordinator gives its job up.
type taskBound struct {
	at    time.Time
	limit time.Duration
}

// boundTask computes the time bound of a task that arrived at arrived.
func (c Config) boundTask(arrived time.Time) taskBound {
	return taskBound{at: arrived.Add(c.MaxTaskTime), limit: c.MaxTaskTime}
}

// taskTimeError is the cause of a task context that reached its bound.
type taskTimeError struct{ b taskBound }

func (e *taskTimeError) Error() string {
	return fmt.Sprintf("task ran past the worker's limit DRAGONFLY_MAX_TASK_TIME (%s)", e.b.limit)
}

// timeFailure is the failure of a distribution whose task ran past its bound.
func timeFailure(name string, err *taskTimeError) *fleetv1.TaskFailure {
	return &fleetv1.TaskFailure{
		Reason: clip.String("distribution "+name+": "+err.Error(), protocol.MaxTextBytes),
		Kind:   fleetv1.FailureKind_FAILURE_KIND_LIMIT,
		Limit:  string(limit.TaskTime),
	}
}

// runTask downloads and scans one distribution through the verdict path
// `dragonfly scan` uses too, within the task's time bound. It returns nil when
// ctx ended first (the task is handed back, not failed); a task that reaches
// its bound fails as the limit "time", and one whose result does not fit in
// a message of maxRequest bytes as the limit "message_size". The Observer
// sees the result returned, once.
func (w *Worker) runTask(ctx context.Context, t *fleetv1.Task, rs *rules.Compiled, b taskBound, ahead *download, maxRequest int) *fleetv1.TaskResult {
	start := time.Now()
	ctx, cancel := context.WithDeadlineCause(ctx, b.at, &taskTimeError{b: b})
	defer cancel()
	res := &fleetv1.TaskResult{TaskId: t.GetTaskId(), Stats: &fleetv1.TaskStats{}}
	log := w.log.With("task", t.GetTaskId(), "job", clip.String(t.GetJob().GetName(), 256),
		"version", clip.String(t.GetJob().GetVersion(), 256), "url", clip.String(t.GetUrl(), 1024))
	log.Debug("distribution started", "downloaded_ahead", ahead != nil)
	// Always a download, also of an empty URL (a hostile coordinator's),
	// which fails as a download; the verdict path refuses a source with
	// nothing in it too.
	var src verdict.Source
	if ahead == nil {
		src.Fetched = w.verdict.Fetch(ctx, t.GetUrl())
	} else {
		// The download started while the task waited: take it, or stop it
		// when the task's context ends first.
		defer ahead.cancel()
		stop := context.AfterFunc(ctx, ahead.cancel)
		<-ahead.done
		stop()
		src.Fetched = ahead.f
	}
	v, err := w.verdict.Scan(ctx, rs, src)
	res.Stats.BytesDownloaded = v.Download.Bytes
	res.Stats.DownloadTime = durationpb.New(v.Download.Duration)
	res.Stats.BytesExpanded = v.Stats.Expanded
	res.Stats.Files = int64(v.Stats.Files)
	res.Stats.ScanTime = durationpb.New(v.Stats.ScanTime)
	if ahead == nil && (v.Download.Attempts > 0 || err == nil) {
		// (A download ahead was observed when it ended.)
		w.obs.Downloaded(v.Download.Bytes, v.Download.Duration, downloadErr(err))
	}
	wall := time.Since(start)
	if ahead != nil {
		// The download ahead is the task's work too: the part of it made
		// before the task started (not the wait for a slot after it ended).
		wall += min(start.Sub(ahead.began), ahead.f.Stats.Duration)
	}
	res.Stats.WallTime = durationpb.New(wall)
	if err != nil {
		var f *fleetv1.TaskFailure
		if cause := cutShort(ctx, ahead); cause != nil {
			// Whatever the download or scan made of the cancellation, the
			// cause decides: the task's bound, or the session's end.
			var te *taskTimeError
			if !errors.As(cause, &te) {
				return nil
			}
			f = timeFailure(v.Name, te)
		} else {
			f = verdict.Failure(v.Name, err)
		}
		res.Outcome = &fleetv1.TaskResult_Failure{Failure: f}
		// Throttled per failure kind and limit: a flood of one hides no
		// other.
		w.logFailure(log, f)
		return w.taskDone(res, maxRequest, log)
	}
	d := &fleetv1.DistributionResult{Score: v.Score, TopFile: v.TopFile, TopFileScore: v.TopScore}
	for _, h := range v.Rules {
		d.Rules = append(d.Rules, &fleetv1.RuleHit{Name: h.Name, Weight: h.Weight})
	}
	res.Outcome = &fleetv1.TaskResult_Distribution{Distribution: d}
	log.Debug("distribution scanned", "score", v.Score, "files", v.Stats.Files, "bytes", v.Stats.Expanded, "scan", v.Stats.ScanTime, "wall", time.Since(start))
	return w.taskDone(res, maxRequest, log)
}

// taskDone fits a task's result to a message of maxRequest bytes and tells
// the Observer of the result that is sent.
func (w *Worker) taskDone(res *fleetv1.TaskResult, maxRequest int, log *slog.Logger) *fleetv1.TaskResult {
	res = fitMessage(res, maxRequest, log)
	w.obs.TaskDone(res, res.GetFailure().GetLimit())
	return res
}

// cutShort is why a task's work was cut short, if it was: the cause that
// ended its context, or the one that ended its download ahead (its bound
// may pass there a moment before it passes for ctx). Nil when neither ended.
func cutShort(ctx context.Context, ahead *download) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if ahead != nil && ahead.ctx.Err() != nil {
		return context.Cause(ahead.ctx)
	}
	return nil
}

// downloadErr is err when the download itself failed, else nil.
func downloadErr(err error) error {
	var de *verdict.DownloadError
	if errors.As(err, &de) {
		return err
	}
	return nil
}
