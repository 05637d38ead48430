package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// tarDrain is how much of a compressed stream is read after the end of the
// tar, to verify the compression trailer (checksum, truncation).
const tarDrain = 1 << 20

// walkTar reads a tar stream. When the tar comes out of a decompressor,
// drain is that stream: after the tar's end, up to tarDrain more bytes are
// read so a truncated or corrupt compression trailer is noticed.
func (w *walker) walkTar(r io.Reader, drain *stream) error {
	tap := &headerTap{r: r}
	tr := tar.NewReader(tap)
	tree := newLinkTree()
	for {
		tap.start()
		hdr, err := tr.Next()
		tap.on = false
		if err == io.EOF {
			break
		}
		// ErrInsecurePath (GODEBUG tarinsecurepath=0) comes with a valid
		// header; the path is judged below like any other.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return w.tarError("", err)
		}
		if err := w.entry(); err != nil {
			return err
		}
		if err := tap.agrees(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			// A meta entry, not a member: POSIX even names it
			// "$TMPDIR/GlobalHead.%p.%n". But tarfile applies its records
			// to the members after it, which archive/tar does not.
			if err := globalPAX(hdr); err != nil {
				return err
			}
			continue
		}
		p, err := memberPath(hdr.Name)
		if err != nil {
			return err
		}
		if err := tarNameAgrees(p, hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeLink {
			if err := w.tarLink(tree, p, hdr); err != nil {
				return err
			}
			continue
		}
		if !tarRegular(hdr.Typeflag) {
			if err := tree.other(p, hdr.Typeflag); err != nil {
				return &Error{Path: p, Err: err}
			}
			continue
		}
		if p == "" {
			return &Error{Path: rawName(hdr.Name), Err: errEmptyPath}
		}
		if err := tree.checkWrite(p); err != nil {
			return &Error{Path: p, Err: err}
		}
		index := w.st.Files
		err = w.file(p, hdr.Size, func(buf []byte) error {
			if _, err := io.ReadFull(tr, buf); err != nil {
				return w.tarError(p, err)
			}
			// To its end: archive/tar checks a sparse member's data only
			// in a Read (an empty buffer makes none), and data left unread
			// would put the next headers where headerTap does not look.
			var one [1]byte
			if n, err := tr.Read(one[:]); n > 0 || err != io.EOF {
				if err == nil || err == io.EOF {
					err = errors.New("member data longer than its size")
				}
				return w.tarError(p, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		tree.wrote(p, index)
	}
	if drain == nil {
		return nil
	}
	_, err := io.CopyN(io.Discard, drain, tarDrain)
	if err != nil && err != io.EOF {
		return w.tarError("", err)
	}
	return nil
}

// tarLink handles the hard link member at the clean path p (see linkTree):
// one more file holding its target's content, reported to the Link
// callback, or a directory (skipped), or an *Error.
func (w *walker) tarLink(tree *linkTree, p string, hdr *tar.Header) error {
	if p == "" {
		return &Error{Path: rawName(hdr.Name), Err: errEmptyPath}
	}
	target, err := cleanPath(hdr.Linkname)
	if err != nil {
		return &Error{Path: p, Err: fmt.Errorf("hard link to %s: %w", printablePath(rawName(hdr.Linkname)), err)}
	}
	content, file, err := tree.link(p, target)
	if err != nil {
		return &Error{Path: p, Err: fmt.Errorf("hard link to %s: %w", printablePath(target), err)}
	}
	if !file {
		return nil
	}
	if w.link == nil {
		return &Error{Path: p, Err: errLinkNil}
	}
	index := w.st.Files
	w.st.Files++
	w.st.Links++
	return w.link(index, p, content)
}

// Where Python's tarfile (pip's unpacker) and archive/tar read one tar
// differently, a member could be written under another name, or with other
// content, than the one scanned: a ".py" file scanned as "readme.txt" is
// never seen by the ".py" rules. Such tars fail the distribution.
var (
	errSolarisHeader = errors.New(`Solaris extended header (type 'X'): tarfile applies it to the next member, archive/tar does not; not supported`)
	errSparseRecords = errors.New("GNU.sparse PAX records that tarfile and archive/tar read differently; not supported")
)

// globalPAX fails a PAX global header whose records tarfile applies to
// every member after it (path, linkpath, size, GNU.sparse.*): archive/tar
// ignores them, so the names or sizes would differ. Other records (a
// comment, as git archive writes, times, owners) change nothing scanned.
func globalPAX(hdr *tar.Header) error {
	for k := range hdr.PAXRecords {
		switch {
		case k == "path", k == "linkpath", k == "size", strings.HasPrefix(k, "GNU.sparse."):
			return &Error{Path: rawName(hdr.Name), Err: fmt.Errorf("PAX global header sets %q for the members after it: not supported", clip.String(k, 64))}
		}
	}
	return nil
}

// headerTap records what archive/tar reads in one call of Next: the
// padding of the member before, the meta headers (x, g, L, K) with their
// data, and the header of the member it returns (for a sparse file, its map
// after that). agrees reads them as Python's tarfile would.
type headerTap struct {
	r     io.Reader
	on    bool
	over  bool  // more than maxTarHeaders was read
	off   int64 // bytes read from the start of the tar
	begin int64 // off when Next was called
	buf   []byte
}

// maxTarHeaders bounds what one member's headers may take (archive/tar
// reads a PAX header or a GNU long name of up to 1 MiB each).
const maxTarHeaders = 4 << 20

var (
	errTarHeaders   = fmt.Errorf("meta headers of over %d bytes before one member", maxTarHeaders)
	errTarChain     = errors.New("meta headers (x, g, L, K) that tarfile and archive/tar combine differently; not supported")
	errTarSizeField = errors.New("a size field that tarfile and archive/tar read differently; not supported")
	errTarDirKind   = errors.New("a member that tarfile and archive/tar tell apart as file or directory differently; not supported")
)

func (t *headerTap) start() {
	t.on, t.over, t.begin, t.buf = true, false, t.off, t.buf[:0]
}

func (t *headerTap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.off += int64(n)
	if t.on && n > 0 {
		if len(t.buf)+n > maxTarHeaders {
			t.over = true
		} else {
			t.buf = append(t.buf, p[:n]...)
		}
	}
	return n, err
}

// agrees checks the headers before hdr, which archive/tar returned, where
// Python's tarfile (pip's unpacker) reads them otherwise, so that a member
// it writes under one name or with one content could be scanned under
// another (found by a differential harness against tarfile 3.11):
//   - a size field tarfile reads otherwise: it cuts the field at its first
//     NUL ("\x00" before the digits is 0), archive/tar trims NULs;
//   - meta headers combined otherwise: two x, L or K headers before one
//     member (tarfile keeps the first, archive/tar the last), an L and a
//     PAX path (or a K and a PAX linkpath) together, a g after a pending x,
//     L or K (archive/tar drops what was pending);
//   - a type '\0' member that tarfile makes a directory from the name field
//     alone (a trailing "/") and archive/tar from the whole name (the
//     ustar prefix, an L name or a PAX path), one way and not the other:
//     the data of the one is headers to the other.
func (t *headerTap) agrees(hdr *tar.Header) error {
	name := rawName(hdr.Name)
	if t.over {
		return &Error{Path: name, Err: errTarHeaders}
	}
	// Headers start on 512-byte boundaries of the tar; what comes before the
	// first is the padding of the member before.
	skip := (512 - t.begin%512) % 512
	if skip > int64(len(t.buf)) {
		return nil
	}
	b := t.buf[skip:]
	var x, l, k int
	for len(b) >= 512 {
		h := b[:512]
		size, ok := goNumber(h[124:136])
		if py, pyOK := pyNumber(h[124:136]); ok && pyOK && py != size {
			return &Error{Path: name, Err: errTarSizeField}
		}
		switch h[156] {
		case tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink, tar.TypeXGlobalHeader:
			switch h[156] {
			case tar.TypeXHeader:
				x++
			case tar.TypeGNULongName:
				l++
			case tar.TypeGNULongLink:
				k++
			case tar.TypeXGlobalHeader:
				if x+l+k > 0 {
					return &Error{Path: name, Err: errTarChain}
				}
			}
			if x > 1 || l > 1 || k > 1 {
				return &Error{Path: name, Err: errTarChain}
			}
			if !ok || size < 0 || size >= int64(len(b)) {
				return nil // the header Next returned (a global one), or what archive/tar refused
			}
			next := 512 + (size+511)/512*512
			if next >= int64(len(b)) {
				return nil
			}
			b = b[next:]
			continue
		}
		_, hasPath := hdr.PAXRecords["path"]
		_, hasLink := hdr.PAXRecords["linkpath"]
		if l > 0 && hasPath || k > 0 && hasLink {
			return &Error{Path: name, Err: errTarChain}
		}
		field := h[:100]
		if i := bytes.IndexByte(field, 0); i >= 0 {
			field = field[:i]
		}
		pyDir := h[156] == tar.TypeDir || h[156] == 0 && bytes.HasSuffix(field, []byte("/"))
		if pyDir != (hdr.Typeflag == tar.TypeDir) {
			return &Error{Path: name, Err: errTarDirKind}
		}
		return nil
	}
	return nil
}

// goNumber reads a numeric header field as archive/tar does: base-256
// (two's complement) when the high bit of its first byte is set, else octal
// digits between spaces and NULs (none is 0). ok is false where archive/tar
// fails.
func goNumber(f []byte) (int64, bool) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		var inv byte
		if f[0]&0x40 != 0 {
			inv = 0xff
		}
		var x uint64
		for i, c := range f {
			c ^= inv
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 != 0 {
				return 0, false
			}
			x = x<<8 | uint64(c)
		}
		if x>>63 != 0 {
			return 0, false
		}
		if inv == 0xff {
			return ^int64(x), true
		}
		return int64(x), true
	}
	f = bytes.Trim(f, " \x00")
	if len(f) == 0 {
		return 0, true
	}
	return parseOctal(f)
}

// tarNameAgrees fails a member at the clean path p that tarfile would name
// or size differently: a Solaris 'X' header (an extended header to tarfile,
// a file to archive/tar), or GNU.sparse.name, .size or .realsize records
// that archive/tar left unapplied (it applies them to sparse files only;
// tarfile to every member, the last of path and GNU.sparse.name winning).
func tarNameAgrees(p string, hdr *tar.Header) error {
	if hdr.Typeflag == 'X' {
		return &Error{Path: p, Err: errSolarisHeader}
	}
	if name, ok := hdr.PAXRecords["GNU.sparse.name"]; ok {
		path, hasPath := hdr.PAXRecords["path"]
		if name != hdr.Name || hasPath && path != name {
			return &Error{Path: p, Err: errSparseRecords}
		}
	}
	for _, k := range []string{"GNU.sparse.size", "GNU.sparse.realsize"} {
		if v, ok := hdr.PAXRecords[k]; ok && v != strconv.FormatInt(hdr.Size, 10) {
			return &Error{Path: p, Err: errSparseRecords}
		}
	}
	return nil
}

// tarRegular reports whether entries of a type hold file content that pip
// would write: regular files, contiguous files, GNU sparse files, and every
// type Python's tarfile does not know (it reads those as regular files).
func tarRegular(t byte) bool {
	switch t {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock,
		tar.TypeDir, tar.TypeFifo, tar.TypeXHeader, tar.TypeXGlobalHeader,
		tar.TypeGNULongName, tar.TypeGNULongLink:
		return false
	}
	return true
}

// tarError classifies a failure of the tar reader.
func (w *walker) tarError(path string, err error) error {
	if w.ctx.Err() != nil {
		return context.Cause(w.ctx)
	}
	var le *limit.Error
	var se *streamError
	switch {
	case errors.As(err, &le):
		return err
	case errors.As(err, &se):
		return &Error{Path: path, Err: se}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Path: path, Err: fmt.Errorf("truncated tar: %w", err)}
	}
	return &Error{Path: path, Err: fmt.Errorf("bad tar: %w", err)}
}
