package status

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
)

const longURL = "https://inspector.pypi.io/project/evilpkg-with-a-long-name/0.1.0rc1/evilpkg_with_a_long_name-0.1.0rc1.tar.gz/evilpkg_with_a_long_name-0.1.0rc1/src/evilpkg/setup.py"

// sampleDocument is a status with every section filled, with values longer
// than a terminal line.
func sampleDocument() Document {
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	age := 125.0
	liar := "cert:CN=worker-7f3a9c1e.scanners.eu-west-1.internal.example.org,OU=dragonfly-fleet,O=Example"
	var rels []Release
	for i := range 40 {
		rels = append(rels, Release{Name: fmt.Sprintf("package-number-%02d", i), Version: "1.0.0", Finished: now.Add(-time.Duration(i) * time.Minute)})
	}
	return Document{
		Generated: now, Version: "1.4.0", Started: now.Add(-3 * time.Hour), RulesHash: "abcdef0123456789abcdef",
		Alerts: []Alert{{Level: AlertError, Title: "Outbox writes are failing",
			Detail: "since 2026-08-01T11:59:00Z: 3 reports are held in memory only (a crash loses them) and leasing is paused until writes succeed. Last error: write /var/lib/dragonfly/outbox.db: no space left on device"}},
		Fleet: Fleet{Workers: 1, SlotsTotal: 4, SlotsBusy: 3, JobsInFlight: 2, TasksWaiting: 1, OldestWaitingSeconds: 2.5,
			TasksRunning: 3, OutboxReports: 1, DesiredWorkers: 3, JobsLeased: 40, JobsSucceeded: 35, JobsFailed: 2, ReportsAccepted: 36, ReportsConflicted: 1},
		Workers: []Worker{{SessionID: "s1-w1", WorkerID: "w1", Identity: "w1", Host: "node-a", Version: "1.4.0", Slots: 4, Busy: 3, Held: 4,
			RulesHashes: []string{"abcdef0123456789abcdef"}, Connected: now.Add(-time.Hour), LastHeartbeat: now.Add(-2 * time.Second), JobsDone: 37, TasksDone: 90},
			{SessionID: "s2", WorkerID: "worker-with-a-very-long-identifier-0123456789", Host: "node-b.cluster.internal.example.org", Version: "1.4.0-dev-0123456789ab-dirty",
				Slots: 64, Busy: 64, Held: 65, Draining: true, RulesHashes: []string{"abcdef0123456789abcdef", "0000000000000000aaaa"}, LastHeartbeat: now, JobsDone: 123456, TasksDone: 1234567}},
		API: API{LastLease: now.Add(-time.Second), LastReport: now.Add(-3 * time.Second), WindowSeconds: 900,
			Endpoints: []Endpoint{{Endpoint: "POST /jobs", Requests: 50, Errors: 2, LastStatus: 200, LastCall: now.Add(-time.Second)}},
			LastError: &Error{Time: now.Add(-5 * time.Minute), Source: "lease", Message: "POST /jobs: 503 Service Unavailable"},
			Queue:     &Queue{Fetched: now.Add(-10 * time.Second), QueueStatus: mainframe.QueueStatus{Queued: 120, InProgress: 4, Retryable: 3, TotalBacklog: 127, OldestAgeSeconds: &age}}},
		SpotChecks: SpotChecks{Active: true, Rate: 0.02, Identities: 3, State: "on", Picked: 10, Agreed: 8, Mismatches: 1, Decided: 1,
			Recent: []SpotCheck{{Time: now.Add(-time.Minute), Kind: SpotMismatch, Name: "evilpkg", Version: "0.1", Identities: []string{liar, "w1"},
				Reason: "verdicts differ: score 0 against score 15 (rules r1, r2, r3) for https://files.example/packages/aa/bb/evilpkg-0.1.tar.gz"}}},
		Quarantined: []Quarantined{{Identity: liar, Reason: "lied in a spot check of evilpkg 0.1: reported score 0, the majority 15", Since: now.Add(-time.Minute),
			Releases: rels, WindowSeconds: 3600, Complete: true}},
		TopRules: []RuleMatches{{Rule: "r1", Matches: 12}, {Rule: "a_rule_with_a_name_longer_than_any_terminal_column_should_have_to_show", Matches: 3}},
		Results: []Result{{Finished: now.Add(-4 * time.Second), Name: "evilpkg", Version: "0.1", Score: 15,
			Rules: []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7"}, InspectorURL: "https://inspector.pypi.io/project/evilpkg/0.1/x/setup.py",
			Workers: []string{"w1"}, ElapsedSeconds: 3.2, Report: ReportAccepted},
			{Finished: now.Add(-5 * time.Second), Name: "evilpkg-with-a-long-name", Version: "0.1.0rc1", Score: 120,
				Rules: []string{"some_rule_with_a_long_name", "another_rule_with_a_long_name"}, InspectorURL: longURL,
				Workers: []string{liar, "w1"}, Report: ReportRetrying}},
		Failures: []Failure{{Time: now.Add(-time.Minute), Kind: FailureScan, Name: "huge", Version: "9",
			Reason: "distribution huge-9.whl: expanded size exceeds limit DRAGONFLY_MAX_EXPANDED_SIZE (512 MiB) after 1,234 files; the rest was not scanned", Report: ReportAccepted}},
	}
}

