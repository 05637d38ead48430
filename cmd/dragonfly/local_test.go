package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/cli"
	"github.com/dragonfly-fleet/fleet/internal/cli/clitest"
)

// TestLocalDemoEndsWhenTheCoordinatorFails: `dragonfly local --demo` whose
// coordinator part cannot serve (its metrics port is taken) exits 1 naming
// the cause. Before: the run then waited for ever on the in-process
// development API and on the wait for every demo job to be reported, which
// only the end of the whole run (a signal) stopped.
func TestLocalDemoEndsWhenTheCoordinatorFails(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: clitest.Env(nil), Dir: t.TempDir()}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, e, []string{"local", "--demo", "--threads", "1", "--metrics-addr", taken.Addr().String()})
	}()
	select {
	case code := <-done:
		if code != 1 || !strings.Contains(stderr.String(), "listen "+taken.Addr().String()) {
			t.Fatalf("exit %d, want 1 naming the metrics address:\n%s", code, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("results printed for a run that failed:\n%s", stdout.String())
		}
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("dragonfly local --demo still ran 30 s after its coordinator failed")
	}
}

// TestLocalDemoInterruptedFails: `dragonfly local --demo` stopped by a
// signal before every demo release was reported prints no results and
// exits non-zero, as a run that ends with releases NOT REPORTED does.
// Before, it exited 0: a script running the demo read success.
func TestLocalDemoInterruptedFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the signal came before any release was scanned
	var stdout, stderr bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: clitest.Env(nil), Dir: t.TempDir()}
	if code := run(ctx, e, []string{"local", "--demo", "--threads", "1"}); code == 0 || !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("exit %d, want non-zero saying the demo was interrupted:\n%s", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("results printed for an interrupted run:\n%s", stdout.String())
	}
}
