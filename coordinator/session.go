package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// workerSession is the coordinator's side of one worker's session (its
// stream). Three goroutines serve it: the handler
// (Connect) runs the session and alone talks to the dispatcher for it; a
// receive goroutine feeds it the worker's messages; a send goroutine is the
// stream's only sender, fed by the session's queues. The handler never
// blocks on the worker: a send that gRPC flow control holds too long (the
// worker stopped reading) ends the session.
type workerSession struct {
	info     SessionInfo
	notify   chan struct{} // capacity 1: queued output waiting
	lastSeen atomic.Int64  // unix nanos of the last message from the worker (shown)
	// heard is when the last message from the worker came (Coordinator.mono);
	// its silence is measured from it.
	heard atomic.Int64
	// sendingSince is when the Send in progress began, or the wait for the
	// shared rule-set send budget before it (Coordinator.mono); 0 when the
	// send goroutine is not inside either.
	sendingSince atomic.Int64
	// waitingBudget is set while the send goroutine waits for the budget.
	waitingBudget atomic.Bool
	weights       *rulesManager // holds the weights of the tasks' rules

	mu        sync.Mutex
	ctrl      []*fleetv1.ConnectResponse // Welcome, Drain
	heartbeat bool                       // a heartbeat is queued
	rules     *fleetv1.RuleSet           // the newest rule set not yet sent
	tasks     []dispatch.Task
	cancels   []uint64          // tasks withdrawn, sent after the queued tasks
	offered   map[string]bool   // rule hashes sent or queued to this worker
	offerSeq  []string          // offered's hashes, oldest first (at most maxOffered)
	taskRules map[uint64]string // rules hash of each task assigned, until its answer
	recent    recentTasks       // tasks answered or handed back lately
	over      bool              // the session ended: its holds are released
}

// Send implements dispatch.Sink: it queues tasks for the send goroutine. The
// weights of each task's rules are held until the task is answered.
func (s *workerSession) Send(ts []dispatch.Task) {
	s.mu.Lock()
	if s.over {
		s.mu.Unlock()
		return
	}
	s.tasks = append(s.tasks, ts...)
	for _, t := range ts {
		s.taskRules[t.ID] = t.RulesHash
		s.weights.hold(t.RulesHash)
	}
	s.mu.Unlock()
	s.wake()
}

// Cancel implements dispatch.Canceller: it queues a Cancel of tasks for the
// send goroutine, sent after any Assign still queued (which may carry them).
// The dispatcher withdraws only copies it holds at this session: at most
// slots + prefetch of them at once.
func (s *workerSession) Cancel(ids []uint64) {
	s.mu.Lock()
	if s.over {
		s.mu.Unlock()
		return
	}
	s.cancels = append(s.cancels, ids...)
	s.mu.Unlock()
	s.wake()
}

// answered forgets a task the session holds and returns its rules hash,
// whose weights the caller must release; held is false for a task the
// session does not hold.
func (s *workerSession) answered(id uint64) (hash string, held bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.taskRules[id]
	if !ok {
		return "", false
	}
	delete(s.taskRules, id)
	s.recent.add(id)
	return h, true
}

// heldLately reports whether the session answered or handed back a task
// lately (one of its last recentTaskIDs).
func (s *workerSession) heldLately(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recent.has(id)
}

// end releases the weights held for the tasks not answered; the session
// takes no more tasks.
func (s *workerSession) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.over = true
	for id, h := range s.taskRules {
		s.weights.release(h)
		delete(s.taskRules, id)
	}
}

// recentTaskIDs is how many answered or handed-back task ids a session
// remembers: a repeated answer of one of them is dropped quietly, an answer
// for any other task the session never held ends the session.
const recentTaskIDs = 1024

// recentTasks is a ring of the last recentTaskIDs task ids (8 KiB when
// full, grown as needed).
type recentTasks struct {
	ids  []uint64
	next int
}

func (r *recentTasks) add(id uint64) {
	if len(r.ids) < recentTaskIDs {
		r.ids = append(r.ids, id)
		return
	}
	r.ids[r.next] = id
	r.next = (r.next + 1) % recentTaskIDs
}

