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

// Code generated by protoc-gen-go. DO NOT EDIT.
// versions:
// 	protoc-gen-go v1.36.12
// 	protoc        (unknown)
// source: dragonfly/fleet/v1/fleet.proto

package fleetv1

import (
	protoreflect "google.golang.org/protobuf/reflect/protoreflect"
	protoimpl "google.golang.org/protobuf/runtime/protoimpl"
	durationpb "google.golang.org/protobuf/types/known/durationpb"
	timestamppb "google.golang.org/protobuf/types/known/timestamppb"
	reflect "reflect"
	sync "sync"
	unsafe "unsafe"
)

const (
	// Verify that this generated code is sufficiently up-to-date.
	_ = protoimpl.EnforceVersion(20 - protoimpl.MinVersion)
	// Verify that runtime/protoimpl is sufficiently up-to-date.
	_ = protoimpl.EnforceVersion(protoimpl.MaxVersion - 20)
)

// The protocol version this file defines.
type ProtocolVersion int32

const (
	ProtocolVersion_PROTOCOL_VERSION_UNSPECIFIED ProtocolVersion = 0
	ProtocolVersion_PROTOCOL_VERSION_1           ProtocolVersion = 1
)

// Enum value maps for ProtocolVersion.
var (
	ProtocolVersion_name = map[int32]string{
		0: "PROTOCOL_VERSION_UNSPECIFIED",
		1: "PROTOCOL_VERSION_1",
	}
	ProtocolVersion_value = map[string]int32{
		"PROTOCOL_VERSION_UNSPECIFIED": 0,
		"PROTOCOL_VERSION_1":           1,
	}
)

func (x ProtocolVersion) Enum() *ProtocolVersion {
	p := new(ProtocolVersion)
	*p = x
	return p
}

func (x ProtocolVersion) String() string {
	return protoimpl.X.EnumStringOf(x.Descriptor(), protoreflect.EnumNumber(x))
}

func (ProtocolVersion) Descriptor() protoreflect.EnumDescriptor {
	return file_dragonfly_fleet_v1_fleet_proto_enumTypes[0].Descriptor()
}

func (ProtocolVersion) Type() protoreflect.EnumType {
	return &file_dragonfly_fleet_v1_fleet_proto_enumTypes[0]
}

func (x ProtocolVersion) Number() protoreflect.EnumNumber {
	return protoreflect.EnumNumber(x)
}

// Deprecated: Use ProtocolVersion.Descriptor instead.
func (ProtocolVersion) EnumDescriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{0}
}

// WorkerMode says whether a worker's results come from real scans.
type WorkerMode int32

const (
	// Sent by workers that predate the field; they always scanned.
	WorkerMode_WORKER_MODE_UNSPECIFIED WorkerMode = 0
	// Results come from downloading and scanning each distribution.
	WorkerMode_WORKER_MODE_SCAN WorkerMode = 1
	// Results are fabricated (benchmark harnesses): never accepted by a
	// production coordinator.
	WorkerMode_WORKER_MODE_NON_SCANNING WorkerMode = 2
)

// Enum value maps for WorkerMode.
var (
	WorkerMode_name = map[int32]string{
		0: "WORKER_MODE_UNSPECIFIED",
		1: "WORKER_MODE_SCAN",
		2: "WORKER_MODE_NON_SCANNING",
	}
	WorkerMode_value = map[string]int32{
		"WORKER_MODE_UNSPECIFIED":  0,
		"WORKER_MODE_SCAN":         1,
		"WORKER_MODE_NON_SCANNING": 2,
	}
)

func (x WorkerMode) Enum() *WorkerMode {
	p := new(WorkerMode)
	*p = x
	return p
}

func (x WorkerMode) String() string {
	return protoimpl.X.EnumStringOf(x.Descriptor(), protoreflect.EnumNumber(x))
}

func (WorkerMode) Descriptor() protoreflect.EnumDescriptor {
	return file_dragonfly_fleet_v1_fleet_proto_enumTypes[1].Descriptor()
}

func (WorkerMode) Type() protoreflect.EnumType {
	return &file_dragonfly_fleet_v1_fleet_proto_enumTypes[1]
}

func (x WorkerMode) Number() protoreflect.EnumNumber {
	return protoreflect.EnumNumber(x)
}

// Deprecated: Use WorkerMode.Descriptor instead.
func (WorkerMode) EnumDescriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{1}
}

// FailureKind classifies failures for metrics.
type FailureKind int32

const (
	FailureKind_FAILURE_KIND_UNSPECIFIED FailureKind = 0
	// The download failed (HTTP status, timeout, connection).
	FailureKind_FAILURE_KIND_DOWNLOAD FailureKind = 1
	// The URL's host is not allowed.
	FailureKind_FAILURE_KIND_HOST FailureKind = 2
	// A limit was broken.
	FailureKind_FAILURE_KIND_LIMIT FailureKind = 3
	// The archive is corrupt or hostile.
	FailureKind_FAILURE_KIND_ARCHIVE FailureKind = 4
	// YARA failed on a file.
	FailureKind_FAILURE_KIND_SCAN FailureKind = 5
)

// Enum value maps for FailureKind.
var (
	FailureKind_name = map[int32]string{
		0: "FAILURE_KIND_UNSPECIFIED",
		1: "FAILURE_KIND_DOWNLOAD",
		2: "FAILURE_KIND_HOST",
		3: "FAILURE_KIND_LIMIT",
		4: "FAILURE_KIND_ARCHIVE",
		5: "FAILURE_KIND_SCAN",
	}
	FailureKind_value = map[string]int32{
		"FAILURE_KIND_UNSPECIFIED": 0,
		"FAILURE_KIND_DOWNLOAD":    1,
		"FAILURE_KIND_HOST":        2,
		"FAILURE_KIND_LIMIT":       3,
		"FAILURE_KIND_ARCHIVE":     4,
		"FAILURE_KIND_SCAN":        5,
	}
)

func (x FailureKind) Enum() *FailureKind {
	p := new(FailureKind)
	*p = x
	return p
}

func (x FailureKind) String() string {
	return protoimpl.X.EnumStringOf(x.Descriptor(), protoreflect.EnumNumber(x))
}

func (FailureKind) Descriptor() protoreflect.EnumDescriptor {
	return file_dragonfly_fleet_v1_fleet_proto_enumTypes[2].Descriptor()
}

func (FailureKind) Type() protoreflect.EnumType {
	return &file_dragonfly_fleet_v1_fleet_proto_enumTypes[2]
}

func (x FailureKind) Number() protoreflect.EnumNumber {
	return protoreflect.EnumNumber(x)
}

// Deprecated: Use FailureKind.Descriptor instead.
func (FailureKind) EnumDescriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{2}
}

