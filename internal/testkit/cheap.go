package testkit

// #include <malloc.h>
//
// static size_t fleet_c_heap_in_use(void) {
//   struct mallinfo2 mi = mallinfo2();
//   return mi.uordblks;
// }
import "C"

// CHeapInUse is the bytes the C heap (glibc's malloc) holds in use: what a
// test of cgo code compares before and after, to find C memory not freed.
func CHeapInUse() int64 { return int64(C.fleet_c_heap_in_use()) }
