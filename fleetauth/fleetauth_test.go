package fleetauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	fleetv1 "github.com/dragonfly-fleet/fleet/gen/dragonfly/fleet/v1"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// serve starts a fleet service that refuses nothing but is unimplemented:
// a call that passes authentication fails with Unimplemented.
func serve(t *testing.T, token string, opts ...grpc.ServerOption) *bufconn.Listener {
	t.Helper()
	lis := bufconn.Listen(1 << 16)
	opts = append(opts, grpc.StreamInterceptor(auth.StreamServerInterceptor(CheckToken(token))))
	s := grpc.NewServer(opts...)
	fleetv1.RegisterFleetServiceServer(s, fleetv1.UnimplementedFleetServiceServer{})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis
}

// call opens a session and returns the status code of its first receive.
func call(t *testing.T, lis *bufconn.Listener, opts ...grpc.DialOption) codes.Code {
	t.Helper()
	opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	conn, err := grpc.NewClient("passthrough:///fleet.test", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := fleetv1.NewFleetServiceClient(conn).Connect(ctx)
	if err != nil {
		return status.Code(err)
	}
	_, err = stream.Recv()
	return status.Code(err)
}

// TestCheckTokenText: printable ASCII passes (space and tilde are the
// bounds); a control byte, DEL or a non-ASCII byte is named by value and
// offset, and the token itself is never in the error.
func TestCheckTokenText(t *testing.T) {
	for _, ok := range []string{"", "0123456789abcdef", " !~", "a b"} {
		if err := CheckTokenText(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for token, want := range map[string]string{
		"s3cret-token\n":    "byte 0x0a at offset 12",
		"s3cret-token\r":    "byte 0x0d at offset 12",
		"\ts3cret-token":    "byte 0x09 at offset 0",
		"s3cret\x7f-token":  "byte 0x7f at offset 6",
		"s3cret-tok\u00e9n": "byte 0xc3 at offset 10",
	} {
		err := CheckTokenText(token)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: err %v, want %q and no token", token, err, want)
		}
	}
}

func TestFleetToken(t *testing.T) {
	lis := serve(t, "s3cret")
	plain := grpc.WithTransportCredentials(insecure.NewCredentials())
	cases := []struct {
		name string
		opts []grpc.DialOption
		want codes.Code
	}{
		{"no token", []grpc.DialOption{plain}, codes.Unauthenticated},
		{"wrong token", []grpc.DialOption{plain, grpc.WithPerRPCCredentials(Token{Value: "guess", AllowInsecure: true})}, codes.Unauthenticated},
		{"prefix of the token", []grpc.DialOption{plain, grpc.WithPerRPCCredentials(Token{Value: "s3cre", AllowInsecure: true})}, codes.Unauthenticated},
		{"the token with bytes after it", []grpc.DialOption{plain, grpc.WithPerRPCCredentials(Token{Value: "s3cretX", AllowInsecure: true})}, codes.Unauthenticated},
		{"right token", []grpc.DialOption{plain, grpc.WithPerRPCCredentials(Token{Value: "s3cret", AllowInsecure: true})}, codes.Unimplemented},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := call(t, lis, tc.opts...); got != tc.want {
				t.Fatalf("code = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRefusalDoesNotEchoToken(t *testing.T) {
	_, err := CheckToken("s3cret")(context.Background())
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no metadata: %v", err)
	}
	if got := status.Convert(err).Message(); got != "missing fleet token" {
		t.Fatalf("message %q", got)
	}
}

func TestTokenRequiresTLSUnlessAllowed(t *testing.T) {
	if !(Token{Value: "x"}).RequireTransportSecurity() {
		t.Fatal("token allowed over plaintext by default")
	}
	if (Token{Value: "x", AllowInsecure: true}).RequireTransportSecurity() {
		t.Fatal("AllowInsecure ignored")
	}
}

// pki writes a CA, a server certificate for fleet.test and a client
// certificate signed by the CA, as PEM files.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T, dir, prefix string) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: prefix + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, prefix+"-"+name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			DNSNames: []string{"fleet.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := pki{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	good := newPKI(t, dir, "fleet")
	other := newPKI(t, dir, "other")
	serverCreds, err := ServerCredentials(TLSFiles{Cert: good.serverCert, Key: good.serverKey, CA: good.ca})
	if err != nil {
		t.Fatal(err)
	}
	lis := serve(t, "tok", grpc.Creds(serverCreds))
	client := func(f TLSFiles) grpc.DialOption {
		c, err := ClientCredentials(f, "fleet.test")
		if err != nil {
			t.Fatal(err)
		}
		return grpc.WithTransportCredentials(c)
	}
	tok := grpc.WithPerRPCCredentials(Token{Value: "tok"})
	cases := []struct {
		name string
		opts []grpc.DialOption
		want codes.Code
	}{
		{"valid client certificate", []grpc.DialOption{client(TLSFiles{CA: good.ca, Cert: good.clientCert, Key: good.clientKey}), tok}, codes.Unimplemented},
		{"no client certificate", []grpc.DialOption{client(TLSFiles{CA: good.ca}), tok}, codes.Unavailable},
		{"certificate from another CA", []grpc.DialOption{client(TLSFiles{CA: good.ca, Cert: other.clientCert, Key: other.clientKey}), tok}, codes.Unavailable},
		{"server not trusted", []grpc.DialOption{client(TLSFiles{CA: other.ca, Cert: good.clientCert, Key: good.clientKey}), tok}, codes.Unavailable},
		{"valid certificate, wrong token", []grpc.DialOption{client(TLSFiles{CA: good.ca, Cert: good.clientCert, Key: good.clientKey}), grpc.WithPerRPCCredentials(Token{Value: "nope"})}, codes.Unauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := call(t, lis, tc.opts...); got != tc.want {
				t.Fatalf("code = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestServerTLSNeedsCertAndKey(t *testing.T) {
	if _, err := ServerCredentials(TLSFiles{CA: "ca.pem"}); err == nil {
		t.Fatal("server TLS without a certificate accepted")
	}
}

func TestTLSOnWithoutFiles(t *testing.T) {
	if (TLSFiles{}).Enabled() {
		t.Fatal("no files, not asked: TLS on")
	}
	if !(TLSFiles{On: true}).Enabled() {
		t.Fatal("asked for TLS without files: off")
	}
	creds, err := ClientCredentials(TLSFiles{On: true}, "coordinator.example")
	if err != nil || creds.Info().SecurityProtocol != "tls" {
		t.Fatalf("client credentials with the system roots: %v %v", creds, err)
	}
}

// TestTLSFilesBounded: every TLS file (CA, certificate, key) is read with a
// bound and must be a regular file: a huge file is refused (not read
// whole), and a FIFO is refused at once instead of hanging the start.
func TestTLSFilesBounded(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "fleet")
	pad := func(name, src string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		// Valid PEM followed by text the PEM reader skips: read whole, it
		// loads.
		data = append(data, bytes.Repeat([]byte("# padding\n"), MaxPEMFile/10+1)...)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	bigCA, bigCert, bigKey := pad("bigca.pem", p.ca), pad("bigcert.pem", p.serverCert), pad("bigkey.pem", p.serverKey)
	for name, f := range map[string]TLSFiles{
		"huge CA":          {Cert: p.serverCert, Key: p.serverKey, CA: bigCA},
		"huge certificate": {Cert: bigCert, Key: p.serverKey},
		"huge key":         {Cert: p.serverCert, Key: bigKey},
	} {
		if _, err := ServerCredentials(f); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("server, %s: err = %v, want a refusal", name, err)
		}
		if _, err := ClientCredentials(f, "fleet.test"); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("client, %s: err = %v, want a refusal", name, err)
		}
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	err := testkit.NoHang(t, fifo, func() error {
		_, err := ServerCredentials(TLSFiles{Cert: p.serverCert, Key: fifo})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO key: err = %v, want a refusal", err)
	}
}
