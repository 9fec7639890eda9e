package storetest

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// clientCases are the clauses of the optional store.ClientStore.
var clientCases = []testCase{
	{"ClientRoundTripKeepsEveryField", testClientRoundTrip},
	{"ClientWithTakenIDConflicts", testClientTakenID},
	{"InvalidClientsAreRefused", testInvalidClients},
	{"UnknownClientIsNotFound", testUnknownClient},
	{"RevokeClientIsFinal", testRevokeClientIsFinal},
	{"ListClientsFiltersAndPages", testListClients},
	{"UseAssertionRefusesAReplayUntilExp", testUseAssertionReplay},
	{"ConcurrentUsesOfOneAssertionHaveOneWinner", testUseAssertionConcurrent},
}

// clients returns the store's ClientStore, skipping the case when the
// backend does not offer it.
func (e *env) clients() store.ClientStore {
	cs, ok := e.s.(store.ClientStore)
	if !ok {
		e.t.Skip("storetest: the backend does not implement store.ClientStore")
	}
	return cs
}

// client returns a minimal valid client with id "cli_<n>", changed by mods.
func (e *env) client(n int, mods ...func(*store.Client)) *store.Client {
	c := &store.Client{
		ID: fmt.Sprintf("cli_%04d", n), Name: fmt.Sprintf("client %d", n), Subject: fmt.Sprintf("client:cli_%04d", n),
		JWKSURL: "https://keys.example/jwks.json", Scopes: []string{"system/Observation.rs"},
		Status: store.ClientActive, CreatedAt: base, UpdatedAt: base, StatusChangedAt: base,
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

func (e *env) checkClient(where string, got, want *store.Client) {
	e.t.Helper()
	g, w := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range g.NumField() {
		name := g.Type().Field(i).Name
		gf, wf := g.Field(i), w.Field(i)
		if gt, ok := gf.Interface().(time.Time); ok {
			if d := diffTime(gt, wf.Interface().(time.Time)); d != "" {
				e.t.Errorf("%s: %s: %s", where, name, d)
			}
			continue
		}
		if !equalish(gf, wf) {
			e.t.Errorf("%s: %s: got %s, want %s", where, name, show(gf), show(wf))
		}
	}
}

func testClientRoundTrip(e *env) {
	cs := e.clients()
	inline := e.client(1, func(c *store.Client) {
		c.Name = "Lab results ✓"
		c.Subject = "client:lab"
		c.JWKSURL = ""
		c.JWKS = []byte(`{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"BB","kid":"k1"}]}`)
		c.Scopes = []string{"system/Observation.rs", "api:read"}
		c.CIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
		c.Hours = &token.Hours{Start: "07:00", End: "19:00", TZ: "America/New_York", Days: []string{"Mon"}}
		c.Rate = &token.Rate{PerSecond: 2.5, Burst: 7}
		c.Purposes = []string{"TREAT", "HOPERAT"}
		c.PurposeRequired = true
		c.MaxTTL = 4*time.Minute + 3
		c.CreatedBy = e.fx.id()
		c.CreatedAt = base.Add(1)
		c.UpdatedAt = base.Add(2)
		c.StatusChangedAt = base.Add(3)
	})
	byURL := e.client(2)
	for _, c := range []*store.Client{inline, byURL} {
		want := *c
		if err := cs.CreateClient(e.ctx, c); err != nil {
			e.t.Fatalf("CreateClient(%s): %v", c.ID, err)
		}
		got, err := cs.Client(e.ctx, c.ID)
		if err != nil {
			e.t.Fatalf("Client(%s): %v", c.ID, err)
		}
		e.checkClient("Client "+c.ID, got, &want)
	}
}

func testClientTakenID(e *env) {
	cs := e.clients()
	if err := cs.CreateClient(e.ctx, e.client(1)); err != nil {
		e.t.Fatal(err)
	}
	err := cs.CreateClient(e.ctx, e.client(1, func(c *store.Client) { c.Name = "other" }))
	if !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("CreateClient(taken id) = %v, want ErrConflict", err)
	}
	got, err := cs.Client(e.ctx, "cli_0001")
	if err != nil || got.Name != "client 1" {
		e.t.Fatalf("after the conflict: %v, %v; want the first client unchanged", got, err)
	}
}

func testInvalidClients(e *env) {
	cs := e.clients()
	for name, mod := range map[string]func(*store.Client){
		"EmptyID":           func(c *store.Client) { c.ID = "" },
		"EmptyName":         func(c *store.Client) { c.Name = "" },
		"RevokedStatus":     func(c *store.Client) { c.Status = store.ClientRevoked },
		"ZeroCreatedAt":     func(c *store.Client) { c.CreatedAt = time.Time{} },
		"NoKeys":            func(c *store.Client) { c.JWKSURL = "" },
		"BothJWKSAndURL":    func(c *store.Client) { c.JWKS = []byte(`{"keys":[]}`) },
		"NegativeMaxTTL":    func(c *store.Client) { c.MaxTTL = -1 },
		"UnknownStatusText": func(c *store.Client) { c.Status = "paused" },
	} {
		err := cs.CreateClient(e.ctx, e.client(9, mod))
		if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			e.t.Errorf("%s: CreateClient = %v, want a plain error", name, err)
		}
	}
	if _, err := cs.Client(e.ctx, "cli_0009"); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("an invalid client was stored: %v", err)
	}
	for name, args := range map[string]struct {
		jti      string
		exp, now time.Time
	}{
		"EmptyJTI":       {"", base.Add(time.Minute), base},
		"LongJTI":        {string(make([]byte, store.MaxJTI+1)), base.Add(time.Minute), base},
		"ExpNotAfterNow": {"j", base, base},
	} {
		err := cs.UseAssertion(e.ctx, "cli_1", args.jti, args.exp, args.now)
		if err == nil || errors.Is(err, store.ErrConflict) {
			e.t.Errorf("UseAssertion(%s) = %v, want a plain error", name, err)
		}
	}
}

