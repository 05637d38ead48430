package outbox

import (
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func intp(i int) *int       { return &i }
func strp(s string) *string { return &s }

func entry(name string, at time.Time) Entry {
	return Entry{
		Report:   Report{Name: name, Version: "1", Attempt: intp(1), AssignmentID: strp("a1"), Success: &Success{Score: 3, RulesMatched: []string{"r"}, Commit: "c"}},
		LeasedAt: at, Enqueued: at,
	}
}

func TestFIFOAndRetry(t *testing.T) {
	o, err := Open(Config{Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"a", "b", "c"} {
		if err := o.Put(entry(n, t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	if !o.Full() || o.Len() != 3 {
		t.Fatalf("len=%d full=%v, want 3 and full (nothing dropped)", o.Len(), o.Full())
	}
	e, ok := o.Next(t0)
	if !ok || e.Report.Name != "a" {
		t.Fatalf("next = %+v %v, want a", e.Report, ok)
	}
	if err := o.Retry(e, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	e2, _ := o.Next(t0)
	e3, _ := o.Next(t0)
	if e2.Report.Name != "b" || e3.Report.Name != "c" {
		t.Fatalf("order = %s %s, want b c", e2.Report.Name, e3.Report.Name)
	}
	if _, ok := o.Next(t0); ok {
		t.Fatal("a retried before its time")
	}
	if due := o.NextDue(); !due.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next due %v", due)
	}
	got, ok := o.Next(t0.Add(time.Minute))
	if !ok || got.Report.Name != "a" || got.Tries != 1 {
		t.Fatalf("retry = %+v %v", got, ok)
	}
	for _, x := range []Entry{got, e2, e3} {
		if done, err := o.Done(x); !done || err != nil {
			t.Fatalf("done %s: %v %v", x.Report.Name, done, err)
		}
	}
	if o.Len() != 0 {
		t.Fatalf("len = %d", o.Len())
	}
}

func TestSupersedeWhileSending(t *testing.T) {
	o, _ := Open(Config{})
	o.Put(entry("a", t0))
	e, _ := o.Next(t0)
	// The API re-leased the release while the old report was in flight.
	ok, err := o.Supersede("a", "1", intp(2), strp("a2"), t0.Add(time.Minute))
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The old send was refused (409): the report must stay, due again, with the new identity.
	if done, _ := o.Done(e); done {
		t.Fatal("superseded report removed after the stale send")
	}
	n, ok := o.Next(t0)
	if !ok || *n.Report.Attempt != 2 || *n.Report.AssignmentID != "a2" {
		t.Fatalf("next = %+v", n.Report)
	}
	if done, _ := o.Done(n); !done || o.Len() != 0 {
		t.Fatal("report not removed after sending under the new lease")
	}
}

func TestDurableAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	o.Put(entry("b", t0.Add(time.Second)))
	o.Put(entry("a", t0))
	o.Put(entry("c", t0.Add(2*time.Second)))
	// One report is in flight when the process dies: it must survive too.
	if e, ok := o.Next(t0); !ok || e.Report.Name != "b" {
		t.Fatalf("next = %+v", e.Report)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if o2.Len() != 3 {
		t.Fatalf("after restart len = %d, want 3", o2.Len())
	}
	first, _ := o2.Next(t0)
	if first.Report.Name != "a" {
		t.Fatalf("after restart first = %s, want the oldest (a)", first.Report.Name)
	}
	if first.Report.Success == nil || first.Report.Success.Score != 3 || *first.Report.AssignmentID != "a1" {
		t.Fatalf("report not kept intact: %+v", first.Report)
	}
	o2.Done(first)
	o2.Close()
	o3, _ := Open(Config{Path: path})
	defer o3.Close()
	if o3.Len() != 2 {
		t.Fatalf("removed report came back: len=%d", o3.Len())
	}
}
