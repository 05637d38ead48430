package coordinator

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// sameJobAPI answers the first lease with one job and holds every later
// lease until its context ends, counting them: a second lease before the
// loader's pause is one it made at once.
type sameJobAPI struct {
	*fakeAPI
	job mainframe.Job

	mu     sync.Mutex
	leases int
}

func (a *sameJobAPI) Lease(ctx context.Context, n int) ([]mainframe.Job, error) {
	a.mu.Lock()
	a.leases++
	k := a.leases
	a.mu.Unlock()
	if k > 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return []mainframe.Job{a.job}, nil
}

func (a *sameJobAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leases
}

// TestLeaseOfNoNewJobPauses, on synctest's clock: an answer whose every job
// is one the coordinator already has (its report waits in the outbox, or it
// is being scanned) adds no work, and the loader pauses LoadDuration as
// after an empty answer. It leased again at once: an API answering every
// lease with such a job (hostile, or broken) spun the loop at full speed,
// each turn a log line and an outbox write.
func TestLeaseOfNoNewJobPauses(t *testing.T) {
	for _, where := range []string{"report waiting", "job in flight"} {
		t.Run(where, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				x := job("x", "u1")
				api := &sameJobAPI{fakeAPI: newFakeAPI(), job: x}
				c, err := New(Config{API: api, Prefetch: DefaultPrefetch, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				defer c.out.Close()
				if err := c.rules.update(context.Background()); err != nil {
					t.Fatal(err)
				}
				switch where {
				case "report waiting":
					if err := c.out.Put(outbox.Entry{Report: mainframe.Report{Name: x.Name, Version: x.Version, Reason: "failed"}, LeasedAt: time.Now()}); err != nil {
						t.Fatal(err)
					}
				case "job in flight":
					c.disp.Admit([]dispatch.Job{{Name: x.Name, Version: x.Version, Distributions: x.Distributions, RulesHash: "h1", LeasedAt: time.Now()}}, time.Now())
				}
				// A ready worker with free credits, so the loader leases.
				sctx, stopSession := context.WithCancel(context.Background())
				s := &chanServerStream{StreamStub: testkit.StreamStub{Ctx: sctx}, In: make(chan *fleetv1.ConnectRequest, 16), Out: make(chan *fleetv1.ConnectResponse, 64)}
				sessionDone := make(chan error, 1)
				go func() { sessionDone <- c.Connect(s) }()
				s.In <- hello("w", 2)
				s.In <- &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: "h1"}}}
				synctest.Wait()
				if n := c.disp.Capacity("h1"); n < 1 {
					t.Fatalf("capacity %d, want free credits", n)
				}

				ctx, cancel := context.WithCancel(context.Background())
				loaded := make(chan error, 1)
				go func() { loaded <- c.loadLoop(ctx) }()
				synctest.Wait()
				if n := api.count(); n != 1 {
					t.Errorf("%d leases at once, want 1 and a pause of LoadDuration", n)
				}
				cancel()
				<-loaded
				stopSession()
				<-sessionDone
				c.WaitSessions()
			})
		})
	}
}
