package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/preauth"
	"github.com/phigate/phigate/internal/reqctx"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/internal/vault"
)

// This file adapts the parts to one another: the authority's changes, the
// vault's key events and the API's denials become audit entries, and the
// audit log's signing key lives in the vault.

// changeRecorder turns the authority's changes into audit entries.
type changeRecorder struct{ log *audit.Log }

var actionOf = map[string]audit.Action{
	authority.ActionCreated:    audit.ActionTokenCreated,
	authority.ActionUpdated:    audit.ActionTokenUpdated,
	authority.ActionRotated:    audit.ActionTokenRotated,
	authority.ActionRetried:    audit.ActionTokenRotationRetried,
	authority.ActionRevoked:    audit.ActionTokenRevoked,
	authority.ActionSuspended:  audit.ActionTokenSuspended,
	authority.ActionReinstated: audit.ActionTokenReinstated,
}

var outcomeOf = map[string]audit.Outcome{
	authority.OutcomeSuccess: audit.OutcomeSuccess,
	authority.OutcomeDenied:  audit.OutcomeDenied,
	authority.OutcomeError:   audit.OutcomeFailure,
}

// RecordChange implements authority.Recorder: durable before it returns.
func (r changeRecorder) RecordChange(ctx context.Context, c *authority.Change) error {
	info := reqctx.From(ctx)
	e := &audit.Entry{
		Action:    actionOf[c.Action],
		Outcome:   outcomeOf[c.Outcome],
		Actor:     audit.ActorOf(c.Actor),
		Source:    audit.Source{UserAgent: info.UserAgent},
		RequestID: info.RequestID,
		Target:    c.TargetID,
		Reason:    c.Reason,
		Purpose:   info.Purpose,
	}
	if info.Source.IsValid() {
		e.Source.IP = info.Source.String()
	}
	// The patient id is PHI: it goes in Patient, which the log seals,
	// never in the snapshots, which it does not. A change of patient
	// shows in the snapshots as patient_id: "changed".
	if c.After != nil {
		e.Patient = c.After.PatientID
	}
	if c.Before != nil {
		e.Before = audit.Snapshot(withoutPatient(c.Before, c.After))
	}
	if c.After != nil {
		e.After = audit.Snapshot(withoutPatient(c.After, c.Before))
	}
	if len(c.IDs) > 1 || c.Where != "" {
		// a cascade: name every token it touched; a leak: where it was found
		after := map[string]any{}
		if len(c.IDs) > 1 {
			after["revoked"] = c.IDs
		}
		if c.Where != "" {
			after["found_at"] = c.Where
		}
		e.After = audit.Snapshot(after)
	}
	_, err := r.log.Append(ctx, e)
	return err
}

// withoutPatient returns r with its patient id replaced: by "changed" when
// other (the record on the other side of the change) has another one,
// else removed.
func withoutPatient(r, other *token.Record) *token.Record {
	if r.PatientID == "" {
		return r
	}
	c := *r
	c.PatientID = ""
	if other != nil && other.PatientID != r.PatientID {
		c.PatientID = "changed"
	}
	return &c
}

// vaultEvents records the vault's key events in the audit log. Events
// that happen before the log is open (the vault creates its first data
// keys at init) are kept and written as soon as it is.
type vaultEvents struct {
	mu      sync.Mutex
	log     *audit.Log
	pending []vault.Event
}

func (ve *vaultEvents) entry(e vault.Event) *audit.Entry {
	out := audit.OutcomeSuccess
	switch e.Outcome {
	case "error":
		out = audit.OutcomeFailure
	case "denied":
		out = audit.OutcomeDenied
	}
	target := e.Purpose
	if e.Name != "" {
		target = e.Purpose + "/" + e.Name
	}
	reason := e.Kind
	if e.Version > 0 {
		reason += fmt.Sprintf(" v%d", e.Version)
	}
	if e.Count > 0 {
		reason += fmt.Sprintf(" (%d items)", e.Count)
	}
	if e.Reason != "" {
		reason += ": " + e.Reason
	}
	return &audit.Entry{Action: audit.ActionKeyRotated, Outcome: out, Actor: audit.Actor{TokenID: e.Actor}, Target: target, Reason: reason}
}

// OnEvent is the vault's hook: an error refuses the vault change.
func (ve *vaultEvents) OnEvent(ctx context.Context, e vault.Event) error {
	ve.mu.Lock()
	log := ve.log
	if log == nil {
		ve.pending = append(ve.pending, e)
		ve.mu.Unlock()
		return nil
	}
	ve.mu.Unlock()
	_, err := log.Append(ctx, ve.entry(e))
	return err
}

