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

// TestRulesAnswerOfOneLargeFileIsCopiedOnce: a rule set of one large file
// (24 MiB, within the answer's 64 MiB bound; the coordinator then refuses
// a set over protocol.MaxRuleSetBytes)
// decodes allocating what a map of strings does (the file once). A
// json.Decoder over the rules copied the file into its buffer, which grew
// by doubling: 3 times the file at every fetch (a 63 MiB answer, refused
// only after decoding, held 191 MiB besides the answer itself).
func TestRulesAnswerOfOneLargeFileIsCopiedOnce(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"plain", strings.Repeat("a", 24<<20)},
		{"escaped", strings.Repeat(`\n`, 12<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(`{"hash":"h","rules":{"big":"` + tc.src + `","small":"rule a {condition: true}"}}`)
			var plain struct {
				Hash  string            `json:"hash"`
				Rules map[string]string `json:"rules"`
			}
			asMap := allocated(func() error { return json.Unmarshal(body, &plain) })
			plain.Rules = nil
			var rs RuleSet
			got := allocated(func() error { return json.Unmarshal(body, &rs) })
			if len(rs.Rules) != 2 || rs.Rules["small"] != "rule a {condition: true}" {
				t.Fatalf("decoded %d files", len(rs.Rules))
			}
			if got > asMap+1<<20 {
				t.Fatalf("decoding a %d-byte answer allocated %d bytes (%.1fx), a map of strings %d", len(body), got, float64(got)/float64(len(body)), asMap)
			}
		})
	}
}

// allocated returns the bytes decode allocated; it must succeed.
func allocated(decode func() error) uint64 {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	err := decode()
	runtime.ReadMemStats(&m1)
	if err != nil {
		panic(err)
	}
	return m1.TotalAlloc - m0.TotalAlloc
}

// TestRuleFilesDecodeAsAMapWhenRulesIsGivenTwice: a "rules" member given
// twice decodes as into a map of strings: a second object adds to the
// first, a null after it leaves no rules (an answer the client refuses).
func TestRuleFilesDecodeAsAMapWhenRulesIsGivenTwice(t *testing.T) {
	for _, body := range []string{
		`{"hash":"h","rules":{"a":"x","b":"y"},"rules":{"b":"z","c":"w"}}`,
		`{"hash":"h","rules":{"a":"x"},"rules":null}`,
		`{"hash":"h","rules":null,"rules":{"a":"x"}}`,
		`{"hash":"h","rules":{"a":"x"},"rules":{}}`,
	} {
		var want struct {
			Hash  string            `json:"hash"`
			Rules map[string]string `json:"rules"`
		}
		var rs RuleSet
		err, werr := json.Unmarshal([]byte(body), &rs), json.Unmarshal([]byte(body), &want)
		if err != nil || werr != nil || fmt.Sprint(rs.Rules) != fmt.Sprint(want.Rules) || (rs.Rules == nil) != (want.Rules == nil) {
			t.Errorf("%s: rules %#v (%v), a map decodes %#v (%v)", body, rs.Rules, err, want.Rules, werr)
		}
	}
}

// FuzzRuleFilesDecodeAsAMap: RuleFiles, which walks the rules object by
// hand to copy each file once, decodes every answer as a map of strings
// does: the same files (or none) where the map decodes, an error where it
// does not; its only extra refusal is past protocol.MaxRuleFiles.
func FuzzRuleFilesDecodeAsAMap(f *testing.F) {
	for _, s := range []string{
		`{"hash":"h","rules":{"a":"rule a {condition: true}","b":""}}`,
		`{"hash":"h","rules":{"a":"1","a":"2"}}`,
		`{"hash":"h","rules":{"a":1}}`,
		`{"hash":"h","rules":["a"]}`,
		`{"hash":"h","rules":{"a":"x","b":"y"},"rules":{"b":"z","c":"w"}}`,
		`{"hash":"h","rules":{"a":"x"},"rules":null}`,
		`{"rules": { "a\"b" : "\u00e9\\\"" , "c":null } }`,
		"{\"rules\":{\"\xff\":\"\xfe\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var rs RuleSet
		err := json.Unmarshal(body, &rs)
		var want struct {
			Hash  string            `json:"hash"`
			Rules map[string]string `json:"rules"`
		}
		werr := json.Unmarshal(body, &want)
		switch {
		case werr != nil && err == nil:
			t.Fatalf("decoded %#v where a map fails: %v", rs.Rules, werr)
		case werr == nil && err != nil && len(want.Rules) <= protocol.MaxRuleFiles:
			t.Fatalf("failed (%v) where a map decodes %#v", err, want.Rules)
		case err == nil && (fmt.Sprint(rs.Rules) != fmt.Sprint(want.Rules) || (rs.Rules == nil) != (want.Rules == nil) || rs.Hash != want.Hash):
			t.Fatalf("decoded %q %#v, a map %q %#v", rs.Hash, rs.Rules, want.Hash, want.Rules)
		}
	})
}
