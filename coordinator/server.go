package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/score"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// session is one worker's stream. The handler goroutine is its only sender;
// a receive goroutine feeds it incoming messages.
type session struct {
	info     SessionInfo
	notify   chan struct{} // capacity 1: queued output waiting
	lastSeen atomic.Int64  // unix nanos of the last message from the worker

	mu    sync.Mutex
	tasks []dispatch.Task
	ctrl  []*fleetv1.ConnectResponse
}

// Send implements dispatch.Sink: it queues tasks for the handler to send.
func (s *session) Send(ts []dispatch.Task) {
	s.mu.Lock()
	s.tasks = append(s.tasks, ts...)
	s.mu.Unlock()
	s.wake()
}

func (s *session) push(m *fleetv1.ConnectResponse) {
	s.mu.Lock()
	s.ctrl = append(s.ctrl, m)
	s.mu.Unlock()
	s.wake()
}

func (s *session) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take returns the queued output: control messages first, then all queued
// tasks in one Assign.
func (s *session) take() []*fleetv1.ConnectResponse {
	s.mu.Lock()
	out := s.ctrl
	tasks := s.tasks
	s.ctrl, s.tasks = nil, nil
	s.mu.Unlock()
	if len(tasks) > 0 {
		a := &fleetv1.Assign{Tasks: make([]*fleetv1.Task, len(tasks))}
		for i, t := range tasks {
			a.Tasks[i] = &fleetv1.Task{
				TaskId: t.ID, Url: t.URL, RulesHash: t.RulesHash,
				Job:           &fleetv1.JobRef{Name: t.Name, Version: t.Version, Attempt: int64(t.Attempt)},
				LeaseDeadline: timestamppb.New(t.Deadline),
			}
		}
		out = append(out, &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: a}})
	}
	return out
}

func ruleSetMsg(set rules.Set) *fleetv1.ConnectResponse {
	return &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: set.Hash, Sources: set.Sources}}}
}

// rulesChanged pushes a new rule set to every session.
func (c *Coordinator) rulesChanged(set rules.Set) {
	msg := ruleSetMsg(set)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		s.push(msg)
	}
}

// Sessions lists the connected sessions.
func (c *Coordinator) Sessions() []SessionInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]SessionInfo, 0, len(c.sessions))
	for _, s := range c.sessions {
		out = append(out, s.info)
	}
	return out
}

// LastSeen returns when each session last heard from its worker.
func (c *Coordinator) LastSeen() map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]time.Time, len(c.sessions))
	for id, s := range c.sessions {
		out[id] = time.Unix(0, s.lastSeen.Load())
	}
	return out
}

// errSilent ends a session whose worker missed its heartbeats.
var errSilent = errors.New("worker missed its heartbeats")

