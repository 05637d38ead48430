package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/verdict"
	"google.golang.org/protobuf/types/known/durationpb"
)

// taskBound is when a task must be over, by this worker's clock: its arrival
// plus MaxTaskTime (on the monotonic clock: a step of the wall clock changes
// nothing).
//
// The task's lease deadline is not the bound: the coordinator keeps a job
// whose copies are all out past its lease (up to its MaxJobAge, 15 min by
// default) and reports it then, so a slow scan is still a verdict; failing
// it at the lease would turn it into a final failure report. MaxTaskTime
// (10 min by default) ends a task before the coordinator gives its job up.
type taskBound struct {
	at    time.Time
	limit time.Duration
}

// boundTask computes the time bound of a task that arrived at arrived.
func (c Config) boundTask(arrived time.Time) taskBound {
	return taskBound{at: arrived.Add(c.MaxTaskTime), limit: c.MaxTaskTime}
}

// taskTimeError is the cause of a task context that reached its bound.
type taskTimeError struct{ b taskBound }

func (e *taskTimeError) Error() string {
	return fmt.Sprintf("task ran past the worker's limit DRAGONFLY_MAX_TASK_TIME (%s)", e.b.limit)
}

// timeFailure is the failure of a distribution whose task ran past its bound.
func timeFailure(name string, err *taskTimeError) *fleetv1.TaskFailure {
	return &fleetv1.TaskFailure{
		Reason: clip.String("distribution "+name+": "+err.Error(), protocol.MaxTextBytes),
		Kind:   fleetv1.FailureKind_FAILURE_KIND_LIMIT,
		Limit:  string(limit.TaskTime),
	}
}

// runTask downloads and scans one distribution through the verdict path
// `dragonfly scan` uses too, within the task's time bound. It returns nil when
// ctx ended first (the task is handed back, not failed); a task that reaches
// its bound fails as the limit "time".
func (w *Worker) runTask(ctx context.Context, t *fleetv1.Task, rs *rules.Compiled, b taskBound) *fleetv1.TaskResult {
	start := time.Now()
	ctx, cancel := context.WithDeadlineCause(ctx, b.at, &taskTimeError{b: b})
	defer cancel()
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
		var f *fleetv1.TaskFailure
		if ctx.Err() != nil {
			// Whatever the download or scan made of the cancellation, the
			// cause decides: the task's bound, or the session's end.
			var te *taskTimeError
			if !errors.As(context.Cause(ctx), &te) {
				return nil
			}
			f = timeFailure(v.Name, te)
		} else {
			f = verdict.Failure(v.Name, err)
		}
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
