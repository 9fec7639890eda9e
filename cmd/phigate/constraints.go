package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/phigate/phigate/pkg/client"
)

// constraintFlags are the scope and constraint flags shared by
// `token create` and `token update`.
type constraintFlags struct {
	fs *pflag.FlagSet

	scopes          []string
	ttl             string
	idle            string
	grace           string
	maxLifetime     string // create only
	cidrs           []string
	hours, tz       string
	days            []string
	rate            string
	burst           int
	maxUses         int64
	purposes        []string
	purposeRequired bool
	kind            string // create only
	patient         string
	breakGlass      bool
	subjectPrefix   string
	meta            []string
}

func addConstraintFlags(fs *pflag.FlagSet, create bool) *constraintFlags {
	f := &constraintFlags{fs: fs}
	fs.StringArrayVar(&f.scopes, "scope", nil, "scope the token grants, e.g. patient/Observation.rs (repeatable)")
	fs.StringVar(&f.ttl, "ttl", "", "time to live, e.g. 15m or 8h (server default when not given)")
	fs.StringVar(&f.idle, "idle", "", "idle timeout: the token stops working after this long unused")
	fs.StringVar(&f.grace, "grace", "", "how long the previous secret keeps working after a rotation, e.g. 5m (default 0, at most --ttl)")
	fs.StringSliceVar(&f.cidrs, "cidr", nil, "source network allowed to use the token, e.g. 10.0.0.0/8 (repeatable)")
	fs.StringVar(&f.hours, "hours", "", "daily window of use, HH:MM-HH:MM (needs --tz)")
	fs.StringVar(&f.tz, "tz", "", "IANA time zone of --hours, e.g. America/New_York")
	fs.StringSliceVar(&f.days, "days", nil, "weekdays of --hours, e.g. Mon,Tue or Mon-Fri (default every day)")
	fs.StringVar(&f.rate, "rate", "", "rate limit N/s, N/m or N/h, e.g. 10/s or 600/m")
	fs.IntVar(&f.burst, "burst", 0, "burst of --rate (default one second's worth, at least 1)")
	fs.Int64Var(&f.maxUses, "max-uses", 0, "number of requests the token may make in all")
	fs.StringSliceVar(&f.purposes, "purpose", nil, "purpose of use accepted, e.g. TREAT (repeatable)")
	fs.BoolVar(&f.purposeRequired, "purpose-required", false, "every request must state a purpose of use")
	fs.StringVar(&f.patient, "patient", "", "restrict the token to one patient's compartment")
	fs.BoolVar(&f.breakGlass, "break-glass", false, "the token may be used for break-glass access")
	fs.StringVar(&f.subjectPrefix, "subject-prefix", "", "the token may only issue tokens whose subject starts with this, e.g. team-a/ (update: narrow only)")
	fs.StringArrayVar(&f.meta, "meta", nil, "metadata key=value (repeatable)")
	if create {
		fs.StringVar(&f.maxLifetime, "max-lifetime", "", "longest the token may live, rotations included, e.g. 720h (never past its issuer's end)")
		fs.StringVar(&f.kind, "kind", "", "kind of token: user, service or admin")
	}
	return f
}

func (f *constraintFlags) set(name string) bool {
	fl := f.fs.Lookup(name)
	return fl != nil && fl.Changed
}

func checkDuration(flag, v string) error {
	if _, err := time.ParseDuration(v); err != nil {
		return fmt.Errorf("--%s %s: want a duration such as 15m, 8h or 1h30m", flag, quote(v))
	}
	return nil
}

// common checks and converts what create and update share. Its results are
// meaningful only for the flags that were given.
type common struct {
	hours    *client.Hours
	rate     *client.Rate
	metadata map[string]string
}

func (f *constraintFlags) common() (common, error) {
	var c common
	for _, d := range []struct{ flag, v string }{{"ttl", f.ttl}, {"idle", f.idle}, {"grace", f.grace}, {"max-lifetime", f.maxLifetime}} {
		if f.set(d.flag) {
			if err := checkDuration(d.flag, d.v); err != nil {
				return c, err
			}
		}
	}
	if f.set("hours") {
		h, err := parseHoursFlags(f.hours, f.tz, f.days)
		if err != nil {
			return c, err
		}
		c.hours = h
	} else if f.set("tz") || f.set("days") {
		return c, errors.New("--tz and --days qualify --hours: give --hours too")
	}
	if f.set("rate") {
		ps, err := parseRate(f.rate)
		if err != nil {
			return c, err
		}
		burst := defaultBurst(ps)
		if f.set("burst") {
			if f.burst < 1 {
				return c, fmt.Errorf("--burst %d: must be at least 1", f.burst)
			}
			burst = f.burst
		}
		c.rate = &client.Rate{PerSecond: ps, Burst: burst}
	} else if f.set("burst") {
		return c, errors.New("--burst qualifies --rate: give --rate too")
	}
	if f.set("max-uses") && f.maxUses < 1 {
		return c, fmt.Errorf("--max-uses %d: must be at least 1", f.maxUses)
	}
	if f.set("kind") {
		switch f.kind {
		case "user", "service", "admin":
		default:
			return c, fmt.Errorf("--kind %s: want user, service or admin", quote(f.kind))
		}
	}
	if f.set("subject-prefix") && strings.TrimSpace(f.subjectPrefix) == "" {
		return c, errors.New("--subject-prefix: give the prefix the subjects must start with, e.g. team-a/")
	}
	if f.set("meta") {
		m, err := parseMeta(f.meta)
		if err != nil {
			return c, err
		}
		c.metadata = m
	}
	return c, nil
}

