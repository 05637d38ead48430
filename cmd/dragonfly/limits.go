package main

import (
	"fmt"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"io"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// limitSettings are the scanning limits shared by scan, worker and local.
// The four size settings are each their own setting; limit.Sizes.Resolve
// decides what they mean (the reference client's eras) after every source
// (flags, environment, config files) is merged.
type limitSettings struct {
	sizes       limit.Sizes
	expanded    int64
	entries     int
	scanTimeout time.Duration
}

func limitFlags(s *cli.Settings, l *limitSettings) {
	s.Var(cli.Size(&l.sizes.Download, 0), "DRAGONFLY_MAX_DOWNLOAD_SIZE", "maximum bytes downloaded per distribution").
		DefaultText("128MB; unset, --max-scan-size or else --max-size sets it, as the 2023 client read them")
	s.Var(cli.Size(&l.sizes.Scan, 0), "DRAGONFLY_MAX_SCAN_SIZE", "the reference client's limit: alone, the download cap per distribution (2023 client); with --max-download-size, the cap of one file (2026 client)")
	s.Var(cli.Size(&l.sizes.Size, 0), "DRAGONFLY_MAX_SIZE", "the download cap per distribution, as the 2023 client's text also calls it (--max-scan-size wins; ignored with --max-download-size)")
	s.Var(cli.Size(&l.sizes.File, 0), "DRAGONFLY_MAX_FILE_SIZE", "maximum bytes of one file").
		DefaultText("64MiB; unset, --max-scan-size sets it when --max-download-size is set, as the 2026 client read them")
	s.Var(cli.Size(&l.expanded, limit.DefaultExpanded), "DRAGONFLY_MAX_EXPANDED_SIZE", "maximum total bytes of the files of one distribution")
	s.Var(cli.Int(&l.entries, limit.DefaultEntries), "DRAGONFLY_MAX_ARCHIVE_ENTRIES", "maximum entries in one archive")
	s.Var(cli.Duration(&l.scanTimeout, limit.DefaultScanTimeout), "DRAGONFLY_SCAN_TIMEOUT", "maximum YARA time for one file")
}

// resolve validates the limits and returns them with the size resolution.
func (l *limitSettings) resolve() (limit.Limits, limit.Resolution, error) {
	if l.entries <= 0 {
		return limit.Limits{}, limit.Resolution{}, atLeast("DRAGONFLY_MAX_ARCHIVE_ENTRIES", l.entries, 1)
	}
	if l.scanTimeout <= 0 {
		return limit.Limits{}, limit.Resolution{}, cli.Usage("DRAGONFLY_SCAN_TIMEOUT: must be positive")
	}
	r := l.sizes.Resolve()
	return limit.Limits{
		Download: r.Download, Expanded: l.expanded, File: r.File,
		Entries: l.entries, ScanTimeout: l.scanTimeout,
	}, r, nil
}

// printLimits tells a terminal user (dragonfly scan) what the size settings
// were taken to mean, when they set any.
func printLimits(w io.Writer, l limit.Limits, r limit.Resolution) {
	if r.Era == limit.EraDefault {
		return
	}
	fmt.Fprintf(w, "dragonfly scan: size limits (%s era): download %s, one file %s\n", r.Era, cli.FormatSize(l.Download), cli.FormatSize(l.File))
	for _, ig := range r.Ignored {
		fmt.Fprintf(w, "dragonfly scan: warning: ignored %s\n", ig)
	}
}
