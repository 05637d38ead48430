package validate

import (
	"bufio"
	"bytes"
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
	Healthcheck     *struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
}

// TestComposeFile checks docker-compose.yml statically (the compose test in
// deploy/compose runs it): roles, hardening, health checks through the
// image's binary, grace periods, loopback-only ports, and that every
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
	// Grace periods longer than the drain times.
	grace := func(svc, env, def string) {
		s := file.Services[svc]
		drain := def
		if v := defaultOf(s.Environment[env]); v != "" {
			drain = v
		}
		if sg := s.StopGracePeriod; sg == "" || mustDuration(t, svc+" stop_grace_period", sg) <= mustDuration(t, env, drain)+5*time.Second {
			t.Errorf("%s: stop_grace_period %q must exceed %s (%s) by more than 5s", svc, sg, env, drain)
		}
	}
	grace("worker", "DRAGONFLY_DRAIN_GRACE", "25s")
	grace("coordinator", "DRAGONFLY_DRAIN_TIMEOUT", "30s")
	if !strings.HasPrefix(file.Services["coordinator"].Environment["DRAGONFLY_OUTBOX_PATH"], "/data/") {
		t.Errorf("coordinator outbox is not on the /data volume")
	}
	if _, ok := file.Volumes["outbox"]; !ok {
		t.Errorf("no named volume for the outbox")
	}
	// Secrets are never written into the file: they come from .env.
	for svc, s := range file.Services {
		for env, v := range s.Environment {
			if secretLike(env) && !strings.HasPrefix(v, "${") {
				t.Errorf("%s: %s is written in the file instead of coming from .env", svc, env)
			}
		}
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
}

var envAssign = regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=`)

// composeOnly are the variables docker-compose.yml itself reads (ports, image).
var composeOnly = map[string]bool{
	"DRAGONFLY_METRICS_PORT": true, "DRAGONFLY_DEVAPI_PORT": true, "DRAGONFLY_IMAGE": true,
	"DRAGONFLY_BUILDER_IMAGE": true, "DRAGONFLY_VERSION": true,
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
