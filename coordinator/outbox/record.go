package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
)

// The file format: one JSON record per report, as the first release wrote
// it (testdata/outbox-v1.db). Entries convert to and from it here, and
// nowhere else.
//
// Since then a record also carries "crc32c": the CRC-32C of the record's
// other members as written (recordSum). bbolt checksums its meta pages only:
// without it a flipped bit that leaves valid JSON ("score":1 to "score":0)
// would send another verdict. The sum covers every member, those a release
// does not know included, so a release rolled back to reads what a later one
// wrote (and, rewriting a record, drops what it does not know and sums the
// rest). A record without the field is read unchecked if it has only the
// first release's members (it is one of them); one with another member and
// no checksum has lost it (a flipped bit in its key) and is refused.

type entryRecord struct {
	Report    reportRecord `json:"report"`
	LeasedAt  time.Time    `json:"leased_at"`
	Enqueued  time.Time    `json:"enqueued"`
	Tries     int          `json:"tries"`
	NotBefore time.Time    `json:"not_before"`
	Gen       int          `json:"gen"`
	Sum       *uint32      `json:"crc32c,omitempty"`
}

type reportRecord struct {
	Name         string         `json:"name"`
	Version      string         `json:"version"`
	Attempt      *int           `json:"attempt,omitempty"`
	AssignmentID *string        `json:"assignment_id,omitempty"`
	Success      *successRecord `json:"success,omitempty"`
	Reason       string         `json:"reason,omitempty"`
}

type successRecord struct {
	Score        int64    `json:"score"`
	InspectorURL *string  `json:"inspector_url"`
	RulesMatched []string `json:"rules_matched"`
	Commit       string   `json:"commit"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errChecksum is a record whose content is not what was written.
var errChecksum = errors.New("checksum mismatch: the record changed after it was written")

// sumKey is the member that holds a record's checksum.
const sumKey = "crc32c"

// firstMembers are the members of a record of the first release, which
// wrote no checksum.
var firstMembers = map[string]bool{"report": true, "leased_at": true, "enqueued": true, "tries": true, "not_before": true, "gen": true}

// recordSum is the CRC-32C of a record's members other than sumKey, as
// written, in a canonical form: sorted by name, each value compacted
// (encoding/json's encoding of a map of raw values). It also returns the
// checksum the record holds, if any.
func recordSum(data []byte) (sum uint32, held *uint32, err error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return 0, nil, err
	}
	if raw, ok := members[sumKey]; ok {
		var v uint32
		if err := json.Unmarshal(raw, &v); err != nil {
			return 0, nil, fmt.Errorf("%s: %w", sumKey, err)
		}
		held = &v
		delete(members, sumKey)
	} else {
		for name := range members {
			if !firstMembers[name] {
				return 0, nil, fmt.Errorf("%w: member %q and no %s (a record since the first release always has one)", errChecksum, clip.String(name, 64), sumKey)
			}
		}
	}
	canon, err := json.Marshal(members)
	if err != nil {
		return 0, nil, err
	}
	return crc32.Checksum(canon, castagnoli), held, nil
}

// MarshalJSON writes the entry in the file format.
func (e Entry) MarshalJSON() ([]byte, error) {
	r := e.Report
	rec := entryRecord{
		Report:   reportRecord{Name: r.Name, Version: r.Version, Attempt: r.Attempt, AssignmentID: r.AssignmentID, Reason: r.Reason},
		LeasedAt: e.LeasedAt, Enqueued: e.Enqueued, Tries: e.Tries, NotBefore: e.NotBefore, Gen: e.Gen,
	}
	if s := r.Success; s != nil {
		rec.Report.Success = &successRecord{Score: s.Score, InspectorURL: s.InspectorURL, RulesMatched: s.RulesMatched, Commit: s.Commit}
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	sum, _, err := recordSum(data)
	if err != nil {
		return nil, err
	}
	// The same members and bytes, with the checksum after them.
	rec.Sum = &sum
	return json.Marshal(rec)
}

// UnmarshalJSON reads the entry from the file format. A record with a
// checksum that does not match is an error wrapping errChecksum.
func (e *Entry) UnmarshalJSON(data []byte) error {
	sum, held, err := recordSum(data)
	if err != nil {
		return err
	}
	if held != nil && sum != *held {
		return fmt.Errorf("%w (crc32c %08x, content %08x)", errChecksum, *held, sum)
	}
	var rec entryRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return err
	}
	r := rec.Report
	*e = Entry{
		Report:   Report{Name: r.Name, Version: r.Version, Attempt: r.Attempt, AssignmentID: r.AssignmentID, Reason: r.Reason},
		LeasedAt: rec.LeasedAt, Enqueued: rec.Enqueued, Tries: rec.Tries, NotBefore: rec.NotBefore, Gen: rec.Gen,
	}
	if s := r.Success; s != nil {
		e.Report.Success = &Success{Score: s.Score, InspectorURL: s.InspectorURL, RulesMatched: s.RulesMatched, Commit: s.Commit}
	}
	return nil
}
