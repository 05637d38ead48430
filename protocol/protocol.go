// Package protocol holds what both ends of the fleet stream must agree on
// beyond the generated messages (package fleetv1): message size limits, the
// largest rule set that may cross the stream, and the bounds of strings taken
// from input. Coordinator and worker never import each other; both import
// this.
//
// Limits are matched on both ends: the coordinator's send limit is the
// worker's receive limit (room for a rule set up to MaxRuleSetBytes), and
// the worker's send limit is the coordinator's receive limit. The coordinator
// announces both in Welcome, so a worker one release apart keeps to what the
// coordinator it talks to accepts.
package protocol

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
)

const (
	// Version is the protocol version this build speaks (Hello.protocol_version).
	// Fields added since are optional: each side handles their absence.
	Version = fleetv1.ProtocolVersion_PROTOCOL_VERSION_1

	// MaxRuleSetBytes bounds a rule set: the bytes of its sources and file
	// stems together. The coordinator refuses a larger set from the API (the
	// set in use stays) and a worker refuses a larger RuleSet message. Real
	// sets are tens of KB (the bench set 21.5 KB). It was 32 MiB, and sets
	// within that took 0.8 to 1.2 GB to compile, on the coordinator (512 MiB
	// in the deployments: one rules answer got it killed, at every restart)
	// and on every worker; 4 MiB sets took 1.0 to 1.5 s and 114 to 189 MiB.
	MaxRuleSetBytes = 4 << 20

	// MaxRuleFiles bounds the files of a rule set (real sets have tens).
	// Within MaxRuleSetBytes, millions of tiny files took seconds and
	// hundreds of MiB to compile, on the coordinator and on every worker.
	MaxRuleFiles = 4096

	// MaxResponseBytes is the largest coordinator-to-worker message: the
	// coordinator's send limit and the worker's receive limit. It stays what
	// it was when a rule set could have 32 MiB (a set at that bound plus
	// framing), so that releases on either side of the change agree on it.
	MaxResponseBytes = 32<<20 + 1<<20

	// MaxRequestBytes is the largest worker-to-coordinator message: the
	// coordinator's receive limit and the worker's send limit. Workers split
	// result batches below it.
	MaxRequestBytes = 4 << 20

	// LegacyRequestBytes is the request limit a worker assumes when the
	// coordinator's Welcome does not state one (gRPC's default receive limit,
	// which coordinators before the field used).
	LegacyRequestBytes = 4 << 20

	// MaxIDBytes bounds worker ids, host names and versions in Hello.
	MaxIDBytes = 256

	// MaxTextBytes bounds one input-derived text in a message: a failure
	// reason, a compile error, a task return reason.
	MaxTextBytes = 4 << 10

	// MaxURLBytes bounds a distribution URL a task carries (PyPI's are a
	// few hundred bytes). The coordinator fails a job with a longer one, or
	// with a name or version over MaxTextBytes: 256 tasks of an Assign stay
	// far below MaxResponseBytes.
	MaxURLBytes = 8 << 10

	// MaxPathBytes bounds an archive member's path (Linux's PATH_MAX: pip
	// cannot write a longer one). A worker fails a distribution holding a
	// longer path; the coordinator refuses a longer top file it is sent
	// (CheckMemberPath), so that neither the report's inspector_url nor
	// what it keeps grows with a hostile name.
	MaxPathBytes = 4096

	// MaxPrefetch is the most tasks a coordinator assigns a session beyond
	// its slots (DRAGONFLY_PREFETCH is refused above it) and what a worker
	// holds beyond its scanner threads by default: tasks beyond are handed
	// back at once.
	MaxPrefetch = 16
)

// CheckRuleSet says whether a rule set's sources (file stem to source) are
// within MaxRuleFiles and MaxRuleSetBytes; its error names the bound. The
// coordinator refuses a set from the API that is not (the set in use
// stays), a worker refuses such a RuleSet, and rules check says so.
func CheckRuleSet(sources map[string]string) error {
	if n := len(sources); n > MaxRuleFiles {
		return fmt.Errorf("the rule set has %d files, over the %d a rule set may have", n, MaxRuleFiles)
	}
	if n := RuleSetBytes(sources); n > MaxRuleSetBytes {
		return fmt.Errorf("the rule set holds %d bytes, over the %d a rule set may have", n, MaxRuleSetBytes)
	}
	return nil
}

// RuleSetBytes is the size of a rule set as MaxRuleSetBytes counts it.
func RuleSetBytes(sources map[string]string) int {
	n := 0
	for stem, src := range sources {
		n += len(stem) + len(src)
	}
	return n
}

// CheckMemberPath says whether p is an archive member's path as a worker
// names it: relative, clean ("a/b.py", never "a//b", "./a" or "a/"), not
// escaping the archive's root (".."), valid UTF-8 without NUL, at most
// MaxPathBytes. (A member's "\" is read as "/"; a non-archive file's name
// may keep one: escaped as %5C in a URL, no browser reads it as "/".) The
// coordinator refuses a result whose top file is not: the path becomes the
// report's inspector_url, and "a/../../../other/1.0/setup.py" would link
// another project's file, which a browser resolves before inspector sees
// it.
func CheckMemberPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPathBytes:
		return fmt.Errorf("path of %d bytes, over %d", len(p), MaxPathBytes)
	case !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0:
		return errors.New("path holds invalid UTF-8 or a NUL")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute path")
	case path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../"):
		return errors.New("path is not clean or leaves the archive")
	}
	return nil
}
