package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// The file format: one JSON record per report, as the first release wrote
// it (testdata/outbox-v1.db). Entries convert to and from it here, and
// nowhere else.
//
// Since then a record also carries "crc32c": the CRC-32C of the rest of the
// record as it encodes (JSON of the record without that field, after one
// decode, so that what is summed is what a reader sees). bbolt checksums its
// meta pages only: without it a flipped bit that leaves valid JSON
// ("score":1 to "score":0) would send another verdict. A record without the
// field (the first release's) is read unchecked; a release that does not
// know the field ignores it.

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

// sum is the checksum of rec without its Sum, as rec encodes.
func (rec entryRecord) sum() (uint32, error) {
	rec.Sum = nil
	data, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	return crc32.Checksum(data, castagnoli), nil
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
	// Summed as a reader decodes it: encoding is not always the identity
	// (invalid UTF-8 becomes U+FFFD, a time loses its monotonic reading).
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	var read entryRecord
	if err := json.Unmarshal(data, &read); err != nil {
		return nil, err
	}
	sum, err := read.sum()
	if err != nil {
		return nil, err
	}
	read.Sum = &sum
	return json.Marshal(read)
}

// UnmarshalJSON reads the entry from the file format. A record with a
// checksum that does not match is an error wrapping errChecksum.
func (e *Entry) UnmarshalJSON(data []byte) error {
	var rec entryRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return err
	}
	if rec.Sum != nil {
		sum, err := rec.sum()
		if err != nil {
			return err
		}
		if sum != *rec.Sum {
			return fmt.Errorf("%w (crc32c %08x, content %08x)", errChecksum, *rec.Sum, sum)
		}
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
