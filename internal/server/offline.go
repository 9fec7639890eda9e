package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/vault"
)

// Offline is the vault of a stopped node, opened by an offline command
// (phigate keys rotate-kek --data, secret set --data, ...) with the node's
// audit log attached, so that every key event the command causes is
// recorded as the server would record it. It holds the data directory's
// lock: a running server refuses it, and it refuses a server.
type Offline struct {
	Vault *vault.Vault
	n     *node
}

// OpenOffline opens dir's vault with master key p and its audit log
// (creating the log if the directory has none yet): an offline key change
// is never left unrecorded.
func OpenOffline(ctx context.Context, dir string, p vault.Provider) (_ *Offline, err error) {
	if !vault.Exists(dir) {
		return nil, fmt.Errorf("%s holds no vault: run phigate init or phigate server first", dir)
	}
	n := &node{events: &vaultEvents{}}
	if n.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	if n.vault, err = vault.Open(ctx, dir, p, vault.Options{OnEvent: n.events.OnEvent}); err != nil {
		return nil, err
	}
	if err := n.openAudit(ctx, dir, audit.Options{}); err != nil {
		return nil, err
	}
	return &Offline{Vault: n.vault, n: n}, nil
}

// Close closes the audit log (after a final checkpoint), the vault and
// releases the lock.
func (o *Offline) Close() error {
	if o.n == nil {
		return errors.New("server: offline vault already closed")
	}
	err := o.n.close()
	o.n = nil
	return err
}
