package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// DirProducer yields the regular files under dir (an unpacked distribution),
// in lexical order, with paths relative to dir. Symbolic links and other
// non-regular files under dir are skipped; dir itself may be a symbolic link
// (it is the directory it names, as os.Stat sees it). A file that is another
// name of a file already yielded (a hard link: same device and inode) is a
// file of its own, reported to link and scored from the first name's
// matches: it is not read, scanned or counted toward Expanded again. The
// same limits apply as to archives.
func DirProducer(dir string, lim limit.Limits) Producer {
	return func(ctx context.Context, alloc archive.Alloc, emit archive.Emit, link archive.Link) (archive.Stats, error) {
		st := archive.Stats{Format: archive.Raw}
		seen := map[fileID]int{} // file index by device and inode
		// filepath.WalkDir does not follow a root that is a symbolic link: it
		// would see no file at all, and the directory would read clean.
		root, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return st, err
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == root {
				return nil
			}
			st.Entries++
			if lim.Entries > 0 && st.Entries > lim.Entries {
				return &limit.Error{Kind: limit.Entries, Max: int64(lim.Entries)}
			}
			if !d.Type().IsRegular() {
				if d.Type()&fs.ModeSymlink != 0 {
					st.Symlinks++
				}
				return nil
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			info, err := d.Info()
			if err != nil {
				return err
			}
			id, hasID := idOf(info)
			if first, ok := seen[id]; ok && hasID {
				index := st.Files
				st.Files++
				st.Links++
				return link(index, rel, first)
			}
			size := info.Size()
			if lim.File > 0 && size > lim.File {
				return &limit.Error{Kind: limit.File, Max: lim.File, Path: rel}
			}
			if lim.Expanded > 0 && st.Expanded+size > lim.Expanded {
				return &limit.Error{Kind: limit.Expanded, Max: lim.Expanded, Path: rel}
			}
			// Without blocking, and checked once open: a file replaced by a
			// FIFO since the walk listed it must not hang the scan in open.
			f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if fi, err := f.Stat(); err != nil {
				return err
			} else if !fi.Mode().IsRegular() || !os.SameFile(fi, info) {
				return fmt.Errorf("%s: %w", clip.Path(rel), errChanged)
			}
			buf, err := alloc(ctx, int(size))
			if err != nil {
				return err
			}
			if _, err := io.ReadFull(f, buf); err != nil {
				return fmt.Errorf("%s: %w", clip.String(rel, clip.Default), err)
			}
			// A file that grew since its size was taken: the bytes past it
			// would go unscanned.
			if n, _ := f.Read(make([]byte, 1)); n > 0 {
				return fmt.Errorf("%s: %w", clip.Path(rel), errChanged)
			}
			if hasID {
				seen[id] = st.Files
			}
			// The head first (a compressed stream is sniffed from it; on the
			// whole file Detect would inflate a bzip2 block), then the whole
			// file, for a zip found from its end (a zipapp's shebang, a
			// self-extracting stub), as archive.Walk finds it.
			if archive.Detect(buf[:min(len(buf), 1024)]) != archive.Raw || archive.Detect(buf) != archive.Raw {
				st.Archives++
			}
			if err := emit(st.Files, rel, buf); err != nil {
				return err
			}
			st.Files++
			st.Expanded += size
			return nil
		})
		return st, err
	}
}

// errChanged fails a directory whose file changed while it was walked.
var errChanged = errors.New("changed while read (replaced, or grown past the size it had when listed)")

// fileID names a file on disk whatever its path.
type fileID struct{ dev, ino uint64 }

func idOf(info fs.FileInfo) (fileID, bool) {
	s, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(s.Dev), s.Ino}, true
}
