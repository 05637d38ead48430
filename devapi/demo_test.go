package devapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
)

// TestDemoResults: the demo packages queue as releases; once every job is
// reported the queue is drained, and the table lists the accepted reports
// by release (a score and its rules, or the failure) with the summary.
func TestDemoResults(t *testing.T) {
	files, err := DemoFiles()
	if err != nil || len(files) == 0 {
		t.Fatalf("%d demo files: %v", len(files), err)
	}
	f := newFixture(t, Config{Files: files, Rules: demo.Rules()})
	jobs := f.lease(100)
	if len(jobs) < 2 {
		t.Fatalf("%d jobs", len(jobs))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	if f.s.WaitDrained(ctx, time.Millisecond) {
		t.Error("drained with every job leased and none reported")
	}
	cancel()
	for i, j := range jobs {
		body := success(j, 0)
		switch i {
		case 0:
			body = success(j, 8, "demo_exec_base64", "demo_setup_download")
		case 1:
			body = failure(j, "distribution x.tar.gz: not an archive")
		}
		if rec := f.report(body); rec.Code != 200 {
			t.Fatalf("report %s: %d %s", j.Name, rec.Code, rec.Body)
		}
	}
	if !f.s.WaitDrained(t.Context(), time.Millisecond) {
		t.Fatal("not drained")
	}
	var out strings.Builder
	if err := f.s.WriteResults(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if squeeze(lines[0]) != "PACKAGE VERSION SCORE RULES MATCHED INSPECTOR URL / REASON" || len(lines) != len(jobs)+3 {
		t.Fatalf("table:\n%s", out.String())
	}
	for _, want := range []string{
		jobs[0].Name + " " + jobs[0].Version + " 8 demo_exec_base64,demo_setup_download -",
		jobs[1].Name + " " + jobs[1].Version + " FAILED - distribution x.tar.gz: not an archive",
		jobs[2].Name + " " + jobs[2].Version + " 0 - -",
	} {
		if !strings.Contains(squeeze(out.String()), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if want := fmt.Sprintf("%d releases scanned: %d reports accepted, 0 refused (409), rules %s", len(jobs), len(jobs), f.s.RulesHash()); lines[len(lines)-1] != want {
		t.Errorf("summary %q, want %q", lines[len(lines)-1], want)
	}
}

// TestDemoResultsListUnreported: a release the fleet never reported
// (dead-lettered when its last lease expired) is listed as NOT REPORTED
// with the API's reason, not left out of the table, and WriteResults
// returns ErrUnreported after writing it (dragonfly local --demo exits
// non-zero).
func TestDemoResultsListUnreported(t *testing.T) {
	files, err := DemoFiles()
	if err != nil || len(files) == 0 {
		t.Fatalf("%d demo files: %v", len(files), err)
	}
	f := newFixture(t, Config{Files: files, Rules: demo.Rules(), MaxAttempts: 1, LeaseTimeout: time.Minute})
	jobs := f.lease(100)
	if len(jobs) < 2 {
		t.Fatalf("%d jobs", len(jobs))
	}
	lost := jobs[len(jobs)-1]
	for _, j := range jobs[:len(jobs)-1] {
		if rec := f.report(success(j, 0)); rec.Code != 200 {
			t.Fatalf("report %s: %d %s", j.Name, rec.Code, rec.Body)
		}
	}
	f.clock.Advance(2 * time.Minute)
	if again := f.lease(100); len(again) != 0 { // dead-letters the expired lease
		t.Fatalf("leased %d jobs again, want none (one attempt each)", len(again))
	}
	var out strings.Builder
	err = f.s.WriteResults(&out)
	if !errors.Is(err, ErrUnreported) || !strings.Contains(err.Error(), fmt.Sprintf("1 of %d releases have no report", len(jobs))) {
		t.Errorf("WriteResults: %v; want ErrUnreported counting 1 of %d", err, len(jobs))
	}
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if want := lost.Name + " " + lost.Version + " NOT REPORTED - dead-lettered: Worker lease expired after 1 scan attempts"; !strings.Contains(squeeze(out.String()), want) {
		t.Errorf("table lacks %q:\n%s", want, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(jobs)+3 {
		t.Errorf("%d lines, want a row for each of the %d releases:\n%s", len(lines), len(jobs), out.String())
	}
	if want := fmt.Sprintf("%d releases scanned: %d reports accepted, 0 refused (409), rules %s", len(jobs)-1, len(jobs)-1, f.s.RulesHash()); lines[len(lines)-1] != want {
		t.Errorf("summary %q, want %q", lines[len(lines)-1], want)
	}
}

func TestOpenToAll(t *testing.T) {
	for _, tt := range []struct {
		addr string
		auth string
		open bool
	}{
		{"127.0.0.1:8000", AuthNone, false},
		{"[::1]:8000", AuthNone, false},
		{"0.0.0.0:8000", AuthNone, true},
		{"[::]:8000", AuthNone, true},
		{"192.0.2.7:8000", AuthNone, true},
		{"0.0.0.0:8000", AuthCloudflare, false},
		{"0.0.0.0:8000", AuthAuth0, false},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := OpenToAll(addr, tt.auth); got != tt.open {
			t.Errorf("OpenToAll(%s, %s) = %v, want %v", tt.addr, tt.auth, got, tt.open)
		}
	}
}
