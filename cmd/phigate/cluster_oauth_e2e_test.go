package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phigate/phigate/internal/store/postgres/pgtest"
	"github.com/phigate/phigate/pkg/client"
)

// clusterTokenEndpoint is the token endpoint every node names (as behind
// a load balancer): the aud of the assertions, whichever node gets them.
const clusterTokenEndpoint = "https://phigate.cluster.test/v1/oauth/token"

// TestClusterOAuthClientRegisteredOnOneNodeGetsTokensOnAnother registers
// a client on node-a, exchanges an assertion on node-b, uses the token on
// node-a, sees the same assertion refused on node-a (the replay cache is
// the database's), and after the client's revocation on node-b sees
// node-a refuse both a fresh assertion and the issued token.
func TestClusterOAuthClientRegisteredOnOneNodeGetsTokensOnAnother(t *testing.T) {
	c := newCluster(t, pgtest.Schema(t))
	c.extra = "oauth: {token_endpoint: " + clusterTokenEndpoint + "}\n"
	c.init("node-a")
	a, b := c.start("node-a"), c.start("node-b")
	hc := c.httpClient()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Use: "sig", Algorithm: "ES384"}}})
	sdk := func(n *clusterNode) *client.Client {
		cl, err := client.New("https://"+n.addr, client.WithPins(c.pin), client.WithToken(c.admin))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	oc, err := sdk(a).RegisterClient(ctx, client.RegisterClientRequest{Name: "lab-sync", JWKS: set, Scopes: []string{"system/Observation.rs"}})
	if err != nil {
		t.Fatalf("register on node-a: %v", err)
	}

	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	assertion := func() string {
		jti := make([]byte, 16)
		rand.Read(jti)
		now := time.Now() // the nodes run on the wall clock
		s, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: oc.ID, Subject: oc.ID, Audience: jwt.Audience{clusterTokenEndpoint},
			ID: hex.EncodeToString(jti), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exchange := func(n *clusterNode, as string) (int, map[string]any) {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Observation.rs"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {as}}
		resp, err := hc.Post("https://"+n.addr+"/v1/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v)
		return resp.StatusCode, v
	}

	as := assertion()
	st, v := exchange(b, as)
	tok, _ := v["access_token"].(string)
	if st != http.StatusOK || tok == "" {
		t.Fatalf("exchange on node-b of a client registered on node-a: %d %v", st, v)
	}
	if st, code, _ := c.call(hc, a, "GET", "/v1/tokens/self", tok, nil); st != http.StatusOK {
		t.Fatalf("a token issued on node-b, used on node-a: %d %s", st, code)
	}
	if st, v := exchange(a, as); st != http.StatusUnauthorized || v["error"] != "invalid_client" {
		t.Fatalf("the assertion used on node-b, replayed on node-a: %d %v, want 401 invalid_client", st, v)
	}

	if _, err := sdk(b).RevokeClient(ctx, oc.ID, "retired"); err != nil {
		t.Fatalf("revoke on node-b: %v", err)
	}
	if st, v := exchange(a, assertion()); st != http.StatusUnauthorized || v["error"] != "invalid_client" {
		t.Fatalf("a fresh assertion of the client revoked on node-b, on node-a: %d %v, want 401 invalid_client", st, v)
	}
	eventually(t, 3*time.Second, func() string {
		st, code, _ := c.call(hc, a, "GET", "/v1/tokens/self", tok, nil)
		if st == http.StatusUnauthorized && code == "token_revoked" {
			return ""
		}
		return fmt.Sprintf("the client's token after its revocation on node-b, on node-a: %d %s", st, code)
	})
}
