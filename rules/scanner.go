package rules

// #include <signal.h>
// #include <stdint.h>
// #include <yara.h>
//
// static uintptr_t fleet_sigaction_handler(int sig) {
//   struct sigaction cur;
//   if (sigaction(sig, NULL, &cur) != 0) {
//     return 0;
//   }
//   return (uintptr_t)cur.sa_handler;
// }
import "C"

import (
	"syscall"

	yara "github.com/hillu/go-yara/v4"
)

// NewScanner returns a libyara scanner for r that scans memory without
// libyara's signal handlers: every scanner this project creates comes from
// here.
//
// By default libyara 4.2 wraps each scan in a "try/catch" made of signal
// handlers (SIGSEGV and SIGBUS, installed when the scan starts and the
// previous ones put back when it ends) so that a memory-mapped file cut
// short cannot crash a scan of it. That is wrong in a Go process that scans
// on several threads: the install and the restore are not atomic across
// threads, so two scans that overlap can leave libyara's handler in place
// for good, after which a nil dereference anywhere in Go code no longer
// panics (and is recovered or reported) but faults again and again: the
// process spins at full CPU and never answers. go-yara sets the flag itself
// from v4.3 on (hillu/go-yara#137); v4.2.4, which this project must use with
// Debian's libyara 4.2.3, does not. The project scans only Go memory it
// owns, never a mapped file, so the handlers protect nothing here; they
// also cost five system calls per scan.
func NewScanner(r *yara.Rules) (*yara.Scanner, error) {
	sc, err := yara.NewScanner(r)
	if err != nil {
		return nil, err
	}
	sc.SetFlags(yara.ScanFlags(C.SCAN_FLAGS_NO_TRYCATCH))
	return sc, nil
}

// FaultHandlers returns the addresses of the process's SIGSEGV and SIGBUS
// handlers (0 where one cannot be read), for the tests that check no scan
// replaces them.
func FaultHandlers() (segv, bus uintptr) {
	return uintptr(C.fleet_sigaction_handler(C.int(syscall.SIGSEGV))), uintptr(C.fleet_sigaction_handler(C.int(syscall.SIGBUS)))
}
