package devapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestCloudflareAccess(t *testing.T) {
	f := newFixture(t, Config{Auth: AuthCloudflare, CFClientID: "id.access", CFClientSecret: "s3cret", Files: []File{sdist("pkg-1.0.tar.gz")}})
	for _, hdr := range [][]string{
		nil,
		{"CF-Access-Client-Id", "id.access"},
		{"CF-Access-Client-Id", "id.access", "CF-Access-Client-Secret", "wrong"},
		{"CF-Access-Client-Id", "other", "CF-Access-Client-Secret", "s3cret"},
	} {
		rec := f.do(http.MethodPost, "/jobs?batch=1", nil, hdr...)
		if rec.Code != http.StatusFound {
			t.Fatalf("headers %v: %d %s, want 302", hdr, rec.Code, rec.Body)
		}
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || !strings.HasPrefix(loc.Path, "/cdn-cgi/access/login/") || loc.Query().Get("redirect_url") != "/jobs?batch=1" {
			t.Fatalf("Location %q: %v", rec.Header().Get("Location"), err)
		}
		// Following the redirect lands on an HTML login page with 200,
		// which is why clients must not follow redirects.
		page := f.do(http.MethodGet, loc.RequestURI(), nil)
		if page.Code != http.StatusOK || !strings.Contains(page.Header().Get("Content-Type"), "text/html") {
			t.Fatalf("login page: %d %q", page.Code, page.Header().Get("Content-Type"))
		}
	}
	jobs := f.lease(1, "CF-Access-Client-Id", "id.access", "CF-Access-Client-Secret", "s3cret")
	if len(jobs) != 1 {
		t.Fatalf("authorized lease = %+v", jobs)
	}
	// Downloads and metrics need no credentials; /_dev/ needs the API's.
	u, _ := url.Parse(jobs[0].Distributions[0])
	for _, p := range []string{u.Path, "/metrics"} {
		if rec := f.do(http.MethodGet, p, nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s without credentials: %d", p, rec.Code)
		}
	}
	if rec := f.do(http.MethodGet, "/_dev/stats", nil); rec.Code != http.StatusFound {
		t.Errorf("GET /_dev/stats without credentials: %d, want 302", rec.Code)
	}
	if rec := f.do(http.MethodGet, "/_dev/stats", nil, "CF-Access-Client-Id", "id.access", "CF-Access-Client-Secret", "s3cret"); rec.Code != http.StatusOK {
		t.Errorf("GET /_dev/stats with credentials: %d", rec.Code)
	}
	// The API's refusals are counted; the development routes' are not.
	if st := f.s.Stats(); st.Status401 != 4 {
		t.Errorf("Status401 = %d, want 4 (the API's redirects)", st.Status401)
	}
}

func token(t *testing.T, f *fixture, contentType, body string) (int, map[string]any) {
	t.Helper()
	rec := f.do(http.MethodPost, "/oauth/token", body, "Content-Type", contentType)
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("token body %s: %v", rec.Body, err)
	}
	return rec.Code, m
}

