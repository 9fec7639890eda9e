package api

import (
	"context"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/scope"
)

// The audit-reading endpoints. Search and proofs reveal entries, so they
// need admin:audit and are themselves recorded (audit.read) before the
// answer is sent: if that record cannot be written, the read is refused
// (503), as any audited action is. The checkpoint also needs admin:audit
// but is not recorded (witnesses poll it). The verifier key is public.
//
//	GET /v1/audit             search (audit.ParseQuery parameters)
//	GET /v1/audit/checkpoint  the latest signed checkpoint (JSON, or the
//	                          note itself with Accept: text/plain)
//	GET /v1/audit/proof?seq=N a proof bundle (audit.ProofBundle)
//	GET /v1/audit/proof/consistency?from=N&to=M
//	                          the consistency proof between two tree sizes
//	                          (audit.ConsistencyProof); like the checkpoint,
//	                          it reveals no entry and is not recorded
//	GET /v1/audit/key         the public verifier key (no token needed)

// auditRoutes registers the audit-reading endpoints.
func (s *Server) auditRoutes() {
	m := s.mux
	m.HandleFunc("GET /v1/audit", s.authed(scope.AdminAudit, s.auditSearch))
	m.HandleFunc("GET /v1/audit/checkpoint", s.authed(scope.AdminAudit, s.auditCheckpoint))
	m.HandleFunc("GET /v1/audit/proof", s.authed(scope.AdminAudit, s.auditProof))
	m.HandleFunc("GET /v1/audit/proof/consistency", s.authed(scope.AdminAudit, s.auditConsistency))
	m.HandleFunc("GET /v1/audit/key", s.auditKey)
}

// auditError maps an error of the audit log to an answer; anything
// unexpected is internal (logged by writeError).
func auditError(err error) error {
	var qe *audit.QueryError
	switch {
	case errors.As(err, &qe):
		return badRequest(qe.Field, "%s", qe.Error())
	case errors.Is(err, audit.ErrBadRange):
		return badRequest("to", "%s", strings.TrimPrefix(err.Error(), "audit: "))
	case errors.Is(err, audit.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "no audit entry with that sequence number"}
	case errors.Is(err, audit.ErrPushback):
		return &apiError{status: http.StatusServiceUnavailable, code: "audit_busy", retry: time.Second, msg: "the audit log is busy; try again shortly"}
	case errors.Is(err, audit.ErrUnavailable), errors.Is(err, audit.ErrUnknownOutcome), errors.Is(err, audit.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, code: "audit_unavailable", retry: time.Second, msg: "the audit log cannot be written, so this read cannot be recorded and is refused; try again later"}
	}
	return err
}

// auditLog returns the log, or answers 503 when none is wired.
func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) *audit.Log {
	if s.opts.Audit == nil {
		s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: "audit_unavailable", msg: "this server has no audit log"})
	}
	return s.opts.Audit
}

// recordRead appends the audit.read entry of a search or proof.
func (s *Server) recordRead(ctx context.Context, l *audit.Log, r *http.Request, ac authority.Actor, target string) error {
	src := audit.Source{UserAgent: r.UserAgent()}
	if a := clientAddr(r); a.IsValid() {
		src.IP = a.String()
	}
	_, err := l.Append(ctx, &audit.Entry{
		Action:    audit.ActionAuditRead,
		Outcome:   audit.OutcomeSuccess,
		Actor:     audit.ActorOf(ac.Token),
		Source:    src,
		RequestID: requestID(r),
		Target:    target,
		Purpose:   r.Header.Get("X-Purpose-Of-Use"),
		Method:    r.Method,
		Path:      r.URL.RequestURI(),
	})
	return err
}

// AuditSearcher answers GET /v1/audit from elsewhere than this node's log
// (a cluster's merged view): v is the URL query; a bad parameter is an
// *audit.QueryError.
type AuditSearcher interface {
	SearchValues(ctx context.Context, v url.Values) (*audit.Page, error)
}

