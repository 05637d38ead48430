package outbox

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCrashAfterEachStep copies the file while the outbox is open, after
// each step has returned: what a crash right then leaves. The reopened
// outbox delivers each report exactly once, under the identity that stands.
func TestCrashAfterEachStep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Config{Path: path})
	defer o.Close()
	check := func(what string) {
		t.Helper()
		sameEntries(t, "crash after "+what, deliver(t, copyFile(t, path)), state(o))
	}
	putAll(t, o, "a", "b", "c")
	check("put")
	a, _ := o.Next(t0)
	b, _ := o.Next(t0)
	check("next (nothing written)")
	if ok, err := o.Supersede("a", "1", intp(2), strp("a2"), t0.Add(time.Hour)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	check("supersede")
	if err := o.Retry(b, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	check("retry")
	// The send of a under its old lease was refused: a stays, under the new one.
	if done, err := o.Done(a); done || err != nil {
		t.Fatal(done, err)
	}
	check("stale done")
	a2, _ := o.Next(t0)
	if done, err := o.Done(a2); !done || err != nil {
		t.Fatal(done, err)
	}
	check("done")
	if got := state(o); len(got) != 2 || got["b\x001"].Tries != 1 {
		t.Fatalf("state = %v", keys(got))
	}
}

const (
	crashChildEnv  = "OUTBOX_CRASH_CHILD"
	crashOps       = 100000
	crashKeys      = 12
	crashKillAfter = 40
)

// crashScript runs op i of a deterministic mix of Put, Supersede, Retry,
// Done and Release on o. The same seed gives the same ops on an outbox in
// the same state, so a memory-only outbox replays what the child did.
type crashScript struct {
	rng *rand.Rand
}

func newCrashScript(seed uint64) *crashScript {
	return &crashScript{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (s *crashScript) op(o *Outbox, i int) error {
	now := t0.Add(time.Duration(i) * time.Second)
	name := "r" + strconv.Itoa(s.rng.IntN(crashKeys))
	switch s.rng.IntN(5) {
	case 0, 1:
		if o.Has(name, "1") {
			_, err := o.Supersede(name, "1", intp(i), strp("as-"+strconv.Itoa(i)), now)
			return err
		}
		e := entry(name, now)
		e.Report.Attempt, e.Report.AssignmentID = intp(i), strp("as-"+strconv.Itoa(i))
		return o.Put(e)
	case 2:
		e, ok := o.Next(now)
		if !ok {
			return nil
		}
		return o.Retry(e, now.Add(time.Duration(s.rng.IntN(3))*time.Second))
	case 3:
		e, ok := o.Next(now)
		if !ok {
			return nil
		}
		_, err := o.Done(e)
		return err
	default:
		if ok, err := o.Supersede(name, "1", intp(i), strp("as-"+strconv.Itoa(i)), now); !ok || err != nil {
			return err
		}
		e, ok := o.Next(now)
		if ok {
			o.Release(e)
		}
		return nil
	}
}

// crashChild runs the script on the file named by crashChildEnv and prints
// the number of each op once it has returned, until killed.
func crashChild() int {
	arg := strings.SplitN(os.Getenv(crashChildEnv), ",", 2)
	seed, _ := strconv.ParseUint(arg[0], 10, 64)
	o, err := Open(Config{Path: arg[1]})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s := newCrashScript(seed)
	for i := range crashOps {
		if err := s.op(o, i); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Printf("%d\n", i)
	}
	return 0
}

// TestSIGKILLLeavesEachReportOnce kills a process that changes the outbox
// as fast as it can, mid-write, with SIGKILL. The reopened file is sound and
// holds exactly the state after the last op the child acknowledged, or
// after the next one (the op in flight at the kill had committed).
func TestSIGKILLLeavesEachReportOnce(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		seed := uint64(round + 1)
		path := filepath.Join(t.TempDir(), "outbox.db")
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+strconv.FormatUint(seed, 10)+","+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		acked := -1
		killAt := crashKillAfter + round*17
		for lines.Scan() {
			n, err := strconv.Atoi(lines.Text())
			if err != nil {
				t.Fatalf("child said %q", lines.Text())
			}
			acked = n
			if acked == killAt {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		// The pipe holds what the child acknowledged before it died.
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child did not die of SIGKILL: %v (acked %d ops)", err, acked)
		}

		// Replay on memory-only outboxes: the state after the acknowledged
		// ops, and after one more.
		model := mustOpen(t, Config{})
		s := newCrashScript(seed)
		for i := 0; i <= acked; i++ {
			if err := s.op(model, i); err != nil {
				t.Fatal(err)
			}
		}
		atAck := state(model)
		if err := s.op(model, acked+1); err != nil {
			t.Fatal(err)
		}
		atNext := state(model)

		got := deliver(t, path)
		if len(atAck) == 0 {
			t.Fatal("the script left no report: the test proves nothing")
		}
		if !equalState(got, atAck) && !equalState(got, atNext) {
			sameEntries(t, fmt.Sprintf("round %d, killed after op %d", round, acked), got, atAck)
		}
		t.Logf("round %d: killed after op %d acknowledged; %d reports", round, acked, len(got))
	}
}

func equalState(a, b map[string]Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, e := range a {
		f, ok := b[k]
		if !ok || show(e) != show(f) {
			return false
		}
	}
	return true
}
