package compose

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/devapi"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

const (
	// synthetic tiny releases added to the demo ones.
	synthetic = 300
	// heavy releases (one sdist with a heavyMiB MiB file each) that keep the
	// workers' scanner slots busy long enough to be lost to the kill.
	heavy    = 40
	heavyMiB = 12
	workers  = 3
	// runTimeout bounds the whole test, image build included.
	runTimeout = 9 * time.Minute
	// coordinatorHTTP is the coordinator's metrics, status and health port.
	coordinatorHTTP = 10179
)

// imageBuilt is set once TestComposeDevFleet has built the image in this
// run, so that TestComposeProductionTLS runs the same image rather than
// building it again (the tests run one after the other).
var imageBuilt bool

// composeCmd runs one docker compose project.
type composeCmd struct {
	t       *testing.T
	argv    []string // docker compose | docker-compose, then the global flags
	env     []string
	dir     string
	project string
}

// newCompose finds a compose command and prepares a project with a unique
// name, docker-compose.yml plus an optional override file, a clean
// environment and an empty env file (a developer's .env with real
// credentials must never be read by a test).
func newCompose(t *testing.T, root, override string, extraEnv map[string]string) *composeCmd {
	t.Helper()
	var argv []string
	if exec.Command("docker", "compose", "version").Run() == nil {
		argv = []string{"docker", "compose"}
	} else if exec.Command("docker-compose", "version").Run() == nil {
		argv = []string{"docker-compose"}
	} else {
		t.Fatal("DRAGONFLY_COMPOSE_TEST=1 but neither `docker compose` nor `docker-compose` works")
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	project := "dftest" + hex.EncodeToString(b)
	envFile := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(envFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	argv = append(argv, "--project-name", project, "--file", filepath.Join(root, "docker-compose.yml"))
	if override != "" {
		argv = append(argv, "--file", override)
	}
	argv = append(argv, "--env-file", envFile, "--profile", "dev")
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DRAGONFLY_") || strings.HasPrefix(kv, "COMPOSE_") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range extraEnv {
		env = append(env, k+"="+v)
	}
	return &composeCmd{t: t, argv: argv, env: env, dir: root, project: project}
}

// run runs a compose subcommand and returns its combined output.
func (c *composeCmd) run(ctx context.Context, args ...string) (string, error) {
	argv := append(append([]string{}, c.argv...), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = c.dir, c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func (c *composeCmd) must(ctx context.Context, args ...string) string {
	c.t.Helper()
	out, err := c.run(ctx, args...)
	if err != nil {
		c.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// downAtCleanup removes the project, volumes included, when the test ends,
// also on failure: then with the containers' last log lines first.
func (c *composeCmd) downAtCleanup() {
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if c.t.Failed() {
			if out, err := c.run(ctx, "logs", "--no-color", "--tail", "60"); err == nil {
				c.t.Logf("compose logs (last 60 lines per container):\n%s", out)
			}
		}
		start := time.Now()
		if out, err := c.run(ctx, "down", "--volumes", "--remove-orphans", "--timeout", "5"); err != nil {
			c.t.Errorf("compose down: %v\n%s", err, out)
		}
		c.t.Logf("%-40s %6.1fs", "compose down -v", time.Since(start).Seconds())
	})
}

// docker runs a docker command and returns its trimmed output.
func docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// builderImage is the image of the Dockerfile's build stage.
func builderImage(ctx context.Context, t *testing.T, root string) string {
	t.Helper()
	if b := os.Getenv("DRAGONFLY_BUILDER_IMAGE"); b != "" {
		return b
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "builder-image"))
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/builder-image: %v\n%s", err, stderr.String())
	}
	t.Logf("builder image: %s", strings.TrimSpace(stderr.String()))
	return strings.TrimSpace(string(out))
}

// devapiClient reads the devapi's development routes.
type devapiClient struct {
	base string
	http *http.Client
}

func (d devapiClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func TestComposeDevFleet(t *testing.T) {
	if os.Getenv("DRAGONFLY_COMPOSE_TEST") != "1" {
		t.Skip("set DRAGONFLY_COMPOSE_TEST=1 to build the image and run the compose fleet (needs Docker)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	step := func(what string, since time.Time) { t.Logf("%-40s %6.1fs", what, time.Since(since).Seconds()) }

	builder := builderImage(ctx, t, root)
	step("builder image", start)
	revision := gitRevision(ctx, t, root)
	t0 := time.Now()
	override := heavyPackages(t)
	step(fmt.Sprintf("%d heavy releases written", heavy), t0)
	dc := newCompose(t, root, override, map[string]string{
		"DRAGONFLY_BUILDER_IMAGE":    builder,
		"DRAGONFLY_DEVAPI_SYNTHETIC": strconv.Itoa(synthetic),
		"DRAGONFLY_DEVAPI_PORT":      "", // a random port on 127.0.0.1
		"DRAGONFLY_METRICS_PORT":     "",
		"DRAGONFLY_LOAD_DURATION":    "1s",
		"DRAGONFLY_REVISION":         revision,
	})

	t0 = time.Now()
	dc.must(ctx, "build", "coordinator")
	step("image build (compose build)", t0)
	imageBuilt = true
	checkRevision(ctx, t, revision)
	t0 = time.Now()
	prune := exec.CommandContext(ctx, filepath.Join(root, "scripts", "image-prune"))
	prune.Dir = root
	if out, err := prune.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image-prune: %v\n%s", err, out)
	}
	step("stale images pruned", t0)

	dc.downAtCleanup()

	// The API and the coordinator first (up waits for the coordinator to be
	// healthy); the workers then start while this test already watches.
	t1 := time.Now()
	dc.must(ctx, "up", "--detach", "--no-build", "devapi", "coordinator")
	step("compose up devapi, coordinator", t1)
	api := devapiClient{base: "http://" + published(ctx, t, dc, "devapi", 8000), http: &http.Client{Timeout: 10 * time.Second}}
	coord := devapiClient{base: "http://" + published(ctx, t, dc, "coordinator", coordinatorHTTP), http: api.http}
	// The health endpoints the probes use: alive, and ready (serving gRPC).
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := httpStatus(ctx, t, coord, path); code != http.StatusOK {
			t.Errorf("coordinator GET %s: %d, want 200", path, code)
		}
	}

	t2 := time.Now()
	upDone := make(chan error, 1)
	go func() {
		out, err := dc.run(ctx, "up", "--detach", "--no-build", "--no-recreate", "--scale", "worker="+strconv.Itoa(workers), "worker")
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		upDone <- err
	}()
	defer func() {
		if upDone != nil {
			<-upDone
		}
	}()

	// Poll the devapi's counters and the coordinator's /status.json: SIGKILL a
	// worker that holds tasks once a tenth of the jobs are reported (and at
	// least a third are not), then wait until every job is.
	var (
		total    int
		killed   string
		stats    devapi.Stats
		ticker   = time.NewTicker(50 * time.Millisecond)
		deadline = time.After(4 * time.Minute)
	)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("test deadline: %v (last stats %+v)", ctx.Err(), stats)
		case <-deadline:
			t.Fatalf("not every job reported within 4 minutes: %+v", stats)
		case err := <-upDone:
			upDone = nil
			if err != nil {
				t.Fatalf("compose up worker: %v", err)
			}
			step("compose up workers", t2)
			continue
		case <-ticker.C:
		}
		if err := api.get(ctx, "/_dev/stats", &stats); err != nil {
			t.Fatalf("devapi stats: %v", err)
		}
		done := int(stats.Finished + stats.Failed)
		total = done + stats.Queue.TotalBacklog
		if total < synthetic+heavy {
			t.Fatalf("devapi holds %d releases, want at least %d", total, synthetic+heavy)
		}
		if killed == "" {
			if done*3 > total*2 {
				t.Fatalf("%d of %d jobs reported before any worker was seen holding a task", done, total)
			}
			if done*10 < total {
				continue // not yet a tenth done: let the fleet get going
			}
			if id, w := busyWorker(ctx, t, dc, coord); id != "" {
				// Frozen first: on a loaded machine a SIGKILL sent while
				// the worker looked busy landed after its last task, and
				// nothing was left to requeue. Frozen, it finishes
				// nothing more; it must still hold a task once what it
				// sent before has arrived.
				if _, err := docker(ctx, "pause", id); err != nil {
					t.Fatal(err)
				}
				if w.Held = frozenHolding(ctx, t, coord, w.SessionID); w.Held == 0 {
					if _, err := docker(ctx, "unpause", id); err != nil {
						t.Fatal(err)
					}
					continue // it had finished: look again
				}
				if _, err := docker(ctx, "kill", "--signal", "KILL", id); err != nil {
					t.Fatal(err)
				}
				killed = id
				t.Logf("SIGKILLed worker %s (frozen holding %d) with %d of %d jobs reported, %.1fs after the workers started",
					w.WorkerID, w.Held, done, total, time.Since(t2).Seconds())
			}
		}
		if killed != "" && upDone == nil && stats.Queue.TotalBacklog == 0 && done == total {
			break
		}
	}
	step(fmt.Sprintf("all %d jobs reported", total), t2)

	// Every job reported exactly once, and no report refused.
	var reports []devapi.ReportRecord
	if err := api.get(ctx, "/_dev/reports", &reports); err != nil {
		t.Fatal(err)
	}
	accepted := map[string]int{}
	var detected int
	for _, r := range reports {
		key := r.Name + "@" + r.Version
		switch r.Status {
		case http.StatusOK:
			accepted[key]++
			if r.Score != nil && *r.Score > 0 && len(r.RulesMatched) > 0 {
				detected++
			}
		case http.StatusConflict:
			t.Errorf("report for %s answered 409 (%s): reported twice or after its lease", key, r.Detail)
		default:
			t.Errorf("report for %s answered %d (%s)", key, r.Status, r.Detail)
		}
	}
	if len(accepted) != total {
		t.Errorf("%d releases have an accepted report, want %d", len(accepted), total)
	}
	var dup []string
	for k, n := range accepted {
		if n != 1 {
			dup = append(dup, fmt.Sprintf("%s x%d", k, n))
		}
	}
	sort.Strings(dup)
	if len(dup) > 0 {
		t.Errorf("releases reported more than once: %v", dup)
	}
	if stats.Status409 != 0 || stats.DeadLettered != 0 {
		t.Errorf("devapi counted %d conflicts and %d dead-lettered jobs, want none", stats.Status409, stats.DeadLettered)
	}
	// The demo's malicious packages are found: YARA (and libmagic) work in
	// the static scratch image.
	if detected == 0 {
		t.Errorf("no report matched a rule: scanning in the image does not work")
	}
	t.Logf("reports: %d accepted (%d with matches), %d finished, %d failed", len(reports), detected, stats.Finished, stats.Failed)

	// The coordinator noticed the lost session and queued its tasks again.
	var doc status.Document
	if err := coord.get(ctx, "/status.json", &doc); err != nil {
		t.Fatal(err)
	}
	t.Logf("coordinator: %d tasks dispatched, %d requeued, %d jobs succeeded, %d reports accepted",
		doc.Fleet.TasksDispatched, doc.Fleet.TasksRequeued, doc.Fleet.JobsSucceeded, doc.Fleet.ReportsAccepted)
	if doc.Fleet.TasksRequeued == 0 {
		t.Errorf("the killed worker's tasks were not requeued (tasks_requeued 0)")
	}
	if doc.Fleet.ReportsConflicted != 0 {
		t.Errorf("coordinator counted %d conflicting reports", doc.Fleet.ReportsConflicted)
	}

	// The images' health checks (`dragonfly healthcheck`) pass, and the
	// containers run as the image's non-root user.
	checkHealthy(ctx, t, dc, killed)
	step("total", start)
}