func (r *recentTasks) has(id uint64) bool { return slices.Contains(r.ids, id) }

func (s *workerSession) push(m *fleetv1.ConnectResponse) {
	s.mu.Lock()
	s.ctrl = append(s.ctrl, m)
	s.mu.Unlock()
	s.wake()
}

// pushHeartbeat queues a heartbeat unless one is waiting already (a worker
// that does not read must not make the queue grow).
func (s *workerSession) pushHeartbeat() {
	s.mu.Lock()
	queued := s.heartbeat
	s.heartbeat = true
	s.mu.Unlock()
	if !queued {
		s.wake()
	}
}

// maxOffered bounds the rules hashes a session remembers as offered; beyond
// it the oldest is forgotten (offered again if the fleet goes back to it). A
// worker that never reports a set evicted, or fails to compile every new
// one, would otherwise grow the session by one hash per rules change for as
// long as it stays connected.
const maxOffered = 16

// offerRules queues a rule set, replacing one not yet sent (which the
// worker never gets: it is no longer counted as offered). It reports
// whether the set is new to this worker.
func (s *workerSession) offerRules(set *fleetv1.RuleSet) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.offered[set.GetHash()] {
		return false
	}
	if s.rules != nil {
		s.forgetOfferLocked(s.rules.GetHash())
	}
	s.offered[set.GetHash()] = true
	s.offerSeq = append(s.offerSeq, set.GetHash())
	if len(s.offerSeq) > maxOffered {
		delete(s.offered, s.offerSeq[0])
		s.offerSeq = slices.Delete(s.offerSeq, 0, 1)
	}
	s.rules = set
	s.wake()
	return true
}

// forgetOffer forgets that a rules hash was offered: the worker evicted it
// (or dropped it uncompiled for a newer one), so it is offered again when
// the fleet goes back to it.
func (s *workerSession) forgetOffer(hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetOfferLocked(hash)
}

func (s *workerSession) forgetOfferLocked(hash string) {
	if !s.offered[hash] {
		return
	}
	delete(s.offered, hash)
	s.offerSeq = slices.DeleteFunc(s.offerSeq, func(h string) bool { return h == hash })
}

// wasOffered reports whether a rules hash was sent or queued to this worker.
func (s *workerSession) wasOffered(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offered[hash]
}

func (s *workerSession) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// maxTasksPerAssign bounds one Assign message (task URLs come from the API).
const maxTasksPerAssign = 256

// take returns the queued output in order: control messages, the rule set,
// a heartbeat, the queued tasks in Assign messages, then the tasks
// withdrawn (after the Assign of any of them).
func (s *workerSession) take() []*fleetv1.ConnectResponse {
	s.mu.Lock()
	out := s.ctrl
	rs, hb, tasks, cancels := s.rules, s.heartbeat, s.tasks, s.cancels
	s.ctrl, s.rules, s.heartbeat, s.tasks, s.cancels = nil, nil, false, nil, nil
	s.mu.Unlock()
	if rs != nil {
		out = append(out, &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: rs}})
	}
	if hb {
		out = append(out, &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}})
	}
	for len(tasks) > 0 {
		n := min(len(tasks), maxTasksPerAssign)
		a := &fleetv1.Assign{Tasks: make([]*fleetv1.Task, n)}
		for i, t := range tasks[:n] {
			a.Tasks[i] = &fleetv1.Task{
				TaskId: t.ID, Url: t.URL, RulesHash: t.RulesHash,
				Job:           &fleetv1.JobRef{Name: t.Name, Version: t.Version, Attempt: int64(t.Attempt)},
				LeaseDeadline: timestamppb.New(t.Deadline),
			}
		}
		out = append(out, &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: a}})
		tasks = tasks[n:]
	}
	if len(cancels) > 0 {
		out = append(out, &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Cancel{Cancel: &fleetv1.Cancel{TaskIds: cancels}}})
	}
	return out
}

func ruleSetMsg(set rules.Set) *fleetv1.RuleSet {
	return &fleetv1.RuleSet{Hash: set.Hash, Sources: set.Sources}
}

