package main

import (
	"bytes"
	"github.com/dragonfly-fleet/fleet/internal/cli"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestResolveSizes(t *testing.T) {
	const (
		dflDownload = defaultDownloadLimit
		dflFile     = defaultFileLimit
	)
	tests := []struct {
		name           string
		in             sizeVars
		download, file int64
		era            string
		ignored        []string
	}{
		{name: "nothing set", in: sizeVars{}, download: dflDownload, file: dflFile, era: eraDefault},
		{name: "2023: MAX_SCAN_SIZE alone is the download cap", in: sizeVars{scan: 100}, download: 100, file: dflFile, era: era2023},
		{name: "2023: MAX_SIZE alone is the download cap", in: sizeVars{size: 200}, download: 200, file: dflFile, era: era2023},
		{name: "2023: both, MAX_SCAN_SIZE wins", in: sizeVars{scan: 100, size: 200}, download: 100, file: dflFile, era: era2023, ignored: []string{"DRAGONFLY_MAX_SIZE"}},
		{name: "2023 with a file cap", in: sizeVars{scan: 100, file: 7}, download: 100, file: 7, era: era2023},
		{name: "2026: MAX_SCAN_SIZE with MAX_DOWNLOAD_SIZE is the file cap", in: sizeVars{download: 300, scan: 16}, download: 300, file: 16, era: era2026},
		{name: "2026 with MAX_FILE_SIZE: it wins", in: sizeVars{download: 300, scan: 16, file: 9}, download: 300, file: 9, era: era2026, ignored: []string{"DRAGONFLY_MAX_SCAN_SIZE"}},
		{name: "current: MAX_DOWNLOAD_SIZE alone", in: sizeVars{download: 300}, download: 300, file: dflFile, era: eraCurrent},
		{name: "current: MAX_FILE_SIZE alone", in: sizeVars{file: 5}, download: dflDownload, file: 5, era: eraCurrent},
		{name: "MAX_DOWNLOAD_SIZE beats MAX_SIZE", in: sizeVars{download: 300, size: 200}, download: 300, file: dflFile, era: eraCurrent, ignored: []string{"DRAGONFLY_MAX_SIZE"}},
		{name: "all four", in: sizeVars{download: 300, scan: 16, size: 200, file: 9}, download: 300, file: 9, era: era2026,
			ignored: []string{"DRAGONFLY_MAX_SCAN_SIZE", "DRAGONFLY_MAX_SIZE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := resolveSizes(tt.in)
			if r.download != tt.download || r.file != tt.file || r.era != tt.era {
				t.Errorf("download %d file %d era %q; want %d %d %q", r.download, r.file, r.era, tt.download, tt.file, tt.era)
			}
			if len(r.ignored) != len(tt.ignored) {
				t.Fatalf("ignored %q, want %q", r.ignored, tt.ignored)
			}
			for i, ig := range tt.ignored {
				if !strings.HasPrefix(r.ignored[i], ig+" ") && !strings.HasPrefix(r.ignored[i], ig+":") {
					t.Errorf("ignored[%d] = %q, want %s", i, r.ignored[i], ig)
				}
			}
		})
	}
}

// TestLimitsAcrossSources: the era is decided after flags, environment and
// config files are merged, whichever source set each of the four.
func TestLimitsAcrossSources(t *testing.T) {
	tests := []struct {
		name          string
		args          []string
		env           map[string]string
		toml, devToml string
		download      int64
		file          int64
		era           string
	}{
		{name: "2023 environment", env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "100"}, download: 100, file: defaultFileLimit, era: era2023},
		{name: "2023 Config.toml", toml: "max_scan_size = 100", download: 100, file: defaultFileLimit, era: era2023},
		{name: "2023 flag", args: []string{"--max-scan-size", "100"}, download: 100, file: defaultFileLimit, era: era2023},
		{name: "2026 environment", env: map[string]string{"DRAGONFLY_MAX_DOWNLOAD_SIZE": "32MiB", "DRAGONFLY_MAX_SCAN_SIZE": "16MiB"}, download: 32 << 20, file: 16 << 20, era: era2026},
		{name: "2026 split: download in Config.toml, scan size in the environment", toml: `max_download_size = "32MiB"`,
			env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "16MiB"}, download: 32 << 20, file: 16 << 20, era: era2026},
		{name: "2026 split: download by flag, scan size in Config-dev.toml", args: []string{"--max-download-size=32MiB"}, devToml: `max_scan_size = "16MiB"`,
			download: 32 << 20, file: 16 << 20, era: era2026},
		{name: "2026 split over both files", toml: `max_scan_size = "16MiB"`, devToml: `max_download_size = "32MiB"`, download: 32 << 20, file: 16 << 20, era: era2026},
		{name: "2023 env MAX_SIZE with a TOML file cap", env: map[string]string{"DRAGONFLY_MAX_SIZE": "200"}, toml: "max_file_size = 7", download: 200, file: 7, era: era2023},
		{name: "flag over env for the same variable", args: []string{"--max-scan-size", "300"}, env: map[string]string{"DRAGONFLY_MAX_SCAN_SIZE": "100"}, download: 300, file: defaultFileLimit, era: era2023},
		{name: "defaults", download: defaultDownloadLimit, file: defaultFileLimit, era: eraDefault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w workerCmd
			s := program.Settings("dragonfly worker", "")
			w.register(s)
			if err := s.Parse(tt.args, envMap(tt.env), configDir(t, tt.toml, tt.devToml)); err != nil {
				t.Fatal(err)
			}
			if err := w.f.validate(); err != nil {
				t.Fatal(err)
			}
			if w.f.limits.Download != tt.download || w.f.limits.File != tt.file || w.f.sizes.era != tt.era {
				t.Errorf("download %d file %d era %q; want %d %d %q", w.f.limits.Download, w.f.limits.File, w.f.sizes.era, tt.download, tt.file, tt.era)
			}
		})
	}
}

func TestLogLimits(t *testing.T) {
	var w workerCmd
	s := program.Settings("dragonfly worker", "")
	w.register(s)
	env := map[string]string{"DRAGONFLY_MAX_DOWNLOAD_SIZE": "32MiB", "DRAGONFLY_MAX_SCAN_SIZE": "16MiB", "DRAGONFLY_MAX_SIZE": "1GB", "DRAGONFLY_SCAN_TIMEOUT": "30"}
	if err := s.Parse(nil, envMap(env), ""); err != nil {
		t.Fatal(err)
	}
	if err := w.f.validate(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logLimits(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: cli.DurationSeconds})), w.f.limits, w.f.sizes)
	out := buf.String()
	for _, want := range []string{`"msg":"effective limits","era":"2026 client","download_size":33554432,"expanded_size":536870912,"file_size":16777216,"archive_entries":65536,"scan_timeout":30}`,
		`"msg":"limit setting ignored","setting":"DRAGONFLY_MAX_SIZE`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if w.f.limits.ScanTimeout != 30*time.Second {
		t.Errorf("scan timeout %v", w.f.limits.ScanTimeout)
	}
}