// checkHealthy waits (bounded) until every container of the project but the
// killed one reports healthy, and checks they run as 65532.
func checkHealthy(ctx context.Context, t *testing.T, dc *composeCmd, killed string) {
	t.Helper()
	ids := strings.Fields(dc.must(ctx, "ps", "-q"))
	pending := map[string]string{}
	for _, id := range ids {
		pending[id] = "unknown"
	}
	poll(ctx, t, time.Second, 90*time.Second, "every container healthy", func() (bool, string) {
		for id := range pending {
			out, err := docker(ctx, "inspect", "--format", "{{.Name}} {{.Config.User}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", id)
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(out)
			if len(f) != 4 {
				t.Fatalf("docker inspect %s: %q", id, out)
			}
			name, user, state, health := f[0], f[1], f[2], f[3]
			if user != "65532:65532" {
				t.Errorf("%s runs as %q, want 65532:65532", name, user)
			}
			if id == killed {
				restarts, _ := docker(ctx, "inspect", "--format", "{{.RestartCount}}", id)
				t.Logf("killed worker %s: %s, restarted %s times", name, state, restarts)
				if state != "running" {
					delete(pending, id) // not restarted (yet): nothing to check
					continue
				}
			}
			switch health {
			case "healthy":
				delete(pending, id)
			case "none":
				t.Errorf("%s has no health check", name)
				delete(pending, id)
			default:
				pending[id] = name + " " + state + " " + health
			}
		}
		return len(pending) == 0, fmt.Sprintf("not healthy: %v", pending)
	})
}

