package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/dragonfly-fleet/fleet/bench/internal/dist"
)

// megaName and megaVersion name the synthesised big wheel.
const (
	megaName    = "fleet_bench_mega"
	megaVersion = "1.0"
)

// config is what one mkcorpus run does.
type config struct {
	// List is the pinned package list. Default bench/corpus.list.
	List string
	// Cache holds downloaded .debs (kept between runs). Default bench/cache.
	Cache string
	// Out is the corpus directory; dists/ and big/ in it are replaced on
	// build. Default bench/corpus.
	Out string
	// Jobs bounds the packages repacked or extracted at once (each holds one
	// package's files in memory, up to ~80 MB). Default GOMAXPROCS.
	Jobs int
	// Download runs apt-get download for .debs missing from Cache. Default true.
	Download bool
	// Mega also builds the synthesised big wheel. Default true.
	Mega bool
	// Only, when > 0, builds just the first Only main packages. Default 0 (all).
	Only int
	// Force rebuilds even when the manifest already matches the list. Default false.
	Force bool
	// Log receives progress. Required.
	Log *slog.Logger
}

// ChecksumError reports a .deb whose SHA256 differs from the list.
type ChecksumError struct {
	File, Want, Got string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: sha256 %s, list says %s", e.File, e.Got, e.Want)
}

// MissingError reports list entries whose .deb is absent from the cache.
type MissingError struct{ Pkgs []string }

func (e *MissingError) Error() string { return "not in cache: " + strings.Join(e.Pkgs, " ") }

func readList(path string) ([]debRef, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read list: %w", err)
	}
	refs, err := parseList(bytes.NewReader(b))
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	return refs, hex.EncodeToString(sum[:]), nil
}

// debFile is where apt-get download puts pkg=version ("1:2.0-1" -> "1%3a2.0-1").
func debFile(cache string, d debRef) (string, bool) {
	pat := filepath.Join(cache, d.Pkg+"_"+strings.ReplaceAll(d.Version, ":", "%3a")+"_*.deb")
	m, _ := filepath.Glob(pat)
	if len(m) == 0 {
		return "", false
	}
	sort.Strings(m)
	return m[0], true
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fetch makes sure every ref's .deb is in the cache with the listed SHA256
// and returns their paths by package name.
func fetch(ctx context.Context, cfg config, refs []debRef) (map[string]string, error) {
	if err := os.MkdirAll(cfg.Cache, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	var missing []string
	for _, d := range refs {
		if _, ok := debFile(cfg.Cache, d); !ok {
			missing = append(missing, d.Pkg+"="+d.Version)
		}
	}
	if len(missing) > 0 && !cfg.Download {
		return nil, &MissingError{Pkgs: missing}
	}
	for len(missing) > 0 {
		n := min(len(missing), 40)
		cfg.Log.Info("apt-get download", "packages", n)
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, missing[:n]...)...)
		cmd.Dir = cfg.Cache
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get download: %w: %s", err, bytes.TrimSpace(out))
		}
		missing = missing[n:]
	}
	paths := map[string]string{}
	for _, d := range refs {
		p, ok := debFile(cfg.Cache, d)
		if !ok {
			return nil, &MissingError{Pkgs: []string{d.Pkg + "=" + d.Version}}
		}
		got, err := fileSHA256(p)
		if err != nil {
			return nil, err
		}
		if d.SHA256 != got {
			return nil, &ChecksumError{File: p, Want: d.SHA256, Got: got}
		}
		paths[d.Pkg] = p
	}
	return paths, nil
}

func readDeb(path string) ([]member, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open deb: %w", err)
	}
	defer f.Close()
	ms, err := debMembers(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return ms, nil
}

// writeArchive creates out/rel through a temporary file and fills in the
// entry's size and digest.
func writeArchive(out, rel string, e *dist.Entry, write func(io.Writer) (counts, error)) error {
	p := filepath.Join(out, filepath.FromSlash(rel))
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", rel, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	c, err := write(cw)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("rename %s: %w", rel, err)
	}
	e.File, e.Size, e.SHA256 = rel, cw.n, hex.EncodeToString(h.Sum(nil))
	e.Files, e.Expanded = c.Files, c.Expanded
	return nil
}

