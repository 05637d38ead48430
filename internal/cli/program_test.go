package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
)

// TestProgramRun: help to stdout with 0, usage errors to stderr with 2, an
// ExitError's status, other errors 1, each message naming the command.
func TestProgramRun(t *testing.T) {
	p := &Program{Name: "tool", Footer: "\nfooter", Version: func(w io.Writer) { io.WriteString(w, "v1\n") }}
	p.Register(Command{Name: "ok", Summary: "succeeds", Run: func(context.Context, *Env, []string) error { return nil }})
	p.Register(Command{Name: "fail", Summary: "fails", Run: func(context.Context, *Env, []string) error { return errors.New("broken") }})
	p.Register(Command{Name: "three", Summary: "exits 3", Run: func(context.Context, *Env, []string) error { return Exit(3, errors.New("partly")) }})
	p.Register(Command{Name: "quiet", Summary: "exits 1 silently", Run: func(context.Context, *Env, []string) error { return Exit(1, nil) }})
	p.Register(Command{Name: "flags", Summary: "parses", Run: func(_ context.Context, e *Env, args []string) error {
		var n int
		s := e.Settings("tool flags", "usage: tool flags")
		s.Var(Int(&n, 1), "DRAGONFLY_N", "a number")
		return e.Parse(s, args, false)
	}})
	run := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := p.Run(context.Background(), &Env{Stdout: &o, Stderr: &e, Getenv: clitest.Env(nil), Dir: t.TempDir()}, args)
		return code, o.String(), e.String()
	}
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{nil, 2, "", "usage: tool <command> [flags] [args]\n\ncommands:\n  fail         fails\n"},
		{[]string{"help"}, 0, "  flags        parses\n", ""},
		{[]string{"--version"}, 0, "v1\n", ""},
		{[]string{"help", "flags"}, 0, "usage: tool flags\n\nFlags", ""},
		{[]string{"nope"}, 2, "", `tool: unknown command "nope"`},
		{[]string{"ok"}, 0, "", ""},
		{[]string{"fail"}, 1, "", "tool fail: broken\n"},
		{[]string{"three"}, 3, "", "tool three: partly\n"},
		{[]string{"quiet"}, 1, "", ""},
		{[]string{"flags", "--n", "x"}, 2, "", `tool flags: invalid argument "x" for "--n" flag: not an integer (see --help)`},
		{[]string{"flags", "extra"}, 2, "", "tool flags: unexpected arguments: extra\n"},
	} {
		code, out, errOut := run(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) ||
			tc.stdout == "" && out != "" || tc.stderr == "" && errOut != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out, errOut, tc.code, tc.stdout, tc.stderr)
		}
	}
}
