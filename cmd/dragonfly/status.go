package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"golang.org/x/term"
	"golang.org/x/text/width"
)

func init() {
	register(command{
		name: "status", summary: "show a coordinator's fleet: workers, backlog, API health, recent results",
		flags: func(s *settings) { new(statusFlags).register(s) }, run: runStatus,
	})
}

const statusUsage = `usage: dragonfly status [--coordinator ADDR] [--token TOKEN] [--format table|json] [--watch [--interval 5s]]

Fetches the coordinator's /status.json from its HTTP address (the
coordinator's --metrics-addr, port ` + coordinator.DefaultMetricsPort + `) and prints it as tables that fit the
terminal (80 columns when not on one): alerts, the fleet, workers,
quarantined workers, spot checks, the API, top rules, recent results and
failures. Long values (URLs, reasons) are shortened; --format json prints the
whole document. ADDR is host:port or a full URL (http://host:10179,
https://proxy/fleet/status.json). A coordinator with DRAGONFLY_STATUS_TOKEN
wants the same token here. --watch redraws every --interval until
interrupted (with --format json: one document per line).`

type statusFlags struct {
	addr     string
	format   string
	asJSON   bool
	timeout  time.Duration
	token    string
	watch    bool
	interval time.Duration
}

// register registers the settings of dragonfly status, named
// DRAGONFLY_STATUS_* (flags without the prefix).
func (f *statusFlags) register(s *settings) {
	s.namespace = "DRAGONFLY_STATUS_"
	s.Var(stringVal(&f.addr, "localhost:"+coordinator.DefaultMetricsPort), "DRAGONFLY_STATUS_COORDINATOR", "the coordinator's HTTP address (host:port, its --metrics-addr) or the URL of its /status.json").
		deprecatedEnv("DRAGONFLY_STATUS_URL")
	s.Var(stringVal(&f.token, ""), "DRAGONFLY_STATUS_TOKEN", "bearer token the coordinator's /status.json requires (its DRAGONFLY_STATUS_TOKEN)").markSecret()
	s.Var(stringVal(&f.format, "table"), "DRAGONFLY_STATUS_FORMAT", "output: table (fits the terminal; long values shortened) or json (the whole document)")
	s.Flag(boolVal(&f.asJSON, false), "json", "same as --format json")
	s.Flag(boolVal(&f.watch, false), "watch", "redraw every --interval until interrupted")
	s.Var(durationVal(&f.interval, 5*time.Second), "DRAGONFLY_STATUS_INTERVAL", "time between two redraws of --watch (at least 1s)")
	s.Var(durationVal(&f.timeout, 10*time.Second), "DRAGONFLY_STATUS_TIMEOUT", "bound on each request")
}

func runStatus(ctx context.Context, e *env, args []string) error {
	return runStatusWith(ctx, e, args, time.After)
}

// runStatusWith is runStatus with the timer of --watch (tests count
// redraws with their own).
func runStatusWith(ctx context.Context, e *env, args []string, after func(time.Duration) <-chan time.Time) error {
	var f statusFlags
	s := e.settingsFor("dragonfly status", statusUsage)
	f.register(s)
	if err := s.Parse(args, e.getenv, e.dir); err != nil {
		return err
	}
	if len(s.Args()) > 0 {
		return unexpectedArgs(s.Args())
	}
	if f.asJSON {
		if s.lookup("format").isSet() && f.format != "json" {
			return usageError("--json and --format %s disagree", clip.String(f.format, 64))
		}
		f.format = "json"
	}
	if f.format != "table" && f.format != "json" {
		return usageError("--format %q: not one of table, json", clip.String(f.format, 64))
	}
	if f.watch && f.interval < time.Second {
		return usageError("DRAGONFLY_STATUS_INTERVAL=%s: at least 1s", f.interval)
	}
	if f.timeout <= 0 {
		return usageError("DRAGONFLY_STATUS_TIMEOUT=%s: must be positive", f.timeout)
	}
	target, err := statusURL(f.addr)
	if err != nil {
		return usageError("%v", err)
	}
	width, tty := terminalWidth(e.stdout)
	draw := func(ctx context.Context) error {
		body, err := fetchStatus(ctx, target, f.token, f.timeout)
		if err != nil {
			return err
		}
		if f.format == "json" {
			if f.watch { // one document per line
				var line bytes.Buffer
				if err := json.Compact(&line, body); err != nil {
					return fmt.Errorf("%s: not JSON: %w", target, err)
				}
				body = append(line.Bytes(), '\n')
			}
			_, err := e.stdout.Write(body)
			return err
		}
		var doc status.Document
		if err := json.Unmarshal(body, &doc); err != nil {
			return fmt.Errorf("%s: not a status document: %w", target, err)
		}
		var out bytes.Buffer
		if f.watch {
			if tty {
				out.WriteString("\x1b[H\x1b[2J") // home, clear the screen
			}
			fmt.Fprintf(&out, "every %s · Ctrl-C to stop\n", status.FormatDuration(f.interval))
		}
		printStatus(&out, doc, width)
		_, err = e.stdout.Write(out.Bytes())
		return err
	}
	if !f.watch {
		return draw(ctx)
	}
	return watchStatus(ctx, e.stdout, f.interval, after, draw)
}