// ConnectRequest is a message from a worker.
type ConnectRequest struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Types that are valid to be assigned to Msg:
	//
	//	*ConnectRequest_Hello
	//	*ConnectRequest_RulesStatus
	//	*ConnectRequest_Results
	//	*ConnectRequest_Heartbeat
	//	*ConnectRequest_TaskReturn
	//	*ConnectRequest_Draining
	Msg           isConnectRequest_Msg `protobuf_oneof:"msg"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *ConnectRequest) Reset() {
	*x = ConnectRequest{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[0]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *ConnectRequest) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*ConnectRequest) ProtoMessage() {}

func (x *ConnectRequest) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[0]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use ConnectRequest.ProtoReflect.Descriptor instead.
func (*ConnectRequest) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{0}
}

func (x *ConnectRequest) GetMsg() isConnectRequest_Msg {
	if x != nil {
		return x.Msg
	}
	return nil
}

func (x *ConnectRequest) GetHello() *Hello {
	if x != nil {
		if x, ok := x.Msg.(*ConnectRequest_Hello); ok {
			return x.Hello
		}
	}
	return nil
}

func (x *ConnectRequest) GetRulesStatus() *RulesStatus {
	if x != nil {
		if x, ok := x.Msg.(*ConnectRequest_RulesStatus); ok {
			return x.RulesStatus
		}
	}
	return nil
}

func (x *ConnectRequest) GetResults() *TaskResults {
	if x != nil {
		if x, ok := x.Msg.(*ConnectRequest_Results); ok {
			return x.Results
		}
	}
	return nil
}

func (x *ConnectRequest) GetHeartbeat() *Heartbeat {
	if x != nil {
		if x, ok := x.Msg.(*ConnectRequest_Heartbeat); ok {
			return x.Heartbeat
		}
	}
	return nil
}

func (x *ConnectRequest) GetTaskReturn() *TaskReturn {
	if x != nil {
		if x, ok := x.Msg.(*ConnectRequest_TaskReturn); ok {
			return x.TaskReturn
		}
	}
	return nil
}

func (x *ConnectRequest) GetDraining() *Draining {
	if x != nil {
		if x, ok := x.Msg.(*ConnectRequest_Draining); ok {
			return x.Draining
		}
	}
	return nil
}

type isConnectRequest_Msg interface {
	isConnectRequest_Msg()
}

type ConnectRequest_Hello struct {
	Hello *Hello `protobuf:"bytes,1,opt,name=hello,proto3,oneof"`
}

type ConnectRequest_RulesStatus struct {
	RulesStatus *RulesStatus `protobuf:"bytes,2,opt,name=rules_status,json=rulesStatus,proto3,oneof"`
}

type ConnectRequest_Results struct {
	Results *TaskResults `protobuf:"bytes,3,opt,name=results,proto3,oneof"`
}

type ConnectRequest_Heartbeat struct {
	Heartbeat *Heartbeat `protobuf:"bytes,4,opt,name=heartbeat,proto3,oneof"`
}

type ConnectRequest_TaskReturn struct {
	TaskReturn *TaskReturn `protobuf:"bytes,5,opt,name=task_return,json=taskReturn,proto3,oneof"`
}

type ConnectRequest_Draining struct {
	Draining *Draining `protobuf:"bytes,6,opt,name=draining,proto3,oneof"`
}

func (*ConnectRequest_Hello) isConnectRequest_Msg() {}

func (*ConnectRequest_RulesStatus) isConnectRequest_Msg() {}

func (*ConnectRequest_Results) isConnectRequest_Msg() {}

func (*ConnectRequest_Heartbeat) isConnectRequest_Msg() {}

func (*ConnectRequest_TaskReturn) isConnectRequest_Msg() {}

func (*ConnectRequest_Draining) isConnectRequest_Msg() {}

// ConnectResponse is a message from the coordinator.
type ConnectResponse struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Types that are valid to be assigned to Msg:
	//
	//	*ConnectResponse_Welcome
	//	*ConnectResponse_RuleSet
	//	*ConnectResponse_Assign
	//	*ConnectResponse_Heartbeat
	//	*ConnectResponse_Drain
	//	*ConnectResponse_Cancel
	Msg           isConnectResponse_Msg `protobuf_oneof:"msg"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *ConnectResponse) Reset() {
	*x = ConnectResponse{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[1]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *ConnectResponse) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*ConnectResponse) ProtoMessage() {}

func (x *ConnectResponse) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[1]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use ConnectResponse.ProtoReflect.Descriptor instead.
func (*ConnectResponse) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{1}
}

func (x *ConnectResponse) GetMsg() isConnectResponse_Msg {
	if x != nil {
		return x.Msg
	}
	return nil
}

func (x *ConnectResponse) GetWelcome() *Welcome {
	if x != nil {
		if x, ok := x.Msg.(*ConnectResponse_Welcome); ok {
			return x.Welcome
		}
	}
	return nil
}

func (x *ConnectResponse) GetRuleSet() *RuleSet {
	if x != nil {
		if x, ok := x.Msg.(*ConnectResponse_RuleSet); ok {
			return x.RuleSet
		}
	}
	return nil
}

func (x *ConnectResponse) GetAssign() *Assign {
	if x != nil {
		if x, ok := x.Msg.(*ConnectResponse_Assign); ok {
			return x.Assign
		}
	}
	return nil
}

func (x *ConnectResponse) GetHeartbeat() *Heartbeat {
	if x != nil {
		if x, ok := x.Msg.(*ConnectResponse_Heartbeat); ok {
			return x.Heartbeat
		}
	}
	return nil
}

func (x *ConnectResponse) GetDrain() *Drain {
	if x != nil {
		if x, ok := x.Msg.(*ConnectResponse_Drain); ok {
			return x.Drain
		}
	}
	return nil
}

func (x *ConnectResponse) GetCancel() *Cancel {
	if x != nil {
		if x, ok := x.Msg.(*ConnectResponse_Cancel); ok {
			return x.Cancel
		}
	}
	return nil
}

type isConnectResponse_Msg interface {
	isConnectResponse_Msg()
}

type ConnectResponse_Welcome struct {
	Welcome *Welcome `protobuf:"bytes,1,opt,name=welcome,proto3,oneof"`
}

type ConnectResponse_RuleSet struct {
	RuleSet *RuleSet `protobuf:"bytes,2,opt,name=rule_set,json=ruleSet,proto3,oneof"`
}

type ConnectResponse_Assign struct {
	Assign *Assign `protobuf:"bytes,3,opt,name=assign,proto3,oneof"`
}

type ConnectResponse_Heartbeat struct {
	Heartbeat *Heartbeat `protobuf:"bytes,4,opt,name=heartbeat,proto3,oneof"`
}

type ConnectResponse_Drain struct {
	Drain *Drain `protobuf:"bytes,5,opt,name=drain,proto3,oneof"`
}

type ConnectResponse_Cancel struct {
	Cancel *Cancel `protobuf:"bytes,6,opt,name=cancel,proto3,oneof"`
}

func (*ConnectResponse_Welcome) isConnectResponse_Msg() {}

func (*ConnectResponse_RuleSet) isConnectResponse_Msg() {}

func (*ConnectResponse_Assign) isConnectResponse_Msg() {}

func (*ConnectResponse_Heartbeat) isConnectResponse_Msg() {}

func (*ConnectResponse_Drain) isConnectResponse_Msg() {}

func (*ConnectResponse_Cancel) isConnectResponse_Msg() {}

