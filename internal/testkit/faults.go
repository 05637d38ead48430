package testkit

// #include <signal.h>
// #include <stdint.h>
//
// static uintptr_t fleet_fault_handler(int sig) {
//   struct sigaction cur;
//   if (sigaction(sig, NULL, &cur) != 0) {
//     return 0;
//   }
//   return (uintptr_t)cur.sa_handler;
// }
import "C"

import (
	"sync/atomic"
	"syscall"
)

// FaultHandlers are the addresses of the process's SIGSEGV and SIGBUS
// handlers (0 where one cannot be read).
type FaultHandlers struct{ SEGV, BUS uintptr }

// ReadFaultHandlers returns the process's current fault handlers. Read at a
// test package's initialization (before any test scans) it gives the Go
// runtime's, which no scan may replace.
func ReadFaultHandlers() FaultHandlers {
	return FaultHandlers{
		SEGV: uintptr(C.fleet_fault_handler(C.int(syscall.SIGSEGV))),
		BUS:  uintptr(C.fleet_fault_handler(C.int(syscall.SIGBUS))),
	}
}

// WatchFaultHandlers reads the fault handlers over and over on a goroutine
// of its own until stop is called; stop returns how many reads found other
// handlers than want, of how many.
func WatchFaultHandlers(want FaultHandlers) (stop func() (changed, reads int64)) {
	var n, bad atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			if ReadFaultHandlers() != want {
				bad.Add(1)
			}
			n.Add(1)
		}
	}()
	return func() (int64, int64) {
		close(done)
		<-finished
		return bad.Load(), n.Load()
	}
}
