package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Attacks by token holders on a session: results it was never asked for,
// rule-set sends it makes others wait for, results under rules the
// coordinator no longer remembers; and status pages that would turn into
// API calls.

// ended waits for the worker's stream to end and returns its status.
func (w *fakeWorker) ended() error {
	w.t.Helper()
	for {
		select {
		case _, ok := <-w.in:
			if !ok {
				return <-w.recv
			}
		case <-time.After(10 * time.Second):
			w.t.Fatal("the session did not end")
			return nil
		}
	}
}

// TestResultFloodEndsTheSession: a Results message with more results than a
// worker could hold (twice MaxWorkerSlots plus Prefetch) ends the session
// with InvalidArgument at once (before: 2,000,000 results for made-up tasks
// in 10 messages of 1.9 MB took 2 s of the coordinator's CPU under the
// dispatcher's lock, and the session stayed).
func TestResultFloodEndsTheSession(t *testing.T) {
	f := startFleet(t, newFakeAPI(), func(c *Config) { c.HeartbeatInterval = time.Second })
	w := f.worker("flood", 1)
	w.ready()
	const per = 2*(DefaultMaxWorkerSlots+DefaultPrefetch) + 1
	rs := make([]*fleetv1.TaskResult, per)
	for i := range rs {
		rs[i] = &fleetv1.TaskResult{TaskId: uint64(1e9 + i), Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{}}}
	}
	start := time.Now()
	w.answer(rs...)
	err := w.ended()
	t.Logf("%d results in one message (%d bytes): session ended after %s: %v", per, proto.Size(&fleetv1.TaskResults{Results: rs}), time.Since(start), err)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "results in one message") {
		t.Fatalf("flood: %v, want InvalidArgument naming the cap", err)
	}
	if late := f.c.Snapshot().Dispatch.Counters.ResultsLate; late != 0 {
		t.Fatalf("%d results reached the dispatcher", late)
	}
}

// TestResultForATaskNeverHeldEndsTheSession: a result for a task id the
// session never held is a protocol violation: the session ends with
// InvalidArgument and its tasks go elsewhere.
func TestResultForATaskNeverHeldEndsTheSession(t *testing.T) {
	api := newFakeAPI(job("p", "u1"))
	f, w := readyWorker(t, api, "w", 1)
	tk := w.tasks(1)[0]
	w.answer(&fleetv1.TaskResult{TaskId: tk.GetTaskId() + 1000, Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{Reason: "x"}}})
	if err := w.ended(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "never held") {
		t.Fatalf("made-up task id: %v, want InvalidArgument", err)
	}
	honest := f.worker("honest", 1)
	honest.ready()
	honest.answer(result(honest.tasks(1)[0], ""))
	if r := api.WaitReports(t, 1)[0]; r.Success == nil {
		t.Fatalf("report %+v", r)
	}
}

// TestLateResultsOfHandedBackTasksAreDroppedQuietly: a worker that hands a
// task back (draining) and then answers it anyway, or answers a task twice,
// keeps its session: those results are dropped, the job is reported from
// the answers that count.
func TestLateResultsOfHandedBackTasksAreDroppedQuietly(t *testing.T) {
	api := newFakeAPI(job("p", "u1", "u2"))
	f, a := readyWorker(t, api, "a", 1)
	ts := a.tasks(2)
	a.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Draining{Draining: &fleetv1.Draining{}}})
	a.send(&fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_TaskReturn{TaskReturn: &fleetv1.TaskReturn{TaskIds: []uint64{ts[1].GetTaskId()}, Reason: "draining"}}})
	a.answer(result(ts[1], "x", "heavy"), result(ts[0], "f", "r"))
	a.answer(result(ts[0], "f", "r"))
	b := f.worker("b", 1)
	b.ready()
	tb := b.tasks(1)[0]
	if tb.GetUrl() != ts[1].GetUrl() {
		t.Fatalf("b got %v, want the handed-back %s", tb, ts[1].GetUrl())
	}
	b.answer(result(tb, "g", "s"))
	if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 2 {
		t.Fatalf("report %+v, want score 2 (the handed-back task's late verdict, 9, dropped)", r)
	}
	// The report needs a's third message only: its fourth (ts[0] answered
	// again) may still be on its way through a's session. Wait for both
	// repeated answers to be counted.
	testkit.WaitFor(t, 10*time.Second, func() bool {
		select {
		case err := <-a.recv:
			t.Fatalf("a's session ended: %v", err)
		default:
		}
		return f.c.Snapshot().Refusals.ResultsRepeated >= 2
	}, func() string {
		return fmt.Sprintf("%d repeated results counted, want 2", f.c.Snapshot().Refusals.ResultsRepeated)
	})
	if n := f.c.Snapshot().Refusals.ResultsRepeated; n != 2 {
		t.Fatalf("%d repeated results counted, want 2", n)
	}
	nothingOn(t, a.recv, "a's session ended")
}