// Hello opens a session.
type Hello struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// A stable id of the worker process (host name + random suffix by default).
	WorkerId string `protobuf:"bytes,1,opt,name=worker_id,json=workerId,proto3" json:"worker_id,omitempty"`
	// The worker's build version.
	Version         string          `protobuf:"bytes,2,opt,name=version,proto3" json:"version,omitempty"`
	ProtocolVersion ProtocolVersion `protobuf:"varint,3,opt,name=protocol_version,json=protocolVersion,proto3,enum=dragonfly.fleet.v1.ProtocolVersion" json:"protocol_version,omitempty"`
	// How many tasks the worker scans at once (its scanner threads).
	Slots uint32 `protobuf:"varint,4,opt,name=slots,proto3" json:"slots,omitempty"`
	// The host the worker runs on.
	Host string `protobuf:"bytes,5,opt,name=host,proto3" json:"host,omitempty"`
	// What the worker does with tasks. Coordinators refuse every mode but
	// WORKER_MODE_SCAN (and UNSPECIFIED, sent by workers older than this field,
	// which always scanned).
	Mode          WorkerMode `protobuf:"varint,6,opt,name=mode,proto3,enum=dragonfly.fleet.v1.WorkerMode" json:"mode,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Hello) Reset() {
	*x = Hello{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[2]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Hello) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Hello) ProtoMessage() {}

func (x *Hello) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[2]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Hello.ProtoReflect.Descriptor instead.
func (*Hello) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{2}
}

func (x *Hello) GetWorkerId() string {
	if x != nil {
		return x.WorkerId
	}
	return ""
}

func (x *Hello) GetVersion() string {
	if x != nil {
		return x.Version
	}
	return ""
}

func (x *Hello) GetProtocolVersion() ProtocolVersion {
	if x != nil {
		return x.ProtocolVersion
	}
	return ProtocolVersion_PROTOCOL_VERSION_UNSPECIFIED
}

func (x *Hello) GetSlots() uint32 {
	if x != nil {
		return x.Slots
	}
	return 0
}

func (x *Hello) GetHost() string {
	if x != nil {
		return x.Host
	}
	return ""
}

func (x *Hello) GetMode() WorkerMode {
	if x != nil {
		return x.Mode
	}
	return WorkerMode_WORKER_MODE_UNSPECIFIED
}

// Welcome accepts a session.
type Welcome struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Identifies the session in both sides' logs.
	SessionId string `protobuf:"bytes,1,opt,name=session_id,json=sessionId,proto3" json:"session_id,omitempty"`
	// How often each side sends Heartbeat.
	HeartbeatInterval *durationpb.Duration `protobuf:"bytes,2,opt,name=heartbeat_interval,json=heartbeatInterval,proto3" json:"heartbeat_interval,omitempty"`
	// The coordinator's build version.
	CoordinatorVersion string `protobuf:"bytes,3,opt,name=coordinator_version,json=coordinatorVersion,proto3" json:"coordinator_version,omitempty"`
	// The largest ConnectRequest the coordinator receives; the worker keeps its
	// messages below it. 0 (older coordinators): 4 MiB.
	MaxRequestBytes uint32 `protobuf:"varint,4,opt,name=max_request_bytes,json=maxRequestBytes,proto3" json:"max_request_bytes,omitempty"`
	// The largest ConnectResponse the coordinator sends (a rule set up to the
	// coordinator's limit plus framing).
	MaxResponseBytes uint32 `protobuf:"varint,5,opt,name=max_response_bytes,json=maxResponseBytes,proto3" json:"max_response_bytes,omitempty"`
	unknownFields    protoimpl.UnknownFields
	sizeCache        protoimpl.SizeCache
}

func (x *Welcome) Reset() {
	*x = Welcome{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[3]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Welcome) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Welcome) ProtoMessage() {}

func (x *Welcome) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[3]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Welcome.ProtoReflect.Descriptor instead.
func (*Welcome) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{3}
}

func (x *Welcome) GetSessionId() string {
	if x != nil {
		return x.SessionId
	}
	return ""
}

func (x *Welcome) GetHeartbeatInterval() *durationpb.Duration {
	if x != nil {
		return x.HeartbeatInterval
	}
	return nil
}

func (x *Welcome) GetCoordinatorVersion() string {
	if x != nil {
		return x.CoordinatorVersion
	}
	return ""
}

func (x *Welcome) GetMaxRequestBytes() uint32 {
	if x != nil {
		return x.MaxRequestBytes
	}
	return 0
}

func (x *Welcome) GetMaxResponseBytes() uint32 {
	if x != nil {
		return x.MaxResponseBytes
	}
	return 0
}

// RuleSet is a YARA rule set, as the Dragonfly API serves it.
type RuleSet struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The rules commit.
	Hash string `protobuf:"bytes,1,opt,name=hash,proto3" json:"hash,omitempty"`
	// YARA sources by file stem; compiled joined with "\n" in stem order.
	Sources       map[string]string `protobuf:"bytes,2,rep,name=sources,proto3" json:"sources,omitempty" protobuf_key:"bytes,1,opt,name=key" protobuf_val:"bytes,2,opt,name=value"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *RuleSet) Reset() {
	*x = RuleSet{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[4]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *RuleSet) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*RuleSet) ProtoMessage() {}

func (x *RuleSet) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[4]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use RuleSet.ProtoReflect.Descriptor instead.
func (*RuleSet) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{4}
}

func (x *RuleSet) GetHash() string {
	if x != nil {
		return x.Hash
	}
	return ""
}

func (x *RuleSet) GetSources() map[string]string {
	if x != nil {
		return x.Sources
	}
	return nil
}

// RulesStatus tells the coordinator whether a rule set is ready.
type RulesStatus struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	Hash  string                 `protobuf:"bytes,1,opt,name=hash,proto3" json:"hash,omitempty"`
	// Empty when the rules compiled; else the compile error.
	Error string `protobuf:"bytes,2,opt,name=error,proto3" json:"error,omitempty"`
	// Compile time.
	CompileTime *durationpb.Duration `protobuf:"bytes,3,opt,name=compile_time,json=compileTime,proto3" json:"compile_time,omitempty"`
	// The worker no longer holds this set (it keeps a few recent ones); the
	// coordinator stops assigning tasks for it to this worker.
	Evicted       bool `protobuf:"varint,4,opt,name=evicted,proto3" json:"evicted,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *RulesStatus) Reset() {
	*x = RulesStatus{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[5]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *RulesStatus) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*RulesStatus) ProtoMessage() {}

func (x *RulesStatus) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[5]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use RulesStatus.ProtoReflect.Descriptor instead.
func (*RulesStatus) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{5}
}

func (x *RulesStatus) GetHash() string {
	if x != nil {
		return x.Hash
	}
	return ""
}

func (x *RulesStatus) GetError() string {
	if x != nil {
		return x.Error
	}
	return ""
}

func (x *RulesStatus) GetCompileTime() *durationpb.Duration {
	if x != nil {
		return x.CompileTime
	}
	return nil
}

func (x *RulesStatus) GetEvicted() bool {
	if x != nil {
		return x.Evicted
	}
	return false
}

// Assign hands tasks to a worker.
type Assign struct {
	state         protoimpl.MessageState `protogen:"open.v1"`
	Tasks         []*Task                `protobuf:"bytes,1,rep,name=tasks,proto3" json:"tasks,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Assign) Reset() {
	*x = Assign{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[6]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Assign) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Assign) ProtoMessage() {}

func (x *Assign) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[6]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Assign.ProtoReflect.Descriptor instead.
func (*Assign) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{6}
}

func (x *Assign) GetTasks() []*Task {
	if x != nil {
		return x.Tasks
	}
	return nil
}

