package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator"
	"github.com/dragonfly-fleet/fleet/coordinator/dispatch"
	"github.com/dragonfly-fleet/fleet/coordinator/outbox"
)

// troubled is a real coordinator's snapshot with trouble added: a
// quarantined identity and outbox trouble, with long strings, so the page
// shows every section.
type troubled struct {
	Source
	since time.Time
}

const longIdentity = "cert:CN=worker-7f3a9c1e.scanners.eu-west-1.internal.example.org,OU=dragonfly-fleet,O=Example"

func (s troubled) Snapshot() coordinator.Snapshot {
	snap := s.Source.Snapshot()
	snap.Dispatch.Quarantined = append(snap.Dispatch.Quarantined, dispatch.QuarantineInfo{
		Identity: longIdentity, Since: s.since,
		Reason: "spot check of evilpkg 1.0 (https://files.example/packages/aa/bb/evilpkg-1.0.tar.gz): reported score 0, the majority 7",
	})
	snap.Outbox.Health = outbox.Health{WriteFailing: true, Since: s.since, NotDurable: 2, Failures: 5,
		LastError: "write /var/lib/dragonfly-fleet/coordinator/outbox/outbox.db: no space left on device"}
	snap.Outbox.Recovery = outbox.Recovery{CorruptPath: "/var/lib/dragonfly-fleet/coordinator/outbox/outbox.db.corrupt-20260801T120000.123456789Z",
		CorruptCause: "freelist page 17 points past the end of the file", Salvaged: 3}
	return snap
}

