package limit

import (
	"strings"
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
