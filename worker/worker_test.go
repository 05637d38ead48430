package worker

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/rules"
)

func TestScansAssignedTasks(t *testing.T) {
	e := startWorker(t, 2, nil)
	s := e.session()
	if h := s.hello; h.GetWorkerId() != "w1" || h.GetSlots() != 2 || h.GetProtocolVersion() != fleetv1.ProtocolVersion_PROTOCOL_VERSION_1 {
		t.Fatalf("hello = %v", h)
	}
	s.welcome(demoHash, demo.Rules())
	s.assign(
		e.task(1, "reqeusts-2.31.0.tar.gz", demoHash),
		e.task(2, "tinycolors-1.2.0-py3-none-any.whl", demoHash),
		e.task(3, "missing-1.0.tar.gz", demoHash),
	)
	rs := s.results(3)
	d := rs[1].GetDistribution()
	if d == nil || d.GetScore() != 8 || d.GetTopFile() != "reqeusts-2.31.0/reqeusts/__init__.py" || d.GetTopFileScore() != 5 {
		t.Fatalf("reqeusts result = %v", rs[1])
	}
	if names := []string{d.GetRules()[0].GetName(), d.GetRules()[1].GetName()}; names[0] != "demo_exec_base64" || names[1] != "demo_setup_download" {
		t.Fatalf("rules = %v", d.GetRules())
	}
	if st := rs[1].GetStats(); st.GetFiles() != 3 || st.GetBytesDownloaded() == 0 || st.GetBytesExpanded() == 0 {
		t.Fatalf("stats = %v", st)
	}
	if c := rs[2].GetDistribution(); c == nil || c.GetScore() != 0 || c.GetTopFile() != "" {
		t.Fatalf("clean result = %v", rs[2])
	}
	f := rs[3].GetFailure()
	if f == nil || f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD || !strings.Contains(f.GetReason(), "missing-1.0.tar.gz") || !strings.Contains(f.GetReason(), "404") {
		t.Fatalf("missing result = %v", rs[3])
	}
}

func TestHostNotAllowedFails(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(&fleetv1.Task{TaskId: 7, Url: "https://evil.example/x-1.0.tar.gz", RulesHash: demoHash})
	f := s.results(1)[7].GetFailure()
	if f == nil || f.GetKind() != fleetv1.FailureKind_FAILURE_KIND_HOST || !strings.Contains(f.GetReason(), "evil.example") {
		t.Fatalf("failure = %v", f)
	}
}

func TestEachTaskUsesItsOwnRules(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	other := map[string]string{"x": `rule everything { meta: weight = 1 condition: true }`}
	otherHash := rules.ContentHash(other)
	s.pushRules(otherHash, other)
	s.assign(e.task(1, "tinycolors-1.2.0.tar.gz", demoHash), e.task(2, "tinycolors-1.2.0.tar.gz", otherHash))
	rs := s.results(2)
	if got := rs[1].GetDistribution().GetScore(); got != 0 {
		t.Fatalf("demo rules scored %d, want 0", got)
	}
	if got := rs[2].GetDistribution().GetScore(); got != 1 {
		t.Fatalf("other rules scored %d, want 1", got)
	}
}

func TestStopDrains(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	slow := e.task(1, "slow/reqeusts-2.31.0.tar.gz", demoHash)
	s.assign(slow, e.task(2, "tinycolors-1.2.0.tar.gz", demoHash))
	// Stop the worker while task 1 downloads and task 2 waits for the slot.
	<-e.slow
	e.cancel()
	var draining, returned bool
	for !returned {
		m := s.next()
		if m == nil {
			t.Fatal("worker closed the stream before handing back the queued task")
		}
		switch {
		case m.GetDraining() != nil:
			draining = true
		case m.GetTaskReturn() != nil:
			if ids := m.GetTaskReturn().GetTaskIds(); len(ids) != 1 || ids[0] != 2 {
				t.Fatalf("handed back %v, want [2]", ids)
			}
			returned = true
		case m.GetResults() != nil:
			t.Fatalf("result before the slow download finished: %v", m)
		}
	}
	if !draining {
		t.Fatal("no Draining before the hand-back")
	}
	close(e.block)
	if r := s.results(1)[1]; r.GetDistribution().GetScore() != 8 {
		t.Fatalf("started task result = %v", r)
	}
	// The worker closes its side once done, and exits.
	if m := s.next(); m != nil {
		t.Fatalf("unexpected %v after the last result", m)
	}
	s.close()
	select {
	case err := <-e.done:
		e.done <- err
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not exit after draining")
	}
}

