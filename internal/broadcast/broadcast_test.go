package broadcast

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// TestNotifyWakesEveryWaiter: every goroutine waiting on the channel from
// Wait wakes at Notify. In a synctest bubble a waiter that is never woken is
// a deadlock the test reports at once (not a hang until the test timeout).
func TestNotifyWakesEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s Signal
		var woken atomic.Int32
		for range 5 {
			ch := s.Wait()
			go func() {
				<-ch
				woken.Add(1)
			}()
		}
		synctest.Wait() // every waiter is blocked on its channel
		if n := woken.Load(); n != 0 {
			t.Fatalf("%d waiters woke before Notify", n)
		}
		s.Notify()
		synctest.Wait()
		if n := woken.Load(); n != 5 {
			t.Fatalf("%d of 5 waiters woke", n)
		}
	})
}

func TestChangeAfterWaitIsNotLost(t *testing.T) {
	var s Signal
	ch := s.Wait()
	s.Notify() // happens between a waiter's check and its wait
	select {
	case <-ch:
	default:
		t.Fatal("notification before the wait was lost")
	}
	select {
	case <-s.Wait():
		t.Fatal("a new wait saw an old notification")
	default:
	}
}

func TestNotifyWithoutWaitersIsHarmless(t *testing.T) {
	var s Signal
	s.Notify()
	select {
	case <-s.Wait():
		t.Fatal("a wait after a Notify without waiters is already closed")
	default:
	}
}
