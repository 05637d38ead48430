package testkit

import (
	"sync"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

func TestDecodeFrames(t *testing.T) {
	msgs := []*fleetv1.Heartbeat{{TasksHeld: 1}, {TasksRunning: 2}}
	data := EncodeFrames(msgs...)
	data = append(data, 2, 0xff, 0xff) // a frame that does not unmarshal: skipped
	got := DecodeFrames(data, 10, func() *fleetv1.Heartbeat { return &fleetv1.Heartbeat{} })
	if len(got) != 2 || !proto.Equal(got[0], msgs[0]) || !proto.Equal(got[1], msgs[1]) {
		t.Fatalf("decoded %v", got)
	}
}

func TestNewClockAt(t *testing.T) {
	at := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewClockAt(at)
	c.Advance(time.Second)
	if !c.Now().Equal(at.Add(time.Second)) {
		t.Fatalf("now %v", c.Now())
	}
}

func TestByKey(t *testing.T) {
	m := ByKey(t, []string{"a1", "b2"}, func(s string) string { return s[:1] })
	if len(m) != 2 || m["a"] != "a1" || m["b"] != "b2" {
		t.Fatalf("%v", m)
	}
	// A repeated key fails the test it is given (fatalT: cmdkit_test.go).
	ft := &fatalT{TB: t}
	var wg sync.WaitGroup
	wg.Go(func() { ByKey(ft, []string{"a1", "a2"}, func(s string) string { return s[:1] }) })
	wg.Wait()
	if !ft.failed {
		t.Fatal("a repeated key did not fail")
	}
}

func TestDialBuf(t *testing.T) {
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	resp, err := healthpb.NewHealthClient(DialBuf(t, lis)).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over bufconn: %v, %v", resp, err)
	}
}
