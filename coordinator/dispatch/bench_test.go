package dispatch

import (
	"fmt"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/score"
)

// benchSink answers nothing itself; the benchmark drains it.
type benchSink struct{ tasks []Task }

func (s *benchSink) Send(ts []Task) { s.tasks = append(s.tasks, ts...) }

// BenchmarkJobs measures the dispatcher's cost per job (3 distributions):
// admission, dispatch to 32 sessions of 8 slots and the results, with a
// Tick every 100 jobs. One op is one job.
func BenchmarkJobs(b *testing.B) {
	for _, rate := range []float64{-1, 0.02} {
		b.Run(fmt.Sprintf("verify=%v", max(rate, 0)), func(b *testing.B) {
			d := New(Config{VerifyRate: rate, Prefetch: 1})
			now := t0
			var sinks []*benchSink
			for i := range 32 {
				s := &benchSink{}
				sinks = append(sinks, s)
				id := fmt.Sprintf("s%d", i)
				if err := d.Join(id, fmt.Sprintf("w%d", i), 8, s, now); err != nil {
					b.Fatal(err)
				}
				d.RulesReady(id, "h1")
			}
			res := &score.Distribution{}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := Job{Name: fmt.Sprintf("p%d", i), Version: "1", RulesHash: "h1", LeasedAt: now,
					Distributions: []string{"https://f/a.tar.gz", "https://f/b.whl", "https://f/c.whl"}}
				d.Admit([]Job{j}, now)
				for k, s := range sinks {
					ts := s.tasks
					s.tasks = nil
					for _, tk := range ts {
						d.Result(fmt.Sprintf("s%d", k), Result{TaskID: tk.ID, Dist: res}, now)
					}
				}
				if i%100 == 0 {
					now = now.Add(time.Second)
					d.Tick(now)
				}
			}
			b.StopTimer()
			if s := d.Snapshot(); s.Counters.JobsCompleted < int64(b.N)-10 {
				b.Fatalf("%d of %d jobs completed", s.Counters.JobsCompleted, b.N)
			}
		})
	}
}

// BenchmarkTick measures one Tick with 200 sessions of 64 slots, all full
// (13,000 outstanding copies of 4,334 jobs), nothing overdue.
func BenchmarkTick(b *testing.B) {
	d := New(Config{Prefetch: 1})
	now := t0
	for i := range 200 {
		id := fmt.Sprintf("s%d", i)
		if err := d.Join(id, id, 64, &benchSink{}, now); err != nil {
			b.Fatal(err)
		}
		d.RulesReady(id, "h1")
	}
	var jobs []Job
	for i := range 200 * 65 / 3 {
		jobs = append(jobs, Job{Name: fmt.Sprintf("p%d", i), Version: "1", RulesHash: "h1", LeasedAt: now,
			Distributions: []string{"https://f/a.tar.gz", "https://f/b.whl", "https://f/c.whl"}})
	}
	d.Admit(jobs, now)
	if s := d.Snapshot(); s.TasksRunning < 12_000 {
		b.Fatalf("%d running", s.TasksRunning)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d.Tick(now.Add(time.Second))
	}
}

// BenchmarkSpeedAdd measures adding one task-time sample to a full window
// shared by 32 identities (the window's eviction and bookkeeping).
func BenchmarkSpeedAdd(b *testing.B) {
	var sp speed
	names := make([]string, 32)
	for i := range names {
		names[i] = fmt.Sprintf("w%d", i)
	}
	for i := range speedWindow {
		sp.add(names[i%len(names)], time.Second)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		sp.add(names[i%len(names)], time.Duration(i%100)*time.Millisecond)
	}
}
