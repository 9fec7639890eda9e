package auditcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/testclock"
)

// key is an entry's place in the merged order.
type key struct {
	t      int64
	origin string
	seq    uint64
}

func keyOf(it Item) key { return key{it.Entry.Time.UnixNano(), it.Origin, it.Entry.Seq} }

func cmpKey(a, b key) int {
	switch {
	case a.t != b.t:
		return cmpInt(a.t, b.t)
	case a.origin != b.origin:
		return strings.Compare(a.origin, b.origin)
	}
	return cmpInt(int64(a.seq), int64(b.seq))
}

func cmpInt(a, b int64) int {
	if a < b {
		return -1
	} else if a > b {
		return 1
	}
	return 0
}

func collect(t *testing.T, c *Cluster, q Query) []Item {
	t.Helper()
	var out []Item
	for it, err := range c.All(context.Background(), q) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, it)
	}
	return out
}

func TestSearchMergesEveryOriginByTime(t *testing.T) {
	c, _ := testCluster(t, testclock.New().Now)
	// two nodes whose clocks agree, and a third whose entries carry the
	// very same times as the first's (ties: broken by origin, then seq)
	clk := testclock.New()
	now := ticking(clk)
	a, b := newNode(t, "a", now), newNode(t, "b", now)
	for i := 0; i < 6; i++ {
		a.appendN(t, 5, "svc:a")
		b.appendN(t, 3, "svc:b")
	}
	a.close(t)
	b.close(t)
	// two nodes whose entries all carry one time
	fixed := testclock.New()
	tie, tie2 := newNode(t, "0tie", fixed.Now), newNode(t, "zz", fixed.Now)
	tie.appendN(t, 2, "svc:tie")
	tie2.appendN(t, 2, "svc:tie")
	tie.close(t)
	tie2.close(t)
	for _, n := range []*node{a, b, tie, tie2} {
		n.sync(t, c)
	}

	all := collect(t, c, Query{})
	if len(all) != 30+18+4 {
		t.Fatalf("%d entries merged, want 52", len(all))
	}
	if !slices.IsSortedFunc(all, func(x, y Item) int { return cmpKey(keyOf(x), keyOf(y)) }) {
		t.Fatal("the merged entries are not ordered by (time, origin, seq)")
	}
	ties := 0
	for i := 1; i < len(all); i++ {
		if keyOf(all[i]).t == keyOf(all[i-1]).t {
			ties++
		}
	}
	if ties == 0 {
		t.Fatal("no two entries share a time: the tie-break is not exercised")
	}
	seen := map[key]bool{}
	origins := map[string]int{}
	for _, it := range all {
		if seen[keyOf(it)] {
			t.Fatalf("%v twice", keyOf(it))
		}
		seen[keyOf(it)] = true
		origins[it.Origin]++
		if it.Origin != "phigate/"+it.Entry.Node {
			t.Errorf("entry of node %s listed under %s", it.Entry.Node, it.Origin)
		}
	}
	if origins["phigate/a"] != 30 || origins["phigate/b"] != 18 || origins["phigate/0tie"] != 2 || origins["phigate/zz"] != 2 {
		t.Errorf("per origin: %v", origins)
	}
	// a and b interleave: b's first entry comes before a's last
	var firstB, lastA int
	for i, it := range all {
		if it.Origin == "phigate/b" && firstB == 0 {
			firstB = i
		}
		if it.Origin == "phigate/a" {
			lastA = i
		}
	}
	if firstB > lastA {
		t.Error("the nodes' entries do not interleave by time")
	}

	t.Run("PagesAreTheSameAsOnePass", func(t *testing.T) {
		for _, limit := range []int{1, 7, 52, 1000} {
			paged := collect(t, c, Query{Query: audit.Query{Limit: limit}})
			if !slices.EqualFunc(paged, all, func(x, y Item) bool { return keyOf(x) == keyOf(y) }) {
				t.Fatalf("limit %d: pages differ from one pass", limit)
			}
		}
	})
	t.Run("DescIsTheReverse", func(t *testing.T) {
		desc := collect(t, c, Query{Query: audit.Query{Desc: true, Limit: 5}})
		rev := slices.Clone(all)
		slices.Reverse(rev)
		if !slices.EqualFunc(desc, rev, func(x, y Item) bool { return keyOf(x) == keyOf(y) }) {
			t.Fatal("descending order is not the reverse")
		}
	})
	t.Run("Filters", func(t *testing.T) {
		mid := all[20].Entry.Time
		cases := []struct {
			name string
			q    audit.Query
			want func(Item) bool
		}{
			{"Subject", audit.Query{Subject: "svc:b"}, func(it Item) bool { return it.Entry.Actor.Subject == "svc:b" }},
			{"TokenID", audit.Query{TokenID: "tok_a_1"}, func(it Item) bool { return it.Entry.Actor.TokenID == "tok_a_1" }},
			{"From", audit.Query{From: mid}, func(it Item) bool { return !it.Entry.Time.Before(mid) }},
			{"To", audit.Query{To: mid}, func(it Item) bool { return it.Entry.Time.Before(mid) }},
			{"Outcome", audit.Query{Outcome: audit.OutcomeDenied}, func(Item) bool { return false }},
		}
		for _, tt := range cases {
			t.Run(tt.name, func(t *testing.T) {
				var want []Item
				for _, it := range all {
					if tt.want(it) {
						want = append(want, it)
					}
				}
				q := tt.q
				q.Limit = 4
				got := collect(t, c, Query{Query: q})
				if !slices.EqualFunc(got, want, func(x, y Item) bool { return keyOf(x) == keyOf(y) }) {
					t.Fatalf("%d entries, want %d", len(got), len(want))
				}
			})
		}
	})
	t.Run("SealedFieldsAreRefusedWithoutASealer", func(t *testing.T) {
		for _, q := range []audit.Query{{PathPrefix: "/fhir"}, {Patient: "p1"}} {
			_, _, err := c.SearchPage(context.Background(), &Query{Query: q})
			var qe *audit.QueryError
			if !errors.As(err, &qe) {
				t.Errorf("%+v: %v, want a QueryError", q, err)
			}
		}
	})
	t.Run("SearchValuesPagesByCursor", func(t *testing.T) {
		v := url.Values{"limit": {"10"}, "subject": {"svc:a"}}
		var got []*audit.Entry
		for {
			p, err := c.SearchValues(context.Background(), v)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p.Entries...)
			if p.Next == "" {
				break
			}
			v.Set("after", p.Next)
		}
		if len(got) != 30 {
			t.Fatalf("%d entries of svc:a by pages, want 30", len(got))
		}
		js, _ := json.Marshal(got[0])
		if !bytes.Contains(js, []byte(`"node":"a"`)) {
			t.Errorf("an entry of the merged page does not name its node: %s", js)
		}
	})
}

