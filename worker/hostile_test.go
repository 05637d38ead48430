package worker

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
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// Hostile distributions through a real worker session: each must end in
// exactly the failure (kind, limit, one-line reason naming the distribution
// and the defect or limit) or the clean scan listed, and the worker must go
// on serving tasks afterwards.

// secTar builds a tar; a nil body with a non-regular type is a header only.
type secTarEnt struct {
	name, link string
	typ        byte
	body       []byte
	size       int64 // declared size when body is nil and typ is regular
}

func hostileTar(t *testing.T, ents ...secTarEnt) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func hostileGzip(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type hostileZipEnt struct {
	name string
	body []byte
}

func hostileZip(t *testing.T, ents ...hostileZipEnt) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range ents {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const (
	hostileFileLimit     = 1 << 20
	hostileExpandedLimit = 4 << 20
	hostileEntriesLimit  = 50
	hostileDownloadLimit = 2 << 20
	hostileStall         = 2 * time.Second
)

// hostileCase is one distribution and the outcome it must have.
type hostileCase struct {
	name string // the item of the hostile-input list
	dist string // distribution file name (the URL's last segment)
	// serve writes the response; nil serves body with a Content-Length.
	serve func(w http.ResponseWriter, r *http.Request)
	body  []byte
	// want: kind and limit of the failure (KIND_UNSPECIFIED: a clean scan)
	// and the exact reason.
	kind   fleetv1.FailureKind
	limit  limit.Kind
	reason string
	files  int64 // for clean scans: files scanned
	// downloaded, when not 0, is the exact body bytes the worker must read.
	downloaded int64
}

func hostileCases(t *testing.T) []hostileCase {
	src := []byte("import os\nprint('hello')\n")
	sdist := hostileTar(t, secTarEnt{name: "pkg-1.0/setup.py", body: src}, secTarEnt{name: "pkg-1.0/pkg/__init__.py", body: src})
	tgz := hostileGzip(t, sdist)
	wheel := hostileZip(t, hostileZipEnt{"pkg/__init__.py", src}, hostileZipEnt{"pkg-1.0.dist-info/METADATA", []byte("Name: pkg\n")})
	zeros := make([]byte, 8<<20)
	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16) // 3 MiB, over the download limit

	var manyEnts []secTarEnt
	for i := range hostileEntriesLimit + 10 {
		manyEnts = append(manyEnts, secTarEnt{name: fmt.Sprintf("many-1.0/f%03d.py", i), body: []byte("x")})
	}
	var bombEnts []secTarEnt
	for i := range 8 {
		bombEnts = append(bombEnts, secTarEnt{name: fmt.Sprintf("bomb-1.0/z%d.bin", i), body: zeros[:900<<10]})
	}

	// A zip whose local header names another file than its central
	// directory: same length, so only the names disagree.
	mismatch := hostileZip(t, hostileZipEnt{"pkg/good.py", src})
	if i := bytes.Index(mismatch, []byte("pkg/good.py")); i > 0 {
		copy(mismatch[i:], "pkg/evil.py")
	}

	return []hostileCase{
		{name: "truncated gzip", dist: "trunc-1.0.tar.gz", body: tgz[:len(tgz)/2],
			kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: "distribution trunc-1.0.tar.gz: corrupt gzip stream: unexpected EOF"},
		{name: "corrupt gzip", dist: "corrupt-1.0.tar.gz", body: flipByte(tgz, len(tgz)-6),
			kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: "distribution corrupt-1.0.tar.gz: corrupt gzip stream: gzip: invalid checksum"},
		{name: "truncated zip", dist: "trunc-1.0-py3-none-any.whl", body: wheel[:len(wheel)-30],
			kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: "distribution trunc-1.0-py3-none-any.whl: zip end of central directory record not found"},
		{name: "zip bomb (8 MiB of zeros, per-file limit 1 MiB)", dist: "bomb-1.0-py3-none-any.whl", body: hostileZip(t, hostileZipEnt{"bomb/zeros.py", zeros}),
			kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, limit: limit.File, reason: "distribution bomb-1.0-py3-none-any.whl: bomb/zeros.py: exceeds limit DRAGONFLY_MAX_FILE_SIZE (1048576 bytes)"},
		{name: "tar.gz bomb (8 files of 900 KiB zeros, expanded limit 4 MiB)", dist: "bomb-1.0.tar.gz", body: hostileGzip(t, hostileTar(t, bombEnts...)),
			kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, limit: limit.Expanded, reason: "distribution bomb-1.0.tar.gz: bomb-1.0/z4.bin: exceeds limit DRAGONFLY_MAX_EXPANDED_SIZE (4194304 bytes)"},
		{name: "more entries than allowed", dist: "many-1.0.tar.gz", body: hostileGzip(t, hostileTar(t, manyEnts...)),
			kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, limit: limit.Entries, reason: "distribution many-1.0.tar.gz: exceeds limit DRAGONFLY_MAX_ARCHIVE_ENTRIES (50 entries)"},
		{name: "a file over the per-file limit", dist: "file-1.0.tar.gz", body: hostileGzip(t, hostileTar(t, secTarEnt{name: "file-1.0/big.py", body: bytes.Repeat([]byte("a"), hostileFileLimit+1)})),
			kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, limit: limit.File, reason: "distribution file-1.0.tar.gz: file-1.0/big.py: exceeds limit DRAGONFLY_MAX_FILE_SIZE (1048576 bytes)"},
		{name: "download over the limit, honest Content-Length", dist: "big-1.0.tar", body: big,
			kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, limit: limit.Download, reason: "distribution big-1.0.tar: exceeds limit DRAGONFLY_MAX_SCAN_SIZE (2097152 bytes)"},
		{name: "download over the limit, no length (chunked)", dist: "chunked-1.0.tar", serve: func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(big); i += 64 << 10 {
				w.Write(big[i : i+64<<10])
				w.(http.Flusher).Flush()
			}
		}, kind: fleetv1.FailureKind_FAILURE_KIND_LIMIT, limit: limit.Download, reason: "distribution chunked-1.0.tar: exceeds limit DRAGONFLY_MAX_SCAN_SIZE (2097152 bytes)"},
		{name: "download over the limit, Content-Length understates", dist: "liar-1.0.tar.gz", serve: func(w http.ResponseWriter, r *http.Request) {
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
		}, kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: "distribution liar-1.0.tar.gz: corrupt gzip stream: unexpected EOF", downloaded: 100},
		{name: "Content-Length overstates (body ends early)", dist: "short-1.0.tar.gz", serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(tgz)+1000))
			w.Write(tgz)
		}, kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, reason: fmt.Sprintf("distribution short-1.0.tar.gz: body truncated after %d of %d bytes", len(tgz), len(tgz)+1000)},
		{name: "entry with ..", dist: "dotdot-1.0.tar.gz", body: hostileGzip(t, hostileTar(t, secTarEnt{name: "dotdot-1.0/../../evil.py", body: src})),
			kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: "distribution dotdot-1.0.tar.gz: dotdot-1.0/../../evil.py: unsafe path"},
		{name: "absolute entry name", dist: "abs-1.0-py3-none-any.whl", body: hostileZip(t, hostileZipEnt{"/etc/cron.d/evil", src}),
			kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: "distribution abs-1.0-py3-none-any.whl: /etc/cron.d/evil: unsafe path"},
		{name: "symlinks, devices, fifos are skipped, never followed", dist: "links-1.0.tar.gz", body: hostileGzip(t, hostileTar(t,
			secTarEnt{name: "links-1.0/setup.py", body: src},
			secTarEnt{name: "links-1.0/passwd", typ: tar.TypeSymlink, link: "/etc/passwd"},
			secTarEnt{name: "links-1.0/null", typ: tar.TypeChar},
			secTarEnt{name: "links-1.0/disk", typ: tar.TypeBlock},
			secTarEnt{name: "links-1.0/pipe", typ: tar.TypeFifo})),
			files: 1},
		{name: "a hard link out of the archive fails (tarfile cannot extract it)", dist: "hard-1.0.tar.gz", body: hostileGzip(t, hostileTar(t,
			secTarEnt{name: "hard-1.0/setup.py", body: src},
			secTarEnt{name: "hard-1.0/hard", typ: tar.TypeLink, link: "/etc/shadow"})),
			kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: "distribution hard-1.0.tar.gz: hard-1.0/hard: hard link to /etc/shadow: unsafe path"},
		{name: "non-UTF-8 names", dist: "names-1.0.tar.gz", body: hostileGzip(t, hostileTar(t, secTarEnt{name: "names-1.0/caf\xe9\xff.py", body: src})), files: 1},
		{name: "duplicate names in a zip", dist: "dup-1.0-py3-none-any.whl", body: hostileZip(t, hostileZipEnt{"pkg/x.py", src}, hostileZipEnt{"pkg/x.py", []byte("second")}), files: 2},
		{name: "zip local header disagrees with the central directory", dist: "mismatch-1.0.zip", body: mismatch,
			kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: "distribution mismatch-1.0.zip: pkg/good.py: local file header name differs from central directory"},
		{name: "archive nested in an archive (scanned as one file, not unpacked)", dist: "nest-1.0.tar.gz", body: hostileGzip(t, hostileTar(t, secTarEnt{name: "nest-1.0/inner.tar.gz", body: tgz})), files: 1},
		{name: "HTML error page where an archive was expected", dist: "page-1.0.tar.gz", serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html><body><h1>Service Unavailable</h1></body></html>")
		}, kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE, reason: `distribution page-1.0.tar.gz: not a .tar.gz archive: the content has no archive signature`},
		{name: "HTTP 404", dist: "gone-1.0.tar.gz", serve: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, reason: "distribution gone-1.0.tar.gz: HTTP 404 Not Found"},
		{name: "HTTP 500", dist: "err-1.0.tar.gz", serve: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) },
			kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, reason: "distribution err-1.0.tar.gz: HTTP 500 Internal Server Error"},
		{name: "redirect loop", dist: "loop-1.0.tar.gz", serve: func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, r.URL.Path, http.StatusFound) },
			kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, reason: "distribution loop-1.0.tar.gz: redirect loop"},
		{name: "server stalls mid-body", dist: "stall-1.0.tar.gz", serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(tgz)))
			w.Write(tgz[:10])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, kind: fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, reason: "distribution stall-1.0.tar.gz: download stalled: no data for 2s"},
	}
}

