package config

import (
	"strings"
	"testing"
)

func TestAuditTilesAndWitnessesAreValidated(t *testing.T) {
	base := "data_dir: /d\ntls:\n  cert_file: /c\n  key_file: /k\naudit:\n"
	w := "  witnesses:\n    - {name: w.example/a, url: https://w.example/a, vkey: w.example/a+01020304+BAAA}\n"
	for _, tc := range []struct{ doc, want string }{
		{"  tiles: {access: token}\n", "audit.tiles.listen: required"},
		{"  tiles: {access: open, listen: 127.0.0.1:1}\n", "audit.tiles.access: must be one of off, token, public"},
		{"  tiles: {listen: 127.0.0.1:1}\n", "audit.tiles.access: set it to token or public"},
		{"  witnesses:\n    - {name: w.example/a, url: http://w.example/a, vkey: w.example/a+01020304+BAAA}\n", "audit.witnesses[0].url: must be an https:// URL"},
		{"  witnesses:\n    - {name: w.example/a, url: https://w.example/a, vkey: other+01020304+BAAA}\n", "audit.witnesses[0].vkey"},
		{"  witnesses:\n    - {url: https://w.example/a}\n", "audit.witnesses[0].name: required"},
		{w + "  witness_quorum: 2\n", "audit.witness_quorum: must be from 0 to the number of audit.witnesses (1)"},
		{w + "    - {name: w.example/a, url: https://w.example/a, vkey: w.example/a+01020304+BAAA}\n", "listed twice"},
	} {
		_, err := Parse([]byte(base + tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
	for _, ok := range []string{"  tiles: {access: token, listen: 127.0.0.1:8445}\n", "  tiles: {access: off}\n", w + "  witness_quorum: 1\n"} {
		if _, err := Parse([]byte(base + ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