// rulesChanged offers a new rule set to every session (which compiles it:
// the dispatcher is told, for spot checks that may wait for it).
//
// The dispatcher hears of an offer before the worker can: an answer (a
// compile error, quick for a set that does not parse) must not come first
// and leave the session counted as compiling.
func (c *Coordinator) rulesChanged(set rules.Set) {
	msg := ruleSetMsg(set)
	var fresh []*workerSession
	c.mu.Lock()
	for _, s := range c.sessions {
		if !s.wasOffered(set.Hash) {
			fresh = append(fresh, s)
		}
	}
	c.mu.Unlock()
	now := c.cfg.Now()
	for _, s := range fresh {
		c.disp.RulesOffered(s.info.SessionID, set.Hash, now)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		s.offerRules(msg)
	}
}

// Why sessions end, as the handler reports them.
var (
	// errSilent ends a session whose worker missed its heartbeats.
	errSilent = errors.New("worker missed its heartbeats")
	// errStalled ends a session whose worker stopped reading.
	errStalled = errors.New("worker stopped reading: a send was held by flow control")
	// errBudgetWait ends a session whose rule-set send waited for the shared
	// send budget longer than the send timeout.
	errBudgetWait = errors.New("the rule set could not be sent within the send timeout: the shared rule-set send budget stayed taken")
)

// Connect serves one worker session. See the contract in fleet.proto.
func (c *Coordinator) Connect(stream fleetv1.FleetService_ConnectServer) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	in := make(chan *fleetv1.ConnectRequest)
	// recvErr keeps why receiving failed: gRPC may cancel the stream's
	// context before Recv returns (a message over the receive limit), and
	// the session must end with the real cause, not "cancelled".
	var recvErr atomic.Pointer[error]
	recvDone := make(chan struct{})
	c.streams.Go(func() {
		// The receive goroutine ends when the stream does (the handler
		// returning cancels the stream's context).
		defer close(recvDone)
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr.Store(&err)
				cancel(err)
				return
			}
			select {
			case in <- m:
			case <-ctx.Done():
				return
			}
		}
	})

	silence := time.Duration(c.cfg.HeartbeatMisses) * c.cfg.HeartbeatInterval
	hello, err := awaitHello(ctx, in, silence)
	if err != nil {
		return err
	}
	s, err := c.admitSession(ctx, hello)
	if err != nil {
		return err
	}
	log := c.log.With("session", s.info.SessionID, "worker_id", s.info.WorkerID, "identity", s.info.Identity, "host", s.info.Host)
	c.sessionLog(log, slog.LevelInfo, s.info.Identity, "connected", "worker connected", "slots", s.info.Slots, "version", s.info.Version)

	sendFailed := make(chan error, 1)
	c.streams.Go(func() {
		c.streamSender(ctx, stream, s, sendFailed)
	})
	err, why := c.serve(ctx, s, in, sendFailed)
	cancel(errSessionOver)
	if status.Code(err) == codes.Canceled {
		// The stream's own context ended, so Recv returns (or has).
		<-recvDone
		if re := recvErr.Load(); re != nil {
			if _, ok := status.FromError(*re); ok && status.Code(*re) != codes.Canceled {
				err = *re
			}
		}
	}

	c.forgetSession(s)
	held := c.disp.Outstanding(s.info.SessionID)
	c.disp.Leave(s.info.SessionID, why)
	s.end()
	if errors.Is(err, errStalled) || status.Convert(err).Message() == errStalled.Error() {
		until := c.guard.strike(s.info.Identity, c.cfg.Now())
		log.Warn("worker refused for a while: its session stalled", "until", until)
	}
	c.obs.SessionEnded(s.info, err)
	if err != nil {
		c.sessionLog(log, slog.LevelWarn, s.info.Identity, "ended", "worker session ended; its tasks were re-dispatched", "tasks", held, "err", clip.Error(err, protocol.MaxTextBytes))
	} else {
		// A kind apart from a broken session's: clean ends (restarts, a
		// rolling update) must not hold back the warning of one that broke.
		c.sessionLog(log, slog.LevelInfo, s.info.Identity, "disconnected", "worker disconnected", "tasks_redispatched", held)
	}
	return err
}

