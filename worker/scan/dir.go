package scan

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// DirProducer yields the regular files under dir (an unpacked distribution),
// in lexical order, with paths relative to dir. Symbolic links and other
// non-regular files are skipped. The same limits apply as to archives.
func DirProducer(dir string, lim limit.Limits) Producer {
	return func(ctx context.Context, alloc archive.Alloc, emit archive.Emit) (archive.Stats, error) {
		st := archive.Stats{Format: archive.Raw}
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
				return fmt.Errorf("%s: %w", rel, err)
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
