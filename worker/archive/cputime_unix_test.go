//go:build unix

package archive

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user and system) the process has used, so the
// benchmarks can report throughput per CPU-second on a busy machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
