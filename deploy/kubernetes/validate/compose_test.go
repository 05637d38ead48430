package validate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeService is the part of a compose service these checks read.
type composeService struct {
	Image           string            `json:"image"`
	Command         []string          `json:"command"`
	Profiles        []string          `json:"profiles"`
	Environment     map[string]string `json:"environment"`
	ReadOnly        bool              `json:"read_only"`
	CapDrop         []string          `json:"cap_drop"`
	User            string            `json:"user"`
	Restart         string            `json:"restart"`
	StopGracePeriod string            `json:"stop_grace_period"`
	MemLimit        string            `json:"mem_limit"`
	Ports           []string          `json:"ports"`
	Secrets         []string          `json:"secrets"`
	Healthcheck     *struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
}

// TestComposeFile checks docker-compose.yml statically (the compose test in
// deploy/compose runs it): roles, hardening, health checks through the
// image's binary on /readyz, the 10179/10180 ports, grace periods,
// loopback-only ports, secrets as files, development defaults that
// .env.example turns to production (TLS, no plaintext token), and that every
// DRAGONFLY_* name is one the dragonfly command reads and every .env.example
// setting reaches the file.
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]composeService `json:"services"`
		Volumes  map[string]any            `json:"volumes"`
		Secrets  map[string]struct {
			File string `json:"file"`
		} `json:"secrets"`
	}
	// Not strict: compose has many fields this struct leaves out.
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	known := knownEnvNames(t)
	wantCmd := map[string]string{"coordinator": "coordinator", "worker": "worker", "devapi": "devapi"}
	if len(file.Services) != len(wantCmd) {
		t.Errorf("services %v, want coordinator, worker, devapi", keys(file.Services))
	}
	for name, role := range wantCmd {
		s, ok := file.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		if len(s.Command) == 0 || s.Command[0] != role {
			t.Errorf("%s: command %v does not run `dragonfly %s`", name, s.Command, role)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || s.User != "65532:65532" {
			t.Errorf("%s: want read_only, cap_drop ALL, user 65532:65532", name)
		}
		if s.Restart == "" || s.MemLimit == "" {
			t.Errorf("%s: no restart policy or memory limit", name)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 4 || s.Healthcheck.Test[0] != "CMD" ||
			s.Healthcheck.Test[1] != binary || s.Healthcheck.Test[2] != "healthcheck" {
			t.Errorf("%s: health check must be [CMD, %s, healthcheck, ...] (no shell in the image)", name, binary)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: port %q is published beyond the loopback", name, p)
			}
		}
		for env := range s.Environment {
			if strings.HasPrefix(env, "DRAGONFLY_") && !known[env] {
				t.Errorf("%s: environment %s is not a setting of the dragonfly command", name, env)
			}
		}
	}
	if p := file.Services["devapi"].Profiles; !slices.Equal(p, []string{"dev"}) {
		t.Errorf("devapi profiles %v, want [dev]", p)
	}
	for _, name := range []string{"coordinator", "worker"} {
		if len(file.Services[name].Profiles) != 0 {
			t.Errorf("%s must run without a profile", name)
		}
	}
	// Grace periods longer than the drain times: the coordinator's drain
	// timeout plus its final flush of reports (15s); the worker's drain grace
	// plus the scan of a file still in libyara when it ends
	// (DRAGONFLY_SCAN_TIMEOUT, 10s), which cancelling does not stop; each
	// then stops its gRPC side within 5s more.
	grace := func(svc, env, def string, extra time.Duration) {
		s := file.Services[svc]
		drain := def
		if v := defaultOf(s.Environment[env]); v != "" {
			drain = v
		}
		if sg := s.StopGracePeriod; sg == "" || mustDuration(t, svc+" stop_grace_period", sg) <= mustDuration(t, env, drain)+extra+5*time.Second {
			t.Errorf("%s: stop_grace_period %q must exceed %s (%s) plus %v by more than 5s", svc, sg, env, drain, extra)
		}
	}
	grace("worker", "DRAGONFLY_DRAIN_GRACE", "25s", 10*time.Second)
	grace("coordinator", "DRAGONFLY_DRAIN_TIMEOUT", "30s", 15*time.Second)
	if !strings.HasPrefix(file.Services["coordinator"].Environment["DRAGONFLY_OUTBOX_PATH"], "/data/") {
		t.Errorf("coordinator outbox is not on the /data volume")
	}
	if _, ok := file.Volumes["outbox"]; !ok {
		t.Errorf("no named volume for the outbox")
	}
	checkComposeSecrets(t, file.Services, file.Secrets)
	checkComposePorts(t, file.Services)
	for _, svc := range []string{"coordinator", "worker"} {
		// Development by default (no .env): plaintext tokens on the compose
		// network; .env.example turns it off (below).
		if v := file.Services[svc].Environment["DRAGONFLY_FLEET_INSECURE"]; v != "${DRAGONFLY_FLEET_INSECURE-true}" {
			t.Errorf("%s: DRAGONFLY_FLEET_INSECURE %q, want ${DRAGONFLY_FLEET_INSECURE-true} (on in development, an empty value in .env turns it off)", svc, v)
		}
	}
	allowed := strings.Split(defaultOf(file.Services["worker"].Environment["DRAGONFLY_ALLOWED_HOSTS"]), ",")
	if !slices.Contains(allowed, "files.pythonhosted.org") || !slices.Contains(allowed, "http://devapi:8000") || slices.Contains(allowed, "devapi") {
		t.Errorf("worker: default DRAGONFLY_ALLOWED_HOSTS %v, want files.pythonhosted.org and the origin http://devapi:8000", allowed)
	}

	// Every setting of .env.example is interpolated somewhere in the file.
	example, err := os.ReadFile(filepath.Join(repoRoot, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(example))
	var n int
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "#"))
		m := envAssign.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		if !bytes.Contains(data, []byte("${"+m[1]+"-")) && !bytes.Contains(data, []byte("${"+m[1]+":-")) && !bytes.Contains(data, []byte("${"+m[1]+"}")) {
			t.Errorf(".env.example sets %s, which docker-compose.yml never uses", m[1])
		}
		if strings.HasPrefix(m[1], "DRAGONFLY_") && !known[m[1]] && !composeOnly[m[1]] {
			t.Errorf(".env.example sets %s, which is not a setting of the dragonfly command", m[1])
		}
	}
	if n < 10 {
		t.Errorf(".env.example has only %d settings", n)
	}
	checkProductionEnv(t, string(example), file.Services)
}

