package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/scanreport"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// TestScanAndWorkerAgreeOnHostileInput runs every hostile distribution of
// testkit.HostileCases through dragonfly scan (a URL target each, from the
// same server, with the same limits); worker.TestHostileDistributions runs
// the same table through a worker session. Both must give exactly the
// table's verdict: a failure with the very reason the worker reports, or a
// clean scan of the listed files. (Before, dragonfly scan scored an HTML
// page saved as .tar.gz 0 and exited 0 while the worker failed it.)
func TestScanAndWorkerAgreeOnHostileInput(t *testing.T) {
	cases := testkit.HostileCases(t)
	srv := testkit.HostileServer(t, cases)
	lim := testkit.HostileLimits()
	args := []string{"scan", "--demo-rules", "--format", "json", "--threads", "2",
		"--allowed-hosts", srv.URL,
		"--max-file-size", fmt.Sprint(lim.File), "--max-expanded-size", fmt.Sprint(lim.Expanded),
		"--max-archive-entries", fmt.Sprint(lim.Entries), "--max-download-size", fmt.Sprint(lim.Download),
		"--download-stall-timeout", testkit.HostileStall.String(), "--download-attempts", "1"}
	for _, c := range cases {
		args = append(args, srv.URL+"/"+c.Dist)
	}
	code, out, stderr := runCLI(t, nil, args...)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (some targets fail)\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("%d result lines for %d cases:\n%s", len(lines), len(cases), out)
	}
	for i, c := range cases {
		var r scanreport.JSONResult
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if c.Clean() {
			if r.Error != "" || r.FilesScanned != int(c.Files) {
				t.Errorf("%s: error %q, %d files; want a clean scan of %d files", c.Name, r.Error, r.FilesScanned, c.Files)
			}
			continue
		}
		if r.Error != c.Reason {
			t.Errorf("%s:\n scan  %q\n want  %q (the worker's reason)", c.Name, r.Error, c.Reason)
		}
	}
}
