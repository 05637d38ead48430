package worker

import (
	"fmt"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Bounds of a coordinator message checked before it is decoded. The
// receive limit (protocol.MaxResponseBytes, a rule set at its limit) admits
// messages whose decoding costs many times their size: an Assign of 33 MiB
// holds five million tasks of a few bytes, 500 MiB of Go objects; a
// Heartbeat's packed task ids cost 8 bytes each decoded, one on the wire.
const (
	// maxAssignTasks bounds the tasks of one Assign: decoded, at most about
	// 16 MiB. A coordinator sends at most 256 per message (one of the
	// previous release all the tasks a session may hold, its slots and
	// prefetch, in one); more than the worker holds are handed back.
	maxAssignTasks = 1 << 16
	// maxSmallMessage bounds a Welcome, Heartbeat, Drain or Cancel (a few
	// dozen bytes from an honest coordinator, a Cancel at most its slots +
	// prefetch ids; a Heartbeat's fields are the worker's).
	maxSmallMessage = 64 << 10
)

var responseFields = (*fleetv1.ConnectResponse)(nil).ProtoReflect().Descriptor().Fields()

var (
	assignField = responseFields.ByName("assign").Number()
	smallFields = map[protoreflect.FieldNumber]string{
		responseFields.ByName("welcome").Number():   "Welcome",
		responseFields.ByName("heartbeat").Number(): "Heartbeat",
		responseFields.ByName("drain").Number():     "Drain",
		responseFields.ByName("cancel").Number():    "Cancel",
	}
	tasksField = (*fleetv1.Assign)(nil).ProtoReflect().Descriptor().Fields().ByName("tasks").Number()
)

// responseCodec is the worker's gRPC codec: proto, with the coordinator's
// messages checked by checkResponse before they are decoded. A message
// refused fails the stream's Recv, which ends the session.
type responseCodec struct{ encoding.CodecV2 }

func newResponseCodec() responseCodec {
	return responseCodec{encoding.GetCodecV2("proto")}
}

func (c responseCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*fleetv1.ConnectResponse)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if err := checkResponse(b); err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

// checkResponse refuses a ConnectResponse in wire form whose Assign holds
// more than maxAssignTasks tasks, or whose Welcome, Heartbeat or Drain is
// over maxSmallMessage bytes. A field given several times counts once for
// all its occurrences, as decoding merges them. What does not parse is left
// to the decoder.
func checkResponse(b []byte) error {
	tasks := 0
	small := map[protoreflect.FieldNumber]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if name, ok := smallFields[num]; ok {
			if small[num] += len(v); small[num] > maxSmallMessage {
				return fmt.Errorf("coordinator message refused: a %s of over %d bytes", name, maxSmallMessage)
			}
			continue
		}
		if num != assignField {
			continue
		}
		for len(v) > 0 {
			num, typ, n := protowire.ConsumeTag(v)
			if n < 0 {
				return nil
			}
			v = v[n:]
			if n = protowire.ConsumeFieldValue(num, typ, v); n < 0 {
				return nil
			}
			v = v[n:]
			if num == tasksField {
				if tasks++; tasks > maxAssignTasks {
					return fmt.Errorf("coordinator message refused: an Assign of over %d tasks", maxAssignTasks)
				}
			}
		}
	}
	return nil
}
