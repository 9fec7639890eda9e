package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

// KeyVault is what the secret and key endpoints need of the vault
// (*vault.Vault). Its errors follow package vault: *vault.InputError for
// bad input, vault.ErrRefused when the audit log refused the change,
// vault.ErrNotFound for an unknown purpose.
type KeyVault interface {
	SetSecret(ctx context.Context, name string, value []byte) (vault.SecretInfo, error)
	ListSecrets(ctx context.Context) ([]vault.SecretInfo, error)
	// RotateKEK re-wraps the data keys under next (nil: the current
	// master key).
	RotateKEK(ctx context.Context, next vault.Provider) (vault.Event, error)
	RotateDEK(ctx context.Context, purpose string) (vault.Event, error)
}

// secretRoutes registers the vault endpoints, all under scope admin:keys.
// Secret values go in, never out: answers carry names and versions.
func (s *Server) secretRoutes() {
	m := s.mux
	m.HandleFunc("PUT /v1/secrets/{name}", s.authed(scope.AdminKeys, s.withVault(s.setSecret)))
	m.HandleFunc("GET /v1/secrets", s.authed(scope.AdminKeys, s.withVault(s.listSecrets)))
	m.HandleFunc("POST /v1/keys/rotate-kek", s.authed(scope.AdminKeys, s.withVault(s.rotateKEK)))
	m.HandleFunc("POST /v1/keys/rotate-dek/{purpose}", s.authed(scope.AdminKeys, s.withVault(s.rotateDEK)))
}

type vaultHandler func(w http.ResponseWriter, r *http.Request, v KeyVault)

// withVault answers 503 when the server runs without a vault, and makes
// the caller's token id the actor of the vault's events.
func (s *Server) withVault(h vaultHandler) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
		if s.opts.Vault == nil {
			s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: "vault_unavailable", msg: "this server runs without a vault"})
			return
		}
		if ac.Token != nil {
			r = r.WithContext(vault.WithActor(r.Context(), ac.Token.ID))
		}
		h(w, r, s.opts.Vault)
	}
}

// vaultError maps an error of the vault to an apiError; anything else is
// internal (logged, not shown).
func vaultError(err error) error {
	var ie *vault.InputError
	switch {
	case errors.As(err, &ie):
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", field: ie.Field, msg: ie.Error()}
	case errors.Is(err, vault.ErrRefused):
		return &apiError{status: http.StatusServiceUnavailable, code: "audit_unavailable", retry: time.Second, msg: "the audit log cannot be written, so the change was refused; try again later"}
	case errors.Is(err, vault.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "the vault has no data key for that purpose"}
	case errors.Is(err, vault.ErrConflict):
		return &apiError{status: http.StatusConflict, code: "conflict", msg: "another change to the vault happened meanwhile; try again"}
	}
	return err
}

func secretView(i vault.SecretInfo) client.Secret {
	return client.Secret{Name: i.Name, Version: i.Version, UpdatedAt: i.UpdatedAt.UTC()}
}

func (s *Server) setSecret(w http.ResponseWriter, r *http.Request, v KeyVault) {
	name := r.PathValue("name")
	if !vault.ValidName(name) {
		s.writeError(w, r, badRequest("name", "a secret name is 1 to 128 of [A-Za-z0-9._-], starting with a letter or digit"))
		return
	}
	var req client.SetSecretRequest
	if e := s.decodeJSON(w, r, &req, false); e != nil {
		s.writeError(w, r, e)
		return
	}
	if req.Value == "" {
		s.writeError(w, r, badRequest("value", "value is required"))
		return
	}
	info, err := v.SetSecret(r.Context(), name, []byte(req.Value))
	if err != nil {
		s.writeError(w, r, vaultError(err))
		return
	}
	s.log.Info("secret set", "request_id", requestID(r), "name", name, "version", info.Version)
	writeJSON(w, http.StatusOK, secretView(info))
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, v KeyVault) {
	infos, err := v.ListSecrets(r.Context())
	if err != nil {
		s.writeError(w, r, vaultError(err))
		return
	}
	out := client.SecretList{Secrets: make([]client.Secret, 0, len(infos))}
	for _, i := range infos {
		out.Secrets = append(out.Secrets, secretView(i))
	}
	writeJSON(w, http.StatusOK, out)
}

// onlineProviders are the master keys the server can open while running:
// an env: variable is fixed at start, and a passphrase needs a terminal or
// a descriptor handed over at start, so those rotate offline (phigate keys
// rotate-kek --data).
var onlineProviders = map[string]bool{vault.KindFile: true, vault.KindAWSKMS: true}

func (s *Server) rotateKEK(w http.ResponseWriter, r *http.Request, v KeyVault) {
	var req client.RotateKEKRequest
	if e := s.decodeJSON(w, r, &req, true); e != nil {
		s.writeError(w, r, e)
		return
	}
	var next vault.Provider
	if req.NewMasterKey != "" {
		spec, err := vault.ParseSpec(req.NewMasterKey)
		if err != nil {
			var ie *vault.InputError
			errors.As(err, &ie)
			s.writeError(w, r, badRequest("new_master_key", "%s", ie.Msg))
			return
		}
		if !onlineProviders[spec.Kind] {
			s.writeError(w, r, badRequest("new_master_key", "a %s master key cannot be opened by a running server: rotate offline with phigate keys rotate-kek --data DIR", spec.Kind))
			return
		}
		if next, err = vault.OpenProvider(r.Context(), spec, vault.ProviderOptions{}); err != nil {
			s.log.Warn("rotate-kek: new master key unusable", "request_id", requestID(r), "spec", spec.String(), "err", err)
			s.writeError(w, r, badRequest("new_master_key", "the new master key cannot be used: %v", err))
			return
		}
	}
	ev, err := v.RotateKEK(r.Context(), next)
	if err != nil {
		s.writeError(w, r, vaultError(err))
		return
	}
	s.log.Info("master key rotated", "request_id", requestID(r), "from", ev.From, "to", ev.To, "data_keys", ev.Count)
	writeJSON(w, http.StatusOK, client.KEKRotation{From: ev.From, To: ev.To, DataKeys: ev.Count, RotatedAt: ev.At})
}

func (s *Server) rotateDEK(w http.ResponseWriter, r *http.Request, v KeyVault) {
	purpose := r.PathValue("purpose")
	ev, err := v.RotateDEK(r.Context(), purpose)
	if err != nil {
		s.writeError(w, r, vaultError(err))
		return
	}
	s.log.Info("data key rotated", "request_id", requestID(r), "purpose", ev.Purpose, "version", ev.Version)
	writeJSON(w, http.StatusOK, client.DEKRotation{Purpose: ev.Purpose, Version: ev.Version, RotatedAt: ev.At})
}
