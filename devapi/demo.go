package devapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

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

// WriteResults writes the accepted reports as a table sorted by release
// (score, rules, inspector URL, or the failure reason), then a summary line
// with the reports accepted and refused and the rules' hash.
func (s *Server) WriteResults(w io.Writer) error {
	var rows []ReportRecord
	for _, r := range s.Reports() {
		if r.Status == http.StatusOK {
			rows = append(rows, r)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name+rows[i].Version < rows[j].Name+rows[j].Version })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tVERSION\tSCORE\tRULES MATCHED\tINSPECTOR URL / REASON")
	for _, r := range rows {
		if r.Reason != "" {
			fmt.Fprintf(tw, "%s\t%s\tFAILED\t-\t%s\n", r.Name, r.Version, r.Reason)
			continue
		}
		score, rules, link := "0", "-", "-"
		if r.Score != nil {
			score = fmt.Sprint(*r.Score)
		}
		if len(r.RulesMatched) > 0 {
			rules = strings.Join(r.RulesMatched, ",")
		}
		if r.InspectorURL != nil {
			link = *r.InspectorURL
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Version, score, rules, link)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	st := s.Stats()
	fmt.Fprintf(w, "\n%d releases scanned: %d reports accepted, %d refused (409), rules %s\n", len(rows), st.ReportsAccepted, st.Status409, s.RulesHash())
	return nil
}
