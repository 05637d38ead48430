package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
)

func init() {
	register(command{
		name: "status", summary: "show a coordinator's fleet: workers, backlog, API health, recent results",
		flags: func(s *settings) { new(statusFlags).register(s) }, run: runStatus,
	})
}

const statusUsage = `usage: dragonfly status [--coordinator ADDR] [--json]

Fetches the coordinator's /status.json from its metrics address (the
coordinator's --metrics-addr) and prints it as tables: connected workers,
backlog, API health, recent results and failures. ADDR is host:port or a full
URL (http://host:10179, https://proxy/fleet/status.json).`

type statusFlags struct {
	addr    string
	asJSON  bool
	timeout time.Duration
}

// register registers the settings of dragonfly status, named
// DRAGONFLY_STATUS_* (flags without the prefix).
func (f *statusFlags) register(s *settings) {
	s.namespace = "DRAGONFLY_STATUS_"
	s.Var(stringVal(&f.addr, "localhost:"+coordinator.DefaultMetricsPort), "DRAGONFLY_STATUS_COORDINATOR", "the coordinator's metrics address (host:port) or the URL of its /status.json").
		deprecatedEnv("DRAGONFLY_STATUS_URL")
	s.Flag(boolVal(&f.asJSON, false), "json", "print the raw JSON")
	s.Var(durationVal(&f.timeout, 10*time.Second), "DRAGONFLY_STATUS_TIMEOUT", "bound on the request")
}

func runStatus(ctx context.Context, e *env, args []string) error {
	var f statusFlags
	s := e.settingsFor("dragonfly status", statusUsage)
	f.register(s)
	if err := s.Parse(args, e.getenv, e.dir); err != nil {
		return err
	}
	if len(s.Args()) > 0 {
		return unexpectedArgs(s.Args())
	}
	target, err := statusURL(f.addr)
	if err != nil {
		return usageError("%v", err)
	}
	body, err := fetchStatus(ctx, target, f.timeout)
	if err != nil {
		return err
	}
	if f.asJSON {
		_, err := e.stdout.Write(body)
		return err
	}
	var doc status.Document
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("%s: not a status document: %w", target, err)
	}
	return printStatus(e.stdout, doc)
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
			return "", fmt.Errorf("coordinator address %q: want host:port or a URL", addr)
		}
		if host == "" {
			host = "localhost"
		}
		addr = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("coordinator URL %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("coordinator URL %q: scheme must be http or https", addr)
	}
	if u.Host == "" {
		return "", fmt.Errorf("coordinator URL %q: no host", addr)
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

func fetchStatus(ctx context.Context, target string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch status %s: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch status %s: %s", target, resp.Status)
	}
	return body, nil
}