func flipByte(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0xff
	return out
}

func TestHostileDistributions(t *testing.T) {
	cases := hostileCases(t)
	byName := map[string]hostileCase{}
	for _, c := range cases {
		byName[c.dist] = c
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := byName[strings.TrimPrefix(r.URL.Path, "/")]
		switch {
		case !ok:
			http.NotFound(w, r)
		case c.serve != nil:
			c.serve(w, r)
		default:
			w.Header().Set("Content-Length", fmt.Sprint(len(c.body)))
			w.Write(c.body)
		}
	}))
	defer srv.Close()

	e := startWorker(t, 2, func(cfg *Config) {
		cfg.Limits = limit.Limits{File: hostileFileLimit, Expanded: hostileExpandedLimit, Entries: hostileEntriesLimit, Download: hostileDownloadLimit}
		cfg.Fetch = fetch.Config{AllowedHosts: []string{srv.URL}, Attempts: 1, StallTimeout: hostileStall}
	})
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	var tasks []*fleetv1.Task
	for i, c := range cases {
		tasks = append(tasks, &fleetv1.Task{TaskId: uint64(i + 1), Url: srv.URL + "/" + c.dist, RulesHash: demoHash, Job: &fleetv1.JobRef{Name: c.dist, Version: "1.0"}})
	}
	s.assign(tasks...)
	got := s.results(len(cases))
	for i, c := range cases {
		r := got[uint64(i+1)]
		f := r.GetFailure()
		if c.kind == fleetv1.FailureKind_FAILURE_KIND_UNSPECIFIED {
			if d := r.GetDistribution(); d == nil || r.GetStats().GetFiles() != c.files {
				t.Errorf("%s: %v, want a clean scan of %d files", c.name, r, c.files)
			}
			continue
		}
		if f == nil {
			t.Errorf("%s: %v, want a failure", c.name, r)
			continue
		}
		if c.downloaded != 0 && r.GetStats().GetBytesDownloaded() != c.downloaded {
			t.Errorf("%s: downloaded %d bytes, want %d", c.name, r.GetStats().GetBytesDownloaded(), c.downloaded)
		}
		if f.GetKind() != c.kind || f.GetLimit() != string(c.limit) || f.GetReason() != c.reason {
			t.Errorf("%s:\n got kind %v limit %q reason %q\nwant kind %v limit %q reason %q", c.name, f.GetKind(), f.GetLimit(), f.GetReason(), c.kind, c.limit, c.reason)
		}
	}
	// The worker is still serving: a demo package scans as usual.
	s.assign(e.task(uint64(len(cases)+1), "reqeusts-2.31.0.tar.gz", demoHash))
	if d := s.results(1)[uint64(len(cases)+1)].GetDistribution(); d.GetScore() != 8 {
		t.Fatalf("after the hostile batch: %v, want reqeusts scoring 8", d)
	}
}

