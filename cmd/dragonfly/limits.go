package main

import (
	"fmt"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"io"
	"log/slog"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// limitSettings are the scanning limits shared by scan, worker and local.
//
// Four variables bound sizes, and two of them changed meaning between the
// reference client's eras (dragonfly-api.md, "Limits"): each is its own
// setting, and resolve decides what they mean after every source (flags,
// environment, config files) is merged.
type limitSettings struct {
	sizes       sizeVars
	expanded    int64
	entries     int
	scanTimeout time.Duration
}

// sizeVars are the four size settings as given; 0 means not set (a size is
// never 0).
type sizeVars struct {
	download int64 // DRAGONFLY_MAX_DOWNLOAD_SIZE
	scan     int64 // DRAGONFLY_MAX_SCAN_SIZE
	size     int64 // DRAGONFLY_MAX_SIZE
	file     int64 // DRAGONFLY_MAX_FILE_SIZE
}

// The defaults of the two resolved size limits.
const (
	defaultDownloadLimit = limit.DefaultDownload
	defaultFileLimit     = limit.DefaultFile
)

func limitFlags(s *cli.Settings, l *limitSettings) {
	s.Var(cli.Size(&l.sizes.download, 0), "DRAGONFLY_MAX_DOWNLOAD_SIZE", "maximum bytes downloaded per distribution").
		DefaultText("128MB; unset, --max-scan-size or else --max-size sets it, as the 2023 client read them")
	s.Var(cli.Size(&l.sizes.scan, 0), "DRAGONFLY_MAX_SCAN_SIZE", "the reference client's limit: alone, the download cap per distribution (2023 client); with --max-download-size, the cap of one file (2026 client)")
	s.Var(cli.Size(&l.sizes.size, 0), "DRAGONFLY_MAX_SIZE", "the download cap per distribution, as the 2023 client's text also calls it (--max-scan-size wins; ignored with --max-download-size)")
	s.Var(cli.Size(&l.sizes.file, 0), "DRAGONFLY_MAX_FILE_SIZE", "maximum bytes of one file").
		DefaultText("64MiB; unset, --max-scan-size sets it when --max-download-size is set, as the 2026 client read them")
	s.Var(cli.Size(&l.expanded, limit.DefaultExpanded), "DRAGONFLY_MAX_EXPANDED_SIZE", "maximum total bytes of the files of one distribution")
	s.Var(cli.Int(&l.entries, limit.DefaultEntries), "DRAGONFLY_MAX_ARCHIVE_ENTRIES", "maximum entries in one archive")
	s.Var(cli.Duration(&l.scanTimeout, limit.DefaultScanTimeout), "DRAGONFLY_SCAN_TIMEOUT", "maximum YARA time for one file")
}

// The eras resolveSizes infers.
const (
	eraDefault = "default"     // none of the four set
	eraCurrent = "current"     // only MAX_DOWNLOAD_SIZE / MAX_FILE_SIZE: this fleet's names
	era2023    = "2023 client" // MAX_SCAN_SIZE or MAX_SIZE without MAX_DOWNLOAD_SIZE: the download cap
	era2026    = "2026 client" // MAX_SCAN_SIZE with MAX_DOWNLOAD_SIZE: the cap of one file
)

// sizeLimits are the resolved size limits.
type sizeLimits struct {
	download, file int64
	era            string
	// ignored are the variables that were set but have no effect, each with
	// the reason.
	ignored []string
}

// resolveSizes decides the download and file caps from the four size
// variables:
//   - download: MAX_DOWNLOAD_SIZE; else MAX_SCAN_SIZE, else MAX_SIZE (the 2023
//     meaning); else 128000000.
//   - file: MAX_FILE_SIZE; else MAX_SCAN_SIZE when MAX_DOWNLOAD_SIZE is also
//     set (the 2026 meaning); else 64 MiB.
func resolveSizes(v sizeVars) sizeLimits {
	r := sizeLimits{download: defaultDownloadLimit, file: defaultFileLimit, era: eraDefault}
	if v.download != 0 || v.file != 0 {
		r.era = eraCurrent
	}
	switch {
	case v.download != 0:
		r.download = v.download
		if v.scan != 0 {
			r.era = era2026
			if v.file == 0 {
				r.file = v.scan
			} else {
				r.ignored = append(r.ignored, "DRAGONFLY_MAX_SCAN_SIZE (the 2026 client's file cap): DRAGONFLY_MAX_FILE_SIZE wins")
			}
		}
		if v.size != 0 {
			r.ignored = append(r.ignored, "DRAGONFLY_MAX_SIZE (the 2023 client's download cap): DRAGONFLY_MAX_DOWNLOAD_SIZE wins")
		}
	case v.scan != 0:
		r.era, r.download = era2023, v.scan
		if v.size != 0 {
			r.ignored = append(r.ignored, "DRAGONFLY_MAX_SIZE: DRAGONFLY_MAX_SCAN_SIZE wins")
		}
	case v.size != 0:
		r.era, r.download = era2023, v.size
	}
	if v.file != 0 {
		r.file = v.file
	}
	return r
}

// resolve validates the limits and returns them with the size resolution.
func (l *limitSettings) resolve() (limit.Limits, sizeLimits, error) {
	if l.entries <= 0 {
		return limit.Limits{}, sizeLimits{}, cli.Usage("DRAGONFLY_MAX_ARCHIVE_ENTRIES=%d: must be positive", l.entries)
	}
	if l.scanTimeout <= 0 {
		return limit.Limits{}, sizeLimits{}, cli.Usage("DRAGONFLY_SCAN_TIMEOUT: must be positive")
	}
	r := resolveSizes(l.sizes)
	return limit.Limits{
		Download: r.download, Expanded: l.expanded, File: r.file,
		Entries: l.entries, ScanTimeout: l.scanTimeout,
	}, r, nil
}

// logLimits logs the effective limits and the era inferred, once at startup.
func logLimits(log *slog.Logger, l limit.Limits, r sizeLimits) {
	attrs := []any{"era", r.era, "download_size", l.Download, "expanded_size", l.Expanded, "file_size", l.File,
		"archive_entries", l.Entries, "scan_timeout", l.ScanTimeout}
	if l.Distributions > 0 {
		attrs = append(attrs, "distributions", l.Distributions)
	}
	log.Info("effective limits", attrs...)
	for _, ig := range r.ignored {
		log.Warn("limit setting ignored", "setting", ig)
	}
}

// printLimits tells a terminal user (dragonfly scan) what the size settings
// were taken to mean, when they set any.
func printLimits(w io.Writer, l limit.Limits, r sizeLimits) {
	if r.era == eraDefault {
		return
	}
	fmt.Fprintf(w, "dragonfly scan: size limits (%s era): download %s, one file %s\n", r.era, cli.FormatSize(l.Download), cli.FormatSize(l.File))
	for _, ig := range r.ignored {
		fmt.Fprintf(w, "dragonfly scan: warning: ignored %s\n", ig)
	}
}
