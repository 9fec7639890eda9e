package console

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/token"
)

// The console's form parsers. Each refuses what it does not know with a
// *FormError naming the field, bounds every value, and never panics (each
// has a fuzz test).

// FormError is a bad form field.
type FormError struct {
	Field, Msg string
}

func (e *FormError) Error() string { return e.Field + ": " + e.Msg }

const maxField = 256

// fieldName is how an error names field k (a query may hold an empty one).
func fieldName(k string) string {
	if k == "" {
		return "(unnamed field)"
	}
	return cut(k, 32)
}

// tokenFilter is the token list's filter form.
type tokenFilter struct {
	Subject  string
	Status   token.Status
	Scope    string
	Expiring bool          // expires within the next 24 hours
	NeverUse bool          // never used
	Idle     time.Duration // not used for at least this long (0: no filter)
	After    string        // the store's cursor
}

// Values encodes f as the list page's query (for paging links).
func (f tokenFilter) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("subject", f.Subject)
	set("status", string(f.Status))
	set("scope", f.Scope)
	if f.Expiring {
		v.Set("expiring", "1")
	}
	if f.NeverUse {
		v.Set("never_used", "1")
	}
	if f.Idle > 0 {
		v.Set("idle", fmtDays(f.Idle))
	}
	return v
}

func fmtDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

var tokenFilterKeys = map[string]bool{"subject": true, "status": true, "scope": true, "expiring": true, "never_used": true, "idle": true, "after": true}

// parseTokenFilter parses the token list's query. Empty values do not
// filter (an empty form field is sent as one).
func parseTokenFilter(v url.Values) (tokenFilter, error) {
	var f tokenFilter
	for k, vals := range v {
		if !tokenFilterKeys[k] {
			return f, &FormError{fieldName(k), "unknown field"}
		}
		if len(vals) > 1 {
			return f, &FormError{k, "given more than once"}
		}
		if len(vals[0]) > maxField {
			return f, &FormError{k, "too long"}
		}
	}
	f.Subject = strings.TrimSpace(v.Get("subject"))
	f.Scope = strings.TrimSpace(v.Get("scope"))
	f.After = v.Get("after")
	if f.After != "" && !token.ValidID(f.After) {
		return f, &FormError{"after", "not a cursor of a previous page"}
	}
	if s := v.Get("status"); s != "" {
		if !token.Status(s).Valid() {
			return f, &FormError{"status", "want active, suspended or revoked"}
		}
		f.Status = token.Status(s)
	}
	var err error
	if f.Expiring, err = checkbox("expiring", v.Get("expiring")); err != nil {
		return f, err
	}
	if f.NeverUse, err = checkbox("never_used", v.Get("never_used")); err != nil {
		return f, err
	}
	if s := strings.TrimSpace(v.Get("idle")); s != "" {
		if f.Idle, err = parseDays(s); err != nil {
			return f, &FormError{"idle", err.Error()}
		}
	}
	return f, nil
}

func checkbox(field, s string) (bool, error) {
	switch s {
	case "":
		return false, nil
	case "1", "on", "true":
		return true, nil
	}
	return false, &FormError{field, "want 1 or nothing"}
}

// parseDays parses "7d", "12h" or "90m": a positive duration of at most
// ten years.
func parseDays(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > 3650 || strconv.Itoa(days) != n {
			return 0, errors.New("want a number of days such as 7d, or a duration such as 12h")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 || d > 3650*24*time.Hour {
			return 0, errors.New("want a number of days such as 7d, or a duration such as 12h")
		}
	}
	return d, nil
}

// The form of a datetime-local input, and what it may also send.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"}

// parseFormTime parses a time field: RFC 3339, or a datetime-local value
// (no zone: UTC, as the page says), or a date (its midnight UTC).
func parseFormTime(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if len(s) > 64 {
		return time.Time{}, &FormError{field, "too long"}
	}
	for _, l := range timeLayouts {
		t, err := time.Parse(l, s)
		if err == nil {
			if t.Year() < 1970 || t.Year() > 2261 {
				return time.Time{}, &FormError{field, "out of range"}
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, &FormError{field, "want a time such as 2026-01-02T15:04 (UTC) or RFC 3339"}
}

// parseRange parses a from/to pair: from inclusive, to exclusive, to after
// from when both are given.
func parseRange(from, to string) (time.Time, time.Time, error) {
	f, err := parseFormTime("from", from)
	if err != nil {
		return f, f, err
	}
	t, err := parseFormTime("to", to)
	if err != nil {
		return f, t, err
	}
	if !f.IsZero() && !t.IsZero() && !t.After(f) {
		return f, t, &FormError{"to", "must be after from"}
	}
	return f, t, nil
}

// auditForm is the audit explorer's search form, mapped onto audit.Query.
type auditForm struct {
	Subject, Token, Patient, Action, Outcome, Upstream, From, To, Order string
}

var auditFormKeys = map[string]bool{"subject": true, "token_id": true, "patient": true, "action": true, "outcome": true, "upstream": true,
	"from": true, "to": true, "order": true, "after": true, "before": true}

// parseAuditForm parses the explorer's query into the form (to show it
// again) and the audit.Query it asks for (limit: limit).
func parseAuditForm(v url.Values, limit int) (auditForm, *audit.Query, error) {
	var f auditForm
	for k, vals := range v {
		if !auditFormKeys[k] {
			return f, nil, &FormError{fieldName(k), "unknown field"}
		}
		if len(vals) > 1 {
			return f, nil, &FormError{k, "given more than once"}
		}
		if len(vals[0]) > maxField {
			return f, nil, &FormError{k, "too long"}
		}
	}
	tr := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	f = auditForm{Subject: tr("subject"), Token: tr("token_id"), Patient: tr("patient"), Action: tr("action"), Outcome: tr("outcome"),
		Upstream: tr("upstream"), From: tr("from"), To: tr("to"), Order: tr("order")}
	q := &audit.Query{Subject: f.Subject, TokenID: f.Token, Patient: f.Patient, Upstream: f.Upstream, Limit: limit, Desc: true}
	if f.Action != "" {
		if !audit.Action(f.Action).Known() {
			return f, nil, &FormError{"action", fmt.Sprintf("unknown action %q", cut(f.Action, 64))}
		}
		q.Actions = []audit.Action{audit.Action(f.Action)}
	}
	if f.Outcome != "" {
		if q.Outcome = audit.Outcome(f.Outcome); !q.Outcome.Valid() {
			return f, nil, &FormError{"outcome", "want success, denied or failure"}
		}
	}
	switch f.Order {
	case "", "desc":
	case "asc":
		q.Desc = false
	default:
		return f, nil, &FormError{"order", "want asc or desc"}
	}
	var err error
	if q.From, q.To, err = parseRange(f.From, f.To); err != nil {
		return f, nil, err
	}
	for _, k := range []string{"after", "before"} {
		s := v.Get(k)
		if s == "" {
			continue
		}
		if q.HasCursor {
			return f, nil, &FormError{k, "give either after or before"}
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || strconv.FormatUint(n, 10) != s {
			return f, nil, &FormError{k, "not a cursor of a previous page"}
		}
		if (k == "before") != q.Desc {
			return f, nil, &FormError{k, "does not match the order"}
		}
		q.Cursor, q.HasCursor = n, true
	}
	return f, q, nil
}

// Values encodes the form (without a cursor) for links.
func (f auditForm) Values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"subject": f.Subject, "token_id": f.Token, "patient": f.Patient, "action": f.Action,
		"outcome": f.Outcome, "upstream": f.Upstream, "from": f.From, "to": f.To, "order": f.Order} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}
