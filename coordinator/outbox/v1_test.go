package outbox

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestOpensV1File opens a file written by the first release's outbox
// (testdata/README.md) and checks every field of every report.
func TestOpensV1File(t *testing.T) { opensEarlierFile(t, "outbox-v1.db") }

// TestOpensV2File: the same reports written by the outbox whose records
// carry a checksum (crc32c), as the release after it must read them.
func TestOpensV2File(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "outbox-v2.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"crc32c":`)) {
		t.Fatal("outbox-v2.db holds no checksummed record")
	}
	opensEarlierFile(t, "outbox-v2.db")
}

func opensEarlierFile(t *testing.T, name string) {
	path := copyFile(t, filepath.Join("testdata", name))
	o := mustOpen(t, Config{Path: path})
	if r := o.Recovery(); !reflect.DeepEqual(r, Recovery{}) {
		t.Fatalf("recovery = %+v", r)
	}
	t1 := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	want := []Entry{{
		Report:   Report{Name: "beta", Version: "2.0.post1", Success: &Success{Score: 0, Commit: "c0ffee"}},
		LeasedAt: t1.Add(time.Second), Enqueued: t1.Add(time.Second),
	}, {
		Report:   Report{Name: "gamma", Version: "0.1rc1", Attempt: intp(3), AssignmentID: strp("asg-gamma"), Reason: "download failed: status 404"},
		LeasedAt: t1.Add(2 * time.Second), Enqueued: t1.Add(2 * time.Second),
	}, {
		Report: Report{Name: "alpha", Version: "1.0", Attempt: intp(1), AssignmentID: strp("asg-alpha"),
			Success: &Success{Score: 7, InspectorURL: strp("https://inspector.pypi.io/project/alpha/1.0/packages/a/b/alpha-1.0.tar.gz/alpha-1.0/setup.py#line.3"),
				RulesMatched: []string{"exec_base64", "setup_network"}, Commit: "c0ffee"}},
		LeasedAt: t1, Enqueued: t1.Add(3 * time.Second),
	}, {
		Report:   Report{Name: "delta", Version: "3", Reason: "archive too large: 1073741825 bytes"},
		LeasedAt: t1.Add(-time.Minute), Enqueued: t1.Add(4 * time.Second), Tries: 2,
	}, {
		Report: Report{Name: "epsilon", Version: "1!2.0", Attempt: intp(2), AssignmentID: strp("asg-eps-2"),
			Success: &Success{Score: 15, RulesMatched: []string{"obfuscated_exec"}, Commit: "beefcafe"}},
		LeasedAt: t1.Add(time.Hour), Enqueued: t1.Add(5 * time.Second), Tries: 1, Gen: 1,
	}}
	if o.Len() != len(want) {
		t.Fatalf("len = %d, want %d", o.Len(), len(want))
	}
	// All due at once (retry times are not kept), oldest first.
	for i, w := range want {
		got, ok := o.Next(t1)
		if !ok {
			t.Fatalf("report %d (%s) not due", i, w.Report.Name)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("report %d:\n got %s\n%+v %+v\nwant %s\n%+v %+v", i, show(got), got.Report, got.Report.Success, show(w), w.Report, w.Report.Success)
		}
		if i == 0 {
			// Sent: it must stay gone.
			if done, err := o.Done(got); !done || err != nil {
				t.Fatal(done, err)
			}
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, Config{Path: path})
	defer o.Close()
	if o.Len() != len(want)-1 || o.Has("beta", "2.0.post1") {
		t.Fatalf("after a send and a reopen: len %d, beta still there: %v", o.Len(), o.Has("beta", "2.0.post1"))
	}
}
