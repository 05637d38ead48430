package coordinator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/dragonfly-fleet/fleet/protocol"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Attacks at the coordinator's door: peers without the fleet token, and
// token holders that open many connections or sessions.

// h2Client is a raw HTTP/2 client: it sends what a gRPC client would not
// (messages it never finishes) and sees what the server answers per stream.
type h2Client struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer

	mu      sync.Mutex
	changed *sync.Cond
	window  map[uint32]int // send windows by stream (0: the connection's)
	initWin int
	ended   map[uint32]string // stream -> grpc-status (or "rst") once the server ended it
	pings   int               // ping acks received
	readErr error
	done    chan struct{}
}

func newH2Client(t *testing.T, conn net.Conn) *h2Client {
	t.Helper()
	c := &h2Client{t: t, conn: conn, fr: http2.NewFramer(conn, conn), window: map[uint32]int{0: 65535}, initWin: 65535,
		ended: map[uint32]string{}, done: make(chan struct{})}
	c.changed = sync.NewCond(&c.mu)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.read()
	return c
}

func (c *h2Client) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		c.mu.Lock()
		if err != nil {
			c.readErr = err
			c.changed.Broadcast()
			c.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				f.ForeachSetting(func(s http2.Setting) error {
					if s.ID == http2.SettingInitialWindowSize {
						for id := range c.window {
							if id != 0 {
								c.window[id] += int(s.Val) - c.initWin
							}
						}
						c.initWin = int(s.Val)
					}
					return nil
				})
				c.fr.WriteSettingsAck()
			}
		case *http2.WindowUpdateFrame:
			c.window[f.StreamID] += int(f.Increment)
		case *http2.PingFrame:
			if f.IsAck() {
				c.pings++
			} else {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() && c.ended[f.StreamID] == "" {
				c.ended[f.StreamID] = f.PseudoValue("status") + " grpc-status " + headerValue(f, "grpc-status")
			}
		case *http2.RSTStreamFrame:
			if c.ended[f.StreamID] == "" {
				c.ended[f.StreamID] = "rst " + f.ErrCode.String()
			}
		}
		c.changed.Broadcast()
		c.mu.Unlock()
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, h := range f.Fields {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// waitFor waits (bounded) until cond holds, under c.mu.
func (c *h2Client) waitFor(what string, cond func() bool) {
	c.t.Helper()
	timer := time.AfterFunc(10*time.Second, func() {
		c.mu.Lock()
		c.readErr = errors.New("timed out")
		c.changed.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !cond() {
		if c.readErr != nil {
			c.t.Fatalf("%s: %v", what, c.readErr)
		}
		c.changed.Wait()
	}
}

// halfSend opens stream id calling method (no token), waits for the
// server's answer to the headers, then sends as much of a message that
// declares msgLen bytes as the server's flow-control windows let it,
// never its last byte. It returns the stream's end.
func (c *h2Client) halfSend(id uint32, method string, msgLen int) string {
	c.t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "x"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	c.mu.Lock()
	c.window[id] = c.initWin
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
	c.mu.Unlock()
	if err != nil {
		c.t.Fatal(err)
	}
	// The refusal must come before any payload: a server that reads the
	// message first never answers here.
	c.waitFor(fmt.Sprintf("stream %d: no answer before its payload", id), func() bool { return c.ended[id] != "" })
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix[1:], uint32(msgLen))
	payload := append(prefix, make([]byte, msgLen-1)...)
	c.mu.Lock()
	defer c.mu.Unlock()
	for off := 0; off < len(payload); {
		n := min(len(payload)-off, c.window[id], c.window[0], 16384)
		if n <= 0 {
			break
		}
		c.window[id] -= n
		c.window[0] -= n
		if err := c.fr.WriteData(id, false, payload[off:off+n]); err != nil {
			c.t.Fatal(err)
		}
		off += n
	}
	return c.ended[id]
}

// sync waits until the server has read every frame sent so far (its
// reader answers a PING after them).
func (c *h2Client) sync() {
	c.t.Helper()
	c.mu.Lock()
	want := c.pings + 1
	err := c.fr.WritePing(false, [8]byte{1})
	c.mu.Unlock()
	if err != nil {
		c.t.Fatal(err)
	}
	c.waitFor("ping ack", func() bool { return c.pings >= want })
}

func (c *h2Client) close() {
	c.conn.Close()
	<-c.done
}

// TestPreAuthStreamsBufferNothing: a stream without the fleet token is
// refused by the tap handle before any of its payload is read, so peers
// without the token cannot make the coordinator buffer messages (before:
// 4 connections x 8 streams, each with a 4 MiB message one byte short,
// grew the heap from 9 to 139 MiB and held it). Health Check from a remote
// peer needs the token too; a local peer's Check does not (see
// TestHealthWatchIsBounded).
func TestPreAuthStreamsBufferNothing(t *testing.T) {
	f := startFleetWith(t, newFakeAPI(), nil, ServerConfig{Token: testToken, FleetInsecure: true})
	const conns, streams, msgLen = 4, 8, 4<<20 - 16
	before := testkit.HeapInUse()
	var clients []*h2Client
	for i := range conns {
		var raw net.Conn
		var err error
		method := healthpb.Health_Check_FullMethodName
		if i%2 == 0 {
			raw, err = f.from.dialFrom(context.Background(), "10.9.8."+strconv.Itoa(i+1))
		} else {
			raw, err = f.lis.Dial() // local: Check would pass, Connect needs the token
			method = fleetv1.FleetService_Connect_FullMethodName
		}
		if err != nil {
			t.Fatal(err)
		}
		c := newH2Client(t, raw)
		clients = append(clients, c)
		for j := range streams {
			end := c.halfSend(uint32(2*j+1), method, msgLen)
			if !strings.Contains(end, "grpc-status "+strconv.Itoa(int(codes.Unauthenticated))) {
				t.Fatalf("conn %d stream %d (%s): ended %q, want Unauthenticated", i, j, method, end)
			}
		}
	}
	for _, c := range clients {
		c.sync()
	}
	after := testkit.HeapInUse()
	grew := int64(after) - int64(before)
	t.Logf("no token: %d conns x %d streams refused before their 4 MiB messages: heap %.1f MiB -> %.1f MiB", conns, streams, float64(before)/(1<<20), float64(after)/(1<<20))
	if grew > 16<<20 {
		t.Fatalf("heap grew by %d bytes: refused streams' payloads were buffered", grew)
	}
	if n := f.c.Snapshot().Refusals.Streams; n != conns*streams {
		t.Fatalf("%d streams counted refused, want %d", n, conns*streams)
	}
	for _, c := range clients {
		c.close()
	}
}

// TestPendingConnectionsCannotLockWorkersOut: a peer without the token that
// holds many connections open (more than MaxWorkers and than the pending
// pool) cannot keep a worker out: each new connection closes the oldest
// pending one, and a worker with the token authenticates, gets tasks and
// has them reported (before: MaxWorkers connections held by anyone closed
// every further one on accept).
func TestPendingConnectionsCannotLockWorkersOut(t *testing.T) {
	api := newFakeAPI(job("p", "u1"))
	f := startFleetWith(t, api, nil, ServerConfig{Token: testToken, MaxWorkers: 4, MaxPendingConns: 8})
	const held = 40
	var attackers []net.Conn
	for range held {
		c, err := f.lis.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		attackers = append(attackers, c)
	}
	// Every connection was accepted; the oldest were closed for newer ones.
	for _, c := range attackers[:held-8] {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("an evicted connection was not closed: %v", err)
		}
	}
	w := f.workerWith("honest", 1, grpc.WithPerRPCCredentials(tokenCreds{}))
	w.ready()
	w.answer(result(w.tasks(1)[0], "x", "r"))
	if r := api.WaitReports(t, 1)[0]; r.Success == nil || r.Success.Score != 1 {
		t.Fatalf("report %+v", r)
	}
	c := f.srv.connCounts()
	evicted := f.c.Snapshot().Refusals.PendingEvicted
	t.Logf("%d unauthenticated connections opened: %d evicted, %d pending, %d authenticated", held, evicted, c.Pending, c.Authenticated)
	if c.Authenticated != 1 || c.Pending > 8 || evicted < held-8+1 {
		t.Fatalf("connections %+v, %d evicted: want the worker authenticated, at most 8 pending", c, evicted)
	}
}

// tokenCreds sends the tests' fleet token over the in-memory (local)
// connection.
type tokenCreds struct{}

func (tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + testToken}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

// TestSessionsPerIdentityCap: one identity (here a worker id, reconnecting)
// holds at most MaxSessionsPerIdentity sessions; over it the stream is
// refused with ResourceExhausted naming the setting. Workers on one address
// are not one identity (a NAT hides many hosts): each is its own.
func TestSessionsPerIdentityCap(t *testing.T) {
	api := newFakeAPI()
	f := startFleetWith(t, api, nil, ServerConfig{Token: testToken, FleetInsecure: true, MaxSessionsPerIdentity: 2})
	for range 2 {
		w := f.workerWith("a", 1, f.fromAddr("10.0.0.5")...)
		w.ready()
	}
	err := f.session("a", f.fromAddr("10.0.0.5")...)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "DRAGONFLY_MAX_SESSIONS_PER_IDENTITY") {
		t.Fatalf("third session of identity a: %v, want ResourceExhausted naming DRAGONFLY_MAX_SESSIONS_PER_IDENTITY", err)
	}
	// Other workers behind the same address are not affected.
	for _, id := range []string{"b", "c", "d"} {
		w := f.workerWith(id, 1, f.fromAddr("10.0.0.5")...)
		w.ready()
	}
	ids := map[string]int{}
	for _, s := range f.c.Snapshot().Sessions {
		ids[s.Identity]++
	}
	if len(ids) != 4 || ids["a"] != 2 || ids["b"] != 1 {
		t.Fatalf("identities %v, want a (2 sessions), b, c, d", ids)
	}
	if r := f.c.Snapshot().Refusals; r.SessionsOverIdentityCap != 1 {
		t.Fatalf("refusals %+v, want one over the identity cap", r)
	}
}

