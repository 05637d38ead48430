package scan

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
static void fleet_trim(void) { malloc_trim(0); }
#else
static void fleet_trim(void) {}
#endif
*/
import "C"

// trimCHeap hands the C heap's free memory back to the system (glibc's
// malloc_trim; nothing elsewhere). Compiling a rule set makes libyara
// allocate and free megabytes of small blocks (the compiler's 1 MiB section
// buffers, the Aho-Corasick build), which glibc otherwise keeps resident:
// about 5 MiB per subset compiled.
func trimCHeap() { C.fleet_trim() }
