package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/token"
)

// TestNoTokenSecretInAnyEntry generates token secrets, feeds them to the log
// in every place a careless caller might (a query string, a header copied
// into the user agent, a reason, a snapshot, a mistyped secret), and then
// searches every file of the data directory for them, and every search
// answer.
func TestNoTokenSecretInAnyEntry(t *testing.T) {
	witness := filepath.Join(t.TempDir(), "witness.log")
	l, dir := newTestLog(t, Options{WitnessFile: witness})
	ctx := context.Background()
	var secrets []string
	for i := 0; i < 8; i++ {
		s, err := token.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, s)
	}
	typo := secrets[7][:20] + "X" + secrets[7][21:] // one character wrong
	entries := []*Entry{
		{Action: ActionAuthFailed, Outcome: OutcomeDenied, Reason: "invalid_token: " + secrets[0], Source: Source{IP: "203.0.113.9", UserAgent: "curl/8 Authorization: Bearer " + secrets[1]}},
		{Action: ActionAccessGranted, Outcome: OutcomeSuccess, Path: "/fhir/Patient?access_token=" + secrets[2] + "&_count=1", Method: "GET"},
		{Action: ActionTokenCreated, Outcome: OutcomeSuccess, Target: "tok_x", After: json.RawMessage(`{"id":"tok_x","token":"` + secrets[3] + `"}`)},
		{Action: ActionTokenUpdated, Outcome: OutcomeSuccess, Before: json.RawMessage(`{"note":"` + secrets[4] + `"}`), After: json.RawMessage(`{}`)},
		{Action: ActionBreakGlassUsed, BreakGlass: "used " + secrets[5] + " in the ED", RequestID: secrets[6]},
		{Action: ActionAuthFailed, Outcome: OutcomeDenied, Reason: "malformed " + typo},
	}
	for _, e := range entries {
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	page, err := l.Search(ctx, &Query{})
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := json.Marshal(page)
	if len(page.Entries) != len(entries) || !bytes.Contains(answer, []byte("phi_[REDACTED]")) {
		t.Fatalf("search: %s", answer)
	}
	b, _ := l.Proof(ctx, 0)
	proof, _ := json.Marshal(b)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	haystacks := map[string][]byte{"search answer": answer, "proof": proof}
	for _, root := range []string{dir, filepath.Dir(witness)} {
		maps.Copy(haystacks, dirBytes(t, root))
	}
	if _, ok := haystacks[filepath.Join(dir, DBFile)]; !ok {
		t.Fatal("audit.db not searched")
	}
	for name, h := range haystacks {
		for _, s := range append(secrets, typo) {
			// the whole secret, and any 24-character piece of its random part
			for i := len(token.Prefix); i+24 <= len(s); i += 6 {
				if bytes.Contains(h, []byte(s[i:i+24])) {
					t.Fatalf("%s contains (part of) a token secret", name)
				}
			}
		}
	}
	if strings.Contains(string(haystacks[filepath.Join(dir, DBFile)]), "phi_[REDACTED]") == false {
		t.Fatal("expected the redaction marker in the database")
	}
}
