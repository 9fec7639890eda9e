package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/fhir"
	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/token"
)

// Authority authenticates tokens and admits requests (the token
// authority). Authenticate checks what does not depend on the resource and
// consumes nothing; Admit consumes rate and a use. An error of either is a
// technical failure: the gateway refuses (503).
type Authority interface {
	Authenticate(ctx context.Context, secret string, req authority.Request) (authority.Handle, authority.Decision, error)
	Admit(ctx context.Context, h authority.Handle) (authority.Decision, error)
	// Refund gives back what Admit took when the request is refused
	// afterwards without being forwarded (its grant could not be
	// recorded).
	Refund(h authority.Handle)
}

// Purpose codes with a meaning to the gateway.
const breakGlassPurpose = "ETREAT"

// MaxJustification is the longest X-Break-Glass justification in bytes.
const MaxJustification = 512

// request is what a decision looks at.
type request struct {
	secret string
	addr   netip.Addr
	// purpose is the X-Purpose-Of-Use value, justification the
	// X-Break-Glass one (breakGlass: the header was sent).
	purpose       string
	justification string
	breakGlass    bool
	method        string
	// path is the escaped path relative to the upstream's prefix, with
	// its leading "/"; query the raw query.
	path, query string
	contentType string
	// ifNoneExist is the If-None-Exist header of a conditional create (a
	// search the server runs); multiIfNoneExist: it was sent more than once.
	ifNoneExist      string
	multiIfNoneExist bool
	// patient is set by authorizeFHIR: the one patient the request names
	patient string
	// bundleType is set by authorizeBatch: "batch" or "transaction"
	bundleType string
	up         *upstream
	maxEntries int
	now        time.Time
	// page is the handle of a continuation URL (isPage: the request
	// follows one); check and id are set by authorizeFHIR: the check the
	// answer needs, and the id of the instance read
	page   string
	isPage bool
	// answerUnseen: the gateway does not see the answer (forward auth),
	// so a request allowed only with its answer checked is refused
	answerUnseen bool
	check        checkKind
	id           string
	// body returns the request body, read up to the inspection limit; nil
	// when the body cannot be read (forward auth).
	body func() ([]byte, *denial)
}

// setIfNoneExist takes If-None-Exist from the request's header.
func (q *request) setIfNoneExist(h http.Header) {
	if vs := h["If-None-Exist"]; len(vs) > 0 {
		q.ifNoneExist, q.multiIfNoneExist = vs[0], len(vs) > 1
	}
}

// verdict is the outcome of a decision.
type verdict struct {
	deny *denial // nil: allowed
	rec  *token.Record
	// admitted is the handle Admit took rate and a use for (Refund).
	admitted authority.Handle
	// patient is the one patient a FHIR request names (targetPatient).
	patient string
	// granted is the scope that allowed the request, or the one needed.
	scope       string
	interaction string
	resource    string
	// fhir upstreams: the check the answer needs (with the id read and
	// the token's scopes), and the search a continuation continues
	check checkKind
	id    string
	set   scope.Set
	cont  *continuation
}

