package scan

import (
	"context"
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
// non-regular files are skipped. A file that is another name of a file
// already yielded (a hard link: same device and inode) is a file of its own,
// reported to link and scored from the first name's matches: it is not read,
// scanned or counted toward Expanded again. The same limits apply as to
// archives.
func DirProducer(dir string, lim limit.Limits) Producer {
	return func(ctx context.Context, alloc archive.Alloc, emit archive.Emit, link archive.Link) (archive.Stats, error) {
		st := archive.Stats{Format: archive.Raw}
		seen := map[fileID]int{} // file index by device and inode
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == dir {
				return nil
			}
			st.Entries++
			if lim.Entries > 0 && st.Entries > lim.Entries {
				return &limit.Error{Kind: limit.Entries, Max: int64(lim.Entries)}
			}
			if !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(dir, p)
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
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			buf, err := alloc(ctx, int(size))
			if err != nil {
				return err
			}
			if _, err := io.ReadFull(f, buf); err != nil {
				return fmt.Errorf("%s: %w", clip.String(rel, clip.Default), err)
			}
			if hasID {
				seen[id] = st.Files
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

// fileID names a file on disk whatever its path.
type fileID struct{ dev, ino uint64 }

func idOf(info fs.FileInfo) (fileID, bool) {
	s, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(s.Dev), s.Ino}, true
}
