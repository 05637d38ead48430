package verdict

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// TestFailureIsOneBoundedLine: a failure's reason names the distribution
// and the cause on one line (an archive's error may quote a member name
// with newlines in it), at most protocol.MaxTextBytes, and a broken limit
// is reported with its kind and name.
func TestFailureIsOneBoundedLine(t *testing.T) {
	f := Failure("evil-1.0.tar.gz", &archive.Error{Path: "a\nb\r\nc.py", Err: errors.New("line one\nline two")})
	if strings.ContainsAny(f.GetReason(), "\n") || !strings.HasPrefix(f.GetReason(), "distribution evil-1.0.tar.gz: ") || !strings.Contains(f.GetReason(), "line one line two") {
		t.Errorf("reason %q: want one line naming the distribution and the cause", f.GetReason())
	}
	if f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_ARCHIVE || f.GetLimit() != "" {
		t.Errorf("kind %v limit %q, want an archive failure without a limit", f.GetKind(), f.GetLimit())
	}
	long := Failure("x.whl", errors.New(strings.Repeat("y", 3*protocol.MaxTextBytes)))
	if n := len(long.GetReason()); n > protocol.MaxTextBytes || n < protocol.MaxTextBytes/2 {
		t.Errorf("reason of %d bytes, want at most %d (and not emptied)", n, protocol.MaxTextBytes)
	}
	le := Failure("x.whl", fmt.Errorf("walk: %w", &limit.Error{Kind: limit.Expanded, Max: 100, Path: "a.py"}))
	if le.GetKind() != fleetv1.FailureKind_FAILURE_KIND_LIMIT || le.GetLimit() != string(limit.Expanded) {
		t.Errorf("limit failure: kind %v limit %q, want LIMIT %q", le.GetKind(), le.GetLimit(), limit.Expanded)
	}
}
