package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/dragonfly-fleet/fleet/bench/internal/dist"
)

// The release stream (bench/run's stream rows): every main release of the
// corpus followed by its next version, as PyPI sees a project publish. The
// next version (version + ".post1") is an sdist and a wheel of the same
// files but for streamChanged of its .py files, which get one more line,
// and the files that name the version (PKG-INFO, METADATA, setup.py,
// RECORD). Written to OUT/stream/{dists/,manifest.json}: the originals are
// hard links to (or copies of) OUT/dists/ files, so `mkcorpus extract -out
// OUT/stream` and `dragonfly devapi --packages OUT/stream/dists` work as for
// the main corpus.

// streamChanged is how many .py files of a release change in its next
// version.
const streamChanged = 3

// nextVersion is the version that follows v in the stream.
func nextVersion(v string) string { return v + ".post1" }

// changeForNext returns the members of the next version: the streamChanged
// .py files whose path digests are lowest get a line appended.
func changeForNext(ms []member, next string) []member {
	var py []int
	for i, m := range ms {
		if strings.HasSuffix(m.Path, ".py") {
			py = append(py, i)
		}
	}
	key := func(i int) string {
		s := sha256.Sum256([]byte(ms[i].Path))
		return string(s[:])
	}
	sort.Slice(py, func(a, b int) bool { return key(py[a]) < key(py[b]) })
	out := slices.Clone(ms)
	for _, i := range py[:min(len(py), streamChanged)] {
		m := out[i]
		m.Data = append(slices.Clone(m.Data), fmt.Sprintf("\n# changed in %s (fleet bench release stream)\n", next)...)
		out[i] = m
	}
	return out
}

// buildStream writes OUT/stream from the main corpus' packages (their
// .debs in the cache). Like build, it does nothing when the stream is up to
// date.
func buildStream(ctx context.Context, cfg config) (*dist.Manifest, error) {
	main, err := dist.ReadManifest(cfg.Out)
	if err != nil {
		return nil, fmt.Errorf("stream: the main corpus first: %w", err)
	}
	sum := main.ListSHA256 + fmt.Sprintf("+stream%d", streamChanged)
	scfg := cfg
	scfg.Out, scfg.Mega = filepath.Join(cfg.Out, "stream"), false
	if !cfg.Force {
		if m, err := dist.ReadManifest(scfg.Out); err == nil && m.ListSHA256 == sum {
			cfg.Log.Info("stream up to date", "dir", scfg.Out)
			return m, nil
		}
	}
	refs, _, err := readList(cfg.List)
	if err != nil {
		return nil, err
	}
	byProject := map[string]debRef{}
	for _, d := range refs {
		if d.in(groupMain) {
			byProject[projectName(d.Pkg)] = d
		}
	}
	var releases []dist.Entry // the main sdists, one per release
	for _, e := range main.Distributions {
		if e.Kind == dist.Sdist {
			releases = append(releases, e)
		}
	}
	var need []debRef
	for _, e := range releases {
		d, ok := byProject[e.Name]
		if !ok {
			return nil, fmt.Errorf("stream: %s is not in %s", e.Name, cfg.List)
		}
		need = append(need, d)
	}
	paths, err := fetch(ctx, cfg, need)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(scfg.Out, "dists")
	if err := os.RemoveAll(scfg.Out); err != nil {
		return nil, fmt.Errorf("clean stream: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create stream: %w", err)
	}
	// The originals, linked.
	var entries []dist.Entry
	for _, e := range main.Distributions {
		src := filepath.Join(cfg.Out, filepath.FromSlash(e.File))
		if err := linkOrCopy(src, filepath.Join(scfg.Out, filepath.FromSlash(e.File))); err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	next := make([]dist.Entry, 2*len(releases))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(cfg.Jobs, 1))
	for i, r := range releases {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			d := need[i]
			ms, err := readDeb(paths[d.Pkg])
			if err != nil {
				return err
			}
			name, version, origin := r.Name, nextVersion(r.Version), d.Pkg+"="+d.Version
			ms = changeForNext(ms, version)
			sd, wh, err := writeRelease(scfg.Out, name, version, origin, ms)
			if err != nil {
				return err
			}
			next[2*i], next[2*i+1] = sd, wh
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	entries = append(entries, next...)
	sort.Slice(entries, func(i, j int) bool { return entries[i].File < entries[j].File })
	m := &dist.Manifest{ListSHA256: sum, Distributions: entries, Totals: dist.Sum(entries)}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode stream manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(scfg.Out, dist.ManifestName), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write stream manifest: %w", err)
	}
	return m, nil
}

// linkOrCopy makes dst the same file as src: a hard link, else a copy.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	if err := dist.CopyFile(src, dst); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	return nil
}
