package worker

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"google.golang.org/protobuf/proto"
)

// totalAlloc is the bytes the process allocated so far.
func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// TestMessagesThatDecodeManyTimesTheirSizeAreRefused: a coordinator
// message is refused before it is decoded when its decoding would cost many
// times its size: an Assign of a million tasks of a few bytes each (a
// 33 MiB one holds five million: 500 MiB of Go objects, and a map of their
// ids besides) or a Heartbeat of millions of one-byte task ids (8 bytes
// each decoded). The session ends (the coordinator re-dispatches its
// tasks) and the worker serves the next one as usual.
func TestMessagesThatDecodeManyTimesTheirSizeAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  func() *fleetv1.ConnectResponse
	}{
		{"an Assign of a million tasks", func() *fleetv1.ConnectResponse {
			ts := make([]*fleetv1.Task, 1<<20)
			for i := range ts {
				ts[i] = &fleetv1.Task{TaskId: uint64(1<<14 + i)}
			}
			return &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: ts}}}
		}},
		{"a Heartbeat of 16 million task ids", func() *fleetv1.ConnectResponse {
			return &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Heartbeat{Heartbeat: &fleetv1.Heartbeat{RunningTaskIds: make([]uint64, 16<<20)}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startWorker(t, 1, nil)
			s := e.session()
			s.welcome(demoHash, demo.Rules())
			big := tc.msg()
			size := proto.Size(big)
			before := totalAlloc()
			s.send(big)
			big = nil
			// A marker: a task of rules the worker does not have, handed
			// back at once if the big message was taken.
			s.assign(e.task(1, "tinycolors-1.2.0.tar.gz", "marker"))
			taken := false
			for !taken {
				m := s.next()
				if m == nil {
					break // the session ended
				}
				ids := m.GetTaskReturn().GetTaskIds()
				taken = len(ids) == 1 && ids[0] == 1
			}
			if grown := totalAlloc() - before; grown > uint64(6*size) {
				t.Errorf("%s of %d MiB: %d MiB allocated while it was sent and received, want at most 6 times its size", tc.name, size>>20, grown>>20)
			}
			if taken {
				t.Fatalf("the worker took %s (its marker task was answered), want the session ended", tc.name)
			}
			// The next session serves as usual.
			s = e.session()
			s.welcome(demoHash, demo.Rules())
			s.assign(e.task(2, "reqeusts-2.31.0.tar.gz", demoHash))
			if d := s.results(1)[2].GetDistribution(); d.GetScore() != 8 {
				t.Fatalf("next session: %v, want reqeusts scoring 8", d)
			}
		})
	}
}

// TestCheckResponseBounds: an Assign of maxAssignTasks tasks passes, one
// more is refused, also when the tasks come in several occurrences of the
// field (decoding merges them into one Assign); a Welcome, Heartbeat or
// Drain likewise at maxSmallMessage bytes.
func TestCheckResponseBounds(t *testing.T) {
	assign := func(n int) []byte {
		b, err := proto.Marshal(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: make([]*fleetv1.Task, n)}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hb := func(ids int) []byte {
		b, err := proto.Marshal(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Heartbeat{Heartbeat: &fleetv1.Heartbeat{RunningTaskIds: make([]uint64, ids)}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"an Assign at the bound", assign(maxAssignTasks), true},
		{"an Assign over it", assign(maxAssignTasks + 1), false},
		{"two Assigns merged over it", append(assign(maxAssignTasks/2), assign(maxAssignTasks/2+1)...), false},
		{"a Heartbeat at the bound", hb(maxSmallMessage - 4), true}, // 1 + 3 bytes of tag and length
		{"a Heartbeat over it", hb(maxSmallMessage - 3), false},
		{"two Heartbeats merged over it", append(hb(maxSmallMessage/2), hb(maxSmallMessage/2)...), false},
		{"not a message", []byte{0xff, 0xff}, true}, // left to the decoder
	} {
		if err := checkResponse(tc.b); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// FuzzCheckResponseAdmitsOnlyBoundedMessages: whatever the bytes, a
// coordinator message checkResponse lets through decodes (when it decodes)
// to an Assign of at most maxAssignTasks tasks and a Welcome, Heartbeat or
// Drain of at most maxSmallMessage bytes: the check and the decoder read the
// wire alike (fields repeated, merged, unknown, or inside a oneof given
// twice).
func FuzzCheckResponseAdmitsOnlyBoundedMessages(f *testing.F) {
	seeds := []*fleetv1.ConnectResponse{
		{Msg: &fleetv1.ConnectResponse_Assign{Assign: &fleetv1.Assign{Tasks: []*fleetv1.Task{{TaskId: 1, Url: "https://x/a.whl", RulesHash: "h"}}}}},
		{Msg: &fleetv1.ConnectResponse_Heartbeat{Heartbeat: &fleetv1.Heartbeat{RunningTaskIds: []uint64{1, 2, 3}}}},
		{Msg: &fleetv1.ConnectResponse_Welcome{Welcome: &fleetv1.Welcome{SessionId: "s1"}}},
		{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{}}},
		{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "h", Sources: map[string]string{"a.yara": "rule r { condition: true }"}}}},
	}
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint32(1))
		f.Add(b, uint32(maxAssignTasks))
	}
	// repeat writes the message that many times in a row: a field given
	// again is merged (or, in a oneof, replaces the other member).
	f.Fuzz(func(t *testing.T, b []byte, repeat uint32) {
		n := int(repeat%(maxAssignTasks+2)) + 1
		if len(b)*n > 8<<20 {
			n = max(1, (8<<20)/max(len(b), 1))
		}
		wire := bytes.Repeat(b, n)
		if checkResponse(wire) != nil {
			return
		}
		var m fleetv1.ConnectResponse
		if proto.Unmarshal(wire, &m) != nil {
			return
		}
		if n := len(m.GetAssign().GetTasks()); n > maxAssignTasks {
			t.Fatalf("admitted an Assign of %d tasks", n)
		}
		for name, x := range map[string]proto.Message{"Welcome": m.GetWelcome(), "Heartbeat": m.GetHeartbeat(), "Drain": m.GetDrain()} {
			if s := proto.Size(x); s > maxSmallMessage {
				t.Fatalf("admitted a %s of %d bytes", name, s)
			}
		}
	})
}
