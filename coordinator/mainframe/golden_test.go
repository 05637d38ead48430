package mainframe

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestReportGolden checks the exact bytes of PUT /package bodies against the
// shapes of the API contract, field for field and in order.
func TestReportGolden(t *testing.T) {
	url := "https://inspector.pypi.io/project/n/v/packages/aa/bb/cc/n-v.tar.gz/n-v/setup.py"
	tests := []struct {
		name string
		r    Report
		want string
	}{
		{
			name: "success with lease fields",
			r: Report{Name: "n", Version: "v", Attempt: ptr(1), AssignmentID: ptr("uuid"),
				Success: &Success{Score: 10, InspectorURL: &url, RulesMatched: []string{"rule_b", "rule_a", "rule_b"}, Commit: "c0ffee"}},
			want: `{"name":"n","version":"v","attempt":1,"assignment_id":"uuid","score":10,"inspector_url":"https://inspector.pypi.io/project/n/v/packages/aa/bb/cc/n-v.tar.gz/n-v/setup.py","rules_matched":["rule_a","rule_b"],"commit":"c0ffee"}`,
		},
		{
			name: "success without lease fields",
			r: Report{Name: "n", Version: "v",
				Success: &Success{Score: 15, InspectorURL: &url, RulesMatched: []string{"r1", "r2", "r3"}, Commit: "c0ffee"}},
			want: `{"name":"n","version":"v","score":15,"inspector_url":"https://inspector.pypi.io/project/n/v/packages/aa/bb/cc/n-v.tar.gz/n-v/setup.py","rules_matched":["r1","r2","r3"],"commit":"c0ffee"}`,
		},
		{
			name: "clean: inspector_url null, rules_matched empty",
			r:    Report{Name: "n", Version: "v", Attempt: ptr(2), AssignmentID: ptr("uuid"), Success: &Success{Commit: "c0ffee"}},
			want: `{"name":"n","version":"v","attempt":2,"assignment_id":"uuid","score":0,"inspector_url":null,"rules_matched":[],"commit":"c0ffee"}`,
		},
		{
			name: "negative score",
			r:    Report{Name: "n", Version: "v", Success: &Success{Score: -5, RulesMatched: []string{"benign"}, Commit: "c"}},
			want: `{"name":"n","version":"v","score":-5,"inspector_url":null,"rules_matched":["benign"],"commit":"c"}`,
		},
		{
			name: "failure with lease fields",
			r:    Report{Name: "n", Version: "v", Attempt: ptr(1), AssignmentID: ptr("uuid"), Reason: "download n-v.tar.gz: 404 Not Found"},
			want: `{"name":"n","version":"v","attempt":1,"assignment_id":"uuid","reason":"download n-v.tar.gz: 404 Not Found"}`,
		},
		{
			name: "failure without lease fields, reason on one line",
			r:    Report{Name: "n", Version: "v", Reason: "  unpack n-v.tar.gz:\n\tlimit <expanded size> exceeded\r\n"},
			want: `{"name":"n","version":"v","reason":"unpack n-v.tar.gz: limit <expanded size> exceeded"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// MarshalJSON gives the bytes Report sends (json.Marshal would
			// re-escape <, > and & as \u003c...: equal JSON, other bytes).
			got, err := tt.r.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestReportGoldenOnTheWire checks that Report sends exactly those bytes.
func TestReportGoldenOnTheWire(t *testing.T) {
	api := newFakeAPI()
	api.add("n", "v")
	c := overTCP(t, api, nil)
	jobs, err := c.Lease(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	j := jobs[0]
	if err := c.Report(t.Context(), Report{Name: j.Name, Version: j.Version, Attempt: j.Attempt, AssignmentID: j.AssignmentID, Success: &Success{RulesMatched: []string{}, Commit: j.Hash}}); err != nil {
		t.Fatal(err)
	}
	reqs := api.recorded()
	got := string(reqs[len(reqs)-1].body)
	want := `{"name":"n","version":"v","attempt":1,"assignment_id":"00000000-0000-4000-8000-000000000001","score":0,"inspector_url":null,"rules_matched":[],"commit":"rules-1"}`
	if got != want {
		t.Errorf("sent\n %s\nwant %s", got, want)
	}
}

func TestReportDoesNotModifyCaller(t *testing.T) {
	rules := []string{"b", "a", "b"}
	r := Report{Name: "n", Version: "v", Success: &Success{RulesMatched: rules, Commit: "c"}}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	if rules[0] != "b" || rules[1] != "a" || rules[2] != "b" {
		t.Errorf("caller's slice changed: %v", rules)
	}
}

// TestReportReasonIsOneLine: a failure reason goes as one line of printable
// text (no NUL reaches the server's database); a reason with nothing
// readable, like the other bodies the API cannot take, is ErrUnsendable.
func TestReportReasonIsOneLine(t *testing.T) {
	got, err := Report{Name: "n", Version: "v", Reason: "\x00bad\x00 gzip\n\theader\u00a0"}.MarshalJSON()
	if err != nil || string(got) != `{"name":"n","version":"v","reason":"bad gzip header"}` {
		t.Fatalf("got %s, %v", got, err)
	}
	for _, r := range []Report{
		{Name: "n", Version: "v", Reason: " \x00\t\u200b"},
		{Name: "n", Version: "v"},
		{Version: "v", Reason: "x"},
		{Name: "n", Version: "v", Reason: "x", Success: &Success{Commit: "c"}},
		{Name: "n", Version: "v", Success: &Success{}},
	} {
		if _, err := r.MarshalJSON(); !errors.Is(err, ErrUnsendable) {
			t.Errorf("%+v: err %v, want ErrUnsendable", r, err)
		}
	}
}
