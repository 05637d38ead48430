package devapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/demo"
)

// DemoFiles are the built-in demo packages (package demo) as distributions
// to serve (Config.Files); demo.Rules() are their rules (Config.Rules).
func DemoFiles() ([]File, error) {
	files, err := demo.Files()
	if err != nil {
		return nil, fmt.Errorf("demo packages: %w", err)
	}
	out := make([]File, 0, len(files))
	for _, f := range files {
		out = append(out, File{Name: f.Name, Data: f.Data})
	}
	return out, nil
}

// OpenToAll reports whether a server listening on addr with the auth mode
// auth lets other hosts in without credentials: no authentication beyond
// a loopback address.
func OpenToAll(addr net.Addr, auth string) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return auth == AuthNone && (!ok || !tcp.IP.IsLoopback())
}

// WaitDrained polls the queue every interval until no job is left to scan
// (Stats: total backlog 0) and reports true, or false when ctx ends first.
func (s *Server) WaitDrained(ctx context.Context, interval time.Duration) bool {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if s.Stats().Queue.TotalBacklog == 0 {
			return true
		}
	}
}

// ErrUnreported: the results table lists releases the fleet did not
// report (dead-lettered after every lease expired, or still queued or
// leased when the run ended).
var ErrUnreported = errors.New("not every demo release was reported")

// WriteResults writes every release as a table sorted by release: its
// score, rules and inspector URL, the reason of a failure reported, or
// NOT REPORTED with what became of it (a release the fleet never reported
// is listed, not left out); then a summary line with the reports accepted
// and refused and the rules' hash. It returns an error wrapping
// ErrUnreported, after the table, when any release was not reported.
func (s *Server) WriteResults(w io.Writer) error {
	type row struct{ name, version, score, rules, last string }
	s.mu.Lock()
	rows := make([]row, 0, len(s.st.order))
	reported := 0
	for _, r := range s.st.order {
		sc := r.current()
		if sc == nil {
			continue
		}
		rw := row{name: r.name, version: r.version, score: "0", rules: "-", last: "-"}
		switch {
		case sc.status == statusFinished:
			reported++
			rw.score = strconv.Itoa(sc.score)
			if len(sc.rules) > 0 {
				rw.rules = strings.Join(sc.rules, ",")
			}
			if sc.inspectorURL != nil {
				rw.last = *sc.inspectorURL
			}
		case sc.status == statusFailed && !sc.deadLettered:
			reported++
			rw.score, rw.last = "FAILED", sc.reason
		case sc.deadLettered:
			rw.score, rw.last = "NOT REPORTED", "dead-lettered: "+sc.reason
		default:
			rw.score, rw.last = "NOT REPORTED", "still "+sc.status.String()+" when the run ended"
		}
		rows = append(rows, rw)
	}
	s.mu.Unlock()
	stats := s.Stats()
	sort.Slice(rows, func(i, j int) bool { return rows[i].name+rows[i].version < rows[j].name+rows[j].version })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tVERSION\tSCORE\tRULES MATCHED\tINSPECTOR URL / REASON")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clip.Visible(r.name, ""), clip.Visible(r.version, ""), r.score,
			clip.Visible(r.rules, ""), clip.Visible(clip.String(r.last, 512), ""))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d releases scanned: %d reports accepted, %d refused (409), rules %s\n", reported, stats.ReportsAccepted, stats.Status409, s.RulesHash())
	if n := len(rows) - reported; n > 0 {
		return fmt.Errorf("%w: %d of %d releases have no report (see NOT REPORTED above)", ErrUnreported, n, len(rows))
	}
	return nil
}
