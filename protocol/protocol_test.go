package protocol

import (
	"strconv"
	"strings"
	"testing"
)

// TestCheckRuleSet: a rule set is refused past MaxRuleFiles files or
// MaxRuleSetBytes bytes (stems and sources), with an error naming the
// bound, and taken at both.
func TestCheckRuleSet(t *testing.T) {
	files := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[strconv.Itoa(i)] = ""
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		sources map[string]string
		want    string // "" when taken
	}{
		{"files at the bound", files(MaxRuleFiles), ""},
		{"one file too many", files(MaxRuleFiles + 1), "4097 files, over the 4096"},
		{"bytes at the bound", map[string]string{"a": strings.Repeat("x", MaxRuleSetBytes-1)}, ""},
		{"one byte too many", map[string]string{"ab": strings.Repeat("x", MaxRuleSetBytes-1)}, "over the 4194304 a rule set may have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRuleSet(tc.sources)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// TestCheckMemberPath: the paths workers name (clean, relative, inside the
// archive, at most MaxPathBytes; a non-archive file's name may hold a
// backslash) are taken; every other shape is refused.
func TestCheckMemberPath(t *testing.T) {
	long := strings.Repeat("a/", MaxPathBytes/2-1) + "xy" // MaxPathBytes bytes
	for _, p := range []string{"setup.py", "p-1.0/setup.py", "a/.hidden/b.py", "a/..b/c", "\uFFFD.py", "C/x", "a\\b.py", long} {
		if err := CheckMemberPath(p); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
	for _, p := range []string{"", ".", "..", "../x", "a/../../x", "a/..", "./a", "a/./b", "a//b", "a/", "/a", "a\x00b", "a\xffb", long + "z"} {
		if err := CheckMemberPath(p); err == nil {
			t.Errorf("%q taken", p)
		}
	}
}
