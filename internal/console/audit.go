package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"golang.org/x/mod/sumdb/note"
)

// Bounds of the audit pages.
const (
	explorerPage   = 100   // entries per explorer page
	disclosureMax  = 1000  // entries of one accounting of disclosures
	exportMax      = 10000 // entries of one export
	proofBundleMax = 1000  // proofs in one downloadable proof file
)

// badge is the verification of the entries a page shows: each one's
// inclusion proof, fetched from the log and checked with only the log's
// public key against a signed checkpoint.
type badge struct {
	OK       bool
	Checked  int
	Size     uint64 // the checkpoint's tree size
	Origin   string
	Signed   time.Time
	Note     string // the checkpoint itself
	Problem  string
	Verified map[uint64]bool
}

// verifier returns the note verifier of the log's public key.
func (c *Console) verifier() (note.Verifier, error) {
	return audit.NewVerifier(c.opts.Audit.PublicKey())
}

// verify checks every entry's inclusion against the latest signed
// checkpoint (a fresh one is signed when the latest does not cover them
// all yet, as phigate audit prove does). The proven entry must be the one
// shown: same sequence number, time, action, outcome and actor.
func (c *Console) verify(ctx context.Context, entries []*audit.Entry) badge {
	b := badge{Verified: map[uint64]bool{}, Origin: c.opts.Audit.Origin()}
	if len(entries) == 0 {
		b.Problem = "no entries to verify"
		return b
	}
	key, err := c.verifier()
	if err != nil {
		b.Problem = "the log's public key cannot be used: " + err.Error()
		return b
	}
	// the bundles share their checkpoint: its signature is checked once
	v := &onceVerifier{Verifier: key, good: map[[32]byte]bool{}}
	seqs := make([]uint64, len(entries))
	for i, e := range entries {
		seqs[i] = e.Seq
	}
	// one batch: the tree nodes the proofs share are read once
	bundles, err := c.opts.Audit.Proofs(ctx, seqs)
	if err != nil {
		b.Problem = fmt.Sprintf("no proofs: %v", err)
		return b
	}
	for i, e := range entries {
		pe, cp, err := audit.VerifyBundle(bundles[i], v)
		if err != nil {
			b.Problem = fmt.Sprintf("entry %d: %v", e.Seq, err)
			return b
		}
		if pe.Seq != e.Seq || !pe.Time.Equal(e.Time) || pe.Action != e.Action || pe.Outcome != e.Outcome || pe.Actor != e.Actor {
			b.Problem = fmt.Sprintf("entry %d: the entry shown is not the entry proven", e.Seq)
			return b
		}
		b.Verified[e.Seq] = true
		b.Checked++
		if cp.Size > b.Size {
			b.Size, b.Signed, b.Note = cp.Size, cp.Time, string(cp.Note)
		}
	}
	if b.Signed.IsZero() {
		// the note does not carry its time; the log's record of it does
		if cp, err := c.opts.Audit.Checkpoint(ctx, false); err == nil && cp.Size == b.Size {
			b.Signed = cp.Time
		}
	}
	b.OK = true
	return b
}

// onceVerifier is a note.Verifier that checks each distinct (message,
// signature) once and remembers the signatures that verified, for one
// page's bundles (VerifyBundle stays the one verification path).
type onceVerifier struct {
	note.Verifier
	good map[[32]byte]bool
}

func (o *onceVerifier) Verify(msg, sig []byte) bool {
	h := sha256.New()
	h.Write(sig)
	h.Write([]byte{0})
	h.Write(msg)
	var k [32]byte
	h.Sum(k[:0])
	if o.good[k] {
		return true
	}
	ok := o.Verifier.Verify(msg, sig)
	if ok {
		o.good[k] = true
	}
	return ok
}

type auditView struct {
	Form     auditForm
	Entries  []*audit.Entry
	Badge    badge
	Next     template.URL
	Export   template.URL // the query of the export links
	Actions  []audit.Action
	Now      time.Time
	NoLog    bool
	CanToken bool
}

var actionList = []audit.Action{audit.ActionAccessGranted, audit.ActionAccessCompleted, audit.ActionAccessDenied, audit.ActionAuthFailed,
	audit.ActionBreakGlassUsed, audit.ActionTokenCreated, audit.ActionTokenUpdated, audit.ActionTokenRotated, audit.ActionTokenRevoked,
	audit.ActionTokenSuspended, audit.ActionTokenReinstated, audit.ActionAlertRaised, audit.ActionAlertAcked, audit.ActionIPBlocked,
	audit.ActionKeyRotated, audit.ActionConfigLoaded, audit.ActionServerStarted, audit.ActionServerStopped, audit.ActionAuditRead,
	audit.ActionAuditArchived}