// A line of one kind about one identity's sessions is logged at most
// sessionLogBurst times per sessionLogEvery: an honest worker that
// reconnects after a cut or a coordinator restart is logged each time. A
// kind is logged at most sessionKindBurst times per sessionLogEvery over
// all identities.
const (
	sessionLogEvery  = time.Minute
	sessionLogBurst  = 4
	sessionKindBurst = 32
)

// sessionLog logs a line of kind about a session of identity at most
// sessionLogBurst times per sessionLogEvery; the first line after says how
// many were held back ("suppressed"). A token holder ending its sessions at
// once (a protocol violation after Hello, a refused Hello), again and
// again, wrote two lines per session at the pace of its round trips; now
// at most 8 a minute for one identity (12 mixing clean ends, a kind of
// their own: they must not hold back a broken session's warning), and
// under a new worker id for each session at most sessionKindBurst a minute
// of each kind (it was about 1,024: the throttle's keys, the rest sharing
// one). The same goes for what a worker may say in every message of a session (its
// rules do not compile, it is draining): a line each, of up to 4 KiB.
// Sessions, their ends and refusals are all counted in metrics.
func (c *Coordinator) sessionLog(log *slog.Logger, level slog.Level, identity, kind, msg string, attrs ...any) {
	ok, held := c.sessionLogs.AllowIn(kind, sessionKindBurst, kind+"\x00"+identity, sessionLogBurst, c.cfg.Now())
	if !ok {
		return
	}
	log.Log(context.Background(), level, msg, append(attrs, "suppressed", held)...)
}

var errSessionOver = errors.New("session over")

// forgetSession takes an ended session out of the coordinator's sessions.
func (c *Coordinator) forgetSession(s *workerSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, s.info.SessionID)
	if c.perIdentity[s.info.Identity]--; c.perIdentity[s.info.Identity] <= 0 {
		delete(c.perIdentity, s.info.Identity)
	}
}

func awaitHello(ctx context.Context, in <-chan *fleetv1.ConnectRequest, timeout time.Duration) (*fleetv1.Hello, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-in:
		h := m.GetHello()
		if h == nil {
			return nil, status.Error(codes.InvalidArgument, "the first message must be Hello")
		}
		if h.GetProtocolVersion() != protocol.Version {
			return nil, status.Errorf(codes.FailedPrecondition, "protocol version %d not supported: this coordinator speaks version %d; run workers of the coordinator's release (or one release apart)",
				h.GetProtocolVersion(), protocol.Version)
		}
		if h.GetSlots() == 0 {
			return nil, status.Error(codes.InvalidArgument, "hello: slots must be at least 1")
		}
		if h.GetWorkerId() == "" {
			return nil, status.Error(codes.InvalidArgument, "hello: empty worker id")
		}
		return h, nil
	case <-t.C:
		return nil, status.Error(codes.DeadlineExceeded, "no hello from worker")
	case <-ctx.Done():
		return nil, streamErr(context.Cause(ctx))
	}
}

