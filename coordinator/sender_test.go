package coordinator

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
)

// TestReportMaxAgeAfterRestartOnAClockSteppedBack, on synctest's clock: a
// coordinator restarts on a durable outbox written while its wall clock
// read an hour later than it reads now (NTP stepped it back, or the file
// came from a host whose clock is ahead). The API refuses the report it
// holds, retryably, for good: the report is given up once the report max
// age has passed since the restart. Read back, the lease's start lay in the
// future (a time read from the file has no monotonic reading): the report
// was retried, every 30 s, for the hour of the step on top.
func TestReportMaxAgeAfterRestartOnAClockSteppedBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		written, err := outbox.Open(outbox.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		ahead := time.Now().Add(time.Hour)
		r := mainframe.Report{Name: "p", Version: "1.0", Attempt: intp(1), AssignmentID: strp("as-p"), Reason: "failed"}
		if err := written.Put(outbox.Entry{Report: r, LeasedAt: ahead, Enqueued: ahead}); err != nil {
			t.Fatal(err)
		}
		if err := written.Close(); err != nil {
			t.Fatal(err)
		}

		ob, err := outbox.Open(outbox.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		api := newFakeAPI()
		api.FailReports(&mainframe.APIError{Endpoint: "PUT /package", Status: 503})
		obs := abandonObserver{abandoned: make(chan outbox.Report, 10)}
		c, err := New(Config{API: api, Outbox: ob, Observer: obs, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer ob.Close()
		ctx, cancel := context.WithCancel(context.Background())
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			c.sendLoop(ctx)
		}()
		defer func() {
			cancel()
			<-sent
		}()
		time.Sleep(c.cfg.ReportMaxAge + time.Minute)
		synctest.Wait()
		select {
		case got := <-obs.abandoned:
			if got.Name != "p" {
				t.Fatalf("abandoned %+v, want p", got)
			}
		default:
			t.Fatalf("report still retried %s after the restart (%d tries; report max age %s): its lease read back as beginning in an hour",
				c.cfg.ReportMaxAge+time.Minute, api.ReportTries(), c.cfg.ReportMaxAge)
		}
		if n := c.out.Len(); n != 0 {
			t.Fatalf("outbox holds %d reports, want none", n)
		}
	})
}

// blockingReports is an API whose reports hang until the send's context
// ends (a shutdown), saying when one has started.
type blockingReports struct {
	*fakeAPI
	started chan struct{}
}

func (b blockingReports) Report(ctx context.Context, _ mainframe.Report) error {
	b.started <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// TestSendCutByShutdownKeepsTheReportDue: a report whose send the shutdown
// cuts goes back to the outbox as it was, due at once and no try counted,
// so the shutdown flush or the next start sends it without waiting a
// backoff. Counted as a failure, it waited up to 30 s past a restart in
// memory, and its tries neared the report max age for a send that never
// reached the API.
func TestSendCutByShutdownKeepsTheReportDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ob, err := outbox.Open(outbox.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer ob.Close()
		api := blockingReports{fakeAPI: newFakeAPI(), started: make(chan struct{}, 1)}
		c, err := New(Config{API: api, Outbox: ob, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		r := mainframe.Report{Name: "p", Version: "1.0", Attempt: intp(1), AssignmentID: strp("as-p"), Reason: "failed"}
		if err := ob.Put(outbox.Entry{Report: r, LeasedAt: time.Now(), Enqueued: time.Now()}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			c.sendLoop(ctx)
		}()
		<-api.started
		cancel()
		<-sent
		e, ok := ob.Next(time.Now())
		if !ok {
			next, _ := ob.NextDue()
			t.Fatalf("the report cut by the shutdown is not due (next due %s from now): it was counted as a failed try", next.Sub(time.Now()))
		}
		if e.Tries != 0 {
			t.Fatalf("the report has %d tries, want 0: a send the shutdown cut is no try", e.Tries)
		}
	})
}
