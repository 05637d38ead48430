package fetch

import (
	"errors"
	"io"
	"math"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// progressReader counts body bytes and re-arms the stall watchdog on every
// Read that returns some.
type progressReader struct {
	r        io.Reader
	watchdog *time.Timer
	stall    time.Duration
	n        int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += int64(n)
		p.watchdog.Reset(p.stall)
	}
	return n, err
}

// minGrow is the first buffer size when the length is unknown.
const minGrow = 64 << 10

// readBody reads r to EOF into one slice. declared is the Content-Length (-1
// when unknown); when it is within maxSize the slice is allocated once at
// that size and never copied. Otherwise the slice grows geometrically but
// never beyond maxSize+1 bytes; reading byte maxSize+1 fails with a
// limit.Download error. A body that ends early with io.ErrUnexpectedEOF, or
// before its declared length, fails with *TruncatedError.
func readBody(r io.Reader, declared, maxSize int64) ([]byte, error) {
	// maxSize+1 without overflow (a limit of math.MaxInt64 means none).
	limitBytes := maxSize + min(1, math.MaxInt64-maxSize)
	var buf []byte
	if declared >= 0 && declared <= maxSize {
		buf = make([]byte, 0, declared)
	} else {
		buf = make([]byte, 0, min(minGrow, limitBytes))
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == declared {
				// Full at the declared length: probe for EOF without
				// growing, so an honest body is never copied.
				var one [1]byte
				n, err := readSome(r, one[:])
				if n == 0 {
					if err == io.EOF {
						return buf, nil
					}
					return nil, truncated(err, int64(len(buf)), declared)
				}
				buf = grow(buf, limitBytes)
				buf = append(buf, one[0])
				if int64(len(buf)) > maxSize {
					return nil, &limit.Error{Kind: limit.Download, Max: maxSize}
				}
			}
			if len(buf) == cap(buf) {
				buf = grow(buf, limitBytes)
			}
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > maxSize {
			return nil, &limit.Error{Kind: limit.Download, Max: maxSize}
		}
		if err == io.EOF {
			if declared >= 0 && int64(len(buf)) < declared {
				return nil, &TruncatedError{Got: int64(len(buf)), Want: declared}
			}
			return buf, nil
		}
		if err != nil {
			return nil, truncated(err, int64(len(buf)), declared)
		}
	}
}

// readSome reads until it gets a byte or an error.
func readSome(r io.Reader, b []byte) (int, error) {
	for {
		n, err := r.Read(b)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// truncated turns io.ErrUnexpectedEOF into *TruncatedError.
func truncated(err error, got, declared int64) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &TruncatedError{Got: got, Want: declared}
	}
	return err
}

// grow returns buf with room for more: double, at least minGrow, at most
// limitBytes.
func grow(buf []byte, limitBytes int64) []byte {
	c := min(max(int64(2*cap(buf)), minGrow), limitBytes)
	nb := make([]byte, len(buf), c)
	copy(nb, buf)
	return nb
}