// Rules that do not compile are reported on the stream with the file and
// line; tasks for them are handed back, never failed (the package is not at
// fault), and the worker keeps its good rules.
func TestRulesThatDoNotCompile(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "broken", Sources: map[string]string{
		"good": `rule g { condition: true }`,
		"bad":  "rule b {\n  strings: $a = \"x\"\n  condition: $a and\n}",
	}}}})
	var st *fleetv1.RulesStatus
	for st == nil {
		st = s.next().GetRulesStatus()
	}
	if st.GetHash() != "broken" || st.GetError() != "rules do not compile: bad.yara:4: syntax error" {
		t.Fatalf("rules status %v, want an error for hash broken at bad.yara:4", st)
	}
	s.assign(e.task(1, "reqeusts-2.31.0.tar.gz", "broken"), e.task(2, "reqeusts-2.31.0.tar.gz", demoHash))
	var returned []uint64
	var results map[uint64]*fleetv1.TaskResult
	for results == nil || returned == nil {
		m := s.next()
		if ids := m.GetTaskReturn().GetTaskIds(); len(ids) > 0 {
			returned = ids
		}
		for _, r := range m.GetResults().GetResults() {
			results = map[uint64]*fleetv1.TaskResult{r.GetTaskId(): r}
		}
	}
	if len(returned) != 1 || returned[0] != 1 {
		t.Errorf("handed back %v, want [1]", returned)
	}
	if d := results[2].GetDistribution(); d.GetScore() != 8 {
		t.Errorf("task 2 with the good rules: %v, want score 8", results[2])
	}
}
