package fetch

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
	"testing/iotest"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// readBody must hold the limit even when the transport does not enforce the
// declared length (a reader that yields more than Content-Length).
func TestReadBody(t *testing.T) {
	const maxSize = 1000
	for _, tc := range []struct {
		name     string
		body     []byte
		declared int64
		err      error // nil, *limit.Error or *TruncatedError
		wantCap  int   // 0: not checked
	}{
		{"exact declared", body(600), 600, nil, 600},
		{"exactly max", body(maxSize), maxSize, nil, maxSize},
		{"empty declared", nil, 0, nil, 0},
		{"unknown within max", body(900), -1, nil, 0},
		{"unknown exactly max", body(maxSize), -1, nil, 0},
		{"unknown over max", body(maxSize + 1), -1, &limit.Error{}, 0},
		{"declares less sends more within max", body(700), 100, nil, 0},
		{"declares less sends more over max", body(5000), 100, &limit.Error{}, 0},
		{"declares max sends more", body(maxSize + 1), maxSize, &limit.Error{}, 0},
		{"short of declared", body(100), 600, &TruncatedError{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// OneByteReader exercises every growth and probe step.
			for _, r := range []io.Reader{bytes.NewReader(tc.body), iotest.OneByteReader(bytes.NewReader(tc.body))} {
				got, err := readBody(r, tc.declared, maxSize)
				switch want := tc.err.(type) {
				case nil:
					if err != nil || !bytes.Equal(got, tc.body) {
						t.Fatalf("got %d bytes, %v: want the %d-byte body", len(got), err, len(tc.body))
					}
					if tc.wantCap != 0 && cap(got) != tc.wantCap {
						t.Errorf("cap = %d, want %d", cap(got), tc.wantCap)
					}
				case *limit.Error:
					var le *limit.Error
					if !errors.As(err, &le) || le.Kind != limit.Download || le.Max != maxSize {
						t.Fatalf("err = %v, want download limit", err)
					}
				case *TruncatedError:
					var tr *TruncatedError
					if !errors.As(err, &tr) || tr.Got != int64(len(tc.body)) || tr.Want != tc.declared {
						t.Fatalf("err = %v, want truncation %d of %d (%T)", err, len(tc.body), tc.declared, want)
					}
				}
			}
		})
	}
}

func TestReadBodyGrowthBounded(t *testing.T) {
	// Unknown length: the buffer never grows past maxSize+1.
	const maxSize = 300_000
	got, err := readBody(bytes.NewReader(body(maxSize)), -1, maxSize)
	if err != nil || len(got) != maxSize {
		t.Fatalf("got %d, %v", len(got), err)
	}
	if cap(got) > maxSize+1 {
		t.Errorf("cap = %d, want at most %d", cap(got), maxSize+1)
	}
}

func TestReadBodyPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := readBody(io.MultiReader(bytes.NewReader(body(10)), iotest.ErrReader(boom)), -1, 100)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	_, err = readBody(io.MultiReader(bytes.NewReader(body(10)), iotest.ErrReader(io.ErrUnexpectedEOF)), -1, 100)
	var tr *TruncatedError
	if !errors.As(err, &tr) || tr.Got != 10 || tr.Want != -1 || tr.Error() != "body truncated after 10 bytes" {
		t.Fatalf("err = %v, want truncation after 10 bytes", err)
	}
}

// TestReadBodyWithoutBound: a limit of math.MaxInt64 (no bound) reads a
// body of unknown length whole; maxSize+1 must not overflow (it panicked in
// make).
func TestReadBodyWithoutBound(t *testing.T) {
	got, err := readBody(bytes.NewReader(body(1000)), -1, math.MaxInt64)
	if err != nil || len(got) != 1000 {
		t.Fatalf("got %d, %v", len(got), err)
	}
}
