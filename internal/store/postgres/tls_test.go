package postgres_test

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/store/postgres"
	"github.com/phigate/phigate/internal/store/postgres/pgtest"
	"github.com/phigate/phigate/internal/tlsutil/tlstest"
)

// TestTLSToTheDatabaseVerifiesTheServer: with sslmode=verify-full and
// postgres.ca_file the store talks TLS to a database whose certificate
// that CA signed, and refuses one signed by another CA.
func TestTLSToTheDatabaseVerifiesTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	ca := tlstest.NewCA(t)
	leaf, _ := ca.Leaf(t)
	pg := pgtest.StartPrivate(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := pg.WriteFile(t, "server.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}))
	key := pg.WriteFile(t, "server.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	pg.Stop(t)
	pg.SetArgs("-c ssl=on", "-c ssl_cert_file="+cert, "-c ssl_key_file="+key)
	pg.Start(t)

	s, err := postgres.Open(t.Context(), pg.DSN("verify-full"), postgres.Options{CAFile: ca.File})
	if err != nil {
		t.Fatalf("Open with verify-full and the right CA: %v", err)
	}
	defer s.Close()
	var ssl bool
	if err := s.Pool().QueryRow(t.Context(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("the connection is not TLS: %v %v", ssl, err)
	}

	other := tlstest.NewCA(t)
	if _, err := postgres.Open(t.Context(), pg.DSN("verify-full"), postgres.Options{CAFile: other.File}); err == nil {
		t.Fatal("Open accepted a server certificate another CA signed")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Logf("refused as expected: %v", err)
	}
}
