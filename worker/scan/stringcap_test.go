package scan

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// TestStringMatchCapIsALimit: libyara keeps at most 1,000,000 matches of a
// string per scan (YR_MAX_STRING_MATCHES) and silently drops the rest, so a
// file that repeats a rule's string a million times hides the occurrence
// the rule's condition looks for (here the one at the file's end), for a
// literal and for a hex string with a long jump (a chain, whose first part
// is capped). With the match data a worker and dragonfly scan keep (1
// byte), the matches stay under the match memory bound (57 MB), and the
// file read clean with no error. It must fail as a limit; one match fewer
// is a verdict, and the scanner is usable after a capped scan.
func TestStringMatchCapIsALimit(t *testing.T) {
	const maxMatches = 1_000_000 // YR_MAX_STRING_MATCHES (matchmem.MaxStringMatches)
	for _, tc := range []struct {
		name, rule string
		file       func(n int) []byte
	}{
		{"literal", `$a = "AB" condition: $a in (filesize-2..filesize)`,
			func(n int) []byte { return bytes.Repeat([]byte("AB"), n) }},
		{"chain", `$a = { 41 42 [250-260] 43 44 } condition: $a in (filesize-300..filesize)`,
			func(n int) []byte {
				return append(append(bytes.Repeat([]byte("AB"), n), bytes.Repeat([]byte("x"), 254)...), "CD"...)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := compile(t, map[string]string{"tail": `rule tail { meta: weight = 10 strings: ` + tc.rule + ` }`})
			e := newEngine(t, Config{Threads: 1, MaxMatchData: 1})
			scanFile := func(n int) (Result, error) {
				return e.Scan(context.Background(), rs, "evil.py", tc.file(n))
			}
			const over = maxMatches + 100_000
			res, err := scanFile(over)
			var le *limit.Error
			if !errors.As(err, &le) || le.Kind != limit.Kind("string_matches") || le.Path != "evil.py" || le.Max != maxMatches {
				t.Fatalf("%d matches of $a: score %d, rules %v, error %v; want a string_matches limit error on evil.py",
					over, res.Score, res.Rules, err)
			}
			if got, want := err.Error(), "evil.py: YARA string matches exceed libyara's limit string_matches (1000000 matches of one string)"; got != want {
				t.Errorf("error %q, want %q", got, want)
			}
			for _, n := range []int{maxMatches, 10} {
				res, err = scanFile(n)
				if err != nil || res.Score != 10 || res.TopFile != "evil.py" {
					t.Fatalf("%d matches of $a: score %d, top %q, error %v; want score 10 on evil.py", n, res.Score, res.TopFile, err)
				}
			}
		})
	}
}
