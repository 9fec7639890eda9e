package client

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The audit log's wire types (GET /v1/audit, /v1/audit/checkpoint,
// /v1/audit/proof, /v1/audit/key).

// AuditActor is who acted: the phigate token that authenticated.
type AuditActor struct {
	TokenID string `json:"token_id,omitempty"`
	Subject string `json:"subject,omitempty"`
	Kind    string `json:"kind,omitempty"`
}

// AuditSource is where the request came from.
type AuditSource struct {
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// AuditEntry is one entry of the audit log. It never holds a token secret.
type AuditEntry struct {
	Seq        uint64          `json:"seq"`
	Time       time.Time       `json:"time"`
	Node       string          `json:"node,omitempty"`
	Action     string          `json:"action"`
	Outcome    string          `json:"outcome,omitempty"`
	Actor      AuditActor      `json:"actor"`
	Source     AuditSource     `json:"source"`
	RequestID  string          `json:"request_id,omitempty"`
	Target     string          `json:"target,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Purpose    string          `json:"purpose_of_use,omitempty"`
	BreakGlass string          `json:"break_glass,omitempty"`
	Patient    string          `json:"patient,omitempty"`
	Method     string          `json:"method,omitempty"`
	Upstream   string          `json:"upstream,omitempty"`
	Path       string          `json:"path,omitempty"`
	Status     int             `json:"status,omitempty"`
	Bytes      int64           `json:"bytes,omitempty"`
	DurationMS float64         `json:"duration_ms,omitempty"`
	Before     json.RawMessage `json:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty"`
}

// AuditPage is one page of a search.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	// Next continues the search (AuditQuery.After, or Before when
	// descending); empty on the last page.
	Next string `json:"next,omitempty"`
}

// AuditQuery filters GET /v1/audit. Zero fields are not sent.
type AuditQuery struct {
	From, To   time.Time // From <= time < To
	Subject    string
	TokenID    string
	Actions    []string // any of these ("token.created", "access.denied", ...)
	Outcome    string   // "success", "denied", "failure"
	Upstream   string
	PathPrefix string // whole path segments ("/fhir/Patient"), no query
	Patient    string // the patient id the request was bound to (exact)
	Desc       bool   // newest first
	After      string // cursor: the previous page's Next (ascending)
	Before     string // cursor: the previous page's Next (descending)
	Limit      int    // page size (server default 100, at most 1000)
}

func (q AuditQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339Nano))
	}
	set("subject", q.Subject)
	set("token_id", q.TokenID)
	for _, a := range q.Actions {
		v.Add("action", a)
	}
	set("outcome", q.Outcome)
	set("upstream", q.Upstream)
	set("path_prefix", q.PathPrefix)
	set("patient", q.Patient)
	set("after", q.After)
	set("before", q.Before)
	if q.Desc && q.Before == "" {
		v.Set("order", "desc")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// AuditCheckpoint is the latest signed checkpoint of the log.
type AuditCheckpoint struct {
	Origin   string `json:"origin"`
	Size     uint64 `json:"size"`
	RootHash string `json:"root_hash"` // base64
	// Checkpoint is the signed note (C2SP tlog-checkpoint), as witnesses
	// keep it.
	Checkpoint string    `json:"checkpoint"`
	IssuedAt   time.Time `json:"issued_at,omitzero"`
	// Cosigned is Checkpoint with the witnesses' cosignature lines, once
	// a witness cosigned it (empty before).
	Cosigned string `json:"cosigned,omitempty"`
}

// AuditProof is a proof bundle: an entry, its inclusion proof and a signed
// checkpoint, checkable offline with only the log's public key (phigate
// audit prove). Raw is the bundle exactly as the server sent it.
type AuditProof struct {
	Format     string          `json:"format"`
	Seq        uint64          `json:"seq"`
	Entry      *AuditEntry     `json:"entry"`
	EntryBytes []byte          `json:"entry_bytes"`
	TreeSize   uint64          `json:"tree_size"`
	Inclusion  [][]byte        `json:"inclusion"`
	Checkpoint string          `json:"checkpoint"`
	Raw        json.RawMessage `json:"-"`
}

// AuditConsistency is a consistency proof between two sizes of the log
// (the JSON of audit.ConsistencyProof); Raw is the answer as received.
type AuditConsistency struct {
	Format         string          `json:"format"`
	Origin         string          `json:"origin"`
	From           uint64          `json:"from"`
	To             uint64          `json:"to"`
	Proof          [][]byte        `json:"proof"`
	FromCheckpoint string          `json:"from_checkpoint,omitempty"`
	ToCheckpoint   string          `json:"to_checkpoint,omitempty"`
	Raw            json.RawMessage `json:"-"`
}

// AuditKey is the log's public verifier key.
type AuditKey struct {
	Origin string `json:"origin"`
	Key    string `json:"key"` // "phigate/<node>+<hash>+<key>"
}

// AuditSearch returns one page of audit entries (GET /v1/audit; needs
// admin:audit). Pass the page's Next as q.After (or q.Before when
// descending) for the next one, or use AllAudit.
func (c *Client) AuditSearch(ctx context.Context, q AuditQuery) (*AuditPage, error) {
	var out AuditPage
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/audit", query: q.values(), auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllAudit iterates over every entry matching q, following the cursor. It
// stops at the first error, which it yields.
func (c *Client) AllAudit(ctx context.Context, q AuditQuery) iter.Seq2[AuditEntry, error] {
	return pages("audit", func() ([]AuditEntry, string, error) {
		page, err := c.AuditSearch(ctx, q)
		if err != nil {
			return nil, "", err
		}
		if q.Desc || q.Before != "" {
			q.Before, q.After = page.Next, ""
		} else {
			q.After = page.Next
		}
		return page.Entries, page.Next, nil
	})
}

// AuditCheckpoint returns the latest signed checkpoint (GET
// /v1/audit/checkpoint; needs admin:audit).
func (c *Client) AuditCheckpoint(ctx context.Context) (*AuditCheckpoint, error) {
	var out AuditCheckpoint
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/audit/checkpoint", auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AuditProof returns the proof bundle of entry seq (GET
// /v1/audit/proof?seq=N; needs admin:audit).
func (c *Client) AuditProof(ctx context.Context, seq uint64) (*AuditProof, error) {
	var raw json.RawMessage
	q := url.Values{"seq": {strconv.FormatUint(seq, 10)}}
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/audit/proof", query: q, auth: true}, &raw); err != nil {
		return nil, err
	}
	var out AuditProof
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("phigate: decoding the proof bundle: %w", err)
	}
	out.Raw = raw
	return &out, nil
}

// AuditConsistency returns the consistency proof between the trees of
// sizes from and to (GET /v1/audit/proof/consistency; needs admin:audit).
// It proves nothing by itself: check it against checkpoints you saved.
func (c *Client) AuditConsistency(ctx context.Context, from, to uint64) (*AuditConsistency, error) {
	var raw json.RawMessage
	q := url.Values{"from": {strconv.FormatUint(from, 10)}, "to": {strconv.FormatUint(to, 10)}}
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/audit/proof/consistency", query: q, auth: true}, &raw); err != nil {
		return nil, err
	}
	var out AuditConsistency
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("phigate: decoding the consistency proof: %w", err)
	}
	out.Raw = raw
	return &out, nil
}

// AuditKey returns the log's public verifier key (GET /v1/audit/key). It
// sends no credentials. Fetched from the server it proves nothing by
// itself: compare it with a copy obtained out of band.
func (c *Client) AuditKey(ctx context.Context) (*AuditKey, error) {
	var out AuditKey
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/audit/key"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
