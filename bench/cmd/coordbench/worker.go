package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/protocol"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// workerMain is `coordbench worker -addr ADDR`: a fake worker for the
// benchmark. It announces WORKER_MODE_NON_SCANNING (a production coordinator
// refuses it), reports every rule set ready, and answers every task at once
// with a clean result, without downloading or scanning. It serves one
// session until the coordinator ends it, drains it, or SIGTERM.
func workerMain(args []string) int {
	fs := flag.NewFlagSet("coordbench worker", flag.ContinueOnError)
	addr := fs.String("addr", "", "the coordinator's address (loopback, insecure)")
	id := fs.String("id", "bench", "worker id")
	slots := fs.Int("slots", 2, "slots announced in Hello")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" || *slots <= 0 {
		fmt.Fprintln(os.Stderr, "coordbench worker: -addr and a positive -slots are required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := fakeWorker(ctx, *addr, *id, *slots); err != nil {
		fmt.Fprintln(os.Stderr, "coordbench worker:", err)
		return 1
	}
	return 0
}

// fakeWorker serves one session: one goroutine sends (fed by out), this one
// receives.
func fakeWorker(ctx context.Context, addr, id string, slots int) error {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(protocol.MaxResponseBytes), grpc.MaxCallSendMsgSize(protocol.MaxRequestBytes)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := fleetv1.NewFleetServiceClient(conn).Connect(ctx)
	if err != nil {
		return err
	}
	out := make(chan *fleetv1.ConnectRequest, 256)
	sendErr := make(chan error, 1)
	go func() {
		for {
			select {
			case m := <-out:
				if err := stream.Send(m); err != nil {
					sendErr <- err
					return
				}
			case <-ctx.Done():
				sendErr <- stream.CloseSend()
				return
			}
		}
	}()
	send := func(m *fleetv1.ConnectRequest) bool {
		select {
		case out <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
		WorkerId: id, Version: "coordbench", ProtocolVersion: fleetv1.ProtocolVersion_PROTOCOL_VERSION_1,
		Slots: uint32(slots), Host: "coordbench", Mode: fleetv1.WorkerMode_WORKER_MODE_NON_SCANNING,
	}}})
	heartbeat := func(interval time.Duration) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if !send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}
	var err2 error
	for {
		m, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled {
				err2 = err
			}
			break
		}
		switch msg := m.GetMsg().(type) {
		case *fleetv1.ConnectResponse_Welcome:
			iv := msg.Welcome.GetHeartbeatInterval().AsDuration()
			if iv <= 0 {
				iv = 5 * time.Second
			}
			go heartbeat(iv)
		case *fleetv1.ConnectResponse_RuleSet:
			send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{
				Hash: msg.RuleSet.GetHash(), CompileTime: durationpb.New(0),
			}}})
		case *fleetv1.ConnectResponse_Assign:
			var rs []*fleetv1.TaskResult
			for _, t := range msg.Assign.GetTasks() {
				rs = append(rs, &fleetv1.TaskResult{
					TaskId:  t.GetTaskId(),
					Outcome: &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{}},
					Stats:   &fleetv1.TaskStats{},
				})
			}
			send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: rs}}})
		case *fleetv1.ConnectResponse_Drain:
			send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Draining{Draining: &fleetv1.Draining{}}})
			cancel()
		}
	}
	cancel()
	if err := <-sendErr; err != nil && err2 == nil && status.Code(err) != codes.Canceled && !errors.Is(err, io.EOF) {
		err2 = err
	}
	if ctx.Err() != nil && err2 != nil && status.Code(err2) == codes.Canceled {
		return nil
	}
	return err2
}