// writeRelease writes a release as PyPI usually carries it, an sdist and a
// wheel of the same files, under out/dists, and returns their entries.
func writeRelease(out, name, version, origin string, ms []member) (sd, wh dist.Entry, err error) {
	sd = dist.Entry{Kind: dist.Sdist, Name: name, Version: version, Debs: []string{origin}}
	if err := writeArchive(out, "dists/"+sdistName(name, version), &sd, func(w io.Writer) (counts, error) {
		return writeSdist(w, name, version, origin, ms)
	}); err != nil {
		return sd, wh, err
	}
	wh = dist.Entry{Kind: dist.Wheel, Name: name, Version: version, Debs: []string{origin}}
	if err := writeArchive(out, "dists/"+wheelName(name, version), &wh, func(w io.Writer) (counts, error) {
		return writeWheel(w, name, version, origin, ms)
	}); err != nil {
		return sd, wh, err
	}
	return sd, wh, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// EmptyPackageError reports a main package with nothing under dist-packages.
type EmptyPackageError struct{ Pkg string }

func (e *EmptyPackageError) Error() string { return e.Pkg + ": no files under dist-packages" }

// upToDate reports whether out already holds a corpus built from this list.
func upToDate(cfg config, listSum string) bool {
	m, err := dist.ReadManifest(cfg.Out)
	if err != nil || m.ListSHA256 != listSum {
		return false
	}
	es := m.Distributions
	if cfg.Mega && m.Big.Mega != nil {
		es = append(es, *m.Big.Mega)
	} else if cfg.Mega {
		return false
	}
	for _, e := range es {
		st, err := os.Stat(filepath.Join(cfg.Out, filepath.FromSlash(e.File)))
		if err != nil || st.Size() != e.Size {
			return false
		}
	}
	return true
}

// build downloads, repacks and writes the manifest.
func build(ctx context.Context, cfg config) (*dist.Manifest, error) {
	refs, listSum, err := readList(cfg.List)
	if err != nil {
		return nil, err
	}
	if cfg.Only > 0 {
		listSum += fmt.Sprintf("+only=%d", cfg.Only)
	}
	if !cfg.Mega {
		listSum += "+no-mega"
	}
	if !cfg.Force && upToDate(cfg, listSum) {
		cfg.Log.Info("corpus up to date", "dir", cfg.Out)
		return dist.ReadManifest(cfg.Out)
	}
	var mains, megas []debRef
	for _, d := range refs {
		if d.in(groupMain) && (cfg.Only <= 0 || len(mains) < cfg.Only) {
			mains = append(mains, d)
		}
		if d.in(groupMega) && cfg.Mega {
			megas = append(megas, d)
		}
	}
	var need []debRef
	for _, d := range refs {
		if slices.ContainsFunc(mains, func(m debRef) bool { return m.Pkg == d.Pkg }) ||
			slices.ContainsFunc(megas, func(m debRef) bool { return m.Pkg == d.Pkg }) {
			need = append(need, d)
		}
	}
	paths, err := fetch(ctx, cfg, need)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"dists", "big"} {
		if err := os.RemoveAll(filepath.Join(cfg.Out, sub)); err != nil {
			return nil, fmt.Errorf("clean %s: %w", sub, err)
		}
		if err := os.MkdirAll(filepath.Join(cfg.Out, sub), 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", sub, err)
		}
	}
	_ = os.Remove(filepath.Join(cfg.Out, dist.ManifestName))

	entries := make([]dist.Entry, 2*len(mains))
	names := map[string]string{}
	for _, d := range mains {
		n := projectName(d.Pkg)
		if prev, dup := names[n]; dup {
			return nil, &ListError{Line: d.Line, Msg: fmt.Sprintf("%s and %s both map to project %s", prev, d.Pkg, n)}
		}
		names[n] = d.Pkg
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(cfg.Jobs, 1))
	var done atomic.Int64
	for i, d := range mains {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			ms, err := readDeb(paths[d.Pkg])
			if err != nil {
				return err
			}
			if len(ms) == 0 {
				return &EmptyPackageError{Pkg: d.Pkg}
			}
			name, version, origin := projectName(d.Pkg), projectVersion(d.Version), d.Pkg+"="+d.Version
			sd, wh, err := writeRelease(cfg.Out, name, version, origin, ms)
			if err != nil {
				return err
			}
			entries[2*i], entries[2*i+1] = sd, wh
			if n := done.Add(1); n%25 == 0 {
				cfg.Log.Info("repacked", "packages", n, "of", len(mains))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].File < entries[j].File })
	m := &dist.Manifest{ListSHA256: listSum, Distributions: entries, Totals: dist.Sum(entries)}
	var single *dist.Entry
	for i := range entries {
		e := &entries[i]
		if e.Kind == dist.Wheel && (single == nil || e.Expanded > single.Expanded) {
			single = e
		}
	}
	if single != nil {
		m.Big.Single = single.File
	}
	if len(megas) > 0 {
		mega, err := buildMega(ctx, cfg, megas, paths)
		if err != nil {
			return nil, err
		}
		m.Big.Mega = mega
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Out, dist.ManifestName), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	return m, nil
}

