package archive

import (
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/klauspost/compress/gzip"
	"github.com/ulikunitz/xz"
)

// streamError is a failure of a decompressor: corrupt or truncated data.
type streamError struct {
	format string // "gzip", "bzip2", "xz"
	err    error
}

func (e *streamError) Error() string {
	return "corrupt " + e.format + " stream: " + e.err.Error()
}

func (e *streamError) Unwrap() error { return e.err }

// stream wraps a decompressed stream: it checks ctx on every read, turns
// decompressor failures into *streamError, and, when max > 0, fails with
// maxErr once more than max bytes came out.
type stream struct {
	ctx    context.Context
	r      io.Reader
	format string
	n      int64
	max    int64
	maxErr error
}

func newStream(ctx context.Context, r io.Reader, format string, max int64) *stream {
	return &stream{ctx: ctx, r: r, format: format, max: max}
}

func (s *stream) Read(p []byte) (int, error) {
	if s.ctx.Err() != nil {
		return 0, context.Cause(s.ctx)
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.max > 0 && s.n > s.max {
		return n, s.maxErr
	}
	if err != nil && err != io.EOF {
		err = &streamError{format: s.format, err: err}
	}
	return n, err
}

// bound makes the stream fail with a limit error after max bytes.
func (s *stream) bound(max int64, err error) {
	s.max, s.maxErr = max, err
}

func byteReader(b []byte) io.Reader { return bytes.NewReader(b) }

// formatName names the compression of a format in error messages.
func formatName(f Format) string {
	switch f {
	case Gzip, TarGzip:
		return "gzip"
	case Bzip2, TarBzip2:
		return "bzip2"
	case Xz, TarXz:
		return "xz"
	}
	return f.String()
}

// gzipMembers reads the concatenated gzip members in data, like Python's
// gzip module: zero padding between members is skipped, and anything after
// the last member that is not a gzip header ends the stream.
type gzipMembers struct {
	data []byte
	src  *bytes.Reader
	zr   *gzip.Reader
}

func newGzipMembers(data []byte) (*gzipMembers, error) {
	src := bytes.NewReader(data)
	zr, err := gzip.NewReader(src)
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	return &gzipMembers{data: data, src: src, zr: zr}, nil
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		off := len(g.data) - g.src.Len()
		skip := 0
		for off+skip < len(g.data) && g.data[off+skip] == 0 {
			skip++
		}
		if !isGzip(g.data[off+skip:]) {
			return n, io.EOF
		}
		if _, err := g.src.Seek(int64(skip), io.SeekCurrent); err != nil {
			return n, err
		}
		if err := g.zr.Reset(g.src); err != nil {
			return n, err
		}
		g.zr.Multistream(false)
		if n > 0 {
			return n, nil
		}
	}
}

// decompressor opens the compressed stream in data. For xz it first checks
// the container (see xzScan) and returns the uncompressed size the index
// claims; for gzip and bzip2 claimed is -1.
func decompressor(f Format, data []byte) (r io.Reader, claimed int64, err error) {
	switch f {
	case Gzip:
		g, err := newGzipMembers(data)
		return g, -1, err
	case Bzip2:
		return bzip2.NewReader(bytes.NewReader(data)), -1, nil
	case Xz:
		claimed, err := xzScan(data)
		if err != nil {
			return nil, 0, err
		}
		xr, err := xz.NewReader(bytes.NewReader(data))
		return xr, claimed, err
	}
	return nil, 0, errors.New("not a compressed format")
}

