package archive

import (
	"archive/tar"
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
	tr := tar.NewReader(r)
	tree := newLinkTree()
	for {
		hdr, err := tr.Next()
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
