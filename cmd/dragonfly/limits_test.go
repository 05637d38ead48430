package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/worker/limit"
)

// TestLimitsAcrossSources: the era is decided after flags, environment and
// config files are merged, whichever source set each of the four.
func TestLimitsAcrossSources(t *testing.T) {
	tests := []struct {
		name     string
		src      clitest.Sources
		download int64
		file     int64
		era      limit.Era
	}{
		{name: "2023 environment", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "100"}}, download: 100, file: limit.DefaultFile, era: limit.Era2023},
		{name: "2023 Config.toml", src: clitest.Sources{TOML: "max_scan_size = 100"}, download: 100, file: limit.DefaultFile, era: limit.Era2023},
		{name: "2023 flag", src: clitest.Sources{Args: []string{"--max-scan-size", "100"}}, download: 100, file: limit.DefaultFile, era: limit.Era2023},
		{name: "2026 environment", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_DOWNLOAD_SIZE": "32MiB", "DRAGONFLY_MAX_SCAN_SIZE": "16MiB"}}, download: 32 << 20, file: 16 << 20, era: limit.Era2026},
		{name: "2026 split: download in Config.toml, scan size in the environment", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "16MiB"}, TOML: `max_download_size = "32MiB"`}, download: 32 << 20, file: 16 << 20, era: limit.Era2026},
		{name: "2026 split: download by flag, scan size in Config-dev.toml", src: clitest.Sources{Args: []string{"--max-download-size=32MiB"}, DevTOML: `max_scan_size = "16MiB"`}, download: 32 << 20, file: 16 << 20, era: limit.Era2026},
		{name: "2026 split over both files", src: clitest.Sources{TOML: `max_scan_size = "16MiB"`, DevTOML: `max_download_size = "32MiB"`}, download: 32 << 20, file: 16 << 20, era: limit.Era2026},
		{name: "2023 env MAX_SIZE with a TOML file cap", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_SIZE": "200"}, TOML: "max_file_size = 7"}, download: 200, file: 7, era: limit.Era2023},
		{name: "flag over env for the same variable", src: clitest.Sources{Args: []string{"--max-scan-size", "300"}, Env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "100"}}, download: 300, file: limit.DefaultFile, era: limit.Era2023},
		{name: "defaults", download: limit.DefaultDownload, file: limit.DefaultFile, era: limit.EraDefault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w workerCmd
			s := program.Settings("dragonfly worker", "")
			w.register(s)
			if err := tt.src.Parse(t, s); err != nil {
				t.Fatal(err)
			}
			if err := w.f.validate(); err != nil {
				t.Fatal(err)
			}
			if w.f.cfg.Limits.Download != tt.download || w.f.cfg.Limits.File != tt.file || w.f.sizes.Era != tt.era {
				t.Errorf("download %d file %d era %q; want %d %d %q", w.f.cfg.Limits.Download, w.f.cfg.Limits.File, w.f.sizes.Era, tt.download, tt.file, tt.era)
			}
		})
	}
}

func TestLogLimits(t *testing.T) {
	var w workerCmd
	s := program.Settings("dragonfly worker", "")
	w.register(s)
	env := map[string]string{"DRAGONFLY_MAX_DOWNLOAD_SIZE": "32MiB", "DRAGONFLY_MAX_SCAN_SIZE": "16MiB", "DRAGONFLY_MAX_SIZE": "1GB", "DRAGONFLY_SCAN_TIMEOUT": "30"}
	if err := s.Parse(nil, clitest.Env(env), ""); err != nil {
		t.Fatal(err)
	}
	if err := w.f.validate(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w.f.sizes.Log(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: cli.DurationSeconds})), w.f.cfg.Limits)
	out := buf.String()
	for _, want := range []string{`"msg":"effective limits","era":"2026 client","download_size":33554432,"expanded_size":536870912,"file_size":16777216,"archive_entries":65536,"scan_timeout":30}`,
		`"msg":"limit setting ignored","setting":"DRAGONFLY_MAX_SIZE`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if w.f.cfg.Limits.ScanTimeout != 30*time.Second {
		t.Errorf("scan timeout %v", w.f.cfg.Limits.ScanTimeout)
	}
}
