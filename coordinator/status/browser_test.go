package status

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatusPageInChromium loads /status of a real coordinator (a worker
// connected, jobs finished) in headless Chromium, checks the rendered DOM
// shows the worker and the jobs, and keeps a screenshot under
// test-artifacts/ at the module root.
func TestStatusPageInChromium(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("chromium not found in PATH (Debian package chromium); skipping the browser test of /status")
	}
	f := finishJobs(t, Config{Version: "v-browser"})
	srv := httptest.NewServer(f.mon.Handler())
	defer srv.Close()
	url := srv.URL + "/status"

	artifacts := filepath.Join(moduleRoot(t), "test-artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	profile := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
			"--disable-background-networking", "--disable-component-update", "--disable-default-apps",
			"--hide-scrollbars", "--user-data-dir=" + profile, "--window-size=1280,1024"}
		cmd := exec.CommandContext(ctx, browser, append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+profile)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %v: %v\n%s", browser, args, err, stderr.String())
		}
		return stdout.Bytes()
	}

	dom := string(run("--dump-dom", url))
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
	for _, want := range []string{"evilpkg", "evil_setup", "https://inspector.pypi.io/project/evilpkg/1.0/", "accepted"} {
		if !strings.Contains(results, want) {
			t.Errorf("results table lacks %q", want)
		}
	}
	failures := section(t, dom, `<table id="failures"`)
	for _, want := range []string{"big", "DRAGONFLY_MAX_FILE_SIZE", "raced", "conflict"} {
		if !strings.Contains(failures, want) {
			t.Errorf("failures table lacks %q", want)
		}
	}
	if !strings.Contains(dom, `id="workers-connected">1<`) {
		t.Errorf("summary does not show 1 worker connected")
	}

	shot := filepath.Join(artifacts, "status-page.png")
	os.Remove(shot)
	run("--screenshot="+shot, url)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
		t.Fatalf("screenshot %s is not a plausible PNG (%d bytes)", shot, len(png))
	}
	t.Logf("screenshot: %s (%d bytes); DOM: %s", shot, len(png), filepath.Join(artifacts, "status-page.dom.html"))
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