// checkComposeSecrets: no secret is an environment value; each secret
// setting is read from /run/secrets/<name> of a secret the service mounts,
// and every secret's development file exists, readable by the container
// user and not world-writable.
func checkComposeSecrets(t *testing.T, services map[string]composeService, secrets map[string]struct {
	File string `json:"file"`
}) {
	t.Helper()
	secretSettings := secretEnvNames(t)
	for svc, s := range services {
		for env, v := range s.Environment {
			if secretSettings[env] || (secretLike(env) && !strings.HasSuffix(env, "_FILE")) {
				t.Errorf("%s: %s is an environment value; mount it as a secret and set %s_FILE", svc, env, env)
			}
			base, ok := strings.CutSuffix(env, "_FILE")
			if !ok || !secretSettings[base] {
				continue
			}
			name, ok := strings.CutPrefix(v, "/run/secrets/")
			if !ok || !slices.Contains(s.Secrets, name) {
				t.Errorf("%s: %s=%q is not /run/secrets/<a secret the service mounts %v>", svc, env, v, s.Secrets)
			}
		}
		for _, name := range s.Secrets {
			if _, ok := secrets[name]; !ok {
				t.Errorf("%s mounts secret %s, which the file does not declare", svc, name)
			}
		}
	}
	for _, must := range []string{"DRAGONFLY_FLEET_TOKEN_FILE"} {
		for _, svc := range []string{"coordinator", "worker"} {
			if _, ok := services[svc].Environment[must]; !ok {
				t.Errorf("%s: no %s", svc, must)
			}
		}
	}
	if w := services["worker"]; slices.ContainsFunc(w.Secrets, func(n string) bool { return n != "fleet_token" && n != "tls_ca" }) {
		t.Errorf("worker mounts secrets %v: workers hold only the fleet token (and the CA)", w.Secrets)
	}
	const dir = "${DRAGONFLY_SECRETS_DIR:-./deploy/compose/dev-secrets}/"
	for name, sec := range secrets {
		rel, ok := strings.CutPrefix(sec.File, dir)
		if !ok || rel != name {
			t.Errorf("secret %s: file %q, want %s%s", name, sec.File, dir, name)
			continue
		}
		fi, err := os.Stat(filepath.Join(repoRoot, "deploy", "compose", "dev-secrets", name))
		if err != nil {
			t.Errorf("secret %s: no development file: %v", name, err)
			continue
		}
		if m := fi.Mode().Perm(); m&0o002 != 0 || m&0o004 == 0 {
			t.Errorf("secret %s: development file mode %#o: must be readable by the container user and not world-writable", name, m)
		}
	}
	token, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "compose", "dev-secrets", "fleet_token"))
	if err != nil || len(bytes.TrimSpace(token)) == 0 {
		t.Errorf("the development fleet token is missing or empty (%v)", err)
	}
}

