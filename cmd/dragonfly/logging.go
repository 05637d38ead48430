package main

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/worker/limit"
	"golang.org/x/term"
)

// logFlags registers --log-level and --log-format.
func logFlags(s *settings, level, format *string) {
	s.String(level, "log-level", "info", "log level: debug, info, warn, error", "DRAGONFLY_LOG_LEVEL")
	s.String(format, "log-format", "auto", "log format: text, json, or auto (text on a terminal, JSON otherwise, e.g. in containers)", "DRAGONFLY_LOG_FORMAT")
}

// newLogger builds the process logger writing to w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("DRAGONFLY_LOG_LEVEL=%q: not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto", "":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError("DRAGONFLY_LOG_FORMAT=%q: not one of text, json, auto", format)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// limitFlags registers the scanning limits shared by scan, worker and local.
func limitFlags(s *settings, l *limit.Limits) {
	s.Size(&l.Download, "max-scan-size", 128_000_000, "maximum bytes downloaded per distribution", "DRAGONFLY_MAX_SCAN_SIZE", "DRAGONFLY_MAX_SIZE", "DRAGONFLY_MAX_DOWNLOAD_SIZE")
	s.Size(&l.Expanded, "max-expanded-size", 512<<20, "maximum total bytes of the files of one distribution", "DRAGONFLY_MAX_EXPANDED_SIZE")
	s.Size(&l.File, "max-file-size", 64<<20, "maximum bytes of one file", "DRAGONFLY_MAX_FILE_SIZE")
	s.Int(&l.Entries, "max-archive-entries", 65536, "maximum entries in one archive", "DRAGONFLY_MAX_ARCHIVE_ENTRIES")
	s.Duration(&l.ScanTimeout, "scan-timeout", 10*time.Second, "maximum YARA time for one file", "DRAGONFLY_SCAN_TIMEOUT")
}

func validateLimits(l limit.Limits) error {
	if l.Entries <= 0 {
		return usageError("DRAGONFLY_MAX_ARCHIVE_ENTRIES=%d: must be positive", l.Entries)
	}
	if l.ScanTimeout <= 0 {
		return usageError("DRAGONFLY_SCAN_TIMEOUT: must be positive")
	}
	return nil
}