// watchStatus draws, then draws again after every interval until ctx
// ends. A failed draw (the coordinator restarting) is said and the watch
// goes on.
func watchStatus(ctx context.Context, w io.Writer, interval time.Duration, after func(time.Duration) <-chan time.Time, draw func(context.Context) error) error {
	for {
		if err := draw(ctx); err != nil && ctx.Err() == nil {
			if _, werr := fmt.Fprintf(w, "%s dragonfly status: %s (trying again in %s)\n",
				time.Now().UTC().Format("15:04:05"), clip.Error(err, 512), status.FormatDuration(interval)); werr != nil {
				return werr
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-after(interval):
		}
	}
}

// terminalWidth is the width of w when it is a terminal; 80 otherwise.
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 80, false
	}
	if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols >= 40 {
		return cols, true
	}
	return 80, true
}

// statusURL turns host:port or a URL into the URL of /status.json.
func statusURL(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("DRAGONFLY_STATUS_COORDINATOR: empty coordinator address")
	}
	if !strings.Contains(addr, "://") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("coordinator address %q: want host:port or a URL", clip.String(addr, 256))
		}
		if host == "" {
			host = "localhost"
		}
		addr = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("coordinator URL %q: %w", clip.String(addr, 256), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("coordinator URL %q: scheme must be http or https", clip.String(addr, 256))
	}
	if u.Host == "" {
		return "", fmt.Errorf("coordinator URL %q: no host", clip.String(addr, 256))
	}
	switch p := strings.TrimSuffix(u.Path, "/"); {
	case strings.HasSuffix(p, "/status.json"):
	case strings.HasSuffix(p, "/status"):
		u.Path = p + ".json"
	default:
		u.Path = p + "/status.json"
	}
	return u.String(), nil
}

// maxStatusBody bounds the status document read (its lists are bounded by
// the coordinator; a few hundred KiB in practice).
const maxStatusBody = 16 << 20

