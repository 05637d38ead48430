// Package archive turns the bytes of one downloaded distribution into its
// regular files, in memory and within limits, without trusting the input.
//
// Walk detects the container from its bytes (never from the file name), reads
// tar (plain, gzip, bzip2, xz) and zip (.whl, .zip, .egg) archives, and hands
// every regular file to an Emit callback in a buffer obtained from an Alloc
// callback, so the caller decides how much unpacked content may be held at
// once. Nothing is written to disk and nested archives are not unpacked.
//
// The rules follow what pip does with the same bytes, so the scanner sees what
// an installation would write:
//   - Files are what extraction writes: regular files are emitted, and a
//     tar hard link is a file too, under its own path with its target's
//     content. It is reported to a Link callback with the index of the
//     emitted file it holds, never read or counted toward Expanded twice
//     (see "Hard links" below). Tar directories, symlinks, devices, fifos and
//     PAX/GNU meta entries are skipped; tar entries of a type Python's
//     tarfile does not know are regular files, as they are to pip. A zip
//     entry is a directory (skipped) when its name (cut at the first NUL)
//     ends in "/", as for Python's ZipInfo.is_dir and pip's wheel installer
//     on Linux; every other zip entry is a file, whatever its mode bits
//     say, because pip writes it as one. That includes a name ending in
//     "\": pip's wheel installer writes a file whose name ends in "\" (for
//     a .zip sdist its unzip_file makes a directory: the walk then scans
//     one file more, never less), and the walk emits it under its cleaned
//     path (below), "pkg/x\" as "pkg/x". Zip has no hard links.
//   - Paths are archive-relative with "/" separators, cleaned (".", "a//b",
//     "a/./b", "a/../b"), with "\" read as "/" and invalid UTF-8 replaced by
//     U+FFFD. Zip names without the UTF-8 flag are decoded as CP437, as Python
//     does. A name that is absolute ("/x", "C:\x", "\\host\x") or escapes the
//     root with ".." fails the distribution with an *Error.
//   - A zip is read the way Python's zipfile reads it: the end record is
//     searched in the last 64 KiB, the central directory is the block right
//     before it, every entry's local header must carry the same name as its
//     central directory record, and entries whose data overlaps the next
//     local header are refused (the overlapping-entries zip bomb). Python
//     3.12+ names an entry from its Info-ZIP Unicode Path extra field
//     (0x7075) when the field's version is 1 and its CRC-32 is that of the
//     stored name, older Pythons from the stored name: an entry whose field
//     names another path (or kind, file or directory) than its stored name,
//     once both are cleaned, fails the distribution with an *Error, and so
//     does a field that Python refuses as corrupt.
//
// Hard links: the reference client extracts a tar with Python's tarfile (3.14,
// its 'data' filter) and scans the files on disk. Walk follows the members in
// order, as extraction does, and decides each tar hard link "path -> target"
// (target cleaned like a member name) as tarfile would write it:
//   - target an earlier regular file, or an earlier hard link that is a file:
//     path is one more name of that file and holds its content (a chain of
//     links holds the first file's content);
//   - target an earlier directory, or the archive root: path becomes a
//     directory (tarfile copies the directory member); nothing to scan;
//   - target absolute, outside the root, not an earlier member (a later one,
//     or none), a device or a fifo: tarfile fails, and so does the walk with
//     an *Error.
//
// Where the walk cannot follow extraction exactly it fails with an *Error
// rather than guess, so content never escapes its path's rules: a target
// that is, or passes through, a symlink (tarfile follows it; the walk does
// not extract symlinks); a regular member whose path is, or passes
// through, an earlier symlink (pip opens it for writing and writes where
// the symlink points, hard links or not); any hard link in an archive that
// also places a member through a symlink; a regular member written onto a
// file that two
// names share (tarfile writes into that file, changing every name); a hard
// link over a directory; a target that is only an implicit directory (one no
// member names: tarfile skips such a link). A link counts as an entry and as
// a file (Stats.Files, Stats.Links), never toward Expanded or the file size
// limit: its bytes were counted once, with its target.
//
// Limits are counted on bytes actually produced: a declared size is checked
// against limit.Limits before anything is decompressed or allocated, and then
// exactly that many bytes must come out of the decompressor, no more and no
// fewer. Memory is bounded by the largest file (never more than Limits.File
// or the declared size) plus the decompressor state, which is bounded too:
// the xz container is checked before decoding so no block can make the
// decoder allocate a dictionary its content cannot need; the working memory
// that bzip2 and LZMA zip entries allocate one by one counts against
// Limits.Expanded (at least 64 MiB of it); Zstandard windows are capped at
// 8 MiB. A decompressed tar stream is bounded (see tarStreamMax) because
// archive/tar hides PAX and GNU meta entries from every other count.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// Format is a distribution's container format, detected from its bytes.
type Format int