// printStatus writes the document as tables. Relative times are measured
// from the document's own time (the coordinator's clock).
func printStatus(w io.Writer, d status.Document) error {
	now := d.Generated
	rules := d.RulesHash
	if rules == "" {
		rules = "not loaded"
	}
	fmt.Fprintf(w, "Coordinator %s · rules %s · up %s · as of %s UTC\n\n", d.Version, statusShort(rules), statusHuman(now.Sub(d.Started)), d.Generated.UTC().Format("2006-01-02 15:04:05"))

	f := d.Fleet
	fmt.Fprintln(w, "FLEET")
	fmt.Fprintf(w, "  workers %d (desired %d) · slots busy %d/%d · jobs in flight %d · tasks running %d · tasks waiting %d",
		f.Workers, f.DesiredWorkers, f.SlotsBusy, f.SlotsTotal, f.JobsInFlight, f.TasksRunning, f.TasksWaiting)
	if f.TasksWaiting > 0 {
		fmt.Fprintf(w, " (oldest %s)", statusHuman(statusSecs(f.OldestWaitingSeconds)))
	}
	fmt.Fprintf(w, " · outbox %d\n", f.OutboxReports)
	fmt.Fprintf(w, "  since start: %d leased · %d succeeded · %d failed · %d dropped · reports %d accepted, %d conflict, %d rejected, %d abandoned · %d tasks dispatched, %d requeued\n\n",
		f.JobsLeased, f.JobsSucceeded, f.JobsFailed, f.JobsDropped, f.ReportsAccepted, f.ReportsConflicted, f.ReportsRejected, f.ReportsAbandoned, f.TasksDispatched, f.TasksRequeued)

	fmt.Fprintf(w, "WORKERS (%d)\n", len(d.Workers))
	if len(d.Workers) == 0 {
		fmt.Fprintln(w, "  none connected")
	} else {
		tw := statusTable(w)
		fmt.Fprintln(tw, "  WORKER\tHOST\tVERSION\tSLOTS\tBUSY\tHELD\tRULES\tLAST HEARTBEAT\tCONNECTED\tJOBS\tTASKS")
		for _, x := range d.Workers {
			id := x.WorkerID
			if x.Draining {
				id += " (draining)"
			}
			hashes := make([]string, len(x.RulesHashes))
			for i, h := range x.RulesHashes {
				hashes[i] = statusShort(h)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%d\n", id, x.Host, x.Version, x.Slots, x.Busy, x.Held,
				statusDash(strings.Join(hashes, ",")), statusAgo(now, x.LastHeartbeat), statusAgo(now, x.Connected), x.JobsDone, x.TasksDone)
		}
		tw.Flush()
	}

	a := d.API
	fmt.Fprintln(w, "\nAPI")
	fmt.Fprintf(w, "  last lease %s · last report %s\n", statusAgo(now, a.LastLease), statusAgo(now, a.LastReport))
	if a.LastError != nil {
		fmt.Fprintf(w, "  last error (%s, %s): %s\n", a.LastError.Source, statusAgo(now, a.LastError.Time), a.LastError.Message)
	} else {
		fmt.Fprintln(w, "  last error: none")
	}
	if q := a.Queue; q != nil {
		oldest := "-"
		if q.OldestAgeSeconds != nil {
			oldest = statusHuman(statusSecs(*q.OldestAgeSeconds))
		}
		fmt.Fprintf(w, "  queue: %d queued · %d in progress · %d retryable · %d exhausted · %d stranded · backlog %d, oldest %s (fetched %s)\n",
			q.Queued, q.InProgress, q.Retryable, q.Exhausted, q.Stranded, q.TotalBacklog, oldest, statusAgo(now, q.Fetched))
	}
	if e := a.QueueError; e != nil {
		fmt.Fprintf(w, "  queue status failed %s: %s\n", statusAgo(now, e.Time), e.Message)
	} else if a.Queue == nil {
		fmt.Fprintln(w, "  queue: not polled yet")
	}
	if len(a.Endpoints) > 0 {
		tw := statusTable(w)
		fmt.Fprintf(tw, "  ENDPOINT\tREQUESTS (%s)\tERRORS\tLAST STATUS\tLAST CALL\n", statusHuman(statusSecs(a.WindowSeconds)))
		for _, ep := range a.Endpoints {
			last := "none"
			if ep.LastStatus != 0 {
				last = fmt.Sprint(ep.LastStatus)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%s\n", ep.Endpoint, ep.Requests, ep.Errors, last, statusAgo(now, ep.LastCall))
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\nRECENT RESULTS (%d)\n", len(d.Results))
	if len(d.Results) == 0 {
		fmt.Fprintln(w, "  none yet")
	} else {
		tw := statusTable(w)
		fmt.Fprintln(tw, "  FINISHED\tPACKAGE\tVERSION\tSCORE\tRULES\tWORKERS\tELAPSED\tREPORT\tINSPECTOR")
		for _, r := range d.Results {
			rulesText := strings.Join(r.Rules, ",")
			if len(r.Rules) > 5 {
				rulesText = strings.Join(r.Rules[:5], ",") + fmt.Sprintf(",+%d", len(r.Rules)-5)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Finished.UTC().Format("15:04:05"), r.Name, r.Version, r.Score,
				statusDash(rulesText), statusDash(strings.Join(r.Workers, ",")), statusHuman(statusSecs(r.ElapsedSeconds)), r.Report, statusDash(r.InspectorURL))
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\nRECENT FAILURES (%d)\n", len(d.Failures))
	if len(d.Failures) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw := statusTable(w)
		fmt.Fprintln(tw, "  TIME\tKIND\tPACKAGE\tVERSION\tREPORT\tREASON")
		for _, x := range d.Failures {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", x.Time.UTC().Format("15:04:05"), x.Kind, statusDash(x.Name), statusDash(x.Version),
				statusDash(string(x.Report)), x.Reason)
		}
		tw.Flush()
	}
	return nil
}

func statusTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func statusSecs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func statusShort(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func statusDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// statusAgo is how long before now t was; "never" for the zero time.
func statusAgo(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return statusHuman(now.Sub(t)) + " ago"
}

// statusHuman rounds a duration for people: 850ms, 12.3s, 4m05s, 2h10m.
func statusHuman(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