// createRequest builds the body of `token create`.
func (f *constraintFlags) createRequest(subject string) (client.CreateTokenRequest, error) {
	if strings.TrimSpace(subject) == "" {
		return client.CreateTokenRequest{}, errors.New("--subject is required: whom or what the token is for")
	}
	if len(f.scopes) == 0 {
		return client.CreateTokenRequest{}, errors.New("--scope is required (repeatable), e.g. --scope patient/Observation.rs")
	}
	c, err := f.common()
	if err != nil {
		return client.CreateTokenRequest{}, err
	}
	req := client.CreateTokenRequest{
		Subject:         subject,
		Kind:            f.kind,
		Scopes:          f.scopes,
		TTL:             f.ttl,
		MaxLifetime:     f.maxLifetime,
		IdleTimeout:     f.idle,
		Grace:           f.grace,
		CIDRs:           f.cidrs,
		Hours:           c.hours,
		Rate:            c.rate,
		Purposes:        f.purposes,
		PurposeRequired: f.purposeRequired,
		PatientID:       f.patient,
		BreakGlass:      f.breakGlass,
		SubjectPrefix:   f.subjectPrefix,
	}
	if f.set("max-uses") {
		n := f.maxUses
		req.MaxUses = &n
	}
	if len(c.metadata) > 0 {
		req.Metadata = c.metadata
	}
	return req, nil
}

// clearNames maps the names --clear accepts (the API's, and the flags'
// for convenience) to the API's.
var clearNames = map[string]string{
	"idle_timeout": "idle_timeout", "idle": "idle_timeout",
	"max_uses": "max_uses", "max-uses": "max_uses",
	"cidrs": "cidrs", "cidr": "cidrs",
	"hours":    "hours",
	"rate":     "rate",
	"purposes": "purposes", "purpose": "purposes",
	"patient_id": "patient_id", "patient": "patient_id",
	"metadata": "metadata", "meta": "metadata",
}

// clearFlag is the flag that sets each clearable constraint.
var clearFlag = map[string]string{
	"idle_timeout": "idle", "max_uses": "max-uses", "cidrs": "cidr", "hours": "hours",
	"rate": "rate", "purposes": "purpose", "patient_id": "patient", "metadata": "meta",
}

// updateRequest builds the body of `token update`: only the flags given.
func (f *constraintFlags) updateRequest(clear []string, revision int64, expiresAt string) (client.UpdateTokenRequest, error) {
	var req client.UpdateTokenRequest
	c, err := f.common()
	if err != nil {
		return req, err
	}
	changed := false
	mark := func(name string) bool {
		if f.set(name) {
			changed = true
			return true
		}
		return false
	}
	if mark("scope") {
		s := f.scopes
		req.Scopes = &s
	}
	if mark("ttl") {
		v := f.ttl
		req.TTL = &v
	}
	if mark("idle") {
		v := f.idle
		req.IdleTimeout = &v
	}
	if mark("grace") {
		v := f.grace
		req.Grace = &v
	}
	if mark("max-uses") {
		v := f.maxUses
		req.MaxUses = &v
	}
	if mark("cidr") {
		v := f.cidrs
		req.CIDRs = &v
	}
	if mark("hours") {
		req.Hours = c.hours
	}
	if mark("rate") {
		req.Rate = c.rate
	}
	if mark("purpose") {
		v := f.purposes
		req.Purposes = &v
	}
	if mark("purpose-required") {
		v := f.purposeRequired
		req.PurposeRequired = &v
	}
	if mark("patient") {
		v := f.patient
		req.PatientID = &v
	}
	if mark("break-glass") {
		v := f.breakGlass
		req.BreakGlass = &v
	}
	if mark("subject-prefix") {
		v := f.subjectPrefix
		req.SubjectPrefix = &v
	}
	if mark("meta") {
		m := c.metadata
		req.Metadata = &m
	}
	if expiresAt != "" {
		t, err := time.Parse(time.RFC3339, expiresAt)
		if err != nil {
			return req, fmt.Errorf("--expires-at %s: want an RFC 3339 time such as 2026-03-01T17:00:00Z", quote(expiresAt))
		}
		if f.set("ttl") {
			return req, errors.New("--expires-at and --ttl both set the expiry: give one")
		}
		t = t.UTC()
		req.ExpiresAt = &t
		changed = true
	}
	seen := map[string]bool{}
	for _, name := range clear {
		api, ok := clearNames[strings.ToLower(strings.TrimSpace(name))]
		if !ok {
			return req, fmt.Errorf("--clear %s: want one of idle_timeout, max_uses, cidrs, hours, rate, purposes, patient_id, metadata", quote(name))
		}
		if f.set(clearFlag[api]) {
			return req, fmt.Errorf("--clear %s and --%s contradict each other", api, clearFlag[api])
		}
		if !seen[api] {
			seen[api] = true
			req.Clear = append(req.Clear, api)
		}
		changed = true
	}
	if !changed {
		return req, errors.New("nothing to update: give at least one constraint flag or --clear")
	}
	req.Revision = revision
	return req, nil
}
