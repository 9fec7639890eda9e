package client

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// APIError is the error of every answer outside 2xx. Code is the server's
// reason code ("invalid_request", "forbidden", "not_found", ...); Message is
// for people; RequestID ties the answer to the server's logs and audit
// entry; Field names the offending request field when there is one.
//
// Error never contains the client's bearer token: the SDK redacts it from
// anything the server sent back.
type APIError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
	Field     string
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("phigate: ")
	fmt.Fprintf(&b, "%d", e.Status)
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	} else if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" ")
		b.WriteString(t)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Field != "" {
		b.WriteString(" (field ")
		b.WriteString(e.Field)
		b.WriteString(")")
	}
	if e.RequestID != "" {
		b.WriteString(" [request ")
		b.WriteString(e.RequestID)
		b.WriteString("]")
	}
	return b.String()
}

// maxErrorField bounds each string taken from an error answer.
const maxErrorField = 1024

// decodeAPIError builds the APIError of resp from its (already bounded)
// body. A body that is not an ErrorBody (a proxy's HTML page, say) yields
// an error with the status only; for 401 and 403 the code then comes from
// the WWW-Authenticate challenge. redact lists strings (the bearer token,
// an introspected secret) that must not appear in the result.
func decodeAPIError(resp *http.Response, body []byte, redact ...string) *APIError {
	e := &APIError{Status: resp.StatusCode}
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil {
		e.Code = clean(eb.Error.Code, redact)
		e.Message = clean(eb.Error.Message, redact)
		e.RequestID = clean(eb.Error.RequestID, redact)
		e.Field = clean(eb.Error.Field, redact)
	} else {
		// the OAuth endpoints (/v1/introspect, /v1/revoke) answer in the
		// RFC 6749 §5.2 form, with phigate's code as phigate_code
		var ob struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			RequestID   string `json:"request_id"`
			Code        string `json:"phigate_code"`
			Field       string `json:"field"`
		}
		if json.Unmarshal(body, &ob) == nil {
			code := ob.Code
			if code == "" {
				code = ob.Error
			}
			e.Code, e.Message = clean(code, redact), clean(ob.Description, redact)
			e.RequestID, e.Field = clean(ob.RequestID, redact), clean(ob.Field, redact)
		}
	}
	if e.Code == "" {
		if c := challengeError(resp.Header.Get("WWW-Authenticate")); c != "" {
			e.Code = clean(c, redact)
		}
	}
	if e.RequestID == "" {
		e.RequestID = clean(resp.Header.Get("X-Request-Id"), redact)
	}
	return e
}

// clean bounds s, strips control characters and replaces every redact
// string in it.
func clean(s string, redact []string) string {
	for _, r := range redact {
		if r != "" {
			s = strings.ReplaceAll(s, r, "[REDACTED]")
		}
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxErrorField {
		s = s[:maxErrorField] + "…"
	}
	return s
}

// challengeError extracts error="…" from a Bearer challenge.
func challengeError(h string) string {
	const key = `error="`
	i := strings.Index(h, key)
	if i < 0 {
		return ""
	}
	rest := h[i+len(key):]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}