// checkComposePorts: the coordinator's HTTP port is 10179 and the workers'
// 10180, and the health checks ask /readyz there.
func checkComposePorts(t *testing.T, services map[string]composeService) {
	t.Helper()
	for svc, want := range map[string]struct {
		env  string
		port int
	}{"coordinator": {"DRAGONFLY_METRICS_ADDR", coordinatorHTTP}, "worker": {"DRAGONFLY_WORKER_METRICS_ADDR", workerMetricsPort}} {
		s := services[svc]
		addr := fmt.Sprintf(":%d", want.port)
		if got := s.Environment[want.env]; got != addr {
			t.Errorf("%s: %s %q, want %q", svc, want.env, got, addr)
		}
		test := s.Healthcheck.Test
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", want.port)
		if i := slices.Index(test, "--http"); i < 0 || i+1 >= len(test) || test[i+1] != url {
			t.Errorf("%s: health check %v does not GET %s", svc, test, url)
		}
	}
	if p := services["coordinator"].Ports; len(p) != 1 || !strings.HasSuffix(p[0], fmt.Sprintf(":%d", coordinatorHTTP)) {
		t.Errorf("coordinator: ports %v, want its HTTP port %d published", p, coordinatorHTTP)
	}
}

// checkProductionEnv: .env.example turns TLS on, the plaintext token off and
// the secrets directory away from the development one.
func checkProductionEnv(t *testing.T, example string, services map[string]composeService) {
	t.Helper()
	vals := map[string]string{}
	for _, line := range strings.Split(example, "\n") {
		if m := envAssign.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			vals[m[1]] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), m[0]))
		}
	}
	if v, ok := vals["DRAGONFLY_FLEET_INSECURE"]; !ok || v != "" {
		t.Errorf(".env.example: DRAGONFLY_FLEET_INSECURE=%q (set %v), want it set empty (off in production)", v, ok)
	}
	if d := vals["DRAGONFLY_SECRETS_DIR"]; d == "" || strings.Contains(d, "dev-secrets") {
		t.Errorf(".env.example: DRAGONFLY_SECRETS_DIR %q, want a directory of the operator's own", d)
	}
	for env, svc := range map[string]string{"DRAGONFLY_TLS_CERT": "coordinator", "DRAGONFLY_TLS_KEY": "coordinator", "DRAGONFLY_TLS_CA": "worker"} {
		name, ok := strings.CutPrefix(vals[env], "/run/secrets/")
		if !ok || !slices.Contains(services[svc].Secrets, name) {
			t.Errorf(".env.example: %s=%q is not a secret the %s mounts (%v)", env, vals[env], svc, services[svc].Secrets)
		}
		if v := services[svc].Environment[env]; v != "${"+env+":-}" {
			t.Errorf("%s: %s %q, want ${%s:-} (empty in development)", svc, env, v, env)
		}
	}
}

var envAssign = regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=`)

// composeOnly are the variables docker-compose.yml itself reads (ports, image).
var composeOnly = map[string]bool{
	"DRAGONFLY_METRICS_PORT": true, "DRAGONFLY_DEVAPI_PORT": true, "DRAGONFLY_IMAGE": true,
	"DRAGONFLY_BUILDER_IMAGE": true, "DRAGONFLY_VERSION": true, "DRAGONFLY_REVISION": true,
	"DRAGONFLY_SECRETS_DIR": true,
}

// defaultOf returns the default of a "${NAME:-default}" or "${NAME-default}"
// value, or the value itself when it is not an interpolation.
func defaultOf(v string) string {
	if !strings.HasPrefix(v, "${") || !strings.HasSuffix(v, "}") {
		return v
	}
	inner := strings.TrimSuffix(strings.TrimPrefix(v, "${"), "}")
	if i := strings.Index(inner, ":-"); i >= 0 {
		return inner[i+2:]
	}
	if i := strings.Index(inner, "-"); i >= 0 {
		return inner[i+1:]
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