// Task is one distribution of a leased release.
type Task struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Unique within the coordinator's lifetime.
	TaskId uint64 `protobuf:"varint,1,opt,name=task_id,json=taskId,proto3" json:"task_id,omitempty"`
	// The download URL of the distribution.
	Url string `protobuf:"bytes,2,opt,name=url,proto3" json:"url,omitempty"`
	// The rules commit to scan with; the worker has reported it ready.
	RulesHash string `protobuf:"bytes,3,opt,name=rules_hash,json=rulesHash,proto3" json:"rules_hash,omitempty"`
	// The release, for logs.
	Job *JobRef `protobuf:"bytes,4,opt,name=job,proto3" json:"job,omitempty"`
	// When the job's lease at the API ends; a result after it is useless.
	LeaseDeadline *timestamppb.Timestamp `protobuf:"bytes,5,opt,name=lease_deadline,json=leaseDeadline,proto3" json:"lease_deadline,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Task) Reset() {
	*x = Task{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[7]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Task) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Task) ProtoMessage() {}

func (x *Task) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[7]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Task.ProtoReflect.Descriptor instead.
func (*Task) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{7}
}

func (x *Task) GetTaskId() uint64 {
	if x != nil {
		return x.TaskId
	}
	return 0
}

func (x *Task) GetUrl() string {
	if x != nil {
		return x.Url
	}
	return ""
}

func (x *Task) GetRulesHash() string {
	if x != nil {
		return x.RulesHash
	}
	return ""
}

func (x *Task) GetJob() *JobRef {
	if x != nil {
		return x.Job
	}
	return nil
}

func (x *Task) GetLeaseDeadline() *timestamppb.Timestamp {
	if x != nil {
		return x.LeaseDeadline
	}
	return nil
}

// JobRef names a leased release.
type JobRef struct {
	state   protoimpl.MessageState `protogen:"open.v1"`
	Name    string                 `protobuf:"bytes,1,opt,name=name,proto3" json:"name,omitempty"`
	Version string                 `protobuf:"bytes,2,opt,name=version,proto3" json:"version,omitempty"`
	// 0 when the API did not say.
	Attempt       int64 `protobuf:"varint,3,opt,name=attempt,proto3" json:"attempt,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *JobRef) Reset() {
	*x = JobRef{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[8]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *JobRef) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*JobRef) ProtoMessage() {}

func (x *JobRef) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[8]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use JobRef.ProtoReflect.Descriptor instead.
func (*JobRef) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{8}
}

func (x *JobRef) GetName() string {
	if x != nil {
		return x.Name
	}
	return ""
}

func (x *JobRef) GetVersion() string {
	if x != nil {
		return x.Version
	}
	return ""
}

func (x *JobRef) GetAttempt() int64 {
	if x != nil {
		return x.Attempt
	}
	return 0
}

// TaskResults carries finished tasks.
type TaskResults struct {
	state         protoimpl.MessageState `protogen:"open.v1"`
	Results       []*TaskResult          `protobuf:"bytes,1,rep,name=results,proto3" json:"results,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *TaskResults) Reset() {
	*x = TaskResults{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[9]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *TaskResults) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*TaskResults) ProtoMessage() {}

func (x *TaskResults) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[9]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use TaskResults.ProtoReflect.Descriptor instead.
func (*TaskResults) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{9}
}

func (x *TaskResults) GetResults() []*TaskResult {
	if x != nil {
		return x.Results
	}
	return nil
}

// TaskResult is the outcome of one task.
type TaskResult struct {
	state  protoimpl.MessageState `protogen:"open.v1"`
	TaskId uint64                 `protobuf:"varint,1,opt,name=task_id,json=taskId,proto3" json:"task_id,omitempty"`
	// Types that are valid to be assigned to Outcome:
	//
	//	*TaskResult_Distribution
	//	*TaskResult_Failure
	Outcome       isTaskResult_Outcome `protobuf_oneof:"outcome"`
	Stats         *TaskStats           `protobuf:"bytes,4,opt,name=stats,proto3" json:"stats,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *TaskResult) Reset() {
	*x = TaskResult{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[10]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *TaskResult) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*TaskResult) ProtoMessage() {}

func (x *TaskResult) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[10]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use TaskResult.ProtoReflect.Descriptor instead.
func (*TaskResult) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{10}
}

func (x *TaskResult) GetTaskId() uint64 {
	if x != nil {
		return x.TaskId
	}
	return 0
}

func (x *TaskResult) GetOutcome() isTaskResult_Outcome {
	if x != nil {
		return x.Outcome
	}
	return nil
}

func (x *TaskResult) GetDistribution() *DistributionResult {
	if x != nil {
		if x, ok := x.Outcome.(*TaskResult_Distribution); ok {
			return x.Distribution
		}
	}
	return nil
}

func (x *TaskResult) GetFailure() *TaskFailure {
	if x != nil {
		if x, ok := x.Outcome.(*TaskResult_Failure); ok {
			return x.Failure
		}
	}
	return nil
}

func (x *TaskResult) GetStats() *TaskStats {
	if x != nil {
		return x.Stats
	}
	return nil
}

type isTaskResult_Outcome interface {
	isTaskResult_Outcome()
}

type TaskResult_Distribution struct {
	Distribution *DistributionResult `protobuf:"bytes,2,opt,name=distribution,proto3,oneof"`
}

type TaskResult_Failure struct {
	Failure *TaskFailure `protobuf:"bytes,3,opt,name=failure,proto3,oneof"`
}

func (*TaskResult_Distribution) isTaskResult_Outcome() {}

func (*TaskResult_Failure) isTaskResult_Outcome() {}

// DistributionResult is a scanned distribution's score.
type DistributionResult struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Sum of the weights of the distinct rules counted in the distribution.
	Score int64 `protobuf:"varint,1,opt,name=score,proto3" json:"score,omitempty"`
	// The distinct rules counted, sorted by name.
	Rules []*RuleHit `protobuf:"bytes,2,rep,name=rules,proto3" json:"rules,omitempty"`
	// The file with the highest score (first in archive order among equals);
	// empty when no rule counted.
	TopFile       string `protobuf:"bytes,3,opt,name=top_file,json=topFile,proto3" json:"top_file,omitempty"`
	TopFileScore  int64  `protobuf:"varint,4,opt,name=top_file_score,json=topFileScore,proto3" json:"top_file_score,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *DistributionResult) Reset() {
	*x = DistributionResult{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[11]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *DistributionResult) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*DistributionResult) ProtoMessage() {}

func (x *DistributionResult) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[11]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use DistributionResult.ProtoReflect.Descriptor instead.
func (*DistributionResult) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{11}
}

func (x *DistributionResult) GetScore() int64 {
	if x != nil {
		return x.Score
	}
	return 0
}

func (x *DistributionResult) GetRules() []*RuleHit {
	if x != nil {
		return x.Rules
	}
	return nil
}

func (x *DistributionResult) GetTopFile() string {
	if x != nil {
		return x.TopFile
	}
	return ""
}

func (x *DistributionResult) GetTopFileScore() int64 {
	if x != nil {
		return x.TopFileScore
	}
	return 0
}

// RuleHit is a counted rule.
type RuleHit struct {
	state         protoimpl.MessageState `protogen:"open.v1"`
	Name          string                 `protobuf:"bytes,1,opt,name=name,proto3" json:"name,omitempty"`
	Weight        int64                  `protobuf:"varint,2,opt,name=weight,proto3" json:"weight,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *RuleHit) Reset() {
	*x = RuleHit{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[12]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *RuleHit) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*RuleHit) ProtoMessage() {}

func (x *RuleHit) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[12]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use RuleHit.ProtoReflect.Descriptor instead.
func (*RuleHit) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{12}
}

func (x *RuleHit) GetName() string {
	if x != nil {
		return x.Name
	}
	return ""
}

