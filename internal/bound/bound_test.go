package bound

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

func TestOr(t *testing.T) {
	if got := Or(0, 5); got != 5 {
		t.Fatalf("Or(0, 5) = %d", got)
	}
	if got := Or(-3, 5); got != 5 {
		t.Fatalf("Or(-3, 5) = %d", got)
	}
	if got := Or(2, 5); got != 2 {
		t.Fatalf("Or(2, 5) = %d", got)
	}
	if got := Or(-time.Second, time.Minute); got != time.Minute {
		t.Fatalf("Or(-1s, 1m) = %v", got)
	}
	if got := Or(0.5, 2.0); got != 0.5 {
		t.Fatalf("Or(0.5, 2) = %v", got)
	}
}

// TestReadAll: up to max bytes come back whole; one more is a
// *TooLargeError that matches ErrTooLarge, and no more than max+1 bytes are
// read from the source; a read error is passed on.
func TestReadAll(t *testing.T) {
	data, err := ReadAll(strings.NewReader("12345"), 5)
	if err != nil || string(data) != "12345" {
		t.Fatalf("at the bound: %q, %v", data, err)
	}
	src := bytes.NewReader(bytes.Repeat([]byte("x"), 1000))
	data, err = ReadAll(src, 5)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Max != 5 || !errors.Is(err, ErrTooLarge) || data != nil {
		t.Fatalf("over the bound: %q, %v", data, err)
	}
	if err.Error() != "larger than 5 bytes" {
		t.Fatalf("message %q", err)
	}
	if read := 1000 - src.Len(); read != 6 {
		t.Fatalf("read %d bytes of the source, want 6", read)
	}
	boom := errors.New("boom")
	if _, err := ReadAll(iotest.ErrReader(boom), 5); !errors.Is(err, boom) {
		t.Fatalf("read error: %v", err)
	}
}

// TestReadAllExtremeBounds: math.MaxInt64 reads everything (max+1 must not
// wrap to a negative limit, which would read nothing and pass the input off
// as empty); a negative bound admits nothing.
func TestReadAllExtremeBounds(t *testing.T) {
	data, err := ReadAll(strings.NewReader("evil"), math.MaxInt64)
	if err != nil || string(data) != "evil" {
		t.Fatalf("MaxInt64: %q, %v", data, err)
	}
	if _, err := ReadAll(strings.NewReader("x"), -5); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("negative bound: %v", err)
	}
	if data, err := ReadAll(strings.NewReader(""), -5); err != nil || len(data) != 0 {
		t.Fatalf("negative bound, empty input: %q, %v", data, err)
	}
}

// TestReadFile: a file is read whole up to max; beyond, ErrTooLarge; with
// a check, a FIFO is refused by its mode instead of blocking in open, and
// /dev/zero (never ending) too.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		path  string
		max   int64
		check func(os.FileMode) error
		want  error
	}{
		{"whole", small, 5, Regular, nil},
		{"too large", small, 4, Regular, ErrTooLarge},
		{"no check", small, 5, nil, nil},
		{"fifo", fifo, 5, Regular, ErrNotRegular},
		{"device", "/dev/zero", 5, Regular, ErrNotRegular},
		{"missing", filepath.Join(dir, "none"), 5, Regular, os.ErrNotExist},
	} {
		data, err := ReadFile(tc.path, tc.max, tc.check)
		if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
		if err == nil && string(data) != "12345" {
			t.Errorf("%s: read %q", tc.name, data)
		}
	}
}
