package mainframe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func passwordWant() map[string]string {
	return map[string]string{"client_id": "cid", "client_secret": "csecret", "audience": DefaultAudience, "grant_type": "password", "username": "user", "password": "pw"}
}

func TestAuth0PasswordGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		auth := newFakeAuth0(passwordWant(), 86400)
		c, _ := inProcess(t, api, auth, nil)
		for range 3 {
			if _, err := c.Rules(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if f := auth.fetches(); f != 1 {
			t.Errorf("%d token fetches for 3 calls, want 1 (cached)", f)
		}
		// The request carried exactly the six documented fields as JSON.
		if got := auth.requests[0]; len(got) != 6 || got["audience"] != DefaultAudience || got["grant_type"] != "password" {
			t.Errorf("token request = %v", got)
		}
		for _, r := range api.recorded() {
			if r.header.Get("Authorization") != "Bearer tok-1" {
				t.Errorf("authorization = %q", r.header.Get("Authorization"))
			}
		}
	})
}

func TestAuth0ClientCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		auth := newFakeAuth0(map[string]string{"client_id": "m2m", "client_secret": "m2m-secret", "audience": "https://api.example", "grant_type": "client_credentials"}, 86400)
		c, _ := inProcess(t, api, auth, func(c *Config) {
			c.Auth = Auth{TokenURL: "http://" + authHost + "/oauth/token", GrantType: GrantClientCredentials, ClientID: "m2m", ClientSecret: "m2m-secret", Audience: "https://api.example"}
		})
		if _, err := c.Lease(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Lease(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		if f := auth.fetches(); f != 1 {
			t.Errorf("%d token fetches, want 1", f)
		}
		if auth.agents[0] != "dragonfly-fleet/test" {
			t.Errorf("token endpoint user agent %q", auth.agents[0])
		}
	})
}

// TestAuth0ClientCredentialsSendsJSON: the client_credentials grant posts
// the same JSON body as the password grant (dragonfly-api.md: "POST
// https://{DRAGONFLY_AUTH0_DOMAIN}/oauth/token with JSON"), without
// username and password; through x/oauth2 it went form-encoded, which a
// token endpoint that reads JSON only (DRAGONFLY_TOKEN_URL) refuses.
func TestAuth0ClientCredentialsSendsJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		want := map[string]string{"client_id": "m2m", "client_secret": "m2m-secret", "audience": "https://api.example", "grant_type": "client_credentials"}
		auth := newFakeAuth0(want, 86400)
		c, _ := inProcess(t, api, auth, func(c *Config) {
			c.Auth = Auth{TokenURL: "http://" + authHost + "/oauth/token", GrantType: GrantClientCredentials, ClientID: "m2m", ClientSecret: "m2m-secret", Audience: "https://api.example"}
		})
		if _, err := c.Lease(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		if len(auth.types) != 1 || auth.types[0] != "application/json" {
			t.Errorf("token request content types %q, want one application/json", auth.types)
		}
		if got := auth.requests[0]; len(got) != len(want) {
			t.Errorf("token request = %v, want exactly %v", got, want)
		}
	})
}

func TestAuth0RefreshOn401(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		auth := newFakeAuth0(passwordWant(), 86400)
		c, _ := inProcess(t, api, auth, nil)
		if _, err := c.Rules(t.Context()); err != nil {
			t.Fatal(err)
		}
		// The server forgets the token long before it expires: 401, refresh,
		// one retry with the new token.
		auth.revokeAll()
		if _, err := c.Rules(t.Context()); err != nil {
			t.Fatalf("after revocation: %v", err)
		}
		reqs := api.recorded()
		if len(reqs) != 3 || reqs[1].header.Get("Authorization") != "Bearer tok-1" || reqs[2].header.Get("Authorization") != "Bearer tok-2" {
			t.Errorf("requests: %d, last two with %q and %q", len(reqs), reqs[1].header.Get("Authorization"), reqs[2].header.Get("Authorization"))
		}
		if f := auth.fetches(); f != 2 {
			t.Errorf("%d token fetches, want 2", f)
		}

		// A second 401 after the refresh is an auth failure, retried no further.
		api.fail("POST /jobs", fault{status: 401, body: `{"detail":"Invalid or expired token"}`}, fault{status: 401, body: `{"detail":"Invalid or expired token"}`})
		_, err := c.Lease(t.Context(), 1)
		e := apiErr(t, err)
		if e.Status != 401 || e.Final() || e.Detail != "Invalid or expired token" {
			t.Errorf("err = %v (final %v)", e, e.Final())
		}
		if n := api.count("POST /jobs"); n != 2 {
			t.Errorf("%d lease tries, want 2", n)
		}
		if f := auth.fetches(); f != 3 {
			t.Errorf("%d token fetches, want 3", f)
		}
	})
}

