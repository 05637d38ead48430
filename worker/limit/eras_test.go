package limit

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestResolveSizes(t *testing.T) {
	const (
		dflDownload = DefaultDownload
		dflFile     = DefaultFile
	)
	tests := []struct {
		name           string
		in             Sizes
		download, file int64
		era            Era
		ignored        []string
	}{
		{name: "nothing set", in: Sizes{}, download: dflDownload, file: dflFile, era: EraDefault},
		{name: "2023: MAX_SCAN_SIZE alone is the download cap", in: Sizes{Scan: 100}, download: 100, file: dflFile, era: Era2023},
		{name: "2023: MAX_SIZE alone is the download cap", in: Sizes{Size: 200}, download: 200, file: dflFile, era: Era2023},
		{name: "2023: both, MAX_SCAN_SIZE wins", in: Sizes{Scan: 100, Size: 200}, download: 100, file: dflFile, era: Era2023, ignored: []string{"DRAGONFLY_MAX_SIZE"}},
		{name: "2023 with a file cap", in: Sizes{Scan: 100, File: 7}, download: 100, file: 7, era: Era2023},
		{name: "2026: MAX_SCAN_SIZE with MAX_DOWNLOAD_SIZE is the file cap", in: Sizes{Download: 300, Scan: 16}, download: 300, file: 16, era: Era2026},
		{name: "2026 with MAX_FILE_SIZE: it wins", in: Sizes{Download: 300, Scan: 16, File: 9}, download: 300, file: 9, era: Era2026, ignored: []string{"DRAGONFLY_MAX_SCAN_SIZE"}},
		{name: "current: MAX_DOWNLOAD_SIZE alone", in: Sizes{Download: 300}, download: 300, file: dflFile, era: EraCurrent},
		{name: "current: MAX_FILE_SIZE alone", in: Sizes{File: 5}, download: dflDownload, file: 5, era: EraCurrent},
		{name: "MAX_DOWNLOAD_SIZE beats MAX_SIZE", in: Sizes{Download: 300, Size: 200}, download: 300, file: dflFile, era: EraCurrent, ignored: []string{"DRAGONFLY_MAX_SIZE"}},
		{name: "all four", in: Sizes{Download: 300, Scan: 16, Size: 200, File: 9}, download: 300, file: 9, era: Era2026,
			ignored: []string{"DRAGONFLY_MAX_SCAN_SIZE", "DRAGONFLY_MAX_SIZE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.in.Resolve()
			if r.Download != tt.download || r.File != tt.file || r.Era != tt.era {
				t.Errorf("download %d file %d era %q; want %d %d %q", r.Download, r.File, r.Era, tt.download, tt.file, tt.era)
			}
			if len(r.Ignored) != len(tt.ignored) {
				t.Fatalf("ignored %q, want %q", r.Ignored, tt.ignored)
			}
			for i, ig := range tt.ignored {
				if !strings.HasPrefix(r.Ignored[i], ig+" ") && !strings.HasPrefix(r.Ignored[i], ig+":") {
					t.Errorf("ignored[%d] = %q, want %s", i, r.Ignored[i], ig)
				}
			}
		})
	}
}

// TestResolutionLog: one record of the effective limits (distributions
// only when set) and one warning per ignored setting.
func TestResolutionLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	r := Sizes{Download: 300, Scan: 16, Size: 200}.Resolve()
	l := Defaults()
	l.Download, l.File, l.Distributions, l.ScanTimeout = r.Download, r.File, 0, 30*time.Second
	r.Log(log, l)
	out := buf.String()
	for _, want := range []string{`msg="effective limits" era="2026 client" download_size=300 expanded_size=536870912 file_size=16 archive_entries=65536 scan_timeout=30s match_memory=67108864` + "\n",
		`level=WARN msg="limit setting ignored" setting="DRAGONFLY_MAX_SIZE (the 2023 client's download cap)`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	buf.Reset()
	l.Distributions = 7
	Sizes{}.Resolve().Log(log, l)
	if !strings.Contains(buf.String(), "era=default") || !strings.Contains(buf.String(), "distributions=7\n") || strings.Contains(buf.String(), "WARN") {
		t.Errorf("log %s", buf.String())
	}
}
