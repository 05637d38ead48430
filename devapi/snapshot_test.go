package devapi

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// TestSnapshotRoundTrip: releases, scan records (every status), leases and
// runtime-added files survive Close + New; leases keep their attempt,
// assignment and expiry.
func TestSnapshotRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	files := []File{sdist("aaa-1.0.tar.gz"), sdist("bbb-1.0.tar.gz"), sdist("ccc-1.0.tar.gz"), sdist("ddd-1.0.tar.gz")}
	c := testkit.NewClock()
	s1, err := New(Config{Files: files, SnapshotPath: path, Now: c.Now, PublicURL: "http://x"})
	if err != nil {
		t.Fatal(err)
	}
	f1 := &fixture{t: t, s: s1, clock: c}
	jobs := f1.lease(3) // aaa, bbb, ccc pending; ddd queued
	if rec := f1.report(success(jobs[0], 7, "r1", "r2")); rec.Code != http.StatusOK {
		t.Fatal(rec.Body)
	}
	if rec := f1.report(failure(jobs[1], "broken archive")); rec.Code != http.StatusOK {
		t.Fatal(rec.Body)
	}
	s1.Add("added", "0.1", []File{{Name: "added-0.1.tar.gz", Data: []byte("runtime bytes")}})
	before := lookupAll(t, f1)
	stats1 := s1.Stats()
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("snapshot not written: %v", err)
	}

	// Restart with a new file in the configuration.
	s2, err := New(Config{Files: append(files, sdist("eee-1.0.tar.gz")), SnapshotPath: path, Now: c.Now, PublicURL: "http://x"})
	if err != nil {
		t.Fatalf("New from snapshot: %v", err)
	}
	t.Cleanup(func() { _ = s2.Close() })
	f2 := &fixture{t: t, s: s2, clock: c}
	after := lookupAll(t, f2)
	if !reflect.DeepEqual(before, after[:len(before)]) {
		t.Fatalf("records differ after restart:\nbefore %+v\nafter  %+v", before, after)
	}
	if stats2 := s2.Stats(); stats2.Leases != stats1.Leases || stats2.Finished != 1 || stats2.Failed != 1 || stats2.Queue.InProgress != 1 {
		t.Fatalf("stats after restart %+v, before %+v", stats2, stats1)
	}
	// The old lease of ccc is still valid: its report is accepted.
	if rec := f2.report(success(jobs[2], 0)); rec.Code != http.StatusOK {
		t.Fatalf("report of a lease from before the restart: %d %s", rec.Code, rec.Body)
	}
	// Queue order continues: ddd (queued before), added, then the new eee.
	if got, want := names(f2.lease(10)), "ddd@1.0#1 added@0.1#1 eee@1.0#1"; got != want {
		t.Fatalf("lease after restart = %q, want %q", got, want)
	}
	// The runtime-added file is still downloadable.
	recs := lookup(t, f2, "added", "0.1")
	if rec := f2.do(http.MethodGet, recs[0].Distributions[0][len("http://x"):], nil); rec.Code != http.StatusOK || rec.Body.String() != "runtime bytes" {
		t.Fatalf("download of added file: %d %q", rec.Code, rec.Body)
	}
}

func lookupAll(t *testing.T, f *fixture) []scanJSON {
	t.Helper()
	var out []scanJSON
	f.s.mu.Lock()
	rels := append([]*release(nil), f.s.st.order...)
	f.s.mu.Unlock()
	for _, r := range rels {
		out = append(out, lookup(t, f, r.name, r.version)...)
	}
	return out
}

// TestSnapshotDebouncedWrite: a change is written by the background writer
// without Close, atomically (no temp file left behind).
func TestSnapshotDebouncedWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	f := newFixture(t, Config{Files: []File{sdist("aaa-1.0.tar.gz")}, SnapshotPath: path, SnapshotInterval: time.Millisecond})
	written := make(chan struct{}, 1)
	f.s.onSnap = func() {
		select {
		case written <- struct{}{}:
		default:
		}
	}
	f.lease(1)
	<-written
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		t.Fatalf("snapshot after lease: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the snapshot", len(ents))
	}
}

func TestSnapshotRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte("{nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{SnapshotPath: path})
	var se *SnapshotError
	if !errors.As(err, &se) || se.Path != path {
		t.Fatalf("New with a broken snapshot: %v", err)
	}
}

// TestSnapshotKeepsOwnersAndKnownRules: after a restart a lease still
// belongs to the identity that took it, a failed scan is still open to its
// lease, and rule names reported before are still known (a duplicate of
// one is no 500).
func TestSnapshotKeepsOwnersAndKnownRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	c := testkit.NewClock()
	cfg := twoIdentities(Config{
		Files:        []File{sdist("aaa-1.0.tar.gz"), sdist("bbb-1.0.tar.gz"), sdist("ccc-1.0.tar.gz")},
		SnapshotPath: path, Now: c.Now, PublicURL: "http://x",
	})
	s1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f1 := &fixture{t: t, s: s1, clock: c}
	a, b, cc := f1.leaseOne(asAlice...), f1.leaseOne(asBob...), f1.leaseOne(asAlice...)
	f1.mustReport(success(a, 1, "known"), asAlice...)
	f1.mustReport(failure(cc, "transient"), asAlice...)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Close() })
	f2 := &fixture{t: t, s: s2, clock: c}
	if rec := f2.do(http.MethodPut, "/package", success(b, 0), asAlice...); rec.Code != http.StatusConflict {
		t.Fatalf("bob's lease reported by alice after a restart: %d %s", rec.Code, rec.Body)
	}
	f2.mustReport(success(b, 2, "known", "known"), asBob...)
	f2.mustReport(success(cc, 3), asAlice...)
	if q := s2.Stats().Queue; q.Finished != 3 || q.Failed != 0 || q.TotalBacklog != 0 {
		t.Fatalf("queue after restart = %+v", q)
	}
}
