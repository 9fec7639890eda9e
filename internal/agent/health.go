package agent

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// TokenHealth is one token in the health report. It holds no secret.
type TokenHealth struct {
	Name string `json:"name"`
	Sink string `json:"sink"`
	client.RotationState
	FileError string    `json:"file_error,omitempty"`
	HookError string    `json:"hook_error,omitempty"`
	LastHook  time.Time `json:"last_hook,omitzero"`
}

// Health is the agent's report: Status is "ok" when every token is
// checked, valid and written, and "degraded" otherwise.
type Health struct {
	Status string        `json:"status"`
	Tokens []TokenHealth `json:"tokens"`
}

// Health returns the agent's state.
func (a *Agent) Health() Health {
	h := Health{Status: "ok", Tokens: make([]TokenHealth, 0, len(a.tokens))}
	now := a.opts.Now()
	for _, m := range a.tokens {
		th := TokenHealth{Name: m.t.Name, Sink: m.t.Sink, RotationState: m.src.State()}
		m.mu.Lock()
		th.FileError, th.HookError, th.LastHook = m.fileErr, m.hookErr, m.lastHook
		m.mu.Unlock()
		if !th.ExpiresAt.IsZero() && !now.Before(th.ExpiresAt) {
			th.Status = "expired"
		}
		switch {
		case th.Status != "ok" && th.Status != "retrying", th.FileError != "":
			h.Status = "degraded"
		}
		h.Tokens = append(h.Tokens, th)
	}
	return h
}

// HealthHandler serves GET /healthz: the Health report as JSON, with
// status 200 when it is "ok" and 503 otherwise.
func (a *Agent) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		h := a.Health()
		code := http.StatusOK
		if h.Status != "ok" {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		code, msg := http.StatusNotFound, "the agent serves GET /healthz only"
		if r.URL.Path == "/healthz" {
			code, msg = http.StatusMethodNotAllowed, "use GET"
			w.Header().Set("Allow", "GET, HEAD")
		}
		var body client.ErrorBody
		body.Error.Code = map[int]string{404: "not_found", 405: "method_not_allowed"}[code]
		body.Error.Message = msg
		writeJSON(w, code, body)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"encoding the report"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
