package worker

import (
	"context"
	"errors"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/verdict"
	"google.golang.org/protobuf/types/known/durationpb"
)

// runTask downloads and scans one distribution through the verdict path
// `dragonfly scan` uses too. It returns nil when ctx ended first (the task is
// handed back, not failed).
func (w *Worker) runTask(ctx context.Context, t *fleetv1.Task, rs *rules.Compiled) *fleetv1.TaskResult {
	start := time.Now()
	res := &fleetv1.TaskResult{TaskId: t.GetTaskId(), Stats: &fleetv1.TaskStats{}}
	log := w.log.With("task", t.GetTaskId(), "job", clip.String(t.GetJob().GetName(), 256),
		"version", clip.String(t.GetJob().GetVersion(), 256), "url", clip.String(t.GetUrl(), 1024))
	v, err := w.verdict.Scan(ctx, rs, verdict.Source{URL: t.GetUrl()})
	res.Stats.BytesDownloaded = v.Download.Bytes
	res.Stats.DownloadTime = durationpb.New(v.Download.Duration)
	res.Stats.BytesExpanded = v.Stats.Expanded
	res.Stats.Files = int64(v.Stats.Files)
	res.Stats.ScanTime = durationpb.New(v.Stats.ScanTime)
	if v.Download.Attempts > 0 || err == nil {
		w.obs.Downloaded(v.Download.Bytes, v.Download.Duration, downloadErr(err))
	}
	res.Stats.WallTime = durationpb.New(time.Since(start))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		f := verdict.Failure(v.Name, err)
		res.Outcome = &fleetv1.TaskResult_Failure{Failure: f}
		w.obs.TaskDone(res, f.GetLimit())
		log.Warn("distribution failed", "kind", f.GetKind().String(), "reason", f.GetReason())
		return res
	}
	d := &fleetv1.DistributionResult{Score: v.Score, TopFile: v.TopFile, TopFileScore: v.TopScore}
	for _, h := range v.Rules {
		d.Rules = append(d.Rules, &fleetv1.RuleHit{Name: h.Name, Weight: h.Weight})
	}
	res.Outcome = &fleetv1.TaskResult_Distribution{Distribution: d}
	w.obs.TaskDone(res, "")
	log.Debug("distribution scanned", "score", v.Score, "files", v.Stats.Files, "bytes", v.Stats.Expanded, "scan", v.Stats.ScanTime, "wall", time.Since(start))
	return res
}

// downloadErr is err when the download itself failed, else nil.
func downloadErr(err error) error {
	var de *verdict.DownloadError
	if errors.As(err, &de) {
		return err
	}
	return nil
}
