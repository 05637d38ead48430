package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
)

// TestMatchMemoryPrecedence: DRAGONFLY_MAX_MATCH_MEMORY is read as
// every setting is: flag over environment over Config-dev.toml over
// Config.toml.
func TestMatchMemoryPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  clitest.Sources
		want int64
	}{
		{name: "default", want: 64 << 20},
		{name: "Config.toml", src: clitest.Sources{TOML: `max_match_memory = "2MiB"`}, want: 2 << 20},
		{name: "dev over toml", src: clitest.Sources{TOML: `max_match_memory = "2MiB"`, DevTOML: `max_match_memory = "3MiB"`}, want: 3 << 20},
		{name: "env over files", src: clitest.Sources{Env: map[string]string{"DRAGONFLY_MAX_MATCH_MEMORY": "4MiB"}, DevTOML: `max_match_memory = "3MiB"`}, want: 4 << 20},
		{name: "flag over env", src: clitest.Sources{Args: []string{"--max-match-memory", "5MiB"}, Env: map[string]string{"DRAGONFLY_MAX_MATCH_MEMORY": "4MiB"}}, want: 5 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w workerCmd
			s := program.Settings("dragonfly worker", "")
			w.register(s)
			if err := tc.src.Parse(t, s); err != nil {
				t.Fatal(err)
			}
			if err := w.f.validate(); err != nil {
				t.Fatal(err)
			}
			if got := w.f.cfg.Limits.MatchMemory; got != tc.want {
				t.Fatalf("match memory %d, want %d", got, tc.want)
			}
		})
	}
}

// TestEffectiveLimitsNameMatchMemory: the "effective limits" record
// (logged once at startup by worker and local) names every limit a
// distribution can fail with; match_memory was left out.
func TestEffectiveLimitsNameMatchMemory(t *testing.T) {
	var w workerCmd
	s := program.Settings("dragonfly worker", "")
	w.register(s)
	if err := s.Parse(nil, clitest.Env(map[string]string{"DRAGONFLY_MAX_MATCH_MEMORY": "8MiB"}), ""); err != nil {
		t.Fatal(err)
	}
	if err := w.f.validate(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w.f.sizes.Log(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: cli.DurationSeconds})), w.f.cfg.Limits)
	if !strings.Contains(buf.String(), `"match_memory":8388608`) {
		t.Fatalf("effective limits lack match_memory:\n%s", buf.String())
	}
}

// TestMatchMemoryHelpNamesItsMinimum: the flag's help says what
// the setting refuses (as DRAGONFLY_SCAN_TIMEOUT's does, and the README's
// table), not only the usage error once it is refused.
func TestMatchMemoryHelpNamesItsMinimum(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "worker", "--help")
	help := out + errOut
	i := strings.Index(help, "max-match-memory")
	if code != 0 || i < 0 {
		t.Fatalf("exit %d, help:\n%s", code, help)
	}
	line := help[i:]
	if j := strings.Index(line, "\n  -"); j > 0 {
		line = line[:j]
	}
	if !strings.Contains(line, "at least 1MiB") {
		t.Fatalf("--max-match-memory help does not name its minimum: %q", line)
	}
}