// admitSession checks a Hello against the coordinator's limits and registers
// the session, or refuses it. Refusals for load or misbehaviour are
// ResourceExhausted or Unavailable (retry later), never Unauthenticated or
// PermissionDenied, which tell a worker its configuration is wrong.
func (c *Coordinator) admitSession(ctx context.Context, h *fleetv1.Hello) (*workerSession, error) {
	if c.isDraining() {
		// It could get no task: neither Welcome nor the rule set (a worker
		// told to drain would reconnect and compile it again and again).
		return nil, status.Error(codes.Unavailable, "the coordinator is shutting down: it takes no new sessions while it drains")
	}
	now := c.cfg.Now()
	workerID := clip.String(h.GetWorkerId(), protocol.MaxIDBytes)
	ident := identity(ctx, workerID)
	switch h.GetMode() {
	case fleetv1.WorkerMode_WORKER_MODE_SCAN:
	case fleetv1.WorkerMode_WORKER_MODE_UNSPECIFIED:
		// A worker of the previous release (e7010a8; the mode came with
		// this release). Its walk gives other verdicts than this release's
		// for any rule set (it skips tar hard links, which pip writes and
		// the spec counts: a filetype rule's malware in a hard-linked
		// setup.py reads clean; it scans member paths over 4,096 bytes,
		// which this release fails), and the coordinator cannot tell from
		// its results: refused, saying so, rather than trusted.
		c.sessionLog(c.log, slog.LevelError, ident, "refused", "worker refused: it is of the previous release (its Hello has no mode), whose verdicts differ from this release's; upgrade it",
			"worker_id", workerID, "version", clip.String(h.GetVersion(), protocol.MaxIDBytes))
		return nil, status.Errorf(codes.FailedPrecondition, "this coordinator (release %s) does not use workers of the previous release (a Hello without a mode): they skip tar hard links and scan over-long member paths, so their verdicts differ; upgrade the worker",
			clip.String(c.cfg.Version, 64))
	default:
		if !c.cfg.AcceptNonScanningWorkers {
			c.sessionLog(c.log, slog.LevelError, ident, "refused", "worker refused: it announced a non-scanning mode", "worker_id", workerID, "mode", h.GetMode().String())
			return nil, status.Errorf(codes.PermissionDenied, "worker mode %s is not accepted: only real scans may become verdicts", h.GetMode())
		}
	}
	if until, refused := c.guard.refused(ident, now); refused {
		return nil, status.Errorf(codes.Unavailable, "worker %s is refused until %s: its recent sessions stalled (it stopped reading)", ident, until.UTC().Format(time.RFC3339))
	}
	// Compared as ints: the cap converted to the claim's uint32 wrapped
	// (4294967296 capped every worker to 0 slots).
	slots := min(int(h.GetSlots()), c.cfg.MaxWorkerSlots)
	if int(h.GetSlots()) > slots {
		c.sessionLog(c.log, slog.LevelWarn, ident, "slots", "worker slots capped", "worker_id", workerID, "asked", h.GetSlots(), "slots", slots)
	}
	c.mu.Lock()
	if int64(len(c.sessions)) >= c.maxSessions.Load() {
		c.mu.Unlock()
		return nil, status.Errorf(codes.ResourceExhausted, "the coordinator serves its maximum of %d workers (DRAGONFLY_MAX_WORKERS)", c.maxSessions.Load())
	}
	if n := c.perIdentity[ident]; int64(n) >= c.maxPerIdentity.Load() {
		c.mu.Unlock()
		c.refusals.identityCap.Add(1)
		return nil, status.Errorf(codes.ResourceExhausted, "identity %s holds its maximum of %d sessions (DRAGONFLY_MAX_SESSIONS_PER_IDENTITY); workers behind one address share an identity",
			clip.String(ident, 128), n)
	}
	c.nextSess++
	s := &workerSession{
		notify:    make(chan struct{}, 1),
		offered:   map[string]bool{},
		taskRules: map[uint64]string{},
		weights:   c.rules,
		info: SessionInfo{
			SessionID: fmt.Sprintf("s%d-%s", c.nextSess, clip.String(workerID, 64)),
			WorkerID:  workerID, Identity: ident,
			Host: clip.String(h.GetHost(), protocol.MaxIDBytes), Version: clip.String(h.GetVersion(), protocol.MaxIDBytes),
			Slots: slots, Started: now,
		},
	}
	s.lastSeen.Store(now.UnixNano())
	s.heard.Store(c.mono())
	// Welcome and the current rules go first; a rules change from now on
	// reaches the session through rulesChanged.
	s.push(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{
		SessionId: s.info.SessionID, HeartbeatInterval: durationpb.New(c.cfg.HeartbeatInterval), CoordinatorVersion: c.cfg.Version,
		MaxRequestBytes: protocol.MaxRequestBytes, MaxResponseBytes: protocol.MaxResponseBytes,
	}}})
	if set := c.rules.current(); set.Hash != "" {
		s.offerRules(ruleSetMsg(set))
	}
	c.sessions[s.info.SessionID] = s
	c.perIdentity[ident]++
	c.mu.Unlock()
	if err := c.disp.Join(s.info.SessionID, ident, slots, s, now); err != nil {
		c.forgetSession(s)
		s.end()
		return nil, status.Error(codes.Internal, err.Error())
	}
	if set := c.rules.current(); set.Hash != "" {
		// It compiles them now: spot checks may wait for it (compileWait).
		c.disp.RulesOffered(s.info.SessionID, set.Hash, now)
	}
	c.obs.SessionStarted(s.info)
	return s, nil
}