// walkCompressed reads gzip, bzip2 or xz input: a tar inside is walked as a
// tar; anything else is one file.
func (w *walker) walkCompressed(data []byte, name string) error {
	f := w.st.Format
	fname := formatName(f)
	r, claimed, err := decompressor(f, data)
	if err != nil {
		return w.readError("", fname, err)
	}
	s := newStream(w.ctx, r, fname, 0)
	var head [1024]byte
	n, err := io.ReadFull(s, head[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return w.readError("", fname, err)
	}
	if isTar(head[:n]) {
		w.st.Format = tarOf(f)
		if max := w.tarStreamMax(); max > 0 {
			lerr := &limit.Error{Kind: limit.Expanded, Max: w.lim.Expanded}
			if claimed > max {
				return lerr
			}
			s.bound(max, lerr)
		}
		return w.walkTar(io.MultiReader(bytes.NewReader(head[:n]), s), s)
	}

	// One file: count its bytes in a first pass (bounded by the limits),
	// then decompress again straight into a buffer of exactly that size.
	path := singleName(name, f)
	if err := w.entry(); err != nil {
		return err
	}
	bound := w.fileBound()
	if bound > 0 && claimed > bound {
		return w.admit(path, claimed)
	}
	size := int64(n)
	if n == len(head) {
		var rest io.Reader = s
		if bound > 0 {
			rest = io.LimitReader(s, max(bound+1-size, 0))
		}
		m, err := io.Copy(io.Discard, rest)
		size += m
		if err != nil {
			return w.readError(path, fname, err)
		}
	}
	return w.file(path, size, func(buf []byte) error {
		if size <= int64(n) {
			copy(buf, head[:size])
			return nil
		}
		r, _, err := decompressor(f, data)
		if err != nil {
			return w.readError(path, fname, err)
		}
		if err := readFull(newStream(w.ctx, r, fname, 0), buf); err != nil {
			return w.readError(path, fname, err)
		}
		return nil
	})
}

// fileBound is the most bytes one file may have under the limits, 0 for no
// bound.
func (w *walker) fileBound() int64 {
	b := w.lim.File
	if e := w.lim.Expanded - w.st.Expanded; w.lim.Expanded > 0 && (b <= 0 || e < b) {
		b = e
	}
	return b
}

// tarStreamMax bounds the decompressed tar stream: the expanded limit plus
// 4 KiB of headers and padding per allowed entry (twice the expanded limit
// without an entry limit) plus 1 MiB of trailing records. It stops archives
// of endless meta entries (PAX or GNU headers, which tar hides) that no other
// limit would see. 0 means no bound.
func (w *walker) tarStreamMax() int64 {
	if w.lim.Expanded <= 0 {
		return 0
	}
	over := w.lim.Expanded
	if w.lim.Entries > 0 {
		over = int64(w.lim.Entries) * 4096
	}
	return w.lim.Expanded + over + 1<<20
}

// readError classifies a failure while reading a stream: a limit or the
// cause of ctx as is, an alloc/emit error cannot occur here, anything else
// is a defect of the input.
func (w *walker) readError(path, format string, err error) error {
	if w.ctx.Err() != nil {
		return context.Cause(w.ctx)
	}
	var le *limit.Error
	if errors.As(err, &le) {
		return err
	}
	var se *streamError
	if errors.As(err, &se) {
		return &Error{Path: path, Err: se}
	}
	if errors.Is(err, errXzDict) {
		// A bound of the worker's, not a defect: a limit failure, which
		// spot checks take as no verdict (a worker of the previous
		// release, without the bound, scans the archive; as an archive
		// defect it stood against that worker's verdict and a third
		// identity quarantined the upgraded, honest one).
		return &limit.Error{Kind: limit.XzDictionary, Max: xzMaxDict, Path: path}
	}
	if errors.Is(err, errSizeMismatch) {
		return &Error{Path: path, Err: err}
	}
	return &Error{Path: path, Err: &streamError{format: format, err: err}}
}

// singleName is the path of a compressed non-tar file: the distribution's
// name minus its compression suffix (".tgz" and the like become ".tar").
func singleName(name string, f Format) string {
	var suffixes [][2]string
	switch f {
	case Gzip:
		suffixes = [][2]string{{".gz", ""}, {".tgz", ".tar"}}
	case Bzip2:
		suffixes = [][2]string{{".bz2", ""}, {".tbz2", ".tar"}, {".tbz", ".tar"}}
	case Xz:
		suffixes = [][2]string{{".xz", ""}, {".txz", ".tar"}}
	}
	lower := strings.ToLower(name)
	for _, s := range suffixes {
		if strings.HasSuffix(lower, s[0]) && len(name) > len(s[0]) {
			return fileName(name[:len(name)-len(s[0])] + s[1])
		}
	}
	return fileName(name)
}
