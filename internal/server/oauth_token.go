package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/oauth"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/tlsutil"
)

// startOAuth builds the client registry and token endpoint over the node's
// store, the authority and the audit log. defaultEndpoint is the token
// endpoint's URL on the bound admin listener, unless the config names
// another. A store without store.ClientStore gives no registry (nil): the
// endpoints then answer 503 saying so, and the rest of the server runs.
func startOAuth(cfg *config.Config, n *node, auth *authority.Authority, defaultEndpoint string, now func() time.Time, log *slog.Logger) (api.OAuth, error) {
	cs, ok := any(n.store).(store.ClientStore)
	if !ok {
		log.Warn("the store does not keep OAuth clients: /v1/clients and /v1/oauth/token answer 503")
		return nil, nil
	}
	tlsCfg, err := tlsutil.ClientConfig(tlsutil.ClientOptions{CAFile: cfg.OAuth.JWKSCAFile})
	if err != nil {
		return nil, fmt.Errorf("oauth.jwks_ca_file: %w", err)
	}
	endpoint := cfg.OAuth.TokenEndpoint
	if endpoint == "" {
		endpoint = defaultEndpoint
	}
	clk := clockOr(now)
	fetch := oauth.NewFetcher(oauth.FetcherOptions{
		Client: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment,
			MaxResponseHeaderBytes: 16 << 10, TLSHandshakeTimeout: 5 * time.Second}},
		Now: clk,
	})
	svc, err := oauth.New(oauth.Options{
		Clients: cs, Tokens: n.store, Authority: auth, Fetcher: fetch, TokenEndpoint: endpoint,
		TokenTTL: cfg.OAuth.TokenTTL.Duration(), Now: clk,
		Record: func(ctx context.Context, e *audit.Entry) error {
			_, err := n.audit.Append(ctx, e)
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	return svc, nil
}
