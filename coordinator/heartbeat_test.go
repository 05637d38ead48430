package coordinator

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// chanServerStream is a server stream made of channels, so a session runs in
// a synctest bubble (gRPC's transport does not block durably there).
type chanServerStream struct {
	streamStub
	in  chan *fleetv1.ConnectRequest  // worker -> coordinator
	out chan *fleetv1.ConnectResponse // coordinator -> worker
}

func (s *chanServerStream) Recv() (*fleetv1.ConnectRequest, error) {
	select {
	case m, ok := <-s.in:
		if !ok {
			return nil, io.EOF
		}
		return m, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

func (s *chanServerStream) Send(m *fleetv1.ConnectResponse) error {
	select {
	case s.out <- m:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// streamStub is the part of grpc.ServerStream the tests' streams do not
// use (headers, trailers, raw messages), and their context.
type streamStub struct{ ctx context.Context }

func (s streamStub) Context() context.Context   { return s.ctx }
func (streamStub) SetHeader(metadata.MD) error  { return nil }
func (streamStub) SendHeader(metadata.MD) error { return nil }
func (streamStub) SetTrailer(metadata.MD)       {}
func (streamStub) SendMsg(any) error            { return errors.New("not used") }
func (streamStub) RecvMsg(any) error            { return errors.New("not used") }

// TestHeartbeatExpiry, on synctest's clock: a worker that goes silent is
// dropped at the first heartbeat tick more than HeartbeatMisses intervals
// after its last message (20 s with 5 s x 3: the ticks come at 5, 10, 15,
// 20 s), its task goes back to the queue at once, and a worker that keeps
// heartbeating is never dropped.
func TestHeartbeatExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(Config{API: newFakeAPI(), HeartbeatInterval: 5 * time.Second, HeartbeatMisses: 3,
			Prefetch: DefaultPrefetch, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.out.Close()
		if err := c.rules.update(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.disp.Admit([]dispatch.Job{{Name: "p", Version: "1", Distributions: []string{"u1"}, RulesHash: "h1", LeasedAt: time.Now()}}, time.Now())

		connect := func(id string) (*chanServerStream, chan error, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			s := &chanServerStream{streamStub: streamStub{ctx}, in: make(chan *fleetv1.ConnectRequest, 16), out: make(chan *fleetv1.ConnectResponse, 64)}
			done := make(chan error, 1)
			go func() { done <- c.Connect(s) }()
			s.in <- hello(id, 1)
			s.in <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1"}}}
			return s, done, cancel
		}
		silent, silentDone, stopSilent := connect("silent")
		defer stopSilent()
		// It gets the task, then never speaks again.
		for m := range silent.out {
			if m.GetAssign() != nil {
				break
			}
		}
		lastHeard := time.Now()
		synctest.Wait()

		// A second worker heartbeats every 5 s throughout.
		live, liveDone, stopLive := connect("live")
		defer stopLive()
		go func() {
			for {
				select {
				case <-live.ctx.Done():
					return
				case <-time.After(5 * time.Second):
				}
				select {
				case live.in <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}:
				case <-live.ctx.Done():
					return
				}
			}
		}()

		err = <-silentDone
		stopSilent() // gRPC ends a stream's context when its handler returns
		if el := time.Since(lastHeard); el != 20*time.Second {
			t.Fatalf("silent worker dropped %v after its last message, want 20 s", el)
		}
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("silent session ended with %v, want DeadlineExceeded", err)
		}
		// Its task went to the live worker.
		for m := range live.out {
			if ts := m.GetAssign().GetTasks(); len(ts) == 1 && ts[0].GetUrl() == "u1" {
				break
			}
		}
		// An hour later the live worker is still there (it reads what the
		// coordinator sends: a worker that does not is cut, see
		// TestStalledReaderIsCutAndRefused).
		go func() {
			for {
				select {
				case <-live.out:
				case <-live.ctx.Done():
					return
				}
			}
		}()
		time.Sleep(time.Hour)
		nothingOn(t, liveDone, "a heartbeating worker was dropped")
		stopLive()
		<-liveDone
		c.WaitSessions()
	})
}