func TestCloudflareOnly401NotRetried(t *testing.T) {
	api := newFakeAPI()
	api.fail("GET /rules", fault{status: 401, body: `{"detail":"no"}`}, fault{status: 200, body: `{"hash":"h","rules":{}}`})
	c := overTCP(t, api, func(c *Config) { c.Auth = Auth{CFClientID: "id", CFClientSecret: "secret"} })
	e := apiErr(t, func() error { _, err := c.Rules(t.Context()); return err }())
	if e.Status != 401 {
		t.Fatalf("err = %v", e)
	}
	if n := api.count("GET /rules"); n != 1 {
		t.Errorf("%d tries; without Auth0 there is nothing to refresh", n)
	}
}

// metadataOK makes one API call that must succeed.
func metadataOK(t *testing.T, c *Client) {
	t.Helper()
	if _, err := c.Metadata(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestAuth0RefreshBeforeExpiry(t *testing.T) {
	// 5 minute tokens; the refresh margin is 60 s. No call ever meets a
	// 401: the token is replaced before it expires.
	tokenSchedule(t, 300, []tokenCall{
		{0, 0},
		{230, 1},
		{245, 2}, // inside the margin, before expiry
		{445, 2}, // tok-2 lives until 545 s: still cached
	})
}

// A token that lives less than twice the refresh margin is used for half
// its life, not fetched again for every call.
func TestAuth0ShortLivedTokens(t *testing.T) {
	// 40 s tokens; the refresh margin is 60 s.
	tokenSchedule(t, 40, []tokenCall{
		{0, 0},
		{0, 0},
		{15, 1}, // 3 calls within 15 s of a 40 s token
		{25, 2}, // past half its life
		{40, 2}, // the second token (from 25 s) is at 15 s of 40
	})
}

// tokenCall is an API call at second at of synctest's clock and the token
// fetches wanted after it (0: not checked).
type tokenCall struct{ at, fetches int }

// tokenSchedule makes the calls with Auth0 tokens that live life seconds,
// checking the fetches after each and, at the end, that the API saw each
// call once (none was refused with 401).
func tokenSchedule(t *testing.T, life int, calls []tokenCall) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		auth := newFakeAuth0(passwordWant(), life)
		c, _ := inProcess(t, api, auth, nil)
		start := time.Now()
		for _, call := range calls {
			time.Sleep(time.Until(start.Add(time.Duration(call.at) * time.Second)))
			metadataOK(t, c)
			if f := auth.fetches(); call.fetches != 0 && f != call.fetches {
				t.Fatalf("%d fetches at %d s, want %d", f, call.at, call.fetches)
			}
		}
		if n := len(api.recorded()); n != len(calls) {
			t.Errorf("%d API requests for %d calls", n, len(calls))
		}
	})
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Run("wrong password is final", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api := newFakeAPI()
			auth := newFakeAuth0(passwordWant(), 3600)
			c, _ := inProcess(t, api, auth, func(c *Config) { c.Auth.Password = "wrong-password" })
			_, err := c.Lease(t.Context(), 1)
			var te *TokenError
			if !errors.As(err, &te) || te.Status != 403 || te.Code != "access_denied" || !te.Final() {
				t.Fatalf("err = %v", err)
			}
			if f := auth.fetches(); f != 1 {
				t.Errorf("%d fetches; a refused grant is not retried", f)
			}
			if n := len(api.recorded()); n != 0 {
				t.Errorf("%d API calls without a token", n)
			}
		})
	})
	t.Run("transient failures are retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api := newFakeAPI()
			auth := newFakeAuth0(passwordWant(), 3600)
			auth.faults = []fault{{status: 503, body: "unavailable"}, {status: 429, body: `{"error":"too_many_requests"}`}}
			c, _ := inProcess(t, api, auth, nil)
			if _, err := c.Rules(t.Context()); err != nil {
				t.Fatal(err)
			}
			if f := auth.fetches(); f != 3 {
				t.Errorf("%d fetches, want 3", f)
			}
		})
	})
	t.Run("malformed token response", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api := newFakeAPI()
			auth := newFakeAuth0(passwordWant(), 3600)
			for range 5 {
				auth.faults = append(auth.faults, fault{status: 200, body: `{"token_type":"Bearer"}`})
			}
			c, _ := inProcess(t, api, auth, nil)
			_, err := c.Rules(t.Context())
			var te *TokenError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), "no access_token") {
				t.Fatalf("err = %v", err)
			}
		})
	})
	t.Run("token endpoint redirect", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api := newFakeAPI()
			tr := &hostTransport{hosts: map[string]http.Handler{apiHost: api, authHost: http.RedirectHandler("https://elsewhere.example/login", http.StatusFound)}}
			c := mustNew(t, Config{BaseURL: "http://" + apiHost, Transport: tr, Auth: Auth{TokenURL: "http://" + authHost + "/oauth/token", ClientID: "cid", ClientSecret: "csecret", Username: "u", Password: "p"}})
			_, err := c.Rules(t.Context())
			var te *TokenError
			if !errors.As(err, &te) || te.Status != 302 || !te.Final() {
				t.Fatalf("err = %v", err)
			}
		})
	})
}

