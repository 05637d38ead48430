package mainframe

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/protocol"
)

// ruleSetBody is a GET /rules answer of n empty files named by number.
func ruleSetBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"hash":"h","rules":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%d":""`, i)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

// TestRuleFilesDecoding: the rules of a GET /rules answer decode as a map
// of strings would (null is none, a key given twice keeps its last value,
// a value that is not a string is an error), up to protocol.MaxRuleFiles
// files.
func TestRuleFilesDecoding(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       RuleFiles // nil with an error
		err        string
	}{
		{"files", `{"hash":"h","rules":{"a":"rule a {condition: true}","b":""}}`, RuleFiles{"a": "rule a {condition: true}", "b": ""}, ""},
		{"null", `{"hash":"h","rules":null}`, nil, ""},
		{"twice", `{"hash":"h","rules":{"a":"1","a":"2"}}`, RuleFiles{"a": "2"}, ""},
		{"number", `{"hash":"h","rules":{"a":1}}`, nil, "rules[a]"},
		{"list", `{"hash":"h","rules":["a"]}`, nil, "not an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs RuleSet
			err := json.Unmarshal([]byte(tc.body), &rs)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || fmt.Sprint(rs.Rules) != fmt.Sprint(tc.want) || (tc.want == nil) != (rs.Rules == nil) {
				t.Fatalf("rules %#v, %v; want %#v", rs.Rules, err, tc.want)
			}
		})
	}
	var rs RuleSet
	if err := json.Unmarshal(ruleSetBody(protocol.MaxRuleFiles), &rs); err != nil || len(rs.Rules) != protocol.MaxRuleFiles {
		t.Fatalf("%d files: %d decoded, %v", protocol.MaxRuleFiles, len(rs.Rules), err)
	}
	err := json.Unmarshal(ruleSetBody(protocol.MaxRuleFiles+1), &rs)
	if err == nil || !strings.Contains(err.Error(), "more than 4096 files") {
		t.Fatalf("%d files: %v, want an error naming the bound", protocol.MaxRuleFiles+1, err)
	}
}

// TestRulesAnswerOfManyFilesStopsEarly: an answer of hundreds of thousands
// of tiny files stops at the file bound, allocating a fraction of its size.
// Decoded whole into a map, 8 MiB of them allocated several times that (a
// 60 MiB answer held 500 MiB, past the coordinator's 512 MiB limit: a
// hostile or broken API could crash it at every restart).
func TestRulesAnswerOfManyFilesStopsEarly(t *testing.T) {
	body := ruleSetBody(700_000)
	var rs RuleSet
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	err := json.Unmarshal(body, &rs)
	runtime.ReadMemStats(&m1)
	if err == nil || !strings.Contains(err.Error(), "more than 4096 files") {
		t.Fatalf("error %v, want one naming the file bound", err)
	}
	if got := m1.TotalAlloc - m0.TotalAlloc; got > uint64(len(body)/2) {
		t.Fatalf("decoding %d bytes allocated %d bytes, want at most half the answer", len(body), got)
	}
}