// buildMega merges the files of the mega packages, in list order, into one
// wheel; a path already present from an earlier package is skipped.
func buildMega(ctx context.Context, cfg config, megas []debRef, paths map[string]string) (*dist.Entry, error) {
	e := &dist.Entry{Kind: dist.Wheel, Name: megaName, Version: megaVersion}
	for _, d := range megas {
		e.Debs = append(e.Debs, d.Pkg+"="+d.Version)
	}
	err := writeArchive(cfg.Out, "big/"+wheelName(megaName, megaVersion), e, func(w io.Writer) (counts, error) {
		ww := newWheelWriter(w)
		for _, d := range megas {
			if err := ctx.Err(); err != nil {
				return ww.c, err
			}
			ms, err := readDeb(paths[d.Pkg])
			if err != nil {
				return ww.c, err
			}
			for _, m := range ms {
				if _, err := ww.add(m.Path, m.Mode, m.Data); err != nil {
					return ww.c, err
				}
			}
		}
		return ww.finish(megaName, megaVersion, strings.Join(e.Debs, ", "))
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// resolve prints the list with each "-" SHA256 replaced by the one apt
// knows for that exact version.
func resolve(ctx context.Context, cfg config, w io.Writer) error {
	f, err := os.Open(cfg.List)
	if err != nil {
		return fmt.Errorf("open list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		fields := strings.Fields(line)
		if strings.HasPrefix(strings.TrimSpace(line), "#") || len(fields) != 4 || fields[2] != "-" {
			fmt.Fprintln(w, line)
			continue
		}
		out, err := exec.CommandContext(ctx, "apt-cache", "show", fields[0]+"="+fields[1]).Output()
		if err != nil {
			return fmt.Errorf("apt-cache show %s=%s: %w", fields[0], fields[1], err)
		}
		sum := ""
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "SHA256: "); ok {
				sum = strings.TrimSpace(v)
				break
			}
		}
		if sum == "" {
			return &ListError{Line: n, Msg: "apt-cache shows no SHA256 for " + fields[0]}
		}
		fmt.Fprintf(w, "%s %s %s %s\n", fields[0], fields[1], sum, fields[3])
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read list: %w", err)
	}
	return nil
}

// extractCorpus unpacks every main distribution (or, with big, the big
// targets) into to/<archive file name>/.
func extractCorpus(ctx context.Context, cfg config, to string, big bool) (dist.Stats, error) {
	m, err := dist.ReadManifest(cfg.Out)
	if err != nil {
		return dist.Stats{}, err
	}
	files := m.Files(big)
	var nfiles, nbytes atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(cfg.Jobs, 1))
	for _, f := range files {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			st, err := dist.Extract(filepath.Join(cfg.Out, filepath.FromSlash(f)), filepath.Join(to, filepath.Base(f)))
			nfiles.Add(int64(st.Files))
			nbytes.Add(st.Bytes)
			return err
		})
	}
	err = g.Wait()
	return dist.Stats{Files: int(nfiles.Load()), Bytes: nbytes.Load()}, err
}

// stats prints the manifest's totals and the big targets' entries as JSON.
func stats(cfg config, w io.Writer) error {
	m, err := dist.ReadManifest(cfg.Out)
	if err != nil {
		return err
	}
	out := struct {
		Totals dist.Totals `json:"totals"`
		Single *dist.Entry `json:"big_single"`
		Mega   *dist.Entry `json:"big_mega"`
	}{Totals: m.Totals, Mega: m.Big.Mega}
	for i := range m.Distributions {
		if m.Distributions[i].File == m.Big.Single {
			out.Single = &m.Distributions[i]
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode stats: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
