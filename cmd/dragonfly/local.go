package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/demo"
	"github.com/dragonfly-fleet/fleet/devapi"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/httpserve"
	"github.com/dragonfly-fleet/fleet/internal/localfleet"
	"golang.org/x/sync/errgroup"
)

// localCmd are the settings of dragonfly local.
type localCmd struct {
	cf      coordinatorFlags
	wf      workerFlags
	useDemo bool
}

func (c *localCmd) register(s *cli.Settings) {
	c.cf.register(s)
	c.wf.register(s)
	s.Flag(cli.Bool(&c.useDemo, false), "demo", "serve the built-in demo packages from an in-process development API, scan them all, print the results and exit")
}

func runLocal(ctx context.Context, e *cli.Env, lc *localCmd, s *cli.Settings) error {
	cf, wf, useDemo := &lc.cf, &lc.wf, lc.useDemo
	if err := cf.validate(); err != nil {
		return err
	}
	if err := wf.validate(); err != nil {
		return err
	}
	log, err := startLog(e, s, cf.logLevel, cf.logFormat)
	if err != nil {
		return err
	}
	lim := wf.cfg.Limits
	lim.Distributions = cf.coord.MaxDistributions // applied by the coordinator
	wf.sizes.Log(log, lim)

	var dev *devapi.Server
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)
	if useDemo {
		dev, err = startDemoAPI(gctx, g, cf, wf, log)
		if err != nil {
			return err
		}
		defer dev.Close()
		if !s.IsSet("metrics-addr") {
			cf.metricsAddr = "" // the demo needs no metrics port
		}
	}

	obs := newCoordinatorMetrics(cf)
	clog := log.With("component", "coordinator")
	c, ob, err := cf.newCoordinator(clog, obs)
	if err != nil {
		return err
	}
	defer closeOutbox(ob, log)
	// In one process the worker reaches the coordinator in memory: no
	// network, so no token.
	srv, err := coordinator.NewServer(c, coordinator.ServerConfig{Insecure: true, Logger: clog})
	if err != nil {
		return err
	}
	wcfg := wf.config(log.With("component", "worker"))
	wcfg.Observer = obs.withWorker(wcfg.Threads)
	if dev != nil {
		g.Go(func() error {
			if dev.WaitDrained(gctx, 50*time.Millisecond) {
				stop() // every demo job has been reported
			}
			return nil
		})
	}
	log.Info("local fleet started", "threads", wcfg.Threads, "api", cf.api.BaseURL)
	ferr := localfleet.Run(gctx, wcfg, func(ctx context.Context, ln net.Listener) error {
		return serveCoordinator(ctx, srv, c, ln, cf, obs, clog)
	})
	// The fleet may end first (its coordinator failed): the development
	// API and the wait for its jobs end with it, not at a signal.
	stop()
	gerr := g.Wait()
	if dev != nil && ctx.Err() == nil && ferr == nil {
		if err := dev.WriteResults(e.Stdout); err != nil {
			return errors.Join(err, ignoreCanceled(gerr))
		}
	}
	if dev != nil && ctx.Err() != nil {
		// A signal: no results, and no success either (WriteResults
		// fails a run that left releases unreported).
		return errors.Join(ferr, ignoreCanceled(gerr), errors.New("interrupted: the demo results were not printed"))
	}
	return errors.Join(ferr, ignoreCanceled(gerr))
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// startDemoAPI serves the demo packages and rules from an in-process
// development API on a loopback port and points the coordinator and worker at it.
func startDemoAPI(ctx context.Context, g *errgroup.Group, cf *coordinatorFlags, wf *workerFlags, log *slog.Logger) (*devapi.Server, error) {
	files, err := devapi.DemoFiles()
	if err != nil {
		return nil, err
	}
	dev, err := devapi.New(devapi.Config{Files: files, Rules: demo.Rules(), Logger: log.With("component", "devapi")})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(err, dev.Close())
	}
	g.Go(func() error { return httpserve.Serve(ctx, ln, dev.Handler()) })
	cf.api.BaseURL = "http://" + ln.Addr().String()
	cf.coord.LoadDuration = 500 * time.Millisecond
	wf.cfg.Fetch.AllowedHosts = []string{cf.api.BaseURL} // an origin: http to that loopback address
	return dev, nil
}
