package worker

import (
	"context"
	"errors"
	"net/url"
	"path"
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
		return w.fail(res, name, err, start, log)
	}
	sr, err := w.engine.Scan(ctx, rs, name, data)
	res.Stats.BytesExpanded = sr.Stats.Expanded
	res.Stats.Files = int64(sr.Stats.Files)
	res.Stats.ScanTime = durationpb.New(sr.Stats.ScanTime)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return w.fail(res, name, err, start, log)
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

func (w *Worker) fail(res *fleetv1.TaskResult, name string, err error, start time.Time, log interface {
	Warn(string, ...any)
}) *fleetv1.TaskResult {
	f := &fleetv1.TaskFailure{Reason: "distribution " + name + ": " + err.Error(), Kind: failureKind(err)}
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

func failureKind(err error) fleetv1.FailureKind {
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
	default:
		var st *fetch.StatusError
		var te *fetch.TimeoutError
		if errors.As(err, &st) || errors.As(err, &te) {
			return fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD
		}
		return fleetv1.FailureKind_FAILURE_KIND_SCAN
	}
}

// distName is the file name of a distribution URL (its last path segment).
func distName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Path == "" {
		return raw
	}
	return path.Base(u.Path)
}
