package compose

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/devapi"
)

// tlsReleases are the synthetic releases of the production-settings run.
const tlsReleases = 40

// TestComposeProductionTLS runs the compose file with the production
// settings of .env.example (against the devapi): secrets from a directory of
// files, TLS on gRPC with a certificate for "coordinator", and no plaintext
// token (DRAGONFLY_FLEET_INSECURE empty). A worker that could not verify the
// coordinator, or that fell back to plaintext, would never connect; every
// release reported proves the secure path works end to end.
func TestComposeProductionTLS(t *testing.T) {
	if os.Getenv("DRAGONFLY_COMPOSE_TEST") != "1" {
		t.Skip("set DRAGONFLY_COMPOSE_TEST=1 to build the image and run the compose fleet (needs Docker)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	secrets := productionSecrets(t)
	dc := newCompose(t, root, "", map[string]string{
		"DRAGONFLY_BUILDER_IMAGE":    builderImage(ctx, t, root),
		"DRAGONFLY_REVISION":         gitRevision(ctx, t, root),
		"DRAGONFLY_DEVAPI_SYNTHETIC": strconv.Itoa(tlsReleases),
		"DRAGONFLY_DEVAPI_PORT":      "",
		"DRAGONFLY_METRICS_PORT":     "",
		"DRAGONFLY_LOAD_DURATION":    "1s",
		"DRAGONFLY_SECRETS_DIR":      secrets,
		"DRAGONFLY_TLS_CERT":         "/run/secrets/tls_cert",
		"DRAGONFLY_TLS_KEY":          "/run/secrets/tls_key",
		"DRAGONFLY_TLS_CA":           "/run/secrets/tls_ca",
		"DRAGONFLY_FLEET_INSECURE":   "",
	})
	if !imageBuilt { // run alone: build the image from this checkout
		dc.must(ctx, "build", "coordinator")
		imageBuilt = true
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		if t.Failed() {
			if out, err := dc.run(cctx, "logs", "--no-color", "--tail", "60"); err == nil {
				t.Logf("compose logs (last 60 lines per container):\n%s", out)
			}
		}
		if out, err := dc.run(cctx, "down", "--volumes", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	dc.must(ctx, "up", "--detach", "--no-build", "--scale", "worker=2")
	api := devapiClient{base: "http://" + published(ctx, t, dc, "devapi", 8000), http: &http.Client{Timeout: 10 * time.Second}}
	coord := devapiClient{base: "http://" + published(ctx, t, dc, "coordinator", coordinatorHTTP), http: api.http}

	var stats devapi.Stats
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case <-deadline:
			t.Fatalf("not every job reported within 3 minutes over TLS: %+v", stats)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-ticker.C:
		}
		if err := api.get(ctx, "/_dev/stats", &stats); err != nil {
			t.Fatalf("devapi stats: %v", err)
		}
		if done := int(stats.Finished + stats.Failed); done >= tlsReleases && stats.Queue.TotalBacklog == 0 {
			break
		}
	}
	var doc status.Document
	if err := coord.get(ctx, "/status.json", &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Workers) != 2 {
		t.Errorf("%d workers connected over TLS, want 2", len(doc.Workers))
	}
	if stats.Status409 != 0 || doc.Fleet.ReportsConflicted != 0 {
		t.Errorf("conflicts: devapi %d, coordinator %d", stats.Status409, doc.Fleet.ReportsConflicted)
	}
	checkHealthy(ctx, t, dc, "")
	t.Logf("%d releases reported by 2 workers over TLS in %.1fs", stats.Finished+stats.Failed, time.Since(start).Seconds())
}

// productionSecrets writes the secrets directory of .env.example: a random
// fleet token, a CA and a coordinator certificate for "coordinator", and
// empty files for the unused credentials. It returns the directory.
func productionSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dragonfly fleet test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "coordinator"},
		DNSNames: []string{"coordinator"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"fleet_token": []byte(hex.EncodeToString(token) + "\n"),
		"tls_ca":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"tls_cert":    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		"tls_key":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for _, empty := range []string{"status_token", "cf_access_client_id", "cf_access_client_secret", "client_id", "client_secret", "username", "password"} {
		files[empty] = nil
	}
	for name, data := range files {
		// Readable by the containers' user 65532, as .env.example says.
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
