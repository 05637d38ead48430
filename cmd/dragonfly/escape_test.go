package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// hostileTerminal is what an API may put in a rules hash or an error
// detail: an OSC 52 clipboard write, a window title, a line erase and a
// carriage return before a forged "all good", a right-to-left override,
// and a line that a GitHub workflow runs as a command (an annotation; a
// "::stop-commands::" would silence the real ones after it).
const hostileTerminal = "\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b]0;TITLE\x07\x1b[2K\rall good\u202e\n::error file=setup.py::forged"

// TestScanRulesFromAPIHostileText: a rules hash or an error text from the
// Dragonfly API reaches the terminal (standard error) with its control
// and bidi characters escaped, whether the set is used, refused or
// unreachable.
func TestScanRulesFromAPIHostileText(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "pkg-1.0.tar.gz")
	if err := os.WriteFile(target, testkit.Gzip(t, testkit.Tar(t, testkit.TarEntry{Name: "pkg-1.0/setup.py", Body: []byte("zz")})), 0o644); err != nil {
		t.Fatal(err)
	}
	var status atomic.Int64
	var hash atomic.Pointer[string]
	hash.Store(new(string))
	*hash.Load() = hostileTerminal
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		if status.Load() == http.StatusOK {
			json.NewEncoder(w).Encode(map[string]any{"hash": *hash.Load(), "rules": map[string]string{"r": `rule r { meta: weight = 1 strings: $a = "zz" condition: $a }`}})
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"detail": hostileTerminal})
	}))
	defer api.Close()
	scan := func() (int, string) {
		var stdout, stderr bytes.Buffer
		e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Dir: dir,
			Getenv:   clitest.Env(map[string]string{"DRAGONFLY_BASE_URL": api.URL, "DRAGONFLY_FORMAT": "json"}),
			CacheDir: func() (string, error) { return filepath.Join(dir, "cache"), nil }}
		code := run(context.Background(), e, []string{"scan", "--rules-from-api", target})
		return code, stderr.String()
	}
	check := func(what string, code int, errOut string) {
		t.Helper()
		if strings.ContainsAny(errOut, "\x1b\x07\r\u202e") || strings.Contains(errOut, "\n::") || !strings.Contains(errOut, `\x1b]52;c;`) {
			t.Errorf("%s: exit %d, standard error carries the API's control characters raw (or lost them):\n%q", what, code, errOut)
		}
	}
	for _, st := range []int{http.StatusOK, http.StatusUnauthorized, http.StatusServiceUnavailable} {
		status.Store(int64(st))
		code, errOut := scan()
		check(fmt.Sprintf("API answering %d", st), code, errOut)
	}
	// A set cached, then the API unavailable: the warning that the cache
	// is used quotes the API's error.
	safe := "0123456789abcdef"
	hash.Store(&safe)
	status.Store(http.StatusOK)
	if code, errOut := scan(); code != 0 {
		t.Fatalf("a safe set: exit %d: %s", code, errOut)
	}
	status.Store(http.StatusServiceUnavailable)
	code, errOut := scan()
	if code != 0 || !strings.Contains(errOut, "using the cached rule set") {
		t.Fatalf("the cached set: exit %d: %q", code, errOut)
	}
	check("API answering 503 with a set cached", code, errOut)
}