func (x *RuleHit) GetWeight() int64 {
	if x != nil {
		return x.Weight
	}
	return 0
}

// TaskFailure is why a distribution could not be scanned. It fails the release.
type TaskFailure struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// One line naming the distribution and the cause.
	Reason string      `protobuf:"bytes,1,opt,name=reason,proto3" json:"reason,omitempty"`
	Kind   FailureKind `protobuf:"varint,2,opt,name=kind,proto3,enum=dragonfly.fleet.v1.FailureKind" json:"kind,omitempty"`
	// For FAILURE_KIND_LIMIT: the limit's name (download_size, expanded_size,
	// file_size, archive_entries, distributions, scan_timeout, match_memory,
	// time, message_size, xz_dictionary, string_matches).
	Limit         string `protobuf:"bytes,3,opt,name=limit,proto3" json:"limit,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *TaskFailure) Reset() {
	*x = TaskFailure{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[13]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *TaskFailure) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*TaskFailure) ProtoMessage() {}

func (x *TaskFailure) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[13]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use TaskFailure.ProtoReflect.Descriptor instead.
func (*TaskFailure) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{13}
}

func (x *TaskFailure) GetReason() string {
	if x != nil {
		return x.Reason
	}
	return ""
}

func (x *TaskFailure) GetKind() FailureKind {
	if x != nil {
		return x.Kind
	}
	return FailureKind_FAILURE_KIND_UNSPECIFIED
}

func (x *TaskFailure) GetLimit() string {
	if x != nil {
		return x.Limit
	}
	return ""
}

// TaskStats describe the work of one task.
type TaskStats struct {
	state           protoimpl.MessageState `protogen:"open.v1"`
	BytesDownloaded int64                  `protobuf:"varint,1,opt,name=bytes_downloaded,json=bytesDownloaded,proto3" json:"bytes_downloaded,omitempty"`
	BytesExpanded   int64                  `protobuf:"varint,2,opt,name=bytes_expanded,json=bytesExpanded,proto3" json:"bytes_expanded,omitempty"`
	Files           int64                  `protobuf:"varint,3,opt,name=files,proto3" json:"files,omitempty"`
	DownloadTime    *durationpb.Duration   `protobuf:"bytes,4,opt,name=download_time,json=downloadTime,proto3" json:"download_time,omitempty"`
	// YARA time summed over the files.
	ScanTime *durationpb.Duration `protobuf:"bytes,5,opt,name=scan_time,json=scanTime,proto3" json:"scan_time,omitempty"`
	// From receipt of the task to its result.
	WallTime      *durationpb.Duration `protobuf:"bytes,6,opt,name=wall_time,json=wallTime,proto3" json:"wall_time,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *TaskStats) Reset() {
	*x = TaskStats{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[14]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *TaskStats) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*TaskStats) ProtoMessage() {}

func (x *TaskStats) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[14]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use TaskStats.ProtoReflect.Descriptor instead.
func (*TaskStats) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{14}
}

func (x *TaskStats) GetBytesDownloaded() int64 {
	if x != nil {
		return x.BytesDownloaded
	}
	return 0
}

func (x *TaskStats) GetBytesExpanded() int64 {
	if x != nil {
		return x.BytesExpanded
	}
	return 0
}

func (x *TaskStats) GetFiles() int64 {
	if x != nil {
		return x.Files
	}
	return 0
}

func (x *TaskStats) GetDownloadTime() *durationpb.Duration {
	if x != nil {
		return x.DownloadTime
	}
	return nil
}

func (x *TaskStats) GetScanTime() *durationpb.Duration {
	if x != nil {
		return x.ScanTime
	}
	return nil
}

func (x *TaskStats) GetWallTime() *durationpb.Duration {
	if x != nil {
		return x.WallTime
	}
	return nil
}

// TaskReturn hands back tasks a worker will not run.
type TaskReturn struct {
	state   protoimpl.MessageState `protogen:"open.v1"`
	TaskIds []uint64               `protobuf:"varint,1,rep,packed,name=task_ids,json=taskIds,proto3" json:"task_ids,omitempty"`
	// Why, for logs (draining, rules not ready, ...).
	Reason        string `protobuf:"bytes,2,opt,name=reason,proto3" json:"reason,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *TaskReturn) Reset() {
	*x = TaskReturn{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[15]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *TaskReturn) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*TaskReturn) ProtoMessage() {}

func (x *TaskReturn) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[15]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use TaskReturn.ProtoReflect.Descriptor instead.
func (*TaskReturn) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{15}
}

func (x *TaskReturn) GetTaskIds() []uint64 {
	if x != nil {
		return x.TaskIds
	}
	return nil
}

func (x *TaskReturn) GetReason() string {
	if x != nil {
		return x.Reason
	}
	return ""
}

// Heartbeat keeps a session alive.
type Heartbeat struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Worker only: tasks held (queued + running).
	TasksHeld uint32 `protobuf:"varint,1,opt,name=tasks_held,json=tasksHeld,proto3" json:"tasks_held,omitempty"`
	// Worker only: tasks being scanned now.
	TasksRunning uint32 `protobuf:"varint,2,opt,name=tasks_running,json=tasksRunning,proto3" json:"tasks_running,omitempty"`
	// Worker only: the ids of the tasks being scanned now (started). Sent with
	// every heartbeat and, in an extra Heartbeat, whenever tasks start.
	RunningTaskIds []uint64 `protobuf:"varint,3,rep,packed,name=running_task_ids,json=runningTaskIds,proto3" json:"running_task_ids,omitempty"`
	unknownFields  protoimpl.UnknownFields
	sizeCache      protoimpl.SizeCache
}

func (x *Heartbeat) Reset() {
	*x = Heartbeat{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[16]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Heartbeat) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Heartbeat) ProtoMessage() {}

func (x *Heartbeat) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[16]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Heartbeat.ProtoReflect.Descriptor instead.
func (*Heartbeat) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{16}
}

func (x *Heartbeat) GetTasksHeld() uint32 {
	if x != nil {
		return x.TasksHeld
	}
	return 0
}

func (x *Heartbeat) GetTasksRunning() uint32 {
	if x != nil {
		return x.TasksRunning
	}
	return 0
}

func (x *Heartbeat) GetRunningTaskIds() []uint64 {
	if x != nil {
		return x.RunningTaskIds
	}
	return nil
}

// Drain asks a worker to stop taking tasks.
type Drain struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// How long the coordinator waits for the started tasks.
	Grace         *durationpb.Duration `protobuf:"bytes,1,opt,name=grace,proto3" json:"grace,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Drain) Reset() {
	*x = Drain{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[17]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Drain) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Drain) ProtoMessage() {}

func (x *Drain) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[17]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Drain.ProtoReflect.Descriptor instead.
func (*Drain) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{17}
}

func (x *Drain) GetGrace() *durationpb.Duration {
	if x != nil {
		return x.Grace
	}
	return nil
}

// Draining tells the coordinator the worker is stopping and takes no new tasks.
type Draining struct {
	state         protoimpl.MessageState `protogen:"open.v1"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Draining) Reset() {
	*x = Draining{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[18]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Draining) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Draining) ProtoMessage() {}

func (x *Draining) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[18]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Draining.ProtoReflect.Descriptor instead.
func (*Draining) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{18}
}

// Cancel withdraws tasks (see the contract above).
type Cancel struct {
	state         protoimpl.MessageState `protogen:"open.v1"`
	TaskIds       []uint64               `protobuf:"varint,1,rep,packed,name=task_ids,json=taskIds,proto3" json:"task_ids,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Cancel) Reset() {
	*x = Cancel{}
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[19]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Cancel) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Cancel) ProtoMessage() {}