// hungTokenClient is a client whose token endpoint never answers (each
// request ends when its Timeout, 10 s, does) and the count of its requests.
func hungTokenClient(t *testing.T) (*Client, *atomic.Int32) {
	t.Helper()
	fetches := &atomic.Int32{}
	hung := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-r.Context().Done()
	})
	tr := &hostTransport{hosts: map[string]http.Handler{apiHost: newFakeAPI(), authHost: hung}}
	return mustNew(t, Config{BaseURL: "http://" + apiHost, Transport: tr, Timeout: 10 * time.Second, Auth: Auth{
		TokenURL: "http://" + authHost + "/oauth/token", ClientID: "cid", ClientSecret: "csecret", Username: "user", Password: "pw",
	}}), fetches
}

// TestHungTokenEndpointHoldsNoCallerPastItsContext: a call waiting for a
// token from an endpoint that does not answer returns when its context ends
// (shutdown), not when the token request's Timeout does.
func TestHungTokenEndpointHoldsNoCallerPastItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := hungTokenClient(t)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		if _, err := c.Rules(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the caller's deadline", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("returned after %v, want 1s (when its context ended)", d)
		}
		// The abandoned request ends with its Timeout.
		time.Sleep(10 * time.Second)
	})
}

// TestConcurrentCallersShareAFailingTokenRequest: callers waiting for a
// token share one request even when it fails or hangs. They queued behind
// one another, each making its own request in turn once the previous one
// failed: with the coordinator's eight senders, loader and rules fetch
// waiting, a hung endpoint held the last of them for ten times the Timeout,
// whatever their contexts. (Without the fix this test deadlocks the synctest
// bubble: goroutines blocked on x/oauth2's mutex never let its clock
// advance.)
func TestConcurrentCallersShareAFailingTokenRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, fetches := hungTokenClient(t)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if _, err := c.Rules(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err = %v, want the caller's deadline", err)
				}
				if d := time.Since(start); d != time.Second {
					t.Errorf("returned after %v, want 1s (when its context ended)", d)
				}
			})
		}
		wg.Wait()
		if n := fetches.Load(); n != 1 {
			t.Errorf("%d token requests for 4 concurrent calls, want 1 (shared)", n)
		}
		time.Sleep(10 * time.Second)
	})
}

