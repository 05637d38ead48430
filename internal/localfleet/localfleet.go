// Package localfleet runs a coordinator and a worker in one process
// (dragonfly local): the worker reaches the coordinator's production gRPC
// server in memory (a bufconn listener of 1 MiB buffers: no network, no
// port, no token), and at the end the worker stops first (it hands back
// what it has not started and drains into the coordinator), then the
// coordinator (drain wait, report flush), then its server.
package localfleet

import (
	"context"
	"errors"
	"net"

	"github.com/dragonfly-fleet/fleet/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
)

// Serve runs the coordinator and serves it on ln until ctx ends, then
// stops it in order (coordinator.Server.Run, with whatever serves beside
// it).
type Serve func(ctx context.Context, ln net.Listener) error

// Run runs serve and a worker configured by w (Target, InMemory and
// DialOptions are set here) until ctx ends or either of them stops, then
// stops the worker and then the coordinator, and returns their errors.
func Run(ctx context.Context, w worker.Config, serve Serve) error {
	ln := bufconn.Listen(1 << 20)
	w.Target, w.InMemory = "passthrough:///local", true
	w.DialOptions = append(w.DialOptions, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }))
	// Neither stops with ctx: each is stopped in turn below.
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	coordCtx, stopCoord := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCoord()
	workerDone, coordDone := make(chan error, 1), make(chan error, 1)
	go func() { workerDone <- worker.Run(workerCtx, w) }()
	go func() {
		err := serve(coordCtx, ln)
		ln.Close() // a worker dialing a coordinator that is gone fails at once
		coordDone <- err
	}()

	var werr, cerr error
	workerEnded, coordEnded := false, false
	select {
	case <-ctx.Done():
	case werr = <-workerDone:
		workerEnded = true
	case cerr = <-coordDone:
		coordEnded = true
	}
	stopWorker()
	if !workerEnded {
		werr = <-workerDone
	}
	stopCoord()
	if !coordEnded {
		cerr = <-coordDone
	}
	return errors.Join(werr, cerr)
}
