// Package testkit holds what several packages' tests share: the hostile
// distributions every verdict path must fail or scan exactly alike (and the
// demo ones, DemoCases), the archive builders they are made with (Tar, Zip,
// Gzip, GzipFast), a buffer safe for concurrent use, a fake clock, the
// frame codec of the protocol fuzzers, a test certificate authority (NewCA),
// a GET that must succeed and a test file writer (cmdkit.go), the
// coordinator tests' helpers (coordkit.go, among them WaitFor, the one poll
// for state without a change notification), gRPC stream stubs (streams.go),
// a guard for code that could hang on a FIFO (NoHang), the Go and C heap in
// use (HeapInUse, CHeapInUse), and the process's fault handlers
// (ReadFaultHandlers, WatchFaultHandlers). It is imported by tests only.
package testkit

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// TarEntry is one member of a tar that Tar builds; a non-regular Type is a
// header only.
type TarEntry struct {
	Name, Link string
	Type       byte
	Body       []byte
}

// Tar is a tar (PAX format) of the entries, regular files mode 0644.
func Tar(t testing.TB, ents ...TarEntry) []byte {
	t.Helper()
	return archive(t, ents, tar.NewWriter, func(tw *tar.Writer, e TarEntry) error {
		h := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: e.Type, Mode: 0o644, Size: int64(len(e.Body)), Format: tar.FormatPAX}
		if e.Type == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil || h.Size == 0 {
			return err
		}
		_, err := tw.Write(e.Body)
		return err
	})
}

// Gzip compresses data at gzip's best compression (what a bomb's ratio
// needs).
func Gzip(t testing.TB, data []byte) []byte {
	t.Helper()
	return gzipLevel(t, data, gzip.BestCompression)
}

// GzipFast compresses data at gzip's best speed: for large generated
// corpora (under the race detector the best compression of 100 MB takes
// minutes).
func GzipFast(t testing.TB, data []byte) []byte {
	t.Helper()
	return gzipLevel(t, data, gzip.BestSpeed)
}

func gzipLevel(t testing.TB, data []byte, level int) []byte {
	t.Helper()
	return build(t, func(w io.Writer) error {
		zw, err := gzip.NewWriterLevel(w, level)
		if err != nil {
			return err
		}
		if _, err := zw.Write(data); err != nil {
			return err
		}
		return zw.Close()
	})
}

// ZipEntry is one file of a zip that Zip builds.
type ZipEntry struct {
	Name string
	Body []byte
}

// Zip is a zip of the entries, each deflated.
func Zip(t testing.TB, ents ...ZipEntry) []byte {
	t.Helper()
	return archive(t, ents, zip.NewWriter, func(zw *zip.Writer, e ZipEntry) error {
		fw, err := zw.Create(e.Name) // deflated
		if err != nil {
			return err
		}
		_, err = fw.Write(e.Body)
		return err
	})
}

// archive writes the entries one by one with add through the writer that
// newWriter makes, then closes it.
func archive[E any, W io.Closer](t testing.TB, ents []E, newWriter func(io.Writer) W, add func(W, E) error) []byte {
	t.Helper()
	return build(t, func(w io.Writer) error {
		aw := newWriter(w)
		for _, e := range ents {
			if err := add(aw, e); err != nil {
				return err
			}
		}
		return aw.Close()
	})
}

