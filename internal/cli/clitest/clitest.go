// Package clitest helps test commands built on package cli: an environment
// backed by a map, config files and secret files written with exact modes
// into temporary directories, and the sources of one parse (Sources).
package clitest

import (
	"os"
	"path/filepath"
	"testing"
)

// Env is a lookup like os.LookupEnv backed by vars (nil: nothing is set).
func Env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// ConfigDir writes Config.toml and Config-dev.toml (each skipped when
// empty) into a new temporary directory and returns it.
func ConfigDir(t testing.TB, toml, devToml string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"Config.toml": toml, "Config-dev.toml": devToml} {
		if body != "" {
			WriteFile(t, filepath.Join(dir, name), body, 0o600)
		}
	}
	return dir
}

// WriteFile writes body to path with exactly mode (whatever the umask) and
// returns path.
func WriteFile(t testing.TB, path, body string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// Sources are what one parse reads besides the defaults: the arguments,
// the environment and the two config files ("" for none).
type Sources struct {
	Args          []string
	Env           map[string]string
	TOML, DevTOML string
}

// Parser is what Sources are parsed into: a command's *cli.Settings.
type Parser interface {
	Parse(args []string, getenv func(string) (string, bool), dir string) error
}

// Parse parses the sources into s, the config files written into a new
// temporary directory.
func (src Sources) Parse(t testing.TB, s Parser) error {
	t.Helper()
	return s.Parse(src.Args, Env(src.Env), ConfigDir(t, src.TOML, src.DevTOML))
}
