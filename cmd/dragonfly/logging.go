package main

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/term"
)

// logFlags registers --log-level and --log-format.
func logFlags(s *settings, level, format *string) {
	s.Var(stringVal(level, "info"), "DRAGONFLY_LOG_LEVEL", "log level: debug, info, warn, error")
	s.Var(stringVal(format, "auto"), "DRAGONFLY_LOG_FORMAT", "log format: text, json, or auto (text on a terminal, JSON otherwise, e.g. in containers)")
}

// newLogger builds the process logger writing to w. JSON logs write
// durations as seconds (a float) under the same keys ("grace":25); text logs
// keep Go's notation (grace=25s).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("DRAGONFLY_LOG_LEVEL=%q: not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	jsonOpts := &slog.HandlerOptions{Level: lv, ReplaceAttr: durationSeconds}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, jsonOpts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto", "":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, jsonOpts)), nil
	}
	return nil, usageError("DRAGONFLY_LOG_FORMAT=%q: not one of text, json, auto", format)
}

// durationSeconds is a ReplaceAttr that writes a duration as seconds.
func durationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.Float64Value(a.Value.Duration().Seconds())
	}
	return a
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