// TestRuleSetBudgetWaitCountsAsSendTime: a session whose rule set waits for
// the shared send budget (taken by sessions whose workers stopped reading)
// longer than the send timeout is cut like a stalled one, so waiters are
// bounded too; its identity is not refused (it did not stall anything).
func TestRuleSetBudgetWaitCountsAsSendTime(t *testing.T) {
	f := startFleet(t, newFakeAPI(), func(c *Config) {
		c.HeartbeatInterval = 100 * time.Millisecond
		c.SendTimeout = 500 * time.Millisecond
		// Not cut for silence (3 misses would be 300 ms, less than the
		// send timeout: a loaded machine's pause would cut it first): the
		// wait for the budget must be what cuts it.
		c.HeartbeatMisses = 50
	})
	// Other sessions hold the whole budget.
	if err := f.c.bigSends.Acquire(context.Background(), bigSendBudget); err != nil {
		t.Fatal(err)
	}
	w := f.worker("waiter", 1)
	if m := w.next(); m.GetWelcome() == nil {
		t.Fatalf("first message %v", m)
	}
	err := w.ended()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "send budget") {
		t.Fatalf("waiting session: %v, want Unavailable naming the send budget", err)
	}
	f.c.bigSends.Release(bigSendBudget)
	again := f.worker("waiter", 1)
	if h := again.ready(); h != "h1" {
		t.Fatalf("rules %q", h)
	}
}

// TestHeldTasksKeepTheirRulesWeights: a task scanned with a rule set the
// fleet switched away from five sets ago is still checked against that
// set's weights (before: past four sets its result went unchecked, so a
// made-up rule and score were reported); once answered, the weights go.
func TestHeldTasksKeepTheirRulesWeights(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rule  string
		valid bool
	}{{"made-up rule", "made_up", false}, {"true rule", "r1", true}} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(job("p", "u1"))
			// No worker takes the job after a cut: shut down without waiting.
			f := startFleet(t, api, func(c *Config) { c.DrainTimeout = time.Millisecond })
			w := f.worker("w", 1)
			w.ready()
			tk := w.tasks(1)[0]
			for i := 2; i <= 6; i++ {
				h := fmt.Sprintf("h%d", i)
				api.SetRules(mainframe.RuleSet{Hash: h, Rules: map[string]string{"a": fmt.Sprintf("rule z%d { meta: weight = 1 condition: true }", i)}}, nil)
				if err := f.c.rules.update(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			w.answer(&fleetv1.TaskResult{TaskId: tk.GetTaskId(), Outcome: &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{
				TopFile: "x.py", Rules: []*fleetv1.RuleHit{{Name: tc.rule, Weight: 3}},
			}}})
			if !tc.valid {
				if err := w.ended(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not in rules h1") {
					t.Fatalf("made-up rule under old rules: %v, want InvalidArgument", err)
				}
				return
			}
			if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 3 || r.Success.Commit != "h1" {
				t.Fatalf("report %+v, want score 3 under h1", r)
			}
			if f.c.rules.weights("h1") != nil {
				t.Fatal("h1's weights kept after its last task was answered")
			}
		})
	}
}

// TestResultWithoutKnownWeightsIsRefused: a verdict whose rules' weights
// the coordinator does not know is never taken unchecked: it is refused and
// the task dispatched again.
func TestResultWithoutKnownWeightsIsRefused(t *testing.T) {
	api := newFakeAPI(job("p", "u1"))
	f, w := readyWorker(t, api, "w", 1)
	tk := w.tasks(1)[0]
	f.c.rules.mu.Lock()
	kept := f.c.rules.known["h1"]
	delete(f.c.rules.known, "h1")
	f.c.rules.mu.Unlock()
	w.answer(result(tk, "x", "heavy"))
	again := w.tasks(1)[0]
	if again.GetUrl() != tk.GetUrl() || again.GetTaskId() == tk.GetTaskId() {
		t.Fatalf("got %v, want a new copy of %v", again, tk)
	}
	if n := f.c.Snapshot().Refusals.ResultsRulesUnknown; n != 1 {
		t.Fatalf("%d results refused for unknown weights, want 1", n)
	}
	if n := len(api.Reports()); n != 0 {
		t.Fatalf("%d reports from an unchecked result", n)
	}
	f.c.rules.mu.Lock()
	f.c.rules.known["h1"] = kept
	f.c.rules.mu.Unlock()
	w.answer(result(again, "x", "heavy"))
	if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 9 {
		t.Fatalf("report %+v", r)
	}
}