// The formats Walk reads.
const (
	Raw      Format = iota // not an archive: the whole input is one file
	Tar                    // plain tar
	TarGzip                // gzip-compressed tar (.tar.gz, .tgz)
	TarBzip2               // bzip2-compressed tar
	TarXz                  // xz-compressed tar
	Zip                    // .whl, .zip, .egg
	Gzip                   // gzip whose content is not a tar: one file (decompressed)
	Bzip2                  // bzip2 whose content is not a tar: one file
	Xz                     // xz whose content is not a tar: one file
)

var formatNames = [...]string{
	Raw:      "raw",
	Tar:      "tar",
	TarGzip:  "tar.gz",
	TarBzip2: "tar.bz2",
	TarXz:    "tar.xz",
	Zip:      "zip",
	Gzip:     "gz",
	Bzip2:    "bz2",
	Xz:       "xz",
}

// String returns the format's usual suffix without the dot: "tar.gz", "zip",
// "raw", ... It is stable and may be used as a metrics label.
func (f Format) String() string {
	if f >= 0 && int(f) < len(formatNames) {
		return formatNames[f]
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// Alloc returns a buffer of exactly n bytes for a file's content. It may block
// (a shared memory budget) and fails when ctx is done. The buffer's ownership
// passes to Emit.
type Alloc func(ctx context.Context, n int) ([]byte, error)

// Emit receives one regular file: its index among files (0-based, archive
// order, shared with Link's), its archive-relative path, and its full content
// in a buffer from Alloc. Returning an error stops the walk with that error.
type Emit func(index int, path string, data []byte) error

// Link receives one tar hard link that extraction writes as a file: its
// index among files (the sequence Emit's indexes belong to), its own
// archive-relative path, and the index of the emitted file whose content it
// holds (always an earlier index, already emitted). The link's bytes are
// those of that file: nothing is allocated or emitted for it. Returning an
// error stops the walk with that error.
type Link func(index int, path string, target int) error

// Stats describe one walk. Walk returns them also when it fails: they then
// count what was seen up to the failure.
type Stats struct {
	Format  Format
	Entries int // all entries seen (files, dirs, links, ...)
	// Files counts the files: regular files emitted and hard links
	// reported to Link.
	Files int
	// Links counts the hard links among Files.
	Links int
	// Expanded counts the bytes of the regular files emitted; a hard link
	// adds nothing (its bytes are its target's).
	Expanded int64
	// Archives counts the files emitted that are archives themselves
	// (Detect), scanned as their bytes as an archive inside a package is:
	// counted by the scan engine's DirProducer, for a user who gave a
	// directory of archives where an unpacked distribution was meant.
	Archives int
	// Symlinks counts the symbolic links a DirProducer skipped (not
	// followed), for the same user's note.
	Symlinks int
}

// Error is a defect of the input: corrupt/truncated compression, a broken zip
// directory, a bad tar header, an unsafe path, a zip local header that disagrees
// with the central directory, a tar hard link that extraction could not write.
// Path is the entry concerned, when known, exactly as the archive names it
// (invalid UTF-8 replaced); Error's text bounds it.
type Error struct {
	Path string
	Err  error
}

// Error returns one line: "path: cause", or just the cause without a path.
// A path that holds control characters or quotes is printed quoted. Both
// parts come from the input and are cut to clip.Default bytes each (plus a
// marker naming how many bytes were cut), so a name of megabytes cannot
// flood a message or a log.
func (e *Error) Error() string {
	if e.Path == "" {
		return clip.Error(e.Err, clip.Default)
	}
	return printablePath(e.Path) + ": " + clip.Error(e.Err, clip.Default)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// printablePath returns p bounded and quoted for a message (clip.Path).
func printablePath(p string) string { return clip.Path(p) }

// Causes of an *Error that callers (and tests) may tell apart with errors.Is.
var (
	errUnsafePath   = errors.New("unsafe path")
	errEmptyPath    = errors.New("empty file name")
	errLongPath     = fmt.Errorf("path longer than %d bytes", protocol.MaxPathBytes)
	errNameMismatch = errors.New("local file header name differs from central directory")
	errOverlap      = errors.New("entry data overlaps the next local header (possible zip bomb)")
	errSizeMismatch = errors.New("content size differs from the declared size")
	errChecksum     = errors.New("crc-32 mismatch")
	errUnsupported  = errors.New("unsupported zip feature")

	// Hard link failures (links.go).
	errLinkTarget   = errors.New("hard link target is not an earlier member")
	errLinkSpecial  = errors.New("hard link to a device or fifo")
	errLinkSymlink  = errors.New("hard link to or through a symlink")
	errLinkThrough  = errors.New("member placed through a symlink in an archive with hard links")
	errWriteThrough = errors.New("file written through a symlink: pip writes it where the symlink points")
	errLinkDir      = errors.New("hard link over a directory")
	errLinkWrite    = errors.New("member overwrites a file that hard links share")
	errLinkNil      = errors.New("hard link but the caller takes no links")
)

// Walk reads the distribution in data. name is the distribution's file name
// (the last path segment of its URL); it is the path of a non-archive file,
// and, minus a compression suffix (".gz", ".bz2", ".xz", ...), the path of a
// compressed file that is not a tar.
//
// Regular files are emitted in archive order, and tar hard links that
// extraction writes as files are reported to link in the same order and
// index sequence (see the package doc); a nil link fails the walk at the
// first such hard link. Python's zipfile opens a zip
// appended to anything (it searches the end of the file), so when the input
// starts with another format but also ends with a zip, both are walked, the
// zip second, and Stats.Format names the first. For a raw (non-archive) input
// the single emitted buffer is a copy of data taken through alloc, so data may
// be reused once Walk returns.
//
// Of lim only Expanded, File and Entries apply; a zero field means no limit.
// A broken limit is a *limit.Error; a defect of the input is an *Error; an
// error from alloc or emit, or the cause of ctx, is returned as is. ctx is
// checked between entries and while decompressing.
//
// Every buffer Walk gets from alloc is passed to emit exactly once, so the
// owner can always release it. If reading a file fails after its buffer was
// allocated, emit still receives that buffer (its content is then undefined)
// and Walk returns the read error right after, without counting the file in
// Stats: a failed walk invalidates everything it emitted.
func Walk(ctx context.Context, data []byte, name string, lim limit.Limits, alloc Alloc, emit Emit, link Link) (Stats, error) {
	w := &walker{ctx: ctx, lim: lim, alloc: alloc, emit: emit, link: link}
	w.st.Format = sniff(data)
	if err := ctx.Err(); err != nil {
		return w.st, context.Cause(ctx)
	}
	var err error
	switch w.st.Format {
	case Tar:
		err = w.walkTar(newStream(ctx, byteReader(data), "tar", 0), nil)
	case Zip:
		err = w.walkZip(data)
	case Gzip, Bzip2, Xz:
		err = w.walkCompressed(data, name)
	default:
		err = w.walkRaw(data, name)
	}
	if err == nil && w.st.Format != Zip && hasZip(data) {
		// A zip appended to a tar, a compressed stream or anything else is
		// a wheel to pip (Python's zipfile finds it from the end): walk it
		// as well.
		err = w.walkZip(data)
	}
	return w.st, err
}

// walker is the state of one Walk.
type walker struct {
	ctx   context.Context
	lim   limit.Limits
	alloc Alloc
	emit  Emit
	link  Link
	st    Stats
}

// entry counts one archive entry of any kind against lim.Entries.
func (w *walker) entry() error {
	if err := w.ctx.Err(); err != nil {
		return context.Cause(w.ctx)
	}
	w.st.Entries++
	if w.lim.Entries > 0 && w.st.Entries > w.lim.Entries {
		return &limit.Error{Kind: limit.Entries, Max: int64(w.lim.Entries)}
	}
	return nil
}

// admit checks a file's declared size against the per-file and expanded
// limits, on top of what was already emitted.
func (w *walker) admit(path string, size int64) error {
	if size < 0 {
		return &Error{Path: path, Err: fmt.Errorf("negative size %d", size)}
	}
	if w.lim.File > 0 && size > w.lim.File {
		return &limit.Error{Kind: limit.File, Max: w.lim.File, Path: path}
	}
	if w.lim.Expanded > 0 && size > w.lim.Expanded-w.st.Expanded {
		return &limit.Error{Kind: limit.Expanded, Max: w.lim.Expanded, Path: path}
	}
	if int64(int(size)) != size {
		return &Error{Path: path, Err: fmt.Errorf("size %d does not fit in memory", size)}
	}
	return nil
}

// file admits a file of the declared size, fills a buffer from alloc with
// fill and emits it. fill must fill the whole buffer or fail.
func (w *walker) file(path string, size int64, fill func(buf []byte) error) error {
	if err := w.ctx.Err(); err != nil {
		return context.Cause(w.ctx)
	}
	if err := w.admit(path, size); err != nil {
		return err
	}
	buf, err := w.alloc(w.ctx, int(size))
	if err != nil {
		return err
	}
	index := w.st.Files
	if err := fill(buf); err != nil {
		// The buffer is the caller's: hand it back before failing.
		_ = w.emit(index, path, buf)
		return err
	}
	w.st.Files++
	w.st.Expanded += size
	return w.emit(index, path, buf)
}

// walkRaw emits data as one file named name.
func (w *walker) walkRaw(data []byte, name string) error {
	if err := w.entry(); err != nil {
		return err
	}
	return w.file(fileName(name), int64(len(data)), func(buf []byte) error {
		copy(buf, data)
		return nil
	})
}

// rawName is an entry name as valid UTF-8, for messages.
func rawName(name string) string {
	return strings.ToValidUTF8(name, "\uFFFD")
}

// fileName is the path of a non-archive file (or of a compressed stream's
// one file): the distribution's name, from its URL, made a path an archive
// member can have (protocol.CheckMemberPath, which the coordinator holds a
// top file to): cut at a NUL, valid UTF-8, past its last "/", "_" for
// none ("", ".", ".."), at most protocol.MaxPathBytes. A hostile or odd
// URL ("…/%2E%2E", "…/a%00b") would otherwise end every session that
// scanned it.
func fileName(name string) string {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = name[strings.LastIndexByte(name, '/')+1:]
	if name == "" || name == "." || name == ".." {
		return "_"
	}
	if len(name) > protocol.MaxPathBytes {
		name = strings.ToValidUTF8(name[:protocol.MaxPathBytes], "")
	}
	return name
}

// readFull fills buf from r, a *stream, and then requires r to be at its
// end, so a stream can deliver neither fewer nor more bytes than declared.
func readFull(r io.Reader, buf []byte) error {
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			// The stream ended cleanly, early; a truncated stream fails
			// with a *streamError instead.
			return errSizeMismatch
		}
		return err
	}
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	if n > 0 {
		return errSizeMismatch
	}
	if err == io.EOF {
		return nil
	}
	return err
}
