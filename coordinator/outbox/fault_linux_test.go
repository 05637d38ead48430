//go:build linux

package outbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// failWrites makes every write to o's file fail with ENOSPC, as on a full
// disk: /dev/full goes behind the file descriptor bbolt writes through (its
// mapping of the file, which it reads from, stays). bbolt's real commit path
// meets the failure. The returned func puts the file back; the lock is kept
// meanwhile by a duplicate of the original descriptor.
func failWrites(t *testing.T, o *Outbox) (repair func()) {
	t.Helper()
	fd := int(o.file.Fd())
	saved, err := syscall.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	full, err := os.OpenFile("/dev/full", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if err := syscall.Dup3(int(full.Fd()), fd, syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	repaired := false
	repair = func() {
		if repaired {
			return
		}
		repaired = true
		if err := syscall.Dup3(saved, fd, syscall.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		syscall.Close(saved)
	}
	t.Cleanup(repair)
	return repair
}

func TestWriteFailureKeepsReportAndRecovers(t *testing.T) {
	clk := testkit.NewClockAt(t0)
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Config{Path: path, Now: clk.Now})
	a, b := entry("a", t0), entry("b", t0.Add(time.Second))
	if err := o.Put(a); err != nil {
		t.Fatal(err)
	}
	repair := failWrites(t, o)

	changed := o.Changed()
	err := o.Put(b)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put on a full disk: %v, want ENOSPC", err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed did not fire")
	}
	h := o.Health()
	if !h.WriteFailing || !h.Since.Equal(t0) || !strings.Contains(h.LastError, "no space left") ||
		h.NotDurable != 1 || h.PendingDeletes != 0 || h.Failures != 1 {
		t.Fatalf("health after a failed put = %+v", h)
	}
	// Both are delivered; a is sent and removed, but the delete fails too.
	ea, ok1 := o.Next(t0)
	eb, ok2 := o.Next(t0)
	if !ok1 || !ok2 || ea.Report.Name != "a" || eb.Report.Name != "b" {
		t.Fatalf("next = %v %v %v %v, want a then b", ea.Report.Name, ok1, eb.Report.Name, ok2)
	}
	if done, err := o.Done(ea); !done || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("done on a full disk = %v %v", done, err)
	}
	if err := o.Retry(eb, t0.Add(time.Minute)); err == nil {
		t.Fatal("retry on a full disk: no error")
	}
	h = o.Health()
	if h.NotDurable != 1 || h.PendingDeletes != 1 || h.Failures != 3 {
		t.Fatalf("health after a failed delete = %+v", h)
	}
	// A crash now: the file still holds a (its delete never landed) and
	// not b (its put never landed).
	sameEntries(t, "crash while failing", deliver(t, copyFile(t, path)), map[string]Entry{"a\x001": stored(a)})

	clk.Advance(time.Minute)
	if err := o.Sync(); err == nil {
		t.Fatal("sync on a full disk: no error")
	}
	if h := o.Health(); !h.Since.Equal(t0) || h.Failures != 4 {
		t.Fatalf("a failure run's start moved: %+v", h)
	}

	repair()
	changed = o.Changed()
	if err := o.Sync(); err != nil {
		t.Fatalf("sync after the disk has room: %v", err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed did not fire when writes recovered")
	}
	h = o.Health()
	if h.WriteFailing || !h.Since.IsZero() || h.LastError != "" || h.NotDurable != 0 || h.PendingDeletes != 0 || h.Failures != 4 {
		t.Fatalf("health after repair = %+v", h)
	}
	want := eb
	want.Tries = 1
	sameEntries(t, "after sync", deliver(t, copyFile(t, path)), map[string]Entry{"b\x001": stored(want)})
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLaterWriteClearsEarlierFailures: any successful write carries what
// failed before, not only Sync.
func TestLaterWriteClearsEarlierFailures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Config{Path: path})
	defer o.Close()
	repair := failWrites(t, o)
	for _, n := range []string{"a", "b"} {
		if err := o.Put(entry(n, t0)); err == nil {
			t.Fatal("put on a full disk: no error")
		}
	}
	repair()
	if err := o.Put(entry("c", t0)); err != nil {
		t.Fatal(err)
	}
	if h := o.Health(); h.WriteFailing || h.NotDurable != 0 {
		t.Fatalf("health = %+v", h)
	}
	got := deliver(t, copyFile(t, path))
	if len(got) != 3 {
		t.Fatalf("file holds %q, want a, b, c", keys(got))
	}
}

func TestCloseSaysWhatIsNotOnDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Config{Path: path})
	if err := o.Put(entry("a", t0)); err != nil {
		t.Fatal(err)
	}
	e, _ := o.Next(t0)
	failWrites(t, o)
	o.Put(entry("b", t0))
	o.Put(entry("c", t0))
	o.Done(e)
	err := o.Close()
	if err == nil || !strings.Contains(err.Error(), "2 reports not on disk and 1 deletes not written") {
		t.Fatalf("close = %v", err)
	}
}

// TestCrashBetweenChangeAndWrite models a crash after each step's change in
// memory and before its write: the write fails, and the file is what a crash
// at that point leaves. The reopened outbox delivers every report exactly
// once, whole, under the lease identity the file last held; once the write
// lands, under the new one.
func TestCrashBetweenChangeAndWrite(t *testing.T) {
	a := entry("a", t0)
	superseded := a
	superseded.Report.Attempt, superseded.Report.AssignmentID, superseded.LeasedAt, superseded.Gen = intp(2), strp("a2"), t0.Add(time.Hour), 1
	retried := a
	retried.Tries = 1
	// inFlight puts a and takes it for sending.
	inFlight := func(t *testing.T, o *Outbox) Entry {
		if err := o.Put(a); err != nil {
			t.Fatal(err)
		}
		e, ok := o.Next(t0)
		if !ok {
			t.Fatal("nothing due")
		}
		return e
	}
	for _, tc := range []struct {
		name          string
		setup         func(*testing.T, *Outbox) Entry
		step          func(*Outbox, Entry) error
		before, after map[string]Entry
	}{{
		name:   "put",
		setup:  func(*testing.T, *Outbox) Entry { return Entry{} },
		step:   func(o *Outbox, _ Entry) error { return o.Put(a) },
		before: map[string]Entry{},
		after:  map[string]Entry{"a\x001": a},
	}, {
		name:  "done",
		setup: inFlight,
		step: func(o *Outbox, e Entry) error {
			_, err := o.Done(e)
			return err
		},
		before: map[string]Entry{"a\x001": a},
		after:  map[string]Entry{},
	}, {
		name:  "supersede",
		setup: inFlight,
		step: func(o *Outbox, _ Entry) error {
			_, err := o.Supersede("a", "1", intp(2), strp("a2"), t0.Add(time.Hour))
			return err
		},
		before: map[string]Entry{"a\x001": a},
		after:  map[string]Entry{"a\x001": superseded},
	}, {
		name:  "retry",
		setup: inFlight,
		step: func(o *Outbox, e Entry) error {
			return o.Retry(e, t0.Add(time.Minute))
		},
		before: map[string]Entry{"a\x001": a},
		after:  map[string]Entry{"a\x001": retried},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox.db")
			o := mustOpen(t, Config{Path: path})
			defer o.Close()
			e := tc.setup(t, o)
			repair := failWrites(t, o)
			// ENOSPC from the write, or, when the write must first grow
			// the file, bbolt's refusal to map a file that reads as empty.
			if err := tc.step(o, e); err == nil {
				t.Fatal("step on a full disk: no error")
			}
			sameEntries(t, "crash before the write", deliver(t, copyFile(t, path)), tc.before)
			sameEntries(t, "memory", state(o), tc.after)
			repair()
			if err := o.Sync(); err != nil {
				t.Fatal(err)
			}
			sameEntries(t, "crash after the write", deliver(t, copyFile(t, path)), tc.after)
		})
	}
}
