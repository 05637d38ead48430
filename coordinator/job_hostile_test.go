package coordinator

import (
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/fakeapi"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"google.golang.org/grpc/codes"
)

// Attacks by a hostile or buggy API on the path from a leased job to its
// report: job JSON the workers' stream cannot carry.

// TestHugeDistributionURLFailsItsJobNotTheFleet: a leased job whose
// distribution URL is larger than a coordinator message may be (the API's
// answer may be 64 MiB) fails that job, naming the limit; it is never sent
// to a worker, whose session it would end (the Assign is over the send
// limit) with every task it holds, and then the next session's, and so on.
// A name or version over protocol.MaxTextBytes fails its job the same way
// (the API client already leaves such a job out: TestLeaseDecoding; this
// is the dispatcher's own check, for any other source of jobs): one byte
// over is enough, and a report that echoes a 33 MiB name only slows the
// test.
func TestHugeDistributionURLFailsItsJobNotTheFleet(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		job  func(huge string) mainframe.Job
	}{
		{"url", protocol.MaxResponseBytes, func(huge string) mainframe.Job { return job("big", "https://h/p/"+huge+".tar.gz") }},
		{"name", protocol.MaxTextBytes + 1, func(huge string) mainframe.Job { return job(huge, "https://h/p/x-1.0.tar.gz") }},
		{"version", protocol.MaxTextBytes + 1, func(huge string) mainframe.Job {
			j := job("big", "https://h/p/x-1.0.tar.gz")
			j.Version = huge
			return j
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			huge := strings.Repeat("a", tc.size)
			api := newFakeAPI(tc.job(huge), job("small", "https://h/p/small-1.0.tar.gz"))
			_, w := readyWorker(t, api, "w", 2)
			ts := w.tasks(1)
			if ts[0].GetJob().GetName() != "small" {
				t.Fatalf("task of %.40q sent to a worker", ts[0].GetJob().GetName())
			}
			w.answer(result(ts[0], ""))
			byName := testkit.ByKey(t, api.WaitReports(t, 2), func(r mainframe.Report) string { return clipName(r.Name) })
			if r := byName["small"]; r.Success == nil {
				t.Fatalf("small: %+v", r)
			}
			if r := byName["big"]; r.Success != nil || !strings.Contains(r.Reason, "exceeds") {
				t.Fatalf("big: success %+v, reason %.200q; want a failure naming the limit", r.Success, r.Reason)
			}
		})
	}
}

// clipName names a report by the first three bytes of a huge name.
func clipName(s string) string {
	if len(s) > 1000 {
		return "big"
	}
	return s
}

// TestResultNamingAPrivateRuleIsRefused: YARA never reports a match of a
// private rule, so a result naming one is a lie however the rule is
// weighted: the session ends as for a rule the set does not hold, and the
// rule never reaches rules_matched.
func TestResultNamingAPrivateRuleIsRefused(t *testing.T) {
	api := fakeapi.New(mainframe.RuleSet{Hash: "h1", Rules: map[string]string{"a": testRules +
		`private rule helper { meta: weight = 50 strings: $a = "helper" condition: $a }` + "\n"}}, job("p", "u1"))
	f, liar := readyWorker(t, api, "liar", 1)
	tk := liar.tasks(1)[0]
	liar.answer(&fleetv1.TaskResult{TaskId: tk.GetTaskId(), Outcome: &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{
		Score: 50, TopFile: "x.py", TopFileScore: 50, Rules: []*fleetv1.RuleHit{{Name: "helper", Weight: 50}},
	}}})
	wantEnded(t, liar.recv, codes.InvalidArgument, "", "the liar's session (a private rule claimed)")
	honest := f.worker("honest", 1)
	honest.ready()
	honest.answer(result(honest.tasks(1)[0], ""))
	if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 0 || len(r.Success.RulesMatched) != 0 {
		t.Fatalf("report %+v, want the honest clean result", r.Success)
	}
}
