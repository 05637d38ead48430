package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"golang.org/x/term"
)

func init() {
	program.Register(cli.Command{
		Name: "status", Summary: "show a coordinator's fleet: workers, backlog, API health, recent results",
		Flags: func(s *cli.Settings) { new(statusFlags).register(s) }, Run: runStatus,
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
func (f *statusFlags) register(s *cli.Settings) {
	s.SetNamespace("DRAGONFLY_STATUS_")
	s.Var(cli.String(&f.addr, "localhost:"+coordinator.DefaultMetricsPort), "DRAGONFLY_STATUS_COORDINATOR", "the coordinator's HTTP address (host:port, its --metrics-addr) or the URL of its /status.json").
		DeprecatedEnv("DRAGONFLY_STATUS_URL")
	s.Var(cli.String(&f.token, ""), "DRAGONFLY_STATUS_TOKEN", "bearer token the coordinator's /status.json requires (its DRAGONFLY_STATUS_TOKEN)").MarkSecret()
	s.Var(cli.String(&f.format, "table"), "DRAGONFLY_STATUS_FORMAT", "output: table (fits the terminal; long values shortened) or json (the whole document)")
	s.Flag(cli.Bool(&f.asJSON, false), "json", "same as --format json")
	s.Flag(cli.Bool(&f.watch, false), "watch", "redraw every --interval until interrupted")
	s.Var(cli.Duration(&f.interval, 5*time.Second), "DRAGONFLY_STATUS_INTERVAL", "time between two redraws of --watch (at least 1s)")
	s.Var(cli.Duration(&f.timeout, 10*time.Second), "DRAGONFLY_STATUS_TIMEOUT", "bound on each request")
}

func runStatus(ctx context.Context, e *cli.Env, args []string) error {
	return runStatusWith(ctx, e, args, time.After)
}

// runStatusWith is runStatus with the timer of --watch (tests count
// redraws with their own).
func runStatusWith(ctx context.Context, e *cli.Env, args []string, after func(time.Duration) <-chan time.Time) error {
	var f statusFlags
	s := e.Settings("dragonfly status", statusUsage)
	f.register(s)
	if err := s.Parse(args, e.Getenv, e.Dir); err != nil {
		return err
	}
	if len(s.Args()) > 0 {
		return cli.UnexpectedArgs(s.Args())
	}
	if f.asJSON {
		if s.Lookup("format").IsSet() && f.format != "json" {
			return cli.Usage("--json and --format %s disagree", clip.String(f.format, 64))
		}
		f.format = "json"
	}
	if f.format != "table" && f.format != "json" {
		return cli.Usage("--format %q: not one of table, json", clip.String(f.format, 64))
	}
	if f.watch && f.interval < time.Second {
		return cli.Usage("DRAGONFLY_STATUS_INTERVAL=%s: at least 1s", f.interval)
	}
	if f.timeout <= 0 {
		return cli.Usage("DRAGONFLY_STATUS_TIMEOUT=%s: must be positive", f.timeout)
	}
	target, err := statusURL(f.addr)
	if err != nil {
		return cli.Usage("%v", err)
	}
	width, tty := terminalWidth(e.Stdout)
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
			_, err := e.Stdout.Write(body)
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
		status.WriteText(&out, doc, width)
		_, err = e.Stdout.Write(out.Bytes())
		return err
	}
	if !f.watch {
		return draw(ctx)
	}
	return watchStatus(ctx, e.Stdout, f.interval, after, draw)
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