// poll calls done every interval until it reports true; the test fails with
// what and done's last state when within passes first, or when ctx ends.
func poll(ctx context.Context, t *testing.T, interval, within time.Duration, what string, done func() (bool, string)) {
	t.Helper()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	deadline := time.After(within)
	for {
		ok, state := done()
		if ok {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s: not within %v (%s)", what, within, state)
		case <-ctx.Done():
			t.Fatalf("%s: %v (%s)", what, ctx.Err(), state)
		case <-ticker.C:
		}
	}
}

// containers lists the ids of a compose service's containers (through the
// labels compose sets; quicker than docker-compose ps).
func containers(ctx context.Context, t *testing.T, project, service string) []string {
	t.Helper()
	out, err := docker(ctx, "ps", "--all", "--no-trunc", "--quiet",
		"--filter", "label=com.docker.compose.project="+project,
		"--filter", "label=com.docker.compose.service="+service)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// published returns the 127.0.0.1 host address of a service's port.
func published(ctx context.Context, t *testing.T, dc *composeCmd, service string, port int) string {
	t.Helper()
	addr := strings.TrimSpace(dc.must(ctx, "port", service, strconv.Itoa(port)))
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("%s:%d published on %q, want 127.0.0.1 only", service, port, addr)
	}
	return addr
}

