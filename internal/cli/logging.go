package cli

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/term"
)

// LogFlags registers --log-level and --log-format (DRAGONFLY_LOG_LEVEL,
// DRAGONFLY_LOG_FORMAT).
func LogFlags(s *Settings, level, format *string) {
	s.Var(String(level, "info"), "DRAGONFLY_LOG_LEVEL", "log level: debug, info, warn, error")
	s.Var(String(format, "auto"), "DRAGONFLY_LOG_FORMAT", "log format: text, json, or auto (text on a terminal, JSON otherwise, e.g. in containers)")
}

// NewLogger builds the process logger writing to w. JSON logs write
// durations as seconds (a float) under the same keys ("grace":25); text logs
// keep Go's notation (grace=25s). A bad level or format is a usage error.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, Usage("DRAGONFLY_LOG_LEVEL=%q: not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	jsonOpts := &slog.HandlerOptions{Level: lv, ReplaceAttr: DurationSeconds}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, jsonOpts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto", "":
		if IsTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, jsonOpts)), nil
	}
	return nil, Usage("DRAGONFLY_LOG_FORMAT=%q: not one of text, json, auto", format)
}

// DurationSeconds is a slog ReplaceAttr that writes a duration as seconds.
func DurationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.Float64Value(a.Value.Duration().Seconds())
	}
	return a
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// TerminalWidth is the width of w when it is a terminal of at least 40
// columns; 80 otherwise. ok reports whether w is a terminal.
func TerminalWidth(w io.Writer) (width int, ok bool) {
	f, isFile := w.(*os.File)
	if !isFile || !term.IsTerminal(int(f.Fd())) {
		return 80, false
	}
	if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols >= 40 {
		return cols, true
	}
	return 80, true
}
