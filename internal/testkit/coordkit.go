package testkit

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// DecodeFrames is Frames read as messages: each frame that newMsg's message
// unmarshals from, in order (frames that do not unmarshal are skipped): how
// a protocol fuzzer turns bytes into the script of one peer.
func DecodeFrames[M proto.Message](data []byte, max int, newMsg func() M) []M {
	var out []M
	for _, fr := range Frames(data, max) {
		if m := newMsg(); proto.Unmarshal(fr, m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// NewClockAt returns a clock at t.
func NewClockAt(t time.Time) *Clock { return &Clock{t: t} }

// ByKey maps xs by key; two with one key fail t (a job reported twice).
func ByKey[T any](t testing.TB, xs []T, key func(T) string) map[string]T {
	t.Helper()
	m := make(map[string]T, len(xs))
	for _, x := range xs {
		k := key(x)
		if _, dup := m[k]; dup {
			t.Fatalf("%q twice", k)
		}
		m[k] = x
	}
	return m
}

// DialBuf returns a client of the gRPC server listening on lis, in memory
// and without transport security (opts come after those, and may replace
// the dialer); it is closed when the test ends.
func DialBuf(t testing.TB, lis *bufconn.Listener, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///bufnet", append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// WaitFor waits until cond holds, checking it every millisecond, and fails t
// with msg() after d: the wait for state that has no change notification
// (snapshots, counters). cond runs on the caller's goroutine, so it may
// fail t itself (a session that ended meanwhile).
func WaitFor(t testing.TB, d time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("after %v: %s", d, msg())
		case <-tick.C:
		}
	}
}
