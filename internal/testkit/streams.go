package testkit

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"google.golang.org/grpc/metadata"
)

// StreamStub is the part of a gRPC stream, server or client side, that the
// tests' own streams do not use (headers, trailers, raw messages,
// CloseSend), and the stream's context. A test stream embeds it and adds
// Recv and Send.
type StreamStub struct{ Ctx context.Context }

func (s StreamStub) Context() context.Context   { return s.Ctx }
func (StreamStub) SetHeader(metadata.MD) error  { return nil }
func (StreamStub) SendHeader(metadata.MD) error { return nil }
func (StreamStub) SetTrailer(metadata.MD)       {}
func (StreamStub) Header() (metadata.MD, error) { return nil, nil }
func (StreamStub) Trailer() metadata.MD         { return nil }
func (StreamStub) CloseSend() error             { return nil }
func (StreamStub) SendMsg(any) error            { return errors.New("testkit: SendMsg not used") }
func (StreamStub) RecvMsg(any) error            { return errors.New("testkit: RecvMsg not used") }

// ChanStream is a gRPC stream made of channels, usable as either side's
// stream (R is what it receives, S what it sends), so that a session runs
// inside a synctest bubble: gRPC's transport does not block durably there.
//
// Recv returns the next message from In (io.EOF once In is closed) or the
// error sent on Fail; Send puts the message on Out. Both return the
// context's error once it ends. A nil channel is never ready.
type ChanStream[R, S any] struct {
	StreamStub
	In   chan R
	Out  chan S
	Fail chan error
}

func (s *ChanStream[R, S]) Recv() (R, error) {
	var zero R
	select {
	case m, ok := <-s.In:
		if !ok {
			return zero, io.EOF
		}
		return m, nil
	case err := <-s.Fail:
		return zero, err
	case <-s.Ctx.Done():
		return zero, s.Ctx.Err()
	}
}

func (s *ChanStream[R, S]) Send(m S) error {
	select {
	case s.Out <- m:
		return nil
	case <-s.Ctx.Done():
		return s.Ctx.Err()
	}
}

// NextNonHeartbeat returns the next message from in that is not a
// heartbeat (either direction's message); ok is false once in is closed.
// It fails t when none comes within timeout.
func NextNonHeartbeat[M interface{ GetHeartbeat() *fleetv1.Heartbeat }](t testing.TB, in <-chan M, timeout time.Duration) (m M, ok bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-in:
			if !ok || m.GetHeartbeat() == nil {
				return m, ok
			}
		case <-deadline:
			t.Fatalf("no message but heartbeats within %v", timeout)
		}
	}
}
