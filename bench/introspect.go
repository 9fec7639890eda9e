package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/phigate/phigate/pkg/client"
)

// introspectGoal: phigate's introspection must reach 70% of the
// baseline's requests per second.
const introspectGoal = 0.70

// runIntrospect measures POST /v1/introspect (RFC 7662): a caller token
// with scope "introspect" asks about one active subject token, again and
// again, from o.Concurrency clients.
func runIntrospect(ctx context.Context, o options, log *slog.Logger, _ io.Writer) (*Report, error) {
	p, err := startInTempDir(ctx, "phigate-bench-introspect-", log)
	if err != nil {
		return nil, err
	}
	defer p.Close()

	admin, err := p.adminClient()
	if err != nil {
		return nil, err
	}
	caller, err := admin.CreateToken(ctx, client.CreateTokenRequest{
		Subject: "bench-introspect-caller", Kind: "service", Scopes: []string{"introspect"}, TTL: "30m",
	})
	if err != nil {
		return nil, err
	}
	subject, err := admin.CreateToken(ctx, client.CreateTokenRequest{
		Subject: "bench-subject", Scopes: []string{"patient/Observation.rs"}, TTL: "30m",
	})
	if err != nil {
		return nil, err
	}
	t := introspectTarget(p.Addr, caller.Secret)
	t.Body = []byte(url.Values{"token": {subject.Secret}}.Encode())
	return compare(ctx, o, "introspect", p, t, introspectGoal)
}

// introspectTarget is POST /v1/introspect at addr with caller's bearer
// token; the answer must say the token is active. The caller sets the
// body (or Next).
func introspectTarget(addr, caller string) *Target {
	return &Target{
		Name:        "phigate",
		URL:         "https://" + addr + "/v1/introspect",
		ContentType: "application/x-www-form-urlencoded",
		Header:      http.Header{"Authorization": {"Bearer " + caller}},
		Expect:      http.StatusOK,
		Check:       checkActive,
	}
}

var errInactive = errors.New(`answer is not {"active":true,...}`)

func checkActive(body []byte) error {
	if !bytes.HasPrefix(body, []byte(`{"active":true`)) {
		return errInactive
	}
	return nil
}
