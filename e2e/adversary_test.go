package e2e

// The adversary scenario of the issue "Hostile packages, hostile workers,
// hostile networks": real processes (devapi, a coordinator, two honest
// workers) and, in this test process, misbehaving workers built from the
// generated protocol with the fleet token, plus a crafted sdist among the
// releases. The same releases are run once without the adversaries, for the
// memory comparison. Each run logs a "RESULT" line with the numbers
// RELIABILITY.md records.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Adversary worker ids (each is its own identity: no client certificates).
const (
	idHog      = "adv-hog"
	idSilent   = "adv-silent"
	idLiar     = "adv-liar"
	idFlood    = "adv-flood"
	idOversize = "adv-oversize"
	idNonScan  = "adv-nonscan"
)

// advExpect is what a release's one report must say: the honest verdict.
type advExpect struct {
	failure bool // a failure report (the input is bad)
	score   int
	rules   []string
	file    string // the distribution's file name
}

// writeAdversaryReleases writes the releases of the scenario: 24 sdists
// that carry both e2e tokens (score 6), 2 clean ones (score 0) and a crafted
// sdist whose one member has a name of 1 MiB of control characters (a PAX
// path record: Python's tarfile reads it, Go's archive/tar refuses a record
// over 1 MiB; either way no installer could write it: a failure).
func writeAdversaryReleases(t *testing.T) (string, map[string]advExpect) {
	t.Helper()
	dir := t.TempDir()
	want := map[string]advExpect{}
	for i := range 24 {
		name := fmt.Sprintf("adv%02d", i)
		file := name + "-1.0.tar.gz"
		writeFile(t, filepath.Join(dir, file), makeSdist(t, name, "1.0", 3, 8<<10, uint64(500+i)))
		want[name] = advExpect{score: 6, rules: []string{"e2e_exec_b64", "e2e_socket"}, file: file}
	}
	for i := range 2 {
		name := fmt.Sprintf("clean%02d", i)
		file := name + "-1.0.tar.gz"
		writeFile(t, filepath.Join(dir, file), sdist(t, name, "1.0", "def add(a, b):\n    return a + b\n"))
		want[name] = advExpect{score: 0, rules: []string{}, file: file}
	}
	writeFile(t, filepath.Join(dir, "evil-1.0.tar.gz"), makeLongNameSdist(t, "evil", "1.0", 1<<20))
	want["evil"] = advExpect{failure: true, file: "evil-1.0.tar.gz"}
	return dir, want
}

// makeLongNameSdist builds name-version.tar.gz by hand (archive/tar's
// writer refuses such a name): a PAX header whose path record names
// "name-version/" and nameLen bytes of control characters (0x01-0x1f), then
// the member itself, a .py file with both e2e tokens.
func makeLongNameSdist(t *testing.T, name, version string, nameLen int) []byte {
	long := make([]byte, nameLen)
	for i := range long {
		long[i] = byte(1 + i%31)
	}
	rec := paxRecord("path", name+"-"+version+"/"+string(long))
	body := "exec(base64.b64decode('eA=='))\nimport socket; socket.socket()\n"
	var tb []byte
	tb = append(tb, ustarHeader("PaxHeaders/0", len(rec), 'x')...)
	tb = append(tb, padBlock([]byte(rec))...)
	tb = append(tb, ustarHeader(name+"-"+version+"/short.py", len(body), '0')...)
	tb = append(tb, padBlock([]byte(body))...)
	tb = append(tb, make([]byte, 1024)...) // end of archive
	return testkit.GzipFast(t, tb)
}

// ustarHeader is one 512-byte ustar header block.
func ustarHeader(name string, size int, typ byte) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typ
	copy(h[257:], "ustar\x0000")
	copy(h[148:156], "        ")
	sum := 0
	for _, b := range h {
		sum += int(b)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

func padBlock(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxRecord is "LEN key=value\n" where LEN counts the whole record.
func paxRecord(key, value string) string {
	body := " " + key + "=" + value + "\n"
	n := len(body) + 1
	for len(strconv.Itoa(n))+len(body) != n {
		n++
	}
	return strconv.Itoa(n) + body
}

// paddingRules is a rule file of about size bytes, nearly all of it one
// comment, with a rule that never matches: it makes every RuleSet message
// large (so a worker that stops reading fills gRPC's flow-control window)
// and changes no score.
func paddingRules(size int) string {
	var b strings.Builder
	b.WriteString("/*\n")
	line := "padding: a large rule set crosses the stream whole\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString("*/\nrule e2e_never { meta: weight = 100 strings: $a = \"e2e-never-present-7f3a9c\" condition: $a }\n")
	return b.String()
}

// fleetClient dials the coordinator as a worker would (plaintext on
// loopback; the token goes in each stream's metadata, see fleetCtx).
func fleetClient(t *testing.T, addr string, opts ...grpc.DialOption) fleetv1.FleetServiceClient {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	}, opts...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return fleetv1.NewFleetServiceClient(conn)
}

func fleetCtx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+fleetToken)
}

