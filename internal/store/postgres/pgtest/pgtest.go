// Package pgtest gives tests a PostgreSQL schema of their own in the
// database named by PHIGATE_TEST_POSTGRES (a DSN such as
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable).
//
// Without the variable a test that asks for one is skipped, except under
// CI=true, where it fails: CI must run them. Each schema has a random name
// and is dropped, with everything in it, when the test ends, so that
// parallel packages and reruns never see each other's rows (the store
// derives its NOTIFY channel from the schema, so their notifications do
// not cross either).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is the variable holding the DSN of the test database.
const Env = "PHIGATE_TEST_POSTGRES"

// BaseDSN returns the test database's DSN, skipping the test when there is
// none (failing it under CI=true).
func BaseDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(Env)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not set: CI must run the PostgreSQL tests (.ci/run starts a server and sets it)", Env)
		}
		tb.Skipf("%s is not set: no PostgreSQL to test against", Env)
	}
	return dsn
}

// Schema creates a fresh schema and returns a DSN whose search_path is it.
// The schema is dropped when the test ends.
func Schema(tb testing.TB) string {
	tb.Helper()
	base := BaseDSN(tb)
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	name := "phigate_t_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("pgtest: connect to drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	dsn, err := WithParam(base, "search_path", name)
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// WithParam returns dsn (URL or key=value form) with key=value added.
func WithParam(dsn, key, value string) (string, error) {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return strings.TrimSpace(dsn) + " " + key + "=" + value, nil
}
