// Package limit defines the bounds a worker enforces on one job and the error
// that names the bound a distribution broke; how a deployment's four size
// settings are read across the reference client's eras (Sizes.Resolve);
// and the bounded read of a local distribution (ReadFile).
package limit

import (
	"fmt"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/dragonfly-fleet/fleet/rules/matchmem"
)

// Limits bound the work and memory one job may cost. Every violation fails the
// package with an error naming the limit; it is never reported as clean.
type Limits struct {
	// Download bounds the bytes read from the network for one distribution
	// (DRAGONFLY_MAX_DOWNLOAD_SIZE; in a 2023 client's environment
	// DRAGONFLY_MAX_SCAN_SIZE or DRAGONFLY_MAX_SIZE). Default 128000000.
	Download int64
	// Expanded bounds the total bytes of the regular files of one distribution
	// (DRAGONFLY_MAX_EXPANDED_SIZE). Default 512 MiB.
	Expanded int64
	// File bounds one file (DRAGONFLY_MAX_FILE_SIZE; in a 2026 client's
	// environment DRAGONFLY_MAX_SCAN_SIZE). Default 64 MiB.
	File int64
	// Entries bounds the entries of any kind in one archive
	// (DRAGONFLY_MAX_ARCHIVE_ENTRIES). Default 65536.
	Entries int
	// Distributions bounds the distributions of one job
	// (DRAGONFLY_MAX_DISTRIBUTIONS). Default 128.
	Distributions int
	// ScanTimeout bounds the YARA time of one file (DRAGONFLY_SCAN_TIMEOUT).
	// Default 10 s.
	ScanTimeout time.Duration
	// MatchMemory bounds the memory libyara holds for the matches of one
	// file's scan (DRAGONFLY_MAX_MATCH_MEMORY; package rules/matchmem):
	// every match of every string is a 56-byte record plus up to
	// YR_CONFIG_MAX_MATCH_DATA bytes of matched data, kept until the scan
	// ends. libyara caps each string at 1,000,000 matches but not their sum,
	// so one crafted file can make a scan hold gigabytes. A scan whose
	// matches pass the bound is stopped and fails its distribution with a
	// match_memory limit error naming the file; a scan under it is
	// untouched. Each scanner thread may hold this much at once, so
	// threads × MatchMemory bounds a worker. Default 64 MiB.
	MatchMemory int64
}

// The default limits (dragonfly-api.md, "Limits").
const (
	DefaultDownload      = 128_000_000
	DefaultExpanded      = 512 << 20
	DefaultFile          = 64 << 20
	DefaultEntries       = 65536
	DefaultDistributions = 128
	DefaultScanTimeout   = 10 * time.Second
	// DefaultMatchMemory is this fleet's own bound (no reference client
	// has one): the match memory guard's.
	DefaultMatchMemory = matchmem.DefaultBound
)

// Defaults returns the documented default limits.
func Defaults() Limits {
	return Limits{
		Download:      DefaultDownload,
		Expanded:      DefaultExpanded,
		File:          DefaultFile,
		Entries:       DefaultEntries,
		Distributions: DefaultDistributions,
		ScanTimeout:   DefaultScanTimeout,
		MatchMemory:   DefaultMatchMemory,
	}
}

// WithDefaults returns l with each field that is zero or negative set to
// its default (Defaults).
func (l Limits) WithDefaults() Limits {
	d := Defaults()
	l.Download = bound.Or(l.Download, d.Download)
	l.Expanded = bound.Or(l.Expanded, d.Expanded)
	l.File = bound.Or(l.File, d.File)
	l.Entries = bound.Or(l.Entries, d.Entries)
	l.Distributions = bound.Or(l.Distributions, d.Distributions)
	l.ScanTimeout = bound.Or(l.ScanTimeout, d.ScanTimeout)
	l.MatchMemory = bound.Or(l.MatchMemory, d.MatchMemory)
	return l
}

// Kind names one limit. Its value is stable: metrics use it as a label.
type Kind string

// The limits.
const (
	Download      Kind = "download_size"
	Expanded      Kind = "expanded_size"
	File          Kind = "file_size"
	Entries       Kind = "archive_entries"
	Distributions Kind = "distributions"
	ScanTimeout   Kind = "scan_timeout"
	// MatchMemory: the matches libyara keeps for one file took more memory
	// than the scan engine allows (a file crafted to match millions of
	// times).
	MatchMemory Kind = "match_memory"
	// TaskTime: a worker's task (download, unpacking, scan) ran past
	// DRAGONFLY_MAX_TASK_TIME.
	TaskTime Kind = "time"
	// MessageSize: a distribution's result does not fit in one message the
	// coordinator accepts.
	MessageSize Kind = "message_size"
	// XzDictionary: an xz block declares a dictionary over the one of xz's
	// largest preset (-9, 64 MiB), which the decoder would allocate whole
	// per running distribution. A bound of the worker's, not a defect of
	// the archive (xz decodes it), and not a setting.
	XzDictionary Kind = "xz_dictionary"
	// StringMatches: one string of the rules matched a file more often than
	// libyara keeps matches of a string (YR_MAX_STRING_MATCHES, 1,000,000,
	// fixed when libyara is built): its later matches were dropped, and a
	// condition reading them (an offset, "in", "at", a count past it) was
	// decided without them. Not a setting.
	StringMatches Kind = "string_matches"
)

// Env returns the environment variable that sets the limit.
func (k Kind) Env() string {
	switch k {
	case Download:
		return "DRAGONFLY_MAX_DOWNLOAD_SIZE"
	case Expanded:
		return "DRAGONFLY_MAX_EXPANDED_SIZE"
	case File:
		return "DRAGONFLY_MAX_FILE_SIZE"
	case Entries:
		return "DRAGONFLY_MAX_ARCHIVE_ENTRIES"
	case Distributions:
		return "DRAGONFLY_MAX_DISTRIBUTIONS"
	case ScanTimeout:
		return "DRAGONFLY_SCAN_TIMEOUT"
	case MatchMemory:
		return "DRAGONFLY_MAX_MATCH_MEMORY"
	case TaskTime:
		return "DRAGONFLY_MAX_TASK_TIME"
	}
	return string(k)
}

// Error reports a broken limit.
type Error struct {
	Kind Kind
	// Max is the configured bound: bytes, entries, distributions, or
	// nanoseconds for ScanTimeout.
	Max int64
	// Path is the file or entry that broke it, when there is one; exact (the
	// message bounds and quotes it).
	Path string
}

func (e *Error) Error() string {
	var bound string
	switch e.Kind {
	case ScanTimeout:
		bound = time.Duration(e.Max).String()
	case Entries:
		bound = fmt.Sprintf("%d entries", e.Max)
	case Distributions:
		bound = fmt.Sprintf("%d distributions", e.Max)
	case StringMatches:
		bound = fmt.Sprintf("%d matches of one string", e.Max)
	default:
		bound = fmt.Sprintf("%d bytes", e.Max)
	}
	what := "exceeds"
	switch e.Kind {
	case ScanTimeout:
		what = "YARA scan exceeded"
	case XzDictionary:
		what = "xz block dictionary exceeds"
	case StringMatches:
		what = "YARA string matches exceed libyara's"
	}
	if e.Path != "" {
		return fmt.Sprintf("%s: %s limit %s (%s)", clip.Path(e.Path), what, e.Kind.Env(), bound)
	}
	return fmt.Sprintf("%s limit %s (%s)", what, e.Kind.Env(), bound)
}