// streamSender is the stream's only sender: it sends what the session queues
// until ctx ends or a send fails.
func (c *Coordinator) streamSender(ctx context.Context, stream fleetv1.FleetService_ConnectServer, s *workerSession, failed chan<- error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		}
		for _, m := range s.take() {
			if m.GetRuleSet() != nil {
				// Rule sets are large: bound the bytes being serialised
				// at once over all sessions. The wait for the budget
				// counts toward the send's time (see serve).
				n := min(int64(proto.Size(m)), bigSendBudget)
				start := c.mono()
				s.waitingBudget.Store(true)
				s.sendingSince.Store(start)
				actx, cancel := context.WithTimeout(ctx, c.cfg.SendTimeout)
				err := c.bigSends.Acquire(actx, n)
				cancel()
				s.waitingBudget.Store(false)
				if err != nil {
					s.sendingSince.Store(0)
					if ctx.Err() == nil {
						failed <- status.Error(codes.Unavailable, errBudgetWait.Error())
					}
					return
				}
				err = c.sendOne(stream, s, m, start)
				c.bigSends.Release(n)
				if err != nil {
					failed <- err
					return
				}
				continue
			}
			if err := c.sendOne(stream, s, m, c.mono()); err != nil {
				failed <- err
				return
			}
		}
	}
}

// bigSendBudget bounds the rule-set bytes being sent at once over all
// sessions.
const bigSendBudget = 4 * protocol.MaxResponseBytes

// sendOne sends m; start is when the send began (or the wait before it),
// as Coordinator.mono.
func (c *Coordinator) sendOne(stream fleetv1.FleetService_ConnectServer, s *workerSession, m *fleetv1.ConnectResponse, start int64) error {
	s.sendingSince.Store(start)
	err := stream.Send(m)
	s.sendingSince.Store(0)
	if err != nil {
		return streamErr(err)
	}
	return nil
}

// serve runs the session until it ends, and says why for the dispatcher.
func (c *Coordinator) serve(ctx context.Context, s *workerSession, in <-chan *fleetv1.ConnectRequest, sendFailed <-chan error) (error, dispatch.LeaveReason) {
	id := s.info.SessionID
	hb := time.NewTicker(c.cfg.HeartbeatInterval)
	defer hb.Stop()
	silence := time.Duration(c.cfg.HeartbeatMisses) * c.cfg.HeartbeatInterval
	draining := c.draining
	for {
		select {
		case <-ctx.Done():
			cause := context.Cause(ctx)
			if errors.Is(cause, io.EOF) || c.isDraining() {
				return streamErr(cause), dispatch.LeaveClean
			}
			return streamErr(cause), dispatch.LeaveLost
		case err := <-sendFailed:
			return err, dispatch.LeaveLost
		case m := <-in:
			s.lastSeen.Store(c.cfg.Now().UnixNano())
			s.heard.Store(c.mono())
			if err := c.handle(s, m); err != nil {
				return err, dispatch.LeaveCut
			}
		case <-draining:
			draining = nil
			s.push(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{Grace: durationpb.New(c.cfg.DrainTimeout)}}})
			c.disp.Drain(id)
		case <-hb.C:
			now := c.mono()
			if since := s.sendingSince.Load(); since != 0 && time.Duration(now-since) > c.cfg.SendTimeout {
				if s.waitingBudget.Load() {
					// Cut, not refused: other sessions held the budget.
					return status.Error(codes.Unavailable, errBudgetWait.Error()), dispatch.LeaveCut
				}
				return status.Error(codes.Unavailable, errStalled.Error()), dispatch.LeaveCut
			}
			if time.Duration(now-s.heard.Load()) > silence {
				return status.Error(codes.DeadlineExceeded, errSilent.Error()), dispatch.LeaveLost
			}
			s.pushHeartbeat()
		}
	}
}

