package compose

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/coordinator/status"
	"github.com/dragonfly-fleet/fleet/devapi"
	"github.com/dragonfly-fleet/fleet/internal/testkit"
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
	dc.downAtCleanup()
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
	ca := testkit.NewCA(t, "dragonfly fleet test CA")
	leaf := ca.Issue(t, "coordinator", x509.ExtKeyUsageServerAuth, "coordinator")
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"fleet_token": []byte(hex.EncodeToString(token) + "\n"),
		"tls_ca":      ca.PEM,
		"tls_cert":    leaf.CertPEM,
		"tls_key":     leaf.KeyPEM,
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

// TestProductionSecrets checks the secrets directory without Docker: the
// coordinator's certificate and key pair up and verify for "coordinator"
// against tls_ca, the token is 64 hex digits, and every file is read-only
// for everyone (the containers run as another user).
func TestProductionSecrets(t *testing.T) {
	dir := productionSecrets(t)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls_cert"), filepath.Join(dir, "tls_key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls_ca"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("tls_ca holds no certificate")
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "coordinator"}); err != nil {
		t.Errorf("the coordinator's certificate does not verify: %v", err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "fleet_token"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := hex.DecodeString(strings.TrimSuffix(string(token), "\n")); err != nil || len(b) != 32 {
		t.Errorf("fleet_token %q: want 32 bytes in hex", token)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o444 {
			t.Errorf("%s: mode %v, want 0444", e.Name(), fi.Mode().Perm())
		}
	}
	if len(entries) != 11 {
		t.Errorf("%d files, want 11 (token, TLS files, 7 empty credentials)", len(entries))
	}
}
