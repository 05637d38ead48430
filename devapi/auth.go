package devapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
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
	expiry    map[string]time.Time
	pruneSize int // prune expired tokens when the map reaches this size
}

func newTokens(lifetime time.Duration) *tokens {
	return &tokens{lifetime: lifetime, expiry: map[string]time.Time{}, pruneSize: 1024}
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
	clear(t.expiry)
	t.mu.Unlock()
}

// issue mints a token valid from now for the current lifetime.
func (t *tokens) issue(now time.Time) (string, time.Duration) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.expiry) >= t.pruneSize {
		for k, exp := range t.expiry {
			if !now.Before(exp) {
				delete(t.expiry, k)
			}
		}
		t.pruneSize = max(1024, 2*len(t.expiry))
	}
	t.expiry[tok] = now.Add(t.lifetime)
	return tok, t.lifetime
}

func (t *tokens) valid(tok string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.expiry[tok]
	return ok && now.Before(exp)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authorize checks an API request's credentials and answers it when they
// fail: Cloudflare Access redirects to its login page, Auth0 answers 401.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	switch s.cfg.Auth {
	case AuthCloudflare:
		if equal(r.Header.Get("CF-Access-Client-Id"), s.cfg.CFClientID) &&
			equal(r.Header.Get("CF-Access-Client-Secret"), s.cfg.CFClientSecret) {
			return true
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
		_, _ = io.WriteString(w, `<a href="`+loc+`">Found</a>.`+"\n")
		return false
	case AuthAuth0:
		h := r.Header.Get("Authorization")
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeDetail(w, http.StatusUnauthorized, "Not authenticated")
			return false
		}
		if !s.tokens.valid(strings.TrimSpace(tok), s.now()) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeDetail(w, http.StatusUnauthorized, "Invalid or expired token")
			return false
		}
	}
	return true
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
	if grant == "password" {
		for _, k := range []string{"username", "password"} {
			if params[k] == "" {
				oauthError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: "+k)
				return
			}
		}
		if s.cfg.Auth0Username == "" || !equal(params["username"], s.cfg.Auth0Username) || !equal(params["password"], s.cfg.Auth0Password) {
			oauthError(w, http.StatusForbidden, "invalid_grant", "Wrong email or password.")
			return
		}
	}
	tok, life := s.tokens.issue(s.now())
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int64(life / time.Second),
		"token_type":   "Bearer",
	})
}
