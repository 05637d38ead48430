package scan

/*
#include <stdint.h>
#include <string.h>
#include <yara.h>

typedef struct {
	int64_t offset;
	int32_t matched;
	int32_t length;
	int32_t copied;
} fleet_match;

static YR_STRING* fleet_rule_strings(YR_RULE* r) { return r->strings; }
static YR_STRING* fleet_next_string(YR_STRING* s) { return STRING_IS_LAST_IN_RULE(s) ? NULL : s + 1; }
static const char* fleet_string_identifier(YR_STRING* s) { return s->identifier; }
static const char* fleet_rule_identifier(YR_RULE* r) { return r->identifier; }

// fleet_string_matches lists the matches of string s as yara -s lists them
// (yr_string_matches_foreach: by offset, private matches skipped): the first
// max go to out (offset, data length) with up to max_data bytes of their
// data at buf + i*max_data, with the match's whole length (matched); it
// returns how many there are in all.
static int32_t fleet_string_matches(YR_SCAN_CONTEXT* ctx, YR_STRING* s, fleet_match* out, uint8_t* buf, int32_t max, int32_t max_data) {
	YR_MATCH* m;
	int32_t n = 0;
	yr_string_matches_foreach(ctx, s, m) {
		if (n < max) {
			int32_t c = m->data_length < max_data ? m->data_length : max_data;
			out[n].offset = m->base + m->offset;
			out[n].matched = m->match_length;
			out[n].length = m->data_length;
			out[n].copied = c;
			if (c > 0)
				memcpy(buf + (size_t) n * max_data, m->data, c);
		}
		n++;
	}
	return n;
}
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/dragonfly-fleet/fleet/score"
	yara "github.com/hillu/go-yara/v4"
)

// errDetailsLayout means go-yara's Rule no longer starts with its YR_RULE
// pointer: match details cannot be read.
var errDetailsLayout = errors.New("match details: go-yara's rule layout is not the one this build expects")

// stringDetails reads the matched strings of rule r from the scan context
// sc, as `yara -s` lists them: every string of the rule with at least one
// match, its first score.MaxStringMatches matches with up to
// score.MaxMatchBytes of data each, and how many more there are. It reads
// the YR_RULE pointer that is the first field of yara.Rule (go-yara v4.2.4,
// as the match memory guard, rules/matchmem, reads yara.Scanner's) and
// checks it against the rule's identifier.
func stringDetails(sc *yara.ScanContext, r *yara.Rule) ([]score.StringHits, error) {
	ctx := *(**C.YR_SCAN_CONTEXT)(unsafe.Pointer(sc))
	rule := *(**C.YR_RULE)(unsafe.Pointer(r))
	name := r.Identifier()
	if ctx == nil || rule == nil || C.GoString(C.fleet_rule_identifier(rule)) != name {
		return nil, errDetailsLayout
	}
	var (
		out  []score.StringHits
		ms   [score.MaxStringMatches]C.fleet_match
		data [score.MaxStringMatches * score.MaxMatchBytes]byte
	)
	for s := C.fleet_rule_strings(rule); s != nil; s = C.fleet_next_string(s) {
		n := int(C.fleet_string_matches(ctx, s, &ms[0], (*C.uint8_t)(unsafe.Pointer(&data[0])), score.MaxStringMatches, score.MaxMatchBytes))
		if n == 0 {
			continue
		}
		h := score.StringHits{Rule: name, String: C.GoString(C.fleet_string_identifier(s))}
		for i := range min(n, score.MaxStringMatches) {
			m := ms[i]
			d := data[i*score.MaxMatchBytes : i*score.MaxMatchBytes+int(m.copied)]
			h.Matches = append(h.Matches, score.StringMatch{Offset: int64(m.offset), Length: int(m.length), MatchLength: int(m.matched), Data: append([]byte(nil), d...)})
		}
		h.Omitted = max(n-score.MaxStringMatches, 0)
		out = append(out, h)
	}
	return out, nil
}