// attach starts recording into log and writes what was kept meanwhile.
func (ve *vaultEvents) attach(ctx context.Context, log *audit.Log) error {
	ve.mu.Lock()
	ve.log = log
	pending := ve.pending
	ve.pending = nil
	ve.mu.Unlock()
	for _, e := range pending {
		if _, err := log.Append(ctx, ve.entry(e)); err != nil {
			return err
		}
	}
	return nil
}

// vaultAuditKeys keeps the audit log's checkpoint signing key in the vault
// (envelope-encrypted). The public verifier key is also written to
// keys/audit-verifier.pub so that offline tools (phigate audit key,
// verify) can read it without the master key. A signing key left in a file
// by an earlier version is moved into the vault and the file removed.
type vaultAuditKeys struct {
	v       *vault.Vault
	dataDir string
	node    string
	// shared: the vault is a cluster's (in PostgreSQL): each node keeps
	// its own signing key, named after it (keyNames).
	shared bool
}

// keyNames are the vault names of the node's signing and verifier keys.
func (k vaultAuditKeys) keyNames() (signing, verifier string, err error) {
	if !k.shared {
		return vaultSigningKey, vaultVerifierKey, nil
	}
	s, v := vaultSigningKey+".node."+k.node, vaultVerifierKey+".node."+k.node
	if k.node == "" || !vault.ValidName(s) || !vault.ValidName(v) {
		return "", "", fmt.Errorf("audit.node %q cannot name a key in the shared vault: use letters, digits, '.', '_' and '-'", k.node)
	}
	return s, v, nil
}

const (
	vaultSigningKey  = "audit-signing"
	vaultVerifierKey = "audit-verifier"
)

func (k vaultAuditKeys) CheckpointSigner(ctx context.Context) (note.Signer, string, error) {
	signingName, verifierName, err := k.keyNames()
	if err != nil {
		return nil, "", err
	}
	skey, _, err := k.v.GetKey(ctx, signingName)
	var vkey []byte
	switch {
	case err == nil:
		if vkey, _, err = k.v.GetKey(ctx, verifierName); err != nil {
			return nil, "", fmt.Errorf("audit verifier key: %w", err)
		}
	case errors.Is(err, vault.ErrNotFound):
		skey, vkey, err = k.create(ctx)
		if err != nil {
			return nil, "", err
		}
	default:
		return nil, "", fmt.Errorf("audit signing key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, "", fmt.Errorf("audit signing key: %w", err)
	}
	if err := writePublic(filepath.Join(k.dataDir, audit.VerifierKeyFile), vkey); err != nil {
		return nil, "", err
	}
	return s, strings.TrimSpace(string(vkey)), nil
}

// create moves a legacy file key into the vault, or makes a new key.
func (k vaultAuditKeys) create(ctx context.Context) (skey, vkey []byte, err error) {
	legacy := filepath.Join(k.dataDir, audit.SigningKeyFile)
	if _, statErr := os.Stat(legacy); statErr == nil {
		_, v, err := audit.FileKeys{Dir: k.dataDir}.CheckpointSigner(ctx)
		if err != nil {
			return nil, nil, err
		}
		b, err := os.ReadFile(legacy)
		if err != nil {
			return nil, nil, err
		}
		skey, vkey = []byte(strings.TrimSpace(string(b))), []byte(v)
	} else {
		node := k.node
		if node == "" {
			node = audit.DefaultNode()
		}
		s, v, err := note.GenerateKey(rand.Reader, audit.OriginPrefix+node)
		if err != nil {
			return nil, nil, fmt.Errorf("audit signing key: %w", err)
		}
		skey, vkey = []byte(s), []byte(v)
	}
	signingName, verifierName, err := k.keyNames()
	if err != nil {
		return nil, nil, err
	}
	if _, err := k.v.PutKey(ctx, signingName, skey); err != nil {
		return nil, nil, fmt.Errorf("storing the audit signing key: %w", err)
	}
	if _, err := k.v.PutKey(ctx, verifierName, vkey); err != nil {
		return nil, nil, fmt.Errorf("storing the audit verifier key: %w", err)
	}
	os.Remove(legacy)
	return skey, vkey, nil
}

func writePublic(path string, vkey []byte) error {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strings.TrimSpace(string(vkey)) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append([]byte(strings.TrimSpace(string(vkey))), '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// recordDenial writes an entry the admin API made for a refused request:
// aggregated when the request never authenticated (preauth), else in full.
func (n *node) recordDenial(ctx context.Context, e *audit.Entry) error {
	if n.pre != nil && preauth.Anonymous(e) {
		return n.pre.Record(ctx, e)
	}
	_, err := n.audit.Append(ctx, e)
	return err
}
