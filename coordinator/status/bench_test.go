package status

import (
	"fmt"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/score"
)

// busyFleet is a Monitor and a snapshot at their bounds: 100 workers, full
// lists, a rule set of 300 rules, and a quarantined identity with the most
// releases kept.
func busyFleet(b *testing.B) (*Monitor, *fakeSource) {
	b.Helper()
	now := time.Now()
	m := New(Config{})
	src := &fakeSource{view: coordinator.QueueView{Fetched: now, Status: mainframe.QueueStatus{Queued: 500, TotalBacklog: 600}}}
	src.snap.RulesHash = "h"
	for i := range 100 {
		id := fmt.Sprintf("s%d-w%d", i, i)
		src.snap.Sessions = append(src.snap.Sessions, coordinator.SessionState{
			SessionInfo: coordinator.SessionInfo{SessionID: id, WorkerID: fmt.Sprintf("w%d", i), Identity: fmt.Sprintf("cert:CN=w%d", i), Host: "host", Version: "v", Started: now},
			LastSeen:    now})
		src.snap.Dispatch.Sessions = append(src.snap.Dispatch.Sessions, dispatch.SessionLoad{ID: id, Identity: fmt.Sprintf("cert:CN=w%d", i), Slots: 2, Outstanding: 2, RulesReady: []string{"h"}})
		m.SessionStarted(coordinator.SessionInfo{SessionID: id})
	}
	src.snap.Dispatch.Quarantined = []dispatch.QuarantineInfo{{Identity: "cert:CN=w0", Reason: "lied", Since: now}}
	for i := range 2000 {
		rules := []string{fmt.Sprintf("rule_%03d", i%300), fmt.Sprintf("rule_%03d", (i*7)%300)}
		o := dispatch.Outcome{Job: dispatch.Job{Name: fmt.Sprintf("package-%d", i), Version: "1.0.0", RulesHash: "h", LeasedAt: now},
			Package:    score.Package{Score: int64(i % 20), RulesMatched: rules},
			Identities: []string{"cert:CN=w0", fmt.Sprintf("cert:CN=w%d", i%100)}, Sessions: []string{"s0-w0"}, Finished: now,
			InspectorURL: "https://inspector.pypi.io/project/package/1.0.0/package-1.0.0.tar.gz/package-1.0.0/setup.py"}
		if i%10 == 0 {
			o.Failure = "distribution package-1.0.0.tar.gz: archive truncated"
		}
		m.JobFinished(o)
		m.Reported(outbox.Report{Name: o.Job.Name, Version: "1.0.0", Success: &outbox.Success{}}, nil, 0)
		m.DispatchEvent(dispatch.Event{Kind: dispatch.EventVerifyMismatch, Name: o.Job.Name, Version: "1.0.0", Identities: []string{"cert:CN=w0", "cert:CN=w1"}, Reason: "scores differ"})
	}
	return m, src
}

// BenchmarkStatusPage renders /status of a busy fleet.
func BenchmarkStatusPage(b *testing.B) { benchServe(b, "/status", "page-KiB") }

// BenchmarkStatusJSON encodes /status.json of a busy fleet.
func BenchmarkStatusJSON(b *testing.B) { benchServe(b, "/status.json", "json-KiB") }

// benchServe serves path of a busy fleet and reports the body's size in
// KiB as unit.
func benchServe(b *testing.B, path, unit string) {
	m, src := busyFleet(b)
	h := m.Handler(src, nil)
	b.ReportAllocs()
	size := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size)/1024, unit)
}

// BenchmarkScrape gathers the metrics of a busy fleet (300 rule series).
func BenchmarkScrape(b *testing.B) {
	m, src := busyFleet(b)
	g := m.Gatherer(src)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReleaseLogFull measures the heap the per-identity release log
// holds at its default bounds (256 identities × 1000 releases), and the
// cost of one JobFinished once it is full.
func BenchmarkReleaseLogFull(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := New(Config{})
	now := time.Now()
	for i := range 256 * 1000 {
		// Names built here, as jobs' names are: each release holds its own strings.
		m.JobFinished(dispatch.Outcome{Job: dispatch.Job{Name: fmt.Sprintf("some-package-name-%06d", i), Version: "1.2.3"},
			Identities: []string{fmt.Sprintf("cert:CN=worker-%03d", i%256)}, Finished: now, Failure: "x"})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	full := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	o := dispatch.Outcome{Job: dispatch.Job{Name: "p", Version: "1"}, Identities: []string{"cert:CN=worker-001", "cert:CN=worker-002"}, Finished: now}
	b.ReportAllocs()
	for b.Loop() {
		m.JobFinished(o)
	}
	b.ReportMetric(full, "full-heap-MiB") // after the loop: b.Loop resets reported metrics
	runtime.KeepAlive(m)
}
