package outbox

import (
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	o := mustOpen(t, Config{Capacity: 2})
	putAll(t, o, "a", "b", "c")
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
	if due, ok := o.NextDue(); !ok || !due.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next due %v %v", due, ok)
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
	wantLen(t, o, 0, "")
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

// TestStaleRetryLeavesTheNewReportDue: a send of a report superseded while
// in flight fails and is retried with a backoff. The backoff belongs to the
// old send: the superseding report (a new lease, a new assignment) stays
// due at once, not held back until the stale send's retry time.
func TestStaleRetryLeavesTheNewReportDue(t *testing.T) {
	o, _ := Open(Config{})
	o.Put(entry("a", t0))
	e, _ := o.Next(t0)
	if ok, err := o.Supersede("a", "1", intp(2), strp("a2"), t0.Add(time.Minute)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := o.Retry(e, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, ok := o.Next(t0)
	if !ok {
		t.Fatal("the superseding report waits for the stale send's backoff")
	}
	if *n.Report.AssignmentID != "a2" || n.Tries != 1 {
		t.Errorf("next = %+v, tries %d; want assignment a2, tries 1", n.Report, n.Tries)
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
	wantLen(t, o2, 3, "after restart")
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
	wantLen(t, o3, 2, "removed report came back")
}

func TestPutReplacesInPlace(t *testing.T) {
	o := mustOpen(t, Config{})
	putAll(t, o, "a", "b")
	old, _ := o.Next(t0)
	// A report for a waiting release replaces it, keeps its place, and a
	// send of the replaced one in flight does not remove it.
	repl := entry("a", t0.Add(time.Hour))
	repl.Report.Reason, repl.Report.Success = "replaced", nil
	o.Put(repl)
	if done, _ := o.Done(old); done {
		t.Fatal("the send of a replaced report removed its replacement")
	}
	got, _ := o.Next(t0)
	if got.Report.Reason != "replaced" || got.Gen != 1 {
		t.Fatalf("next = %s reason %q, want the replacement first", show(got), got.Report.Reason)
	}
	wantLen(t, o, 2, "")
}

// TestNextSkipsAReportBeingSent: a report handed out by Next is not handed
// out again until its send ends (Done or Retry): two senders would report
// one job twice. Until then Next goes on to the others, then has nothing.
func TestNextSkipsAReportBeingSent(t *testing.T) {
	o := mustOpen(t, Config{})
	putAll(t, o, "a", "b")
	a, ok := o.Next(t0)
	if !ok || a.Report.Name != "a" {
		t.Fatalf("first = %s, %v; want a", show(a), ok)
	}
	b, ok := o.Next(t0)
	if !ok || b.Report.Name != "b" {
		t.Fatalf("second = %s, %v; want b (a is being sent)", show(b), ok)
	}
	if e, ok := o.Next(t0); ok {
		t.Fatalf("third = %s; want none: a and b are being sent", show(e))
	}
	if err := o.Retry(a, t0); err != nil {
		t.Fatal(err)
	}
	if e, ok := o.Next(t0); !ok || e.Report.Name != "a" {
		t.Fatalf("after a's retry: %s, %v; want a again", show(e), ok)
	}
}

func TestDoneThenPutAgainQueuesOnce(t *testing.T) {
	o := mustOpen(t, Config{})
	putAll(t, o, "a", "b")
	a, _ := o.Next(t0)
	o.Done(a)
	o.Put(entry("a", t0))
	var order []string
	for {
		e, ok := o.Next(t0)
		if !ok {
			break
		}
		order = append(order, e.Report.Name)
	}
	// a, removed and put again, goes to the back, once.
	if !reflect.DeepEqual(order, []string{"b", "a"}) {
		t.Fatalf("order = %v, want [b a]", order)
	}
}

func TestMemoryOnlyIsHealthy(t *testing.T) {
	o := mustOpen(t, Config{})
	o.Put(entry("a", t0))
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if h := o.Health(); h != (Health{}) {
		t.Fatalf("health = %+v", h)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeyTooLargeKeptInMemory: a release whose name bbolt cannot use as a
// key (over 32 KiB, from a hostile API) is kept and sent from memory, and
// neither blocks other writes nor reads as a failing disk.
func TestKeyTooLargeKeptInMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Config{Path: path})
	huge := entry(strings.Repeat("n", 40<<10), t0)
	if err := o.Put(huge); err == nil || !strings.Contains(err.Error(), "key too large") {
		t.Fatalf("put = %v", err)
	}
	if err := o.Put(entry("b", t0)); err != nil {
		t.Fatal(err)
	}
	if h := o.Health(); h.WriteFailing || h.NotDurable != 1 {
		t.Fatalf("health = %+v", h)
	}
	e, ok := o.Next(t0)
	if !ok || e.Report.Name != huge.Report.Name {
		t.Fatal("the report with the huge name was not delivered")
	}
	if done, err := o.Done(e); !done || err != nil {
		t.Fatal(done, err)
	}
	if h := o.Health(); h.NotDurable != 0 {
		t.Fatalf("health after done = %+v", h)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if got := deliver(t, path); len(got) != 1 || got["b\x001"].Report.Name != "b" {
		t.Fatalf("file holds %d reports", len(got))
	}
}

// TestConcurrentChangesReachDisk: changes racing on the same keys from many
// goroutines leave the file equal to memory (a write never lands an older
// state over a newer one).
func TestConcurrentChangesReachDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Config{Path: path})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				name := "k" + strconv.Itoa((g+i)%6)
				if ok, err := o.Supersede(name, "1", intp(g*1000+i), strp("g"+strconv.Itoa(g)), t0.Add(time.Duration(i)*time.Second)); err != nil {
					t.Error(err)
				} else if !ok {
					if err := o.Put(entry(name, t0.Add(time.Duration(i)*time.Second))); err != nil {
						t.Error(err)
					}
				}
				if e, ok := o.Next(t0.Add(time.Hour)); ok {
					var err error
					switch i % 3 {
					case 0:
						_, err = o.Done(e)
					case 1:
						err = o.Retry(e, t0)
					default:
						o.Release(e)
					}
					if err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if h := o.Health(); h != (Health{}) {
		t.Fatalf("health = %+v", h)
	}
	sameEntries(t, "file", deliver(t, copyFile(t, path)), state(o))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkPutDone(b *testing.B) {
	o, err := Open(Config{Path: filepath.Join(b.TempDir(), "outbox.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := "r" + strconv.FormatInt(n.Add(1), 10)
			if err := o.Put(entry(name, t0)); err != nil {
				b.Error(err)
				return
			}
			e, ok := o.Next(t0)
			if !ok {
				continue
			}
			if _, err := o.Done(e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestNextDueCountsAReportDueNow: a report due at once (zero NotBefore)
// beside one waiting for its retry makes NextDue the zero time, reported as
// present; map order decided before whether the later retry time came back.
func TestNextDueCountsAReportDueNow(t *testing.T) {
	o := mustOpen(t, Config{})
	if _, ok := o.NextDue(); ok {
		t.Fatal("an empty outbox has a next due time")
	}
	putAll(t, o, "a", "b")
	e, ok := o.Next(t0)
	if !ok {
		t.Fatal("nothing due")
	}
	if err := o.Retry(e, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Map iteration order varies: ask often enough to see both orders.
	for range 64 {
		if due, ok := o.NextDue(); !ok || !due.IsZero() {
			t.Fatalf("next due = %v %v, want the zero time (a report due now)", due, ok)
		}
	}
}

// TestDueNowCutsBackoffsShort: DueNow makes the reports waiting for a retry
// due at once, keeping their tries, and leaves alone one being sent (its
// sender decides what comes next) and one already due.
func TestDueNowCutsBackoffsShort(t *testing.T) {
	o := mustOpen(t, Config{})
	putAll(t, o, "a", "b", "c")
	a, _ := o.Next(t0)
	if err := o.Retry(a, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b, _ := o.Next(t0) // being sent
	if n := o.DueNow(); n != 1 {
		t.Fatalf("DueNow = %d, want 1 (a; b is being sent, c is due)", n)
	}
	var names []string
	for e, ok := o.Next(t0); ok; e, ok = o.Next(t0) {
		names = append(names, e.Report.Name)
		if e.Report.Name == "a" && e.Tries != 1 {
			t.Errorf("a has %d tries, want 1", e.Tries)
		}
	}
	if strings.Join(names, " ") != "a c" {
		t.Fatalf("due after DueNow: %q, want a and c (b is still being sent)", names)
	}
	if err := o.Retry(b, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok := o.Next(t0); ok {
		t.Fatal("b, retried after DueNow, is due at once")
	}
}

// TestLeaseFromTheFutureDatedFromOpen: a report whose lease began, as the
// file has it, after the clock of the Open reading it (written while the
// wall clock read later: stepped back since, or another host's) is dated
// from that Open, in the file too (a later Open keeps it); a lease from the
// past is kept as written. Kept from the future, the report's age stayed
// negative for the step, and the coordinator retried a report the API kept
// refusing that long past the report max age.
func TestLeaseFromTheFutureDatedFromOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Config{Path: path, Now: func() time.Time { return t0 }})
	if err := o.Put(entry("ahead", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := o.Put(entry("past", t0.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"ahead": t0, "past": t0.Add(-time.Minute)}
	for _, at := range []time.Time{t0, t0.Add(30 * time.Minute)} {
		o := mustOpen(t, Config{Path: path, Now: func() time.Time { return at }})
		got := state(o)
		for name, leased := range want {
			e, ok := got[(&Report{Name: name, Version: "1"}).Key()]
			if !ok || !e.LeasedAt.Equal(leased) {
				t.Errorf("opened at %s: %q leased at %s (held %v), want %s", at.Format(time.TimeOnly), name, e.LeasedAt.Format(time.TimeOnly), ok, leased.Format(time.TimeOnly))
			}
		}
		if h := o.Health(); h.WriteFailing || h.NotDurable != 0 {
			t.Fatalf("health %+v after Open, want the new date written", h)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCommitsAreSynced: a report Put returns for is on the disk, not only in
// the page cache: the file is opened with bbolt's fsync at every commit.
// A crash of the process cannot tell the two apart (the page cache
// survives it), so the setting itself is checked.
func TestCommitsAreSynced(t *testing.T) {
	o := mustOpen(t, Config{Path: filepath.Join(t.TempDir(), "outbox.db")})
	defer o.Close()
	if o.db.NoSync || o.db.NoGrowSync {
		t.Errorf("outbox file opened with NoSync %v, NoGrowSync %v: a commit may be lost at a power loss", o.db.NoSync, o.db.NoGrowSync)
	}
}
