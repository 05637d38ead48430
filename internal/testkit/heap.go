package testkit

import "runtime"

// HeapInUse is the live Go heap after two collections: the first leaves
// what sync.Pools hold (gRPC's buffer pools among them) in their victim
// caches, the second frees it. What a test compares before and after, to
// find Go memory kept.
func HeapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