// TestSlowTokenRefreshLeavesTheLeaseItsWholeTimeout: the time a call waits
// for a token is not taken from its request's Timeout. It was: a token
// endpoint answering in 8 s of a 10 s Timeout left POST /jobs 2 s, and a
// lease cut by its timeout after being sent is not retried (the server may
// have leased the jobs): they stayed leased to nobody, each losing one of
// its three attempts.
func TestSlowTokenRefreshLeavesTheLeaseItsWholeTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI()
		api.add("a", "1")
		auth := newFakeAuth0(passwordWant(), 3600)
		api.auth = auth
		slow := func(d time.Duration, h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(d) // the server's own pace, on the bubble's clock
				h.ServeHTTP(w, r)
			})
		}
		tr := &hostTransport{hosts: map[string]http.Handler{apiHost: slow(3*time.Second, api), authHost: slow(8*time.Second, auth)}}
		c := mustNew(t, Config{BaseURL: "http://" + apiHost, Transport: tr, Timeout: 10 * time.Second, Auth: Auth{
			TokenURL: "http://" + authHost + "/oauth/token", ClientID: "cid", ClientSecret: "csecret", Username: "user", Password: "pw",
		}})
		jobs, err := c.Lease(t.Context(), 1)
		if err != nil || len(jobs) != 1 {
			t.Fatalf("lease: %d jobs, err %v; want the one job", len(jobs), err)
		}
	})
}

// TestNoSecretsInErrorsOrLogs makes servers quote every credential back in
// their error bodies and checks that no error text, error field or log line
// carries one.
func TestNoSecretsInErrorsOrLogs(t *testing.T) {
	const (
		cfSecret     = "CFSECRET-5e1f0c"
		clientSecret = "CLIENTSECRET-9a8b7c"
		password     = "PASSWORD-hunter2"
	)
	secrets := []string{cfSecret, clientSecret, password, "tok-1", "tok-2", "tok-3"}
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		echo := func(w http.ResponseWriter, r *http.Request, status int) {
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"detail":"request headers: %v"}`, r.Header)
		}
		api := newFakeAPI()
		api.add("a", "1")
		auth := newFakeAuth0(map[string]string{"client_id": "cid", "client_secret": clientSecret, "audience": DefaultAudience, "grant_type": "password", "username": "user", "password": password}, 3600)
		step := 0
		apiH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			step++
			switch step {
			case 1, 2:
				echo(w, r, 500) // retried, logged
			case 3:
				echo(w, r, 422) // final
			case 4, 5:
				echo(w, r, 401) // refresh, then auth failure
			default:
				api.ServeHTTP(w, r)
			}
		})
		tr := &hostTransport{hosts: map[string]http.Handler{apiHost: apiH, authHost: auth}}
		api.auth = auth
		cfg := Config{BaseURL: "http://" + apiHost, Transport: tr, Logger: log, Attempts: 3, Auth: Auth{
			CFClientID: "cf-id", CFClientSecret: cfSecret, TokenURL: "http://" + authHost + "/oauth/token",
			ClientID: "cid", ClientSecret: clientSecret, Username: "user", Password: password,
		}}
		c := mustNew(t, cfg)
		var errs []error
		_, err := c.Rules(t.Context()) // 500, 500, 422
		errs = append(errs, err)
		_, err = c.Rules(t.Context()) // 401, refresh, 401
		errs = append(errs, err)

		// A token endpoint that quotes the request body, secrets and all.
		bad := mustNew(t, Config{BaseURL: "http://" + apiHost, Logger: log, Attempts: 2, Transport: &hostTransport{hosts: map[string]http.Handler{
			apiHost: api,
			authHost: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body strings.Builder
				_, _ = fmt.Fprint(&body, r.Header)
				buf := make([]byte, 4096)
				n, _ := r.Body.Read(buf)
				w.WriteHeader(500)
				fmt.Fprintf(w, `{"error":"server_error","error_description":%q}`, string(buf[:n])+body.String())
			}),
		}}, Auth: cfg.Auth})
		_, err = bad.Lease(t.Context(), 1)
		errs = append(errs, err)
		bad2 := mustNew(t, Config{BaseURL: bad.cfg.BaseURL, Logger: log, Attempts: 1, Transport: bad.cfg.Transport, Auth: Auth{
			TokenURL: cfg.Auth.TokenURL, GrantType: GrantClientCredentials, ClientID: "cid", ClientSecret: clientSecret,
		}})
		_, err = bad2.Lease(t.Context(), 1)
		errs = append(errs, err)

		// Bad configuration.
		_, err = New(Config{Auth: Auth{CFClientID: "x", CFClientSecret: cfSecret + "\n"}})
		errs = append(errs, err)
		_, err = New(Config{Auth: Auth{ClientSecret: clientSecret, Password: password}})
		errs = append(errs, err)

		for i, err := range errs {
			if err == nil {
				t.Fatalf("step %d: no error", i)
			}
			text := err.Error()
			var e *APIError
			if errors.As(err, &e) {
				text += e.Body + e.Detail
			}
			var te *TokenError
			if errors.As(err, &te) {
				text += te.Description + te.Code
			}
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("error %d leaks %q: %s", i, s, text)
				}
			}
		}
		// The servers did quote them: the redaction is what keeps them out.
		var e *APIError
		if !errors.As(errs[0], &e) || e.Status != 422 || !strings.Contains(e.Body, "[redacted]") {
			t.Errorf("first error = %v", errs[0])
		}
		var te *TokenError
		if !errors.As(errs[2], &te) || !strings.Contains(te.Description, "[redacted]") {
			t.Errorf("token error = %v", errs[2])
		}
		out := logs.String()
		if !strings.Contains(out, "retrying") || !strings.Contains(out, "refreshing") {
			t.Errorf("expected retry and refresh logs, got:\n%s", out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("logs leak %q:\n%s", s, out)
			}
		}
	})
}

// tokenFetchesFor5Calls makes 5 API calls with credentials a against a
// token endpoint answering expires_in life, and returns how many tokens
// were fetched.
func tokenFetchesFor5Calls(t *testing.T, a Auth, life string) int32 {
	t.Helper()
	api := newFakeAPI()
	var fetches atomic.Int32
	tr := &hostTransport{hosts: map[string]http.Handler{apiHost: api, authHost: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"tok","token_type":"Bearer","expires_in":`+life+`}`)
	})}}
	a.TokenURL = "http://" + authHost + "/oauth/token"
	c := mustNew(t, Config{BaseURL: "http://" + apiHost, Transport: tr, Timeout: 10 * time.Second, Auth: a})
	for range 5 {
		metadataOK(t, c)
	}
	return fetches.Load()
}

