package config

import (
	"strings"
	"testing"
)

func TestPostgresSectionIsChecked(t *testing.T) {
	const pw = "hunter2-secret"
	for name, tc := range map[string]struct {
		doc, path string
	}{
		"UnknownStoreScheme":     {"store: mysql://u:" + pw + "@h/db\n", "store"},
		"ClusterWithoutNodeName": {"store: postgres://u@h/db\n", "audit.node"},
		"ZeroPoll":               {"store: postgres://u@h/db\naudit: {node: a}\npostgres: {poll_interval: 0s}\n", "postgres.poll_interval"},
		"StalenessNotAbovePoll":  {"store: postgres://u@h/db\naudit: {node: a}\npostgres: {poll_interval: 5s, max_staleness: 5s}\n", "postgres.max_staleness"},
		"TooManyConns":           {"postgres: {max_conns: 1001}\n", "postgres.max_conns"},
		"NoConns":                {"postgres: {max_conns: 0}\n", "postgres.max_conns"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("data_dir: d\ntls: {cert_file: c, key_file: k}\n" + tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.path+":") {
				t.Fatalf("Parse = %v, want an error at %s", err, tc.path)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("the error repeats the DSN's password: %v", err)
			}
		})
	}
	for _, store := range []string{"", "sqlite", "postgres://u@h/db?sslmode=verify-full", "postgresql://u@h/db"} {
		doc := "data_dir: d\ntls: {cert_file: c, key_file: k}\naudit: {node: n1}\nstore: \"" + store + "\"\n"
		c, err := Parse([]byte(doc))
		if err != nil {
			t.Errorf("store %q: %v", store, err)
			continue
		}
		if got, want := c.StoreIsPostgres(), strings.HasPrefix(store, "postgres"); got != want {
			t.Errorf("store %q: StoreIsPostgres = %v, want %v", store, got, want)
		}
	}
}
