package coordinator

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// chanServerStream is the coordinator's side of a worker session, made of
// channels (In: worker -> coordinator, Out: coordinator -> worker).
type chanServerStream = testkit.ChanStream[*fleetv1.ConnectRequest, *fleetv1.ConnectResponse]

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
			s := &chanServerStream{StreamStub: testkit.StreamStub{Ctx: ctx}, In: make(chan *fleetv1.ConnectRequest, 16), Out: make(chan *fleetv1.ConnectResponse, 64)}
			done := make(chan error, 1)
			go func() { done <- c.Connect(s) }()
			s.In <- hello(id, 1)
			s.In <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1"}}}
			return s, done, cancel
		}
		silent, silentDone, stopSilent := connect("silent")
		defer stopSilent()
		// It gets the task, then never speaks again.
		for m := range silent.Out {
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
				case <-live.Ctx.Done():
					return
				case <-time.After(5 * time.Second):
				}
				select {
				case live.In <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}:
				case <-live.Ctx.Done():
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
		for m := range live.Out {
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
				case <-live.Out:
				case <-live.Ctx.Done():
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

// TestWallClockStepLeavesLivenessAlone, on synctest's clock: a step of the
// wall clock (Config.Now) by an hour, as NTP correcting it or a VM resumed
// makes, changes neither who is silent nor when. Forward, a worker that
// heartbeats every 5 s stays connected (it was dropped as silent at the
// next tick, 5 s after its connection, its running tasks counted lost);
// back, a worker silent since its Hello is dropped 20 s later, as without
// the step (it was kept for the hour of the step, with whatever it held).
func TestWallClockStepLeavesLivenessAlone(t *testing.T) {
	for _, tc := range []struct {
		name      string
		step      time.Duration
		heartbeat bool
	}{
		{"forward, heartbeating", time.Hour, true},
		{"back, silent", -time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var step atomic.Int64
				wall := func() time.Time { return time.Now().Add(time.Duration(step.Load())) }
				c, err := New(Config{API: newFakeAPI(), HeartbeatInterval: 5 * time.Second, HeartbeatMisses: 3,
					Prefetch: DefaultPrefetch, Now: wall, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				defer c.out.Close()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				s := &chanServerStream{StreamStub: testkit.StreamStub{Ctx: ctx}, In: make(chan *fleetv1.ConnectRequest, 16), Out: make(chan *fleetv1.ConnectResponse, 64)}
				done := make(chan error, 1)
				go func() { done <- c.Connect(s) }()
				go func() { // a worker reads what it is sent
					for {
						select {
						case <-s.Out:
						case <-ctx.Done():
							return
						}
					}
				}()
				s.In <- hello("w", 1)
				lastHeard := time.Now()
				synctest.Wait()
				time.Sleep(2 * time.Second) // between two ticks (5 s apart)
				step.Store(int64(tc.step))
				if tc.heartbeat {
					go func() {
						for {
							select {
							case <-ctx.Done():
								return
							case <-time.After(5 * time.Second):
							}
							select {
							case s.In <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}:
							case <-ctx.Done():
								return
							}
						}
					}()
					time.Sleep(time.Minute)
					nothingOn(t, done, "a heartbeating worker was dropped after the wall clock stepped forward")
					cancel()
					<-done
					return
				}
				select {
				case err := <-done:
					if el := time.Since(lastHeard); el != 20*time.Second || status.Code(err) != codes.DeadlineExceeded {
						t.Fatalf("silent worker dropped %v after its last message (%v), want 20 s and DeadlineExceeded", el, err)
					}
				case <-time.After(time.Minute):
					t.Fatal("a worker silent for a minute still connected after the wall clock stepped back")
				}
				cancel()
			})
		})
	}
}
