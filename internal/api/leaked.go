package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

// The limits of POST /v1/tokens/leaked.
const (
	maxLeaks     = client.MaxLeaks // tokens in one report
	maxLeakBody  = 1 << 20         // bytes of one report (or MaxBody, if smaller)
	maxLeakWhere = 512             // bytes of a "where", kept; longer is cut
	maxLeakSrc   = 128             // bytes of a "source", kept; longer is cut
)

// leakEntry is one reported token. ok is false for an entry that is not a
// string or a {"token","where"} object: it is answered invalid_checksum.
type leakEntry struct {
	secret, where string
	ok            bool
}

// leakObject is the object form of a report.
type leakObject struct {
	Tokens *[]json.RawMessage `json:"tokens"`
	Source string             `json:"source"`
}

type leakItem struct {
	Token string `json:"token"`
	Where string `json:"where"`
}

// parseLeakReport parses the body of POST /v1/tokens/leaked: a bare JSON
// array of token strings, or {"tokens":[{"token","where"}|"phi_…",…],
// "source"}. A body that is neither (or has more than maxLeaks entries) is
// a 400; an entry of the wrong shape is kept, not ok, so that it is
// answered per entry. where and source come back cleaned (see
// cleanLeakText).
func parseLeakReport(body []byte) ([]leakEntry, string, *apiError) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, "", badRequest("", "a JSON body is required: a list of tokens, or {\"tokens\": [...]}")
	}
	var raw []json.RawMessage
	var source string
	switch body[0] {
	case '[':
		if e := decodeStrict(body, &raw); e != nil {
			return nil, "", e
		}
	case '{':
		var o leakObject
		if e := decodeStrict(body, &o); e != nil {
			return nil, "", e
		}
		if o.Tokens == nil {
			return nil, "", badRequest("tokens", "tokens: required")
		}
		raw, source = *o.Tokens, cleanLeakText(o.Source, maxLeakSrc)
	default:
		return nil, "", badRequest("", "the body must be a JSON list of tokens or an object {\"tokens\": [...]}")
	}
	if len(raw) > maxLeaks {
		return nil, "", badRequest("tokens", "tokens: %d in one report, the limit is %d", len(raw), maxLeaks)
	}
	out := make([]leakEntry, len(raw))
	for i, m := range raw {
		m = bytes.TrimSpace(m)
		if len(m) == 0 {
			continue
		}
		switch m[0] {
		case '"':
			var s string
			if json.Unmarshal(m, &s) == nil {
				out[i] = leakEntry{secret: s, ok: true}
			}
		case '{':
			var it leakItem
			dec := json.NewDecoder(bytes.NewReader(m))
			dec.DisallowUnknownFields()
			if dec.Decode(&it) == nil {
				out[i] = leakEntry{secret: it.Token, where: cleanLeakText(it.Where, maxLeakWhere), ok: true}
			}
		}
	}
	return out, source, nil
}

// cleanLeakText makes a reporter's free text safe to keep: anything of
// token shape redacted (a "where" may quote the line the token was on),
// control characters replaced, invalid UTF-8 replaced, at most n bytes.
func cleanLeakText(s string, n int) string {
	if s == "" {
		return ""
	}
	s = audit.Redact(s)
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// reportLeaked is POST /v1/tokens/leaked: every reported secret the store
// knows is revoked at once (with ?cascade=true, the tokens it issued too),
// audited (token.revoked, reason leaked, found_at), and raises a leak
// alert (high; critical for an admin token). The answer lists, in request
// order, each secret's keyed-hash fingerprint, token id and status; the
// secret itself is never echoed, logged or audited.
func (s *Server) reportLeaked(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	cascade := false
	if c := r.URL.Query().Get("cascade"); c != "" {
		var err error
		if cascade, err = strconv.ParseBool(c); err != nil {
			s.writeError(w, r, badRequest("cascade", "cascade: want true or false"))
			return
		}
	}
	if e := checkContentType(r, "application/json"); e != nil {
		s.writeError(w, r, e)
		return
	}
	body, e := readBodyLimit(w, r, min(s.opts.MaxBody, maxLeakBody))
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	entries, source, e := parseLeakReport(body)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	out := client.LeakResults{Results: make([]client.LeakResult, len(entries))}
	for i, le := range entries {
		res := &out.Results[i]
		if !le.ok {
			res.Status = client.LeakInvalidChecksum
			continue
		}
		l, err := s.auth.RevokeLeaked(r.Context(), ac, le.secret, le.where, cascade)
		if err != nil {
			// nothing after this entry was looked at: fail the report
			// rather than answer a partial list the caller might trust
			s.log.Error("leaked token: revocation failed", "request_id", requestID(r), "entry", i, "err", err)
			s.writeError(w, r, err)
			return
		}
		res.Status, res.Fingerprint = string(l.Status), l.Fingerprint
		if l.Record != nil {
			res.TokenID = l.Record.ID
		}
		if l.Status != authority.LeakRevoked {
			continue
		}
		s.log.Warn("leaked token revoked", "request_id", requestID(r), "token_id", l.Record.ID,
			"subject", l.Record.Subject, "where", le.where, "by", ac.Token.ID, "revoked", l.Revoked)
		s.raiseLeak(r, ac, l, le.where, source)
	}
	writeJSON(w, http.StatusOK, out)
}

// raiseLeak raises the leak alert for l through the monitor's sinks
// (audit, store, webhook, log). Its failure does not undo the revocation:
// it is logged.
func (s *Server) raiseLeak(r *http.Request, ac authority.Actor, l authority.Leak, where, source string) {
	if s.opts.AlertSink == nil {
		return
	}
	sev := monitor.High
	if l.Record.Kind == token.KindAdmin {
		sev = monitor.Critical
	}
	at := where
	if at == "" {
		at = "an unnamed place"
	}
	ev := map[string]any{"fingerprint": l.Fingerprint, "reported_by": ac.Token.ID, "revoked": l.Revoked}
	if where != "" {
		ev["where"] = where
	}
	if source != "" {
		ev["source"] = source
	}
	a := &monitor.Alert{
		Detector: monitor.DetectorLeak, Severity: sev, TokenID: l.Record.ID, Subject: l.Record.Subject,
		Summary:  "token " + l.Record.ID + " of " + l.Record.Subject + " was found at " + at + " and revoked",
		Evidence: ev, Action: monitor.Revoked, At: s.auth.Config().Now().UTC(),
	}
	if err := s.opts.AlertSink.Raise(r.Context(), a); err != nil {
		s.log.Error("leaked token: the alert could not be raised", "request_id", requestID(r), "token_id", l.Record.ID, "err", err)
	}
}
