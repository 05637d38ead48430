package testkit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func TestFramesRoundTrip(t *testing.T) {
	msgs := []*fleetv1.Heartbeat{{TasksHeld: 1}, {TasksRunning: 2}, {}}
	frames := Frames(EncodeFrames(msgs...), 10)
	if len(frames) != 3 {
		t.Fatalf("%d frames", len(frames))
	}
	for i, f := range frames {
		var h fleetv1.Heartbeat
		if err := proto.Unmarshal(f, &h); err != nil || !proto.Equal(&h, msgs[i]) {
			t.Fatalf("frame %d: %v %v", i, &h, err)
		}
	}
	if got := Frames([]byte{0xff, 0xff, 0xff}, 10); len(got) != 1 || !bytes.Equal(got[0], []byte{0xff, 0xff, 0xff}) {
		t.Fatalf("a bad length takes the rest: %v", got)
	}
	if got := Frames(EncodeFrames(msgs...), 2); len(got) != 2 {
		t.Fatalf("max not kept: %d", len(got))
	}
}

func TestClock(t *testing.T) {
	c := NewClock()
	t0 := c.Now()
	c.Advance(time.Minute)
	if c.Now().Sub(t0) != time.Minute {
		t.Fatal("Advance")
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	done := make(chan struct{})
	go func() {
		b.Write([]byte("a"))
		close(done)
	}()
	b.Write([]byte("b"))
	<-done
	if s := b.String(); len(s) != 2 {
		t.Fatalf("%q", s)
	}
}

// TestChanStream: Recv gives In's messages, then io.EOF once In is closed,
// or Fail's error; Send puts on Out; both give the context's error once it
// ends. It serves as either side's gRPC stream.
func TestChanStream(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s := &ChanStream[int, string]{StreamStub: StreamStub{Ctx: ctx}, In: make(chan int, 1), Out: make(chan string, 1), Fail: make(chan error, 1)}
	var _ grpc.BidiStreamingServer[fleetv1.Hello, fleetv1.Welcome] = &ChanStream[*fleetv1.Hello, *fleetv1.Welcome]{}
	var _ grpc.BidiStreamingClient[fleetv1.Hello, fleetv1.Welcome] = &ChanStream[*fleetv1.Welcome, *fleetv1.Hello]{}
	s.In <- 7
	if m, err := s.Recv(); m != 7 || err != nil {
		t.Fatalf("Recv = %d, %v; want 7", m, err)
	}
	broken := errors.New("broken")
	s.Fail <- broken
	if _, err := s.Recv(); err != broken {
		t.Fatalf("Recv = %v; want Fail's error", err)
	}
	if err := s.Send("x"); err != nil || <-s.Out != "x" {
		t.Fatalf("Send: %v", err)
	}
	close(s.In)
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("Recv after In closed = %v; want io.EOF", err)
	}
	s.In, s.Out = nil, nil // never ready
	cancel()
	if _, err := s.Recv(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after cancel = %v", err)
	}
	if err := s.Send("y"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send after cancel = %v", err)
	}
	if s.Context() != ctx {
		t.Fatal("Context is not the stream's")
	}
}

// TestNextNonHeartbeat: heartbeats are passed over; a closed channel gives
// ok false.
func TestNextNonHeartbeat(t *testing.T) {
	in := make(chan *fleetv1.ConnectRequest, 3)
	in <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}
	in <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{WorkerId: "w"}}}
	if m, ok := NextNonHeartbeat(t, in, time.Minute); !ok || m.GetHello().GetWorkerId() != "w" {
		t.Fatalf("got %v, %v; want the Hello", m, ok)
	}
	in <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{}}}
	close(in)
	if m, ok := NextNonHeartbeat(t, in, time.Minute); ok || m != nil {
		t.Fatalf("got %v, %v after close; want nil, false", m, ok)
	}
}
