package archive

import (
	"bytes"
	"compress/bzip2"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/ulikunitz/xz"
)

// Detect returns the format of the input that starts with head, from magic
// bytes only: gzip (1f 8b 08), bzip2 ("BZh" and a block or end magic), xz
// (FD 37 7A 58 5A 00), zip (a local header or an empty archive's end record
// at offset 0), tar ("ustar" at offset 257, a v7 header checksum as tarfile reads it, or the
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

// isTar reports whether b starts with a tar header as Python's tarfile
// (pip's unpacker) reads one: "ustar" magic, a header checksum tarfile
// accepts, or two zero blocks (an empty archive). tarfile reads number
// fields more loosely than archive/tar does (white space around the digits,
// "0o", "_", a sign, base-256): a header only tarfile reads is still taken
// as a tar, which archive/tar then refuses, failing the distribution,
// rather than as one file holding the whole tar, in which no filetype rule
// would see the members pip writes.
func isTar(b []byte) bool {
	if len(b) >= 262 && string(b[257:262]) == "ustar" {
		return true
	}
	if len(b) < 512 {
		return false
	}
	if len(b) >= 1024 && allZero(b[:1024]) {
		return true
	}
	if allZero(b[:512]) {
		return false
	}
	var unsigned, signed int64
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	match := func(want int64, ok bool) bool { return ok && (want == unsigned || want == signed) }
	// Either reading: they differ on more than spelling ("\x00" before the
	// digits is 0 to tarfile, the digits to parseOctal).
	return match(parseOctal(b[148:156])) || match(pyNumber(b[148:156]))
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

// pyNumber reads a tar numeric field at least as loosely as tarfile's nti
// does: base-256 after a 0x80 or 0xff byte; otherwise the bytes before the
// first NUL, without ASCII white space around them, as Python's int(s, 8)
// reads them (a sign, "0o", "_" between digits; empty is 0). Looser is
// safe here: it only decides that a header is a tar header, and a checksum
// must match as well.
func pyNumber(f []byte) (int64, bool) {
	if len(f) == 0 {
		return 0, false
	}
	if f[0] == 0x80 || f[0] == 0xff {
		var n uint64
		for _, c := range f[1:] {
			if n>>56 != 0 {
				return 0, false
			}
			n = n<<8 | uint64(c)
		}
		switch {
		case n>>63 != 0:
			return 0, false
		case f[0] == 0x80:
			return int64(n), true
		case len(f)-1 < 8: // n - 256^(len(f)-1), as tarfile computes it
			return int64(n) - 1<<(8*(len(f)-1)), true
		}
		return 0, false // below what an int64 holds
	}
	if i := bytes.IndexByte(f, 0); i >= 0 {
		f = f[:i]
	}
	s := strings.TrimFunc(string(f), func(r rune) bool { return r == ' ' || r >= '\t' && r <= '\r' || r >= 0x1c && r <= 0x1f })
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(s, "+-")
	if len(s) > 1 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O') {
		s = s[2:]
	}
	s = strings.ReplaceAll(s, "_", "")
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 8, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
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
