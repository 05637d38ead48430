package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// statsRow returns the numbers of one --stats row ("  name   12 files, ...").
func statsRow(t *testing.T, stderr, name string) []int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` +(.*)$`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no %q row in:\n%s", name, stderr)
	}
	var out []int
	for _, f := range regexp.MustCompile(`\d+`).FindAllString(m[1], -1) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// TestScanStats: --stats says what the engine scanned and saved; the same
// distribution twice is answered by the match cache the second time, and
// not with --match-cache-size 0 (or DRAGONFLY_MATCH_CACHE_SIZE=off); the
// verdicts are the same either way.
func TestScanStats(t *testing.T) {
	dir := writeDemo(t)
	target := dir + "/reqeusts-2.31.0.tar.gz"
	code, out, errOut := runCLI(t, nil, "scan", "--demo-rules", "--format", "json", "--stats", "--threads", "1", target, target)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	files := statsRow(t, errOut, "files scored")[0]
	scanned := statsRow(t, errOut, "scanned")[0]
	hits := statsRow(t, errOut, "match cache hits")[0]
	if files == 0 || scanned+hits != files || hits < files/2 {
		t.Errorf("files %d, scanned %d, hits %d: want the second copy from the cache\n%s", files, scanned, hits, errOut)
	}
	for _, off := range []struct {
		vars map[string]string
		args []string
	}{{nil, []string{"--match-cache-size", "0"}}, {map[string]string{"DRAGONFLY_MATCH_CACHE_SIZE": "off"}, nil}} {
		args := append([]string{"scan", "--demo-rules", "--format", "json", "--stats", "--threads", "1"}, off.args...)
		code, out2, errOut := runCLI(t, off.vars, append(args, target, target)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if hits := statsRow(t, errOut, "match cache hits")[0]; hits != 0 || statsRow(t, errOut, "scanned")[0] != files {
			t.Errorf("cache off: %d hits\n%s", hits, errOut)
		}
		if out2 != out {
			t.Errorf("the cache changed the output:\n%s\n%s", out, out2)
		}
	}
	if code, _, errOut := runCLI(t, nil, "scan", "--demo-rules", "--match-cache-size", "lots", target); code != 2 || !strings.Contains(errOut, "match-cache-size") {
		t.Errorf("a bad size: exit %d, %s", code, errOut)
	}
}