// session opens a session on a connection of its own (kept open until the
// test ends), sends Hello and returns how the stream ended (nil: the
// coordinator answered).
func (f *fleet) session(id string, opts ...grpc.DialOption) error {
	f.t.Helper()
	conn := f.dial(opts...)
	f.t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := fleetv1.NewFleetServiceClient(conn).Connect(ctx)
	if err != nil {
		return err
	}
	_ = stream.Send(hello(id, 1)) // a refused stream's status comes from Recv
	_, err = stream.Recv()
	return err
}

// TestShortFleetTokenRefused: a fleet token shorter than 16 bytes is
// refused at start, naming the setting.
func TestShortFleetTokenRefused(t *testing.T) {
	c, err := New(Config{API: newFakeAPI()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(c, ServerConfig{Token: "fifteen-bytes-x"}); err == nil || !strings.Contains(err.Error(), "DRAGONFLY_FLEET_TOKEN") {
		t.Fatalf("15-byte token: %v, want a refusal naming DRAGONFLY_FLEET_TOKEN", err)
	}
	if _, err := NewServer(c, ServerConfig{Token: "sixteen-bytes-xx"}); err != nil {
		t.Fatalf("16-byte token: %v", err)
	}
}

// TestRefusalsAreThrottled: refused streams are all counted, but logged at
// most once per peer address and minute.
func TestRefusalsAreThrottled(t *testing.T) {
	var logs syncLog
	f := startFleetWith(t, newFakeAPI(), nil, ServerConfig{Token: testToken, FleetInsecure: true, Logger: logs.logger()})
	for _, ip := range []string{"10.2.2.2", "10.3.3.3"} {
		conn := f.dial(grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return f.from.dialFrom(ctx, ip) }))
		for range 20 {
			_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("remote Check without a token: %v", err)
			}
		}
		conn.Close()
	}
	if n := f.c.Snapshot().Refusals.Streams; n != 40 {
		t.Fatalf("%d refusals counted, want 40", n)
	}
	if n := strings.Count(logs.String(), "worker refused"); n != 2 {
		t.Fatalf("%d refusal lines, want one per address:\n%s", n, logs.String())
	}
}

