package outbox

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	goleak.VerifyTestMain(m)
}

func mustOpen(t *testing.T, cfg Config) *Outbox {
	t.Helper()
	o, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return o
}

// putAll puts a report for each name, the i-th leased at t0 + i seconds.
func putAll(t *testing.T, o *Outbox, names ...string) {
	t.Helper()
	for i, n := range names {
		if err := o.Put(entry(n, t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
}

// wantLen fails t unless o holds n reports; why says what else would be
// wrong.
func wantLen(t *testing.T, o *Outbox, n int, why string) {
	t.Helper()
	if got := o.Len(); got != n {
		t.Fatalf("len = %d, want %d %s", got, n, why)
	}
}

// copyFile copies src to a new file in a temp dir: what a crash would leave
// on disk at this moment (bbolt's file is consistent after each commit).
func copyFile(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// stored is what a report looks like after a reopen: NotBefore is not kept.
func stored(e Entry) Entry {
	e.NotBefore = time.Time{}
	return e
}

// state is the outbox's reports by key, as a reopen would see them.
func state(o *Outbox) map[string]Entry {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := map[string]Entry{}
	for k, e := range o.entries {
		m[k] = stored(*e)
	}
	return m
}

// deliver reopens the file at path (a crash copy) and takes every report
// its outbox delivers, as a sender would, checking each comes once and the
// file is sound. It closes the outbox.
func deliver(t *testing.T, path string) map[string]Entry {
	t.Helper()
	o := mustOpen(t, Config{Path: path})
	defer o.Close()
	if r := o.Recovery(); !reflect.DeepEqual(r, Recovery{}) {
		t.Errorf("reopen found trouble in a crash copy: %+v", r)
	}
	got := map[string]Entry{}
	for {
		e, ok := o.Next(t0.Add(1000 * time.Hour))
		if !ok {
			break
		}
		if _, dup := got[e.Report.Key()]; dup {
			t.Errorf("report %q delivered twice", e.Report.Key())
		}
		got[e.Report.Key()] = e
	}
	if len(got) != o.Len() {
		t.Errorf("delivered %d of %d reports", len(got), o.Len())
	}
	return got
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sameEntries(t *testing.T, what string, got, want map[string]Entry) {
	t.Helper()
	if !reflect.DeepEqual(keys(got), keys(want)) {
		t.Errorf("%s: reports %q, want %q", what, keys(got), keys(want))
		return
	}
	for k, w := range want {
		if g := got[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %q =\n%s\nwant\n%s", what, k, show(g), show(w))
		}
	}
}

func show(e Entry) string {
	attempt, assignment := "-", "-"
	if e.Report.Attempt != nil {
		attempt = strconv.Itoa(*e.Report.Attempt)
	}
	if e.Report.AssignmentID != nil {
		assignment = *e.Report.AssignmentID
	}
	return fmt.Sprintf("%s@%s attempt=%s assignment=%s tries=%d gen=%d leased=%s enqueued=%s not_before=%s",
		e.Report.Name, e.Report.Version, attempt, assignment, e.Tries, e.Gen, e.LeasedAt, e.Enqueued, e.NotBefore)
}
