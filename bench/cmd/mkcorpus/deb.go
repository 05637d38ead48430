package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// distPackages is the prefix (as written in Debian data tars) of the files
// we repack.
const distPackages = "./usr/lib/python3/dist-packages/"

// member is one regular file of a package, path relative to dist-packages.
type member struct {
	Path string
	Mode fs.FileMode
	Data []byte
}

// DebError reports a .deb that cannot be read.
type DebError struct {
	Msg string
}

func (e *DebError) Error() string { return "deb: " + e.Msg }

// readArMember finds the ar member whose name starts with prefix and
// returns its name and a reader bounded to its data.
func readArMember(r *bufio.Reader, prefix string) (string, io.Reader, error) {
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil {
		return "", nil, fmt.Errorf("ar magic: %w", err)
	}
	if string(magic) != "!<arch>\n" {
		return "", nil, &DebError{Msg: "not an ar archive"}
	}
	hdr := make([]byte, 60)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			if errors.Is(err, io.EOF) {
				return "", nil, &DebError{Msg: "no " + prefix + "* member"}
			}
			return "", nil, fmt.Errorf("ar header: %w", err)
		}
		if string(hdr[58:60]) != "`\n" {
			return "", nil, &DebError{Msg: "bad ar header"}
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return "", nil, &DebError{Msg: "bad ar member size"}
		}
		if strings.HasPrefix(name, prefix) {
			return name, io.LimitReader(r, size), nil
		}
		if _, err := r.Discard(int(size + size%2)); err != nil {
			return "", nil, fmt.Errorf("ar skip: %w", err)
		}
	}
}

// debMembers returns the regular files under /usr/lib/python3/dist-packages
// of a .deb, sorted by path, without Debian's *.egg-info/*.dist-info
// metadata. Symlinks are skipped; hard links are resolved.
func debMembers(deb io.Reader) ([]member, error) {
	br := bufio.NewReaderSize(deb, 1<<20)
	name, data, err := readArMember(br, "data.tar")
	if err != nil {
		return nil, err
	}
	var tr io.Reader
	switch path.Ext(name) {
	case ".xz":
		xr, err := xz.NewReader(bufio.NewReaderSize(data, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		tr = xr
	case ".zst":
		zr, err := zstd.NewReader(data, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		tr = zr
	case ".gz":
		gr, err := gzip.NewReader(data)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		tr = gr
	case ".tar":
		tr = data
	default:
		return nil, &DebError{Msg: "unsupported data member " + name}
	}
	t := tar.NewReader(tr)
	byPath := map[string]int{}
	var out []member
	for {
		h, err := t.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("data tar: %w", err)
		}
		rel, ok := strings.CutPrefix(h.Name, distPackages)
		if !ok || rel == "" || isDebMetadata(rel) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			var buf bytes.Buffer
			buf.Grow(int(h.Size))
			if _, err := io.Copy(&buf, t); err != nil {
				return nil, fmt.Errorf("data tar %s: %w", h.Name, err)
			}
			byPath[rel] = len(out)
			out = append(out, member{Path: rel, Mode: fs.FileMode(h.Mode).Perm(), Data: buf.Bytes()})
		case tar.TypeLink:
			src, ok := strings.CutPrefix(h.Linkname, distPackages)
			if i, found := byPath[src]; ok && found {
				byPath[rel] = len(out)
				out = append(out, member{Path: rel, Mode: out[i].Mode, Data: out[i].Data})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func isDebMetadata(rel string) bool {
	top, _, _ := strings.Cut(rel, "/")
	return strings.HasSuffix(top, ".egg-info") || strings.HasSuffix(top, ".dist-info")
}