func TestCoordinatorDrainHandsBackQueued(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.assign(e.task(1, "slow/tinycolors-1.2.0.tar.gz", demoHash), e.task(2, "tinycolors-1.2.0.tar.gz", demoHash))
	<-e.slow
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{}}})
	for {
		m := s.next()
		if tr := m.GetTaskReturn(); tr != nil {
			if ids := tr.GetTaskIds(); len(ids) != 1 || ids[0] != 2 {
				t.Fatalf("handed back %v", ids)
			}
			break
		}
	}
	// New tasks after the drain are handed back at once.
	s.assign(e.task(3, "tinycolors-1.2.0.tar.gz", demoHash))
	if tr := s.next().GetTaskReturn(); tr == nil || tr.GetTaskIds()[0] != 3 {
		t.Fatalf("task after drain not handed back: %v", tr)
	}
	close(e.block)
	if r := s.results(1)[1]; r.GetDistribution() == nil {
		t.Fatalf("result = %v", r)
	}
}

func TestReconnectsAfterTheStreamEnds(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.close() // coordinator ends the session (e.g. restart)
	s2 := e.session()
	if s2.hello.GetWorkerId() != "w1" {
		t.Fatalf("hello = %v", s2.hello)
	}
	s2.welcome(demoHash, demo.Rules())
	s2.assign(e.task(5, "reqeusts-2.31.0.tar.gz", demoHash))
	if r := s2.results(1)[5]; r.GetDistribution().GetScore() != 8 {
		t.Fatalf("result = %v", r)
	}
}

// hitCounter counts the match cache hits of the worker's engine.
type hitCounter struct {
	nopObserver
	hits atomic.Int64
}

func (h *hitCounter) MatchCacheHit(int) { h.hits.Add(1) }

// TestMatchCacheSetting: a release scanned twice is answered from the match
// cache the second time, unless NoMatchCache (DRAGONFLY_MATCH_CACHE_SIZE=0)
// turns the cache off; the verdict is the same either way.
func TestMatchCacheSetting(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoMatchCache=%v", off), func(t *testing.T) {
			obs := &hitCounter{}
			e := startWorker(t, 1, func(c *Config) { c.NoMatchCache, c.Observer = off, obs })
			s := e.session()
			s.welcome(demoHash, demo.Rules())
			var scores []int64
			for id := uint64(1); id <= 2; id++ {
				s.assign(e.task(id, "reqeusts-2.31.0.tar.gz", demoHash))
				scores = append(scores, s.results(1)[id].GetDistribution().GetScore())
			}
			if scores[0] != 8 || scores[1] != 8 {
				t.Fatalf("scores %v, want 8 both times", scores)
			}
			hits := obs.hits.Load()
			if off && hits != 0 || !off && hits < 3 {
				t.Fatalf("%d cache hits with NoMatchCache=%v", hits, off)
			}
		})
	}
}

// TestRunRefusesThreadsPastMaxThreads: an embedder's Threads past
// MaxThreads is an error before anything starts (the Hello's slots are a
// uint32, and each thread holds a scanner).
func TestRunRefusesThreadsPastMaxThreads(t *testing.T) {
	err := Run(t.Context(), Config{Target: "127.0.0.1:1", Threads: MaxThreads + 1})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d threads (DRAGONFLY_THREADS); at most %d", MaxThreads+1, MaxThreads)) {
		t.Fatalf("Run: %v, want the thread bound named", err)
	}
}

// TestDefaultThreadsCutToMaxThreads: an embedder leaving Threads zero on a
// machine of more CPUs than MaxThreads runs MaxThreads, not an error.
func TestDefaultThreadsCutToMaxThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(MaxThreads + 100))
	c, err := Config{Target: "127.0.0.1:1"}.withDefaults()
	if err != nil || c.Threads != MaxThreads {
		t.Fatalf("withDefaults: threads %d, err %v; want %d", c.Threads, err, MaxThreads)
	}
}
