package scan

import (
	"math/bits"
	"sync"
)

// bufferPool recycles file buffers by power-of-two size class, so unpacking a
// large distribution does not churn the garbage collector. Pooled buffers are
// released by the GC when idle (sync.Pool semantics).
type bufferPool struct {
	classes [maxClass + 1]sync.Pool
}

const (
	minClass = 12 // 4 KiB
	maxClass = 27 // 128 MiB; larger buffers are not pooled
)

func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

func (p *bufferPool) get(n int) []byte {
	c := class(n)
	if c > maxClass {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

func (p *bufferPool) put(b []byte) {
	c := class(cap(b))
	if cap(b) != 1<<c || c > maxClass {
		return
	}
	b = b[:0]
	p.classes[c].Put(&b)
}
