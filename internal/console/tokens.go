package console

import (
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// The token list shows at most listPage (100) matches, reading at most
// listScan records of the store for the filters it applies itself
// (scope, expiring, never used, idle); the page then ends early and the
// next link goes on from where it stopped.
const (
	listPage  = 100
	listBatch = 200
	listScan  = 2000
)

type tokenRow struct {
	Rec      *token.Record
	Expiring bool
}

type tokensView struct {
	Filter  tokenFilter
	Rows    []tokenRow
	Next    template.URL // query of the next page ("" when none)
	Scanned int
	Now     time.Time
	Issued  *issuedView
}

// issuedView is a secret shown once: in the answer to the POST that made
// it, never stored, never in a URL.
type issuedView struct {
	What   string
	ID     string
	Secret string
}

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request, cl *call) {
	f, err := parseTokenFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, cl.v, http.StatusBadRequest, err.Error())
		return
	}
	v, err := c.listTokens(r, cl, f)
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	c.render(w, r, "tokens", page{Title: "Tokens", Nav: "tokens", V: cl.v, Data: v})
}

// listTokens reads one page of the tokens the caller may see that match f.
func (c *Console) listTokens(r *http.Request, cl *call, f tokenFilter) (*tokensView, error) {
	now := c.opts.Now()
	v := &tokensView{Filter: f, Now: now}
	after, more := f.After, false
	status := f.Status
	if f.Expiring && status == "" {
		status = token.StatusActive // only an active token is expiring: the store filters
	}
	for {
		recs, next, err := c.auth.List(r.Context(), cl.ac, store.TokenFilter{Subject: f.Subject, Status: status, After: after, Limit: listBatch})
		if err != nil {
			return nil, err
		}
		full := false
		for i, rec := range recs {
			v.Scanned++
			after = rec.ID
			if f.match(rec, now) {
				v.Rows = append(v.Rows, tokenRow{Rec: rec, Expiring: rec.ExpiresAt.Sub(now) < 24*time.Hour})
			}
			if len(v.Rows) == listPage {
				full, more = true, i < len(recs)-1 || next != ""
				break
			}
		}
		if full || next == "" {
			break
		}
		if v.Scanned >= listScan {
			more = true
			break
		}
	}
	if more {
		q := f.Values()
		q.Set("after", after)
		v.Next = template.URL(q.Encode())
	}
	return v, nil
}

// match applies the filters the store does not.
func (f tokenFilter) match(rec *token.Record, now time.Time) bool {
	if f.Scope != "" && !slices.Contains(rec.Scopes, f.Scope) {
		return false
	}
	if f.Expiring && (rec.Status != token.StatusActive || !now.Before(rec.ExpiresAt) || rec.ExpiresAt.Sub(now) >= 24*time.Hour) {
		return false
	}
	if f.NeverUse && !rec.LastUsedAt.IsZero() {
		return false
	}
	if f.Idle > 0 {
		last := rec.LastUsedAt
		if last.IsZero() {
			last = rec.CreatedAt
		}
		if now.Sub(last) < f.Idle {
			return false
		}
	}
	return true
}

type tokenView struct {
	Rec      *token.Record
	Children []*token.Record
	More     bool
	Now      time.Time
	Issued   *issuedView
	Flash    string
	Self     bool
	CanAudit bool
}

func (c *Console) tokenPage(w http.ResponseWriter, r *http.Request, cl *call) {
	c.showToken(w, r, cl, r.PathValue("id"), nil, "")
}

func (c *Console) showToken(w http.ResponseWriter, r *http.Request, cl *call, id string, issued *issuedView, flash string) {
	rec, err := c.auth.Get(r.Context(), cl.ac, id)
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	kids, next, err := c.auth.List(r.Context(), cl.ac, store.TokenFilter{ParentID: id, Limit: 50})
	if err != nil && !errors.Is(err, authority.ErrForbidden) {
		c.failErr(w, r, cl.v, err)
		return
	}
	c.render(w, r, "token", page{Title: "Token " + rec.ID, Nav: "tokens", V: cl.v, Flash: flash,
		Data: tokenView{Rec: rec, Children: kids, More: next != "", Now: c.opts.Now(), Issued: issued, Self: rec.ID == cl.ac.Token.ID, CanAudit: cl.v.Can(scope.AdminAudit)}})
}