// build returns what write writes; an error of write fails the test.
func build(t testing.TB, write func(io.Writer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const (
	HostileFileLimit     = 1 << 20
	HostileExpandedLimit = 4 << 20
	HostileEntriesLimit  = 50
	HostileDownloadLimit = 2 << 20
	HostileStall         = 2 * time.Second
)

// HostileCase is one distribution and the outcome it must have.
type HostileCase struct {
	Name string // the item of the hostile-input list
	Dist string // distribution file name (the URL's last segment)
	// serve writes the response; nil serves body with a Content-Length.
	Serve func(w http.ResponseWriter, r *http.Request)
	Body  []byte
	// want: kind and limit of the failure (KIND_UNSPECIFIED: a clean scan)
	// and the exact reason.
	Kind   fleetv1.FailureKind
	Limit  limit.Kind
	Reason string
	Files  int64 // for clean scans: files scanned
	// downloaded, when not 0, is the exact body bytes the worker must read.
	Downloaded int64
}

func HostileCases(t testing.TB) []HostileCase {
	src := []byte("import os\nprint('hello')\n")
	sdist := Tar(t, TarEntry{Name: "pkg-1.0/setup.py", Body: src}, TarEntry{Name: "pkg-1.0/pkg/__init__.py", Body: src})
	tgz := Gzip(t, sdist)
	wheel := Zip(t, ZipEntry{"pkg/__init__.py", src}, ZipEntry{"pkg-1.0.dist-info/METADATA", []byte("Name: pkg\n")})
	zeros := make([]byte, 8<<20)
	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16) // 3 MiB, over the download limit

	var manyEnts []TarEntry
	for i := range HostileEntriesLimit + 10 {
		manyEnts = append(manyEnts, TarEntry{Name: fmt.Sprintf("many-1.0/f%03d.py", i), Body: []byte("x")})
	}
	var bombEnts []TarEntry
	for i := range 8 {
		bombEnts = append(bombEnts, TarEntry{Name: fmt.Sprintf("bomb-1.0/z%d.bin", i), Body: zeros[:900<<10]})
	}

	// A zip whose local header names another file than its central
	// directory: same length, so only the names disagree.
	mismatch := Zip(t, ZipEntry{"pkg/good.py", src})
	if i := bytes.Index(mismatch, []byte("pkg/good.py")); i > 0 {
		copy(mismatch[i:], "pkg/evil.py")
	}

	return []HostileCase{
		{Name: "truncated gzip", Dist: "trunc-1.0.tar.gz", Body: tgz[:len(tgz)/2],
			Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: "distribution trunc-1.0.tar.gz: corrupt gzip stream: unexpected EOF"},
		{Name: "corrupt gzip", Dist: "corrupt-1.0.tar.gz", Body: flipByte(tgz, len(tgz)-6),
			Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: "distribution corrupt-1.0.tar.gz: corrupt gzip stream: gzip: invalid checksum"},
		{Name: "truncated zip", Dist: "trunc-1.0-py3-none-any.whl", Body: wheel[:len(wheel)-30],
			Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: "distribution trunc-1.0-py3-none-any.whl: zip end of central directory record not found"},
		{Name: "zip bomb (8 MiB of zeros, per-file limit 1 MiB)", Dist: "bomb-1.0-py3-none-any.whl", Body: Zip(t, ZipEntry{"bomb/zeros.py", zeros}),
			Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, Limit: limit.File, Reason: "distribution bomb-1.0-py3-none-any.whl: bomb/zeros.py: exceeds limit DRAGONFLY_MAX_FILE_SIZE (1048576 bytes)"},
		{Name: "tar.gz bomb (8 files of 900 KiB zeros, expanded limit 4 MiB)", Dist: "bomb-1.0.tar.gz", Body: Gzip(t, Tar(t, bombEnts...)),
			Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, Limit: limit.Expanded, Reason: "distribution bomb-1.0.tar.gz: bomb-1.0/z4.bin: exceeds limit DRAGONFLY_MAX_EXPANDED_SIZE (4194304 bytes)"},
		{Name: "more entries than allowed", Dist: "many-1.0.tar.gz", Body: Gzip(t, Tar(t, manyEnts...)),
			Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, Limit: limit.Entries, Reason: "distribution many-1.0.tar.gz: exceeds limit DRAGONFLY_MAX_ARCHIVE_ENTRIES (50 entries)"},
		{Name: "a file over the per-file limit", Dist: "file-1.0.tar.gz", Body: Gzip(t, Tar(t, TarEntry{Name: "file-1.0/big.py", Body: bytes.Repeat([]byte("a"), HostileFileLimit+1)})),
			Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, Limit: limit.File, Reason: "distribution file-1.0.tar.gz: file-1.0/big.py: exceeds limit DRAGONFLY_MAX_FILE_SIZE (1048576 bytes)"},
		{Name: "download over the limit, honest Content-Length", Dist: "big-1.0.tar", Body: big,
			Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, Limit: limit.Download, Reason: "distribution big-1.0.tar: exceeds limit DRAGONFLY_MAX_DOWNLOAD_SIZE (2097152 bytes)"},
		{Name: "download over the limit, no length (chunked)", Dist: "chunked-1.0.tar", Serve: func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(big); i += 64 << 10 {
				w.Write(big[i : i+64<<10])
				w.(http.Flusher).Flush()
			}
		}, Kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, Limit: limit.Download, Reason: "distribution chunked-1.0.tar: exceeds limit DRAGONFLY_MAX_DOWNLOAD_SIZE (2097152 bytes)"},
		{Name: "download over the limit, Content-Length understates", Dist: "liar-1.0.tar.gz", Serve: func(w http.ResponseWriter, r *http.Request) {
			// Declares 100 bytes, sends 3 MiB more on the raw connection:
			// only the declared bytes are read, which cut the gzip stream.
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n")
			buf.Write(tgz[:100])
			buf.Write(big)
			buf.Flush()
		}, Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: "distribution liar-1.0.tar.gz: corrupt gzip stream: unexpected EOF", Downloaded: 100},
		{Name: "Content-Length overstates (body ends early)", Dist: "short-1.0.tar.gz", Serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(tgz)+1000))
			w.Write(tgz)
		}, Kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, Reason: fmt.Sprintf("distribution short-1.0.tar.gz: body truncated after %d of %d bytes", len(tgz), len(tgz)+1000)},
		{Name: "entry with ..", Dist: "dotdot-1.0.tar.gz", Body: Gzip(t, Tar(t, TarEntry{Name: "dotdot-1.0/../../evil.py", Body: src})),
			Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: "distribution dotdot-1.0.tar.gz: dotdot-1.0/../../evil.py: unsafe path"},
		{Name: "absolute entry name", Dist: "abs-1.0-py3-none-any.whl", Body: Zip(t, ZipEntry{"/etc/cron.d/evil", src}),
			Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: "distribution abs-1.0-py3-none-any.whl: /etc/cron.d/evil: unsafe path"},
		{Name: "symlinks, devices, fifos are skipped, never followed", Dist: "links-1.0.tar.gz", Body: Gzip(t, Tar(t,
			TarEntry{Name: "links-1.0/setup.py", Body: src},
			TarEntry{Name: "links-1.0/passwd", Type: tar.TypeSymlink, Link: "/etc/passwd"},
			TarEntry{Name: "links-1.0/null", Type: tar.TypeChar},
			TarEntry{Name: "links-1.0/disk", Type: tar.TypeBlock},
			TarEntry{Name: "links-1.0/pipe", Type: tar.TypeFifo})),
			Files: 1},
		{Name: "a hard link out of the archive fails (tarfile cannot extract it)", Dist: "hard-1.0.tar.gz", Body: Gzip(t, Tar(t,
			TarEntry{Name: "hard-1.0/setup.py", Body: src},
			TarEntry{Name: "hard-1.0/hard", Type: tar.TypeLink, Link: "/etc/shadow"})),
			Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: "distribution hard-1.0.tar.gz: hard-1.0/hard: hard link to /etc/shadow: unsafe path"},
		{Name: "non-UTF-8 names", Dist: "names-1.0.tar.gz", Body: Gzip(t, Tar(t, TarEntry{Name: "names-1.0/caf\xe9\xff.py", Body: src})), Files: 1},
		{Name: "duplicate names in a zip", Dist: "dup-1.0-py3-none-any.whl", Body: Zip(t, ZipEntry{"pkg/x.py", src}, ZipEntry{"pkg/x.py", []byte("second")}), Files: 2},
		{Name: "zip local header disagrees with the central directory", Dist: "mismatch-1.0.zip", Body: mismatch,
			Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: "distribution mismatch-1.0.zip: pkg/good.py: local file header name differs from central directory"},
		{Name: "archive nested in an archive (scanned as one file, not unpacked)", Dist: "nest-1.0.tar.gz", Body: Gzip(t, Tar(t, TarEntry{Name: "nest-1.0/inner.tar.gz", Body: tgz})), Files: 1},
		{Name: "HTML error page where an archive was expected", Dist: "page-1.0.tar.gz", Serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html><body><h1>Service Unavailable</h1></body></html>")
		}, Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, Reason: `distribution page-1.0.tar.gz: not a .tar.gz archive: the content has no archive signature`},
		{Name: "HTTP 404", Dist: "gone-1.0.tar.gz", Serve: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			Kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, Reason: "distribution gone-1.0.tar.gz: HTTP 404 Not Found"},
		{Name: "HTTP 500", Dist: "err-1.0.tar.gz", Serve: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) },
			Kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, Reason: "distribution err-1.0.tar.gz: HTTP 500 Internal Server Error"},
		{Name: "redirect loop", Dist: "loop-1.0.tar.gz", Serve: func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, r.URL.Path, http.StatusFound) },
			Kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, Reason: "distribution loop-1.0.tar.gz: redirect loop"},
		{Name: "server stalls mid-body", Dist: "stall-1.0.tar.gz", Serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(tgz)))
			w.Write(tgz[:10])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, Kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, Reason: "distribution stall-1.0.tar.gz: download stalled: no data for 2s"},
	}
}

