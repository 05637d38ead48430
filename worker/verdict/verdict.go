// Package verdict is the one path from a distribution to its result, shared by
// the fleet's workers and `dragonfly scan`: fetch (or read), detect, walk,
// scan, the not-an-archive check, and the failure's classification. The same
// bytes get the same verdict whichever command scans them.
//
// A distribution either scans (a Result) or fails with an error that names
// the cause; Failure turns that error into the one-line reason, kind and
// limit a worker reports. Nothing here turns a defect into a clean result:
// a file named like an archive whose content is not one fails.
package verdict

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/dragonfly-fleet/fleet/clip"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// Source is one distribution to scan: exactly one of URL, Fetched, Path or
// Data.
type Source struct {
	// URL is downloaded through the Scanner's Fetcher.
	URL string
	// Fetched is a URL already downloaded (Scanner.Fetch), perhaps ahead of
	// its scan: its failure is the distribution's, as if Scan had fetched.
	Fetched *Fetched
	// Path is a local file (an archive or any file) or a directory (an
	// unpacked distribution).
	Path string
	// Data is a distribution in memory, named Name.
	Data []byte
	// Name is the distribution's file name; default: the last segment of the
	// URL's path (Fetched's included) or of Path.
	Name string
}

// Fetched is one download of a URL source: its bytes, or the failure, and
// what it measured.
type Fetched struct {
	URL   string
	Data  []byte
	Stats fetch.Stats
	// Err is the download's failure (a *DownloadError when the request or
	// the body failed), or nil.
	Err error
}

// Fetch downloads url through the Scanner's Fetcher, for Scan (Source.URL)
// or ahead of it (Source.Fetched).
func (s *Scanner) Fetch(ctx context.Context, url string) *Fetched {
	f := &Fetched{URL: url}
	if s.Fetcher == nil {
		f.Err = errors.New("no downloader for URL sources")
		return f
	}
	data, st, err := s.Fetcher.GetWithStats(ctx, url)
	f.Data, f.Stats = data, st
	if err != nil {
		f.Err = &DownloadError{Err: err}
	}
	return f
}

// Result is a scanned distribution.
type Result struct {
	scan.Result
	// Name is the distribution's file name.
	Name string
	// Download describes the download of a URL source (zero otherwise).
	Download fetch.Stats
}

// Scanner runs the verdict path. Engine is required; Fetcher only for URL
// sources.
type Scanner struct {
	Engine  *scan.Engine
	Fetcher *fetch.Fetcher
	// Limits bound local sources (download size: the file's size); the engine
	// applies its own limits to the files.
	Limits limit.Limits
}

// Scan scans one distribution with rs. On failure the Result still carries
// what was measured (download, files) and the error names the cause; pass it
// to Failure for the reported reason.
func (s *Scanner) Scan(ctx context.Context, rs *rules.Compiled, src Source) (Result, error) {
	res := Result{Name: src.Name}
	var data []byte
	switch {
	case src.URL != "" || src.Fetched != nil:
		f := src.Fetched
		if f == nil {
			f = s.Fetch(ctx, src.URL)
		}
		if res.Name == "" {
			res.Name = urlName(f.URL)
		}
		res.Download = f.Stats
		if f.Err != nil {
			return res, f.Err
		}
		data = f.Data
	case src.Path != "":
		if res.Name == "" {
			res.Name = filepath.Base(src.Path)
		}
		fi, err := os.Stat(src.Path)
		if err != nil {
			return res, err
		}
		if fi.IsDir() {
			sr, err := s.Engine.Run(ctx, rs, scan.DirProducer(src.Path, s.Engine.Limits()))
			res.Result = sr
			return res, err
		}
		if data, err = limit.ReadFile(src.Path, s.maxDownload()); err != nil {
			return res, err
		}
	case src.Data != nil:
		data = src.Data
	default:
		// No source at all (an empty path): not an empty file.
		return res, errors.New("nothing to scan: no URL, path or data")
	}
	sr, err := s.Engine.Scan(ctx, rs, res.Name, data)
	res.Result = sr
	if err == nil {
		err = notAnArchive(res.Name, sr.Stats.Format)
	}
	return res, err
}

func (s *Scanner) maxDownload() int64 {
	if s.Limits.Download > 0 {
		return s.Limits.Download
	}
	return limit.Defaults().Download
}

// DownloadError is a failure to fetch a distribution (HTTP status, timeout,
// refused host, size limit, connection).
type DownloadError struct{ Err error }

func (e *DownloadError) Error() string { return e.Err.Error() }
func (e *DownloadError) Unwrap() error { return e.Err }

// archiveSuffixes are the distribution file names that promise an archive:
// every archive extension pip installs from (pip's utils/filetypes.py), and
// .tbz2 and .egg.
var archiveSuffixes = []string{".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tlz", ".tar.lz", ".tar.lzma", ".tar", ".zip", ".whl", ".egg"}

// notAnArchive fails a distribution whose name promises an archive but whose
// content is not one (an HTML error page or a login page served with 200,
// random bytes): scanning it as one raw file would report it clean. The
// reason never quotes the content: a download redirected to an internal
// service must not carry that service's answer into a report.
func notAnArchive(name, format string) error {
	if format != archive.Raw.String() {
		return nil
	}
	lower := strings.ToLower(name)
	for _, suf := range archiveSuffixes {
		if strings.HasSuffix(lower, suf) {
			return &archive.Error{Err: fmt.Errorf("not a %s archive: the content has no archive signature", suf)}
		}
	}
	return nil
}

// Failure is how a failed distribution is reported: one line naming the
// distribution and the cause (bounded), its kind, and the limit it broke.
func Failure(name string, err error) *fleetv1.TaskFailure {
	f := &fleetv1.TaskFailure{
		Reason: clip.String("distribution "+name+": "+oneLine(err.Error()), protocol.MaxTextBytes),
		Kind:   Kind(err),
	}
	var le *limit.Error
	if errors.As(err, &le) {
		f.Limit = string(le.Kind)
	}
	return f
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// Kind classifies a failure: a broken limit, a refused host, a defect of the
// archive, another download failure (status, timeout, truncation, redirect,
// connection), else a scan failure.
func Kind(err error) fleetv1.FailureKind {
	var (
		le *limit.Error
		he *fetch.HostError
		ad *fetch.AddressError
		ae *archive.Error
		de *DownloadError
	)
	switch {
	case errors.As(err, &le):
		return fleetv1.FailureKind_FAILURE_KIND_LIMIT
	case errors.As(err, &he), errors.As(err, &ad):
		return fleetv1.FailureKind_FAILURE_KIND_HOST
	case errors.As(err, &ae):
		return fleetv1.FailureKind_FAILURE_KIND_ARCHIVE
	case errors.As(err, &de):
		return fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD
	}
	return fleetv1.FailureKind_FAILURE_KIND_SCAN
}

// urlName is the file name of a distribution URL (its last path segment).
func urlName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Path == "" {
		return clip.String(raw, 256)
	}
	return path.Base(u.Path)
}
