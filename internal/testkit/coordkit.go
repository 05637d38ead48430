package testkit

import (
	"time"

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
