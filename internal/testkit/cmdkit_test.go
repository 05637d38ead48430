package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// TestCAIssue: a server certificate verifies against the CA's pool for its
// DNS name and not for another; its PEM files load as a key pair and a CA.
func TestCAIssue(t *testing.T) {
	ca := NewCA(t, "test CA")
	leaf := ca.Issue(t, "server", x509.ExtKeyUsageServerAuth, "server.test")
	opts := x509.VerifyOptions{Roots: ca.Pool(), DNSName: "server.test", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := leaf.TLS.Leaf.Verify(opts); err != nil {
		t.Fatalf("verify: %v", err)
	}
	opts.DNSName = "other.test"
	if _, err := leaf.TLS.Leaf.Verify(opts); err == nil {
		t.Fatal("verified for a name it does not hold")
	}
	if _, err := NewCA(t, "another CA").Issue(t, "x", x509.ExtKeyUsageServerAuth, "server.test").TLS.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "server.test"}); err == nil {
		t.Fatal("verified a certificate of another CA")
	}
	f := leaf.WriteFiles(t, t.TempDir(), "s-")
	if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
		t.Fatalf("load key pair: %v", err)
	}
	if p := x509.NewCertPool(); !p.AppendCertsFromPEM(ca.PEM) {
		t.Fatal("CA PEM holds no certificate")
	}
	if leaf2 := ca.Issue(t, "client", x509.ExtKeyUsageClientAuth); leaf2.TLS.Leaf.SerialNumber.Cmp(leaf.TLS.Leaf.SerialNumber) == 0 {
		t.Fatal("two certificates of one CA share a serial number")
	}
}

// TestGet: the body and type of a 200 answer; any other status fails the
// test.
func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.Error(w, "nope", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("fine"))
	}))
	defer srv.Close()
	if body, ct := GetTyped(t, srv.URL+"/ok"); body != "fine" || ct != "text/plain" {
		t.Errorf("GetTyped = %q, %q", body, ct)
	}
	ft := &fatalT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Get(ft, srv.URL+"/missing")
	}()
	<-done
	if !ft.failed {
		t.Error("a 404 did not fail the test")
	}
}

// fatalT records Fatal instead of ending the test; Fatal ends only the
// goroutine that calls it.
type fatalT struct {
	testing.TB
	failed bool
}

func (f *fatalT) Helper() {}

func (f *fatalT) Fatalf(string, ...any) { f.failed = true; runtime.Goexit() }

func (f *fatalT) Fatal(...any) { f.failed = true; runtime.Goexit() }
