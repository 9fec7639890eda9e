package sqlite

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
)

// CountTokens agrees with a count of the records themselves, by status,
// expired and expiring, for every token and for the children of one; a
// token expiring exactly at now is expired, one expiring exactly at the
// window's end is not expiring.
func TestCountTokensUnderAgreesWithTheRecords(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	ctx := context.Background()
	now := testclock.Start().Add(2 * time.Hour)
	parent := f.record()
	if err := s.CreateToken(ctx, parent, f.secret(parent.ID)); err != nil {
		t.Fatal(err)
	}
	type mk struct {
		status  token.Status
		expires time.Duration // from now
		child   bool
	}
	cases := []mk{
		{token.StatusActive, time.Hour, false}, {token.StatusActive, 30 * time.Hour, true},
		{token.StatusActive, 0, true}, {token.StatusActive, -time.Minute, false},
		{token.StatusActive, 24 * time.Hour, true}, {token.StatusActive, 23 * time.Hour, true},
		{token.StatusSuspended, time.Hour, true}, {token.StatusRevoked, time.Hour, false},
		{token.StatusRevoked, -time.Hour, true},
	}
	var all []*token.Record
	for _, c := range cases {
		r := f.record()
		r.ExpiresAt, r.Status = now.Add(c.expires), c.status
		if c.child {
			r.ParentID = parent.ID
		}
		if err := s.CreateToken(ctx, r, f.secret(r.ID)); err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	all = append(all, parent) // expired at now (an hour after Start)
	want := func(parentID string) store.TokenCounts {
		var c store.TokenCounts
		for _, r := range all {
			if parentID != "" && r.ParentID != parentID {
				continue
			}
			switch {
			case r.Status == token.StatusSuspended:
				c.Suspended++
			case r.Status == token.StatusRevoked:
				c.Revoked++
			case !now.Before(r.ExpiresAt):
				c.Expired++
			default:
				c.Active++
				if r.ExpiresAt.Sub(now) < 24*time.Hour {
					c.Expiring++
				}
			}
		}
		return c
	}
	for _, p := range []string{"", parent.ID} {
		got, err := s.CountTokensUnder(ctx, p, now, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if got != want(p) {
			t.Errorf("parent %q: got %+v, want %+v", p, got, want(p))
		}
	}
	if got := want(""); got.Expired != 3 || got.Expiring != 2 || got.Active != 4 {
		t.Fatalf("the fixture is not what the test means: %+v", got)
	}
}

// The count is answered from the covering index, never from the table.
func TestCountTokensUnderUsesTheIndex(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	rows, err := s.readDB.QueryContext(context.Background(), `EXPLAIN QUERY PLAN SELECT status, count(*), sum(expires_at <= 0) FROM tokens INDEXED BY tokens_status GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan += detail + "\n"
	}
	if want := "COVERING INDEX tokens_status"; !strings.Contains(plan, want) {
		t.Fatalf("plan %q does not use %s", plan, want)
	}
}
