package status

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// series lists the series a scrape of the Monitor's gatherer returns.
func series(t *testing.T, f *fleet) []string {
	t.Helper()
	mfs, err := f.mon.Gatherer(f.c).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out = append(out, mf.GetName()+fmt.Sprint(m.GetLabel()))
		}
	}
	return out
}

// TestMonitorUnderIdentityChurnStaysBounded: 200 worker identities, each
// joining for three jobs and leaving, leave the Monitor with no session
// counted, releases kept for at most Config.Identities identities of at
// most Config.ReleasesPerIdentity each, and no metric series labelled by a
// worker-chosen string.
func TestMonitorUnderIdentityChurnStaysBounded(t *testing.T) {
	const identities, ids, per = 200, 8, 2
	api := newFakeAPI()
	f := startFleet(t, api, Config{Identities: ids, ReleasesPerIdentity: per})
	for i := range identities {
		w := f.worker(fmt.Sprintf("churn-%d", i), 1, nil)
		for j := range per + 1 {
			api.Add(testJob(fmt.Sprintf("pkg-%d-%d", i, j), fmt.Sprintf("https://files.example/pkg-%d-%d.tar.gz", i, j)))
			f.waitReports(1)
		}
		w.cancel()
		err := <-w.done
		w.done <- err // for the worker's cleanup
		testkit.WaitFor(t, 10*time.Second, func() bool {
			f.mon.mu.Lock()
			defer f.mon.mu.Unlock()
			return len(f.mon.jobsBySession) == 0
		}, func() string { return "the session's end was not observed" })
	}
	f.mon.mu.Lock()
	sessions, logged := len(f.mon.jobsBySession), len(f.mon.releases.byID)
	longest := 0
	for _, il := range f.mon.releases.byID {
		longest = max(longest, il.rels.len())
	}
	f.mon.mu.Unlock()
	n := series(t, f)
	t.Logf("after %d identities: %d sessions counted, releases of %d identities (at most %d each), %d series",
		identities, sessions, logged, longest, len(n))
	if sessions != 0 || logged > ids || longest > per {
		t.Errorf("sessions counted %d (want 0), identities logged %d (want at most %d), releases per identity %d (want at most %d)",
			sessions, logged, ids, longest, per)
	}
	for _, x := range n {
		if strings.Contains(x, "churn-") {
			t.Errorf("a series is labelled by a worker-chosen string: %s", x)
		}
	}
}
