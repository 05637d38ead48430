package outbox

// This file made testdata/outbox-v1.db with the outbox of commit 9155813 (the
// format of the first release). It lives under testdata so the go tool ignores
// it; see testdata/README.md for how to run it again.

import (
	"os"
	"testing"
	"time"
)

func TestMakeV1(t *testing.T) {
	out := os.Getenv("OUTBOX_V1_OUT")
	if out == "" {
		t.Fatal("set OUTBOX_V1_OUT to the file to write")
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatalf("%s exists; remove it first", out)
	}
	t0 := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	intp := func(i int) *int { return &i }
	strp := func(s string) *string { return &s }
	o, err := Open(Config{Path: out})
	if err != nil {
		t.Fatal(err)
	}
	put := func(e Entry) {
		if err := o.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	// Success with an inspector URL, attempt and assignment id.
	put(Entry{
		Report: Report{Name: "alpha", Version: "1.0", Attempt: intp(1), AssignmentID: strp("asg-alpha"),
			Success: &Success{Score: 7, InspectorURL: strp("https://inspector.pypi.io/project/alpha/1.0/packages/a/b/alpha-1.0.tar.gz/alpha-1.0/setup.py#line.3"),
				RulesMatched: []string{"exec_base64", "setup_network"}, Commit: "c0ffee"}},
		LeasedAt: t0, Enqueued: t0.Add(3 * time.Second),
	})
	// Success without inspector URL, no attempt nor assignment id, no rules.
	put(Entry{
		Report:   Report{Name: "beta", Version: "2.0.post1", Success: &Success{Score: 0, Commit: "c0ffee"}},
		LeasedAt: t0.Add(time.Second), Enqueued: t0.Add(time.Second),
	})
	// Failure with a reason, attempt and assignment id.
	put(Entry{
		Report:   Report{Name: "gamma", Version: "0.1rc1", Attempt: intp(3), AssignmentID: strp("asg-gamma"), Reason: "download failed: status 404"},
		LeasedAt: t0.Add(2 * time.Second), Enqueued: t0.Add(2 * time.Second),
	})
	// Failure without attempt nor assignment id, retried twice.
	put(Entry{
		Report:   Report{Name: "delta", Version: "3", Reason: "archive too large: 1073741825 bytes"},
		LeasedAt: t0.Add(-time.Minute), Enqueued: t0.Add(4 * time.Second),
	})
	// Success superseded by a new lease (Gen 1), then retried once.
	put(Entry{
		Report: Report{Name: "epsilon", Version: "1!2.0", Attempt: intp(1), AssignmentID: strp("asg-eps-1"),
			Success: &Success{Score: 15, RulesMatched: []string{"obfuscated_exec"}, Commit: "beefcafe"}},
		LeasedAt: t0.Add(5 * time.Second), Enqueued: t0.Add(5 * time.Second),
	})
	// A report sent and removed: it must not come back.
	put(Entry{
		Report:   Report{Name: "removed", Version: "1", Attempt: intp(1), AssignmentID: strp("asg-removed"), Reason: "gone"},
		LeasedAt: t0, Enqueued: t0,
	})
	if ok, err := o.Supersede("epsilon", "1!2.0", intp(2), strp("asg-eps-2"), t0.Add(time.Hour)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// take takes every report due at now; each is then in flight until
	// Done, Retry or Release.
	take := func(now time.Time) map[string]Entry {
		m := map[string]Entry{}
		for {
			e, ok := o.Next(now)
			if !ok {
				return m
			}
			m[e.Report.Name] = e
		}
	}
	now := t0.Add(2 * time.Hour)
	taken := take(now)
	if done, err := o.Done(taken["removed"]); !done || err != nil {
		t.Fatal(done, err)
	}
	for _, n := range []string{"delta", "epsilon"} {
		if err := o.Retry(taken[n], now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"alpha", "beta", "gamma"} {
		o.Release(taken[n])
	}
	taken = take(now.Add(time.Minute))
	if err := o.Retry(taken["delta"], now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "beta", "gamma", "epsilon"} {
		o.Release(taken[n])
	}
	if len(taken) != 5 {
		t.Fatalf("took %d reports, want 5", len(taken))
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}
