package worker

import (
	"testing"
	"testing/synctest"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
)

// TestStopWithACoordinatorThatStopsReading: a coordinator that keeps
// talking (heartbeats every second) but stops reading fills the stream, and
// the worker's Send blocks. Asked to stop, the worker still returns within
// its drain grace plus three heartbeat intervals: a send blocked that long
// ends the session. On synctest's clock.
func TestStopWithACoordinatorThatStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := newChanClient()
		w := testWorker(t, client, Config{Grace: 10 * time.Second}, nil)
		stop := startLoop(w)
		s := <-client.streams
		<-client.tries
		<-s.Out // Hello
		welcomeEvery(s, time.Second)
		quiet := make(chan struct{})
		talking := make(chan struct{})
		go func() {
			defer close(talking)
			for {
				select {
				case s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}:
				case <-quiet:
					return
				}
				select {
				case <-time.After(time.Second):
				case <-quiet:
					return
				}
			}
		}()
		// Never read: the worker's heartbeats fill the stream.
		for len(s.Out) < cap(s.Out) {
			time.Sleep(time.Second)
		}
		// The worker blocks in Send at its next heartbeat.
		stopped := make(chan error, 1)
		asked := time.Now()
		go func() { stopped <- stop() }()
		var err error
		select {
		case err = <-stopped:
			if took := time.Since(asked); took > w.cfg.Grace+3*time.Second+time.Second {
				t.Errorf("worker stopped %v after it was asked, want within the grace (%v) plus 3 heartbeat intervals", took, w.cfg.Grace)
			}
		case <-time.After(time.Hour):
			t.Errorf("worker still running an hour after it was asked to stop, blocked sending to a coordinator that does not read")
			// Let it go: read what it sends until it returns.
			for done := false; !done; {
				select {
				case <-s.Out:
				case err = <-stopped:
					done = true
				}
			}
		}
		close(quiet)
		<-talking
		if err != nil {
			t.Fatalf("loop: %v", err)
		}
	})
}
