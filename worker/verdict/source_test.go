package verdict

import (
	"context"
	"testing"
)

// TestEmptySourceFails: a Source with no URL, path or data (an empty path,
// an empty URL) is nothing to scan, never an empty file that reads clean.
func TestEmptySourceFails(t *testing.T) {
	var s Scanner // no engine: nothing may reach it
	for _, src := range []Source{{}, {Path: ""}, {URL: ""}, {Name: "pkg-1.0.tar.gz"}} {
		if _, err := s.Scan(context.Background(), nil, src); err == nil {
			t.Errorf("%+v: no error", src)
		}
	}
}