// TestStatusPageInChromium loads /status of a real coordinator (a worker
// connected, jobs finished, a quarantine and outbox trouble added) in
// headless Chromium at 1280 and at 420 px, checks the rendered DOM, checks
// that the page fits the window (document.documentElement.scrollWidth), and
// keeps screenshots under test-artifacts/ at the module root. Chromium comes
// with make setup-test: without it the test fails.
func TestStatusPageInChromium(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Fatal("chromium not found in PATH: run make setup-test (Debian package chromium)")
	}
	f := finishJobs(t, Config{Version: "v-browser"})
	since := time.Now().Add(-2 * time.Minute)
	f.mon.JobFinished(dispatch.Outcome{Job: dispatch.Job{Name: "evilpkg", Version: "1.0"}, Identities: []string{longIdentity}, Finished: since.Add(-time.Minute)})
	f.mon.DispatchEvent(dispatch.Event{Kind: dispatch.EventVerifyMismatch, Time: since, Name: "evilpkg", Version: "1.0",
		Identities: []string{longIdentity, "w-alpha"}, Reason: "verdicts differ: score 0 against score 7 (rules evil_setup)"})
	f.mon.DispatchEvent(dispatch.Event{Kind: dispatch.EventQuarantine, Time: since, Identity: longIdentity, Reason: "lied in a spot check"})
	status := f.mon.Handler(troubled{Source: f.c, since: since}, f.srv.Ready)

	// /frame?w=N shows /status in an iframe N px wide and records the
	// layout of the page inside once loaded. Headless Chromium keeps its
	// window at least 500 px wide; the frame is the page's viewport at
	// exactly N px (its media queries see N). The page itself has no script.
	mux := http.NewServeMux()
	mux.Handle("/", status)
	mux.HandleFunc("/frame", func(w http.ResponseWriter, r *http.Request) {
		width, err := strconv.Atoi(r.URL.Query().Get("w"))
		if err != nil {
			http.Error(w, "w", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">
<iframe id="page" src="/status" style="display:block;border:0;width:%dpx;height:3000px"></iframe>
<script>addEventListener("load", () => {
  const f = document.getElementById("page"), p = document.createElement("pre");
  p.id = "layout";
  p.textContent = JSON.stringify({scrollWidth: f.contentDocument.documentElement.scrollWidth, innerWidth: f.contentWindow.innerWidth});
  document.body.appendChild(p);
});</script></body></html>`, width)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	artifacts := filepath.Join(moduleRoot(t), "test-artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(width string, args ...string) []byte {
		t.Helper()
		profile := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
			"--disable-background-networking", "--disable-component-update", "--disable-default-apps",
			"--hide-scrollbars", "--user-data-dir=" + profile, "--window-size=" + width + ",3040", "--virtual-time-budget=3000"}
		cmd := exec.CommandContext(ctx, browser, append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+profile)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %v: %v\n%s", browser, args, err, stderr.String())
		}
		return stdout.Bytes()
	}

	dom := string(run("1280", "--dump-dom", srv.URL+"/status"))
	if err := os.WriteFile(filepath.Join(artifacts, "status-page.dom.html"), []byte(dom), 0o644); err != nil {
		t.Fatal(err)
	}
	workers := section(t, dom, `<table id="workers"`)
	for _, want := range []string{"w-alpha", "host-w-alpha", "test-worker"} {
		if !strings.Contains(workers, want) {
			t.Errorf("workers table lacks %q", want)
		}
	}
	results := section(t, dom, `<table id="results"`)
	for _, want := range []string{"evilpkg", "evil_setup", "https://inspector.pypi.io/project/evilpkg/1.0/", "accepted", `class="score medium"`} {
		if !strings.Contains(results, want) {
			t.Errorf("results table lacks %q", want)
		}
	}
	failures := section(t, dom, `<table id="failures"`)
	for _, want := range []string{"big", "DRAGONFLY_MAX_FILE_SIZE", "raced", "conflict", "failure reported"} {
		if !strings.Contains(failures, want) {
			t.Errorf("failures table lacks %q", want)
		}
	}
	quarantined := section(t, dom, `<table id="quarantined"`)
	for _, want := range []string{longIdentity, "1 release", "evilpkg==1.0"} {
		if !strings.Contains(quarantined, want) {
			t.Errorf("quarantine table lacks %q", want)
		}
	}
	if !strings.Contains(dom, `id="workers-connected">1<`) {
		t.Errorf("summary does not show 1 worker connected")
	}
	if !strings.Contains(dom, "Outbox writes are failing") || !strings.Contains(dom, "Outbox file was corrupt at startup") {
		t.Errorf("page lacks the outbox alerts")
	}

	layoutRE := regexp.MustCompile(`<pre id="layout">([^<]*)</pre>`)
	for _, width := range []int{1280, 420} {
		window := strconv.Itoa(max(width, 500))
		frame := srv.URL + "/frame?w=" + strconv.Itoa(width)
		probed := string(run(window, "--dump-dom", frame))
		m := layoutRE.FindStringSubmatch(probed)
		if m == nil {
			t.Fatalf("%d px: the layout probe did not run:\n%s", width, probed[max(len(probed)-2000, 0):])
		}
		var layout struct{ ScrollWidth, InnerWidth int }
		if err := json.Unmarshal([]byte(m[1]), &layout); err != nil {
			t.Fatalf("%d px: layout %q: %v", width, m[1], err)
		}
		if layout.InnerWidth != width {
			t.Fatalf("%d px: the page's viewport is %d px wide: the measurement would not be at %d px", width, layout.InnerWidth, width)
		}
		if layout.ScrollWidth > width {
			t.Errorf("%d px: the page is %d px wide (document.documentElement.scrollWidth): it does not fit", width, layout.ScrollWidth)
		}
		t.Logf("%d px viewport: document.documentElement.scrollWidth %d", width, layout.ScrollWidth)

		shot := filepath.Join(artifacts, "status-page-"+strconv.Itoa(width)+".png")
		os.Remove(shot)
		run(window, "--screenshot="+shot, frame)
		png, err := os.ReadFile(shot)
		if err != nil {
			t.Fatalf("no screenshot: %v", err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
			t.Fatalf("screenshot %s is not a plausible PNG (%d bytes)", shot, len(png))
		}
		t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	}
}

// section returns the HTML from the start marker to the end of its table.
func section(t *testing.T, html, start string) string {
	t.Helper()
	i := strings.Index(html, start)
	if i < 0 {
		t.Fatalf("page lacks %s", start)
	}
	rest := html[i:]
	if j := strings.Index(rest, "</table>"); j >= 0 {
		return rest[:j]
	}
	return rest
}

// moduleRoot is the directory holding go.mod, above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}
