package console

import (
	"errors"
	"net/url"
	"testing"
	"time"
)

// The form parsers take any query: a clear *FormError (or a result), and
// what they accept is within their bounds.

func FuzzParseTokenFilter(f *testing.F) {
	for _, s := range []string{"", "subject=lab&status=active", "scope=admin:audit&expiring=1&never_used=1&idle=7d",
		"idle=12h", "idle=0d", "idle=-1h", "idle=99999d", "status=bogus", "after=tok_x", "x=1", "subject=a&subject=b", "expiring=yes"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		tf, err := parseTokenFilter(v)
		if err != nil {
			var fe *FormError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("%q: error %v is not a FormError", raw, err)
			}
			return
		}
		if tf.Idle < 0 || tf.Idle > 3650*24*time.Hour || len(tf.Subject) > maxField || (tf.Status != "" && !tf.Status.Valid()) {
			t.Fatalf("%q: out of bounds: %+v", raw, tf)
		}
		// what it accepted, encoded again, parses to the same filter
		again, err := parseTokenFilter(tf.Values())
		if err != nil || again.Subject != tf.Subject || again.Status != tf.Status || again.Scope != tf.Scope ||
			again.Expiring != tf.Expiring || again.NeverUse != tf.NeverUse || again.Idle != tf.Idle {
			t.Fatalf("%q: round trip %+v -> %+v (%v)", raw, tf, again, err)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, p := range [][2]string{{"", ""}, {"2026-01-02T15:04", "2026-01-03"}, {"2026-01-02T15:04:05Z", "2026-01-02T15:04:05+02:00"},
		{"2026-01-03", "2026-01-02"}, {"1969-12-31", ""}, {"9999-01-01", ""}, {"2026-02-30", ""}, {"now", "later"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, from, to string) {
		a, b, err := parseRange(from, to)
		if err != nil {
			var fe *FormError
			if !errors.As(err, &fe) || (fe.Field != "from" && fe.Field != "to") {
				t.Fatalf("%q %q: error %v", from, to, err)
			}
			return
		}
		for _, x := range []time.Time{a, b} {
			if !x.IsZero() && (x.Year() < 1970 || x.Year() > 2261 || x.Location() != time.UTC) {
				t.Fatalf("%q %q: %v out of range", from, to, x)
			}
		}
		if !a.IsZero() && !b.IsZero() && !b.After(a) {
			t.Fatalf("%q %q: to not after from", from, to)
		}
	})
}

func FuzzParseAuditForm(f *testing.F) {
	for _, s := range []string{"", "patient=pat-1", "subject=a&token_id=tok_1&action=access.granted&outcome=denied&upstream=fhir",
		"from=2026-01-01T00:00&to=2026-01-02T00:00&order=asc&after=5", "before=7", "order=asc&before=7", "after=1&before=2",
		"after=01", "action=nope", "outcome=maybe", "limit=5", "order=sideways"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		form, q, err := parseAuditForm(v, explorerPage)
		if err != nil {
			var fe *FormError
			if !errors.As(err, &fe) {
				t.Fatalf("%q: error %v is not a FormError", raw, err)
			}
			return
		}
		if q.Limit != explorerPage || (q.Outcome != "" && !q.Outcome.Valid()) || len(q.Actions) > 1 {
			t.Fatalf("%q: %+v", raw, q)
		}
		for _, a := range q.Actions {
			if !a.Known() {
				t.Fatalf("%q: unknown action accepted", raw)
			}
		}
		if _, q2, err := parseAuditForm(form.Values(), explorerPage); err != nil || q2.Desc != q.Desc || !q2.From.Equal(q.From) || !q2.To.Equal(q.To) {
			t.Fatalf("%q: the form shown again does not parse to the same search: %v", raw, err)
		}
	})
}

func FuzzDisclosureQuery(f *testing.F) {
	for _, s := range []string{"patient=pat-1", "patient=p&from=2026-01-01&to=2026-02-01", "patient=p&patient=q", "who=x", "to=2026-01-01&from=2026-02-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		patient, _, _, q, err := disclosureQuery(v)
		if err != nil {
			var fe *FormError
			if !errors.As(err, &fe) {
				t.Fatalf("%q: error %v", raw, err)
			}
			return
		}
		if q.Patient != patient || len(q.Actions) != 2 || len(patient) > maxField {
			t.Fatalf("%q: %+v", raw, q)
		}
	})
}