func helloMsg(id string, slots uint32, mode fleetv1.WorkerMode) *fleetv1.ConnectRequest {
	return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Hello{Hello: &fleetv1.Hello{
		WorkerId: id, Version: "e2e-adversary", ProtocolVersion: fleetv1.ProtocolVersion_PROTOCOL_VERSION_1,
		Slots: slots, Host: "e2e", Mode: mode,
	}}}
}

func rulesReady(hash, compileErr string) *fleetv1.ConnectRequest {
	return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_RulesStatus{RulesStatus: &fleetv1.RulesStatus{Hash: hash, Error: compileErr}}}
}

func heartbeatMsg(running []uint64) *fleetv1.ConnectRequest {
	return &fleetv1.ConnectRequest{Msg: &fleetv1.ConnectRequest_Heartbeat{Heartbeat: &fleetv1.Heartbeat{
		TasksHeld: uint32(len(running)), TasksRunning: uint32(len(running)), RunningTaskIds: running,
	}}}
}

// codeCounts counts how sessions ended, by gRPC code, for one adversary.
type codeCounts struct {
	mu sync.Mutex
	n  map[codes.Code]int
	// last is the last error of each code (for failure messages).
	last map[codes.Code]string
}

func (c *codeCounts) add(err error) {
	st := status.Convert(err)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n, c.last = map[codes.Code]int{}, map[codes.Code]string{}
	}
	c.n[st.Code()]++
	c.last[st.Code()] = st.Message()
}

func (c *codeCounts) get(code codes.Code) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[code]
}

func (c *codeCounts) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.n {
		n += k
	}
	return n
}

func (c *codeCounts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for code, n := range c.n {
		parts = append(parts, fmt.Sprintf("%s=%d (%q)", code, n, c.last[code]))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// peer is a misbehaving worker that reads what the coordinator sends (one
// goroutine receives, the session loop alone sends). onMsg and tick return
// what to send; they run on the session loop only.
type peer struct {
	hello *fleetv1.ConnectRequest
	every time.Duration
	onMsg func(*fleetv1.ConnectResponse) []*fleetv1.ConnectRequest
	tick  func() []*fleetv1.ConnectRequest
}

// run serves one session until the coordinator ends it or ctx ends, and
// returns the session's final status.
func (p peer) run(ctx context.Context, client fleetv1.FleetServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Connect(fleetCtx(ctx))
	if err != nil {
		return err
	}
	if err := stream.Send(p.hello); err != nil {
		return sessionEnd(stream, err)
	}
	in := make(chan *fleetv1.ConnectResponse)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case in <- m:
			case <-ctx.Done():
				recvErr <- ctx.Err()
				return
			}
		}
	}()
	tk := time.NewTicker(p.every)
	defer tk.Stop()
	for {
		var out []*fleetv1.ConnectRequest
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return err
		case m := <-in:
			out = p.onMsg(m)
		case <-tk.C:
			out = p.tick()
		}
		for _, m := range out {
			if err := stream.Send(m); err != nil {
				// The stream ended; its status comes from Recv.
				for {
					select {
					case err := <-recvErr:
						return err
					case <-in:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
			}
		}
	}
}

// sessionEnd returns the status of a stream whose Send failed.
func sessionEnd(stream fleetv1.FleetService_ConnectClient, sendErr error) error {
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}

// adversaries are the misbehaving clients of one run and what they saw.
type adversaries struct {
	coordAddr string
	rulesHash string

	wg     sync.WaitGroup
	cancel context.CancelFunc

	hogSessions, hogRefused atomic.Int64 // sessions admitted; refused at Hello
	hogEnds                 codeCounts
	silentTasks             atomic.Int64 // tasks the silent holder took
	silentEnds              codeCounts
	liarTasks               atomic.Int64 // tasks the liar answered clean
	liarEnds                codeCounts
	floodMsgs, floodBytes   atomic.Int64
	floodEnds               codeCounts
	oversizeSent            atomic.Int64 // oversized messages sent
	oversizeEnds            codeCounts
	nonScanEnds             codeCounts
}