// queueAPI answers GET /queue-status: failing, or once released.
type queueAPI struct {
	*fakeAPI
	calls   atomic.Int64
	fail    bool
	release chan struct{}
}

func (q *queueAPI) QueueStatus(ctx context.Context) (mainframe.QueueStatus, error) {
	q.calls.Add(1)
	if q.fail {
		return mainframe.QueueStatus{}, errors.New("404 Not Found")
	}
	select {
	case <-q.release:
		return mainframe.QueueStatus{Queued: 7}, nil
	case <-ctx.Done():
		return mainframe.QueueStatus{}, ctx.Err()
	}
}

// TestQueueStatusAsksTheAPIOncePerMaxAge: a failing API is asked once per
// maxAge however many pages ask, and callers that hang up do not cancel the
// request they share (before: 1,000 /metrics requests in 5 s made 1,000 GET
// /queue-status calls, failing or hung up).
func TestQueueStatusAsksTheAPIOncePerMaxAge(t *testing.T) {
	clk := testkit.NewClock()
	newCoord := func(api *queueAPI) *Coordinator {
		c, err := New(Config{API: api, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.queue.stop(); c.out.Close() })
		return c
	}
	const maxAge = 5 * time.Second

	failing := &queueAPI{fakeAPI: newFakeAPI(), fail: true}
	c := newCoord(failing)
	for range 1000 {
		if v := c.QueueStatus(context.Background(), maxAge); v.Err == nil {
			t.Fatal("no error from a failing API")
		}
	}
	if n := failing.calls.Load(); n != 1 {
		t.Fatalf("failing API: %d calls for 1000 asks within maxAge, want 1", n)
	}
	clk.Advance(maxAge)
	c.QueueStatus(context.Background(), maxAge)
	c.queue.fetches.Wait() // after a failure the caller does not wait for the next attempt
	if n := failing.calls.Load(); n != 2 {
		t.Fatalf("failing API: %d calls after maxAge, want 2", n)
	}

	slow := &queueAPI{fakeAPI: newFakeAPI(), release: make(chan struct{})}
	c = newCoord(slow)
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	for range 1000 {
		if v := c.QueueStatus(gone, maxAge); !v.Fetched.IsZero() {
			t.Fatalf("answer %+v before the API answered", v)
		}
	}
	close(slow.release)
	if v := c.QueueStatus(context.Background(), maxAge); v.Err != nil || v.Status.Queued != 7 {
		t.Fatalf("view %+v, want the API's answer", v)
	}
	if n := slow.calls.Load(); n != 1 {
		t.Fatalf("%d calls for 1001 asks, 1000 of them hung up, want 1", n)
	}
}

// TestQueueStatusAfterAFailureDoesNotWait: once the API failed to answer,
// callers (scrapes, status pages) get the last view with its error at once
// while the next attempt runs, instead of each waiting on an API that is
// likely still down (before: every scrape through an outage took the
// status's 3 s wait, and a test sampling /metrics missed the moments it
// waited for).
func TestQueueStatusAfterAFailureDoesNotWait(t *testing.T) {
	clk := testkit.NewClock()
	api := &queueAPI{fakeAPI: newFakeAPI(), fail: true, release: make(chan struct{})}
	c, err := New(Config{API: api, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.queue.stop(); c.out.Close() }()
	const maxAge = 5 * time.Second
	if v := c.QueueStatus(context.Background(), maxAge); v.Err == nil {
		t.Fatal("no error from a failing API")
	}
	c.queue.fetches.Wait()
	api.fail = false // the next attempt hangs until released
	clk.Advance(maxAge)
	got := make(chan QueueView, 1)
	go func() { got <- c.QueueStatus(context.Background(), maxAge) }()
	select {
	case v := <-got:
		if v.Err == nil || !v.Fetched.IsZero() {
			t.Fatalf("view %+v, want the last one with its error", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a caller waited for the API after it had failed")
	}
	close(api.release)
	c.queue.fetches.Wait()
	if v := c.QueueStatus(context.Background(), maxAge); v.Err != nil || v.Status.Queued != 7 {
		t.Fatalf("view %+v, want the API's answer once it came", v)
	}
}
