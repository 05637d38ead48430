package status

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"golang.org/x/text/width"
)

// WriteText writes the document as tables at most width columns wide (what
// `dragonfly status` prints).
// Relative times are measured from the document's own time (the
// coordinator's clock). Long values are shortened; --format json has them
// whole.
func WriteText(w io.Writer, d Document, width int) {
	p := &printer{w: w, width: width}
	now := d.Generated
	rules := "not loaded"
	if d.RulesHash != "" {
		rules = shortHash(d.RulesHash)
	}
	up := "?"
	if !d.Started.IsZero() {
		up = FormatDuration(now.Sub(d.Started))
	}
	p.parts("", "Coordinator "+d.Version, "rules "+rules, "up "+up,
		"as of "+d.Generated.UTC().Format("2006-01-02 15:04:05")+" UTC")

	if len(d.Alerts) > 0 {
		p.blank()
		for _, a := range d.Alerts {
			p.wrap("", strings.ToUpper(a.Level)+": "+a.Title)
			p.wrap("    ", a.Detail)
		}
	}

	f := d.Fleet
	p.heading("FLEET")
	waiting := fmt.Sprintf("tasks waiting %d", f.TasksWaiting)
	if f.TasksWaiting > 0 {
		waiting += " (oldest " + FormatDuration(secs(f.OldestWaitingSeconds)) + ")"
	}
	p.parts("  ", fmt.Sprintf("workers %d (desired %d)", f.Workers, f.DesiredWorkers), fmt.Sprintf("slots busy %d/%d", f.SlotsBusy, f.SlotsTotal),
		fmt.Sprintf("jobs in flight %d", f.JobsInFlight), fmt.Sprintf("tasks running %d", f.TasksRunning), waiting,
		fmt.Sprintf("outbox %d", f.OutboxReports))
	p.parts("  ", fmt.Sprintf("since start: %d leased", f.JobsLeased), fmt.Sprintf("%d succeeded", f.JobsSucceeded),
		fmt.Sprintf("%d failed", f.JobsFailed), fmt.Sprintf("%d dropped", f.JobsDropped),
		fmt.Sprintf("reports %d accepted, %d conflict, %d rejected, %d abandoned", f.ReportsAccepted, f.ReportsConflicted, f.ReportsRejected, f.ReportsAbandoned),
		plural(int(f.TasksDispatched), "task", "tasks")+fmt.Sprintf(" dispatched, %d requeued", f.TasksRequeued))

	p.heading(fmt.Sprintf("WORKERS (%d)", len(d.Workers)))
	if len(d.Workers) == 0 {
		p.line("  none connected")
	} else {
		t := p.table(col{title: "WORKER", min: 8}, col{title: "HOST", min: 6}, col{title: "VERSION", min: 5},
			col{title: "BUSY", right: true}, col{title: "HELD", right: true}, col{title: "RULES", min: 12},
			col{title: "HEARTBEAT"}, col{title: "JOBS", right: true})
		for _, x := range d.Workers {
			var note []string
			if x.Identity != "" && x.Identity != x.WorkerID {
				note = append(note, "identity "+x.Identity)
			}
			if x.Quarantined {
				note = append(note, "quarantined")
			}
			if x.Draining {
				note = append(note, "draining")
			}
			if x.Overdue > 0 {
				note = append(note, plural(x.Overdue, "task", "tasks")+" overdue")
			}
			rules := "-"
			if len(x.RulesHashes) > 0 {
				rules = shortHash(x.RulesHashes[0])
				if len(x.RulesHashes) > 1 {
					rules += fmt.Sprintf("+%d", len(x.RulesHashes)-1)
				}
			}
			t.row(strings.Join(note, " · "), x.WorkerID, x.Host, x.Version, fmt.Sprintf("%d/%d", x.Busy, x.Slots), strconv.Itoa(x.Held),
				rules, Ago(now, x.LastHeartbeat), strconv.FormatInt(x.JobsDone, 10))
		}
		t.flush()
	}

	if len(d.Quarantined) > 0 {
		p.heading(fmt.Sprintf("QUARANTINED (%d): queue their releases again on the API (POST /package)", len(d.Quarantined)))
		for _, q := range d.Quarantined {
			p.cut("  ", q.Identity)
			p.parts("    ", "since "+q.Since.UTC().Format("2006-01-02 15:04")+" UTC ("+Ago(now, q.Since)+")",
				fmt.Sprintf("%s in the %s before", plural(len(q.Releases), "release", "releases"), FormatDuration(secs(q.WindowSeconds))))
			p.cut("    ", "reason: "+q.Reason)
			rels := make([]string, len(q.Releases))
			for i, r := range q.Releases {
				rels[i] = r.Name + "==" + r.Version
			}
			p.list("    ", rels, 3, "--format json lists them all")
			if !q.Complete {
				p.cut("    ", "older ones were not kept: see the coordinator's log (job finished, workers=...)")
			}
		}
	}

	sc := d.SpotChecks
	p.heading("SPOT CHECKS")
	state := sc.State
	if sc.Rate > 0 {
		state += fmt.Sprintf(" · rate %s · %s ready", strconv.FormatFloat(sc.Rate*100, 'g', 4, 64)+"%", plural(sc.Identities, "identity", "identities"))
	}
	p.wrap("  ", state)
	p.parts("  ", fmt.Sprintf("since start: %d picked", sc.Picked), fmt.Sprintf("%d agreed", sc.Agreed), fmt.Sprintf("%d mismatched", sc.Mismatches),
		fmt.Sprintf("%d decided", sc.Decided), fmt.Sprintf("%d inconclusive", sc.Inconclusive), fmt.Sprintf("%d skipped", sc.Skipped))
	if len(sc.Recent) > 0 {
		t := p.table(col{title: "TIME"}, col{title: "KIND"}, col{title: "PACKAGE", min: 8}, col{title: "VERSION", min: 5}, col{title: "IDENTITIES", min: 10})
		for _, x := range sc.Recent {
			ids := strings.Join(x.Identities, ",")
			if len(x.Quarantined) > 0 {
				ids += " quarantined: " + strings.Join(x.Quarantined, ",")
			}
			t.row(x.Reason, x.Time.UTC().Format("15:04:05"), string(x.Kind), dash(x.Name), dash(x.Version), dash(ids))
		}
		t.flush()
	}

	a := d.API
	p.heading("API")
	p.parts("  ", "last lease "+Ago(now, a.LastLease), "last report "+Ago(now, a.LastReport))
	if a.LastError != nil {
		p.cut("  ", fmt.Sprintf("last error (%s, %s): %s", a.LastError.Source, Ago(now, a.LastError.Time), a.LastError.Message))
	} else {
		p.line("  last error: none")
	}
	if q := a.Queue; q != nil {
		oldest := "-"
		if q.OldestAgeSeconds != nil {
			oldest = FormatDuration(secs(*q.OldestAgeSeconds))
		}
		p.parts("  ", fmt.Sprintf("queue: %d queued", q.Queued), fmt.Sprintf("%d in progress", q.InProgress), fmt.Sprintf("%d retryable", q.Retryable),
			fmt.Sprintf("%d exhausted", q.Exhausted), fmt.Sprintf("%d stranded", q.Stranded),
			fmt.Sprintf("backlog %d, oldest %s (fetched %s)", q.TotalBacklog, oldest, Ago(now, q.Fetched)))
	}
	if e := a.QueueError; e != nil {
		p.cut("  ", fmt.Sprintf("queue status failed %s: %s", Ago(now, e.Time), e.Message))
	} else if a.Queue == nil {
		p.line("  queue: not asked yet")
	}
	if len(a.Endpoints) > 0 {
		t := p.table(col{title: "ENDPOINT"}, col{title: "REQUESTS (" + FormatDuration(secs(a.WindowSeconds)) + ")", right: true},
			col{title: "ERRORS", right: true}, col{title: "LAST", right: true}, col{title: "LAST CALL"})
		for _, ep := range a.Endpoints {
			last := "none"
			if ep.LastStatus != 0 {
				last = strconv.Itoa(ep.LastStatus)
			}
			t.row("", ep.Endpoint, strconv.FormatInt(ep.Requests, 10), strconv.FormatInt(ep.Errors, 10), last, Ago(now, ep.LastCall))
		}
		t.flush()
	}

	if len(d.TopRules) > 0 {
		p.heading("TOP RULES (jobs matched since rules " + rules + " were loaded)")
		t := p.table(col{title: "RULE", min: 12}, col{title: "JOBS", right: true})
		for _, r := range d.TopRules {
			t.row("", r.Rule, strconv.FormatInt(r.Matches, 10))
		}
		t.flush()
	}

	p.heading(fmt.Sprintf("RECENT RESULTS (%d)", len(d.Results)))
	if len(d.Results) == 0 {
		p.line("  none yet")
	} else {
		t := p.table(col{title: "TIME"}, col{title: "PACKAGE", min: 8}, col{title: "VERSION", min: 5}, col{title: "SCORE", right: true},
			col{title: "REPORT", min: 6}, col{title: "WORKERS", min: 6}, col{title: "RULES", min: 6})
		for _, r := range d.Results {
			rulesText := strings.Join(r.Rules, ",")
			if len(r.Rules) > 5 {
				rulesText = strings.Join(r.Rules[:5], ",") + fmt.Sprintf(",+%d", len(r.Rules)-5)
			}
			t.rowURL(r.InspectorURL, r.Finished.UTC().Format("15:04:05"), r.Name, r.Version, strconv.FormatInt(r.Score, 10),
				string(r.Report), dash(strings.Join(r.Workers, ",")), dash(rulesText))
		}
		t.flush()
	}

	p.heading(fmt.Sprintf("RECENT FAILURES (%d)", len(d.Failures)))
	if len(d.Failures) == 0 {
		p.line("  none")
	} else {
		t := p.table(col{title: "TIME"}, col{title: "KIND"}, col{title: "PACKAGE", min: 8}, col{title: "VERSION", min: 5}, col{title: "REPORT", min: 6})
		for _, x := range d.Failures {
			report := string(x.Report)
			if x.Kind == FailureScan && x.Report == ReportAccepted {
				report = "reported" // the failure report was accepted: no "accepted" for a failure
			}
			t.row(x.Reason, x.Time.UTC().Format("15:04:05"), string(x.Kind), dash(x.Name), dash(x.Version), dash(report))
		}
		t.flush()
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printer writes lines at most width columns wide. Every string shown is
// cleaned (clean): a hostile package name or worker id cannot move the
// cursor, recolour the terminal or reorder a line, nor hide a rune.
type printer struct {
	w     io.Writer
	width int
}

func (p *printer) line(s string) { fmt.Fprintln(p.w, s) }

func (p *printer) blank() { fmt.Fprintln(p.w) }

func (p *printer) heading(s string) {
	p.blank()
	p.cut("", s)
}

// cut writes indent+s on one line, shortened with "…" to fit.
func (p *printer) cut(indent, s string) {
	p.line(indent + cutEnd(clean(s), p.width-textWidth(indent)))
}

// parts writes the parts joined by " · ", wrapped between parts; a part too
// long for a line is shortened.
func (p *printer) parts(indent string, parts ...string) { p.join(indent, " · ", parts) }

// wrap writes s word-wrapped; a word too long for a line is shortened.
func (p *printer) wrap(indent, s string) { p.join(indent, " ", strings.Fields(clean(s))) }

func (p *printer) join(indent, sep string, parts []string) {
	room := p.width - textWidth(indent)
	cur := ""
	for _, part := range parts {
		part = cutEnd(clean(part), room)
		switch {
		case cur == "":
			cur = part
		case textWidth(cur)+textWidth(sep)+textWidth(part) <= room:
			cur += sep + part
		default:
			p.line(indent + cur)
			cur = part
		}
	}
	if cur != "" {
		p.line(indent + cur)
	}
}

// list writes items comma-separated over at most lines lines; what does
// not fit is counted, with more said after it.
func (p *printer) list(indent string, items []string, lines int, more string) {
	if len(items) == 0 {
		p.line(indent + "none")
		return
	}
	room := p.width - textWidth(indent)
	var out []string
	cur, shown := "", 0
	for _, it := range items {
		item := cutEnd(clean(it), room)
		if next := cur + ", " + item; cur == "" || textWidth(next) <= room {
			if cur == "" {
				next = item
			}
			cur = next
			shown++
			continue
		}
		out = append(out, cur)
		cur = ""
		if len(out) == lines {
			break
		}
		cur = item
		shown++
	}
	if cur != "" {
		out = append(out, cur)
	}
	for _, l := range out {
		p.line(indent + l)
	}
	if rest := len(items) - shown; rest > 0 {
		p.cut(indent, fmt.Sprintf("… +%d more; %s", rest, more))
	}
}

// col is a table column: a cell wider than the column is shortened with
// "…"; min is how narrow the column may get when the table is too wide (0:
// it keeps its width).
type col struct {
	title string
	min   int
	right bool
}

type tableRow struct {
	cells []string
	// note is a line under the row (a reason), shortened to fit; url a
	// link under it, shortened in the middle.
	note, url string
}

type table struct {
	p    *printer
	cols []col
	rows []tableRow
}

func (p *printer) table(cols ...col) *table { return &table{p: p, cols: cols} }

func (t *table) row(note string, cells ...string) {
	for i := range cells {
		cells[i] = clean(cells[i])
	}
	t.rows = append(t.rows, tableRow{cells: cells, note: clean(note)})
}

func (t *table) rowURL(url string, cells ...string) {
	t.row("", cells...)
	t.rows[len(t.rows)-1].url = clean(url)
}

// flush writes the table indented by two, columns two apart, at most
// p.width wide: the column with the most room to give shrinks first.
func (t *table) flush() {
	const indent, gap = 2, 2
	w := make([]int, len(t.cols))
	for i, c := range t.cols {
		w[i] = textWidth(c.title)
		for _, r := range t.rows {
			if i < len(r.cells) {
				w[i] = max(w[i], textWidth(r.cells[i]))
			}
		}
	}
	total := func() int {
		n := indent + gap*(len(w)-1)
		for _, x := range w {
			n += x
		}
		return n
	}
	for total() > t.p.width {
		best := -1
		for i, c := range t.cols {
			floor := max(c.min, textWidth(c.title))
			if c.min > 0 && w[i] > floor && (best < 0 || w[i]-floor > w[best]-max(t.cols[best].min, textWidth(t.cols[best].title))) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		w[best]--
	}
	line := func(cells []string) string {
		var b strings.Builder
		b.WriteString(strings.Repeat(" ", indent))
		for i, c := range t.cols {
			cell := ""
			if i < len(cells) {
				cell = cutEnd(cells[i], w[i])
			}
			pad := strings.Repeat(" ", w[i]-textWidth(cell))
			if i > 0 {
				b.WriteString(strings.Repeat(" ", gap))
			}
			if c.right {
				b.WriteString(pad + cell)
			} else if i < len(t.cols)-1 {
				b.WriteString(cell + pad)
			} else {
				b.WriteString(cell)
			}
		}
		return strings.TrimRight(b.String(), " ")
	}
	titles := make([]string, len(t.cols))
	for i, c := range t.cols {
		titles[i] = c.title
	}
	t.p.line(line(titles))
	noteIndent := strings.Repeat(" ", indent+w[0]+gap)
	room := t.p.width - textWidth(noteIndent)
	for _, r := range t.rows {
		t.p.line(line(r.cells))
		if r.note != "" {
			for _, l := range wrapLines(r.note, room, 2) {
				t.p.line(noteIndent + l)
			}
		}
		if r.url != "" {
			t.p.line(noteIndent + cutMiddle(strings.TrimPrefix(r.url, "https://"), room))
		}
	}
	t.rows = nil
}

// wrapLines word-wraps s into at most n lines of width columns; the last
// is shortened with "…" when s does not fit.
func wrapLines(s string, width, n int) []string {
	var out []string
	cur := ""
	words := strings.Fields(s)
	for i, w := range words {
		w = cutEnd(w, width)
		switch {
		case cur == "":
			cur = w
		case textWidth(cur)+1+textWidth(w) <= width:
			cur += " " + w
		default:
			out = append(out, cur)
			if len(out) == n-1 {
				return append(out, cutEnd(strings.Join(words[i:], " "), width))
			}
			cur = w
		}
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

// clean makes s one line a terminal shows as it is: tabs and line breaks
// become spaces, and every other rune that is not printable (control
// characters, so escape sequences; bidi controls, which reorder what
// follows them; zero-width and other invisible format characters, with
// which a worker could name itself as another) is shown escaped, as
// \x1b or \u202e (clip.Visible).
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	return clip.Visible(s, "")
}

// textWidth is how many terminal columns s takes: East Asian wide and
// full-width runes take two.
func textWidth(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

func runeWidth(r rune) int {
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}

// cutEnd shortens s to at most n columns, ending in "…" when cut.
func cutEnd(s string, n int) string {
	if textWidth(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	var b strings.Builder
	used := 0
	for _, r := range s {
		rw := runeWidth(r)
		if used+rw > n-1 {
			break
		}
		b.WriteRune(r)
		used += rw
	}
	return b.String() + "…"
}

// cutMiddle shortens s to at most n columns by cutting its middle, so both
// its start and its end (a URL's host and file) stay.
func cutMiddle(s string, n int) string {
	if textWidth(s) <= n {
		return s
	}
	if n < 8 {
		return cutEnd(s, n)
	}
	rs := []rune(s)
	head := (n - 1) * 2 / 5
	tail := n - 1 - head
	// Count columns from each end.
	var h, t []rune
	used := 0
	for _, r := range rs {
		if used+runeWidth(r) > head {
			break
		}
		h = append(h, r)
		used += runeWidth(r)
	}
	used = 0
	for i := len(rs) - 1; i >= len(h); i-- {
		if used+runeWidth(rs[i]) > tail {
			break
		}
		t = append([]rune{rs[i]}, t...)
		used += runeWidth(rs[i])
	}
	return string(h) + "…" + string(t)
}