// TestAuth0HugeExpiresIn: a token endpoint announcing a lifetime longer than
// a time.Duration holds (expires_in of 10^10 s) must not make the token
// expire at once (the lifetime wrapping into the past), which would fetch a
// new token for every API call.
func TestAuth0HugeExpiresIn(t *testing.T) {
	for _, life := range []string{"10000000000", "9223372036854775807"} {
		synctest.Test(t, func(t *testing.T) {
			a := Auth{ClientID: "cid", ClientSecret: "csecret", Username: "user", Password: "pw"}
			if n := tokenFetchesFor5Calls(t, a, life); n != 1 {
				t.Errorf("expires_in %s: %d token fetches for 5 calls, want 1", life, n)
			}
		})
	}
}

// TestAuth0NegativeExpiresIn: a token response whose expires_in is negative
// gives a token without a known expiry, under either grant, kept until a
// 401 (the password grant did so; through x/oauth2 the client_credentials
// grant dated it in the past, and every API call fetched a new token).
func TestAuth0NegativeExpiresIn(t *testing.T) {
	for _, grant := range []string{GrantPassword, GrantClientCredentials} {
		for _, life := range []string{"-1", "-3600"} {
			t.Run(grant+" "+life, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					a := Auth{GrantType: grant, ClientID: "cid", ClientSecret: "csecret"}
					if grant == GrantPassword {
						a.Username, a.Password = "user", "pw"
					}
					if n := tokenFetchesFor5Calls(t, a, life); n != 1 {
						t.Errorf("%s grant, expires_in %s: %d token fetches for 5 calls, want 1", grant, life, n)
					}
				})
			})
		}
	}
}

// TestAuth0ExpiresInSpelledOtherwise: a token endpoint that quotes
// expires_in (as x/oauth2 accepts it), gives it a fraction or an exponent,
// or more digits than an int64 holds, gives a usable token, fetched once
// for 5 calls. Each was a malformed token response: every API call failed
// while the endpoint answered so.
func TestAuth0ExpiresInSpelledOtherwise(t *testing.T) {
	for _, life := range []string{`"3600"`, `3600.5`, `3.6e3`, `"3.6e3"`, `99999999999999999999`, `1e400`, `null`} {
		t.Run(life, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := Auth{ClientID: "cid", ClientSecret: "csecret", Username: "user", Password: "pw"}
				if n := tokenFetchesFor5Calls(t, a, life); n != 1 {
					t.Errorf("expires_in %s: %d token fetches for 5 calls, want 1", life, n)
				}
			})
		})
	}
}
