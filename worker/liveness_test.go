package worker

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// untilReconnect takes what the worker sends on s until it connects again:
// when (after from) it sent each heartbeat on s, and the new stream.
func untilReconnect(client *chanClient, s *chanStream, from time.Time) ([]time.Duration, *chanStream) {
	var beats []time.Duration
	for {
		select {
		case m := <-s.Out:
			if m.GetHeartbeat() != nil {
				beats = append(beats, time.Since(from))
			}
		case next := <-client.streams:
			return beats, next
		}
	}
}

// TestWorkerDropsASilentCoordinator: a coordinator that stops talking is
// dropped after three heartbeat intervals (checked at each tick: the 4th
// tick, 20 s after the last message with 5 s heartbeats), and the worker
// reconnects within its minimum backoff. On synctest's clock: exact times.
func TestWorkerDropsASilentCoordinator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := newChanClient()
		stop := startLoop(testWorker(t, client, Config{BackoffMin: time.Second, BackoffMax: 30 * time.Second}, nil))

		s1 := <-client.streams
		<-client.tries
		if h := (<-s1.Out).GetHello(); h.GetWorkerId() != "w" {
			t.Fatalf("first message %v, want Hello", h)
		}
		welcomeEvery(s1, 5*time.Second)
		welcomed := time.Now()
		// The coordinator goes silent; the worker keeps heartbeating.
		beats, s2 := untilReconnect(client, s1, welcomed)
		ended := s2.when.Sub(welcomed)
		if ended < 20*time.Second || ended > 21*time.Second {
			t.Fatalf("reconnected %v after the last message, want 20 s (4th tick) plus at most 1 s of backoff", ended)
		}
		if want := []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second}; !slices.Equal(beats, want) {
			t.Fatalf("heartbeats at %v while the coordinator was silent, want 3 (at 5, 10, 15 s)", beats)
		}
		if err := stop(); err != nil {
			t.Fatalf("loop: %v", err)
		}
	})
}

// TestHeartbeatIntervalClamped: a heartbeat interval of 1 ns from the
// coordinator is used as 1 s (not a busy loop), one of a day as 5 min (a
// silent coordinator is still dropped after 3 of them): checked by the
// heartbeats sent to a silent coordinator and when it is dropped, on
// synctest's clock. The clamp is logged once per session. (A bound on what
// the coordinator sends, as in bounds_test.go.)
func TestHeartbeatIntervalClamped(t *testing.T) {
	for _, tc := range []struct {
		asked, used time.Duration
	}{
		{time.Nanosecond, MinHeartbeat},
		{24 * time.Hour, MaxHeartbeat},
	} {
		t.Run(tc.asked.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs testkit.SyncBuffer
				client := newChanClient()
				stop := startLoop(testWorker(t, client, Config{BackoffMin: time.Second, BackoffMax: time.Second,
					Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil))

				s1 := <-client.streams
				<-s1.Out // Hello
				welcomeEvery(s1, tc.asked)
				welcomeEvery(s1, tc.asked)
				welcomed := time.Now()
				beats, s2 := untilReconnect(client, s1, welcomed)
				if want := []time.Duration{tc.used, 2 * tc.used, 3 * tc.used}; !slices.Equal(beats, want) {
					t.Errorf("heartbeats at %v after Welcome, want %v", beats, want)
				}
				if ended := s2.when.Sub(welcomed); ended < 4*tc.used || ended > 4*tc.used+time.Second {
					t.Errorf("silent coordinator dropped and reconnected after %v, want 4 intervals of %v plus at most 1 s", ended, tc.used)
				}
				if n := strings.Count(logs.String(), "coordinator heartbeat interval out of bounds"); n != 1 {
					t.Errorf("clamp logged %d times, want once:\n%s", n, logs.String())
				}
				if err := stop(); err != nil {
					t.Fatalf("loop: %v", err)
				}
			})
		})
	}
}

// TestReconnectBackoff: refused connections are retried with capped
// exponential backoff and full jitter: each wait is at most
// min(max, min·2^(n-1)), never more than max, and a session that lasted
// past `healthy` resets the backoff.
func TestReconnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var refusing atomic.Bool
		refusing.Store(true)
		client := newChanClient()
		client.refuse = func() error {
			if refusing.Load() {
				return errors.New("connection refused")
			}
			return nil
		}
		stop := startLoop(testWorker(t, client, Config{BackoffMin: time.Second, BackoffMax: 8 * time.Second}, nil))
		last := <-client.tries
		var total time.Duration
		for n := 1; n <= 8; n++ {
			at := <-client.tries
			gap := at.Sub(last)
			ceiling := min(time.Second<<(n-1), 8*time.Second)
			if gap < 0 || gap > ceiling {
				t.Fatalf("wait %d = %v, outside [0, %v]", n, gap, ceiling)
			}
			total += gap
			last = at
		}
		if total == 0 {
			t.Fatal("no wait at all between 8 refused connections")
		}
		// Let one connect, live past `healthy`, and end: the next wait is
		// back at the minimum.
		refusing.Store(false)
		<-client.tries
		s := <-client.streams
		<-s.Out // Hello
		welcomeEvery(s, 5*time.Second)
		for range 3 {
			<-s.Out // heartbeats at 5, 10, 15 s
			s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}
		}
		refusing.Store(true)
		s.Fail <- errors.New("connection reset") // the stream breaks
		broke := time.Now()
		if gap := (<-client.tries).Sub(broke); gap > time.Second {
			t.Fatalf("wait after a healthy session %v, want at most the 1 s minimum", gap)
		}
		stop()
	})
}