// syncLog collects a logger's lines.
type syncLog struct{ testkit.SyncBuffer }

func (l *syncLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(&l.SyncBuffer, nil)) }

// TestIdentity: a session's identity is its verified client certificate's
// subject under mutual TLS, else its own worker id; never its address.
func TestIdentity(t *testing.T) {
	cert := func(cn string) credentials.TLSInfo {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: []string{"fleet"}}}
		return credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}}
	}
	unverified := credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "forged"}}}}}
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 41234} }
	for _, tc := range []struct {
		name string
		peer *peer.Peer // nil: no peer in the context
		want string
	}{
		{"no peer", nil, "w1"},
		{"loopback", &peer.Peer{Addr: tcp("127.0.0.1")}, "w1"},
		{"in memory", &peer.Peer{Addr: addrString("bufconn")}, "w1"},
		{"remote", &peer.Peer{Addr: tcp("10.0.0.9")}, "w1"},
		{"remote through the gate", &peer.Peer{Addr: &gateAddr{Addr: tcp("10.0.0.9")}}, "w1"},
		{"remote, unverified certificate", &peer.Peer{Addr: tcp("10.0.0.9"), AuthInfo: unverified}, "w1"},
		{"local, mutual TLS", &peer.Peer{Addr: tcp("127.0.0.1"), AuthInfo: cert("pod-a")}, "cert:CN=pod-a,O=fleet"},
		{"remote, mutual TLS", &peer.Peer{Addr: tcp("10.0.0.9"), AuthInfo: cert("pod-a")}, "cert:CN=pod-a,O=fleet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.peer != nil {
				ctx = peer.NewContext(ctx, tc.peer)
			}
			if got := identity(ctx, "w1"); got != tc.want {
				t.Fatalf("identity %q, want %q", got, tc.want)
			}
		})
	}
	// A certificate subject of any length keeps the identity bounded.
	long := &peer.Peer{Addr: tcp("2001:db8::7"), AuthInfo: cert(strings.Repeat("x", 1<<20))}
	if got := identity(peer.NewContext(context.Background(), long), "w1"); len(got) > protocol.MaxIDBytes+8 {
		t.Fatalf("identity of %d bytes", len(got))
	}
}

