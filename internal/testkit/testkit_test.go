package testkit

import (
	"bytes"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
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
