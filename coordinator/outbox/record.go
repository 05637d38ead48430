package outbox

import (
	"encoding/json"
	"time"
)

// The file format: one JSON record per report, as the first release wrote
// it (testdata/outbox-v1.db). Entries convert to and from it here, and
// nowhere else.

type entryRecord struct {
	Report    reportRecord `json:"report"`
	LeasedAt  time.Time    `json:"leased_at"`
	Enqueued  time.Time    `json:"enqueued"`
	Tries     int          `json:"tries"`
	NotBefore time.Time    `json:"not_before"`
	Gen       int          `json:"gen"`
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
	return json.Marshal(rec)
}

// UnmarshalJSON reads the entry from the file format.
func (e *Entry) UnmarshalJSON(data []byte) error {
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
