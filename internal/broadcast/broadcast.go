// Package broadcast wakes every waiter on a change, without lost wake-ups.
package broadcast

import "sync"

// Signal is a change notification for any number of waiters. A waiter takes
// the channel from Wait before it checks the state it waits on, then waits on
// the channel: a change after the check closes it. The zero value is ready.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns a channel that is closed at the next Notify.
func (s *Signal) Wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes every current waiter.
func (s *Signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