func TestAuth0(t *testing.T) {
	f := newFixture(t, Config{
		Auth: AuthAuth0, Auth0ClientID: "cid", Auth0ClientSecret: "csecret",
		Auth0Username: "scanner@example.org", Auth0Password: "pw", Auth0Audience: "https://dragonfly.vipyrsec.com",
		TokenLifetime: 10 * time.Minute, Files: []File{sdist("pkg-1.0.tar.gz")},
	})
	// No or a bad token: 401 with a detail.
	for _, tt := range []struct {
		hdr    []string
		detail string
	}{
		{nil, "Not authenticated"},
		{[]string{"Authorization", "Basic abc"}, "Not authenticated"},
		{[]string{"Authorization", "Bearer nope"}, "Invalid or expired token"},
	} {
		rec := f.do(http.MethodGet, "/rules", nil, tt.hdr...)
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
			t.Fatalf("headers %v: %d %v", tt.hdr, rec.Code, rec.Header())
		}
		assertDetail(t, rec, tt.detail)
	}
	bad := []struct {
		name, ct, body string
		code           int
		err            string
	}{
		{"no grant", "application/json", `{"client_id":"cid","client_secret":"csecret"}`, 400, "invalid_request"},
		{"unknown grant", "application/json", `{"grant_type":"implicit","client_id":"cid","client_secret":"csecret"}`, 400, "unsupported_grant_type"},
		{"wrong secret", "application/json", `{"grant_type":"client_credentials","client_id":"cid","client_secret":"x"}`, 401, "access_denied"},
		{"wrong audience", "application/json", `{"grant_type":"client_credentials","client_id":"cid","client_secret":"csecret","audience":"https://else"}`, 403, "access_denied"},
		{"wrong password", "application/json", `{"grant_type":"password","client_id":"cid","client_secret":"csecret","username":"scanner@example.org","password":"no"}`, 403, "invalid_grant"},
		{"no username", "application/x-www-form-urlencoded", `grant_type=password&client_id=cid&client_secret=csecret`, 400, "invalid_request"},
		{"not JSON", "application/json", `{`, 400, "invalid_request"},
	}
	for _, tt := range bad {
		code, m := token(t, f, tt.ct, tt.body)
		if code != tt.code || m["error"] != tt.err || m["error_description"] == "" {
			t.Errorf("%s: %d %v, want %d %s", tt.name, code, m, tt.code, tt.err)
		}
	}
	// The reference client's request: JSON, password grant.
	code, m := token(t, f, "application/json", `{"client_id":"cid","client_secret":"csecret","audience":"https://dragonfly.vipyrsec.com","grant_type":"password","username":"scanner@example.org","password":"pw"}`)
	if code != http.StatusOK || m["token_type"] != "Bearer" || m["expires_in"] != float64(600) || m["access_token"] == "" {
		t.Fatalf("password grant: %d %v", code, m)
	}
	tok := m["access_token"].(string)
	// A form body with client_credentials works too.
	code, m2 := token(t, f, "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=cid&client_secret=csecret")
	if code != http.StatusOK || m2["access_token"] == tok {
		t.Fatalf("client_credentials grant: %d %v", code, m2)
	}
	if got := f.lease(1, "Authorization", "Bearer "+tok); len(got) != 1 {
		t.Fatalf("lease with token = %+v", got)
	}
	// The token expires with the injected clock.
	f.clock.Advance(10*time.Minute - time.Second)
	if rec := f.do(http.MethodGet, "/rules", nil, "Authorization", "Bearer "+tok); rec.Code != http.StatusOK {
		t.Fatalf("token before expiry: %d", rec.Code)
	}
	f.clock.Advance(time.Second)
	rec := f.do(http.MethodGet, "/rules", nil, "Authorization", "Bearer "+tok)
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("expired token: %d %v", rec.Code, rec.Header())
	}
	assertDetail(t, rec, "Invalid or expired token")
	// A runtime lifetime change applies to new tokens; revocation to all.
	f.s.SetTokenLifetime(5 * time.Second)
	_, m3 := token(t, f, "application/json", `{"grant_type":"client_credentials","client_id":"cid","client_secret":"csecret"}`)
	if m3["expires_in"] != float64(5) {
		t.Fatalf("expires_in after SetTokenLifetime = %v", m3["expires_in"])
	}
	tok3 := m3["access_token"].(string)
	if rec := f.do(http.MethodGet, "/rules", nil, "Authorization", "Bearer "+tok3); rec.Code != http.StatusOK {
		t.Fatalf("fresh token: %d", rec.Code)
	}
	if rec := f.do(http.MethodPost, "/_dev/faults", `{"revoke_tokens":true}`); rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoke without a token: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(http.MethodGet, "/rules", nil, "Authorization", "Bearer "+tok3); rec.Code != http.StatusOK {
		t.Fatalf("token after a refused revocation: %d", rec.Code)
	}
	if rec := f.do(http.MethodPost, "/_dev/faults", `{"revoke_tokens":true}`, "Authorization", "Bearer "+tok3); rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(http.MethodGet, "/rules", nil, "Authorization", "Bearer "+tok3); rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", rec.Code)
	}
}

func TestOAuthTokenRouteOnlyInAuth0Mode(t *testing.T) {
	f := newFixture(t, Config{})
	if rec := f.do(http.MethodPost, "/oauth/token", `{}`); rec.Code != http.StatusNotFound {
		t.Fatalf("/oauth/token in none mode: %d", rec.Code)
	}
}
