package archive

import (
	"bytes"
	"cmp"
	"compress/bzip2"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz/lzma"
	"golang.org/x/text/encoding/charmap"
)

// Zip record layouts (APPNOTE 4.3).
const (
	localLen   = 30
	centralLen = 46
	endLen     = 22
	end64Len   = 56
	loc64Len   = 20

	sigLocal   = "PK\x03\x04"
	sigCentral = "PK\x01\x02"
	sigEnd     = "PK\x05\x06"
	sigEnd64   = "PK\x06\x06"
	sigLoc64   = "PK\x06\x07"

	flagEncrypted = 1 << 0
	flagPatched   = 1 << 5
	flagStrong    = 1 << 6
	flagUTF8      = 1 << 11

	methodStore   = 0
	methodDeflate = 8
	methodBzip2   = 12
	methodLZMA    = 14
	methodZstd    = 93

	extraZip64       = 0x0001
	extraUnicodePath = 0x7075 // Info-ZIP Unicode Path Extra Field (APPNOTE 4.6.9)
)

// Causes of an *Error for the Info-ZIP Unicode Path field (0x7075), told
// apart with errors.Is like those in archive.go.
var (
	errZip64Apart     = errors.New("zip64 end record apart from its locator (extensible data), which Pythons read differently; not supported")
	errUnicodePath    = errors.New("unicode path extra field (0x7075) names another path")
	errCorruptUnicode = errors.New("corrupt unicode path extra field (0x7075)")
)

// zipEntry is one central directory record, checked against its local
// header.
type zipEntry struct {
	name    string // as Python decodes it, before cleaning
	path    string // cleaned; "" for the root
	dir     bool
	flags   uint16
	method  uint16
	crc     uint32
	csize   uint64
	usize   uint64
	off     int64 // local header
	dataOff int64 // compressed data
}

// findEnd returns the offset of the end of central directory record, or -1,
// as Python's zipfile finds it: at the very end without a comment, else the
// last signature in the last 64 KiB + 22 bytes.
func findEnd(b []byte) int {
	if len(b) < endLen {
		return -1
	}
	if e := len(b) - endLen; string(b[e:e+4]) == sigEnd && b[len(b)-2] == 0 && b[len(b)-1] == 0 {
		return e
	}
	lo := max(len(b)-(1<<16)-endLen, 0)
	i := bytes.LastIndex(b[lo:], []byte(sigEnd))
	if i < 0 || lo+i+endLen > len(b) {
		return -1
	}
	return lo + i
}

// zipEnd is what a zip's end records say.
type zipEnd struct {
	count    uint64 // entries declared
	cdStart  int64  // the central directory is data[cdStart:endStart]
	endStart int64  // the (zip64) end records
	concat   int64  // added to the offsets in the zip: where the zip starts in data
}

// readZipEnd reads the end records the way Python's zipfile does: the zip64
// end record, if its locator is there, is assumed right before it, and the
// central directory right before the end records, whatever offset they
// give; the difference is an offset added to every local header offset
// (self-extracting zips, or a zip appended to other data).
func readZipEnd(data []byte) (zipEnd, error) {
	eocd := findEnd(data)
	if eocd < 0 {
		return zipEnd{}, zipError("", "zip end of central directory record not found")
	}
	e := data[eocd:]
	count := uint64(le.Uint16(e[10:]))
	cdSize := uint64(le.Uint32(e[12:]))
	cdOff := uint64(le.Uint32(e[16:]))
	endStart := int64(eocd)
	if eocd >= loc64Len && string(data[eocd-loc64Len:eocd-loc64Len+4]) == sigLoc64 {
		l := data[eocd-loc64Len:]
		if le.Uint32(l[4:]) != 0 || le.Uint32(l[16:]) > 1 {
			return zipEnd{}, zipError("", "zip spans multiple disks")
		}
		// Pythons with the CVE-2025-8291 fix (3.13.9+, 3.14.1+) read the
		// zip64 end record where the locator says, with "extensible data"
		// between it and the locator; older ones, and this walk, right
		// before the locator. A record where only the newer read finds
		// one could name another central directory: fail.
		z := eocd - loc64Len - end64Len
		if rel := le.Uint64(l[8:]); rel != uint64(max(z, 0)) && rel <= uint64(len(data))-4 && string(data[rel:rel+4]) == sigEnd64 {
			return zipEnd{}, &Error{Err: errZip64Apart}
		}
		if z >= 0 && string(data[z:z+4]) == sigEnd64 {
			r := data[z:]
			count = le.Uint64(r[32:])
			cdSize = le.Uint64(r[40:])
			cdOff = le.Uint64(r[48:])
			endStart = int64(z)
		}
	}
	if cdSize > uint64(endStart) || cdOff > math.MaxInt64/2 {
		return zipEnd{}, zipError("", "bad central directory size or offset")
	}
	cdStart := endStart - int64(cdSize)
	return zipEnd{count: count, cdStart: cdStart, endStart: endStart, concat: cdStart - int64(cdOff)}, nil
}