// addrString is an address that is not host:port (as bufconn's).
type addrString string

func (a addrString) Network() string { return string(a) }
func (a addrString) String() string  { return string(a) }

// TestHugeHeaderBlockRefused: a stream's header block is read before the
// token can be checked, so it is bounded (64 KiB; gRPC's default is 16 MB):
// a 1 MiB block is refused without a gRPC answer.
func TestHugeHeaderBlockRefused(t *testing.T) {
	f := startFleetWith(t, newFakeAPI(), nil, ServerConfig{Token: testToken})
	raw, err := f.lis.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c := newH2Client(t, raw)
	defer c.close()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", fleetv1.FleetService_Connect_FullMethodName},
		{":authority", "x"}, {"content-type", "application/grpc"}, {"x-pad", strings.Repeat("p", 1<<20)}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	block := hb.Bytes()
	c.mu.Lock()
	err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:16384]})
	for off := 16384; err == nil && off < len(block); off += 16384 {
		end := min(off+16384, len(block))
		err = c.fr.WriteContinuation(1, end == len(block), block[off:end])
	}
	c.mu.Unlock()
	// The stream is reset or the connection closed (maybe before the whole
	// block was written): either way no stream began.
	c.waitFor("an answer to the 1 MiB header block", func() bool {
		if errors.Is(c.readErr, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
			c.ended[1] = "connection closed"
		}
		return c.ended[1] != ""
	})
	c.mu.Lock()
	end := c.ended[1]
	c.mu.Unlock()
	if strings.Contains(end, "grpc-status") {
		t.Fatalf("1 MiB header block: %q, want the stream reset or the connection closed", end)
	}
}

// TestServeAfterStopIsNoError: a coordinator stopped before its server
// began serving (a shutdown right at the start: Run stops the server when
// the coordinator's Run ends, which may come before the serving goroutine
// calls Serve) ends without an error and closes the listener. gRPC's
// ErrServerStopped made dragonfly coordinator and local exit with "grpc:
// grpc: the server has been stopped".
func TestServeAfterStopIsNoError(t *testing.T) {
	_, srv := insecureServer(t, newFakeAPI())
	ln := listen(t, "127.0.0.1:0")
	srv.Stop(0)
	if err := srv.Serve(ln); err != nil {
		t.Fatalf("Serve after Stop: %v, want nil", err)
	}
	if srv.Ready() {
		t.Fatal("ready after Stop")
	}
	if conn, err := ln.Accept(); err == nil {
		conn.Close()
		t.Fatal("the listener is still open")
	}
}
