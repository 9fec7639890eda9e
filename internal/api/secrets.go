package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
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
	m.HandleFunc("GET /v1/keys/peppers", s.authed(scope.AdminKeys, s.listPeppers))
	m.HandleFunc("POST /v1/keys/rotate-pepper", s.authed(scope.AdminKeys, s.rotatePepper))
	m.HandleFunc("POST /v1/keys/retire-pepper/{version}", s.authed(scope.AdminKeys, s.retirePepper))
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

// The pepper routes go through the authority, which hashes with the
// peppers: a rotation is in use when the answer is written. The vault
// records each rotation and retirement in the audit log, naming the
// caller's token (vault.WithActor).

// pepperError maps an error of the authority's pepper operations.
func pepperError(err error) error {
	var inUse *authority.PepperInUseError
	switch {
	case errors.As(err, &inUse):
		return &apiError{status: http.StatusConflict, code: "pepper_in_use", field: "version", msg: inUse.Error()}
	case errors.Is(err, authority.ErrPepperCurrent):
		return &apiError{status: http.StatusConflict, code: "pepper_current", field: "version", msg: "the current pepper cannot be retired; rotate the pepper first"}
	case errors.Is(err, authority.ErrPepperNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", field: "version", msg: "no such pepper version"}
	case errors.Is(err, authority.ErrNoPepperRing):
		return &apiError{status: http.StatusServiceUnavailable, code: "vault_unavailable", msg: "this server runs without a vault"}
	}
	return vaultError(err)
}

func (s *Server) listPeppers(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	ps, err := s.auth.Peppers(r.Context(), ac)
	if err != nil {
		s.writeError(w, r, pepperError(err))
		return
	}
	out := client.PepperList{Peppers: make([]client.Pepper, len(ps))}
	for i, p := range ps {
		out.Peppers[i] = client.Pepper{Version: p.Version, Current: p.Current, LiveSecrets: p.LiveSecrets}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) rotatePepper(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	v, err := s.auth.RotatePepper(vault.WithActor(r.Context(), ac.Token.ID), ac)
	if err != nil {
		s.writeError(w, r, pepperError(err))
		return
	}
	s.log.Info("token pepper rotated", "request_id", requestID(r), "version", v)
	writeJSON(w, http.StatusOK, client.PepperRotation{Version: v, RotatedAt: s.auth.Config().Now().UTC()})
}

func (s *Server) retirePepper(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	v, err := strconv.Atoi(r.PathValue("version"))
	if err != nil {
		s.writeError(w, r, badRequest("version", "a pepper version is a number (see GET /v1/keys/peppers)"))
		return
	}
	err = s.auth.RetirePepper(vault.WithActor(r.Context(), ac.Token.ID), ac, v)
	var inUse *authority.PepperInUseError
	if errors.As(err, &inUse) || errors.Is(err, authority.ErrPepperCurrent) {
		s.recordKeyRefusal(r, ac, fmt.Sprintf("%s v%d", vault.EventPepperRetired, v), err)
	}
	if err != nil {
		s.writeError(w, r, pepperError(err))
		return
	}
	s.log.Info("token pepper retired", "request_id", requestID(r), "version", v)
	writeJSON(w, http.StatusOK, client.PepperRetirement{Version: v, RetiredAt: s.auth.Config().Now().UTC()})
}

// recordKeyRefusal records a key change refused by policy (the vault
// records the changes it makes, and their failures, itself). As for other
// refusals, a failure to record is logged: the change is refused anyway.
func (s *Server) recordKeyRefusal(r *http.Request, ac authority.Actor, what string, why error) {
	if s.opts.Record == nil {
		return
	}
	e := &audit.Entry{Action: audit.ActionKeyRotated, Outcome: audit.OutcomeDenied, Actor: audit.ActorOf(ac.Token),
		RequestID: requestID(r), Target: vault.PurposePepper, Reason: what + ": " + strings.TrimPrefix(why.Error(), "authority: "),
		Source: audit.Source{UserAgent: truncate(r.UserAgent(), 256)}}
	if a := clientAddr(r); a.IsValid() {
		e.Source.IP = a.String()
	}
	if err := s.opts.Record(r.Context(), e); err != nil {
		s.log.Error("cannot record a refused key change in the audit log", "request_id", e.RequestID, "err", err)
	}
}