// noLog answers a page of the audit log on a console without one.
func (c *Console) noLog(w http.ResponseWriter, r *http.Request, cl *call) bool {
	if c.opts.Audit != nil {
		return false
	}
	c.fail(w, r, cl.v, http.StatusServiceUnavailable, "This server has no audit log.")
	return true
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, cl *call) {
	if c.noLog(w, r, cl) {
		return
	}
	form, q, err := parseAuditForm(r.URL.Query(), explorerPage)
	if err != nil {
		c.fail(w, r, cl.v, http.StatusBadRequest, err.Error())
		return
	}
	v, err := c.explore(r, cl, form, q)
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	c.render(w, r, "audit", page{Title: "Audit log", Nav: "audit", V: cl.v, Data: v})
}

// explore runs one explorer page: the search, its verification, and the
// audit.read entry recording it (before anything is shown).
func (c *Console) explore(r *http.Request, cl *call, form auditForm, q *audit.Query) (*auditView, error) {
	pg, err := c.opts.Audit.Search(r.Context(), q)
	if err != nil {
		return nil, err
	}
	if err := c.recordRead(r, cl, "console:search"); err != nil {
		return nil, err
	}
	v := &auditView{Form: form, Entries: pg.Entries, Actions: actionList, Now: c.opts.Now(), Badge: c.verify(r.Context(), pg.Entries)}
	vals := form.Values()
	v.Export = template.URL(vals.Encode())
	if pg.Next != "" {
		k := "after"
		if q.Desc {
			k = "before"
		}
		vals.Set(k, pg.Next)
		v.Next = template.URL(vals.Encode())
	}
	return v, nil
}

// auditExport downloads the selection (at most exportMax entries) as JSON
// lines or as a FHIR Bundle of AuditEvents. It is built whole before a
// byte is sent: an error is an error page, never half a file.
func (c *Console) auditExport(w http.ResponseWriter, r *http.Request, cl *call) {
	if c.noLog(w, r, cl) {
		return
	}
	vals := r.URL.Query()
	format := vals.Get("format")
	vals.Del("format")
	if format != "jsonl" && format != "fhir" {
		c.fail(w, r, cl.v, http.StatusBadRequest, "format: want jsonl or fhir")
		return
	}
	_, q, err := parseAuditForm(vals, audit.MaxLimit)
	if err != nil {
		c.fail(w, r, cl.v, http.StatusBadRequest, err.Error())
		return
	}
	entries, more, err := c.collect(r.Context(), q, exportMax)
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	var b bytes.Buffer
	name := "phigate-audit.jsonl"
	ctype := "application/x-ndjson"
	switch format {
	case "jsonl":
		for _, e := range entries {
			if err := audit.WriteJSONL(&b, e); err != nil {
				c.failErr(w, r, cl.v, err)
				return
			}
		}
	case "fhir":
		name, ctype = "phigate-audit-bundle.json", "application/fhir+json"
		if err := writeFHIRBundle(&b, entries, c.opts.Audit.Origin(), c.opts.Now()); err != nil {
			c.failErr(w, r, cl.v, err)
			return
		}
	}
	if err := c.recordRead(r, cl, "console:export"); err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	if more {
		h.Set("X-Phigate-Truncated", fmt.Sprint(exportMax))
	}
	_, _ = w.Write(b.Bytes())
}

// collect reads up to max entries of q, following the cursor; more says
// that there were more.
func (c *Console) collect(ctx context.Context, q *audit.Query, max int) ([]*audit.Entry, bool, error) {
	var out []*audit.Entry
	qq := *q
	for {
		qq.Limit = min(max-len(out), audit.MaxLimit)
		pg, err := c.opts.Audit.Search(ctx, &qq)
		if err != nil {
			return nil, false, err
		}
		out = append(out, pg.Entries...)
		if pg.Next == "" {
			return out, false, nil
		}
		if len(out) >= max {
			return out, true, nil
		}
		var n uint64
		if _, err := fmt.Sscan(pg.Next, &n); err != nil {
			return nil, false, fmt.Errorf("console: audit cursor %q: %w", pg.Next, err)
		}
		qq.Cursor, qq.HasCursor = n, true
	}
}