func testUnknownClient(e *env) {
	cs := e.clients()
	if _, err := cs.Client(e.ctx, "cli_none"); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("Client(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := cs.RevokeClient(e.ctx, "cli_none", "x", base); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("RevokeClient(unknown) = %v, want ErrNotFound", err)
	}
}

func testRevokeClientIsFinal(e *env) {
	cs := e.clients()
	if err := cs.CreateClient(e.ctx, e.client(1)); err != nil {
		e.t.Fatal(err)
	}
	at := base.Add(time.Hour)
	got, err := cs.RevokeClient(e.ctx, "cli_0001", "retired", at)
	if err != nil {
		e.t.Fatalf("RevokeClient: %v", err)
	}
	want := e.client(1, func(c *store.Client) {
		c.Status, c.StatusReason, c.StatusChangedAt, c.UpdatedAt = store.ClientRevoked, "retired", at, at
	})
	e.checkClient("RevokeClient", got, want)
	stored, err := cs.Client(e.ctx, "cli_0001")
	if err != nil {
		e.t.Fatal(err)
	}
	e.checkClient("Client after revoke", stored, want)
	if _, err := cs.RevokeClient(e.ctx, "cli_0001", "again", at.Add(time.Hour)); !errors.Is(err, store.ErrConflict) {
		e.t.Errorf("second RevokeClient = %v, want ErrConflict", err)
	}
	stored, _ = cs.Client(e.ctx, "cli_0001")
	e.checkClient("Client after second revoke", stored, want)
}

func testListClients(e *env) {
	cs := e.clients()
	creator := e.fx.id()
	var all []string
	for i := range 7 {
		c := e.client(i, func(c *store.Client) {
			if i%2 == 0 {
				c.CreatedBy = creator
			}
		})
		if err := cs.CreateClient(e.ctx, c); err != nil {
			e.t.Fatal(err)
		}
		all = append(all, c.ID)
	}
	if _, err := cs.RevokeClient(e.ctx, all[3], "", base); err != nil {
		e.t.Fatal(err)
	}
	list := func(f store.ClientFilter) []string {
		var ids []string
		for page := 0; page < 20; page++ {
			cl, next, err := cs.ListClients(e.ctx, f)
			if err != nil {
				e.t.Fatalf("ListClients(%+v): %v", f, err)
			}
			if f.Limit > 0 && len(cl) > f.Limit {
				e.t.Fatalf("ListClients gave %d > limit %d", len(cl), f.Limit)
			}
			for _, c := range cl {
				ids = append(ids, c.ID)
			}
			if next == "" {
				return ids
			}
			f.After = next
		}
		e.t.Fatal("ListClients does not end")
		return nil
	}
	check := func(name string, got, want []string) {
		if !reflect.DeepEqual(got, want) {
			e.t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	check("all in pages of 2", list(store.ClientFilter{Limit: 2}), all)
	check("active", list(store.ClientFilter{Status: store.ClientActive}), []string{all[0], all[1], all[2], all[4], all[5], all[6]})
	check("revoked", list(store.ClientFilter{Status: store.ClientRevoked}), []string{all[3]})
	check("created by", list(store.ClientFilter{CreatedBy: creator, Limit: 3}), []string{all[0], all[2], all[4], all[6]})
}

func testUseAssertionReplay(e *env) {
	cs := e.clients()
	exp := base.Add(5 * time.Minute)
	if err := cs.UseAssertion(e.ctx, "cli_a", "jti-1", exp, base); err != nil {
		e.t.Fatalf("first use: %v", err)
	}
	if err := cs.UseAssertion(e.ctx, "cli_a", "jti-1", exp, base.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		e.t.Errorf("replay within its lifetime = %v, want ErrConflict", err)
	}
	// the same jti of another client is another assertion
	if err := cs.UseAssertion(e.ctx, "cli_b", "jti-1", exp, base.Add(time.Minute)); err != nil {
		e.t.Errorf("same jti, other client = %v, want nil", err)
	}
	// after its exp the jti is forgotten (exp bounds what a replay could do)
	later := exp.Add(time.Second)
	if err := cs.UseAssertion(e.ctx, "cli_a", "jti-1", later.Add(time.Minute), later); err != nil {
		e.t.Errorf("reuse after exp = %v, want nil", err)
	}
	if err := cs.UseAssertion(e.ctx, "cli_a", "jti-1", later.Add(time.Minute), later); !errors.Is(err, store.ErrConflict) {
		e.t.Errorf("replay of the renewed jti = %v, want ErrConflict", err)
	}
}

func testUseAssertionConcurrent(e *env) {
	cs := e.clients()
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cs.UseAssertion(e.ctx, "cli_a", "race", base.Add(time.Minute), base)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				e.t.Errorf("UseAssertion: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != concurrency-1 {
		e.t.Fatalf("%d wins, %d conflicts; want 1 and %d", wins.Load(), conflicts.Load(), concurrency-1)
	}
}