// decide authenticates and authorizes one request: the credential and the
// token's constraints (authority), break-glass, the scope for the resource
// (FHIR or route), then admits it (rate, uses). Deny by default: only the
// end of this function allows.
func (g *Gateway) decide(ctx context.Context, q *request) verdict {
	if dn := g.throttle(ctx, q.addr); dn != nil {
		return verdict{deny: dn}
	}
	h, d, err := g.auth.Authenticate(ctx, q.secret, authority.Request{Addr: q.addr, Purpose: q.purpose, Now: q.now})
	if err != nil {
		g.log.Error("token authentication failed; refusing", "err", err)
		return verdict{deny: errUnavailable, rec: d.Token}
	}
	if d.Reason != policy.ReasonNone {
		g.failed(q.addr, d.Reason)
		return verdict{deny: fromReason(d.Reason, d.RetryAfter), rec: d.Token}
	}
	rec := h.Token()
	v := verdict{rec: rec}
	if dn := checkBreakGlass(rec, q); dn != nil {
		v.deny = dn
		return v
	}
	set := h.Scopes()
	v.set = set
	if q.isPage {
		// a continuation is decided as the search it continues, for the
		// token it was issued to
		c, dn := g.openHandle(ctx, rec.ID, q.up, q.page, q.now)
		if dn != nil {
			v.deny = dn
			return v
		}
		v.cont = c
		q.method, q.path, q.query, q.contentType = http.MethodGet, c.path, c.query, ""
	}
	if q.up.fhir {
		v.deny, v.scope, v.interaction, v.resource = authorizeFHIR(q, set, rec.PatientID)
		v.patient, v.check, v.id = q.patient, q.check, q.id
		if v.deny == nil && v.cont != nil && !continuesSearch(v.interaction) {
			v.deny = unreachable(CodeInvalidContinuation, "this continuation link does not continue a search")
		}
		if v.deny == nil && v.check != checkNone && q.answerUnseen {
			v.deny = deny(http.StatusForbidden, CodeBodyUnavailable, "a patient/ token's read by id or _include is allowed only once the gateway has checked the answer against the token's compartment, which forward auth does not see: send it through the gateway's proxy")
		}
	} else {
		v.deny, v.scope = authorizeRoute(q, set)
		v.interaction = "route"
	}
	if v.deny != nil {
		return v
	}
	if v.deny = g.inline(q, rec); v.deny != nil { // the monitor stage (monitor.go)
		return v
	}
	d, err = g.auth.Admit(ctx, h)
	if err != nil {
		g.log.Error("admitting a request failed; refusing", "token_id", rec.ID, "err", err)
		v.deny = errUnavailable
		return v
	}
	if !d.Allowed() {
		v.deny = fromReason(d.Reason, d.RetryAfter)
		return v
	}
	v.admitted = h
	return v
}

// checkBreakGlass enforces the break-glass rule: a break-glass token is
// usable only with a justification and the purpose ETREAT; any other token
// must not claim break-glass.
func checkBreakGlass(rec *token.Record, q *request) *denial {
	if !rec.BreakGlass {
		if q.breakGlass {
			return forbidden(CodeBreakGlassDenied, "this token is not break-glass capable; send X-Break-Glass only with a break-glass token", "")
		}
		return nil
	}
	if !q.breakGlass {
		return unreachable(CodeBreakGlass, "this is a break-glass token: every request needs X-Break-Glass: <justification> and X-Purpose-Of-Use: ETREAT")
	}
	if !validJustification(q.justification) {
		return badRequest(fmt.Sprintf("X-Break-Glass must be a justification of 1 to %d printable characters", MaxJustification))
	}
	if q.purpose != breakGlassPurpose {
		return unreachable(CodeBreakGlass, "a break-glass request needs X-Purpose-Of-Use: ETREAT")
	}
	return nil
}

