package oauth_test

import (
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phigate/phigate/internal/oauth"
)

// BenchmarkES384Verify is the signature check of one assertion alone
// (parse with the allowed algorithms, verify, decode the claims): the
// share of the token endpoint's cost that cryptography takes.
func BenchmarkES384Verify(b *testing.B) {
	testKeys(b)
	f := newFixture(b, nil)
	a := sign(b, jose.ES384, ecKey, "ec1", f.claims("cli_aaaaaaaaaaaaaaaaaaaaaaaa"))
	pk := ecKey.Public()
	b.ReportAllocs()
	for b.Loop() {
		tok, err := jwt.ParseSigned(a, oauth.Algorithms)
		if err != nil {
			b.Fatal(err)
		}
		var cl jwt.Claims
		if err := tok.Claims(pk, &cl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExchange is one whole exchange (store reads, replay insert,
// token issue with its store write) without HTTP or an audit log.
func BenchmarkExchange(b *testing.B) {
	testKeys(b)
	f := newFixture(b, nil)
	c := f.register(oauth.Registration{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.svc.Exchange(b.Context(), req(sign(b, jose.ES384, ecKey, "ec1", f.claims(c.ID)))); err != nil {
				b.Fatal(err)
			}
		}
	})
}
