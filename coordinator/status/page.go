package status

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dragonfly-fleet/fleet/clip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
)

//go:embed status.html.tmpl
var pageFS embed.FS

var page = template.Must(template.New("status.html.tmpl").Funcs(template.FuncMap{
	"ago":   Ago,
	"since": func(now, t time.Time) string { return FormatDuration(now.Sub(t)) },
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"secs":  func(s float64) string { return FormatDuration(time.Duration(s * float64(time.Second))) },
	"short": shortHash,
	"bytes": fmtBytes,
	"join":  strings.Join,
	"top": func(rules []string, n int) []string {
		if len(rules) > n {
			return rules[:n]
		}
		return rules
	},
	"more": func(rules []string, n int) int { return max(len(rules)-n, 0) },
	"pct": func(a, b int) int {
		if b == 0 {
			return 0
		}
		return a * 100 / b
	},
	"rate": func(r float64) string { return strconv.FormatFloat(r*100, 'g', 4, 64) + "%" },
	"deref": func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	},
	"fptr": func(p *float64) string {
		if p == nil {
			return "-"
		}
		return FormatDuration(time.Duration(*p * float64(time.Second)))
	},
	"plural": plural,
	// releases is one line per release, escaped once (a quarantined
	// identity may have a thousand).
	"releases": func(rs []Release) string {
		var b strings.Builder
		for _, r := range rs {
			b.WriteString(r.Name + "==" + r.Version)
			if r.Failed {
				b.WriteString(" (failed)")
			}
			b.WriteByte('\n')
		}
		return b.String()
	},
	"grade":  Grade,
	"report": reportBadge,
}).ParseFS(pageFS, "status.html.tmpl"))

// pageData is what the template renders.
type pageData struct {
	Document
	Now    time.Time
	Grades []GradeInfo
}

// Handler serves the coordinator's HTTP surface, reading src (one snapshot
// per request):
//
//	GET /metrics      Gatherer(src) and the extra gatherers, in the Prometheus
//	                  exposition; no secret in it
//	GET /status       the status page (HTML, no script, refreshes itself every 5 s)
//	GET /status.json  the status Document as JSON
//	GET /             a redirect to /status
//	GET /healthz      200 while the process serves HTTP (liveness)
//	GET /readyz       200 while ready() (the gRPC server serves and the
//	                  coordinator is not draining: Server.Ready), else 503
//
// /metrics, /status and /status.json each render at most renderRate times a
// second (bursts of renderBurst), each apart from the others; over that, 503
// with Retry-After. A rendering takes the coordinator's and the
// dispatcher's locks for a snapshot: /metrics is open, and a flood of scrapes
// (32 clients, about 1000 a second) slowed a worker's reports from ~1800 to
// ~60 a second.
//
// API trouble and outbox trouble show in the metrics and on /status, never
// in /readyz: taking the coordinator out of its Service during an API outage
// would cut its workers off and fix nothing. ready nil means ready while the
// snapshot says the coordinator is not draining. Who may see /status is the
// caller's choice (cmd/dragonfly puts it behind DRAGONFLY_STATUS_TOKEN).
func (m *Monitor) Handler(src Source, ready func() bool, extra ...prometheus.Gatherer) http.Handler {
	gs := prometheus.Gatherers{m.Gatherer(src)}
	gs = append(gs, extra...)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", newRenderLimit(m.cfg.Now).wrap(promhttp.HandlerFor(gs, promhttp.HandlerOpts{})))
	mux.Handle("GET /status", newRenderLimit(m.cfg.Now).wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.servePage(w, r, src) })))
	mux.Handle("GET /status.json", newRenderLimit(m.cfg.Now).wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serveJSON(w, r, src) })))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var ok bool
		if ready != nil {
			ok = ready()
		} else {
			ok = !src.Snapshot().Draining
		}
		switch {
		case ok:
			fmt.Fprintln(w, "ready")
		case src.Snapshot().Draining:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: draining")
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: not serving workers")
		}
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	return mux
}

