package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"gopkg.in/yaml.v3"
)

// openapiYAML is the OpenAPI 3.1 description of this API: the source,
// kept in the repository and checked against the real handlers by the
// tests (every route documented, every documented operation answered as
// documented), served as JSON by GET /v1/openapi.json.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the OpenAPI 3.1 document as JSON.
func OpenAPI() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("api: openapi.yaml: %w", err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("api: openapi.yaml: %w", err)
	}
	return b, nil
}

// openAPI serves the document: public (it holds no secret, and a client
// needs it before it holds a token), cacheable for five minutes.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	if s.openapi == nil {
		s.writeError(w, r, fmt.Errorf("openapi document: %w", s.openapiErr))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Content-Length", strconv.Itoa(len(s.openapi)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(s.openapi)
	}
}
