package testkit

import (
	"os"
	"testing"
	"time"
)

// NoHang runs f, which reads a file that may be the FIFO at fifo, and
// returns its error. When f has not returned within 5 s, it opens the FIFO
// for writing (so that f's open returns and its goroutine ends), waits for
// f, and fails t: f hung waiting for a writer.
func NoHang(t testing.TB, fifo string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		err := <-done
		t.Fatalf("reading the FIFO %s hung, waiting for a writer (then: %v)", fifo, err)
		return err
	}
}