func flipByte(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0xff
	return out
}

// HostileLimits are the limits the hostile cases are written for.
func HostileLimits() limit.Limits {
	return limit.Limits{File: HostileFileLimit, Expanded: HostileExpandedLimit, Entries: HostileEntriesLimit, Download: HostileDownloadLimit}
}

// DemoCases are the built-in demo distributions (package demo) as cases
// to serve; they are not hostile.
func DemoCases(t testing.TB) []HostileCase {
	t.Helper()
	files, err := demo.Files()
	if err != nil {
		t.Fatal(err)
	}
	cases := make([]HostileCase, 0, len(files))
	for _, f := range files {
		cases = append(cases, HostileCase{Name: "demo " + f.Name, Dist: f.Name, Body: f.Data})
	}
	return cases
}

// HostileServer serves each case at /DIST (its Serve, else its Body with a
// Content-Length); it is closed when the test ends.
func HostileServer(t testing.TB, cases []HostileCase) *httptest.Server {
	byName := map[string]HostileCase{}
	for _, c := range cases {
		byName[c.Dist] = c
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := byName[strings.TrimPrefix(r.URL.Path, "/")]
		switch {
		case !ok:
			http.NotFound(w, r)
		case c.Serve != nil:
			c.Serve(w, r)
		default:
			w.Header().Set("Content-Length", fmt.Sprint(len(c.Body)))
			w.Write(c.Body)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Clean reports whether the case must scan clean (no failure).
func (c HostileCase) Clean() bool { return c.Kind == fleetv1.FailureKind_FAILURE_KIND_UNSPECIFIED }

// GreedyRules is one rule, "hostile", of n literal strings ("AAAA",
// "AAAAA", ...) that all match at every offset of a run of 'A's: each
// reaches libyara's 1,000,000 matches per string, what the match memory
// guard's tests need.
func GreedyRules(n int) string {
	var b strings.Builder
	b.WriteString("rule hostile { strings:")
	for i := range n {
		fmt.Fprintf(&b, " $a%d = %q", i, strings.Repeat("A", 4+i))
	}
	b.WriteString(" condition: any of them }\n")
	return b.String()
}