// TestPrintStatus: the tables show every section in 80 columns; long values
// are shortened (URLs in the middle), never wrapped past the width.
func TestPrintStatus(t *testing.T) {
	var out bytes.Buffer
	WriteText(&out, sampleDocument(), 80)
	text := out.String()
	for _, want := range []string{
		"Coordinator 1.4.0 · rules abcdef012345 · up 3h00m",
		"ERROR: Outbox writes are failing",
		"no space left on",
		"workers 1 (desired 3) · slots busy 3/4 · jobs in flight 2",
		"tasks waiting 1 (oldest 2.5s)",
		"WORKERS (2)", "w1", "node-a", "2.0s ago", "3/4", "draining", "abcdef012345+1",
		"QUARANTINED (1)", "POST /package", "cert:CN=worker-7f3a9c1e", "since 2026-08-01 11:59 UTC (1m00s ago) · 40 releases in the 1h00m before", "reason: lied in a spot check",
		"package-number-00==1.0.0, package-number-01==1.0.0", "more; --format json lists them all",
		"SPOT CHECKS", "on · rate 2% · 3 identities ready", "1 mismatched", "mismatch", "verdicts differ",
		"last lease 1.0s ago · last report 3.0s ago",
		"last error (lease, 5m00s ago): POST /jobs: 503 Service Unavailable",
		"queue: 120 queued · 4 in progress · 3 retryable", "backlog 127, oldest 2m05s (fetched 10.0s ago)",
		"REQUESTS (15m00s)",
		"TOP RULES", "r1",
		"RECENT RESULTS (2)", "evilpkg", "r1,r2,r3", "accepted", "inspector.pypi.io/project/evilpkg/0.1/x/setup.py",
		"inspector.pypi.io/project/", "/src/evilpkg/setup.py",
		"RECENT FAILURES (1)", "reported", "DRAGONFLY_MAX_EXPANDED_SIZE",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	for i, line := range strings.Split(text, "\n") {
		if w := textWidth(line); w > 80 {
			t.Errorf("line %d is %d columns: %q", i+1, w, line)
		}
	}
	if strings.Contains(text, longURL) || strings.Contains(text, strings.TrimPrefix(longURL, "https://")) {
		t.Error("the long inspector URL is printed whole: it does not fit 80 columns")
	}
	// Columns line up: the worker rows have as many fields as the header.
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "  WORKER ") {
			if n := len(strings.Fields(line)); n != 8 {
				t.Errorf("worker header has %d fields: %q", n, line)
			}
			if n := len(strings.Fields(lines[i+1])); n != 9 { // "2.0s ago" is two
				t.Errorf("worker row has %d fields: %q", n, lines[i+1])
			}
		}
	}

	// A wider terminal gets longer lines, still bounded.
	out.Reset()
	WriteText(&out, sampleDocument(), 200)
	if !strings.Contains(out.String(), strings.TrimPrefix(longURL, "https://")) {
		t.Errorf("200 columns: the inspector URL should fit whole:\n%s", out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if textWidth(line) > 200 {
			t.Errorf("line of %d columns at width 200", textWidth(line))
		}
	}

	out.Reset()
	WriteText(&out, Document{Generated: time.Now()}, 80)
	for _, want := range []string{"rules not loaded", "none connected", "queue: not asked yet", "none yet", "last lease never"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("empty status lacks %q:\n%s", want, out.String())
		}
	}
}

// TestPrintStatusHostile: names and reasons from workers and the API cannot
// put escape sequences or line breaks on the operator's terminal.
func TestPrintStatusHostile(t *testing.T) {
	d := sampleDocument()
	d.Results[0].Name = "evil\x1b[2J\x1b]0;pwned\x07pkg"
	d.Failures[0].Reason = "line one\nline two\r\x1b[31mred"
	d.Workers[0].Host = "全角ホスト名全角ホスト名全角ホスト名全角ホスト名全角ホスト名"
	var out bytes.Buffer
	WriteText(&out, d, 80)
	text := out.String()
	if strings.ContainsAny(text, "\x1b\x07\r") {
		t.Errorf("output carries control characters: %q", text)
	}
	if strings.Contains(text, "line one\n") {
		t.Error("a reason's line break reached the output")
	}
	for _, line := range strings.Split(text, "\n") {
		if w := textWidth(line); w > 80 {
			t.Errorf("line of %d columns (wide runes count two): %q", w, line)
		}
	}
}

