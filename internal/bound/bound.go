// Package bound holds two rules of the fleet in one place: a setting that is
// zero or negative takes its default (Or), and a read of something outside
// the process that is kept whole takes at most a given number of bytes
// (ReadAll, and ReadFile for files, which may be FIFOs or devices; streams
// decoded as they are read bound themselves).
//
// It is a leaf: it imports only the standard library, so any package of the
// fleet may use it.
package bound

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
	"time"
)

// Or is v when it is positive, else def: the one reading of "zero or
// negative means the default" of the fleet's settings.
func Or[T int | int64 | float64 | time.Duration](v, def T) T {
	return cmp.Or(max(v, 0), def)
}

// ErrTooLarge matches (errors.Is) every *TooLargeError.
var ErrTooLarge = errors.New("too large")

// TooLargeError is ReadAll's error for input longer than its bound.
type TooLargeError struct {
	// Max is the bound, in bytes.
	Max int64
}

func (e *TooLargeError) Error() string { return fmt.Sprintf("larger than %d bytes", e.Max) }

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// ReadAll reads r to its end and returns what it read, reading at most
// max+1 bytes: input longer than max is a *TooLargeError (and nothing of it
// is returned), so a hostile peer cannot make the reader hold more than max
// bytes plus one. A negative max admits nothing; math.MaxInt64 is no bound.
func ReadAll(r io.Reader, max int64) ([]byte, error) {
	if max < 0 {
		max = 0
	}
	// max+1 without overflow: io.LimitReader reads nothing at all for a
	// negative limit, which would pass any input off as empty.
	data, err := io.ReadAll(io.LimitReader(r, max+min(1, math.MaxInt64-max)))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, &TooLargeError{Max: max}
	}
	return data, nil
}

// ReadFile reads the file at path whole, at most max bytes (ReadAll's
// *TooLargeError beyond). With check, the file is opened without blocking,
// so that a FIFO reaches check instead of hanging the caller in open, and
// check vets its mode (Regular, or more) before anything is read; without
// it (a config file may be a pipe: --config <(...)) open may block.
func ReadFile(path string, max int64, check func(os.FileMode) error) ([]byte, error) {
	flag := os.O_RDONLY
	if check != nil {
		flag |= syscall.O_NONBLOCK
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if check != nil {
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if err := check(fi.Mode()); err != nil {
			return nil, err
		}
	}
	return ReadAll(f, max)
}

// ErrNotRegular is Regular's refusal.
var ErrNotRegular = errors.New("not a regular file")

// Regular is a ReadFile check that admits regular files only: no device
// (/dev/zero never ends), FIFO or directory.
func Regular(m os.FileMode) error {
	if !m.IsRegular() {
		return ErrNotRegular
	}
	return nil
}