// createToken issues a token from the list page's form (subject, scopes,
// ttl): attenuated by the authority as any POST /v1/tokens.
func (c *Console) createToken(w http.ResponseWriter, r *http.Request, cl *call) {
	f := r.PostForm
	spec := authority.Spec{Subject: strings.TrimSpace(f.Get("subject")), Scopes: strings.Fields(strings.ReplaceAll(f.Get("scopes"), ",", " "))}
	if s := strings.TrimSpace(f.Get("ttl")); s != "" {
		d, err := parseDays(s)
		if err != nil {
			c.fail(w, r, cl.v, http.StatusBadRequest, "ttl: "+err.Error())
			return
		}
		spec.TTL = d
	}
	if len(spec.Scopes) == 0 || spec.Subject == "" {
		c.fail(w, r, cl.v, http.StatusBadRequest, "A new token needs a subject and at least one scope.")
		return
	}
	secret, rec, err := c.auth.Create(r.Context(), cl.ac, spec)
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	c.log.Info("token created", "request_id", requestID(r), "token_id", rec.ID, "by", cl.ac.Token.ID, "via", "console")
	c.showToken(w, r, cl, rec.ID, &issuedView{What: "created", ID: rec.ID, Secret: secret}, "")
}

// tokenAction performs one change of a token's detail page.
func (c *Console) tokenAction(w http.ResponseWriter, r *http.Request, cl *call) {
	id, f := r.PathValue("id"), r.PostForm
	reason := strings.TrimSpace(f.Get("reason"))
	if len(reason) > 256 {
		c.fail(w, r, cl.v, http.StatusBadRequest, "reason: at most 256 characters")
		return
	}
	ctx := r.Context()
	switch r.PathValue("action") {
	case "revoke":
		cascade := f.Get("cascade") != ""
		ids, err := c.auth.Revoke(ctx, cl.ac, id, cascade, reason)
		if err != nil {
			c.failErr(w, r, cl.v, err)
			return
		}
		c.log.Info("token revoked", "request_id", requestID(r), "token_id", id, "by", cl.ac.Token.ID, "cascade", cascade, "via", "console")
		if id == cl.ac.Token.ID || slices.Contains(ids, cl.ac.Token.ID) {
			c.sess.end(cl.ss)
			c.clearSession(w)
			c.renderStatus(w, r, http.StatusOK, "login", page{Title: "Log in", Flash: "Your own token is revoked; your session has ended.", Data: c.loginData(w)})
			return
		}
		c.showToken(w, r, cl, id, nil, "Revoked "+plural(len(ids), "token")+".")
	case "suspend", "reinstate":
		st := token.StatusSuspended
		if r.PathValue("action") == "reinstate" {
			st = token.StatusActive
		}
		if _, err := c.auth.SetStatus(ctx, cl.ac, id, st, reason); err != nil {
			c.failErr(w, r, cl.v, err)
			return
		}
		c.showToken(w, r, cl, id, nil, "The token is now "+string(st)+".")
	case "rotate":
		rot, err := c.auth.RotateWith(ctx, cl.ac, id, authority.RotateRequest{})
		if err != nil {
			c.failErr(w, r, cl.v, err)
			return
		}
		if id == cl.ac.Token.ID {
			// the session's own token: it goes on with the new secret
			// rather than end with the old one's grace
			if err := c.sess.reseal(cl.ss, rot.Secret); err != nil {
				c.sess.end(cl.ss)
			}
		}
		c.showToken(w, r, cl, id, &issuedView{What: "rotated", ID: id, Secret: rot.Secret},
			"The previous secret works until "+rot.PreviousNotAfter.UTC().Format(time.RFC3339)+".")
	case "narrow":
		keep := f["keep"]
		if len(keep) == 0 {
			c.fail(w, r, cl.v, http.StatusBadRequest, "Keep at least one scope (to end the token, revoke it).")
			return
		}
		_, _, err := c.auth.Update(ctx, cl.ac, id, 0, func(rec *token.Record) error {
			var kept []string
			for _, s := range rec.Scopes {
				if slices.Contains(keep, s) {
					kept = append(kept, s)
				}
			}
			if len(kept) != len(keep) {
				return errNotNarrowing
			}
			rec.Scopes = kept
			return nil
		})
		if errors.Is(err, errNotNarrowing) {
			c.fail(w, r, cl.v, http.StatusBadRequest, "Narrowing only removes scopes; to add one, issue a new token.")
			return
		}
		if err != nil {
			c.failErr(w, r, cl.v, err)
			return
		}
		c.showToken(w, r, cl, id, nil, "Scopes narrowed.")
	default:
		c.fail(w, r, cl.v, http.StatusNotFound, "There is no such action.")
	}
}

var errNotNarrowing = errors.New("console: narrowing may only remove scopes")

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return itoa(n) + " " + what + "s"
}