// writeFHIRBundle writes entries as a FHIR R4 Bundle (type collection) of
// the AuditEvents internal/audit's export makes of them.
func writeFHIRBundle(b *bytes.Buffer, entries []*audit.Entry, origin string, now time.Time) error {
	type bundleEntry struct {
		FullURL  string            `json:"fullUrl"`
		Resource *audit.AuditEvent `json:"resource"`
	}
	bundle := struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Timestamp    string        `json:"timestamp"`
		Total        int           `json:"total"`
		Entry        []bundleEntry `json:"entry"`
	}{ResourceType: "Bundle", Type: "collection", Timestamp: now.UTC().Format(time.RFC3339), Total: len(entries), Entry: []bundleEntry{}}
	for _, e := range entries {
		ev := audit.FHIR(e, origin)
		bundle.Entry = append(bundle.Entry, bundleEntry{FullURL: "urn:uuid:" + ev.ID, Resource: ev})
	}
	enc := json.NewEncoder(b)
	enc.SetIndent("", " ")
	return enc.Encode(bundle)
}

// The accounting of disclosures (45 CFR 164.528): every access to one
// patient's records in a time range.

type disclosuresView struct {
	Patient, From, To string
	Entries           []*audit.Entry
	More              bool
	Badge             badge
	Proofs            template.URL // the query of the proof download
	Now               time.Time
	Key               string
}

// disclosureQuery is the search of an accounting: the grants of access
// (and break-glass uses) bound to the patient, oldest first.
func disclosureQuery(v url.Values) (patient, from, to string, q *audit.Query, err error) {
	for k, vals := range v {
		if k != "patient" && k != "from" && k != "to" {
			return "", "", "", nil, &FormError{fieldName(k), "unknown field"}
		}
		if len(vals) > 1 || len(vals[0]) > maxField {
			return "", "", "", nil, &FormError{k, "given more than once, or too long"}
		}
	}
	patient, from, to = v.Get("patient"), v.Get("from"), v.Get("to")
	q = &audit.Query{Patient: patient, Actions: []audit.Action{audit.ActionAccessGranted, audit.ActionBreakGlassUsed}, Limit: audit.MaxLimit}
	q.From, q.To, err = parseRange(from, to)
	return patient, from, to, q, err
}

func (c *Console) disclosuresPage(w http.ResponseWriter, r *http.Request, cl *call) {
	if c.noLog(w, r, cl) {
		return
	}
	patient, from, to, q, err := disclosureQuery(r.URL.Query())
	if err != nil {
		c.fail(w, r, cl.v, http.StatusBadRequest, err.Error())
		return
	}
	v := &disclosuresView{Patient: patient, From: from, To: to, Now: c.opts.Now(), Key: c.opts.Audit.PublicKey()}
	if patient != "" {
		v.Entries, v.More, err = c.collect(r.Context(), q, disclosureMax)
		if err == nil {
			err = c.recordRead(r, cl, "console:disclosures")
		}
		if err != nil {
			c.failErr(w, r, cl.v, err)
			return
		}
		v.Badge = c.verify(r.Context(), v.Entries)
		v.Proofs = template.URL(url.Values{"patient": {patient}, "from": {from}, "to": {to}}.Encode())
	}
	c.render(w, r, "disclosures", page{Title: "Accounting of disclosures", Nav: "disclosures", V: cl.v, Data: v})
}

// ProofFileFormat names the downloadable proofs of an accounting.
const ProofFileFormat = "phigate-disclosure-proofs/1"

// disclosureProofs downloads the proofs of an accounting: the log's public
// key and, for each entry, the proof bundle phigate audit prove checks
// offline (each element of "bundles" is one phigate-audit-proof/1).
func (c *Console) disclosureProofs(w http.ResponseWriter, r *http.Request, cl *call) {
	if c.noLog(w, r, cl) {
		return
	}
	patient, from, to, q, err := disclosureQuery(r.URL.Query())
	if err == nil && patient == "" {
		err = &FormError{"patient", "required"}
	}
	if err != nil {
		c.fail(w, r, cl.v, http.StatusBadRequest, err.Error())
		return
	}
	entries, more, err := c.collect(r.Context(), q, proofBundleMax)
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	out := struct {
		Format    string               `json:"format"`
		Patient   string               `json:"patient"`
		From      string               `json:"from,omitempty"`
		To        string               `json:"to,omitempty"`
		Key       string               `json:"key"`
		Truncated bool                 `json:"truncated,omitempty"`
		Bundles   []*audit.ProofBundle `json:"bundles"`
	}{Format: ProofFileFormat, Patient: patient, From: from, To: to, Key: c.opts.Audit.PublicKey(), Truncated: more, Bundles: []*audit.ProofBundle{}}
	seqs := make([]uint64, len(entries))
	for i, e := range entries {
		seqs[i] = e.Seq
	}
	bundles, err := c.opts.Audit.Proofs(r.Context(), seqs) // one batch, one checkpoint
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	out.Bundles = append(out.Bundles, bundles...)
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	if err := c.recordRead(r, cl, "console:disclosure-proofs"); err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="phigate-disclosure-proofs.json"`)
	_, _ = w.Write(append(b, '\n'))
}
