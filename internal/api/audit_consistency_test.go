package api

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/phigate/phigate/internal/audit"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// TestAuditConsistencyProofVerifiesBetweenTwoCheckpoints: two checkpoints
// taken with entries appended in between; the proof served between their
// sizes is accepted by transparency-dev/merkle's verifier against the two
// signed roots, and carries both checkpoints.
func TestAuditConsistencyProofVerifiesBetweenTwoCheckpoints(t *testing.T) {
	e := newAuditEnv(t, true)
	ctx := context.Background()
	v, err := audit.NewVerifier(e.log.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	e.seed(5)
	old, err := e.log.Checkpoint(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	e.seed(7)
	cur, err := e.log.Checkpoint(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	r := e.json("GET", fmt.Sprintf("/v1/audit/proof/consistency?from=%d&to=%d", old.Size, cur.Size), e.admin, nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var p audit.ConsistencyProof
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.From != old.Size || p.To != cur.Size || p.ToCheckpoint != string(cur.Note) || p.FromCheckpoint != string(old.Note) {
		t.Fatalf("%s", r.body)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, cur.Size, p.Proof, old.Root, cur.Root); err != nil {
		t.Fatal(err)
	}
	signedNew, err := audit.ParseCheckpoint([]byte(p.ToCheckpoint), v)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyConsistency(&p, old, signedNew); err != nil {
		t.Fatal(err)
	}
	// not recorded: the log did not grow by reading it
	if n := e.log.Size(); n != cur.Size {
		t.Errorf("the consistency read grew the log to %d", n)
	}
	bad := map[string]int{
		fmt.Sprintf("from=%d&to=%d", cur.Size, old.Size): 400,
		fmt.Sprintf("from=0&to=%d", cur.Size+1):          400,
		"from=1":                                         400,
		"to=3":                                           400,
		"from=-1&to=3":                                   400,
		"from=01&to=3":                                   400,
		"from=1&to=3&to=4":                               400,
		"from=1&to=3&x=1":                                400,
		"from=1&to=x":                                    400,
	}
	for q, want := range bad {
		r := e.json("GET", "/v1/audit/proof/consistency?"+q, e.admin, nil)
		if r.status != want {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
		errCode(t, r)
	}
	if r := e.json("GET", "/v1/audit/proof/consistency?from=1&to=2", "", nil); r.status != 401 {
		t.Errorf("without a token: %d", r.status)
	}
}
