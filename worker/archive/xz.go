package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// The xz decoder allocates each block's declared LZMA2 dictionary up front
// (up to 4 GiB) and a fresh one for every block, so a tiny hostile file could
// cost gigabytes or thousands of large allocations. xzScan reads the
// container (stream footers, indexes and block headers, from the end) before
// anything is decoded and refuses dictionaries that the content cannot need,
// and any over that of xz's largest preset: each walk holds its decoder's
// dictionary beside the engine's budget, one per running distribution, so
// a block claiming 769 MiB (the tar stream bound of the default limits)
// with a 768 MiB dictionary took that much of a worker per scanner slot,
// from a download of kilobytes.
const (
	// xzMaxDict is the largest dictionary a block may declare: that of xz's
	// presets -8, -9 and -9e, whatever the block's size.
	xzMaxDict = 64 << 20
	// xzDictBudget is what the dictionaries of all blocks may add up to on
	// top of the uncompressed size the index claims.
	xzDictBudget = 256 << 20
)

var le = binary.LittleEndian

// errXzDict is a block dictionary over xzMaxDict that its content could
// use: not a defect of the archive (xz decodes it), a bound of the worker's
// (the limit xz_dictionary).
var errXzDict = fmt.Errorf("over the %d MiB of xz's largest preset (-9), the most a worker holds per distribution", xzMaxDict>>20)

// xzScan checks the xz container in data and returns the total uncompressed
// size its indexes claim (the decoder verifies the claim as it goes). A block
// may declare a dictionary up to xzMaxDict (over it: errXzDict, or a defect
// when it is also over the block's content), and all dictionaries together
// at most xzDictBudget plus the claimed total.
func xzScan(data []byte) (int64, error) {
	var claimed, dicts int64
	pos := len(data)
	streams := 0
	for {
		for pos >= 4 && allZero(data[pos-4:pos]) {
			pos -= 4 // stream padding
		}
		if pos == 0 && streams > 0 {
			break
		}
		if pos < 24 {
			return 0, errors.New("truncated")
		}
		foot := data[pos-12 : pos]
		if string(foot[10:12]) != "YZ" || crc32.ChecksumIEEE(foot[4:10]) != le.Uint32(foot[0:4]) {
			return 0, errors.New("bad stream footer")
		}
		idxLen := (int64(le.Uint32(foot[4:8])) + 1) * 4
		idxStart := int64(pos-12) - idxLen
		if idxLen < 8 || idxStart < 12 {
			return 0, errors.New("bad index size")
		}
		idx := data[idxStart : pos-12]
		if idx[0] != 0 || crc32.ChecksumIEEE(idx[:len(idx)-4]) != le.Uint32(idx[len(idx)-4:]) {
			return 0, errors.New("bad index")
		}
		body := idx[1 : len(idx)-4]
		count, body, ok := uvarint(body)
		if !ok || count > uint64(len(body))/2 {
			return 0, errors.New("bad index")
		}
		type record struct{ unpadded, uncompressed int64 }
		recs := make([]record, count)
		var blocks int64
		for i := range recs {
			var u, c uint64
			u, body, ok = uvarint(body)
			if ok {
				c, body, ok = uvarint(body)
			}
			if !ok || u < 5 || u > uint64(len(data)) || c > math.MaxInt64/2 {
				return 0, errors.New("bad index record")
			}
			recs[i] = record{int64(u), int64(c)}
			blocks += (int64(u) + 3) &^ 3
			claimed = satAdd(claimed, int64(c))
		}
		if len(body) > 3 || !allZero(body) {
			return 0, errors.New("bad index padding")
		}
		start := idxStart - blocks - 12
		if start < 0 {
			return 0, errors.New("bad index")
		}
		head := data[start : start+12]
		if !isXz(head) || string(head[6:8]) != string(foot[8:10]) ||
			crc32.ChecksumIEEE(head[6:8]) != le.Uint32(head[8:12]) {
			return 0, errors.New("bad stream header")
		}
		off := start + 12
		for _, r := range recs {
			hlen := (int64(data[off]) + 1) * 4
			if data[off] == 0 || hlen > r.unpadded || off+hlen > idxStart {
				return 0, errors.New("bad block header")
			}
			dict, err := xzBlockDict(data[off : off+hlen])
			if err != nil {
				return 0, err
			}
			switch {
			case dict > xzMaxDict && dict > r.uncompressed:
				// More than the content can need: a defect, as the
				// previous release also says.
				return 0, fmt.Errorf("block dictionary of %d bytes for %d bytes of content", dict, r.uncompressed)
			case dict > xzMaxDict:
				return 0, fmt.Errorf("xz block dictionary of %d MiB: %w", dict>>20, errXzDict)
			}
			dicts = satAdd(dicts, dict)
			off += (r.unpadded + 3) &^ 3
		}
		streams++
		pos = int(start)
	}
	if dicts > satAdd(xzDictBudget, claimed) {
		return 0, fmt.Errorf("block dictionaries of %d bytes in all for %d bytes of content", dicts, claimed)
	}
	return claimed, nil
}

// xzBlockDict returns the LZMA2 dictionary size a block header declares.
func xzBlockDict(h []byte) (int64, error) {
	n := len(h)
	if crc32.ChecksumIEEE(h[:n-4]) != le.Uint32(h[n-4:]) {
		return 0, errors.New("bad block header checksum")
	}
	return xzFilterDict(h[1 : n-4])
}

// xzFilterDict reads the block flags and filter flags in b (a block header
// without its size byte and checksum).
func xzFilterDict(b []byte) (int64, error) {
	bad := errors.New("bad block header")
	if len(b) < 1 || b[0]&0x3c != 0 {
		return 0, bad
	}
	flags := b[0]
	b = b[1:]
	var ok bool
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, b, ok = uvarint(b); !ok {
				return 0, bad
			}
		}
	}
	dict := int64(-1)
	for range int(flags&3) + 1 {
		var id, size uint64
		if id, b, ok = uvarint(b); !ok {
			return 0, bad
		}
		if size, b, ok = uvarint(b); !ok || size > uint64(len(b)) {
			return 0, bad
		}
		props := b[:size]
		b = b[size:]
		if id == 0x21 {
			if size != 1 || props[0]&0x3f > 40 {
				return 0, bad
			}
			dict = lzma2Dict(props[0])
		}
	}
	if dict < 0 {
		return 0, errors.New("no lzma2 filter")
	}
	return dict, nil
}

// lzma2Dict decodes an LZMA2 dictionary size property (at most 40).
func lzma2Dict(p byte) int64 {
	bits := int64(p & 0x3f)
	if bits == 40 {
		return math.MaxUint32
	}
	return (2 | bits&1) << (bits/2 + 11)
}

// xzFirstDict returns the dictionary size of the first block of the xz
// stream that starts head, if head holds its header.
func xzFirstDict(head []byte) (int64, bool) {
	if len(head) < 13 || head[12] == 0 {
		return 0, false
	}
	hlen := (int(head[12]) + 1) * 4
	if len(head) < 12+hlen {
		return 0, false
	}
	d, err := xzBlockDict(head[12 : 12+hlen])
	return d, err == nil
}

// uvarint reads an xz multibyte integer (at most 9 bytes).
func uvarint(b []byte) (uint64, []byte, bool) {
	var x uint64
	for i := 0; i < 9 && i < len(b); i++ {
		c := b[i]
		if i > 0 && c == 0 {
			return 0, b, false // not the shortest encoding
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return x, b[i+1:], true
		}
	}
	return 0, b, false
}

// satAdd adds non-negative values, saturating at MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