// startAdversaries starts every adversary against the coordinator at addr;
// they run until stop. hash is the rules commit the hog claims ready
// without reading it.
func startAdversaries(t *testing.T, addr, hash string) *adversaries {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &adversaries{coordAddr: addr, rulesHash: hash, cancel: cancel}
	t.Cleanup(a.stop)
	a.goLoop(ctx, a.hog(t))
	a.goLoop(ctx, a.silent(t))
	a.goLoop(ctx, a.liar(t))
	a.goLoop(ctx, a.flood(t))
	a.goLoop(ctx, a.oversize(t))
	a.goLoop(ctx, a.nonScan(t))
	return a
}

func (a *adversaries) goLoop(ctx context.Context, f func(context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f(ctx)
	}()
}

// stop ends every adversary and waits for them.
func (a *adversaries) stop() {
	a.cancel()
	a.wg.Wait()
}

// pause waits d or until ctx ends; it reports whether ctx is still live.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// hog announces 4,000,000,000 slots, claims the current rules ready (every
// 100 ms) without ever reading them or anything else, and heartbeats so it
// is not dropped as silent: the coordinator's sends to it stop at gRPC flow control (its
// windows are fixed at 64 KiB) and the session must be cut. Each session
// lasts hold; then it reconnects at once, and again every 500 ms after a
// refusal.
func (a *adversaries) hog(t *testing.T) func(context.Context) {
	client := fleetClient(t, a.coordAddr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	const hold = 8 * time.Second
	return func(ctx context.Context) {
		for ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, hold)
			err := a.hogSession(sctx, client)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				a.hogRefused.Add(1)
				a.hogEnds.add(err)
				if !pause(ctx, 500*time.Millisecond) {
					return
				}
			}
		}
	}
}

