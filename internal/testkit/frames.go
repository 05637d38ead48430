package testkit

import (
	"encoding/binary"

	"google.golang.org/protobuf/proto"
)

// Frames splits fuzz data into length-prefixed frames (a uvarint length,
// then that many bytes; a bad or oversized length takes the rest), at most
// max of them: how the protocol fuzzers turn bytes into a script of messages.
func Frames(data []byte, max int) [][]byte {
	var out [][]byte
	for len(data) > 0 && len(out) < max {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) {
			out = append(out, data)
			break
		}
		out = append(out, data[k:k+int(n)])
		data = data[k+int(n):]
	}
	return out
}

// EncodeFrames is the inverse of Frames, for seeds: each message marshalled
// and length-prefixed.
func EncodeFrames[M proto.Message](msgs ...M) []byte {
	var out []byte
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return out
}
