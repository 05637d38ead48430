package main

import (
	"context"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/internal/cli"
)

type statusFlags struct {
	addr, format, token string
	asJSON, watch       bool
	interval, timeout   time.Duration
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

// statusCommand is dragonfly status with after as the timer of --watch
// (time.After; tests count redraws with their own).
func statusCommand(after func(time.Duration) <-chan time.Time) cli.Command {
	return newCommand("status", "show a coordinator's fleet: workers, backlog, API health, recent results", false,
		func(ctx context.Context, e *cli.Env, f *statusFlags, s *cli.Settings) error {
			return runStatus(ctx, e, f, s, after)
		})
}

func runStatus(ctx context.Context, e *cli.Env, f *statusFlags, s *cli.Settings, after func(time.Duration) <-chan time.Time) error {
	if f.asJSON {
		if s.Lookup("format").IsSet() && f.format != "json" {
			return cli.Usage("--json and --format %s disagree", clip.String(f.format, 64))
		}
		f.format = "json"
	}
	if f.format != "table" && f.format != "json" {
		return cli.Usage("DRAGONFLY_STATUS_FORMAT=%q: not one of table, json", clip.String(f.format, 64))
	}
	if f.watch && f.interval < time.Second {
		return cli.Usage("DRAGONFLY_STATUS_INTERVAL=%s: at least 1s", f.interval)
	}
	if f.timeout <= 0 {
		return cli.Usage("DRAGONFLY_STATUS_TIMEOUT=%s: must be positive", f.timeout)
	}
	target, err := status.DocumentURL(f.addr)
	if err != nil {
		return cli.Usage("%v", err)
	}
	v := status.View{URL: target, Token: f.token, Timeout: f.timeout, JSON: f.format == "json", After: after}
	v.Width, v.Clear = cli.TerminalWidth(e.Stdout)
	if f.watch {
		v.Every = f.interval
	}
	return v.Run(ctx, e.Stdout)
}