// busyWorker returns the container of a connected worker that holds tasks
// (its host name is the container's short id), or "" when none does.
func busyWorker(ctx context.Context, t *testing.T, dc *composeCmd, coord devapiClient) (string, status.Worker) {
	t.Helper()
	var doc status.Document
	if err := coord.get(ctx, "/status.json", &doc); err != nil {
		t.Fatalf("coordinator status: %v", err)
	}
	ids := containers(ctx, t, dc.project, "worker")
	for _, w := range doc.Workers {
		if w.Busy+w.Held == 0 || len(w.Host) < 12 {
			continue
		}
		for _, id := range ids {
			if strings.HasPrefix(id, w.Host) {
				return id, w
			}
		}
	}
	return "", status.Worker{}
}

// frozenHolding returns how many tasks the coordinator counts the frozen
// worker of session as holding, once its count of tasks done has stood
// still for a poll interval (its last results have arrived); 0 when the
// session is gone.
func frozenHolding(ctx context.Context, t *testing.T, coord devapiClient, session string) int {
	t.Helper()
	held, last := 0, int64(-1)
	poll(ctx, t, 500*time.Millisecond, 30*time.Second, "the frozen worker's tasks done to stand still", func() (bool, string) {
		var doc status.Document
		if err := coord.get(ctx, "/status.json", &doc); err != nil {
			t.Fatalf("coordinator status: %v", err)
		}
		for _, w := range doc.Workers {
			if w.SessionID == session {
				settled := w.TasksDone == last
				held, last = w.Held, w.TasksDone
				return settled, fmt.Sprintf("tasks done %d, holding %d", w.TasksDone, w.Held)
			}
		}
		held = 0
		return true, "session gone"
	})
	return held
}

