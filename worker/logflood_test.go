package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/demo"
	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"github.com/dragonfly-fleet/fleet/rules"
	"github.com/dragonfly-fleet/fleet/worker/fetch"
	"github.com/dragonfly-fleet/fleet/worker/limit"
	"github.com/dragonfly-fleet/fleet/worker/scan"
)

// countingHandler counts the records logged at Info and above (a
// worker's default level), by message, and the bytes they make as JSON.
type countingHandler struct {
	c     *logCounts
	inner slog.Handler
}

type logCounts struct {
	mu         sync.Mutex
	lines      map[string]int
	suppressed map[string]int64
	kinds      map[string]int // the "kind" attributes of the lines logged
	limits     map[string]int // the "limit" attributes
	bytes      int
}

func (c *logCounts) Write(p []byte) (int, error) {
	c.bytes += len(p) // under mu: Handle holds it
	return len(p), nil
}

func newCountingHandler() *countingHandler {
	c := &logCounts{lines: map[string]int{}, suppressed: map[string]int64{}, kinds: map[string]int{}, limits: map[string]int{}}
	return &countingHandler{c: c, inner: slog.NewJSONHandler(c, nil)}
}

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo
}
func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{c: h.c, inner: h.inner.WithAttrs(as)}
}
func (h *countingHandler) WithGroup(g string) slog.Handler {
	return &countingHandler{c: h.c, inner: h.inner.WithGroup(g)}
}
func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.c.lines[r.Message]++
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "suppressed":
			h.c.suppressed[r.Message] += a.Value.Int64()
		case "kind":
			h.c.kinds[a.Value.String()]++
		case "limit":
			h.c.limits[a.Value.String()]++
		}
		return true
	})
	return h.inner.Handle(ctx, r)
}

func (c *logCounts) limitCount(l string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limits[l]
}

func (h *countingHandler) suppressedOf(msg string) int64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.c.suppressed[msg]
}

func (h *countingHandler) kindCount(kind string) int {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.c.kinds[kind]
}

func (h *countingHandler) count(msg string) int {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.c.lines[msg]
}

// TestHostileCoordinatorLogsAreBounded: a coordinator (an impostor the
// worker dialed) that sends, 200 times each, a Welcome, an Assign of a task
// the worker already holds, an Assign beyond its room, a rule set with an
// over-long hash, one replaced before it compiled, one that does not
// compile, a task on a host the worker does not allow, and a Drain, gets at
// most coordLogBurst lines of each kind a minute (failureLogBurst
// "distribution failed"), not one per message; a minute later the next
// line says how many were held back.
func TestHostileCoordinatorLogsAreBounded(t *testing.T) {
	const n = 200
	synctest.Test(t, func(t *testing.T) {
		h := newCountingHandler()
		files := newMemFiles(t, 0)
		client := newChanClient()
		release := make(chan struct{})
		w := testWorker(t, client, Config{
			Threads: 1, MaxPrefetch: 1, BackoffMin: time.Second, BackoffMax: time.Second, MaxTaskTime: time.Hour,
			Limits: limit.Limits{Download: 32 << 10, File: 1 << 10},
			Fetch: fetch.Config{AllowedHosts: []string{"files.example"}, Transport: files, Attempts: 1,
				StallTimeout: 24 * time.Hour, TotalTimeout: 24 * time.Hour},
			Logger: slog.New(h),
			compileRules: func(set rules.Set) (*rules.Compiled, error) {
				if set.Hash == "hold" {
					<-release
				}
				return rules.Compile(set)
			},
		}, testEngine(t, 1))
		stop := startLoop(w)
		defer func() {
			if err := stop(); err != nil {
				t.Errorf("loop: %v", err)
			}
		}()
		s := demoSession(t, client)
		drainOut := func() { drainSent(s) }
		// The worker's one slot and one queued place are held by stalled
		// downloads.
		assignTasks(s, stalledTask(1, nil), stalledTask(2, nil))
		drainOut()
		send := func(m *fleetv1.ConnectResponse) {
			s.In <- m
		}
		longHash := strings.Repeat("h", protocol.MaxIDBytes+1)
		bad := map[string]string{"bad": "rule b { condition: $a }"}
		for i := range n {
			welcomeEvery(s, MaxHeartbeat)
			assignTasks(s, stalledTask(1, nil))               // held already
			assignTasks(s, fileTask(uint64(1000+i), "x.tgz")) // no room
			send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: longHash}}})
			send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: fmt.Sprint("bad-", i), Sources: bad}}})
			drainOut()
		}
		// Rule sets pushed while one compiles replace each other.
		send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "hold", Sources: bad}}})
		for i := range n {
			send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: fmt.Sprint("next-", i), Sources: bad}}})
			drainOut()
		}
		close(release)
		drainOut()
		// Tasks that fail before any download, once the slots are free.
		send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Cancel{Cancel: &fleetv1.Cancel{TaskIds: []uint64{1, 2}}}})
		drainOut()
		for i := range n {
			assignTasks(s, &fleetv1.Task{TaskId: uint64(5000 + i), Url: "https://elsewhere.example/x-1.0.tar.gz", RulesHash: "demo"})
			drainOut()
		}
		// A Drain while a task runs leaves the session open: each one
		// after is a message again.
		assignTasks(s, stalledTask(3, nil))
		drainOut()
		for range n {
			send(&fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_Drain{Drain: &fleetv1.Drain{}}})
			drainOut()
		}
		kinds := map[string]int{
			"connected to coordinator":                                                      coordLogBurst,
			"coordinator assigned tasks already held; ignoring the copies":                  coordLogBurst,
			"coordinator assigned more tasks than this worker holds; handing back the rest": coordLogBurst,
			"rule set refused: its hash is too long":                                        coordLogBurst,
			"rules do not compile":                                                          coordLogBurst,
			"rule set replaced by a newer one before it was compiled":                       coordLogBurst,
			"distribution failed":                                                           failureLogBurst,
			"coordinator asked to drain":                                                    coordLogBurst,
		}
		for msg, max := range kinds {
			if got := h.count(msg); got == 0 || got > max {
				t.Errorf("%q: %d lines for %d messages, want 1 to %d", msg, got, n, max)
			}
		}
		h.c.mu.Lock()
		total := 0
		for _, c := range h.c.lines {
			total += c
		}
		t.Logf("%d lines, %d bytes of JSON log for %d rounds of messages", total, h.c.bytes, n)
		h.c.mu.Unlock()
		// A minute later, the next line of a kind says how many were held back.
		time.Sleep(coordLogEvery)
		welcomeEvery(s, MaxHeartbeat)
		drainOut()
		if got := h.suppressedOf("connected to coordinator"); got != n+1-coordLogBurst {
			t.Errorf("the next Welcome's line says %d held back, want %d", got, n+1-coordLogBurst)
		}
	})
}

