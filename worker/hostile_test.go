package worker

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
)

// Hostile distributions through a real worker session: each must end in
// exactly the failure (kind, limit, one-line reason naming the distribution
// and the defect or limit) or the clean scan listed in testkit.HostileCases,
// and the worker must go on serving tasks afterwards. cmd/dragonfly runs the
// same cases through dragonfly scan: the two verdict paths are one.

func TestHostileDistributions(t *testing.T) {
	cases := testkit.HostileCases(t)
	srv := testkit.HostileServer(t, cases)
	e := startWorker(t, 2, func(cfg *Config) {
		cfg.MaxPrefetch = len(cases) // the whole batch is assigned at once
		cfg.Limits = testkit.HostileLimits()
		cfg.Fetch = fetch.Config{AllowedHosts: []string{srv.URL}, Attempts: 1, StallTimeout: testkit.HostileStall}
	})
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	var tasks []*fleetv1.Task
	for i, c := range cases {
		tasks = append(tasks, &fleetv1.Task{TaskId: uint64(i + 1), Url: srv.URL + "/" + c.Dist, RulesHash: demoHash, Job: &fleetv1.JobRef{Name: c.Dist, Version: "1.0"}})
	}
	s.assign(tasks...)
	got := s.results(len(cases))
	for i, c := range cases {
		r := got[uint64(i+1)]
		f := r.GetFailure()
		if c.Clean() {
			if d := r.GetDistribution(); d == nil || r.GetStats().GetFiles() != c.Files {
				t.Errorf("%s: %v, want a clean scan of %d files", c.Name, r, c.Files)
			}
			continue
		}
		if f == nil {
			t.Errorf("%s: %v, want a failure", c.Name, r)
			continue
		}
		if c.Downloaded != 0 && r.GetStats().GetBytesDownloaded() != c.Downloaded {
			t.Errorf("%s: downloaded %d bytes, want %d", c.Name, r.GetStats().GetBytesDownloaded(), c.Downloaded)
		}
		if f.GetKind() != c.Kind || f.GetLimit() != string(c.Limit) || f.GetReason() != c.Reason {
			t.Errorf("%s:\n got kind %v limit %q reason %q\nwant kind %v limit %q reason %q", c.Name, f.GetKind(), f.GetLimit(), f.GetReason(), c.Kind, c.Limit, c.Reason)
		}
	}
	// The worker is still serving: a demo package scans as usual.
	s.assign(e.task(uint64(len(cases)+1), "reqeusts-2.31.0.tar.gz", demoHash))
	if d := s.results(1)[uint64(len(cases)+1)].GetDistribution(); d.GetScore() != 8 {
		t.Fatalf("after the hostile batch: %v, want reqeusts scoring 8", d)
	}
}

// Rules that do not compile are reported on the stream with the file and
// line; tasks for them are handed back, never failed (the package is not at
// fault), and the worker keeps its good rules.
func TestRulesThatDoNotCompile(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "broken", Sources: map[string]string{
		"good": `rule g { condition: true }`,
		"bad":  "rule b {\n  strings: $a = \"x\"\n  condition: $a and\n}",
	}}}})
	var st *fleetv1.RulesStatus
	for st == nil {
		st = s.next().GetRulesStatus()
	}
	if st.GetHash() != "broken" || st.GetError() != "rules do not compile: bad.yara:4: syntax error" {
		t.Fatalf("rules status %v, want an error for hash broken at bad.yara:4", st)
	}
	s.assign(e.task(1, "reqeusts-2.31.0.tar.gz", "broken"), e.task(2, "reqeusts-2.31.0.tar.gz", demoHash))
	var returned []uint64
	var results map[uint64]*fleetv1.TaskResult
	for results == nil || returned == nil {
		m := s.next()
		if ids := m.GetTaskReturn().GetTaskIds(); len(ids) > 0 {
			returned = ids
		}
		for _, r := range m.GetResults().GetResults() {
			results = map[uint64]*fleetv1.TaskResult{r.GetTaskId(): r}
		}
	}
	if len(returned) != 1 || returned[0] != 1 {
		t.Errorf("handed back %v, want [1]", returned)
	}
	if d := results[2].GetDistribution(); d.GetScore() != 8 {
		t.Errorf("task 2 with the good rules: %v, want score 8", results[2])
	}
}

// TestRuleSetWithTooManyFilesIsRefused: a rule set of more than
// protocol.MaxRuleFiles files is not compiled (millions of tiny files took
// seconds and hundreds of MiB): the worker answers it as a set that does
// not compile, naming the bound, and goes on scanning with the rules it
// has.
func TestRuleSetWithTooManyFilesIsRefused(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	many := map[string]string{}
	for i := range protocol.MaxRuleFiles + 1 {
		many[fmt.Sprintf("f%d", i)] = ""
	}
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "many", Sources: many}}})
	for {
		st := s.next().GetRulesStatus()
		if st.GetHash() != "many" {
			continue
		}
		if !strings.Contains(st.GetError(), "4097 files, over the 4096") {
			t.Fatalf("status %v, want an error naming the file bound", st)
		}
		break
	}
	s.assign(e.task(1, "reqeusts-2.31.0.tar.gz", demoHash))
	for {
		if rs := s.next().GetResults().GetResults(); len(rs) > 0 {
			if d := rs[0].GetDistribution(); d.GetScore() != 8 {
				t.Fatalf("task 1: %v, want reqeusts scoring 8", rs[0])
			}
			return
		}
	}
}

// TestRuleSetWithAHugeHashIsRefused: a rule set whose hash is over
// protocol.MaxIDBytes (a commit hash is 40 bytes) is neither compiled nor
// answered: its hash went whole into log lines and into a RulesStatus,
// which at megabytes exceeds the send limit and ends the session. The
// worker goes on scanning with the rules it has.
func TestRuleSetWithAHugeHashIsRefused(t *testing.T) {
	e := startWorker(t, 1, nil)
	s := e.session()
	s.welcome(demoHash, demo.Rules())
	huge := strings.Repeat("h", protocol.MaxIDBytes+1)
	s.send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: huge, Sources: map[string]string{"r": `rule r { condition: true }`}}}})
	s.assign(e.task(1, "reqeusts-2.31.0.tar.gz", demoHash))
	for {
		m := s.next()
		if st := m.GetRulesStatus(); st != nil && len(st.GetHash()) > protocol.MaxIDBytes {
			t.Fatalf("a status for the refused hash (%d bytes)", len(st.GetHash()))
		}
		if rs := m.GetResults().GetResults(); len(rs) > 0 {
			if d := rs[0].GetDistribution(); d.GetScore() != 8 {
				t.Fatalf("task 1: %v, want reqeusts scoring 8", rs[0])
			}
			return
		}
	}
}