// heavyPackages writes heavy releases for the devapi into a directory the
// container user can read, and a compose override file that serves them; it
// returns the override's path.
func heavyPackages(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pkgs := filepath.Join(dir, "packages")
	if err := os.Mkdir(pkgs, 0o755); err != nil {
		t.Fatal(err)
	}
	// The image runs as 65532: open the way to the directory.
	for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	line := []byte("print('dragonfly fleet compose test: a large, harmless source file')  # padding\n")
	body := bytes.Repeat(line, heavyMiB<<20/len(line))
	for i := range heavy {
		name, version := fmt.Sprintf("heavypkg%02d", i), "1.0"
		sdist := testkit.GzipFast(t, testkit.Tar(t, testkit.TarEntry{Name: name + "-" + version + "/" + name + "/big.py", Body: body}))
		if err := os.WriteFile(filepath.Join(pkgs, name+"-"+version+".tar.gz"), sdist, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	override := filepath.Join(dir, "compose.override.yml")
	yml := fmt.Sprintf(`services:
  devapi:
    command: ["devapi", "--demo", "--packages", "/packages", "--listen-addr", ":8000"]
    volumes:
      - %q
`, pkgs+":/packages:ro")
	if err := os.WriteFile(override, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	return override
}

// gitRevision is the checkout's commit, which the image build links in
// (DRAGONFLY_REVISION), or "" outside a git checkout.
func gitRevision(ctx context.Context, t *testing.T, root string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Logf("git rev-parse HEAD: %v (the image's revision is not checked)", err)
		return ""
	}
	return strings.TrimSpace(string(out))
}

// checkRevision runs `dragonfly version` in the image: a build from a
// context without .git reports the revision passed as a build argument.
func checkRevision(ctx context.Context, t *testing.T, revision string) {
	t.Helper()
	out, err := docker(ctx, "run", "--rm", "dragonfly-fleet:dev", "version")
	if err != nil {
		t.Fatal(err)
	}
	want := "revision: " + revision
	if revision == "" {
		want = "revision: unknown"
	}
	if !strings.Contains(out, want+"\n") {
		t.Errorf("dragonfly version in the image:\n%s\nwant a line %q", out, want)
	}
}

// httpStatus GETs path and returns the status code.
func httpStatus(ctx context.Context, t *testing.T, c devapiClient, path string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// tlsReleases are the synthetic releases of the production-settings run.
const tlsReleases = 40

// TestComposeProductionTLS runs the compose file with the production
// settings of .env.example (against the devapi): secrets from a directory of
// files, TLS on gRPC with a certificate for "coordinator", and no plaintext
// token (DRAGONFLY_FLEET_INSECURE empty). A worker that could not verify the
// coordinator, or that fell back to plaintext, would never connect; every
// release reported proves the secure path works end to end.
func TestComposeProductionTLS(t *testing.T) {
	if os.Getenv("DRAGONFLY_COMPOSE_TEST") != "1" {
		t.Skip("set DRAGONFLY_COMPOSE_TEST=1 to build the image and run the compose fleet (needs Docker)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	secrets := productionSecrets(t)
	dc := newCompose(t, root, "", map[string]string{
		"DRAGONFLY_BUILDER_IMAGE":    builderImage(ctx, t, root),
		"DRAGONFLY_REVISION":         gitRevision(ctx, t, root),
		"DRAGONFLY_DEVAPI_SYNTHETIC": strconv.Itoa(tlsReleases),
		"DRAGONFLY_DEVAPI_PORT":      "",
		"DRAGONFLY_METRICS_PORT":     "",
		"DRAGONFLY_LOAD_DURATION":    "1s",
		"DRAGONFLY_SECRETS_DIR":      secrets,
		"DRAGONFLY_TLS_CERT":         "/run/secrets/tls_cert",
		"DRAGONFLY_TLS_KEY":          "/run/secrets/tls_key",
		"DRAGONFLY_TLS_CA":           "/run/secrets/tls_ca",
		"DRAGONFLY_FLEET_INSECURE":   "",
	})
	if !imageBuilt { // run alone: build the image from this checkout
		dc.must(ctx, "build", "coordinator")
		imageBuilt = true
	}
	dc.downAtCleanup()
	dc.must(ctx, "up", "--detach", "--no-build", "--scale", "worker=2")
	api := devapiClient{base: "http://" + published(ctx, t, dc, "devapi", 8000), http: &http.Client{Timeout: 10 * time.Second}}
	coord := devapiClient{base: "http://" + published(ctx, t, dc, "coordinator", coordinatorHTTP), http: api.http}

	var stats devapi.Stats
	poll(ctx, t, 100*time.Millisecond, 3*time.Minute, "every job reported over TLS", func() (bool, string) {
		if err := api.get(ctx, "/_dev/stats", &stats); err != nil {
			t.Fatalf("devapi stats: %v", err)
		}
		return int(stats.Finished+stats.Failed) >= tlsReleases && stats.Queue.TotalBacklog == 0, fmt.Sprintf("%+v", stats)
	})
	var doc status.Document
	if err := coord.get(ctx, "/status.json", &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Workers) != 2 {
		t.Errorf("%d workers connected over TLS, want 2", len(doc.Workers))
	}
	if stats.Status409 != 0 || doc.Fleet.ReportsConflicted != 0 {
		t.Errorf("conflicts: devapi %d, coordinator %d", stats.Status409, doc.Fleet.ReportsConflicted)
	}
	checkHealthy(ctx, t, dc, "")
	t.Logf("%d releases reported by 2 workers over TLS in %.1fs", stats.Finished+stats.Failed, time.Since(start).Seconds())
}

// productionSecrets writes the secrets directory of .env.example: a random
// fleet token, a CA and a coordinator certificate for "coordinator", and
// empty files for the unused credentials. It returns the directory.
func productionSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca := testkit.NewCA(t, "dragonfly fleet test CA")
	leaf := ca.Issue(t, "coordinator", x509.ExtKeyUsageServerAuth, "coordinator")
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"fleet_token": []byte(hex.EncodeToString(token) + "\n"),
		"tls_ca":      ca.PEM,
		"tls_cert":    leaf.CertPEM,
		"tls_key":     leaf.KeyPEM,
	}
	for _, empty := range []string{"status_token", "cf_access_client_id", "cf_access_client_secret", "client_id", "client_secret", "username", "password"} {
		files[empty] = nil
	}
	for name, data := range files {
		// Readable by the containers' user 65532, as .env.example says.
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestProductionSecrets checks the secrets directory without Docker: the
// coordinator's certificate and key pair up and verify for "coordinator"
// against tls_ca, the token is 64 hex digits, and every file is read-only
// for everyone (the containers run as another user).
func TestProductionSecrets(t *testing.T) {
	dir := productionSecrets(t)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls_cert"), filepath.Join(dir, "tls_key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls_ca"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("tls_ca holds no certificate")
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "coordinator"}); err != nil {
		t.Errorf("the coordinator's certificate does not verify: %v", err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "fleet_token"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := hex.DecodeString(strings.TrimSuffix(string(token), "\n")); err != nil || len(b) != 32 {
		t.Errorf("fleet_token %q: want 32 bytes in hex", token)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o444 {
			t.Errorf("%s: mode %v, want 0444", e.Name(), fi.Mode().Perm())
		}
	}
	if len(entries) != 11 {
		t.Errorf("%d files, want 11 (token, TLS files, 7 empty credentials)", len(entries))
	}
}
