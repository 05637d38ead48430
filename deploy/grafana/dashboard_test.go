// Package grafana holds the Grafana dashboard of Dragonfly Fleet
// (dragonfly-fleet.json). Its test checks the dashboard against the metrics
// the coordinator and worker registries actually export.
package grafana

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/mainframe"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
	"github.com/dragonfly-fleet/fleet/coordinator/status"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/worker/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"
)

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                       `json:"id"`
	Type       string                    `json:"type"`
	Title      string                    `json:"title"`
	Datasource *datasource               `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Datasource *datasource `json:"datasource"`
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// fixedSource is a coordinator as the Monitor reads it: a fixed snapshot
// and a queue status the API answered.
type fixedSource struct {
	snap coordinator.Snapshot
	view coordinator.QueueView
}

func (s fixedSource) Snapshot() coordinator.Snapshot { return s.snap }
func (s fixedSource) QueueStatus(context.Context, time.Duration) coordinator.QueueView {
	return s.view
}

// exported gathers both roles' metrics after activity that makes every
// metric appear, and returns the names of the series Prometheus would store
// (histograms as _bucket, _sum, _count).
func exported(t *testing.T) map[string]bool {
	t.Helper()
	mon := status.New(status.Config{})
	mon.Leased(1, nil)
	mon.JobFinished(dispatch.Outcome{Job: dispatch.Job{Name: "a", Version: "1", LeasedAt: time.Now()}, Finished: time.Now()})
	mon.Reported(outbox.Report{Name: "a", Version: "1", Success: &outbox.Success{}}, nil, 0)
	mon.APIObserver().Call("POST /jobs", 500, time.Millisecond)
	age := 3.0
	src := fixedSource{
		snap: coordinator.Snapshot{Taken: time.Now(), RulesHash: "abc123"},
		view: coordinator.QueueView{Status: mainframe.QueueStatus{Queued: 4, TotalBacklog: 4, OldestAgeSeconds: &age}, Fetched: time.Now()},
	}

	rec := metrics.New(metrics.Config{Threads: 2})
	rec.Downloaded(10, time.Millisecond, errors.New("x"))
	rec.FileScanned(10, time.Millisecond)
	rec.TaskDone(&fleetv1.TaskResult{Stats: &fleetv1.TaskStats{WallTime: durationpb.New(time.Second), ScanTime: durationpb.New(time.Millisecond)}}, "")
	rec.RulesCompiled(time.Second, nil)

	names := map[string]bool{}
	for _, g := range []prometheus.Gatherer{mon.Gatherer(src), rec.Registry()} {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetType().String() == "HISTOGRAM" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[mf.GetName()+s] = true
				}
				continue
			}
			names[mf.GetName()] = true
		}
	}
	return names
}

var (
	// An identifier right before a selector or a range: a metric name.
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)
	// Any dragonfly_* identifier, wherever it stands.
	dragonflyRE = regexp.MustCompile(`\bdragonfly_[a-zA-Z0-9_:]*`)
)

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("dragonfly-fleet.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dragonfly-fleet.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q uid %q", d.Title, d.UID)
	}
	hasDS := slices.ContainsFunc(d.Templating.List, func(v struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query string `json:"query"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	})
	if !hasDS {
		t.Fatal("no datasource variable named datasource of type prometheus")
	}

	names := exported(t)
	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	queries := 0
	for _, p := range all {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
			found := dragonflyRE.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q query %s uses no dragonfly metric: %s", p.Title, tg.RefID, tg.Expr)
			}
			for _, m := range selectorRE.FindAllStringSubmatch(tg.Expr, -1) {
				found = append(found, m[1])
			}
			for _, n := range found {
				used[n] = true
				if !names[n] {
					t.Errorf("panel %q query %s: metric %s is not exported by the coordinator or worker registries", p.Title, tg.RefID, n)
				}
			}
		}
	}
	// The dashboard covers the areas it promises.
	for _, must := range []string{
		"dragonfly_jobs_completed_total", "dragonfly_api_queue_backlog_jobs", "dragonfly_dispatch_backlog_tasks",
		"dragonfly_worker_tasks_total", "dragonfly_api_request_duration_seconds_bucket", "dragonfly_worker_task_duration_seconds_bucket",
		"dragonfly_workers_connected", "dragonfly_fleet_desired_workers",
	} {
		if !used[must] {
			t.Errorf("no panel shows %s", must)
		}
	}
	t.Logf("%d panels, %d queries, %d metric names checked", len(all), queries, len(used))
	checkPromQL(t, all)
}

// checkPromQL parses every query with promtool (as recording rules, Grafana's
// interval variables replaced by 5m). It fails when promtool is missing.
func checkPromQL(t *testing.T, panels []panel) {
	t.Helper()
	// Missing promtool is a failure, not a skip: a test that passes without
	// checking the queries would hide broken panels (make setup-test installs
	// it with Debian's prometheus package).
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found in PATH: install Debian's prometheus package (make setup-test); the dashboard's PromQL cannot be checked without it: %v", err)
	}
	var b strings.Builder
	b.WriteString("groups:\n- name: dashboard\n  rules:\n")
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	for _, p := range panels {
		for _, tg := range p.Targets {
			expr, err := json.Marshal(vars.Replace(tg.Expr)) // a JSON string is a YAML string
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "  - record: dashboard:panel_%d_%s\n    expr: %s\n", p.ID, tg.RefID, expr)
		}
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules (the dashboard's queries): %v\n%s", err, out)
	}
}