func (m *Monitor) servePage(w http.ResponseWriter, r *http.Request, src Source) {
	doc := m.Status(r.Context(), src)
	var buf bytes.Buffer
	if err := page.Execute(&buf, pageData{Document: doc, Now: doc.Generated, Grades: Grades()}); err != nil {
		http.Error(w, "render status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// html/template escapes markup, not what a browser does with the runes
	// themselves: a worker id's U+202E reordered the rest of its cell, a
	// zero-width space made it read as another worker's. Every rune that
	// is not printable, of any field (the template has none but line
	// breaks and tabs), is shown escaped (\u202e), as the terminal shows it.
	io.WriteString(w, clip.Visible(buf.String(), "\n\t"))
}

func (m *Monitor) serveJSON(w http.ResponseWriter, r *http.Request, src Source) {
	body, err := json.MarshalIndent(m.Status(r.Context(), src), "", "  ")
	if err != nil {
		http.Error(w, "encode status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}

// Score grades. A package's score is the sum of the weights of the rules
// its top distribution matched; the grades are its bands, inclusive lower
// bounds: none (< 1), low (1-4), medium (5-9), high (10-14), critical (15+).
const (
	GradeNone     = "none"
	GradeLow      = "low"
	GradeMedium   = "medium"
	GradeHigh     = "high"
	GradeCritical = "critical"
)

// GradeInfo is one band of the score scale.
type GradeInfo struct {
	Grade string
	// Min is the lowest score of the band; Max the highest (0: no bound).
	Min, Max int64
}

// Label says the band in words: "5-9", "15+", "< 1".
func (g GradeInfo) Label() string {
	switch {
	case g.Grade == GradeNone:
		return "< 1"
	case g.Max == 0:
		return strconv.FormatInt(g.Min, 10) + "+"
	}
	return strconv.FormatInt(g.Min, 10) + "-" + strconv.FormatInt(g.Max, 10)
}

// Grades is the score scale, lowest first.
func Grades() []GradeInfo {
	return []GradeInfo{
		{Grade: GradeNone, Max: 0},
		{Grade: GradeLow, Min: 1, Max: 4},
		{Grade: GradeMedium, Min: 5, Max: 9},
		{Grade: GradeHigh, Min: 10, Max: 14},
		{Grade: GradeCritical, Min: 15},
	}
}

// Grade is the band of a package score.
func Grade(score int64) string {
	switch {
	case score >= 15:
		return GradeCritical
	case score >= 10:
		return GradeHigh
	case score >= 5:
		return GradeMedium
	case score >= 1:
		return GradeLow
	}
	return GradeNone
}

// badge is a report state as the page shows it: its CSS class and words.
type badge struct {
	Class, Text string
}

// reportBadge shows where a report stands. A failure's report wears its
// own badge (an accepted failure report is no green "accepted").
func reportBadge(state ReportState, failed bool) badge {
	if failed {
		switch state {
		case ReportAccepted:
			return badge{"state failure-reported", "failure reported"}
		case ReportQueued, ReportRetrying:
			return badge{"state failure-" + string(state), "failure " + string(state)}
		}
	}
	return badge{"state " + string(state), string(state)}
}

// plural says n things: "1 worker", "3 workers".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// Ago says how long before now t was: "4.2s ago"; "never" for the zero time.
func Ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return FormatDuration(now.Sub(t)) + " ago"
}

// FormatDuration rounds d for people: 850ms, 12.3s, 4m05s, 2h10m, 3d04h.
// A negative d is 0.
func FormatDuration(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// shortHash is the first 12 characters of a rules hash.
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Renderings of each of /metrics, /status and /status.json a second (see
// Handler): Prometheus scrapes every 15 s or so, a status page refreshes
// every 5 s.
const (
	renderRate  = 50
	renderBurst = 50
)

// renderLimit bounds the renderings of one page (see Handler), on the
// monitor's clock.
type renderLimit struct {
	now func() time.Time
	lim *rate.Limiter
}

func newRenderLimit(now func() time.Time) *renderLimit {
	return &renderLimit{now: now, lim: rate.NewLimiter(renderRate, renderBurst)}
}

func (l *renderLimit) allow() bool { return l.lim.AllowN(l.now(), 1) }

func (l *renderLimit) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.allow() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests for this page; try again in a second", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}