func (s *Server) auditSearch(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	l := s.auditLog(w, r)
	if l == nil {
		return
	}
	var page *audit.Page
	var err error
	if s.opts.AuditSearch != nil {
		page, err = s.opts.AuditSearch.SearchValues(r.Context(), r.URL.Query())
	} else {
		var q *audit.Query
		if q, err = audit.ParseQuery(r.URL.Query()); err == nil {
			page, err = l.Search(r.Context(), q)
		}
	}
	if err != nil {
		s.writeError(w, r, auditError(err))
		return
	}
	if err := s.recordRead(r.Context(), l, r, ac, "search"); err != nil {
		s.writeError(w, r, auditError(err))
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// checkpointAnswer is the JSON of GET /v1/audit/checkpoint.
type checkpointAnswer struct {
	Origin     string    `json:"origin"`
	Size       uint64    `json:"size"`
	RootHash   string    `json:"root_hash"`
	Checkpoint string    `json:"checkpoint"`
	IssuedAt   time.Time `json:"issued_at,omitzero"`
	// Cosigned is the checkpoint with the witnesses' cosignatures, once
	// at least one witness cosigned it.
	Cosigned string `json:"cosigned,omitempty"`
}

func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request, _ authority.Actor) {
	l := s.auditLog(w, r)
	if l == nil {
		return
	}
	if len(r.URL.Query()) > 0 {
		s.writeError(w, r, badRequest("", "this endpoint takes no parameters"))
		return
	}
	cp, err := l.Checkpoint(r.Context(), false)
	if err != nil {
		s.writeError(w, r, auditError(err))
		return
	}
	if wantsText(r) {
		writeText(w, string(cp.Note))
		return
	}
	ans := checkpointAnswer{Origin: cp.Origin, Size: cp.Size, RootHash: base64.StdEncoding.EncodeToString(cp.Root), Checkpoint: string(cp.Note), IssuedAt: cp.Time}
	if c := l.Cosigned(r.Context(), cp); len(c) > len(cp.Note) {
		ans.Cosigned = string(c)
	}
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) auditProof(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	l := s.auditLog(w, r)
	if l == nil {
		return
	}
	q := r.URL.Query()
	for k, v := range q {
		if k != "seq" {
			s.writeError(w, r, badRequest(k, "unknown parameter"))
			return
		}
		if len(v) > 1 {
			s.writeError(w, r, badRequest(k, "given more than once"))
			return
		}
	}
	raw := q.Get("seq")
	seq, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || strconv.FormatUint(seq, 10) != raw {
		s.writeError(w, r, badRequest("seq", "seq must be the sequence number of an entry (0, 1, ...)"))
		return
	}
	b, err := l.Proof(r.Context(), seq)
	if err != nil {
		s.writeError(w, r, auditError(err))
		return
	}
	if err := s.recordRead(r.Context(), l, r, ac, "proof:"+raw); err != nil {
		s.writeError(w, r, auditError(err))
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) auditConsistency(w http.ResponseWriter, r *http.Request, _ authority.Actor) {
	l := s.auditLog(w, r)
	if l == nil {
		return
	}
	q := r.URL.Query()
	for k, v := range q {
		if k != "from" && k != "to" {
			s.writeError(w, r, badRequest(k, "unknown parameter"))
			return
		}
		if len(v) > 1 {
			s.writeError(w, r, badRequest(k, "given more than once"))
			return
		}
	}
	var sizes [2]uint64
	for i, k := range []string{"from", "to"} {
		raw := q.Get(k)
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil || strconv.FormatUint(n, 10) != raw {
			s.writeError(w, r, badRequest(k, "%s must be a tree size (0, 1, ...: the size line of a checkpoint)", k))
			return
		}
		sizes[i] = n
	}
	if sizes[0] > sizes[1] {
		s.writeError(w, r, badRequest("from", "from must not be larger than to"))
		return
	}
	p, err := l.Consistency(r.Context(), sizes[0], sizes[1])
	if err != nil {
		s.writeError(w, r, auditError(err))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// keyAnswer is the JSON of GET /v1/audit/key.
type keyAnswer struct {
	Origin string `json:"origin"`
	Key    string `json:"key"`
}

func (s *Server) auditKey(w http.ResponseWriter, r *http.Request) {
	l := s.auditLog(w, r)
	if l == nil {
		return
	}
	if wantsText(r) {
		writeText(w, l.PublicKey()+"\n")
		return
	}
	writeJSON(w, http.StatusOK, keyAnswer{Origin: l.Origin(), Key: l.PublicKey()})
}

// wantsText reports whether the client asked for text/plain rather than
// JSON (the first media type of Accept decides).
func wantsText(r *http.Request) bool {
	first, _, _ := strings.Cut(r.Header.Get("Accept"), ",")
	mt, _, err := mime.ParseMediaType(strings.TrimSpace(first))
	return err == nil && mt == "text/plain"
}

func writeText(w http.ResponseWriter, s string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(s)))
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(s))
}