// TestFailureOfAnotherKindNotHiddenByAFlood: a minute's worth of
// distributions that fail alike (failureLogBurst and more tasks on a host
// the worker does not allow: a crafted release, or a coordinator that sends
// them) does not hide the line of a distribution that then fails otherwise
// (a download failure): the lines are throttled per failure kind, a fixed
// set, not all as one.
func TestFailureOfAnotherKindNotHiddenByAFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newCountingHandler()
		s, stop := failingWorker(t, h, limit.Limits{})
		defer stop()
		drainOut := func() { drainSent(s) }
		const flood = failureLogBurst + 20
		for i := range flood {
			assignTasks(s, &fleetv1.Task{TaskId: uint64(1 + i), Url: "https://elsewhere.example/x-1.0.tar.gz", RulesHash: "demo"})
			drainOut()
		}
		host := fleetv1.FailureKind_FAILURE_KIND_HOST.String()
		if got := h.kindCount(host); got == 0 || got >= flood {
			t.Fatalf("%d %s failure lines for %d such failures, want them throttled", got, host, flood)
		}
		assignTasks(s, fileTask(9999, "404"))
		drainOut()
		download := fleetv1.FailureKind_FAILURE_KIND_DOWNLOAD.String()
		if got := h.kindCount(download); got != 1 {
			t.Errorf("%d %s failure lines after %d %s failures in the same minute, want the one: a flood of one kind hid it (%d lines of \"distribution failed\" in all)",
				got, download, flood, host, h.count("distribution failed"))
		}
	})
}

// TestLimitNotHiddenByAFloodOfAnother: a flood of distributions over one
// limit (the download size: a crafted release of many large files) does
// not hide the line of a distribution that then breaks another (a file
// over the file size): limit failures are throttled per limit. They were
// one kind, and the file size's line was held back for the minute.
func TestLimitNotHiddenByAFloodOfAnother(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newCountingHandler()
		s, stop := failingWorker(t, h, limit.Limits{Download: 32 << 10, File: 1 << 10})
		defer stop()
		const flood = failureLogBurst + 20
		for i := range flood {
			assignTasks(s, fileTask(uint64(1+i), "big-1.0.tar.gz"))
			drainSent(s)
		}
		if got := h.c.limitCount("download_size"); got != failureLogBurst {
			t.Fatalf("%d download_size lines for %d such failures, want %d", got, flood, failureLogBurst)
		}
		assignTasks(s, fileTask(9999, "small-1.0.tar.gz"))
		drainSent(s)
		if got := h.c.limitCount("file_size"); got != 1 {
			t.Errorf("%d file_size lines after %d download_size failures in the same minute, want the one: the flood hid it", got, flood)
		}
	})
}

