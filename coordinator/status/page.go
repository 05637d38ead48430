package status

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed status.html.tmpl
var pageFS embed.FS

var page = template.Must(template.New("status.html.tmpl").Funcs(template.FuncMap{
	"ago":   ago,
	"since": func(now, t time.Time) string { return fmtDuration(now.Sub(t)) },
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"secs":  func(s float64) string { return fmtDuration(time.Duration(s * float64(time.Second))) },
	"short": func(h string) string { return shortHash(h) },
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
		return fmtDuration(time.Duration(*p * float64(time.Second)))
	},
}).ParseFS(pageFS, "status.html.tmpl"))

// pageData is what the template renders.
type pageData struct {
	Document
	Now time.Time
}

// Handler serves:
//
//	GET /metrics      the Prometheus exposition of Registry
//	GET /status       the status page (HTML, refreshes itself every 5 s)
//	GET /status.json  the status Document as JSON
//	GET /             a redirect to /status
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.met.reg, promhttp.HandlerOpts{Registry: m.met.reg}))
	mux.HandleFunc("GET /status", m.servePage)
	mux.HandleFunc("GET /status.json", m.serveJSON)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	return mux
}

func (m *Monitor) servePage(w http.ResponseWriter, _ *http.Request) {
	doc := m.Snapshot()
	var buf bytes.Buffer
	if err := page.Execute(&buf, pageData{Document: doc, Now: doc.Generated}); err != nil {
		http.Error(w, "render status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

func (m *Monitor) serveJSON(w http.ResponseWriter, _ *http.Request) {
	body, err := json.MarshalIndent(m.Snapshot(), "", "  ")
	if err != nil {
		http.Error(w, "encode status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}

// ago formats how long before now t was ("-" for the zero time).
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmtDuration(now.Sub(t)) + " ago"
}

// fmtDuration rounds d for people: 850ms, 12.3s, 4m05s, 2h10m.
func fmtDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
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

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
