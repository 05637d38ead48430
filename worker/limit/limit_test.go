package limit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestErrorBoundsItsPath: a member name of 1 MiB of control characters
// (6 MiB once quoted) gives a message of a few KiB; Path stays exact.
func TestErrorBoundsItsPath(t *testing.T) {
	name := strings.Repeat("\x01", 1<<20)
	e := &Error{Kind: File, Max: 10, Path: name}
	msg := e.Error()
	if len(msg) > 4<<10 {
		t.Fatalf("message of %d bytes", len(msg))
	}
	if !strings.Contains(msg, `"\x01\x01`) || !strings.Contains(msg, "…[cut ") || !strings.HasSuffix(msg, "exceeds limit DRAGONFLY_MAX_FILE_SIZE (10 bytes)") {
		t.Fatalf("message %.100q...%q", msg, msg[len(msg)-80:])
	}
	if e.Path != name {
		t.Fatal("Path changed")
	}
	if got := (&Error{Kind: MatchMemory, Max: 64 << 20, Path: "a.py"}).Error(); got != "a.py: exceeds limit DRAGONFLY_MAX_MATCH_MEMORY (67108864 bytes)" {
		t.Fatalf("match memory: %q", got)
	}
}

// TestReadFile: a file within the bound is read whole; one byte more is the
// Download limit, named with the bound; a missing file is the open error.
func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pkg-1.0.tar.gz")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFile(p, 10); err != nil || string(data) != "0123456789" {
		t.Fatalf("%q, %v", data, err)
	}
	var le *Error
	if _, err := ReadFile(p, 9); !errors.As(err, &le) || le.Kind != Download || le.Max != 9 {
		t.Fatalf("err = %v, want the download limit of 9 bytes", err)
	}
	if _, err := ReadFile(p+".missing", 10); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

// TestWithDefaults: zero and negative fields take their default; positive
// ones are kept.
func TestWithDefaults(t *testing.T) {
	if got := (Limits{}).WithDefaults(); got != Defaults() {
		t.Fatalf("zero limits: %+v, want %+v", got, Defaults())
	}
	neg := Limits{Download: -1, Expanded: -1, File: -1, Entries: -1, Distributions: -1, ScanTimeout: -1, MatchMemory: -1}
	if got := neg.WithDefaults(); got != Defaults() {
		t.Fatalf("negative limits: %+v, want %+v", got, Defaults())
	}
	set := Limits{Download: 1, Expanded: 2, File: 3, Entries: 4, Distributions: 5, ScanTimeout: 6, MatchMemory: 7}
	if got := set.WithDefaults(); got != set {
		t.Fatalf("set limits: %+v, want them kept", got)
	}
	partial := Limits{File: 7}.WithDefaults()
	if want := Defaults(); partial.File != 7 || partial.Download != want.Download || partial.ScanTimeout != want.ScanTimeout {
		t.Fatalf("partial: %+v", partial)
	}
}

// TestReadFileFromPipe: a file whose size says nothing (a named pipe; also
// a file that grows while read) is cut at the bound while read: one byte
// more is the Download limit, never a silently shortened file.
func TestReadFileFromPipe(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{{"0123456789", true}, {"0123456789X and more", false}} {
		p := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteString(tc.body)
				f.Close()
			}
			done <- err
		}()
		data, err := ReadFile(p, 10)
		var le *Error
		switch {
		case tc.ok && (err != nil || string(data) != tc.body):
			t.Errorf("%q: %q, %v", tc.body, data, err)
		case !tc.ok && (!errors.As(err, &le) || le.Kind != Download || le.Max != 10 || data != nil):
			t.Errorf("%q: %q, %v; want the download limit", tc.body, data, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