func (c *Coordinator) isDraining() bool {
	select {
	case <-c.draining:
		return true
	default:
		return false
	}
}

// handle applies one message from a worker. An error ends the session as a
// protocol violation.
func (c *Coordinator) handle(s *workerSession, m *fleetv1.ConnectRequest) error {
	id := s.info.SessionID
	now := c.cfg.Now()
	switch msg := m.GetMsg().(type) {
	case *fleetv1.ConnectRequest_RulesStatus:
		rs := msg.RulesStatus
		hash := rs.GetHash()
		if !s.wasOffered(hash) && c.rules.weights(hash) == nil {
			// Only hashes this coordinator sent (to this worker, or loaded
			// recently); nothing is kept for others.
			return nil
		}
		switch {
		case rs.GetEvicted():
			c.disp.ForgetRulesAt(id, hash)
			s.forgetOffer(hash)
		case rs.GetError() != "":
			c.disp.RulesFailed(id, hash)
			// Per identity and hash, throttled: a worker may say so in
			// every message (sessionLog).
			c.sessionLog(c.log, slog.LevelError, s.info.Identity, "rules\x00"+hash, "worker could not compile rules",
				"session", id, "hash", hash, "err", clip.String(rs.GetError(), protocol.MaxTextBytes))
		default:
			c.disp.RulesReady(id, hash)
		}
	case *fleetv1.ConnectRequest_Results:
		rs := msg.Results.GetResults()
		if n := c.maxAnswersPerMessage(); len(rs) > n {
			return status.Errorf(codes.InvalidArgument, "%d results in one message; at most %d (twice the most tasks a worker may hold)", len(rs), n)
		}
		for _, r := range rs {
			if err := c.takeResult(s, r, now); err != nil {
				return err
			}
		}
	case *fleetv1.ConnectRequest_TaskReturn:
		ids := msg.TaskReturn.GetTaskIds()
		if n := c.maxAnswersPerMessage(); len(ids) > n {
			return status.Errorf(codes.InvalidArgument, "%d tasks handed back in one message; at most %d (twice the most tasks a worker may hold)", len(ids), n)
		}
		for _, tid := range ids {
			if h, held := s.answered(tid); held {
				c.rules.release(h)
			}
		}
		c.disp.Returned(id, ids)
	case *fleetv1.ConnectRequest_Draining:
		c.sessionLog(c.log, slog.LevelInfo, s.info.Identity, "draining", "worker draining", "session", id)
		c.disp.Drain(id)
	case *fleetv1.ConnectRequest_Heartbeat:
		if ids := msg.Heartbeat.GetRunningTaskIds(); len(ids) > 0 {
			if len(ids) > s.info.Slots+c.cfg.Prefetch+maxTasksPerAssign {
				return status.Errorf(codes.InvalidArgument, "heartbeat names %d running tasks; the worker has %d slots", len(ids), s.info.Slots)
			}
			c.disp.Started(id, ids, now)
		}
	case *fleetv1.ConnectRequest_Hello:
		return status.Error(codes.InvalidArgument, "hello sent twice")
	default:
		return status.Error(codes.InvalidArgument, "unknown message")
	}
	return nil
}

// maxAnswersPerMessage bounds the results (or handed-back tasks) of one
// message: twice the most tasks a worker may hold (MaxWorkerSlots plus
// Prefetch); an honest worker answers at most what it holds.
func (c *Coordinator) maxAnswersPerMessage() int {
	return 2 * (c.cfg.MaxWorkerSlots + c.cfg.Prefetch)
}

