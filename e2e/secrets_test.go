package e2e

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/internal/testkit"
)

// Secrets of the runs below: distinctive values that cannot appear by chance.
const (
	secCFID           = "sec-cf-id-7Hq2"
	secCFSecret       = "sec-cf-secret-Zw91Kp4Tx"
	secAuth0ID        = "sec-a0-client-id-3Jd8"
	secAuth0Secret    = "sec-a0-client-secret-Vb62Nr5Lq"
	secAuth0User      = "sec-user@example.com"
	secAuth0Password  = "sec-a0-password-Yc40Gm7Ws"
	secFleetToken     = "sec-fleet-token-Qe53Hu8Fz"
	secWrongToken     = "sec-wrong-token-Lk27Pd1Xa"
	secWrongCFSecret  = "sec-wrong-cf-secret-Ro85Tj2Bn"
	secWrongA0Secret  = "sec-wrong-a0-secret-Mf19Wc6Ey"
	secReleasesPerRun = 6
)

// secProxy forwards TCP connections to target and records every byte the
// target sends back: what the coordinator puts on the worker streams.
type secProxy struct {
	addr string
	down testkit.SyncBuffer
	ln   net.Listener
	wg   sync.WaitGroup
}

func startSecProxy(t *testing.T, target string) *secProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &secProxy{addr: ln.Addr().String(), ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				io.Copy(s, c)
				s.Close()
			}()
			go func() {
				defer p.wg.Done()
				io.Copy(io.MultiWriter(c, &p.down), s)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		// Connections end when the processes at both ends are killed, which
		// their own cleanups (registered earlier, run later) do; do not wait.
	})
	return p
}

// secAssertAbsent fails for every secret found in any of the texts.
func secAssertAbsent(t *testing.T, texts map[string]string, secrets ...string) {
	t.Helper()
	for where, text := range texts {
		if text == "" {
			t.Errorf("%s is empty: nothing was checked", where)
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				i := strings.Index(text, s)
				t.Errorf("%s contains the secret %q: ...%s...", where, s, text[max(0, i-200):min(len(text), i+len(s)+50)])
			}
		}
	}
}

// TestSecretsNeverLeak runs the fleet against an API that requires
// credentials (Cloudflare Access, then Auth0), with failing reports, a
// revoked token, a worker with a wrong fleet token and a coordinator with
// wrong credentials, and then greps everything the processes wrote and
// served (logs at debug level, /status.json, /status, /metrics, and every
// byte the coordinator sent to the workers) for each secret.
func TestSecretsNeverLeak(t *testing.T) {
	for _, mode := range []string{"cloudflare", "auth0"} {
		t.Run(mode, func(t *testing.T) { secRun(t, mode) })
	}
}