// Connect serves one worker session. See the contract in fleet.proto.
func (c *Coordinator) Connect(stream fleetv1.FleetService_ConnectServer) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	in := make(chan *fleetv1.ConnectRequest)
	c.recvs.Add(1)
	go func() {
		// The receive goroutine ends when the stream does (the handler
		// returning cancels the stream's context).
		defer c.recvs.Done()
		for {
			m, err := stream.Recv()
			if err != nil {
				cancel(err)
				return
			}
			select {
			case in <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	silence := time.Duration(c.cfg.HeartbeatMisses) * c.cfg.HeartbeatInterval
	hello, err := awaitHello(ctx, in, silence)
	if err != nil {
		return err
	}
	s := c.newSession(hello)
	s.lastSeen.Store(c.cfg.Now().UnixNano())
	if err := c.disp.Join(s.info.SessionID, s.info.Slots, s, c.cfg.Now()); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	c.mu.Lock()
	c.sessions[s.info.SessionID] = s
	c.mu.Unlock()
	c.obs.SessionStarted(s.info)
	log := c.log.With("session", s.info.SessionID, "worker_id", s.info.WorkerID, "host", s.info.Host)
	log.Info("worker connected", "slots", s.info.Slots, "version", s.info.Version)

	err = c.serve(ctx, stream, s, in)

	c.mu.Lock()
	delete(c.sessions, s.info.SessionID)
	c.mu.Unlock()
	held := 0
	for _, si := range c.disp.Snapshot().Sessions {
		if si.ID == s.info.SessionID {
			held = si.Outstanding
		}
	}
	c.disp.Leave(s.info.SessionID)
	c.obs.SessionEnded(s.info, err)
	if err != nil {
		log.Warn("worker session ended; its tasks were re-dispatched", "tasks", held, "err", err)
	} else {
		log.Info("worker disconnected", "tasks_redispatched", held)
	}
	return err
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
		if h.GetProtocolVersion() != fleetv1.ProtocolVersion_PROTOCOL_VERSION_1 {
			return nil, status.Errorf(codes.FailedPrecondition, "protocol version %v not supported (want %v)", h.GetProtocolVersion(), fleetv1.ProtocolVersion_PROTOCOL_VERSION_1)
		}
		if h.GetSlots() == 0 {
			return nil, status.Error(codes.InvalidArgument, "hello: slots must be at least 1")
		}
		return h, nil
	case <-t.C:
		return nil, status.Error(codes.DeadlineExceeded, "no hello from worker")
	case <-ctx.Done():
		return nil, streamErr(context.Cause(ctx))
	}
}

func (c *Coordinator) newSession(h *fleetv1.Hello) *session {
	c.mu.Lock()
	c.nextSess++
	n := c.nextSess
	c.mu.Unlock()
	return &session{
		notify: make(chan struct{}, 1),
		info: SessionInfo{
			SessionID: fmt.Sprintf("s%d-%s", n, h.GetWorkerId()),
			WorkerID:  h.GetWorkerId(), Host: h.GetHost(), Version: h.GetVersion(),
			Slots: int(h.GetSlots()), Started: c.cfg.Now(),
		},
	}
}

// serve runs the session: it is the stream's only sender.
func (c *Coordinator) serve(ctx context.Context, stream fleetv1.FleetService_ConnectServer, s *session, in <-chan *fleetv1.ConnectRequest) error {
	id := s.info.SessionID
	send := func(m *fleetv1.ConnectResponse) error {
		if err := stream.Send(m); err != nil {
			return streamErr(err)
		}
		return nil
	}
	if err := send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{
		SessionId: id, HeartbeatInterval: durationpb.New(c.cfg.HeartbeatInterval), CoordinatorVersion: c.cfg.Version,
	}}}); err != nil {
		return err
	}
	// sentRules is the hash of the last rule set sent: a change that lands
	// between registering the session and this first send is queued too, and
	// must not make the worker compile the same rules twice.
	var sentRules string
	if set := c.rules.current(); set.Hash != "" {
		if err := send(ruleSetMsg(set)); err != nil {
			return err
		}
		sentRules = set.Hash
	}
	hb := time.NewTicker(c.cfg.HeartbeatInterval)
	defer hb.Stop()
	silence := time.Duration(c.cfg.HeartbeatMisses) * c.cfg.HeartbeatInterval
	draining := c.draining
	for {
		select {
		case <-ctx.Done():
			return streamErr(context.Cause(ctx))
		case m := <-in:
			s.lastSeen.Store(c.cfg.Now().UnixNano())
			if err := c.handle(id, m); err != nil {
				return err
			}
		case <-s.notify:
			for _, m := range s.take() {
				if rs := m.GetRuleSet(); rs != nil {
					if rs.GetHash() == sentRules {
						continue
					}
					sentRules = rs.GetHash()
				}
				if err := send(m); err != nil {
					return err
				}
			}
		case <-draining:
			draining = nil
			if err := send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{Grace: durationpb.New(c.cfg.DrainTimeout)}}}); err != nil {
				return err
			}
			c.disp.Drain(id)
		case <-hb.C:
			if c.cfg.Now().Sub(time.Unix(0, s.lastSeen.Load())) > silence {
				return status.Error(codes.DeadlineExceeded, errSilent.Error())
			}
			if err := send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}); err != nil {
				return err
			}
		}
	}
}

// handle applies one message from a worker.
func (c *Coordinator) handle(id string, m *fleetv1.ConnectRequest) error {
	now := c.cfg.Now()
	switch msg := m.GetMsg().(type) {
	case *fleetv1.ConnectRequest_RulesStatus:
		rs := msg.RulesStatus
		switch {
		case rs.GetEvicted():
			hash := rs.GetHash()
			c.disp.ForgetRulesAt(id, hash)
		case rs.GetError() != "":
			c.log.Error("worker could not compile rules", "session", id, "hash", rs.GetHash(), "err", rs.GetError())
		default:
			c.disp.RulesReady(id, rs.GetHash())
		}
	case *fleetv1.ConnectRequest_Results:
		for _, r := range msg.Results.GetResults() {
			c.disp.Result(id, resultFromProto(r), now)
		}
	case *fleetv1.ConnectRequest_TaskReturn:
		c.disp.Returned(id, msg.TaskReturn.GetTaskIds())
	case *fleetv1.ConnectRequest_Draining:
		c.log.Info("worker draining", "session", id)
		c.disp.Drain(id)
	case *fleetv1.ConnectRequest_Heartbeat:
	case *fleetv1.ConnectRequest_Hello:
		return status.Error(codes.InvalidArgument, "hello sent twice")
	default:
		return status.Error(codes.InvalidArgument, "unknown message")
	}
	return nil
}

func resultFromProto(r *fleetv1.TaskResult) dispatch.Result {
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
		d := &score.Distribution{Score: o.Distribution.GetScore(), TopFile: o.Distribution.GetTopFile(), TopScore: o.Distribution.GetTopFileScore()}
		for _, h := range o.Distribution.GetRules() {
			d.Rules = append(d.Rules, score.Hit{Name: h.GetName(), Weight: h.GetWeight()})
		}
		out.Dist = d
	case *fleetv1.TaskResult_Failure:
		out.Failure = o.Failure.GetReason()
		if out.Failure == "" {
			out.Failure = "scan failed"
		}
	default:
		out.Failure = "worker sent a result without an outcome"
	}
	return out
}

// streamErr turns the end of a stream into the handler's return value: a
// clean close by the worker is no error.
func streamErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "session cancelled")
	}
	return status.Error(codes.Unavailable, err.Error())
}