func TestParseQueryRefusesBadCursors(t *testing.T) {
	for _, v := range []url.Values{
		{"after": {"12"}},
		{"after": {"1.2."}},
		{"after": {"01.2.phigate/a"}},
		{"after": {"+1.2.phigate/a"}},
		{"after": {"-1.2.phigate/a"}},
		{"after": {"1.2.phigate/a"}, "before": {"1.2.phigate/a"}},
		{"after": {"1.2.phigate/a", "1.3.phigate/a"}},
		{"after": {"1.2.phigate/a"}, "bogus": {"x"}},
	} {
		_, err := ParseQuery(v)
		var qe *audit.QueryError
		if !errors.As(err, &qe) {
			t.Errorf("%v: %v, want a QueryError", v, err)
		}
	}
	q, err := ParseQuery(url.Values{"before": {"5.3.phigate/a.b"}, "subject": {"s"}})
	if err != nil || !q.Desc || q.After == nil || *q.After != (Cursor{5, "phigate/a.b", 3}) || q.Subject != "s" {
		t.Fatalf("%+v, %v", q, err)
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"1767225600123456789.5.phigate/node-1", "0.0.x", "1.2.phigate/a.b.c", "", "1..a", "9223372036854775807.9223372036854775807.phigate/z", "1.2.\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		if c.String() != s {
			t.Fatalf("%q parsed as %+v, which prints %q", s, c, c.String())
		}
		again, err := ParseCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("%+v does not round-trip: %+v, %v", c, again, err)
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	f.Add("after=1.2.phigate%2Fa&subject=svc%3Aa&limit=10")
	f.Add("before=1.2.phigate%2Fa&from=2026-01-01T00:00:00Z")
	f.Add("after=1&after=2")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v)
		if err != nil {
			var qe *audit.QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("%q: %v is not a QueryError", raw, err)
			}
			return
		}
		if q.After != nil {
			if _, err := ParseCursor(q.After.String()); err != nil {
				t.Fatalf("%q: cursor %+v does not print back", raw, q.After)
			}
		}
	})
}
