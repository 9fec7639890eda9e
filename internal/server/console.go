package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// bootstrapSubject is the subject of every bootstrap admin token (the
// first start's and those of init --new-admin-token).
const bootstrapSubject = "bootstrap-admin"

// announce tells the operator that the server is up: the listening
// addresses, the SPKI pin and, on the first start, the bootstrap admin
// token, issued only now that both listeners are bound, and written to
// console in a single write. A token that cannot be written is revoked at
// once (it would be usable by nobody but could not be re-shown either),
// and the start fails, saying how to get another. On a start that issues
// no token, announce says whether a bootstrap token is still usable and
// how to get a new one.
func (n *node) announce(ctx context.Context, cfg *config.Config, console io.Writer, adminAddr, gwAddr, pin string, log *slog.Logger) error {
	secret, rec, err := n.bootstrap(ctx, cfg, false, RootLifetime{}, log)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "admin API:   https://%s\n", adminAddr)
	if gwAddr != "" {
		fmt.Fprintf(&b, "gateway:     https://%s\n", gwAddr)
	}
	fmt.Fprintf(&b, "SPKI pin:    %s\n", pin)
	if secret != "" {
		fmt.Fprintf(&b, "\nBootstrap admin token (shown once, expires %s):\n\n    %s\n\n", rec.ExpiresAt.Format(time.RFC3339), secret)
		fmt.Fprintf(&b, "    export PHIGATE_ADDR=https://%s PHIGATE_PIN=%s PHIGATE_TOKEN=<the token above>\n\n", adminAddr, pin)
	} else {
		b.WriteString(n.bootstrapHint(ctx, cfg.DataDir, log))
	}
	if _, werr := console.Write(b.Bytes()); werr != nil && secret != "" {
		if _, rerr := n.auth.Revoke(ctx, authority.Actor{Token: rec}, rec.ID, false, "the bootstrap admin token could not be shown"); rerr != nil {
			log.Error("the bootstrap admin token could not be shown nor revoked", "token_id", rec.ID, "err", rerr)
		}
		return fmt.Errorf("writing the bootstrap admin token to the console: %w (token %s revoked; for another one run phigate init --data %s --new-admin-token)", werr, rec.ID, cfg.DataDir)
	}
	return nil
}

// bootstrapHint is what a start that issues no bootstrap token prints:
// whether a bootstrap admin token issued earlier is still usable, and the
// command that issues another. Only bootstrap tokens are looked at (their
// subject, admin kind and no parent), so the look-up stays small however
// many tokens the store holds.
func (n *node) bootstrapHint(ctx context.Context, dir string, log *slog.Logger) string {
	how := fmt.Sprintf("stop the server and run: phigate init --data %s --new-admin-token\n", dir)
	if n.devKey == nil {
		how = fmt.Sprintf("stop the server and run: phigate init --data %s --new-admin-token, with the server's master key (--master-key or PHIGATE_MASTER_KEY)\n", dir)
	}
	now := n.auth.Config().Now()
	recs, _, err := n.store.ListTokens(ctx, store.TokenFilter{Subject: bootstrapSubject, Status: token.StatusActive, Limit: 1000})
	if err != nil {
		log.Warn("cannot look up the bootstrap admin tokens", "err", err)
		return "\nBootstrap admin token: shown only at the first start. For another one, " + how
	}
	var live *token.Record
	for _, r := range recs {
		if r.ParentID != "" || r.CreatedBy != "" || r.Kind != token.KindAdmin {
			continue // issued by a token: not a bootstrap token, whatever its subject
		}
		if r.ExpiresAt.After(now) && (live == nil || r.ExpiresAt.After(live.ExpiresAt)) {
			live = r
		}
	}
	if live == nil {
		return "\nNo usable bootstrap admin token: the last one has expired or was revoked. Unless you hold another admin token, " + how
	}
	return fmt.Sprintf("\nBootstrap admin token %s: shown only when issued, valid until %s. Lost it? %s",
		live.ID, live.ExpiresAt.UTC().Format(time.RFC3339), how)
}