// failingWorker starts a one-thread worker logging to h, with limits lim
// (its scan engine's file size and entries too), on the demo files and
// these: big-1.0.tar.gz (64 KiB, not an archive), bad-1.0.tar.gz (not an
// archive), small-1.0.tar.gz (a 4 KiB file) and many-1.0.tar.gz (four
// files); and its session, with the demo rules ready. stop ends the worker,
// failing t on its loop's error.
func failingWorker(t *testing.T, h *countingHandler, lim limit.Limits) (s *chanStream, stop func()) {
	t.Helper()
	client := newChanClient()
	files := newMemFiles(t, 0)
	files.files["big-1.0.tar.gz"] = bytes.Repeat([]byte{0x1f}, 64<<10)
	files.files["bad-1.0.tar.gz"] = []byte("not an archive")
	files.files["small-1.0.tar.gz"] = testkit.Gzip(t, testkit.Tar(t, testkit.TarEntry{Name: "small-1.0/setup.py", Body: bytes.Repeat([]byte("x"), 4<<10)}))
	files.files["many-1.0.tar.gz"] = testkit.Gzip(t, testkit.Tar(t,
		testkit.TarEntry{Name: "many-1.0/a.py", Body: []byte("a")}, testkit.TarEntry{Name: "many-1.0/b.py", Body: []byte("b")},
		testkit.TarEntry{Name: "many-1.0/c.py", Body: []byte("c")}, testkit.TarEntry{Name: "many-1.0/d.py", Body: []byte("d")}))
	e := scan.New(scan.Config{Threads: 1, Limits: limit.Limits{ScanTimeout: 10 * time.Second, File: lim.File, Entries: lim.Entries}})
	t.Cleanup(e.Close)
	w := testWorker(t, client, Config{
		Threads: 1, MaxPrefetch: 1, BackoffMin: time.Second, BackoffMax: time.Second, MaxTaskTime: time.Hour,
		Limits: lim,
		Fetch: fetch.Config{AllowedHosts: []string{"files.example"}, Transport: files, Attempts: 1,
			StallTimeout: time.Hour, TotalTimeout: time.Hour},
		Logger: slog.New(h),
	}, e)
	stopLoop := startLoop(w)
	stop = func() {
		if err := stopLoop(); err != nil {
			t.Errorf("loop: %v", err)
		}
	}
	ready := false
	defer func() {
		if !ready { // demoSession failed t
			stop()
		}
	}()
	s = demoSession(t, client)
	ready = true
	return s, stop
}

// demoSession takes the worker's first session on client, welcomes it and
// has it compile the demo rules (hash "demo"), ready.
func demoSession(t *testing.T, client *chanClient) *chanStream {
	t.Helper()
	s := <-client.streams
	<-client.tries
	<-s.Out // Hello
	welcomeEvery(s, MaxHeartbeat)
	s.In <- &fleetv1.ConnectResponse{Msg: &fleetv1.ConnectResponse_RuleSet{RuleSet: &fleetv1.RuleSet{Hash: "demo", Sources: demo.Rules()}}}
	if st := nextMsg(t, s).GetRulesStatus(); st.GetHash() != "demo" || st.GetError() != "" {
		t.Fatalf("rules status %v, want demo ready", st)
	}
	return s
}

// drainSent reads what the worker sent so far (in a synctest bubble, once
// it is blocked), so that it never waits on a full stream.
func drainSent(s *chanStream) {
	synctest.Wait()
	for {
		select {
		case <-s.Out:
		default:
			return
		}
	}
}

// TestFailureNotHiddenByFloodsOfFive: floods of five failure keys in one
// minute (tasks on a host the worker does not allow, 404s, corrupt
// archives, distributions over the download size and over the file size:
// a crafted release or a hostile coordinator makes each at will) do not
// hide the first line of a sixth (an archive over the entries limit). The
// 100 lines a minute over all keys were used up by the five floods of 20,
// and every further failure line was held back for the minute, whatever
// its kind; before limits were keyed apart there were only five kinds.
func TestFailureNotHiddenByFloodsOfFive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newCountingHandler()
		s, stop := failingWorker(t, h, limit.Limits{Download: 32 << 10, File: 1 << 10, Entries: 2})
		defer stop()
		id := uint64(0)
		for _, task := range []func() *fleetv1.Task{
			func() *fleetv1.Task {
				return &fleetv1.Task{TaskId: id, Url: "https://elsewhere.example/x-1.0.tar.gz", RulesHash: "demo"}
			},
			func() *fleetv1.Task { return fileTask(id, "404") },
			func() *fleetv1.Task { return fileTask(id, "bad-1.0.tar.gz") },
			func() *fleetv1.Task { return fileTask(id, "big-1.0.tar.gz") },
			func() *fleetv1.Task { return fileTask(id, "small-1.0.tar.gz") },
		} {
			for range failureLogBurst {
				id++
				assignTasks(s, task())
				drainSent(s)
			}
		}
		if got := h.count("distribution failed"); got != 5*failureLogBurst {
			t.Fatalf("%d failure lines for five floods, want %d (the floods are not of five keys)", got, 5*failureLogBurst)
		}
		assignTasks(s, fileTask(9999, "many-1.0.tar.gz"))
		drainSent(s)
		if got := h.c.limitCount(string(limit.Entries)); got != 1 {
			t.Errorf("%d %s lines after floods of five other failures in the same minute, want the one: the floods hid it (limits logged: %v)",
				got, limit.Entries, h.c.limits)
		}
	})
}