// hogSession is one hog session. It returns the refusal when the
// coordinator refused it at Hello, nil when it was admitted (it never reads,
// so how the coordinator ended it is in the coordinator's log).
func (a *adversaries) hogSession(ctx context.Context, client fleetv1.FleetServiceClient) error {
	stream, err := client.Connect(fleetCtx(ctx))
	if err != nil {
		return err
	}
	if err := stream.Send(helloMsg(idHog, 4_000_000_000, fleetv1.WorkerMode_WORKER_MODE_SCAN)); err != nil {
		return sessionEnd(stream, err)
	}
	// Response headers arrive with the first message of an admitted
	// session (they are not flow controlled, so this reads no message); a
	// refused session ends with a status alone, and Header returns no
	// metadata: Recv returns the status.
	md, err := stream.Header()
	if err != nil {
		return err
	}
	if md == nil {
		if _, err := stream.Recv(); err != nil {
			return err
		}
		return errors.New("hog: a message without response headers")
	}
	a.hogSessions.Add(1)
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for n := 0; ; n++ {
		// Claim the rules ready as fast as a worker could, so that the
		// hog is the first ready worker whenever the coordinator loads
		// them; heartbeat every second.
		out := []*fleetv1.ConnectRequest{rulesReady(a.rulesHash, "")}
		if n%10 == 0 {
			out = append(out, heartbeatMsg(nil))
		}
		for _, m := range out {
			if stream.Send(m) != nil {
				<-ctx.Done()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
	}
}

// silent takes tasks and never answers them: it heartbeats every second,
// naming the tasks it holds as running.
func (a *adversaries) silent(t *testing.T) func(context.Context) {
	client := fleetClient(t, a.coordAddr)
	return func(ctx context.Context) {
		sessions(ctx, client, 0, &a.silentEnds, func() peer {
			var held []uint64
			heartbeat := func() []*fleetv1.ConnectRequest {
				return []*fleetv1.ConnectRequest{heartbeatMsg(held[:min(len(held), 2)])}
			}
			return scanPeer(idSilent, 2, func(as *fleetv1.Assign) []*fleetv1.ConnectRequest {
				for _, task := range as.GetTasks() {
					held = append(held, task.GetTaskId())
					a.silentTasks.Add(1)
				}
				return heartbeat()
			}, heartbeat)
		})
	}
}

// liar answers every task at once as clean (score 0, no rules, no top
// file: a well-formed result), and heartbeats.
func (a *adversaries) liar(t *testing.T) func(context.Context) {
	client := fleetClient(t, a.coordAddr)
	return func(ctx context.Context) {
		sessions(ctx, client, 0, &a.liarEnds, func() peer {
			return scanPeer(idLiar, 2, func(as *fleetv1.Assign) []*fleetv1.ConnectRequest {
				a.liarTasks.Add(int64(len(as.GetTasks())))
				return answer(as, func(*fleetv1.Task) *fleetv1.TaskResult {
					return &fleetv1.TaskResult{
						Outcome: &fleetv1.TaskResult_Distribution{Distribution: &fleetv1.DistributionResult{}},
						Stats:   &fleetv1.TaskStats{BytesDownloaded: 4096, BytesExpanded: 16384, Files: 3},
					}
				})
			}, heartbeatTick)
		})
	}
}

// flood sends a RulesStatus every 50 ms: a made-up 1 MiB hash, and every
// tenth time the current hash with a 1 MiB compile error. It reads (and
// drops) what the coordinator sends.
func (a *adversaries) flood(t *testing.T) func(context.Context) {
	client := fleetClient(t, a.coordAddr)
	junk := strings.Repeat("0123456789abcdef", (1<<20)/16)
	return func(ctx context.Context) {
		sessions(ctx, client, 0, &a.floodEnds, func() peer {
			var hash string
			n := 0
			return peer{
				hello: helloMsg(idFlood, 1, fleetv1.WorkerMode_WORKER_MODE_SCAN),
				every: 50 * time.Millisecond,
				onMsg: func(m *fleetv1.ConnectResponse) []*fleetv1.ConnectRequest {
					if m.GetRuleSet() != nil {
						hash = m.GetRuleSet().GetHash()
					}
					return nil
				},
				tick: func() []*fleetv1.ConnectRequest {
					n++
					m := rulesReady(strconv.Itoa(n)+junk, "")
					if n%10 == 0 && hash != "" {
						m = rulesReady(hash, "line 1: "+junk)
					}
					a.floodMsgs.Add(1)
					a.floodBytes.Add(int64(len(junk)))
					return []*fleetv1.ConnectRequest{m}
				},
			}
		})
	}
}

// oversizeSessions is how many sessions the oversized sender opens.
const oversizeSessions = 3

// oversize takes tasks, then answers the first Assign of each session with
// one 5 MB TaskResults (failures whose reason is 5 MB), over the
// coordinator's 4 MiB receive limit. It opens up to oversizeSessions
// sessions, one after the other.
func (a *adversaries) oversize(t *testing.T) func(context.Context) {
	client := fleetClient(t, a.coordAddr)
	reason := strings.Repeat("x", 5<<20)
	return func(ctx context.Context) {
		sessions(ctx, client, oversizeSessions, &a.oversizeEnds, func() peer {
			sent := false
			return scanPeer(idOversize, 1, func(as *fleetv1.Assign) []*fleetv1.ConnectRequest {
				if sent {
					return nil
				}
				sent = true
				a.oversizeSent.Add(1)
				return answer(as, func(*fleetv1.Task) *fleetv1.TaskResult {
					return &fleetv1.TaskResult{Outcome: &fleetv1.TaskResult_Failure{Failure: &fleetv1.TaskFailure{
						Reason: reason, Kind: fleetv1.FailureKind_FAILURE_KIND_ARCHIVE,
					}}}
				})
			}, heartbeatTick)
		})
	}
}

// sessions runs a session of the peer that newPeer builds after another
// until ctx ends, or until max sessions have run (0: no limit). How each
// session ended goes into ends; the next one starts a second later.
func sessions(ctx context.Context, client fleetv1.FleetServiceClient, max int, ends *codeCounts, newPeer func() peer) {
	for n := 0; ctx.Err() == nil && (max == 0 || n < max); n++ {
		err := newPeer().run(ctx, client)
		if ctx.Err() != nil {
			return
		}
		ends.add(err)
		if !pause(ctx, time.Second) {
			return
		}
	}
}

// scanPeer is a scanning worker id with slots that claims every rule set it
// is sent ready at once, answers each Assign with onAssign and sends tick
// every second.
func scanPeer(id string, slots uint32, onAssign func(*fleetv1.Assign) []*fleetv1.ConnectRequest, tick func() []*fleetv1.ConnectRequest) peer {
	return peer{
		hello: helloMsg(id, slots, fleetv1.WorkerMode_WORKER_MODE_SCAN),
		every: time.Second,
		onMsg: func(m *fleetv1.ConnectResponse) []*fleetv1.ConnectRequest {
			switch {
			case m.GetRuleSet() != nil:
				return []*fleetv1.ConnectRequest{rulesReady(m.GetRuleSet().GetHash(), "")}
			case m.GetAssign() != nil:
				return onAssign(m.GetAssign())
			}
			return nil
		},
		tick: tick,
	}
}

// answer is one TaskResults message with result's answer to each task of
// as (its task id set here).
func answer(as *fleetv1.Assign, result func(*fleetv1.Task) *fleetv1.TaskResult) []*fleetv1.ConnectRequest {
	var rs []*fleetv1.TaskResult
	for _, task := range as.GetTasks() {
		r := result(task)
		r.TaskId = task.GetTaskId()
		rs = append(rs, r)
	}
	return []*fleetv1.ConnectRequest{{Msg: &fleetv1.ConnectRequest_Results{Results: &fleetv1.TaskResults{Results: rs}}}}
}

// heartbeatTick is a heartbeat that names no task.
func heartbeatTick() []*fleetv1.ConnectRequest {
	return []*fleetv1.ConnectRequest{heartbeatMsg(nil)}
}

// nonScan announces the non-scanning mode (a benchmark harness's fabricated
// results) once.
func (a *adversaries) nonScan(t *testing.T) func(context.Context) {
	client := fleetClient(t, a.coordAddr)
	return func(ctx context.Context) {
		p := peer{
			hello: helloMsg(idNonScan, 4, fleetv1.WorkerMode_WORKER_MODE_NON_SCANNING),
			every: time.Second,
			onMsg: func(*fleetv1.ConnectResponse) []*fleetv1.ConnectRequest { return nil },
			tick:  heartbeatTick,
		}
		err := p.run(ctx, client)
		if ctx.Err() == nil {
			a.nonScanEnds.add(err)
		}
	}
}

// advRun is what one run of the scenario measured.
type advRun struct {
	wall                      time.Duration
	leaseToReportMedian       time.Duration
	leaseToReportMax          time.Duration
	vmHWM                     int64
	heapInuseEnd, heapInuseGC float64
	goroutines                float64
}

func (r advRun) String() string {
	return fmt.Sprintf("wall=%v lease_to_report_median=%v max=%v coordinator_vmhwm=%.1fMiB heap_inuse_end=%.1fMiB heap_inuse_after_gc=%.1fMiB goroutines=%.0f",
		r.wall.Round(100*time.Millisecond), r.leaseToReportMedian.Round(10*time.Millisecond), r.leaseToReportMax.Round(10*time.Millisecond),
		float64(r.vmHWM)/(1<<20), r.heapInuseEnd/(1<<20), r.heapInuseGC/(1<<20), r.goroutines)
}

// TestAdversaries runs the releases twice, each time with devapi, a
// coordinator (spot checks on every task: DRAGONFLY_VERIFY_RATE=1) and two
// honest workers: first alone, then with the adversaries (a slot hog that
// stops reading, a silent holder, a RulesStatus flood, a liar, an oversized
// message sender, a non-scanning worker). In both runs every release is
// reported exactly once with its honest verdict, under its first lease and
// well inside it; with the adversaries the liar is quarantined, the others
// are cut or refused, and the coordinator's peak RSS and Go heap stay
// within a small multiple of the run without them.
func TestAdversaries(t *testing.T) {
	pkgs, want := writeAdversaryReleases(t)
	rules := t.TempDir()
	writeRules(t, rules, "e2e", e2eRules)
	writeRules(t, rules, "padding", paddingRules(1<<20))
	var base, hostile advRun
	t.Run("baseline", func(t *testing.T) { base = runAdversaryScenario(t, pkgs, rules, want, false) })
	t.Run("adversaries", func(t *testing.T) { hostile = runAdversaryScenario(t, pkgs, rules, want, true) })
	if base.vmHWM == 0 || hostile.vmHWM == 0 {
		t.Fatal("a run ended before it measured the coordinator's memory")
	}
	// The memory is compared even when a run's verdicts were wrong (its
	// subtest failed): both runs measured the same releases.
	rss := float64(hostile.vmHWM) / float64(base.vmHWM)
	heapEnd := hostile.heapInuseEnd / base.heapInuseEnd
	heapGC := hostile.heapInuseGC / base.heapInuseGC
	t.Logf("RESULT adversary-memory vmhwm_ratio=%.2f heap_inuse_end_ratio=%.2f heap_inuse_after_gc_ratio=%.2f", rss, heapEnd, heapGC)
	// Loose bounds: the adversaries add sessions, a flood of 1 MiB
	// messages and 5 MB ones refused; the coordinator must not keep what
	// they send. The race detector's shadow memory is in both RSS figures.
	if rss > 3 {
		t.Errorf("coordinator peak RSS %.1f MiB with adversaries, %.1f MiB without: ratio %.2f > 3", float64(hostile.vmHWM)/(1<<20), float64(base.vmHWM)/(1<<20), rss)
	}
	if heapGC > 3 {
		t.Errorf("coordinator heap after GC %.1f MiB with adversaries, %.1f MiB without: ratio %.2f > 3", hostile.heapInuseGC/(1<<20), base.heapInuseGC/(1<<20), heapGC)
	}
	if heapEnd > 6 {
		t.Errorf("coordinator heap in use at the end %.1f MiB with adversaries, %.1f MiB without: ratio %.2f > 6", hostile.heapInuseEnd/(1<<20), base.heapInuseEnd/(1<<20), heapEnd)
	}
}

// runAdversaryScenario runs the releases in pkgs through a fresh fleet,
// with the adversaries or without, checks every report and returns the
// run's numbers.
func runAdversaryScenario(t *testing.T, pkgs, rules string, want map[string]advExpect, hostile bool) advRun {
	releases := len(want)
	d := startDevAPI(t, "--packages", pkgs, "--rules", rules)
	hash := d.rulesCommit(t)
	// The API answers 503 for the first 4 s, so the coordinator loads its
	// rules and leases only once the workers (started within a second or
	// two) are connected, and all of them race to be ready for the rules.
	d.setFaults(t, `{"unavailable_seconds": 4}`)
	start := time.Now()
	coordEnv, pprofAddr := pprofEnv(t, map[string]string{"DRAGONFLY_VERIFY_RATE": "1", "DRAGONFLY_LOG_LEVEL": "info"})
	coord, grpcAddr, httpAddr := startCoordinator(t, d, coordEnv)
	honest := []*proc{
		startWorker(t, d, "w0", grpcAddr, map[string]string{"DRAGONFLY_LOG_LEVEL": "info"}),
		startWorker(t, d, "w1", grpcAddr, map[string]string{"DRAGONFLY_LOG_LEVEL": "info"}),
	}
	expect := []string{"w0", "w1"}
	var adv *adversaries
	if hostile {
		adv = startAdversaries(t, grpcAddr, hash)
		expect = append(expect, idHog, idSilent, idLiar, idFlood, idOversize)
	}
	eventually(t, 60*time.Second, "every worker connected", func() bool {
		for _, id := range expect {
			if len(sessionsOf(coord, id)) == 0 {
				return false
			}
		}
		return true
	})

	// Wait for every release (its 120 s lease and a margin). A release
	// still open then is an error, not the end of the test: the checks and
	// numbers below say what happened to the others.
	var quarantineSeen bool
	deadline := time.Now().Add(150 * time.Second)
	for !d.allDone(t, releases) && time.Now().Before(deadline) {
		if hostile && !quarantineSeen && coord.logged(`"msg":"worker quarantined`, `"identity":"`+idLiar+`"`) {
			// Read the status page now: its list of recent failures is
			// bounded, later entries may push the quarantine out.
			quarantineSeen = true
			assertQuarantineListed(t, httpAddr, idLiar)
		}
		time.Sleep(50 * time.Millisecond) // polled, as eventually polls

	}
	wall := time.Since(start)
	if !d.allDone(t, releases) {
		var open []string
		for name := range want {
			if st := d.scanStatus(t, name); st != "finished" && st != "failed" {
				open = append(open, name+" ("+st+")")
			}
		}
		slices.Sort(open)
		t.Errorf("after %v, %d releases not reported: %v", wall.Round(time.Second), len(open), open)
	}
	// The heap in use as the run ends (adversaries still connected), then
	// everything they left behind once they are gone.
	run := advRun{wall: wall, heapInuseEnd: scrape(t, httpAddr)["go_memstats_heap_inuse_bytes"]}
	if hostile {
		adv.stop()
		eventually(t, 30*time.Second, "the adversaries' sessions to end", func() bool {
			return metric(httpAddr, "dragonfly_workers_connected") == 2
		})
	}

	// Every release once, with the honest verdict, under its first lease.
	ok := d.exactlyOnce(t, releases)
	if s := d.stats(t); s.Leases != int64(releases) {
		t.Errorf("%d leases for %d releases: some release was leased again (its first lease ran out)", s.Leases, releases)
	}
	var waits []time.Duration
	for _, r := range ok {
		w, found := want[r.Name]
		switch {
		case !found:
			t.Errorf("report for an unknown release: %+v", r)
			continue
		case w.failure:
			if r.Kind != "failure" || r.Score != nil {
				t.Errorf("%s: want a failure report, got %+v", r.Name, r)
			}
			if !strings.Contains(r.Reason, w.file) || len(r.Reason) > 8<<10 {
				t.Errorf("%s: failure reason must name %s within 8 KiB; %d bytes: %.300q", r.Name, w.file, len(r.Reason), r.Reason)
			}
		default:
			rulesGot := r.RulesMatched
			if rulesGot == nil {
				rulesGot = []string{}
			}
			if r.Kind != "success" || r.Score == nil || *r.Score != w.score || !slices.Equal(rulesGot, w.rules) {
				got := "no score"
				if r.Score != nil {
					got = fmt.Sprintf("score %d", *r.Score)
				}
				t.Errorf("%s: want score %d rules %v, got %s rules %v; coordinator: %.600s", r.Name, w.score, w.rules, got, r.RulesMatched, finishedLine(coord, r.Name))
			}
			if (w.score == 0) != (r.InspectorURL == nil) {
				t.Errorf("%s: inspector URL %v for score %d", r.Name, r.InspectorURL, w.score)
			}
		}
		if r.Attempt != nil && *r.Attempt != 1 {
			t.Errorf("%s reported under attempt %d", r.Name, *r.Attempt)
		}
		leased := leaseTime(t, d, r.Name)
		wait := r.Time.Sub(leased)
		if wait >= 120*time.Second {
			t.Errorf("%s reported %v after its lease: outside the 120 s lease", r.Name, wait)
		}
		waits = append(waits, wait)
	}
	slices.Sort(waits)
	if len(waits) > 0 {
		run.leaseToReportMedian, run.leaseToReportMax = waits[len(waits)/2], waits[len(waits)-1]
	}

	// Nothing anybody sent made a log line unbounded (a 1 MiB member
	// name, 1 MiB hashes and compile errors, a 5 MB reason).
	for _, p := range append([]*proc{coord, d.proc}, honest...) {
		if n := longestLine(p.log.String()); n > 16<<10 {
			t.Errorf("%s logged a line of %d bytes", p.name, n)
		}
	}

	m := scrape(t, httpAddr)
	run.vmHWM = coord.vmHWM(t)
	gc := sampleRuntime(t, httpAddr, pprofAddr)
	run.heapInuseGC, run.goroutines = gc.heapInuse, gc.goroutines

	ev := func(kind string) float64 { return m[`dragonfly_dispatch_events_total{kind="`+kind+`"}`] }
	if !hostile {
		if q := ev("quarantine"); q != 0 {
			t.Errorf("%v quarantines without adversaries", q)
		}
		t.Logf("RESULT adversary-baseline releases=%d %v verify_picked=%.0f verify_skipped=%.0f verify_agreed=%.0f sessions=%.0f",
			releases, run, ev("verify_picked"), ev("verify_skipped"), ev("verify_agreed"), m["dragonfly_sessions_started_total"])
		return run
	}
	checkAdversaries(t, coord, adv, quarantineSeen)
	stalls := strings.Count(coord.log.String(), `"msg":"worker refused for a while: its session stalled"`)
	t.Logf("RESULT adversaries releases=%d %v sessions=%.0f sessions_ended_error=%.0f hog_sessions=%d hog_stall_cuts=%d hog_refusals=%d(%v) silent_tasks=%d backups=%.0f backups_won=%.0f liar_tasks=%d verify_picked=%.0f verify_skipped=%.0f verify_mismatch=%.0f verify_decided=%.0f quarantines=%.0f results_dropped=%.0f flood_msgs=%d flood_MiB=%d flood_ends=[%v] oversize_sent=%d oversize_ends=[%v] nonscan_ends=[%v] tasks_requeued=%.0f",
		releases, run, m["dragonfly_sessions_started_total"], m[`dragonfly_sessions_ended_total{result="error"}`],
		adv.hogSessions.Load(), stalls, adv.hogRefused.Load(), &adv.hogEnds,
		adv.silentTasks.Load(), ev("backup_dispatched"), ev("backup_won"),
		adv.liarTasks.Load(), ev("verify_picked"), ev("verify_skipped"), ev("verify_mismatch"), ev("verify_decided"), ev("quarantine"), ev("result_dropped"),
		adv.floodMsgs.Load(), adv.floodBytes.Load()>>20, &adv.floodEnds,
		adv.oversizeSent.Load(), &adv.oversizeEnds, &adv.nonScanEnds, m["dragonfly_tasks_requeued_total"])
	return run
}

// checkAdversaries asserts what the coordinator did about each adversary.
func checkAdversaries(t *testing.T, coord *proc, adv *adversaries, quarantineSeen bool) {
	t.Helper()
	// The liar, and only the liar, is quarantined.
	if !quarantineSeen {
		t.Errorf("the liar was not quarantined (it answered %d tasks clean)", adv.liarTasks.Load())
	}
	re := regexp.MustCompile(`"msg":"worker quarantined[^"]*".*?"identity":"([^"]*)"`)
	for _, m := range re.FindAllStringSubmatch(coord.log.String(), -1) {
		if m[1] != idLiar {
			t.Errorf("%s quarantined", m[1])
		}
	}
	// The hog: slots capped, cut when it stopped reading, then refused.
	if !coord.logged(`"msg":"worker slots capped"`, `"worker_id":"`+idHog+`"`, `"asked":4000000000`, `"slots":64`) {
		t.Error("the hog's 4,000,000,000 slots were not capped to 64")
	}
	if !coord.logged(`"msg":"worker refused for a while: its session stalled"`, `"worker_id":"`+idHog+`"`) {
		t.Error("the hog's session was not cut for stalling")
	}
	if n := adv.hogEnds.get(codes.Unavailable); n == 0 {
		t.Errorf("the hog was never refused after its stall (Unavailable); its refusals: %v", &adv.hogEnds)
	}
	if adv.hogRefused.Load() != int64(adv.hogEnds.get(codes.Unavailable)) {
		t.Errorf("the hog was refused other than as Unavailable: %v", &adv.hogEnds)
	}
	// The silent holder took tasks; backups replaced them.
	if adv.silentTasks.Load() == 0 {
		t.Error("the silent holder was given no task: nothing tested it")
	}
	if !coord.logged(`"msg":"task overdue; backup dispatched to another worker"`, `"slow_identity":"`+idSilent+`"`) {
		t.Error("no backup of a task the silent holder held")
	}
	// The flood ran the whole time and was never the reason of anything
	// the coordinator kept.
	if adv.floodMsgs.Load() < 100 {
		t.Errorf("only %d flood messages sent", adv.floodMsgs.Load())
	}
	// Every oversized message ended its session with ResourceExhausted,
	// and no session of the sender ended otherwise.
	sent := adv.oversizeSent.Load()
	if sent == 0 {
		t.Error("the oversized sender was given no task: it sent nothing")
	}
	if n := adv.oversizeEnds.get(codes.ResourceExhausted); int64(n) != sent || n != adv.oversizeEnds.total() {
		t.Errorf("oversized sender: %d sent, sessions ended %v; want %d ResourceExhausted", sent, &adv.oversizeEnds, sent)
	}
	// The non-scanning worker is refused at once.
	if adv.nonScanEnds.get(codes.PermissionDenied) != 1 {
		t.Errorf("non-scanning worker: %v; want PermissionDenied", &adv.nonScanEnds)
	}
	if !coord.logged(`"msg":"worker refused: it announced a non-scanning mode"`, `"worker_id":"`+idNonScan+`"`) {
		t.Error("the coordinator did not log the non-scanning worker's refusal")
	}
}

// assertQuarantineListed checks that the coordinator's /status.json lists
// the quarantine of identity among its recent failures.
func assertQuarantineListed(t *testing.T, httpAddr, identity string) {
	t.Helper()
	var doc struct {
		Failures []struct {
			Kind    string   `json:"kind"`
			Reason  string   `json:"reason"`
			Workers []string `json:"workers"`
		} `json:"recent_failures"`
	}
	if err := getJSON("http://"+httpAddr+"/status.json", &doc); err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, f := range doc.Failures {
		if f.Kind == "quarantine" && slices.Contains(f.Workers, identity) {
			return
		}
	}
	t.Errorf("/status.json lists no quarantine of %s among %d recent failures", identity, len(doc.Failures))
}

// leaseTime is when devapi leased name 1.0 (its scan's pending_at).
func leaseTime(t *testing.T, d *devapi, name string) time.Time {
	t.Helper()
	var recs []struct {
		PendingAt *time.Time `json:"pending_at"`
	}
	if err := d.getJSON(fmt.Sprintf("/package?name=%s&version=1.0", name), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].PendingAt == nil {
		t.Fatalf("GET /package %s: %d scans, want one that was leased", name, len(recs))
	}
	return *recs[0].PendingAt
}

func longestLine(s string) int {
	n := 0
	for line := range strings.SplitSeq(s, "\n") {
		n = max(n, len(line))
	}
	return n
}
