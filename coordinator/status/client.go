package status

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/dragonfly-fleet/fleet/internal/bound"
)

// Protect requires "Authorization: Bearer token" on the paths that show the
// status (/status, /status.json and /); /metrics, /healthz and /readyz stay
// open (probes and Prometheus need no token, and they carry no secret).
// token "" requires nothing.
func Protect(token string, h http.Handler) http.Handler {
	return bearerOnly(token, func(path string) bool {
		return path == "/status" || path == "/status.json" || path == "/"
	}, h)
}

// bearerOnly requires "Authorization: Bearer token" on the paths for which
// protect returns true; token "" requires nothing.
func bearerOnly(token string, protect func(path string) bool, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if protect(r.URL.Path) && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dragonfly status"`)
			http.Error(w, "status needs the bearer token (DRAGONFLY_STATUS_TOKEN)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// DocumentURL turns a coordinator's HTTP address, host:port (its
// DRAGONFLY_METRICS_ADDR; an empty host is localhost), or a URL of its
// status (http://host:10179, .../status, .../status.json) into the URL of
// its status document.
func DocumentURL(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("DRAGONFLY_STATUS_COORDINATOR: empty coordinator address")
	}
	if !strings.Contains(addr, "://") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("coordinator address %q: want host:port or a URL", clip.String(addr, 256))
		}
		if host == "" {
			host = "localhost"
		}
		addr = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("coordinator URL %q: %w", clip.String(addr, 256), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("coordinator URL %q: scheme must be http or https", clip.String(addr, 256))
	}
	if u.Host == "" {
		return "", fmt.Errorf("coordinator URL %q: no host", clip.String(addr, 256))
	}
	switch p := strings.TrimSuffix(u.Path, "/"); {
	case strings.HasSuffix(p, "/status.json"):
	case strings.HasSuffix(p, "/status"):
		u.Path = p + ".json"
	default:
		u.Path = p + "/status.json"
	}
	return u.String(), nil
}

// MaxDocument bounds the status document Fetch reads (its lists are bounded
// by the coordinator; a few hundred KiB in practice).
const MaxDocument = 16 << 20

// Fetch GETs the status document at target (see DocumentURL) with the
// bearer token ("" sends none), within timeout. With a token it follows
// redirects within target's origin (scheme, host and port) only.
func Fetch(ctx context.Context, target, token string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{CheckRedirect: func(next *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		// Go's client would send the token to any port and scheme of the
		// same host (https to http included).
		if token != "" && !sameOrigin(via[0].URL, next.URL) {
			return fmt.Errorf("redirected to %s, another origin: the status token is not sent there (give that URL as the coordinator)", clip.URL(next.URL.String()))
		}
		return nil
	}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch status: %w", err)
	}
	defer resp.Body.Close()
	body, err := bound.ReadAll(resp.Body, MaxDocument)
	// The status line is the server's text, printed on the operator's
	// terminal.
	st := clean(clip.String(resp.Status, 256))
	switch {
	case resp.StatusCode == http.StatusUnauthorized && token == "":
		return nil, fmt.Errorf("fetch status %s: %s: the coordinator wants its status token (--token or DRAGONFLY_STATUS_TOKEN)", target, st)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("fetch status %s: %s: the coordinator refused the status token", target, st)
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		return nil, fmt.Errorf("fetch status %s: %s: the coordinator renders its status at most %d times a second and other clients used them; try again in a moment", target, st, renderRate)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetch status %s: %s", target, st)
	case errors.Is(err, bound.ErrTooLarge):
		return nil, fmt.Errorf("fetch status %s: document larger than %d MiB", target, MaxDocument>>20)
	case err != nil:
		return nil, fmt.Errorf("fetch status %s: %w", target, err)
	}
	return body, nil
}

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && originPort(a) == originPort(b)
}

func originPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// View shows a coordinator's status document (dragonfly status): as the
// text tables of WriteText, or as the JSON fetched.
type View struct {
	// URL is the document's (see DocumentURL); Token the bearer token
	// ("" none); Timeout bounds each fetch. Required: URL and Timeout.
	URL, Token string
	Timeout    time.Duration
	// JSON writes the document as fetched (with Every: compacted, one per
	// line) instead of the tables, its hidden runes escaped (clip.JSON):
	// its strings come from packages and workers.
	JSON bool
	// Width is the width of the tables (the terminal's; 80 otherwise).
	Width int
	// Every > 0 redraws every Every until the context ends (a failed
	// fetch is said and the watch goes on); Clear clears the screen before
	// each frame (on a terminal).
	Every time.Duration
	Clear bool
	// After is the timer between frames. Default time.After.
	After func(time.Duration) <-chan time.Time
	// Now is the clock of the failure lines. Default time.Now.
	Now func() time.Time
}

// Run draws once, or with Every until ctx ends, on w.
func (v View) Run(ctx context.Context, w io.Writer) error {
	if v.Every <= 0 {
		return v.draw(ctx, w)
	}
	if v.After == nil {
		v.After = time.After
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	for {
		if err := v.draw(ctx, w); err != nil && ctx.Err() == nil {
			if _, werr := fmt.Fprintf(w, "%s dragonfly status: %s (trying again in %s)\n",
				v.Now().UTC().Format("15:04:05"), clip.Error(err, 512), FormatDuration(v.Every)); werr != nil {
				return werr
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-v.After(v.Every):
		}
	}
}

// draw fetches the document and writes one frame.
func (v View) draw(ctx context.Context, w io.Writer) error {
	body, err := Fetch(ctx, v.URL, v.Token, v.Timeout)
	if err != nil {
		return err
	}
	if v.JSON {
		if !json.Valid(body) {
			return fmt.Errorf("%s: not JSON", v.URL)
		}
		if v.Every > 0 { // one document per line
			var line bytes.Buffer
			if err := json.Compact(&line, body); err != nil {
				return fmt.Errorf("%s: not JSON: %w", v.URL, err)
			}
			body = append(line.Bytes(), '\n')
		}
		_, err := w.Write(clip.JSON(body))
		return err
	}
	var doc Document
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("%s: not a status document: %w", v.URL, err)
	}
	var out bytes.Buffer
	if v.Every > 0 {
		if v.Clear {
			out.WriteString("\x1b[H\x1b[2J") // home, clear the screen
		}
		fmt.Fprintf(&out, "every %s · Ctrl-C to stop\n", FormatDuration(v.Every))
	}
	WriteText(&out, doc, v.Width)
	_, err = w.Write(out.Bytes())
	return err
}
