package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
)

// decodeJSON reads a JSON body of at most MaxBody bytes into v, refusing
// other content types (415), larger bodies (413), unknown fields and
// trailing data (400). An empty body is allowed when optional is set.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, optional bool) *apiError {
	_, e := s.decodeJSONBody(w, r, v, optional)
	return e
}

// decodeJSONBody is decodeJSON that also returns the body as read.
func (s *Server) decodeJSONBody(w http.ResponseWriter, r *http.Request, v any, optional bool) ([]byte, *apiError) {
	body, e := s.readBody(w, r)
	if e != nil {
		return nil, e
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return body, nil
		}
		return nil, badRequest("", "a JSON body is required")
	}
	if e := checkContentType(r, "application/json"); e != nil {
		return nil, e
	}
	return body, decodeStrict(body, v)
}

// decodeStrict decodes one JSON object from body into v, refusing unknown
// fields and trailing data.
func decodeStrict(body []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return badRequest("", "unexpected data after the JSON object")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return badRequest("", "unexpected data after the JSON object")
	}
	return nil
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	return readBodyLimit(w, r, s.opts.MaxBody)
}

// readBodyLimit reads a body of at most limit bytes (413 beyond).
func readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, badRequest("", "could not read the request body")
	}
	return body, nil
}

func tooLarge(n int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: "payload_too_large", msg: "the request body is larger than the limit of " + itoa(n) + " bytes"}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func checkContentType(r *http.Request, want string) *apiError {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != want {
		return &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", msg: "Content-Type must be " + want}
	}
	return nil
}

// jsonError turns a decoding error into a 400 that names the field.
func jsonError(err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest("", "malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		f := te.Field
		return badRequest(f, "%s: wrong type (want %s)", f, te.Type.String())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "truncated JSON")
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f := strings.Trim(rest, `"`)
		return badRequest(f, "unknown field %q", f)
	}
	return badRequest("", "invalid JSON body")
}

// readForm parses an application/x-www-form-urlencoded body (RFC 7662/7009).
func (s *Server) readForm(w http.ResponseWriter, r *http.Request) (map[string][]string, *apiError) {
	if e := checkContentType(r, "application/x-www-form-urlencoded"); e != nil {
		return nil, e
	}
	body, e := s.readBody(w, r)
	if e != nil {
		return nil, e
	}
	vals, err := parseQuery(string(body))
	if err != nil {
		return nil, badRequest("", "malformed form body")
	}
	return vals, nil
}
