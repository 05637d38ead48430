//go:build !unix

package archive

import "time"

// cpuTime is not measured here; the benchmarks then skip MB/cpu-s.
func cpuTime() time.Duration { return 0 }
