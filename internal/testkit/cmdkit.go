package testkit

// What the tests of the commands, the deployment and the end-to-end runs
// share with the packages' tests: a certificate authority for TLS tests, a
// GET that must succeed, and a file written into a test's directory.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
)

// CA is a certificate authority for tests: an ECDSA P-256 key and a
// self-signed CA certificate, valid from an hour ago for a day.
type CA struct {
	Cert *x509.Certificate
	// PEM is Cert PEM-encoded (what a CA file such as DRAGONFLY_TLS_CA holds).
	PEM    []byte
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewCA returns a new certificate authority named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{key: key}
	tmpl := ca.template(pkix.Name{CommonName: name})
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	var der []byte
	if ca.Cert, der, err = ca.sign(tmpl, tmpl, &key.PublicKey); err != nil {
		t.Fatal(err)
	}
	ca.PEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca
}

// template is a certificate for subject with the CA's validity and the next
// serial number.
func (ca *CA) template(subject pkix.Name) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)), Subject: subject,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
	}
}

// sign creates the certificate tmpl for the key pub, issued by parent and
// signed with the CA's key.
func (ca *CA) sign(tmpl, parent *x509.Certificate, pub any) (*x509.Certificate, []byte, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, ca.key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, der, err
}

// Pool returns a pool that trusts the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Leaf is a certificate a CA issued, with its key.
type Leaf struct {
	// TLS is the certificate and key for tls.Config.Certificates.
	TLS tls.Certificate
	// CertPEM is the certificate and KeyPEM its key (PKCS #8), PEM-encoded.
	CertPEM, KeyPEM []byte
	ca              *CA
}

// Issue returns a certificate for the common name cn and the DNS names,
// for usage (x509.ExtKeyUsageServerAuth for a server, ClientAuth for a
// client), signed by the CA.
func (ca *CA) Issue(t testing.TB, cn string, usage x509.ExtKeyUsage, dnsNames ...string) Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := ca.template(pkix.Name{CommonName: cn})
	tmpl.DNSNames, tmpl.KeyUsage, tmpl.ExtKeyUsage = dnsNames, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{usage}
	cert, der, err := ca.sign(tmpl, ca.Cert, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Leaf{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		ca:      ca,
	}
}

// PEMFiles are the paths of a leaf's PEM files: its issuer's certificate,
// its certificate and its key.
type PEMFiles struct{ CA, Cert, Key string }

// WriteFiles writes the issuer's certificate, the leaf's certificate and its
// key into dir as prefix+"ca.pem", prefix+"cert.pem" and prefix+"key.pem"
// (mode 0600) and returns their paths.
func (l Leaf) WriteFiles(t testing.TB, dir, prefix string) PEMFiles {
	t.Helper()
	f := PEMFiles{CA: filepath.Join(dir, prefix+"ca.pem"), Cert: filepath.Join(dir, prefix+"cert.pem"), Key: filepath.Join(dir, prefix+"key.pem")}
	for path, data := range map[string][]byte{f.CA: l.ca.PEM, f.Cert: l.CertPEM, f.Key: l.KeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Get returns the body of GET url; the test fails unless the answer is 200.
func Get(t testing.TB, url string) string {
	t.Helper()
	body, _ := GetTyped(t, url)
	return body
}

// GetTyped is Get that also returns the answer's Content-Type.
func GetTyped(t testing.TB, url string) (body, contentType string) {
	t.Helper()
	body, contentType, err := get(url)
	if err != nil {
		t.Fatal(err)
	}
	return body, contentType
}

// get reads GET url whole: an answer other than 200 is an error that quotes
// the start of its body.
func get(url string) (body, contentType string, err error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, clip.String(string(b), 4<<10))
	}
	return string(b), resp.Header.Get("Content-Type"), err
}

// WriteFile writes body to dir/name (mode 0644) and returns the path.
func WriteFile(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
