package limit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

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
