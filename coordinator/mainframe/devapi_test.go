package mainframe

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dragonfly-fleet/fleet/devapi"
)

// These tests run the client against the development server (package
// devapi) in process: through hostTransport inside a synctest bubble, or over
// loopback TCP.

func devFiles() []devapi.File {
	return []devapi.File{
		{Name: "alpha-1.0.tar.gz", Data: []byte("alpha sdist")},
		{Name: "alpha-1.0-py3-none-any.whl", Data: []byte("alpha wheel")},
		{Name: "beta-2.0.tar.gz", Data: []byte("beta sdist")},
		{Name: "gamma-0.1.tar.gz", Data: []byte("gamma sdist")},
	}
}

func newDevapi(t *testing.T, cfg devapi.Config) *devapi.Server {
	t.Helper()
	if cfg.Rules == nil {
		cfg.Rules = map[string]string{"demo": "rule demo { condition: false }"}
	}
	srv, err := devapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// devClient connects a client to srv in process (for synctest bubbles).
func devClient(t *testing.T, srv *devapi.Server, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: "http://" + apiHost, UserAgent: "dragonfly-fleet/test", Transport: &hostTransport{hosts: map[string]http.Handler{apiHost: srv.Handler()}}}
	if mod != nil {
		mod(&cfg)
	}
	return mustNew(t, cfg)
}

func TestDevapiLeaseAndReport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newDevapi(t, devapi.Config{Files: devFiles()})
		c := devClient(t, srv, nil)
		ctx := t.Context()

		jobs, err := c.Lease(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 3 {
			t.Fatalf("leased %d jobs, want 3", len(jobs))
		}
		alpha, beta, gamma := jobs[0], jobs[1], jobs[2]
		if alpha.Name != "alpha" || len(alpha.Distributions) != 2 || !strings.HasPrefix(alpha.Distributions[0], "http://"+apiHost+"/packages/") {
			t.Errorf("alpha = %+v", alpha)
		}
		for _, j := range jobs {
			if j.Attempt == nil || *j.Attempt != 1 || j.AssignmentID == nil || j.Hash != srv.RulesHash() {
				t.Errorf("job %s: attempt %v assignment %v hash %q", j.Name, j.Attempt, j.AssignmentID, j.Hash)
			}
		}
		if more, err := c.Lease(ctx, 10); err != nil || more == nil || len(more) != 0 {
			t.Fatalf("empty queue: %#v, %v", more, err)
		}

		report := func(j Job) Report {
			return Report{Name: j.Name, Version: j.Version, Attempt: j.Attempt, AssignmentID: j.AssignmentID}
		}
		ok := report(alpha)
		ok.Success = &Success{Score: 0, Commit: alpha.Hash}
		if err := c.Report(ctx, ok); err != nil {
			t.Fatalf("success report: %v", err)
		}
		fail := report(beta)
		fail.Reason = "download beta-2.0.tar.gz: 404 Not Found"
		if err := c.Report(ctx, fail); err != nil {
			t.Fatalf("failure report: %v", err)
		}

		badUUID := report(gamma)
		badUUID.AssignmentID = ptr("not-a-uuid")
		badUUID.Reason = "x"
		stale := report(gamma)
		stale.AssignmentID = ptr("6f1d3c8e-0000-4000-8000-000000000000")
		stale.Reason = "x"
		for _, tc := range []struct {
			name   string
			r      Report
			status int
		}{
			{"already finished", ok, 409},
			{"not assigned to this lease", stale, 409},
			{"unknown release", Report{Name: "nope", Version: "1", Reason: "x"}, 404},
			{"invalid assignment id", badUUID, 422},
		} {
			e := apiErr(t, c.Report(ctx, tc.r))
			if e.Status != tc.status || !e.Final() || e.Conflict() != (tc.status == 409) || e.NotFound() != (tc.status == 404) || e.Detail == "" {
				t.Errorf("%s: %v", tc.name, e)
			}
			if tc.status == 422 && (!strings.Contains(e.Body, `"uuid_parsing"`) || !strings.Contains(e.Detail, "body.PackageScanResultFail.assignment_id")) {
				t.Errorf("422 body %q detail %q", e.Body, e.Detail)
			}
		}
		// As the real server: a failed scan stays open to the lease that
		// failed it, so the same report again is accepted (not a 409).
		if err := c.Report(ctx, fail); err != nil {
			t.Errorf("failure reported again under its lease: %v", err)
		}
		ok = report(gamma)
		ok.Success = &Success{Score: 7, InspectorURL: ptr("https://inspector.pypi.io/project/gamma/0.1/packages/x/gamma-0.1.tar.gz/gamma-0.1/setup.py"), RulesMatched: []string{"demo", "demo"}, Commit: gamma.Hash}
		if err := c.Report(ctx, ok); err != nil {
			t.Fatalf("report under the standing lease: %v", err)
		}

		recs := srv.Reports()
		last := recs[len(recs)-1]
		if last.Status != 200 || last.Kind != "success" || last.Score == nil || *last.Score != 7 || len(last.RulesMatched) != 1 || last.Commit != gamma.Hash {
			t.Errorf("server recorded %+v", last)
		}
		st := srv.Stats()
		if st.Finished != 2 || st.Failed != 2 || st.Status409 != 2 || st.Status404 != 1 || st.Status422 != 1 {
			t.Errorf("server stats %+v", st)
		}

		m, err := c.Metadata(ctx)
		if err != nil || m.RulesCommit != srv.RulesHash() {
			t.Errorf("metadata %+v, %v", m, err)
		}
		q, err := c.QueueStatus(ctx)
		if err != nil || q.TotalBacklog != 0 || q.OldestAgeSeconds == nil || string(q.Fields["finished"]) != "2" {
			t.Errorf("queue status %+v, %v", q, err)
		}
		rs, err := c.Rules(ctx)
		if err != nil || rs.Hash != srv.RulesHash() || !strings.Contains(rs.Rules["demo"], "rule demo") {
			t.Errorf("rules %+v, %v", rs, err)
		}
	})
}

func TestDevapiStaleAndDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newDevapi(t, devapi.Config{Files: devFiles()[2:3]}) // beta only
		c := devClient(t, srv, nil)
		ctx := t.Context()
		var leases []Job
		for i := 1; i <= 3; i++ {
			jobs, err := c.Lease(ctx, 1)
			if err != nil || len(jobs) != 1 || *jobs[0].Attempt != i {
				t.Fatalf("lease %d: %+v, %v", i, jobs, err)
			}
			leases = append(leases, jobs[0])
			time.Sleep(121 * time.Second) // the lease expires
		}
		// The next lease call dead-letters the job.
		if jobs, err := c.Lease(ctx, 1); err != nil || len(jobs) != 0 {
			t.Fatalf("lease after the last attempt: %+v, %v", jobs, err)
		}
		if *leases[0].AssignmentID == *leases[1].AssignmentID {
			t.Fatal("re-lease kept the assignment id")
		}
		for i, j := range leases {
			e := apiErr(t, c.Report(ctx, Report{Name: j.Name, Version: j.Version, Attempt: j.Attempt, AssignmentID: j.AssignmentID, Success: &Success{Commit: j.Hash}}))
			if !e.Conflict() || !e.Final() {
				t.Errorf("report under lease %d: %v", i+1, e)
			}
		}
		if st := srv.Stats(); st.DeadLettered != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestDevapiAuth0(t *testing.T) {
	dev := devapi.Config{Files: devFiles(), Auth: devapi.AuthAuth0, Auth0ClientID: "cid", Auth0ClientSecret: "csecret",
		Auth0Username: "user", Auth0Password: "pw", Auth0Audience: DefaultAudience, TokenLifetime: 5 * time.Minute}
	for _, grant := range []string{GrantPassword, GrantClientCredentials} {
		t.Run(grant, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newDevapi(t, dev)
				var refreshes atomic.Int32
				c := devClient(t, srv, func(c *Config) {
					c.Auth = Auth{TokenURL: "http://" + apiHost + "/oauth/token", GrantType: grant, ClientID: "cid", ClientSecret: "csecret"}
					if grant == GrantPassword {
						c.Auth.Username, c.Auth.Password = "user", "pw"
					}
					c.Observer.TokenRefresh = func(err error) {
						if err != nil {
							t.Errorf("token refresh: %v", err)
						}
						refreshes.Add(1)
					}
				})
				ctx := t.Context()
				if _, err := c.Lease(ctx, 1); err != nil {
					t.Fatal(err)
				}
				time.Sleep(250 * time.Second) // within the 60 s margin of the 300 s token
				if _, err := c.Lease(ctx, 1); err != nil {
					t.Fatal(err)
				}
				if n := refreshes.Load(); n != 2 {
					t.Errorf("%d token fetches, want 2 (refreshed before expiry)", n)
				}
				if st := srv.Stats(); st.Status401 != 0 {
					t.Errorf("%d 401s before revocation", st.Status401)
				}
				srv.RevokeTokens()
				jobs, err := c.Lease(ctx, 1)
				if err != nil || len(jobs) != 1 {
					t.Fatalf("after revocation: %+v, %v", jobs, err)
				}
				if n, st := refreshes.Load(), srv.Stats(); n != 3 || st.Status401 != 1 {
					t.Errorf("%d fetches and %d 401s after revocation, want 3 and 1", n, st.Status401)
				}
			})
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := newDevapi(t, dev)
			c := devClient(t, srv, func(c *Config) {
				c.Auth = Auth{TokenURL: "http://" + apiHost + "/oauth/token", ClientID: "cid", ClientSecret: "csecret", Username: "user", Password: "nope"}
			})
			_, err := c.Lease(t.Context(), 1)
			var te *TokenError
			if !errors.As(err, &te) || te.Status != 403 || te.Code != "invalid_grant" || !te.Final() {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), "nope") || strings.Contains(err.Error(), "csecret") {
				t.Errorf("error leaks a secret: %v", err)
			}
		})
	})
}