func secRun(t *testing.T, mode string) {
	devArgs := []string{"--auth", mode, "--report-error-rate", "0.34"}
	creds := map[string]string{}
	wrong := map[string]string{}
	var wrongSecret string
	switch mode {
	case "cloudflare":
		devArgs = append(devArgs, "--cf-access-client-id", secCFID, "--cf-access-client-secret", secCFSecret)
		creds["DRAGONFLY_CF_ACCESS_CLIENT_ID"] = secCFID
		creds["DRAGONFLY_CF_ACCESS_CLIENT_SECRET"] = secCFSecret
		wrong["DRAGONFLY_CF_ACCESS_CLIENT_ID"] = secCFID
		wrong["DRAGONFLY_CF_ACCESS_CLIENT_SECRET"] = secWrongCFSecret
		wrongSecret = secWrongCFSecret
	case "auth0":
		devArgs = append(devArgs, "--auth0-client-id", secAuth0ID, "--auth0-client-secret", secAuth0Secret,
			"--auth0-username", secAuth0User, "--auth0-password", secAuth0Password)
	}
	d, _ := serveReleases(t, writeReleases(t, secReleasesPerRun, 3, 2000), e2eRules, devArgs...)
	if mode == "auth0" {
		for k, v := range map[string]string{
			"DRAGONFLY_CLIENT_ID": secAuth0ID, "DRAGONFLY_CLIENT_SECRET": secAuth0Secret,
			"DRAGONFLY_USERNAME": secAuth0User, "DRAGONFLY_PASSWORD": secAuth0Password,
			"DRAGONFLY_TOKEN_URL": d.url + "/oauth/token",
		} {
			creds[k] = v
			wrong[k] = v
		}
		wrong["DRAGONFLY_CLIENT_SECRET"] = secWrongA0Secret
		wrongSecret = secWrongA0Secret
	}
	creds["DRAGONFLY_FLEET_TOKEN"] = secFleetToken
	coord, grpcAddr, httpAddr := startCoordinator(t, d, creds)
	proxy := startSecProxy(t, grpcAddr)

	// Workers get the coordinator's address and the fleet token, nothing
	// of the API (startWorker adds only the address, allowed hosts,
	// threads, id and log level): they must work without it.
	workerEnv := map[string]string{"DRAGONFLY_FLEET_TOKEN": secFleetToken}
	w1 := startWorker(t, d, "sec-w1", proxy.addr, workerEnv)
	w2 := startWorker(t, d, "sec-w2", proxy.addr, workerEnv)
	intruder := startWorker(t, d, "sec-intruder", proxy.addr, map[string]string{"DRAGONFLY_FLEET_TOKEN": secWrongToken})

	eventually(t, 90*time.Second, "every release reported", func() bool {
		s := d.stats(t)
		return s.ReportsAccepted >= secReleasesPerRun
	})
	eventually(t, 30*time.Second, "the coordinator to refuse the intruder", func() bool {
		return coord.logged("worker refused", "invalid fleet token") && intruder.logged("Unauthenticated")
	})
	eventually(t, 30*time.Second, "a failed report to be retried", func() bool {
		return coord.logged("api call failed; retrying", "PUT /package")
	})
	if mode == "auth0" {
		// Revoke every token: the coordinator's next call is refused and
		// it fetches a new token.
		d.setFaults(t, `{"revoke_tokens":true}`)
		eventually(t, 30*time.Second, "the coordinator to refresh its revoked token", func() bool {
			return coord.logged("api refused the token; refreshing it")
		})
	}
	// A coordinator with a wrong API secret fails its calls and says so.
	wrong["DRAGONFLY_FLEET_TOKEN"] = secFleetToken
	bad, _, badHTTP := startCoordinator(t, d, wrong)
	eventually(t, 60*time.Second, "the coordinator with wrong credentials to log its failure", func() bool {
		return bad.logged("cannot load rules; retrying") || bad.logged("lease failed; retrying after the load duration")
	})
	d.exactlyOnce(t, secReleasesPerRun)

	texts := map[string]string{
		"coordinator log":                   coord.log.String(),
		"coordinator /status.json":          testkit.Get(t, "http://"+httpAddr+"/status.json"),
		"coordinator /status":               testkit.Get(t, "http://"+httpAddr+"/status"),
		"coordinator /metrics":              testkit.Get(t, "http://"+httpAddr+"/metrics"),
		"wrong-credentials coordinator log": bad.log.String(),
		"wrong-credentials /status.json":    testkit.Get(t, "http://"+badHTTP+"/status.json"),
		"worker sec-w1 log":                 w1.log.String(),
		"worker sec-w2 log":                 w2.log.String(),
		"intruder worker log":               intruder.log.String(),
		"coordinator to worker stream":      proxy.down.String(),
	}
	apiSecrets := []string{secCFSecret, secAuth0Secret, secAuth0Password, secWrongCFSecret, secWrongA0Secret}
	secAssertAbsent(t, texts, append(apiSecrets, secFleetToken, secWrongToken)...)
	// The API client ids are not secret, but workers have no business
	// with them either.
	secAssertAbsent(t, map[string]string{"worker sec-w1 log": w1.log.String(), "worker sec-w2 log": w2.log.String(), "coordinator to worker stream": proxy.down.String()}, secCFID, secAuth0ID, secAuth0User)
	// Debug lines ("distribution scanned") come from the worker that scanned;
	// one of the two may have scanned everything.
	if !w1.logged(`"level":"DEBUG"`) && !w2.logged(`"level":"DEBUG"`) {
		t.Errorf("no worker log has debug lines: the check ran on less than everything")
	}
	if !strings.Contains(proxy.down.String(), "e2e_exec_b64") {
		t.Errorf("the recorded stream holds no rule source: the proxy did not see the session")
	}
	t.Logf("%s: %d releases reported; checked %d texts (%d bytes of stream) for %d secrets; wrong secret %q absent",
		mode, secReleasesPerRun, len(texts), len(proxy.down.String()), len(apiSecrets)+2, wrongSecret)
}
