package rules

// #include <yara.h>
import "C"

import (
	"math"
	"time"

	yara "github.com/hillu/go-yara/v4"
)

// Timeout is d as a libyara scan timeout: go-yara v4.2.4 hands libyara
// whole seconds, cutting the rest, and libyara reads 0 as no timeout at
// all, so a 500 ms timeout would let a scan run for ever. d is rounded up
// to whole seconds, at least one, at most what a C int holds.
func Timeout(d time.Duration) time.Duration {
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	if s < 1 {
		s = 1
	}
	return time.Duration(min(int64(s), math.MaxInt32)) * time.Second
}

// ScanFlags are the flags of every scan this project makes:
// SCAN_FLAGS_NO_TRYCATCH, no libyara signal handlers (see NewScanner).
const ScanFlags = yara.ScanFlags(C.SCAN_FLAGS_NO_TRYCATCH)

// NewScanner returns a libyara scanner for r that scans memory without
// libyara's signal handlers (ScanFlags): every scanner this project creates
// comes from here.
//
// By default libyara 4.2 wraps each scan in a "try/catch" made of signal
// handlers (SIGSEGV and SIGBUS, installed when the scan starts and the
// previous ones put back when it ends; about 15 system calls a scan) so
// that a memory-mapped file cut short, or a fault of libyara itself on the
// scanning thread, ends the scan with an error instead of the process. In a
// Go process that scans on several threads that does harm: the install and
// the restore are not atomic across threads, so two scans that overlap can
// leave libyara's handler in place for good, after which a nil dereference
// anywhere in Go code no longer panics (to be recovered or reported) but
// faults again and again: the process spins at full CPU and never answers.
// go-yara sets the flag itself from v4.3.3 (hillu/go-yara#137); v4.2.4,
// which this project must use with Debian's libyara 4.2.3, does not. The
// project scans only Go memory it owns, never a mapped file; a fault of
// libyara itself now ends the worker, which its process manager restarts
// and whose tasks the coordinator gives to others (a distribution lost by
// three workers fails its job).
func NewScanner(r *yara.Rules) (*yara.Scanner, error) {
	sc, err := yara.NewScanner(r)
	if err != nil {
		return nil, err
	}
	sc.SetFlags(ScanFlags)
	return sc, nil
}
