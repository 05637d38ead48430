package mainframe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeJobs feeds arbitrary POST /jobs bodies to the job decoder: it
// never panics, and what it accepts is a valid batch that survives a round
// trip through the wire format unchanged.
func FuzzDecodeJobs(f *testing.F) {
	for _, s := range []string{
		`[]`,
		`[{"name":"a","version":"1","distributions":["https://files.pythonhosted.org/a-1.tar.gz"],"hash":"h","attempt":2,"assignment_id":"as-1"}]`,
		`[{"name":"a","version":"1","distributions":[],"hash":""}]`,
		`[{"name":"a","version":"1","distributions":null,"hash":"h"}]`,
		`[{"name":"a","version":"1","distributions":[""],"hash":"h"}]`,
		`[{"name":"","version":"1","distributions":[],"hash":"h"}]`,
		`[{"name":"a","version":1,"distributions":[],"hash":"h"}]`,
		`[{"name":"a","version":"1","distributions":[],"hash":"h","attempt":"2"}]`,
		`[{"name":"a","version":"1","distributions":[],"hash":"h","attempt":1e400}]`,
		`{"detail":"Not authenticated"}`,
		`<html><body>Access denied</body></html>`,
		`null`, `[null]`, `[[]]`, `"x"`, ``, `[{"name":"\ud800","version":"\u0000","distributions":["\u2028"],"hash":"h"}]`,
		`[{"name":"a","name":"b","version":"1","distributions":["x"],"hash":"h","extra":{"deep":[1,2,{"x":null}]}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		jobs, skipped, err := decodeJobs(body)
		if err != nil {
			if jobs != nil || skipped.n != 0 || skipped.first != nil {
				t.Fatalf("error %v with %d jobs and %d left out", err, len(jobs), skipped.n)
			}
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		var raw []json.RawMessage
		if json.Unmarshal(body, &raw) != nil {
			t.Fatalf("accepted a body that is not a JSON array: %q", body)
		}
		if len(jobs)+skipped.n != len(raw) || len(skipped.first) != min(skipped.n, maxSkippedLogged) {
			t.Fatalf("%d jobs and %d left out (%d reasons) from an array of %d", len(jobs), skipped.n, len(skipped.first), len(raw))
		}
		for _, e := range skipped.first {
			if e.Error() == "" {
				t.Fatal("empty reason for a job left out")
			}
		}
		wire := make([]map[string]any, len(jobs))
		for i, j := range jobs {
			if j.Name == "" || j.Version == "" || j.Distributions == nil {
				t.Fatalf("job %d accepted incomplete: %+v", i, j)
			}
			if strings.ContainsRune(j.Name+j.Version, 0) {
				t.Fatalf("job %d accepted with a NUL in its name or version: %q %q", i, j.Name, j.Version)
			}
			for _, d := range j.Distributions {
				if d == "" {
					t.Fatalf("job %d accepted with an empty distribution URL", i)
				}
			}
			m := map[string]any{"name": j.Name, "version": j.Version, "distributions": j.Distributions, "hash": j.Hash}
			if j.Attempt != nil {
				m["attempt"] = *j.Attempt
			}
			if j.AssignmentID != nil {
				m["assignment_id"] = *j.AssignmentID
			}
			wire[i] = m
		}
		again, err := json.Marshal(wire)
		if err != nil {
			t.Fatal(err)
		}
		back, skipped, err := decodeJobs(again)
		if err != nil || skipped.n > 0 {
			t.Fatalf("re-encoded batch rejected: %v %v\n%s", err, skipped, again)
		}
		if !reflect.DeepEqual(back, jobs) {
			t.Fatalf("round trip changed the batch:\n%+v\n%+v", jobs, back)
		}
	})
}

// Credentials of the response fuzz target; responses may echo them.
const (
	fzCFSecret     = "cf-secret-Qx7vZ2"
	fzClientSecret = "a0-client-secret-Lm4pR9"
	fzPassword     = "a0-password-Hs8wK3"
	fzAccessToken  = "access-token-Yt5nB1"
)

var fzSecrets = []string{fzCFSecret, fzClientSecret, fzPassword, fzAccessToken}

// fzExpand puts the credentials into a fuzzed body: $C, $S, $P and $T stand
// for them; $J stands for the JSON-escaped (\uXXXX) client secret, which
// decodes to the secret without containing it.
func fzExpand(body []byte) []byte {
	esc := ""
	for _, r := range fzClientSecret {
		esc += fmt.Sprintf(`\u%04x`, r)
	}
	r := strings.NewReplacer("$C", fzCFSecret, "$S", fzClientSecret, "$P", fzPassword, "$T", fzAccessToken, "$J", esc)
	return []byte(r.Replace(string(body)))
}

// fzAPI answers the token endpoint with a valid token and every API call
// with the fuzzed status and body.
type fzAPI struct {
	status int
	header http.Header
	body   []byte
}

func (a fzAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	resp := &http.Response{StatusCode: a.status, Header: a.header.Clone(), Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if r.URL.Host == "auth.example" {
		resp.StatusCode = http.StatusOK
		resp.Body = io.NopCloser(strings.NewReader(`{"access_token":"` + fzAccessToken + `","token_type":"Bearer","expires_in":3600}`))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(a.body))
	return resp, nil
}

// FuzzAPIResponses drives the real client (every call, Cloudflare and Auth0
// credentials configured) against an API answering an arbitrary status,
// Location, Retry-After and body, where the body may echo the credentials.
// It checks: no panic; decoded results are valid (jobs complete, rules with
// a hash); errors have the documented types; no credential appears in any
// error, error field or log line.
func FuzzAPIResponses(f *testing.F) {
	f.Add(uint16(200), byte(0), "", "", []byte(`[{"name":"a","version":"1","distributions":["https://x/a.tar.gz"],"hash":"h"}]`))
	f.Add(uint16(200), byte(1), "", "", []byte(`{"hash":"h1","rules":{"a":"rule a { condition: true }"}}`))
	f.Add(uint16(200), byte(1), "", "", []byte(`{"hash":"","rules":null}`))
	f.Add(uint16(200), byte(2), "", "", []byte(`{"server_commit":"abc","rules_commit":"def"}`))
	f.Add(uint16(200), byte(3), "", "", []byte(`{"queued":1,"oldest_age_seconds":null,"new":true}`))
	f.Add(uint16(200), byte(4), "", "", []byte(``))
	f.Add(uint16(422), byte(4), "", "", []byte(`{"detail":[{"loc":["body","reason"],"msg":"$S"}]}`))
	f.Add(uint16(500), byte(0), "", "", []byte(`{"detail":"token $T password $P cf $C"}`))
	f.Add(uint16(409), byte(4), "", "", []byte(`{"detail":"$J"}`))
	f.Add(uint16(400), byte(4), "", "", []byte(`{"detail":{"nested":"$J"}}`))
	f.Add(uint16(302), byte(0), "https://login.example/cdn-cgi/access/login?secret=$C", "", []byte(`<html>login</html>`))
	f.Add(uint16(307), byte(1), "https://$T.example/", "", []byte(``))
	f.Add(uint16(401), byte(2), "", "", []byte(`{"detail":"Not authenticated"}`))
	f.Add(uint16(503), byte(3), "", "1", []byte(`<html>maintenance $S</html>`))
	f.Add(uint16(429), byte(1), "", "Wed, 21 Oct 2015 07:28:00 GMT", []byte(`slow down`))
	f.Fuzz(func(t *testing.T, status uint16, call byte, location, retryAfter string, body []byte) {
		st := int(status)
		if st < 200 || st > 599 {
			st = 200 + st%400
		}
		h := http.Header{}
		if location != "" {
			h.Set("Location", string(fzExpand([]byte(location))))
		}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		logs := &syncBuffer{}
		c, err := New(Config{
			BaseURL: "https://api.example", Attempts: 2, BaseBackoff: time.Microsecond, MaxBackoff: time.Millisecond,
			Timeout: 10 * time.Second, Transport: fzAPI{status: st, header: h, body: fzExpand(body)},
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Auth: Auth{
				CFClientID: "cf-id", CFClientSecret: fzCFSecret,
				TokenURL: "https://auth.example/oauth/token", ClientID: "a0-id", ClientSecret: fzClientSecret,
				Username: "user@example.com", Password: fzPassword,
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var texts []string
		switch call % 5 {
		case 0:
			var jobs []Job
			jobs, err = c.Lease(ctx, 5)
			for i, j := range jobs {
				if j.Name == "" || j.Version == "" || j.Distributions == nil {
					t.Fatalf("job %d accepted incomplete: %+v", i, j)
				}
				texts = append(texts, fmt.Sprintf("%+v", j))
			}
		case 1:
			var rs RuleSet
			rs, err = c.Rules(ctx)
			if err == nil && (rs.Hash == "" || rs.Rules == nil) {
				t.Fatalf("rules accepted without hash or rules: %+v", rs)
			}
		case 2:
			_, err = c.Metadata(ctx)
		case 3:
			_, err = c.QueueStatus(ctx)
		case 4:
			err = c.Report(ctx, Report{Name: "a", Version: "1", Reason: "bad archive"})
		}
		if ctx.Err() != nil {
			t.Fatalf("call did not return within 30 s (attempts 2, backoff capped at 1 ms)")
		}
		if st >= 200 && st <= 299 && err != nil && !strings.Contains(err.Error(), "malformed response") {
			t.Fatalf("a %d answer failed with %v, want a malformed-response error", st, err)
		}
		if err != nil {
			texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			var ae *APIError
			var au *AuthError
			switch {
			case errors.As(err, &ae):
				if ae.Status != st {
					t.Fatalf("APIError status %d, server sent %d", ae.Status, st)
				}
				texts = append(texts, ae.Body, ae.Detail)
			case errors.As(err, &au):
				if st < 300 || st > 399 {
					t.Fatalf("AuthError for status %d", st)
				}
			case st >= 300 && st <= 399:
				t.Fatalf("a %d redirect gave %T %v, want *AuthError", st, err, err)
			case st >= 400:
				t.Fatalf("a %d answer gave %T %v, want *APIError", st, err, err)
			}
		}
		texts = append(texts, logs.String())
		for _, s := range texts {
			for _, secret := range fzSecrets {
				if strings.Contains(s, secret) {
					t.Fatalf("credential %q leaked: %s", secret, s)
				}
			}
		}
	})
}