func (x *Cancel) ProtoReflect() protoreflect.Message {
	mi := &file_dragonfly_fleet_v1_fleet_proto_msgTypes[19]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Cancel.ProtoReflect.Descriptor instead.
func (*Cancel) Descriptor() ([]byte, []int) {
	return file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP(), []int{19}
}

func (x *Cancel) GetTaskIds() []uint64 {
	if x != nil {
		return x.TaskIds
	}
	return nil
}

var File_dragonfly_fleet_v1_fleet_proto protoreflect.FileDescriptor

const file_dragonfly_fleet_v1_fleet_proto_rawDesc = "" +
	"\n" +
	"\x1edragonfly/fleet/v1/fleet.proto\x12\x12dragonfly.fleet.v1\x1a\x1egoogle/protobuf/duration.proto\x1a\x1fgoogle/protobuf/timestamp.proto\"\x8b\x03\n" +
	"\x0eConnectRequest\x121\n" +
	"\x05hello\x18\x01 \x01(\v2\x19.dragonfly.fleet.v1.HelloH\x00R\x05hello\x12D\n" +
	"\frules_status\x18\x02 \x01(\v2\x1f.dragonfly.fleet.v1.RulesStatusH\x00R\vrulesStatus\x12;\n" +
	"\aresults\x18\x03 \x01(\v2\x1f.dragonfly.fleet.v1.TaskResultsH\x00R\aresults\x12=\n" +
	"\theartbeat\x18\x04 \x01(\v2\x1d.dragonfly.fleet.v1.HeartbeatH\x00R\theartbeat\x12A\n" +
	"\vtask_return\x18\x05 \x01(\v2\x1e.dragonfly.fleet.v1.TaskReturnH\x00R\n" +
	"taskReturn\x12:\n" +
	"\bdraining\x18\x06 \x01(\v2\x1c.dragonfly.fleet.v1.DrainingH\x00R\bdrainingB\x05\n" +
	"\x03msg\"\xe9\x02\n" +
	"\x0fConnectResponse\x127\n" +
	"\awelcome\x18\x01 \x01(\v2\x1b.dragonfly.fleet.v1.WelcomeH\x00R\awelcome\x128\n" +
	"\brule_set\x18\x02 \x01(\v2\x1b.dragonfly.fleet.v1.RuleSetH\x00R\aruleSet\x124\n" +
	"\x06assign\x18\x03 \x01(\v2\x1a.dragonfly.fleet.v1.AssignH\x00R\x06assign\x12=\n" +
	"\theartbeat\x18\x04 \x01(\v2\x1d.dragonfly.fleet.v1.HeartbeatH\x00R\theartbeat\x121\n" +
	"\x05drain\x18\x05 \x01(\v2\x19.dragonfly.fleet.v1.DrainH\x00R\x05drain\x124\n" +
	"\x06cancel\x18\x06 \x01(\v2\x1a.dragonfly.fleet.v1.CancelH\x00R\x06cancelB\x05\n" +
	"\x03msg\"\xec\x01\n" +
	"\x05Hello\x12\x1b\n" +
	"\tworker_id\x18\x01 \x01(\tR\bworkerId\x12\x18\n" +
	"\aversion\x18\x02 \x01(\tR\aversion\x12N\n" +
	"\x10protocol_version\x18\x03 \x01(\x0e2#.dragonfly.fleet.v1.ProtocolVersionR\x0fprotocolVersion\x12\x14\n" +
	"\x05slots\x18\x04 \x01(\rR\x05slots\x12\x12\n" +
	"\x04host\x18\x05 \x01(\tR\x04host\x122\n" +
	"\x04mode\x18\x06 \x01(\x0e2\x1e.dragonfly.fleet.v1.WorkerModeR\x04mode\"\xfd\x01\n" +
	"\aWelcome\x12\x1d\n" +
	"\n" +
	"session_id\x18\x01 \x01(\tR\tsessionId\x12H\n" +
	"\x12heartbeat_interval\x18\x02 \x01(\v2\x19.google.protobuf.DurationR\x11heartbeatInterval\x12/\n" +
	"\x13coordinator_version\x18\x03 \x01(\tR\x12coordinatorVersion\x12*\n" +
	"\x11max_request_bytes\x18\x04 \x01(\rR\x0fmaxRequestBytes\x12,\n" +
	"\x12max_response_bytes\x18\x05 \x01(\rR\x10maxResponseBytes\"\x9d\x01\n" +
	"\aRuleSet\x12\x12\n" +
	"\x04hash\x18\x01 \x01(\tR\x04hash\x12B\n" +
	"\asources\x18\x02 \x03(\v2(.dragonfly.fleet.v1.RuleSet.SourcesEntryR\asources\x1a:\n" +
	"\fSourcesEntry\x12\x10\n" +
	"\x03key\x18\x01 \x01(\tR\x03key\x12\x14\n" +
	"\x05value\x18\x02 \x01(\tR\x05value:\x028\x01\"\x8f\x01\n" +
	"\vRulesStatus\x12\x12\n" +
	"\x04hash\x18\x01 \x01(\tR\x04hash\x12\x14\n" +
	"\x05error\x18\x02 \x01(\tR\x05error\x12<\n" +
	"\fcompile_time\x18\x03 \x01(\v2\x19.google.protobuf.DurationR\vcompileTime\x12\x18\n" +
	"\aevicted\x18\x04 \x01(\bR\aevicted\"8\n" +
	"\x06Assign\x12.\n" +
	"\x05tasks\x18\x01 \x03(\v2\x18.dragonfly.fleet.v1.TaskR\x05tasks\"\xc1\x01\n" +
	"\x04Task\x12\x17\n" +
	"\atask_id\x18\x01 \x01(\x04R\x06taskId\x12\x10\n" +
	"\x03url\x18\x02 \x01(\tR\x03url\x12\x1d\n" +
	"\n" +
	"rules_hash\x18\x03 \x01(\tR\trulesHash\x12,\n" +
	"\x03job\x18\x04 \x01(\v2\x1a.dragonfly.fleet.v1.JobRefR\x03job\x12A\n" +
	"\x0elease_deadline\x18\x05 \x01(\v2\x1a.google.protobuf.TimestampR\rleaseDeadline\"P\n" +
	"\x06JobRef\x12\x12\n" +
	"\x04name\x18\x01 \x01(\tR\x04name\x12\x18\n" +
	"\aversion\x18\x02 \x01(\tR\aversion\x12\x18\n" +
	"\aattempt\x18\x03 \x01(\x03R\aattempt\"G\n" +
	"\vTaskResults\x128\n" +
	"\aresults\x18\x01 \x03(\v2\x1e.dragonfly.fleet.v1.TaskResultR\aresults\"\xf0\x01\n" +
	"\n" +
	"TaskResult\x12\x17\n" +
	"\atask_id\x18\x01 \x01(\x04R\x06taskId\x12L\n" +
	"\fdistribution\x18\x02 \x01(\v2&.dragonfly.fleet.v1.DistributionResultH\x00R\fdistribution\x12;\n" +
	"\afailure\x18\x03 \x01(\v2\x1f.dragonfly.fleet.v1.TaskFailureH\x00R\afailure\x123\n" +
	"\x05stats\x18\x04 \x01(\v2\x1d.dragonfly.fleet.v1.TaskStatsR\x05statsB\t\n" +
	"\aoutcome\"\x9e\x01\n" +
	"\x12DistributionResult\x12\x14\n" +
	"\x05score\x18\x01 \x01(\x03R\x05score\x121\n" +
	"\x05rules\x18\x02 \x03(\v2\x1b.dragonfly.fleet.v1.RuleHitR\x05rules\x12\x19\n" +
	"\btop_file\x18\x03 \x01(\tR\atopFile\x12$\n" +
	"\x0etop_file_score\x18\x04 \x01(\x03R\ftopFileScore\"5\n" +
	"\aRuleHit\x12\x12\n" +
	"\x04name\x18\x01 \x01(\tR\x04name\x12\x16\n" +
	"\x06weight\x18\x02 \x01(\x03R\x06weight\"p\n" +
	"\vTaskFailure\x12\x16\n" +
	"\x06reason\x18\x01 \x01(\tR\x06reason\x123\n" +
	"\x04kind\x18\x02 \x01(\x0e2\x1f.dragonfly.fleet.v1.FailureKindR\x04kind\x12\x14\n" +
	"\x05limit\x18\x03 \x01(\tR\x05limit\"\xa3\x02\n" +
	"\tTaskStats\x12)\n" +
	"\x10bytes_downloaded\x18\x01 \x01(\x03R\x0fbytesDownloaded\x12%\n" +
	"\x0ebytes_expanded\x18\x02 \x01(\x03R\rbytesExpanded\x12\x14\n" +
	"\x05files\x18\x03 \x01(\x03R\x05files\x12>\n" +
	"\rdownload_time\x18\x04 \x01(\v2\x19.google.protobuf.DurationR\fdownloadTime\x126\n" +
	"\tscan_time\x18\x05 \x01(\v2\x19.google.protobuf.DurationR\bscanTime\x126\n" +
	"\twall_time\x18\x06 \x01(\v2\x19.google.protobuf.DurationR\bwallTime\"?\n" +
	"\n" +
	"TaskReturn\x12\x19\n" +
	"\btask_ids\x18\x01 \x03(\x04R\ataskIds\x12\x16\n" +
	"\x06reason\x18\x02 \x01(\tR\x06reason\"y\n" +
	"\tHeartbeat\x12\x1d\n" +
	"\n" +
	"tasks_held\x18\x01 \x01(\rR\ttasksHeld\x12#\n" +
	"\rtasks_running\x18\x02 \x01(\rR\ftasksRunning\x12(\n" +
	"\x10running_task_ids\x18\x03 \x03(\x04R\x0erunningTaskIds\"8\n" +
	"\x05Drain\x12/\n" +
	"\x05grace\x18\x01 \x01(\v2\x19.google.protobuf.DurationR\x05grace\"\n" +
	"\n" +
	"\bDraining\"#\n" +
	"\x06Cancel\x12\x19\n" +
	"\btask_ids\x18\x01 \x03(\x04R\ataskIds*K\n" +
	"\x0fProtocolVersion\x12 \n" +
	"\x1cPROTOCOL_VERSION_UNSPECIFIED\x10\x00\x12\x16\n" +
	"\x12PROTOCOL_VERSION_1\x10\x01*]\n" +
	"\n" +
	"WorkerMode\x12\x1b\n" +
	"\x17WORKER_MODE_UNSPECIFIED\x10\x00\x12\x14\n" +
	"\x10WORKER_MODE_SCAN\x10\x01\x12\x1c\n" +
	"\x18WORKER_MODE_NON_SCANNING\x10\x02*\xa6\x01\n" +
	"\vFailureKind\x12\x1c\n" +
	"\x18FAILURE_KIND_UNSPECIFIED\x10\x00\x12\x19\n" +
	"\x15FAILURE_KIND_DOWNLOAD\x10\x01\x12\x15\n" +
	"\x11FAILURE_KIND_HOST\x10\x02\x12\x16\n" +
	"\x12FAILURE_KIND_LIMIT\x10\x03\x12\x18\n" +
	"\x14FAILURE_KIND_ARCHIVE\x10\x04\x12\x15\n" +
	"\x11FAILURE_KIND_SCAN\x10\x052f\n" +
	"\fFleetService\x12V\n" +
	"\aConnect\x12\".dragonfly.fleet.v1.ConnectRequest\x1a#.dragonfly.fleet.v1.ConnectResponse(\x010\x01BAZ?github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1;fleetv1b\x06proto3"

var (
	file_dragonfly_fleet_v1_fleet_proto_rawDescOnce sync.Once
	file_dragonfly_fleet_v1_fleet_proto_rawDescData []byte
)

func file_dragonfly_fleet_v1_fleet_proto_rawDescGZIP() []byte {
	file_dragonfly_fleet_v1_fleet_proto_rawDescOnce.Do(func() {
		file_dragonfly_fleet_v1_fleet_proto_rawDescData = protoimpl.X.CompressGZIP(unsafe.Slice(unsafe.StringData(file_dragonfly_fleet_v1_fleet_proto_rawDesc), len(file_dragonfly_fleet_v1_fleet_proto_rawDesc)))
	})
	return file_dragonfly_fleet_v1_fleet_proto_rawDescData
}

var file_dragonfly_fleet_v1_fleet_proto_enumTypes = make([]protoimpl.EnumInfo, 3)
var file_dragonfly_fleet_v1_fleet_proto_msgTypes = make([]protoimpl.MessageInfo, 21)
var file_dragonfly_fleet_v1_fleet_proto_goTypes = []any{
	(ProtocolVersion)(0),          // 0: dragonfly.fleet.v1.ProtocolVersion
	(WorkerMode)(0),               // 1: dragonfly.fleet.v1.WorkerMode
	(FailureKind)(0),              // 2: dragonfly.fleet.v1.FailureKind
	(*ConnectRequest)(nil),        // 3: dragonfly.fleet.v1.ConnectRequest
	(*ConnectResponse)(nil),       // 4: dragonfly.fleet.v1.ConnectResponse
	(*Hello)(nil),                 // 5: dragonfly.fleet.v1.Hello
	(*Welcome)(nil),               // 6: dragonfly.fleet.v1.Welcome
	(*RuleSet)(nil),               // 7: dragonfly.fleet.v1.RuleSet
	(*RulesStatus)(nil),           // 8: dragonfly.fleet.v1.RulesStatus
	(*Assign)(nil),                // 9: dragonfly.fleet.v1.Assign
	(*Task)(nil),                  // 10: dragonfly.fleet.v1.Task
	(*JobRef)(nil),                // 11: dragonfly.fleet.v1.JobRef
	(*TaskResults)(nil),           // 12: dragonfly.fleet.v1.TaskResults
	(*TaskResult)(nil),            // 13: dragonfly.fleet.v1.TaskResult
	(*DistributionResult)(nil),    // 14: dragonfly.fleet.v1.DistributionResult
	(*RuleHit)(nil),               // 15: dragonfly.fleet.v1.RuleHit
	(*TaskFailure)(nil),           // 16: dragonfly.fleet.v1.TaskFailure
	(*TaskStats)(nil),             // 17: dragonfly.fleet.v1.TaskStats
	(*TaskReturn)(nil),            // 18: dragonfly.fleet.v1.TaskReturn
	(*Heartbeat)(nil),             // 19: dragonfly.fleet.v1.Heartbeat
	(*Drain)(nil),                 // 20: dragonfly.fleet.v1.Drain
	(*Draining)(nil),              // 21: dragonfly.fleet.v1.Draining
	(*Cancel)(nil),                // 22: dragonfly.fleet.v1.Cancel
	nil,                           // 23: dragonfly.fleet.v1.RuleSet.SourcesEntry
	(*durationpb.Duration)(nil),   // 24: google.protobuf.Duration
	(*timestamppb.Timestamp)(nil), // 25: google.protobuf.Timestamp
}
var file_dragonfly_fleet_v1_fleet_proto_depIdxs = []int32{
	5,  // 0: dragonfly.fleet.v1.ConnectRequest.hello:type_name -> dragonfly.fleet.v1.Hello
	8,  // 1: dragonfly.fleet.v1.ConnectRequest.rules_status:type_name -> dragonfly.fleet.v1.RulesStatus
	12, // 2: dragonfly.fleet.v1.ConnectRequest.results:type_name -> dragonfly.fleet.v1.TaskResults
	19, // 3: dragonfly.fleet.v1.ConnectRequest.heartbeat:type_name -> dragonfly.fleet.v1.Heartbeat
	18, // 4: dragonfly.fleet.v1.ConnectRequest.task_return:type_name -> dragonfly.fleet.v1.TaskReturn
	21, // 5: dragonfly.fleet.v1.ConnectRequest.draining:type_name -> dragonfly.fleet.v1.Draining
	6,  // 6: dragonfly.fleet.v1.ConnectResponse.welcome:type_name -> dragonfly.fleet.v1.Welcome
	7,  // 7: dragonfly.fleet.v1.ConnectResponse.rule_set:type_name -> dragonfly.fleet.v1.RuleSet
	9,  // 8: dragonfly.fleet.v1.ConnectResponse.assign:type_name -> dragonfly.fleet.v1.Assign
	19, // 9: dragonfly.fleet.v1.ConnectResponse.heartbeat:type_name -> dragonfly.fleet.v1.Heartbeat
	20, // 10: dragonfly.fleet.v1.ConnectResponse.drain:type_name -> dragonfly.fleet.v1.Drain
	22, // 11: dragonfly.fleet.v1.ConnectResponse.cancel:type_name -> dragonfly.fleet.v1.Cancel
	0,  // 12: dragonfly.fleet.v1.Hello.protocol_version:type_name -> dragonfly.fleet.v1.ProtocolVersion
	1,  // 13: dragonfly.fleet.v1.Hello.mode:type_name -> dragonfly.fleet.v1.WorkerMode
	24, // 14: dragonfly.fleet.v1.Welcome.heartbeat_interval:type_name -> google.protobuf.Duration
	23, // 15: dragonfly.fleet.v1.RuleSet.sources:type_name -> dragonfly.fleet.v1.RuleSet.SourcesEntry
	24, // 16: dragonfly.fleet.v1.RulesStatus.compile_time:type_name -> google.protobuf.Duration
	10, // 17: dragonfly.fleet.v1.Assign.tasks:type_name -> dragonfly.fleet.v1.Task
	11, // 18: dragonfly.fleet.v1.Task.job:type_name -> dragonfly.fleet.v1.JobRef
	25, // 19: dragonfly.fleet.v1.Task.lease_deadline:type_name -> google.protobuf.Timestamp
	13, // 20: dragonfly.fleet.v1.TaskResults.results:type_name -> dragonfly.fleet.v1.TaskResult
	14, // 21: dragonfly.fleet.v1.TaskResult.distribution:type_name -> dragonfly.fleet.v1.DistributionResult
	16, // 22: dragonfly.fleet.v1.TaskResult.failure:type_name -> dragonfly.fleet.v1.TaskFailure
	17, // 23: dragonfly.fleet.v1.TaskResult.stats:type_name -> dragonfly.fleet.v1.TaskStats
	15, // 24: dragonfly.fleet.v1.DistributionResult.rules:type_name -> dragonfly.fleet.v1.RuleHit
	2,  // 25: dragonfly.fleet.v1.TaskFailure.kind:type_name -> dragonfly.fleet.v1.FailureKind
	24, // 26: dragonfly.fleet.v1.TaskStats.download_time:type_name -> google.protobuf.Duration
	24, // 27: dragonfly.fleet.v1.TaskStats.scan_time:type_name -> google.protobuf.Duration
	24, // 28: dragonfly.fleet.v1.TaskStats.wall_time:type_name -> google.protobuf.Duration
	24, // 29: dragonfly.fleet.v1.Drain.grace:type_name -> google.protobuf.Duration
	3,  // 30: dragonfly.fleet.v1.FleetService.Connect:input_type -> dragonfly.fleet.v1.ConnectRequest
	4,  // 31: dragonfly.fleet.v1.FleetService.Connect:output_type -> dragonfly.fleet.v1.ConnectResponse
	31, // [31:32] is the sub-list for method output_type
	30, // [30:31] is the sub-list for method input_type
	30, // [30:30] is the sub-list for extension type_name
	30, // [30:30] is the sub-list for extension extendee
	0,  // [0:30] is the sub-list for field type_name
}

func init() { file_dragonfly_fleet_v1_fleet_proto_init() }
func file_dragonfly_fleet_v1_fleet_proto_init() {
	if File_dragonfly_fleet_v1_fleet_proto != nil {
		return
	}
	file_dragonfly_fleet_v1_fleet_proto_msgTypes[0].OneofWrappers = []any{
		(*ConnectRequest_Hello)(nil),
		(*ConnectRequest_RulesStatus)(nil),
		(*ConnectRequest_Results)(nil),
		(*ConnectRequest_Heartbeat)(nil),
		(*ConnectRequest_TaskReturn)(nil),
		(*ConnectRequest_Draining)(nil),
	}
	file_dragonfly_fleet_v1_fleet_proto_msgTypes[1].OneofWrappers = []any{
		(*ConnectResponse_Welcome)(nil),
		(*ConnectResponse_RuleSet)(nil),
		(*ConnectResponse_Assign)(nil),
		(*ConnectResponse_Heartbeat)(nil),
		(*ConnectResponse_Drain)(nil),
		(*ConnectResponse_Cancel)(nil),
	}
	file_dragonfly_fleet_v1_fleet_proto_msgTypes[10].OneofWrappers = []any{
		(*TaskResult_Distribution)(nil),
		(*TaskResult_Failure)(nil),
	}
	type x struct{}
	out := protoimpl.TypeBuilder{
		File: protoimpl.DescBuilder{
			GoPackagePath: reflect.TypeOf(x{}).PkgPath(),
			RawDescriptor: unsafe.Slice(unsafe.StringData(file_dragonfly_fleet_v1_fleet_proto_rawDesc), len(file_dragonfly_fleet_v1_fleet_proto_rawDesc)),
			NumEnums:      3,
			NumMessages:   21,
			NumExtensions: 0,
			NumServices:   1,
		},
		GoTypes:           file_dragonfly_fleet_v1_fleet_proto_goTypes,
		DependencyIndexes: file_dragonfly_fleet_v1_fleet_proto_depIdxs,
		EnumInfos:         file_dragonfly_fleet_v1_fleet_proto_enumTypes,
		MessageInfos:      file_dragonfly_fleet_v1_fleet_proto_msgTypes,
	}.Build()
	File_dragonfly_fleet_v1_fleet_proto = out.File
	file_dragonfly_fleet_v1_fleet_proto_goTypes = nil
	file_dragonfly_fleet_v1_fleet_proto_depIdxs = nil
}
