// The Dragonfly Fleet protocol: one coordinator, many workers.
//
// CONTRACT
//
// Roles. The coordinator alone talks to the Dragonfly API: it leases jobs
// (releases), splits each into its distributions, and hands those out as tasks.
// Workers hold no secrets: they download one distribution per task, scan it
// with the rules the task names, and send back the distribution's result. The
// coordinator aggregates a release's distribution results into the one report
// the API receives.
//
// Stream. A worker opens Connect and keeps it open for its whole session. The
// per-RPC metadata carries "authorization: Bearer <fleet token>". On each side
// exactly one goroutine sends and one receives.
//
// Opening. The worker sends Hello first (and only once). The coordinator
// answers Welcome, then the current RuleSet. A worker that announces a
// non-scanning mode (Hello.mode) is refused: only real scans may become
// verdicts. The worker compiles it and sends
// RulesStatus (ready, or the compile error). The coordinator assigns tasks only
// for a rules hash the worker has reported ready. Whenever the coordinator's
// rules change it sends the new RuleSet; a worker keeps the sets it was sent
// (at most 3 recent ones; it reports an evicted set with RulesStatus.evicted
// and hands back its queued tasks of that set) and scans every task with
// exactly the rules the task names (rules_hash).
//
// Credits. A worker announces `slots` in Hello; the coordinator caps them
// (DRAGONFLY_MAX_WORKER_SLOTS). The coordinator never has more than slots +
// prefetch tasks outstanding at one worker (DRAGONFLY_PREFETCH, 1 by default,
// at most 16), plus copies of its own tasks it dispatched elsewhere as
// backups. A task stops being outstanding when
// its result or hand-back arrives. Neither side ever blocks on the other beyond
// gRPC flow control: the coordinator's sends are bounded by credits, the
// worker's by the tasks it holds. A coordinator send that gRPC flow control
// holds for several heartbeat intervals (the worker stopped reading) ends the
// session; its tasks are re-dispatched.
//
// Sizes. Each side's receive limit is the other's send limit: a worker
// receives messages of up to the largest rule set the coordinator accepts plus
// framing (Welcome.max_response_bytes says how much); a worker sends messages
// of at most Welcome.max_request_bytes (4 MiB when a coordinator does not say).
// Every string derived from input (entry names, failure reasons, errors) is
// bounded to a few KiB before it is sent. The worker splits TaskResults into
// messages below the limit; a single result that cannot fit is sent as a
// failure of that task saying so.
//
// Started tasks. The worker sends Heartbeat.running_task_ids, the tasks being
// scanned now, with every heartbeat and whenever tasks start. A task that
// three different workers lost while scanning it (their session broke after
// it started) fails its release: such an input crashes scanners.
//
// Liveness. Both sides send Heartbeat every Welcome.heartbeat_interval. The
// coordinator ends a session that is silent for 3 intervals and re-dispatches
// its outstanding tasks at once; a worker that hears nothing for 3 intervals
// drops the stream and reconnects. A result for a task that was re-dispatched
// meanwhile is dropped by the coordinator (the task id is no longer
// outstanding at that session).
//
// Drain. The coordinator sends Drain (e.g. on SIGTERM); a worker that is itself
// stopping sends Draining. Either way the worker takes no new tasks, hands back
// the tasks it has not started (TaskReturn), finishes the started ones, sends
// their results, and closes its side of the stream. A worker stopping on its
// own bounds that by its grace period (DRAGONFLY_DRAIN_GRACE), handing back
// what is still running then; after the coordinator's Drain it is the
// coordinator that waits (Drain.grace) and then ends the session.
// The coordinator re-dispatches handed-back tasks to other workers at once.
//
// Cancel. A task whose release ended meanwhile (reported, failed by another
// distribution, or given back to the API at the end of its lease), or that
// another copy answered first, is withdrawn with Cancel: its result would be
// thrown away. The worker stops each one it holds (a queued one at once, a
// running one before its next file) and hands it back (TaskReturn); ids it
// does not hold are ignored. The task stays outstanding, as ever, until its
// result or hand-back arrives, so a worker that predates Cancel (and ignores
// it) just finishes the task.
//
// Reconnect. After a broken stream a worker starts a new session with Hello
// and resends nothing: the coordinator re-dispatched the old session's tasks
// when it ended.
//
// Failures. A TaskResult with a failure is a property of the distribution
// (download refused, archive corrupt, a limit broken) and fails the release.
// Trouble of the worker itself (its rules did not compile, it is shutting down)
// is a TaskReturn, never a failure: a failure report is final at the API.

// Code generated by protoc-gen-go-grpc. DO NOT EDIT.
// versions:
// - protoc-gen-go-grpc v1.6.2
// - protoc             (unknown)
// source: dragonfly/fleet/v1/fleet.proto

package fleetv1