// hasZip reports whether data holds a zip with at least one entry that
// Python's zipfile would find: end records pointing at a central directory
// record. Python finds a zip appended to anything, so a zip behind another
// format is walked too (see Walk).
func hasZip(data []byte) bool {
	z, err := readZipEnd(data)
	if errors.Is(err, errZip64Apart) {
		return true // a zip to some Pythons: walked, so that it fails
	}
	return err == nil && z.endStart-z.cdStart >= 4 && string(data[z.cdStart:z.cdStart+4]) == sigCentral
}

func zipError(path, format string, args ...any) error {
	return &Error{Path: path, Err: fmt.Errorf(format, args...)}
}

// walkZip reads a zip: it checks the whole directory and every local header
// first, then inflates the regular files in central directory order.
func (w *walker) walkZip(data []byte) error {
	entries, err := w.zipDirectory(data)
	if err != nil {
		return err
	}
	z := zipReader{w: w}
	defer z.close()
	for i := range entries {
		e := &entries[i]
		if e.dir {
			continue
		}
		err := w.file(e.path, int64(e.usize), func(buf []byte) error {
			return z.read(e, data[e.dataOff:e.dataOff+int64(e.csize)], buf)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// zipDirectory parses and checks the central directory: entry count,
// paths, local headers, overlaps, supported features and declared sizes
// against the limits. Nothing is decompressed.
func (w *walker) zipDirectory(data []byte) ([]zipEntry, error) {
	z, err := readZipEnd(data)
	if err != nil {
		return nil, err
	}
	if w.lim.Entries > 0 && z.count > uint64(w.lim.Entries-w.st.Entries) {
		return nil, &limit.Error{Kind: limit.Entries, Max: int64(w.lim.Entries)}
	}
	cdStart, endStart, concat := z.cdStart, z.endStart, z.concat
	cdSize := uint64(endStart - cdStart)
	count := z.count

	entries := make([]zipEntry, 0, min(count, cdSize/centralLen))
	for p := cdStart; p < endStart; {
		if p+centralLen > endStart {
			return nil, zipError("", "truncated central directory")
		}
		h := data[p : p+centralLen]
		if string(h[:4]) != sigCentral {
			return nil, zipError("", "bad central directory record signature")
		}
		nameLen, extraLen, commentLen := int64(le.Uint16(h[28:])), int64(le.Uint16(h[30:])), int64(le.Uint16(h[32:]))
		next := p + centralLen + nameLen + extraLen + commentLen
		if next > endStart {
			return nil, zipError("", "truncated central directory")
		}
		if err := w.entry(); err != nil {
			return nil, err
		}
		rawName := data[p+centralLen : p+centralLen+nameLen]
		ent := zipEntry{
			flags:  le.Uint16(h[8:]),
			method: le.Uint16(h[10:]),
			crc:    le.Uint32(h[16:]),
			csize:  uint64(le.Uint32(h[20:])),
			usize:  uint64(le.Uint32(h[24:])),
		}
		ent.name = zipName(rawName, ent.flags)
		off := uint64(le.Uint32(h[42:]))
		extra := data[p+centralLen+nameLen : p+centralLen+nameLen+extraLen]
		unicodeName, err := zipExtra(extra, rawName, &ent.usize, &ent.csize, &off)
		if err != nil {
			return nil, &Error{Path: ent.name, Err: err}
		}
		if off > math.MaxInt64/2 {
			return nil, zipError(ent.name, "bad local header offset")
		}
		ent.off = concat + int64(off)
		if err := checkLocal(data, &ent); err != nil {
			return nil, err
		}
		ent.dir = zipIsDir(ent.name)
		path, err := memberPath(ent.name)
		if err != nil {
			return nil, err
		}
		ent.path = path
		if unicodeName != nil {
			if err := checkUnicodeName(&ent, *unicodeName); err != nil {
				return nil, err
			}
		}
		entries = append(entries, ent)
		p = next
	}
	if err := checkOverlap(entries, cdStart); err != nil {
		return nil, err
	}

	// Declared sizes against the limits, before anything is inflated.
	total := uint64(w.st.Expanded)
	for i := range entries {
		ent := &entries[i]
		if ent.dir {
			continue
		}
		if ent.path == "" {
			return nil, &Error{Path: ent.name, Err: errEmptyPath}
		}
		if err := checkFeatures(ent); err != nil {
			return nil, err
		}
		if w.lim.File > 0 && ent.usize > uint64(w.lim.File) {
			return nil, &limit.Error{Kind: limit.File, Max: w.lim.File, Path: ent.path}
		}
		total += min(ent.usize, math.MaxInt64)
		if w.lim.Expanded > 0 && total > uint64(w.lim.Expanded) {
			return nil, &limit.Error{Kind: limit.Expanded, Max: w.lim.Expanded, Path: ent.path}
		}
		if ent.usize > math.MaxInt64 {
			return nil, zipError(ent.path, "size %d does not fit in memory", ent.usize)
		}
	}
	return entries, nil
}

// zipExtra walks the extra fields of a central directory record as
// Python's zipfile (ZipInfo._decodeExtra, 3.12+) does. It fails on a field
// that overruns them, takes the 64-bit sizes and offset from the zip64
// field for each value saturated at 0xFFFFFFFF, and returns the name that
// an Info-ZIP Unicode Path field (0x7075) gives the entry, or nil: the
// UTF-8 name of the last such field of version 1 whose CRC-32 is that of
// rawName (the name bytes of the record), if that name is not empty. A
// field of another version or CRC-32 is ignored. As in Python, a Unicode
// Path field shorter than 5 bytes fails, whatever it holds, and so does
// one that applies but is not valid UTF-8.
func zipExtra(extra, rawName []byte, usize, csize, off *uint64) (*string, error) {
	const sat = math.MaxUint32
	need := *usize == sat || *csize == sat || *off == sat
	var unicodeName *string
	for len(extra) >= 4 {
		id, n := le.Uint16(extra), int(le.Uint16(extra[2:]))
		if 4+n > len(extra) {
			return nil, fmt.Errorf("corrupt extra field %04x", id)
		}
		d := extra[4 : 4+n]
		extra = extra[4+n:]
		if id == extraUnicodePath {
			if len(d) < 5 {
				return nil, errCorruptUnicode
			}
			if d[0] != 1 || le.Uint32(d[1:]) != crc32.ChecksumIEEE(rawName) {
				continue
			}
			if !utf8.Valid(d[5:]) {
				return nil, fmt.Errorf("%w: invalid utf-8 bytes", errCorruptUnicode)
			}
			if len(d) > 5 {
				// Python warns about an empty name and keeps the
				// stored one.
				name := string(d[5:])
				unicodeName = &name
			}
			continue
		}
		if id != extraZip64 || !need {
			continue
		}
		need = false
		for _, v := range []*uint64{usize, csize, off} {
			if *v != sat {
				continue
			}
			if len(d) < 8 {
				return nil, errors.New("corrupt zip64 extra field")
			}
			*v = le.Uint64(d)
			d = d[8:]
		}
	}
	if need {
		return nil, errors.New("missing zip64 extra field")
	}
	return unicodeName, nil
}

// zipIsDir reports whether an entry is a directory to Python's zipfile and
// to pip on Linux (ZipInfo.is_dir, pip's wheel installer): its name, cut at
// the first NUL, ends in "/". A name ending in "\" is a file: pip writes it
// as one, under a name ending in "\".
func zipIsDir(name string) bool {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return strings.HasSuffix(name, "/")
}

// checkUnicodeName compares the entry's path with the one its Info-ZIP
// Unicode Path field gives it: Python's zipfile reads that name instead of
// the stored one since 3.12, older Pythons read the stored one, so pip
// installs the entry under either name depending on the Python it runs on.
// A field naming the same path (after the same cleaning), and the same
// kind (file or directory), changes nothing; any other name fails the
// entry, since the walk can report only one name and the scan's rules
// depend on it.
func checkUnicodeName(e *zipEntry, name string) error {
	p, err := cleanPath(name)
	if err == nil && p == e.path && zipIsDir(name) == e.dir {
		return nil
	}
	return &Error{Path: e.name, Err: fmt.Errorf("%w, %s, which Python 3.12+ (and pip on it) uses instead",
		errUnicodePath, clip.Path(name))}
}

// checkLocal reads an entry's local header: its signature, and its name,
// which must be the central directory's (Python's zipfile refuses the
// archive otherwise). It sets the entry's data offset.
func checkLocal(data []byte, e *zipEntry) error {
	n := int64(len(data))
	if e.off < 0 || e.off+localLen > n {
		return zipError(e.name, "local file header out of range")
	}
	h := data[e.off : e.off+localLen]
	if string(h[:4]) != sigLocal {
		return zipError(e.name, "bad local file header signature")
	}
	nameEnd := e.off + localLen + int64(le.Uint16(h[26:]))
	e.dataOff = nameEnd + int64(le.Uint16(h[28:]))
	if e.dataOff > n {
		return zipError(e.name, "truncated local file header")
	}
	if zipName(data[e.off+localLen:nameEnd], le.Uint16(h[6:])) != e.name {
		return &Error{Path: e.name, Err: errNameMismatch}
	}
	if e.csize > uint64(n-e.dataOff) {
		return zipError(e.name, "entry data extends past the end of the zip")
	}
	return nil
}

// checkOverlap refuses entries whose data runs into the next local header
// (or the central directory), as Python's zipfile does since 3.12: the
// overlapping-entries zip bomb. Entries that share one local header are
// duplicates, not overlaps; their data is counted against the limits each.
func checkOverlap(entries []zipEntry, cdStart int64) error {
	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(entries[a].off, entries[b].off)
	})
	ends := make([]int64, len(entries))
	end := cdStart
	for k := len(order) - 1; k >= 0; k-- {
		if k < len(order)-1 && entries[order[k]].off != entries[order[k+1]].off {
			end = entries[order[k+1]].off
		}
		ends[order[k]] = end
	}
	for i := range entries {
		e := &entries[i]
		if e.dataOff > ends[i] || e.csize > uint64(ends[i]-e.dataOff) {
			return &Error{Path: e.name, Err: errOverlap}
		}
	}
	return nil
}

// checkFeatures refuses what Python's zipfile cannot read either.
func checkFeatures(e *zipEntry) error {
	switch {
	case e.flags&flagEncrypted != 0:
		return &Error{Path: e.path, Err: fmt.Errorf("%w: encrypted entry", errUnsupported)}
	case e.flags&(flagPatched|flagStrong) != 0:
		return &Error{Path: e.path, Err: fmt.Errorf("%w: flags %#04x", errUnsupported, e.flags)}
	}
	switch e.method {
	case methodStore:
		if e.csize != e.usize {
			return &Error{Path: e.path, Err: errSizeMismatch}
		}
	case methodDeflate, methodBzip2, methodLZMA, methodZstd:
	default:
		return &Error{Path: e.path, Err: fmt.Errorf("%w: compression method %d", errUnsupported, e.method)}
	}
	return nil
}

// zipName decodes a zip file name as Python does: UTF-8 with the UTF-8 flag
// (invalid bytes replaced), else CP437.
func zipName(raw []byte, flags uint16) string {
	if flags&flagUTF8 != 0 || isASCII(raw) {
		return strings.ToValidUTF8(string(raw), "\uFFFD")
	}
	s, err := charmap.CodePage437.NewDecoder().Bytes(raw)
	if err != nil || !utf8.Valid(s) {
		return strings.ToValidUTF8(string(raw), "\uFFFD")
	}
	return string(s)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// zipReader inflates entries, reusing one deflate and one zstd decoder.
// The bzip2 and LZMA decoders cannot be reused and allocate their working
// memory per entry (up to 3.6 MB for a bzip2 block, 6 MB for LZMA literal
// tables, plus the dictionary): scratch counts it, so thousands of tiny
// entries cannot make a walk allocate without bound.
type zipReader struct {
	w       *walker
	src     bytes.Reader
	flate   io.ReadCloser
	zstd    *zstd.Decoder
	scratch int64
}

// zstdMaxWindow is the largest Zstandard window accepted: what levels up
// to 19 use. The decoder allocates it once per walk.
const zstdMaxWindow = 8 << 20

func (z *zipReader) close() {
	if z.flate != nil {
		_ = z.flate.Close()
	}
	if z.zstd != nil {
		z.zstd.Close()
	}
}

// charge counts n bytes of decoder working memory for entry e against the
// expanded limit (at least 64 MiB of it).
func (z *zipReader) charge(e *zipEntry, n int64) error {
	z.scratch += n
	if lim := z.w.lim.Expanded; lim > 0 && z.scratch > max(lim, 64<<20) {
		return &limit.Error{Kind: limit.Expanded, Max: lim, Path: e.path}
	}
	return nil
}

// read fills buf with the content of e from its compressed bytes comp: the
// decompressor must deliver exactly len(buf) bytes, whose CRC-32 must match.
func (z *zipReader) read(e *zipEntry, comp, buf []byte) error {
	var err error
	switch e.method {
	case methodStore:
		copy(buf, comp)
	case methodDeflate:
		z.src.Reset(comp)
		if z.flate == nil {
			z.flate = flate.NewReader(&z.src)
		} else if err := z.flate.(flate.Resetter).Reset(&z.src, nil); err != nil {
			return z.fail(e, err)
		}
		err = readFull(newStream(z.w.ctx, z.flate, "deflate", 0), buf)
	case methodBzip2:
		if len(comp) >= 4 && comp[3] >= '1' && comp[3] <= '9' {
			if err := z.charge(e, 4*100_000*int64(comp[3]-'0')); err != nil {
				return err
			}
		}
		err = readFull(newStream(z.w.ctx, bzip2.NewReader(bytes.NewReader(comp)), "bzip2", 0), buf)
	case methodLZMA:
		err = z.readLZMA(e, comp, buf)
	case methodZstd:
		err = z.readZstd(comp, buf)
	}
	if err != nil {
		return z.fail(e, err)
	}
	if crc32.ChecksumIEEE(buf) != e.crc {
		return &Error{Path: e.path, Err: errChecksum}
	}
	return nil
}

func (z *zipReader) fail(e *zipEntry, err error) error {
	return z.w.readError(e.path, methodName(e.method), err)
}

func methodName(m uint16) string {
	switch m {
	case methodStore:
		return "stored"
	case methodDeflate:
		return "deflate"
	case methodBzip2:
		return "bzip2"
	case methodLZMA:
		return "lzma"
	case methodZstd:
		return "zstd"
	}
	return fmt.Sprintf("method %d", m)
}

// readLZMA reads zip's LZMA framing (version, properties size, properties)
// through a classic .lzma header built with the declared size, whose
// dictionary is capped to that size so a hostile header cannot make the
// decoder allocate more.
func (z *zipReader) readLZMA(e *zipEntry, comp, buf []byte) error {
	if len(comp) < 9 || le.Uint16(comp[2:]) != 5 {
		return &streamError{format: "lzma", err: errors.New("bad lzma properties")}
	}
	var hdr [13]byte
	hdr[0] = comp[4]
	dict := min(uint64(le.Uint32(comp[5:])), max(uint64(len(buf)), lzma.MinDictCap))
	if p, err := lzma.PropertiesForCode(comp[4]); err == nil {
		if err := z.charge(e, int64(dict)+0x600<<(p.LC+p.LP)); err != nil {
			return err
		}
	}
	le.PutUint32(hdr[1:], uint32(dict))
	le.PutUint64(hdr[5:], uint64(len(buf)))
	r, err := lzma.NewReader(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(comp[9:])))
	if err != nil {
		return &streamError{format: "lzma", err: err}
	}
	return readFull(newStream(z.w.ctx, r, "lzma", 0), buf)
}

// readZstd reads a Zstandard entry (Python 3.14's method 93).
func (z *zipReader) readZstd(comp, buf []byte) error {
	z.src.Reset(comp)
	if z.zstd == nil {
		d, err := zstd.NewReader(&z.src,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecoderMaxMemory(1<<62))
		if err != nil {
			return &streamError{format: "zstd", err: err}
		}
		z.zstd = d
	} else if err := z.zstd.Reset(&z.src); err != nil {
		return &streamError{format: "zstd", err: err}
	}
	return readFull(newStream(z.w.ctx, z.zstd, "zstd", 0), buf)
}
