package console

import (
	"fmt"
	"html/template"
	"strconv"
	"time"

	"github.com/phigate/phigate/internal/audit"
)

// pageNames are the templates, each parsed with layout.html.
var pageNames = []string{"login", "error", "overview", "tokens", "token", "audit", "disclosures", "alerts"}

func itoa(n int) string { return strconv.Itoa(n) }

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := now.Sub(t)
		switch {
		case d < 0:
			return "in " + human(-d)
		case d < time.Second:
			return "just now"
		}
		return human(d) + " ago"
	},
	"until": func(now, t time.Time) string {
		d := t.Sub(now)
		if d <= 0 {
			return "expired " + human(-d) + " ago"
		}
		return "in " + human(d)
	},
	"list": func(s ...string) []string { return s },
	"dur":  func(d time.Duration) string { return human(d) },
	"json": func(e *audit.Entry) (string, error) { b, err := e.MarshalJSON(); return string(b), err },
	"f":    func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"has": func(m map[uint64]bool, k uint64) bool {
		return m[k]
	},
	"deref": func(p *int64) string {
		if p == nil {
			return "unlimited"
		}
		return strconv.FormatInt(*p, 10)
	},
}

// human prints a duration for people, to its two largest units.
func human(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm %ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}
