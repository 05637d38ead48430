package limit

import "log/slog"

// Sizes are the four size settings as a deployment gave them (flags,
// environment and config files merged); 0 means not set (a size is never
// 0). Two of them changed meaning between the reference client's eras
// (dragonfly-api.md, "Limits"): Resolve decides what they mean together.
type Sizes struct {
	Download int64 // DRAGONFLY_MAX_DOWNLOAD_SIZE
	Scan     int64 // DRAGONFLY_MAX_SCAN_SIZE
	Size     int64 // DRAGONFLY_MAX_SIZE
	File     int64 // DRAGONFLY_MAX_FILE_SIZE
}

// Era is the reference client era Resolve infers from the size settings set.
type Era string

// The eras.
const (
	EraDefault Era = "default"     // none of the four set
	EraCurrent Era = "current"     // only MAX_DOWNLOAD_SIZE / MAX_FILE_SIZE: this fleet's names
	Era2023    Era = "2023 client" // MAX_SCAN_SIZE or MAX_SIZE without MAX_DOWNLOAD_SIZE: the download cap
	Era2026    Era = "2026 client" // MAX_SCAN_SIZE with MAX_DOWNLOAD_SIZE: the cap of one file
)

// Resolution is what the size settings were taken to mean.
type Resolution struct {
	// Download and File are Limits.Download and Limits.File.
	Download, File int64
	Era            Era
	// Ignored are the variables that were set but have no effect, each
	// with the reason.
	Ignored []string
}

// Resolve decides the download and file caps from the four size settings:
//   - download: MAX_DOWNLOAD_SIZE; else MAX_SCAN_SIZE, else MAX_SIZE (the 2023
//     meaning); else DefaultDownload (128000000).
//   - file: MAX_FILE_SIZE; else MAX_SCAN_SIZE when MAX_DOWNLOAD_SIZE is also
//     set (the 2026 meaning); else DefaultFile (64 MiB).
func (v Sizes) Resolve() Resolution {
	r := Resolution{Download: DefaultDownload, File: DefaultFile, Era: EraDefault}
	if v.Download != 0 || v.File != 0 {
		r.Era = EraCurrent
	}
	switch {
	case v.Download != 0:
		r.Download = v.Download
		if v.Scan != 0 {
			r.Era = Era2026
			if v.File == 0 {
				r.File = v.Scan
			} else {
				r.Ignored = append(r.Ignored, "DRAGONFLY_MAX_SCAN_SIZE (the 2026 client's file cap): DRAGONFLY_MAX_FILE_SIZE wins")
			}
		}
		if v.Size != 0 {
			r.Ignored = append(r.Ignored, "DRAGONFLY_MAX_SIZE (the 2023 client's download cap): DRAGONFLY_MAX_DOWNLOAD_SIZE wins")
		}
	case v.Scan != 0:
		r.Era, r.Download = Era2023, v.Scan
		if v.Size != 0 {
			r.Ignored = append(r.Ignored, "DRAGONFLY_MAX_SIZE: DRAGONFLY_MAX_SCAN_SIZE wins")
		}
	case v.Size != 0:
		r.Era, r.Download = Era2023, v.Size
	}
	if v.File != 0 {
		r.File = v.File
	}
	return r
}

// Log logs the effective limits l and the era r inferred ("effective
// limits"; Distributions only when set), and warns of each ignored setting.
func (r Resolution) Log(log *slog.Logger, l Limits) {
	attrs := []any{"era", string(r.Era), "download_size", l.Download, "expanded_size", l.Expanded, "file_size", l.File,
		"archive_entries", l.Entries, "scan_timeout", l.ScanTimeout, "match_memory", l.MatchMemory}
	if l.Distributions > 0 {
		attrs = append(attrs, "distributions", l.Distributions)
	}
	log.Info("effective limits", attrs...)
	for _, ig := range r.Ignored {
		log.Warn("limit setting ignored", "setting", ig)
	}
}