func fetchStatus(ctx context.Context, target, token string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody+1))
	if err != nil {
		return nil, fmt.Errorf("fetch status %s: %w", target, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && token == "":
		return nil, fmt.Errorf("fetch status %s: %s: the coordinator wants its status token (--token or DRAGONFLY_STATUS_TOKEN)", target, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("fetch status %s: %s: the coordinator refused the status token", target, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetch status %s: %s", target, resp.Status)
	case len(body) > maxStatusBody:
		return nil, fmt.Errorf("fetch status %s: document larger than %d MiB", target, maxStatusBody>>20)
	}
	return body, nil
}

// printStatus writes the document as tables at most width columns wide.
// Relative times are measured from the document's own time (the
// coordinator's clock). Long values are shortened; --format json has them
// whole.
func printStatus(w io.Writer, d status.Document, width int) {
	p := &printer{w: w, width: width}
	now := d.Generated
	rules := "not loaded"
	if d.RulesHash != "" {
		rules = shortHash(d.RulesHash)
	}
	up := "?"
	if !d.Started.IsZero() {
		up = status.FormatDuration(now.Sub(d.Started))
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
		waiting += " (oldest " + status.FormatDuration(secs(f.OldestWaitingSeconds)) + ")"
	}
	p.parts("  ", fmt.Sprintf("workers %d (desired %d)", f.Workers, f.DesiredWorkers), fmt.Sprintf("slots busy %d/%d", f.SlotsBusy, f.SlotsTotal),
		fmt.Sprintf("jobs in flight %d", f.JobsInFlight), fmt.Sprintf("tasks running %d", f.TasksRunning), waiting,
		fmt.Sprintf("outbox %d", f.OutboxReports))
	p.parts("  ", fmt.Sprintf("since start: %d leased", f.JobsLeased), fmt.Sprintf("%d succeeded", f.JobsSucceeded),
		fmt.Sprintf("%d failed", f.JobsFailed), fmt.Sprintf("%d dropped", f.JobsDropped),
		fmt.Sprintf("reports %d accepted, %d conflict, %d rejected, %d abandoned", f.ReportsAccepted, f.ReportsConflicted, f.ReportsRejected, f.ReportsAbandoned),
		fmt.Sprintf("%d tasks dispatched, %d requeued", f.TasksDispatched, f.TasksRequeued))

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
				note = append(note, fmt.Sprintf("%d tasks overdue", x.Overdue))
			}
			rules := "-"
			if len(x.RulesHashes) > 0 {
				rules = shortHash(x.RulesHashes[0])
				if len(x.RulesHashes) > 1 {
					rules += fmt.Sprintf("+%d", len(x.RulesHashes)-1)
				}
			}
			t.row(strings.Join(note, " · "), x.WorkerID, x.Host, x.Version, fmt.Sprintf("%d/%d", x.Busy, x.Slots), strconv.Itoa(x.Held),
				rules, status.Ago(now, x.LastHeartbeat), strconv.FormatInt(x.JobsDone, 10))
		}
		t.flush()
	}

	if len(d.Quarantined) > 0 {
		p.heading(fmt.Sprintf("QUARANTINED (%d): queue their releases again on the API (POST /package)", len(d.Quarantined)))
		for _, q := range d.Quarantined {
			p.cut("  ", q.Identity)
			p.parts("    ", "since "+q.Since.UTC().Format("2006-01-02 15:04")+" UTC ("+status.Ago(now, q.Since)+")",
				fmt.Sprintf("%d releases in the %s before", len(q.Releases), status.FormatDuration(secs(q.WindowSeconds))))
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
		state += fmt.Sprintf(" · rate %s · %d identities ready", strconv.FormatFloat(sc.Rate*100, 'g', 4, 64)+"%", sc.Identities)
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
	p.parts("  ", "last lease "+status.Ago(now, a.LastLease), "last report "+status.Ago(now, a.LastReport))
	if a.LastError != nil {
		p.cut("  ", fmt.Sprintf("last error (%s, %s): %s", a.LastError.Source, status.Ago(now, a.LastError.Time), a.LastError.Message))
	} else {
		p.line("  last error: none")
	}
	if q := a.Queue; q != nil {
		oldest := "-"
		if q.OldestAgeSeconds != nil {
			oldest = status.FormatDuration(secs(*q.OldestAgeSeconds))
		}
		p.parts("  ", fmt.Sprintf("queue: %d queued", q.Queued), fmt.Sprintf("%d in progress", q.InProgress), fmt.Sprintf("%d retryable", q.Retryable),
			fmt.Sprintf("%d exhausted", q.Exhausted), fmt.Sprintf("%d stranded", q.Stranded),
			fmt.Sprintf("backlog %d, oldest %s (fetched %s)", q.TotalBacklog, oldest, status.Ago(now, q.Fetched)))
	}
	if e := a.QueueError; e != nil {
		p.cut("  ", fmt.Sprintf("queue status failed %s: %s", status.Ago(now, e.Time), e.Message))
	} else if a.Queue == nil {
		p.line("  queue: not asked yet")
	}
	if len(a.Endpoints) > 0 {
		t := p.table(col{title: "ENDPOINT"}, col{title: "REQUESTS (" + status.FormatDuration(secs(a.WindowSeconds)) + ")", right: true},
			col{title: "ERRORS", right: true}, col{title: "LAST", right: true}, col{title: "LAST CALL"})
		for _, ep := range a.Endpoints {
			last := "none"
			if ep.LastStatus != 0 {
				last = strconv.Itoa(ep.LastStatus)
			}
			t.row("", ep.Endpoint, strconv.FormatInt(ep.Requests, 10), strconv.FormatInt(ep.Errors, 10), last, status.Ago(now, ep.LastCall))
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
			if x.Kind == status.FailureScan && x.Report == status.ReportAccepted {
				report = "reported" // the failure report was accepted: no "accepted" for a failure
			}
			t.row(x.Reason, x.Time.UTC().Format("15:04:05"), string(x.Kind), dash(x.Name), dash(x.Version), dash(report))
		}
		t.flush()
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printer writes lines at most width columns wide. Every string shown is
// cleaned of control characters (a hostile package name cannot move the
// cursor or recolour the terminal).
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

// clean replaces control characters (escape sequences, line breaks) with
// spaces or U+FFFD.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r) || r == unicode.ReplacementChar:
			return '\uFFFD'
		}
		return r
	}, s)
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
