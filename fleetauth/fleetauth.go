// Package fleetauth secures the fleet's gRPC stream: a shared fleet token sent
// as a per-RPC bearer credential and checked in constant time, and TLS or
// mutual TLS from PEM files.
package fleetauth

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"

	"github.com/dragonfly-fleet/fleet/internal/bound"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// TLSFiles names PEM files. All empty means plaintext.
type TLSFiles struct {
	// Cert and Key are this side's certificate and key (DRAGONFLY_TLS_CERT,
	// DRAGONFLY_TLS_KEY). Required on a TLS server; on a worker they are the
	// client certificate for mutual TLS.
	Cert, Key string
	// CA verifies the other side (DRAGONFLY_TLS_CA). On the coordinator, a CA
	// turns on mutual TLS: workers must present a certificate it signed. On a
	// worker, it verifies the coordinator (default: the system roots).
	CA string
	// On turns TLS on without any file (DRAGONFLY_TLS): a worker then
	// verifies the coordinator with the system roots.
	On bool
}

// Enabled reports whether TLS is on: asked for, or any TLS file set.
func (f TLSFiles) Enabled() bool { return f.On || f.Cert != "" || f.Key != "" || f.CA != "" }

// MaxPEMFile bounds each TLS file read: a system CA bundle is a few hundred
// KiB.
const MaxPEMFile = 4 << 20

// readPEM reads a TLS file whole: a regular file (a FIFO is refused, not
// waited on) of at most MaxPEMFile bytes (/dev/zero or a huge file is
// refused, not read into memory).
func readPEM(path string) ([]byte, error) {
	data, err := bound.ReadFile(path, MaxPEMFile, bound.Regular)
	var pe *fs.PathError
	if err != nil && !errors.As(err, &pe) {
		// A PathError names the path already.
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, err
}

// LoadKeyPair is tls.LoadX509KeyPair with readPEM's bounds.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readPEM(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readPEM(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := readPEM(path)
	if err != nil {
		return nil, fmt.Errorf("tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls ca %s: no PEM certificates", path)
	}
	return pool, nil
}

// ServerCredentials builds the coordinator's transport credentials.
func ServerCredentials(f TLSFiles) (credentials.TransportCredentials, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("tls: a server needs both DRAGONFLY_TLS_CERT and DRAGONFLY_TLS_KEY")
	}
	cert, err := LoadKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pool, err := loadPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}

// ClientCredentials builds a worker's transport credentials. serverName
// overrides the name checked in the coordinator's certificate (empty: the
// host of the address).
func ClientCredentials(f TLSFiles, serverName string) (credentials.TransportCredentials, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if f.CA != "" {
		pool, err := loadPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" || f.Key != "" {
		cert, err := LoadKeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// MinTokenBytes is the shortest fleet token a coordinator accepts: a shorter
// one can be guessed. `openssl rand -hex 32` makes a good one.
const MinTokenBytes = 16

// CheckTokenText refuses a fleet token that gRPC cannot carry: metadata
// values are printable ASCII (0x20 to 0x7e), and a worker sending any other
// byte fails every connection with an Internal error before the
// coordinator sees it, while the coordinator, its token accepted, reports
// ready. A secrets file loses one trailing newline (CRLF included); a
// second one, a lone CR or a non-ASCII rune stays in the token. The error
// names the byte and its offset, never the token.
func CheckTokenText(token string) error {
	for i := 0; i < len(token); i++ {
		if b := token[i]; b < 0x20 || b > 0x7e {
			return fmt.Errorf("the fleet token (DRAGONFLY_FLEET_TOKEN) holds byte %#02x at offset %d of %d: gRPC sends only printable ASCII (check its secrets file for a second trailing newline or a CR; openssl rand -hex 32 makes a good token)", b, i, len(token))
		}
	}
	return nil
}

// LoopbackHost reports whether host (a name or an IP address, without port
// or brackets) is loopback: "localhost", 127.0.0.0/8 or ::1. A secret goes
// over plaintext only to such a host without an explicit opt-in.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Token is a per-RPC credential carrying the fleet token as a bearer token.
type Token struct {
	Value string
	// AllowInsecure permits sending the token over a plaintext connection.
	AllowInsecure bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t Token) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.Value}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (t Token) RequireTransportSecurity() bool { return !t.AllowInsecure }

// CheckToken returns an auth function for the go-grpc-middleware auth
// interceptor that accepts exactly the bearer token want. An empty want
// accepts every caller (insecure mode). Refusals never echo the token.
func CheckToken(want string) auth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		if want == "" {
			return ctx, nil
		}
		got, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, "missing fleet token")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			return nil, status.Error(codes.Unauthenticated, "invalid fleet token")
		}
		return ctx, nil
	}
}