// takeResult applies one result of a session. A result for a task the
// session holds is checked and goes to the dispatcher (which drops it if
// the task was taken away meanwhile: a backup won, the session was
// quarantined); a repeated one for a task it answered or handed back lately
// is dropped quietly; one for any other task ends the session.
func (c *Coordinator) takeResult(s *workerSession, r *fleetv1.TaskResult, now time.Time) error {
	tid := r.GetTaskId()
	hash, held := s.answered(tid)
	if !held {
		if s.heldLately(tid) {
			c.refusals.resultsRepeated.Add(1)
			return nil
		}
		return status.Errorf(codes.InvalidArgument, "result for task %d, which this session never held", tid)
	}
	res, err := c.resultFromProto(r, hash)
	c.rules.release(hash)
	switch {
	case errors.Is(err, errRulesUnknown):
		// Never an unchecked verdict: the task is scanned again.
		c.refusals.resultsRulesUnknown.Add(1)
		c.log.Error("result refused: the weights of its rules are no longer known; task dispatched again",
			"session", s.info.SessionID, "task", tid, "rules", clip.String(hash, 128))
		c.disp.Returned(s.info.SessionID, []uint64{tid})
		return nil
	case err != nil:
		return status.Errorf(codes.InvalidArgument, "task %d: %v", tid, err)
	}
	c.disp.Result(s.info.SessionID, res, now)
	return nil
}

// errRulesUnknown: a result's rules cannot be checked.
var errRulesUnknown = errors.New("the weights of the task's rules are not known")

// resultFromProto turns a worker's result for a task it held into the
// dispatcher's, checking it against the rules (hash) the task was scanned
// with: every rule named must exist there, with its weight; the score is
// recomputed, never taken on trust. A verdict whose rules' weights are not
// known is errRulesUnknown.
func (c *Coordinator) resultFromProto(r *fleetv1.TaskResult, hash string) (dispatch.Result, error) {
	st := r.GetStats()
	out := dispatch.Result{
		TaskID: r.GetTaskId(),
		Stats: dispatch.TaskStats{
			BytesDownloaded: st.GetBytesDownloaded(), BytesExpanded: st.GetBytesExpanded(), Files: st.GetFiles(),
			DownloadTime: st.GetDownloadTime().AsDuration(), ScanTime: st.GetScanTime().AsDuration(), WallTime: st.GetWallTime().AsDuration(),
		},
	}
	switch o := r.GetOutcome().(type) {
	case *fleetv1.TaskResult_Distribution:
		weights := c.rules.weights(hash)
		if weights == nil {
			return out, errRulesUnknown
		}
		d := &score.Distribution{TopFile: o.Distribution.GetTopFile(), TopScore: o.Distribution.GetTopFileScore()}
		if d.TopFile != "" {
			if err := protocol.CheckMemberPath(d.TopFile); err != nil {
				return out, fmt.Errorf("top file %q: %v", clip.String(d.TopFile, 256), err)
			}
		}
		seen := map[string]bool{}
		for _, h := range o.Distribution.GetRules() {
			name := h.GetName()
			if seen[name] {
				return out, fmt.Errorf("rule %q counted twice", clip.String(name, 128))
			}
			seen[name] = true
			w, ok := weights[name]
			if !ok {
				return out, fmt.Errorf("rule %q is not in rules %s", clip.String(name, 128), clip.String(hash, 128))
			}
			if w != h.GetWeight() {
				return out, fmt.Errorf("rule %q has weight %d in rules %s, not %d", clip.String(name, 128), w, clip.String(hash, 128), h.GetWeight())
			}
			d.Rules = append(d.Rules, score.Hit{Name: name, Weight: h.GetWeight()})
		}
		d.Score = score.Sum(d.Rules)
		if (d.TopFile == "") != (len(d.Rules) == 0) {
			return out, errors.New("top file and rules disagree")
		}
		out.Dist = d
	case *fleetv1.TaskResult_Failure:
		// Bounded here; the dispatcher makes it a line (or names the
		// distribution when nothing readable is left).
		out.Failure = clip.String(o.Failure.GetReason(), protocol.MaxTextBytes)
		out.FailureKind = o.Failure.GetKind().String()
	default:
		return out, errors.New("result without an outcome")
	}
	return out, nil
}

// streamErr turns the end of a stream into the handler's return value: a
// clean close by the worker is no error.
func streamErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, errSessionOver) {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "session cancelled")
	}
	return status.Error(codes.Unavailable, clip.Error(err, protocol.MaxTextBytes))
}
