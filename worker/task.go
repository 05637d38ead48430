package worker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/archive"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"google.golang.org/protobuf/types/known/durationpb"
)

// runTask downloads and scans one distribution. It returns nil when ctx ended
// first (the task is handed back, not failed).
func (w *Worker) runTask(ctx context.Context, t *fleetv1.Task, rs *rules.Compiled) *fleetv1.TaskResult {
	start := time.Now()
	res := &fleetv1.TaskResult{TaskId: t.GetTaskId(), Stats: &fleetv1.TaskStats{}}
	log := w.log.With("task", t.GetTaskId(), "job", t.GetJob().GetName(), "version", t.GetJob().GetVersion(), "url", t.GetUrl())
	if w.cfg.Instant {
		res.Outcome = &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{}}
		res.Stats.WallTime = durationpb.New(time.Since(start))
		return res
	}
	name := distName(t.GetUrl())
	data, fst, err := w.fetcher.GetWithStats(ctx, t.GetUrl())
	res.Stats.BytesDownloaded = fst.Bytes
	res.Stats.DownloadTime = durationpb.New(fst.Duration)
	w.obs.Downloaded(fst.Bytes, fst.Duration, err)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return w.fail(res, name, err, fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD, start, log)
	}
	sr, err := w.engine.Scan(ctx, rs, name, data)
	res.Stats.BytesExpanded = sr.Stats.Expanded
	res.Stats.Files = int64(sr.Stats.Files)
	res.Stats.ScanTime = durationpb.New(sr.Stats.ScanTime)
	if err == nil {
		err = notAnArchive(name, sr.Stats.Format, data)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return w.fail(res, name, err, fleetv1.FailureKind_FAILURE_KIND_SCAN, start, log)
	}
	d := &fleetv1.DistributionResult{Score: sr.Score, TopFile: sr.TopFile, TopFileScore: sr.TopScore}
	for _, h := range sr.Rules {
		d.Rules = append(d.Rules, &fleetv1.RuleHit{Name: h.Name, Weight: h.Weight})
	}
	res.Outcome = &fleetv1.TaskResult_Distribution{Distribution: d}
	res.Stats.WallTime = durationpb.New(time.Since(start))
	w.obs.TaskDone(res, "")
	log.Debug("distribution scanned", "score", sr.Score, "files", sr.Stats.Files, "bytes", sr.Stats.Expanded, "scan", sr.Stats.ScanTime, "wall", time.Since(start))
	return res
}

// fail makes res a failure; kind is the failure kind when err does not name
// a more precise one (limit, host, archive).
func (w *Worker) fail(res *fleetv1.TaskResult, name string, err error, kind fleetv1.FailureKind, start time.Time, log interface {
	Warn(string, ...any)
}) *fleetv1.TaskResult {
	f := &fleetv1.TaskFailure{Reason: "distribution " + name + ": " + err.Error(), Kind: failureKind(err, kind)}
	var le *limit.Error
	if errors.As(err, &le) {
		f.Limit = string(le.Kind)
	}
	res.Outcome = &fleetv1.TaskResult_Failure{Failure: f}
	res.Stats.WallTime = durationpb.New(time.Since(start))
	w.obs.TaskDone(res, f.Limit)
	log.Warn("distribution failed", "kind", f.Kind.String(), "reason", f.Reason)
	return res
}

// failureKind classifies err; fallback is the kind of the stage that failed
// (every download error that is not a limit or a refused host is a download
// failure: status, timeout, truncation, redirect, connection).
func failureKind(err error, fallback fleetv1.FailureKind) fleetv1.FailureKind {
	var (
		le *limit.Error
		he *fetch.HostError
		ae *archive.Error
	)
	switch {
	case errors.As(err, &le):
		return fleetv1.FailureKind_FAILURE_KIND_LIMIT
	case errors.As(err, &he):
		return fleetv1.FailureKind_FAILURE_KIND_HOST
	case errors.As(err, &ae):
		return fleetv1.FailureKind_FAILURE_KIND_ARCHIVE
	}
	return fallback
}

// archiveSuffixes are the distribution file names that promise an archive.
var archiveSuffixes = []string{".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip", ".whl", ".egg"}

// notAnArchive fails a distribution whose name promises an archive but whose
// content is not one (an HTML error page or a login page served with 200):
// scanning it as one raw file would report the package clean.
func notAnArchive(name, format string, data []byte) error {
	if format != archive.Raw.String() {
		return nil
	}
	lower := strings.ToLower(name)
	for _, suf := range archiveSuffixes {
		if strings.HasSuffix(lower, suf) {
			head := data[:min(len(data), 64)]
			return &archive.Error{Err: fmt.Errorf("not a %s archive: content starts with %q", suf, head)}
		}
	}
	return nil
}

// distName is the file name of a distribution URL (its last path segment).
func distName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Path == "" {
		return raw
	}
	return path.Base(u.Path)
}