import (
	context "context"
	grpc "google.golang.org/grpc"
	codes "google.golang.org/grpc/codes"
	status "google.golang.org/grpc/status"
)

// This is a compile-time assertion to ensure that this generated file
// is compatible with the grpc package it is being compiled against.
// Requires gRPC-Go v1.64.0 or later.
const _ = grpc.SupportPackageIsVersion9

const (
	FleetService_Connect_FullMethodName = "/dragonfly.fleet.v1.FleetService/Connect"
)

// FleetServiceClient is the client API for FleetService service.
//
// For semantics around ctx use and closing/ending streaming RPCs, please refer to https://pkg.go.dev/google.golang.org/grpc/?tab=doc#ClientConn.NewStream.
//
// FleetService is served by the coordinator.
type FleetServiceClient interface {
	// Connect is a worker's session. See the contract above.
	Connect(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[ConnectRequest, ConnectResponse], error)
}

type fleetServiceClient struct {
	cc grpc.ClientConnInterface
}

func NewFleetServiceClient(cc grpc.ClientConnInterface) FleetServiceClient {
	return &fleetServiceClient{cc}
}

func (c *fleetServiceClient) Connect(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[ConnectRequest, ConnectResponse], error) {
	cOpts := append([]grpc.CallOption{grpc.StaticMethod()}, opts...)
	stream, err := c.cc.NewStream(ctx, &FleetService_ServiceDesc.Streams[0], FleetService_Connect_FullMethodName, cOpts...)
	if err != nil {
		return nil, err
	}
	x := &grpc.GenericClientStream[ConnectRequest, ConnectResponse]{ClientStream: stream}
	return x, nil
}

// This type alias is provided for backwards compatibility with existing code that references the prior non-generic stream type by name.
type FleetService_ConnectClient = grpc.BidiStreamingClient[ConnectRequest, ConnectResponse]

// FleetServiceServer is the server API for FleetService service.
// All implementations must embed UnimplementedFleetServiceServer
// for forward compatibility.
//
// FleetService is served by the coordinator.
type FleetServiceServer interface {
	// Connect is a worker's session. See the contract above.
	Connect(grpc.BidiStreamingServer[ConnectRequest, ConnectResponse]) error
	mustEmbedUnimplementedFleetServiceServer()
}

// UnimplementedFleetServiceServer must be embedded to have
// forward compatible implementations.
//
// NOTE: this should be embedded by value instead of pointer to avoid a nil
// pointer dereference when methods are called.
type UnimplementedFleetServiceServer struct{}

func (UnimplementedFleetServiceServer) Connect(grpc.BidiStreamingServer[ConnectRequest, ConnectResponse]) error {
	return status.Error(codes.Unimplemented, "method Connect not implemented")
}
func (UnimplementedFleetServiceServer) mustEmbedUnimplementedFleetServiceServer() {}
func (UnimplementedFleetServiceServer) testEmbeddedByValue()                      {}

// UnsafeFleetServiceServer may be embedded to opt out of forward compatibility for this service.
// Use of this interface is not recommended, as added methods to FleetServiceServer will
// result in compilation errors.
type UnsafeFleetServiceServer interface {
	mustEmbedUnimplementedFleetServiceServer()
}

func RegisterFleetServiceServer(s grpc.ServiceRegistrar, srv FleetServiceServer) {
	// If the following call panics, it indicates UnimplementedFleetServiceServer was
	// embedded by pointer and is nil.  This will cause panics if an
	// unimplemented method is ever invoked, so we test this at initialization
	// time to prevent it from happening at runtime later due to I/O.
	if t, ok := srv.(interface{ testEmbeddedByValue() }); ok {
		t.testEmbeddedByValue()
	}
	s.RegisterService(&FleetService_ServiceDesc, srv)
}

func _FleetService_Connect_Handler(srv interface{}, stream grpc.ServerStream) error {
	return srv.(FleetServiceServer).Connect(&grpc.GenericServerStream[ConnectRequest, ConnectResponse]{ServerStream: stream})
}

// This type alias is provided for backwards compatibility with existing code that references the prior non-generic stream type by name.
type FleetService_ConnectServer = grpc.BidiStreamingServer[ConnectRequest, ConnectResponse]

// FleetService_ServiceDesc is the grpc.ServiceDesc for FleetService service.
// It's only intended for direct use with grpc.RegisterService,
// and not to be introspected or modified (even as a copy)
var FleetService_ServiceDesc = grpc.ServiceDesc{
	ServiceName: "dragonfly.fleet.v1.FleetService",
	HandlerType: (*FleetServiceServer)(nil),
	Methods:     []grpc.MethodDesc{},
	Streams: []grpc.StreamDesc{
		{
			StreamName:    "Connect",
			Handler:       _FleetService_Connect_Handler,
			ServerStreams: true,
			ClientStreams: true,
		},
	},
	Metadata: "dragonfly/fleet/v1/fleet.proto",
}
