package broadcast

import (
	"sync"
	"testing"
)

func TestNotifyWakesEveryWaiter(t *testing.T) {
	var s Signal
	var ready, done sync.WaitGroup
	for range 5 {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ch := s.Wait()
			ready.Done()
			<-ch
		}()
	}
	ready.Wait()
	s.Notify()
	done.Wait()
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
