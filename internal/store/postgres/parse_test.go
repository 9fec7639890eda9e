package postgres_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/store/postgres"
)

func FuzzParseNotification(f *testing.F) {
	for _, s := range []string{"tok_abc 2", "tok_abc", " 2", "tok -1", "tok 9223372036854775808", "a b c", "", "tok_x 0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		id, rev, ok := postgres.ParseNotification(p)
		if !ok {
			return
		}
		if id == "" || rev < 0 || strings.Contains(id, " ") {
			t.Fatalf("parse(%q) = %q, %d, ok", p, id, rev)
		}
		if got := id + " " + strconv.FormatInt(rev, 10); got != p && !strings.HasPrefix(p, id+" ") {
			t.Fatalf("parse(%q) = %q: not what was sent", p, got)
		}
	})
}

// TestOpenErrorsNeverHoldThePassword: a DSN whose password is wrong or
// whose server is unreachable fails without the password in the error.
func TestOpenErrorsNeverHoldThePassword(t *testing.T) {
	const pw = "s3cr3t-Pa55word"
	for _, dsn := range []string{
		"postgres://phigate:" + pw + "@127.0.0.1:1/nodb?sslmode=disable&connect_timeout=1",
		"host=127.0.0.1 port=1 user=phigate password=" + pw + " dbname=nodb sslmode=disable connect_timeout=1",
		"postgres://phigate:" + pw + "@[::1/x",
	} {
		_, err := postgres.Open(context.Background(), dsn, postgres.Options{})
		if err == nil {
			t.Fatalf("Open(%s) succeeded", postgres.Redact(dsn))
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Open error holds the password: %v", err)
		}
		if strings.Contains(postgres.Redact(dsn), pw) {
			t.Errorf("Redact kept the password: %s", postgres.Redact(dsn))
		}
	}
}
