package client

import (
	"context"
	"fmt"
	"net/http"
)

// MaxLeaks is the most tokens one ReportLeaked call (one POST
// /v1/tokens/leaked) may carry.
const MaxLeaks = 1000

// The statuses of a LeakResult.
const (
	LeakRevoked         = "revoked"          // the token was live and is now revoked
	LeakAlreadyRevoked  = "already_revoked"  // the token was revoked before this report
	LeakUnknown         = "unknown"          // a well-formed token this server does not know
	LeakInvalidChecksum = "invalid_checksum" // not a phigate token: its checksum fails
)

// Leak is one token found where it must not be: its secret and where it
// was found (a path and line such as "deploy/app.yaml:12", a chat export, a
// log), which the server records in the alert and the audit entry.
type Leak struct {
	Token string `json:"token"`
	Where string `json:"where,omitempty"`
}

// String hides the secret, so a Leak printed by mistake does not leak it
// again.
func (l Leak) String() string { return "leak at " + l.Where }

// GoString hides the secret from %#v too.
func (l Leak) GoString() string { return "client.Leak{Where: " + fmt.Sprintf("%q", l.Where) + "}" }

// LeakResult is the server's answer for one reported token, in the order
// reported. Fingerprint is the server's keyed-hash fingerprint of the
// token (the one rotation uses); TokenID is empty for a token the server
// does not know. The secret is never echoed.
type LeakResult struct {
	Fingerprint string `json:"fingerprint,omitempty"`
	TokenID     string `json:"token_id,omitempty"`
	Status      string `json:"status"`
}

// LeakResults is the answer of POST /v1/tokens/leaked.
type LeakResults struct {
	Results []LeakResult `json:"results"`
}

type leakReport struct {
	Tokens []Leak `json:"tokens"`
	Source string `json:"source,omitempty"`
}

// ReportLeaked reports tokens found in code, configs, chat exports or logs
// (POST /v1/tokens/leaked, scope admin:tokens). The server revokes each
// one it knows at once, raises a high-severity alert and audits it; a
// token that is not a phigate token is answered per entry, not as an error
// of the whole report. At most MaxLeaks tokens per call.
func (c *Client) ReportLeaked(ctx context.Context, leaks []Leak) (*LeakResults, error) {
	if len(leaks) == 0 {
		return &LeakResults{Results: []LeakResult{}}, nil
	}
	if len(leaks) > MaxLeaks {
		return nil, fmt.Errorf("phigate: %d leaked tokens in one report, over the limit of %d", len(leaks), MaxLeaks)
	}
	redact := make([]string, 0, len(leaks))
	for _, l := range leaks {
		if l.Token != "" {
			redact = append(redact, l.Token)
		}
	}
	r := request{method: http.MethodPost, path: "/v1/tokens/leaked", json: leakReport{Tokens: leaks, Source: c.userAgent},
		auth: true, redact: redact}
	var out LeakResults
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
