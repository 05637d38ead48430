package devapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// tokens are the issued Auth0 access tokens.
type tokens struct {
	mu        sync.Mutex
	lifetime  time.Duration
	issued    map[string]tokenInfo
	pruneSize int // prune expired tokens when the map reaches this size
}

// tokenInfo is what an issued token stands for.
type tokenInfo struct {
	expiry   time.Time
	identity string // the token's subject, see Server.identity
}

func newTokens(lifetime time.Duration) *tokens {
	return &tokens{lifetime: lifetime, issued: map[string]tokenInfo{}, pruneSize: 1024}
}

func (t *tokens) setLifetime(d time.Duration) {
	t.mu.Lock()
	t.lifetime = d
	t.mu.Unlock()
}

func (t *tokens) getLifetime() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lifetime
}

func (t *tokens) revokeAll() {
	t.mu.Lock()
	clear(t.issued)
	t.mu.Unlock()
}

// issue mints a token for identity valid from now for the current lifetime.
func (t *tokens) issue(now time.Time, identity string) (string, time.Duration) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.issued) >= t.pruneSize {
		for k, ti := range t.issued {
			if !now.Before(ti.expiry) {
				delete(t.issued, k)
			}
		}
		t.pruneSize = max(1024, 2*len(t.issued))
	}
	t.issued[tok] = tokenInfo{expiry: now.Add(t.lifetime), identity: identity}
	return tok, t.lifetime
}

// valid returns the identity of a token that is issued and not expired.
func (t *tokens) valid(tok string, now time.Time) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ti, ok := t.issued[tok]
	if !ok || !now.Before(ti.expiry) {
		return "", false
	}
	return ti.identity, true
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// cfIdentity returns the client id of the Cloudflare Access service token
// the request carries, if it is one of the configured ones. As the real
// server takes the service token's common_name (its client id) as the
// caller's identity, the id is the identity.
func (s *Server) cfIdentity(r *http.Request) (string, bool) {
	id, secret := r.Header.Get("CF-Access-Client-Id"), r.Header.Get("CF-Access-Client-Secret")
	if equal(id, s.cfg.CFClientID) && equal(secret, s.cfg.CFClientSecret) {
		return s.cfg.CFClientID, true
	}
	if want, ok := s.cfg.CFServiceTokens[id]; ok && id != "" && equal(secret, want) {
		return id, true
	}
	return "", false
}

// authorize checks a request's credentials and returns the caller's
// identity, the owner of the leases it takes ("" without authentication).
// When they fail it answers the request: Cloudflare Access redirects to its
// login page, Auth0 answers 401.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (string, bool) {
	switch s.cfg.Auth {
	case AuthCloudflare:
		if id, ok := s.cfIdentity(r); ok {
			return id, true
		}
		base := "http://" + r.Host
		if r.TLS != nil {
			base = "https://" + r.Host
		}
		loc := base + "/cdn-cgi/access/login/" + url.PathEscape(r.Host) +
			"?kid=devapi&redirect_url=" + url.QueryEscape(r.URL.RequestURI())
		w.Header().Set("Location", loc)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusFound)
		_, _ = io.WriteString(w, `<a href="`+html.EscapeString(loc)+`">Found</a>.`+"\n")
		return "", false
	case AuthAuth0:
		h := r.Header.Get("Authorization")
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeDetail(w, http.StatusUnauthorized, "Not authenticated")
			return "", false
		}
		id, ok := s.tokens.valid(strings.TrimSpace(tok), s.now())
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeDetail(w, http.StatusUnauthorized, "Invalid or expired token")
			return "", false
		}
		return id, true
	}
	return "", true
}

// handleAccessLogin is the page a Cloudflare Access redirect leads to: a 200
// HTML login page, which is what a client that follows redirects would get.
func (s *Server) handleAccessLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, "<!DOCTYPE html><html><head><title>Sign in ・ Cloudflare Access</title></head>"+
		"<body><h1>Sign in</h1><p>devapi: this is the Cloudflare Access login page; API clients must send a service token.</p></body></html>\n")
}

// oauthError answers an OAuth-style error as Auth0 does.
func oauthError(w http.ResponseWriter, code int, kind, desc string) {
	writeJSON(w, code, map[string]string{"error": kind, "error_description": desc})
}

// handleToken is Auth0's POST /oauth/token for the password and
// client_credentials grants, with a JSON or form body.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	params := map[string]string{}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := io.LimitReader(r.Body, 64<<10)
	switch ct {
	case "application/x-www-form-urlencoded":
		data, err := io.ReadAll(body)
		if err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "unreadable body")
			return
		}
		vals, err := url.ParseQuery(string(data))
		if err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
			return
		}
		for k := range vals {
			params[k] = vals.Get(k)
		}
	default: // Auth0 reads JSON with or without the content type
		var m map[string]any
		if err := json.NewDecoder(body).Decode(&m); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "malformed JSON body")
			return
		}
		for k, v := range m {
			if str, ok := v.(string); ok {
				params[k] = str
			}
		}
	}
	grant := params["grant_type"]
	switch grant {
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type")
		return
	case "password", "client_credentials":
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+grant)
		return
	}
	if params["client_id"] == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: client_id")
		return
	}
	if !equal(params["client_id"], s.cfg.Auth0ClientID) || !equal(params["client_secret"], s.cfg.Auth0ClientSecret) {
		oauthError(w, http.StatusUnauthorized, "access_denied", "Unauthorized")
		return
	}
	if aud := params["audience"]; aud != "" && s.cfg.Auth0Audience != "" && aud != s.cfg.Auth0Audience {
		oauthError(w, http.StatusForbidden, "access_denied", "Service not enabled within domain: "+aud)
		return
	}
	// The token's subject, as Auth0 mints it: "<client id>@clients" for a
	// machine-to-machine token, the user for the password grant.
	identity := params["client_id"] + "@clients"
	if grant == "password" {
		for _, k := range []string{"username", "password"} {
			if params[k] == "" {
				oauthError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: "+k)
				return
			}
		}
		if !s.auth0UserOK(params["username"], params["password"]) {
			oauthError(w, http.StatusForbidden, "invalid_grant", "Wrong email or password.")
			return
		}
		identity = "auth0|" + params["username"]
	}
	tok, life := s.tokens.issue(s.now(), identity)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int64(life / time.Second),
		"token_type":   "Bearer",
	})
}

// auth0UserOK checks a password grant's user against Auth0Username and
// Auth0Users.
func (s *Server) auth0UserOK(user, password string) bool {
	if s.cfg.Auth0Username != "" && equal(user, s.cfg.Auth0Username) && equal(password, s.cfg.Auth0Password) {
		return true
	}
	want, ok := s.cfg.Auth0Users[user]
	return ok && equal(password, want)
}