func TestCut(t *testing.T) {
	for _, tt := range []struct {
		s    string
		n    int
		end  string
		midl string
	}{
		{"short", 10, "short", "short"},
		{"0123456789abcdef", 8, "0123456…", "01…bcdef"},
		{"0123456789abcdef", 5, "0123…", "0123…"},
		{"全角全角全角", 9, "全角全角…", "全…全角"},
		{"全角全角全角", 4, "全…", "全…"},
	} {
		if got := cutEnd(tt.s, tt.n); got != tt.end || textWidth(got) > tt.n {
			t.Errorf("cutEnd(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.end)
		}
		if got := cutMiddle(tt.s, tt.n); got != tt.midl || textWidth(got) > tt.n {
			t.Errorf("cutMiddle(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.midl)
		}
	}
}

// TestPrintStatusBidi: a worker's chosen id or host cannot reorder what the
// terminal shows (U+202E RIGHT-TO-LEFT OVERRIDE and the other bidi
// controls are format characters, not control characters).
func TestPrintStatusBidi(t *testing.T) {
	d := sampleDocument()
	d.Workers[0].WorkerID = "w-\u202edlo\u2066x\u2069"
	d.Failures[0].Reason = "reason \u200f\u061cend"
	var out bytes.Buffer
	WriteText(&out, d, 80)
	if i := strings.IndexFunc(out.String(), func(r rune) bool { return unicode.Is(unicode.Bidi_Control, r) }); i >= 0 {
		t.Errorf("output carries a bidi control at %d: %q", i, out.String())
	}
}

// TestPrintStatusInvisible: a worker that names itself as another one
// plus an invisible rune (a zero-width space, a word joiner, a soft
// hyphen) does not read as that worker, and what a name's control or bidi
// characters were is shown (escaped as \x1b or \u202e), not lost.
func TestPrintStatusInvisible(t *testing.T) {
	d := sampleDocument()
	real := d.Workers[0]
	for _, id := range []string{real.WorkerID + "\u200b", real.WorkerID + "\u2060", real.WorkerID + "\u00ad", real.WorkerID + "\ufeff",
		// Printable to strconv.IsPrint, drawn as nothing.
		real.WorkerID + "\u034f", real.WorkerID + "\u3164", real.WorkerID + "\ufe0f"} {
		fake := real
		fake.WorkerID = id
		d.Workers = []Worker{real, fake}
		var out bytes.Buffer
		WriteText(&out, d, 120)
		var rows []string
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], real.WorkerID) {
				rows = append(rows, f[0])
			}
		}
		if len(rows) != 2 || rows[0] == rows[1] || strings.ContainsRune(out.String(), []rune(id)[len([]rune(id))-1]) {
			t.Errorf("workers %q and %q show as %q", real.WorkerID, id, rows)
		}
	}
	d = sampleDocument()
	d.Workers[0].WorkerID = "w-\x1b]0;title\x07\u202egnp.exe"
	var out bytes.Buffer
	WriteText(&out, d, 120)
	if want := `w-\x1b]0;title\a\u202e`; !strings.Contains(out.String(), want) {
		t.Errorf("status lacks the worker id escaped, %s:\n%s", want, out.String())
	}
}

// TestPrintStatusSingular: counts of one read in the singular (issue 17:
// "1 workers"); `dragonfly status` printed "1 identities ready", "1 tasks
// dispatched", "1 tasks overdue" and "1 releases in the 1h00m before"
// where the page said "1 identity".
func TestPrintStatusSingular(t *testing.T) {
	d := sampleDocument()
	d.Fleet.TasksDispatched = 1
	d.Workers[0].Overdue = 1
	d.SpotChecks.Identities = 1
	d.Quarantined[0].Releases = d.Quarantined[0].Releases[:1]
	var out bytes.Buffer
	WriteText(&out, d, 200)
	text := out.String()
	for _, want := range []string{"1 identity ready", "1 task dispatched, 0 requeued", "1 task overdue", "1 release in the 1h00m before"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"1 identities", "1 tasks", "1 releases"} {
		if strings.Contains(text, bad) {
			t.Errorf("output says %q:\n%s", bad, text)
		}
	}
	d.SpotChecks.Identities, d.Fleet.TasksDispatched = 3, 2
	out.Reset()
	WriteText(&out, d, 200)
	for _, want := range []string{"3 identities ready", "2 tasks dispatched"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plural: output lacks %q", want)
		}
	}
}
