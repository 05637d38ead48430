package archive

import (
	"bytes"
	"compress/bzip2"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/ulikunitz/xz"
)

// Detect returns the format of the input that starts with head, from magic
// bytes only: gzip (1f 8b 08), bzip2 ("BZh" and a block or end magic), xz
// (FD 37 7A 58 5A 00), zip (a local header or an empty archive's end record
// at offset 0), tar ("ustar" at offset 257, a valid v7 header checksum, or the
// two zero blocks of an empty tar), a zip behind other bytes, such as a
// self-extracting zip (end records in the last 64 KiB that point at a
// central directory; only found when head is the whole input), else Raw.
//
// For compressed input Detect decompresses at most the first KiB that head
// holds: it returns TarGzip, TarBzip2 or TarXz when that is a tar header, and
// Gzip, Bzip2 or Xz otherwise, including when head is too short to tell.
// Walk makes the same decision on the whole stream, and its Stats.Format is
// the authoritative answer.
func Detect(head []byte) Format {
	f := sniff(head)
	switch f {
	case Gzip, Bzip2, Xz:
		if peekTar(f, head) {
			return tarOf(f)
		}
	}
	return f
}

// sniff returns the container format from magic bytes, without
// decompressing: compressed input is reported as Gzip, Bzip2 or Xz.
func sniff(b []byte) Format {
	switch {
	case isGzip(b):
		return Gzip
	case isBzip2(b):
		return Bzip2
	case isXz(b):
		return Xz
	case bytes.HasPrefix(b, []byte("PK\x03\x04")),
		len(b) >= endLen && bytes.HasPrefix(b, []byte("PK\x05\x06")):
		return Zip
	case isTar(b):
		return Tar
	case hasZip(b):
		return Zip
	}
	return Raw
}

func isGzip(b []byte) bool {
	return len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8
}

// isBzip2 wants "BZh", a block size digit and the magic of a block
// (pi) or of the end of the stream (sqrt pi).
func isBzip2(b []byte) bool {
	if len(b) < 10 || string(b[:3]) != "BZh" || b[3] < '1' || b[3] > '9' {
		return false
	}
	m := string(b[4:10])
	return m == "\x31\x41\x59\x26\x53\x59" || m == "\x17\x72\x45\x38\x50\x90"
}

func isXz(b []byte) bool {
	return len(b) >= 6 && string(b[:6]) == "\xfd7zXZ\x00"
}

// isTar reports whether b starts with a tar header: "ustar" magic, a valid
// v7 header checksum, or two zero blocks (an empty archive).
func isTar(b []byte) bool {
	if len(b) >= 262 && string(b[257:262]) == "ustar" {
		return true
	}
	if len(b) < 512 {
		return false
	}
	if want, ok := parseOctal(b[148:156]); ok {
		var unsigned, signed int64
		for i, c := range b[:512] {
			if i >= 148 && i < 156 {
				c = ' '
			}
			unsigned += int64(c)
			signed += int64(int8(c))
		}
		if want == unsigned || want == signed {
			return true
		}
	}
	return len(b) >= 1024 && allZero(b[:1024])
}

// parseOctal reads a tar numeric field: octal digits between optional
// spaces and NULs. An empty field is not a number.
func parseOctal(f []byte) (int64, bool) {
	f = bytes.Trim(f, " \x00")
	if len(f) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range f {
		if c < '0' || c > '7' {
			return 0, false
		}
		n = n<<3 | int64(c-'0')
	}
	return n, true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// tarOf maps a compression format to the tar it holds.
func tarOf(f Format) Format {
	switch f {
	case Gzip:
		return TarGzip
	case Bzip2:
		return TarBzip2
	case Xz:
		return TarXz
	}
	return f
}

// peekTar decompresses at most the first KiB of head and reports whether it
// is a tar header. It never allocates a large xz dictionary.
func peekTar(f Format, head []byte) bool {
	var r io.Reader
	switch f {
	case Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(head))
		if err != nil {
			return false
		}
		r = zr
	case Bzip2:
		r = bzip2.NewReader(bytes.NewReader(head))
	case Xz:
		if d, ok := xzFirstDict(head); !ok || d > xzMaxDict {
			return false
		}
		xr, err := xz.NewReader(bytes.NewReader(head))
		if err != nil {
			return false
		}
		r = xr
	default:
		return false
	}
	var buf [1024]byte
	n, _ := io.ReadFull(r, buf[:])
	return isTar(buf[:n])
}