func validJustification(s string) bool {
	if strings.TrimSpace(s) == "" || len(s) > MaxJustification || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// authorizeRoute applies the routes of an http upstream: the most specific
// route matching method and path names the scope needed; no route, no
// access.
func authorizeRoute(q *request, set scope.Set) (*denial, string) {
	if strings.IndexByte(q.path, ';') >= 0 || strings.Contains(q.path, "%3B") || strings.Contains(q.path, "%3b") {
		// Tomcat, Spring and others drop ";…" from a segment: the route
		// matched here would not be the one served
		return badRequest(`the path must not hold ";" (a path parameter: the upstream might serve another route than the one checked)`), ""
	}
	// the most specific route matching leniently must be the one matching
	// as written, or need the same scope: an upstream that ignores letter
	// case (ASP.NET Core, Express), a .ext suffix (Spring MVC, Rails),
	// blanks around a segment or a trailing "/" would serve
	// /invoices/SECRET, /invoices/secret.json or /invoices/secret%20 as
	// /invoices/secret (route.MatchLenient)
	var lenient *httpRoute
	for i := range q.up.routes {
		r := &q.up.routes[i]
		if lenient == nil && r.pat.MatchLenient(q.method, q.path) {
			lenient = r
		}
		if !r.pat.Match(q.method, q.path) {
			continue
		}
		if lenient != r && lenient.need.str != r.need.str {
			return badRequest("the path matches another route (" + lenient.pat.String() + ") when read as lenient servers do (letter case, a .ext suffix, blanks or a trailing / ignored), and the upstream might serve that one: use the route's own path"), r.need.str
		}
		// held only at patient level: an http path has no compartment
		// the gateway could check (configuration refuses such routes)
		if ok, patientOnly := r.need.heldBy(set); ok && !patientOnly {
			return nil, r.need.str
		}
		return forbidden(CodeInsufficientScope, "this request needs the scope "+quote(r.need.str), r.need.str), r.need.str
	}
	if lenient != nil {
		return unreachable(CodeNoRoute, "no route of this upstream allows "+q.method+" on this path (it matches "+lenient.pat.String()+" only when letter case, a .ext suffix, blanks or a trailing / are ignored: use the route's own path)"), ""
	}
	return unreachable(CodeNoRoute, "no route of this upstream allows "+q.method+" on this path"), ""
}

func quote(s string) string { return `"` + s + `"` }

// authorizeFHIR derives the interaction of a request to a fhir upstream
// and checks that the token's scopes grant it (see the package doc).
func authorizeFHIR(q *request, set scope.Set, pid string) (dn *denial, sc, interaction, resource string) {
	fr, err := classifyFHIR(q.method, strings.TrimPrefix(q.path, "/"), q.query != "")
	if err != nil {
		return deny(http.StatusBadRequest, CodeInvalidRequest, "not a FHIR RESTful interaction the gateway recognises"), "", "", ""
	}
	fr.method = q.method
	ps := params{raw: [2]string{q.query}}
	if fr.interaction == Batch {
		dn, sc = authorizeBatch(q, set, pid)
		if q.bundleType == "transaction" {
			return dn, sc, "transaction", "Bundle" // recorded apart from a batch
		}
		return dn, sc, fr.interaction.String(), "Bundle"
	}
	if isSearch(fr.interaction) && q.method == http.MethodPost {
		if dn := formBody(q, &ps); dn != nil {
			return dn, "", fr.interaction.String(), fr.typ
		}
	}
	if err := ps.check(); err != nil {
		return badRequest(err.Error()), "", fr.interaction.String(), fr.typ
	}
	if pid == "" { // a patient-bound token's events name its own patient
		q.patient = targetPatient(&fr, &ps)
	}
	var body func() ([]byte, *denial)
	if fr.interaction == Create || fr.interaction == ConditionalUpdate {
		body = q.body
	}
	if fr.interaction == Create && (q.ifNoneExist != "" || q.multiIfNoneExist) {
		if q.multiIfNoneExist {
			return badRequest("If-None-Exist must appear at most once"), "", fr.interaction.String(), fr.typ
		}
		if dn, sc := authorizeIfNoneExist(fr.typ, q.ifNoneExist, set, pid, q.up); dn != nil {
			return dn, sc, fr.interaction.String(), fr.typ
		}
	}
	dn, sc = authorizeInteraction(&fr, &ps, set, pid, q.up, body, q.contentType)
	q.check, q.id = fr.check, fr.id
	return dn, sc, fr.interaction.String(), fr.typ
}

// authorizeIfNoneExist checks the If-None-Exist of a conditional create of
// typ as the search of typ it is: the server runs it, and whether it
// matched shows in the answer (201 or 200, Location), so it needs the
// permission the search itself would need (compartment and granular
// restrictions included).
func authorizeIfNoneExist(typ, query string, set scope.Set, pid string, up *upstream) (*denial, string) {
	// HAPI sends it as a URL ([base/][type]?params): the parameters are
	// what follows "?", and a type before it must be the created one
	if before, after, ok := strings.Cut(query, "?"); ok {
		segs := strings.Split(strings.TrimRight(before, "/"), "/")
		if t := segs[len(segs)-1]; t != "" && t != typ {
			return badRequest("If-None-Exist names " + truncateString(t, 40) + ", not the created " + typ), ""
		}
		query = after
	}
	if query == "" || strings.ContainsAny(query, "# \t\r\n") {
		return badRequest("If-None-Exist must be search parameters, such as identifier=http://sys|123"), ""
	}
	ps := params{raw: [2]string{query}}
	if err := ps.check(); err != nil {
		return badRequest("If-None-Exist: " + err.Error()), ""
	}
	fr := fhirRequest{interaction: SearchType, typ: typ}
	if dn, need := authorizeInteraction(&fr, &ps, set, pid, up, nil, ""); dn != nil {
		dn.msg = "If-None-Exist (a search of " + typ + "): " + dn.msg
		return dn, need
	}
	return nil, ""
}

// targetPatient returns the one patient a FHIR request names, or "": the
// instance Patient/{id} (read, vread, history, update, patch, delete, an
// instance operation), a compartment Patient/{id}/…, a Patient search by a
// single _id, or searches (and conditional interactions) of other types
// whose patient/subject parameters all name the same Patient. The audit
// log indexes it (blind), so that an accounting of who reached a patient's
// records finds requests of user/ and system/ tokens too. A request naming
// no patient, or several, gives "": the path prefix still finds it.
func targetPatient(fr *fhirRequest, ps *params) string {
	switch {
	case fr.compType == "Patient":
		return fr.compID
	case fr.typ == "Patient" && fr.id != "":
		return fr.id
	}
	one, ok := "", true
	note := func(id string) {
		switch {
		case id == "" || strings.ContainsAny(id, ",/"):
			ok = false
		case one == "":
			one = id
		case one != id:
			ok = false
		}
	}
	ps.each(func(k, v string) bool {
		switch {
		case fr.typ == "Patient" && k == "_id":
			note(v)
		case fr.typ != "Patient" && (k == "patient" || k == "patient:Patient" || k == "subject:Patient"):
			note(strings.TrimPrefix(v, "Patient/"))
		case fr.typ != "Patient" && k == "subject":
			if id, isPatient := strings.CutPrefix(v, "Patient/"); isPatient {
				note(id)
			}
		}
		return ok
	})
	if !ok {
		return ""
	}
	return one
}

func isSearch(i Interaction) bool {
	return i == SearchType || i == SearchSystem || i == SearchCompartment
}

const formType = "application/x-www-form-urlencoded"

// formBody adds the form body of a POST _search to ps.
func formBody(q *request, ps *params) *denial {
	// exactly that media type, in lower case: Tomcat and HAPI compare it
	// case-sensitively and would not read a body the gateway took for a
	// form (the search would run without the parameters checked here)
	mt, mp, err := mime.ParseMediaType(q.contentType)
	raw, _, _ := strings.Cut(q.contentType, ";")
	if err != nil || mt != formType || strings.TrimRight(raw, " \t") != formType {
		return deny(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "POST _search needs an application/x-www-form-urlencoded body (that media type, in lower case)")
	}
	// the gateway reads the form as UTF-8; a server that honours another
	// charset would decode other parameter values than the ones checked
	if cs, ok := mp["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return deny(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "the form body of POST _search must be UTF-8 (charset=utf-8, or no charset)")
	}
	if q.body == nil {
		return deny(http.StatusForbidden, CodeBodyUnavailable, "the gateway must read the body of this request to decide; send it through the gateway's proxy, or as GET with the parameters in the URL")
	}
	b, dn := q.body()
	if dn != nil {
		return dn
	}
	ps.raw[1] = string(b)
	return nil
}

// authorizeInteraction checks one classified interaction. body, when set,
// reads the resource of a create (for the compartment check).
func authorizeInteraction(fr *fhirRequest, ps *params, set scope.Set, pid string, up *upstream, body func() ([]byte, *denial), contentType string) (*denial, string) {
	switch fr.interaction {
	case Capabilities:
		return nil, "" // the CapabilityStatement holds no PHI: any valid token
	case Operation:
		return authorizeOperation(fr, ps, set, pid, up)
	}
	op := fr.interaction.Op()
	var compartmentFail, restrictFail bool
	var restricted string
	// a grant whose answer must be checked is taken only when no grant
	// allows without a check
	var checked string
	var checkedKind checkKind
	var checkedDn *denial
	for g := range set.Grants(fr.typ, op) {
		var check checkKind
		if g.Context() == scope.Patient {
			in, chk := inCompartment(fr, ps, pid, body, contentType)
			if !in {
				compartmentFail = true
				continue
			}
			check = chk
		}
		if g.Restricted() {
			if !isSearch(fr.interaction) || !restrictionsHold(g, ps) {
				restrictFail, restricted = true, g.String()
				continue
			}
		}
		dn, inc := checkIncludes(fr, ps, set, pid)
		if inc {
			check = checkIncluded
		}
		if check != checkNone {
			if checked == "" {
				checked, checkedKind, checkedDn = g.String(), check, dn
			}
			continue
		}
		if dn != nil {
			return dn, g.String()
		}
		return nil, g.String()
	}
	if checked != "" {
		if checkedDn != nil {
			return checkedDn, checked
		}
		fr.check = checkedKind
		return nil, checked
	}
	need := neededScope(set, fr.typ, op)
	switch {
	case compartmentFail:
		return outsideCompartment(pid, need), need
	case restrictFail:
		// the scope named is the token's own, restricted one: not one that
		// would do, so the challenge does not name it
		dn := forbidden(CodeInsufficientScope, "the scope "+quote(restricted)+" allows only searches that carry its parameters", restricted)
		dn.scopeAttr = false
		return dn, restricted
	}
	return forbidden(CodeInsufficientScope, "this request needs the scope "+quote(need), need), need
}

func compartmentMessage(pid string) string {
	if pid == "" {
		return "a patient/ scope needs a token bound to a patient (--patient)"
	}
	return "a patient/ scope reaches only its patient's compartment (FHIR R4's Patient compartment): Patient/" + pid + ", the resources that reference it, searches with patient=" + pid + " (or subject=Patient/" + pid + "), and resources created for that patient"
}

// neededScope names the scope that would grant op on typ, in the context
// the token works in (patient when it is bound to one).
func neededScope(set scope.Set, typ string, op scope.Op) string {
	ctx := "user"
	for s := range set.All() {
		if s.Context() == scope.Patient {
			ctx = "patient"
			break
		}
	}
	return ctx + "/" + typ + "." + string(op)
}

// restrictionsHold reports whether every restriction of g is met by the
// search: the parameter is present and each of its occurrences has the
// restricted value (no OR with a comma: the value must be exactly that).
func restrictionsHold(g scope.Scope, ps *params) bool {
	for p := range g.Params() {
		if !ps.only(p.Name, p.Value) {
			return false
		}
	}
	return true
}

// inCompartment reports whether a request stays in patient pid's
// compartment as far as the gateway can tell before forwarding it, and
// the check its answer then needs:
//
//   - read, vread, history, update, patch, delete of Patient/pid;
//   - read, vread and instance history of a type in the R4 Patient
//     compartment (fhir.InPatientCompartmentType) but a Group
//     (fhir.WithheldFromPatients: it names its other members): forwarded,
//     and the answer checked (checkResource, checkHistory);
//   - searches of Patient with _id=pid, of other types with patient=pid
//     (see params.inCompartment), and compartment searches Patient/pid/…;
//   - conditional delete constrained like a search, and conditional update
//     constrained like a search whose resource is for Patient/pid (as a
//     create's);
//   - creates whose resource's subject or patient is Patient/pid.
//
// Everything else — reads of other Patients and of types outside the
// compartment, updates, patches and deletes of other types by id (the
// gateway would see whose the resource is only once it is changed), type
// and system history, system searches, conditional patch (the patch could
// move the resource to another patient, and the gateway does not apply
// patches) — is outside.
func inCompartment(fr *fhirRequest, ps *params, pid string, body func() ([]byte, *denial), contentType string) (bool, checkKind) {
	if pid == "" {
		return false, checkNone
	}
	switch fr.interaction {
	case Read, VRead, HistoryInstance:
		switch {
		case fr.typ == "Patient":
			return fr.id == pid, checkNone
		case !fhir.InPatientCompartmentType(fr.typ) || fhir.WithheldFromPatients(fr.typ):
			return false, checkNone
		case fr.interaction == HistoryInstance:
			return true, checkHistory
		}
		return true, checkResource
	case Update, Patch, Delete:
		return fr.typ == "Patient" && fr.id == pid, checkNone
	case SearchType, ConditionalDelete:
		return ps.inCompartment(fr.typ, pid), checkNone
	case ConditionalUpdate:
		return ps.inCompartment(fr.typ, pid) && resourceFor(fr.typ, pid, body, contentType), checkNone
	case SearchCompartment:
		return fr.compType == "Patient" && fr.compID == pid, checkNone
	case Create:
		return resourceFor(fr.typ, pid, body, contentType), checkNone
	}
	return false, checkNone
}

// resourceFor reports whether the JSON resource body returns (of a create
// or an update) is a typ whose subject or patient is Patient/pid, and no
// other patient. A Patient resource is never "for" a patient this way.
func resourceFor(typ, pid string, body func() ([]byte, *denial), contentType string) bool {
	if body == nil || typ == "Patient" || !isJSON(contentType) {
		return false
	}
	b, dn := body()
	if dn != nil {
		return false
	}
	rtyp, subject, patient, ok := resourceRefs(b)
	ref := "Patient/" + pid
	return ok && rtyp == typ && (subject != "" || patient != "") &&
		(subject == "" || subject == ref) && (patient == "" || patient == ref) &&
		onlyPatientRefs(b, pid)
}

// onlyPatientRefs reports whether every reference in the JSON resource doc
// (contained resources included) that names a Patient names Patient/pid:
// a reference elsewhere (Observation.performer, say) would put the
// resource in that other patient's compartment too. Local (#…) and urn:
// references name no stored Patient. doc passed checkJSON (bounded depth).
func onlyPatientRefs(doc []byte, pid string) bool {
	var v any
	if json.Unmarshal(doc, &v) != nil {
		return false
	}
	ok := true
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, isStr := x.(string); isStr && k == "reference" && !patientRefIs(s, pid) {
					ok = false
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return ok
}

// patientRefIs reports whether ref, when it names a Patient (relative,
// absolute or versioned), names Patient/pid. A conditional reference to a
// Patient (Patient?identifier=…), which the server resolves to whoever
// matches, or a Patient without an id, names another patient.
func patientRefIs(ref, pid string) bool {
	if strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return true
	}
	ref, _, _ = strings.Cut(ref, "?") // a query's "://" is no scheme
	if i := strings.Index(ref, "://"); i >= 0 {
		rest := ref[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return true
		}
		ref = rest[j:]
	}
	segs := strings.Split(strings.Trim(ref, "/"), "/")
	for i, seg := range segs {
		if seg != "Patient" {
			continue
		}
		if i+1 == len(segs) {
			return false // Patient?… or a bare Patient: whoever the server finds
		}
		if segs[i+1] != pid {
			return false
		}
	}
	return true
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/fhir+json" || mt == "application/json")
}

// checkIncludes requires, for each _include, a read grant on the included
// type (or on "*" when the value does not name it), and for each
// _revinclude a search grant on the source type; such grants must not be
// restricted. An _include that only a patient/ grant covers, or that names
// no target type, is allowed for a token bound to patient pid with its
// answer checked (checked true): included entries outside the
// compartment, or of a type the token may not read, are removed.
func checkIncludes(fr *fhirRequest, ps *params, set scope.Set, pid string) (dn *denial, checked bool) {
	if !isSearch(fr.interaction) {
		return nil, false
	}
	ps.includes(func(rev bool, v string) bool {
		parts := strings.Split(v, ":")
		typ, op := "*", scope.OpRead
		switch {
		case rev && len(parts) >= 2 && isType(parts[0]):
			typ, op = parts[0], scope.OpSearch
		case !rev && len(parts) == 3 && isType(parts[2]):
			typ = parts[2]
		}
		patient := typ == "*" // each included entry's type is checked on the answer
		for g := range set.Grants(typ, op) {
			if g.Restricted() {
				continue
			}
			if g.Context() != scope.Patient {
				return true
			}
			patient = true
		}
		if patient && !rev && pid != "" {
			checked = true
			return true
		}
		need := "user/" + typ + "." + string(op)
		dn = forbidden(CodeInsufficientScope, "_include and _revinclude need an unrestricted user or system scope for what they add (or, for _include, a patient/ one: what is outside the compartment is then removed): "+quote(need), need)
		return false
	})
	return dn, checked && dn == nil
}

// authorizeOperation checks an $operation against the configured scopes:
// the rule for the resource type, else the one for "*"; an operation not
// configured is refused. A requirement the token holds only at patient
// level binds the operation to the compartment: Patient/pid/$op, or a GET
// whose URL parameters name the patient (a POSTed Parameters body could
// name another).
func authorizeOperation(fr *fhirRequest, ps *params, set scope.Set, pid string, up *upstream) (*denial, string) {
	rules := up.ops[fr.op]
	var rule *opRule
	for i := range rules {
		if rules[i].resource == fr.typ {
			rule = &rules[i]
		}
	}
	if rule == nil {
		for i := range rules {
			if rules[i].resource == "*" {
				rule = &rules[i]
			}
		}
	}
	if rule == nil {
		dn := unreachable(CodeInsufficientScope, "the operation "+fr.op+" is not allowed through this gateway (no scope is configured for it)")
		return dn, ""
	}
	ok, patientOnly := rule.need.heldBy(set)
	if !ok {
		return forbidden(CodeInsufficientScope, "the operation "+fr.op+" needs the scope "+quote(rule.need.str), rule.need.str), rule.need.str
	}
	if patientOnly {
		// at type level the URL's parameters bind it to the patient; a
		// POSTed Parameters body could name another, so it must be a GET
		typeLevel := fr.compType == "" && fr.typ != "*" && (fr.method == http.MethodGet || fr.method == http.MethodHead)
		inside := pid != "" && (fr.compType == "Patient" && fr.compID == pid ||
			typeLevel && ps.inCompartment(fr.typ, pid))
		if !inside {
			return outsideCompartment(pid, rule.need.str), rule.need.str
		}
	}
	return nil, rule.need.str
}

// authorizeBatch checks a batch or transaction entry by entry: every
// entry must be allowed on its own, or the whole Bundle is refused.
func authorizeBatch(q *request, set scope.Set, pid string) (*denial, string) {
	if !isJSON(q.contentType) {
		return deny(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "a batch or transaction must be a JSON Bundle (application/fhir+json)"), ""
	}
	if q.body == nil {
		return deny(http.StatusForbidden, CodeBodyUnavailable, "the gateway must read a batch or transaction to decide; send it through the gateway's proxy"), ""
	}
	b, dn := q.body()
	if dn != nil {
		return dn, ""
	}
	var entries []bundleEntry
	var err error
	q.bundleType, entries, err = parseBundle(b, q.maxEntries)
	if err != nil {
		return badRequest(err.Error()), ""
	}
	for i := range entries {
		e := &entries[i]
		fr, err := classifyFHIR(e.method, e.path, e.query != "")
		if err != nil || fr.interaction == Batch || fr.interaction == Capabilities {
			return badRequest(fmt.Sprintf("Bundle entry %d is not a FHIR interaction the gateway recognises", i)), ""
		}
		fr.method = e.method
		ps := params{raw: [2]string{e.query}}
		if err := ps.check(); err != nil {
			return badRequest(fmt.Sprintf("Bundle entry %d: %s", i, err)), ""
		}
		var body func() ([]byte, *denial)
		if (fr.interaction == Create || fr.interaction == ConditionalUpdate) && e.resource != nil {
			res := []byte(e.resource)
			body = func() ([]byte, *denial) { return res, nil }
		}
		if e.ifNoneExist != "" {
			if fr.interaction != Create {
				return badRequest(fmt.Sprintf("Bundle entry %d: request.ifNoneExist belongs to a create (POST [type])", i)), ""
			}
			if dn, need := authorizeIfNoneExist(fr.typ, e.ifNoneExist, set, pid, q.up); dn != nil {
				dn.msg = fmt.Sprintf("Bundle entry %d (%s %s): %s", i, e.method, fr.typ, dn.msg)
				return dn, need
			}
		}
		if dn, need := authorizeInteraction(&fr, &ps, set, pid, q.up, body, "application/fhir+json"); dn != nil {
			dn.msg = fmt.Sprintf("Bundle entry %d (%s %s): %s", i, e.method, fr.typ, dn.msg)
			return dn, need
		} else if fr.check != checkNone {
			// the answers of a batch are not checked entry by entry
			dn := outsideCompartment(pid, need)
			dn.msg = fmt.Sprintf("Bundle entry %d (%s %s): a patient/ token's reads by id and _include are checked on the answer, which the gateway does not do inside a batch: send the entry on its own", i, e.method, fr.typ)
			return dn, need
		}
	}
	return nil, ""
}

// errBodyTooLarge is a denial for bodies beyond the inspection limit.
func errBodyTooLarge(limit int64) *denial {
	return deny(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the gateway reads at most %d bytes of this kind of request to decide", limit))
}