func TestDevapiCloudflare(t *testing.T) {
	srv := newDevapi(t, devapi.Config{Files: devFiles(), Auth: devapi.AuthCloudflare, CFClientID: "id.access", CFClientSecret: "cf-secret"})
	var loginHits atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/cdn-cgi/access/login/") {
			loginHits.Add(1)
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	defer ts.Close()
	u, _ := url.Parse(ts.URL)

	c := mustNew(t, Config{BaseURL: ts.URL, Auth: Auth{CFClientID: "id.access", CFClientSecret: "wrong"}})
	_, err := c.Lease(t.Context(), 1)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Host != u.Host || ae.Status != http.StatusFound {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error leaks the secret: %v", err)
	}
	if loginHits.Load() != 0 {
		t.Error("the client followed the redirect to the login page")
	}
	c = mustNew(t, Config{BaseURL: ts.URL, Auth: Auth{CFClientID: "id.access", CFClientSecret: "cf-secret"}})
	jobs, err := c.Lease(t.Context(), 5)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("with the service token: %+v, %v", jobs, err)
	}
}

func TestDevapiOutageAndFaults(t *testing.T) {
	t.Run("outage with Retry-After", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := newDevapi(t, devapi.Config{Files: devFiles()})
			c := devClient(t, srv, nil)
			srv.Unavailable(10 * time.Second)
			start := time.Now()
			jobs, err := c.Lease(t.Context(), 5) // 503 is safe to retry, even for a lease
			if err != nil || len(jobs) != 3 {
				t.Fatalf("lease: %+v, %v", jobs, err)
			}
			if d := time.Since(start); d != 10*time.Second {
				t.Errorf("waited %v, want the 10 s of Retry-After", d)
			}
			if st := srv.Stats(); st.Status503 != 1 || st.Leases != 3 {
				t.Errorf("stats %+v", st)
			}
		})
	})
	t.Run("report errors are retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := newDevapi(t, devapi.Config{Files: devFiles(), Faults: devapi.Faults{ReportErrorRate: 0.5}})
			c := devClient(t, srv, nil)
			jobs, err := c.Lease(t.Context(), 5)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range jobs {
				if err := c.Report(t.Context(), Report{Name: j.Name, Version: j.Version, Attempt: j.Attempt, AssignmentID: j.AssignmentID, Success: &Success{Commit: j.Hash}}); err != nil {
					t.Errorf("%s: %v", j.Name, err)
				}
			}
			if st := srv.Stats(); st.Finished != 3 || st.Status503 == 0 {
				t.Errorf("stats %+v", st)
			}
		})
	})
	t.Run("slow server: lease not retried, rules retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := newDevapi(t, devapi.Config{Files: devFiles(), Faults: devapi.Faults{Latency: 5 * time.Second}})
			var tries atomic.Int32
			c := devClient(t, srv, func(c *Config) {
				c.Timeout, c.Attempts = 2*time.Second, 3
				c.Observer.Call = func(string, int, time.Duration) { tries.Add(1) }
			})
			if _, err := c.Lease(t.Context(), 1); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("lease err = %v", err)
			}
			if n := tries.Swap(0); n != 1 {
				t.Errorf("%d lease tries, want 1", n)
			}
			if _, err := c.Rules(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("rules err = %v", err)
			}
			if n := tries.Load(); n != 3 {
				t.Errorf("%d rules tries, want 3", n)
			}
			srv.SetFaults(devapi.Faults{})
			if jobs, err := c.Lease(t.Context(), 5); err != nil || len(jobs) != 3 {
				t.Errorf("after the slowness: %+v, %v (the timed-out lease must not have leased anything)", jobs, err)
			}
		})
	})
}
