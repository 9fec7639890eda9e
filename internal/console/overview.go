package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// The overview's cost is bounded: it reads at most overviewEntries audit
// entries of the last hour, counts the tokens with the store's index
// (or, on a store that cannot count, reads at most overviewTokens
// records), and each token's figures are cached for the cache's TTL.
const (
	overviewEntries = 20000
	overviewTokens  = 20000
	overviewCached  = 64
)

// bar is one rectangle of a server-rendered SVG chart.
type bar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

// label is one text of a chart.
type label struct {
	X, Y float64
	Text string
}

type chart struct {
	W, H   float64
	Bars   []bar
	Labels []label
}

type count struct {
	Name string
	N    int
}

type overviewStats struct {
	At time.Time

	Audit         bool   // the token may read the audit log and there is one
	AuditWhy      string // why not
	PerMinute     chart
	Granted       int
	Denied        int
	Reasons       []count
	ReasonChart   chart
	Truncated     bool
	Size          uint64
	CheckpointAge time.Duration
	CheckpointAt  time.Time

	Tokens          bool
	TokensWhy       string
	ByStatus        []count
	StatusChart     chart
	Expiring        int
	TokensTruncated bool
}

type overviewCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*overviewStats
}

func newOverviewCache(ttl time.Duration) *overviewCache {
	return &overviewCache{ttl: ttl, m: map[string]*overviewStats{}}
}

func (o *overviewCache) get(id string, now time.Time) *overviewStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.m[id]; s != nil && now.Sub(s.At) < o.ttl && !now.Before(s.At) {
		return s
	}
	return nil
}

func (o *overviewCache) put(id string, s *overviewStats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.m) >= overviewCached {
		clear(o.m)
	}
	o.m[id] = s
}

func (c *Console) overviewPage(w http.ResponseWriter, r *http.Request, cl *call) {
	now := c.opts.Now()
	st := c.overview.get(cl.ac.Token.ID, now)
	if st == nil {
		var err error
		if st, err = c.computeOverview(r, cl, now); err != nil {
			c.failErr(w, r, cl.v, err)
			return
		}
		c.overview.put(cl.ac.Token.ID, st)
	}
	c.render(w, r, "overview", page{Title: "Overview", Nav: "overview", V: cl.v, Data: st})
}

func (c *Console) computeOverview(r *http.Request, cl *call, now time.Time) (*overviewStats, error) {
	st := &overviewStats{At: now}
	ctx := r.Context()
	switch {
	case c.opts.Audit == nil:
		st.AuditWhy = "This server has no audit log."
	case !cl.v.Can(scope.AdminAudit):
		st.AuditWhy = cannot(scope.AdminAudit)
	default:
		st.Audit = true
		if err := c.requestStats(ctx, st, now); err != nil {
			return nil, err
		}
		if err := c.recordRead(r, cl, "console:overview"); err != nil {
			return nil, err
		}
	}
	if cl.v.Can(scope.AdminTokens) {
		st.Tokens = true
		if err := c.tokenStats(ctx, cl, st, now); err != nil {
			return nil, err
		}
	} else {
		st.TokensWhy = cannot(scope.AdminTokens)
	}
	return st, nil
}

// requestStats counts the last hour's decisions by minute and the
// denials by reason.
func (c *Console) requestStats(ctx context.Context, st *overviewStats, now time.Time) error {
	from := now.Add(-time.Hour).Truncate(time.Minute).Add(time.Minute)
	q := &audit.Query{From: from, To: now.Add(time.Nanosecond), Actions: []audit.Action{audit.ActionAccessGranted, audit.ActionAccessDenied}, Limit: audit.MaxLimit}
	entries, more, err := c.collect(ctx, q, overviewEntries)
	if err != nil {
		return err
	}
	st.Truncated = more
	var granted, denied [60]int
	reasons := map[string]int{}
	for _, e := range entries {
		i := int(e.Time.Sub(from) / time.Minute)
		if i < 0 || i >= 60 {
			continue
		}
		if e.Action == audit.ActionAccessGranted {
			granted[i]++
			st.Granted++
		} else {
			denied[i]++
			st.Denied++
			reasons[e.Reason]++
		}
	}
	for k, n := range reasons {
		if k == "" {
			k = "(none)"
		}
		st.Reasons = append(st.Reasons, count{k, n})
	}
	sort.Slice(st.Reasons, func(i, j int) bool {
		if st.Reasons[i].N != st.Reasons[j].N {
			return st.Reasons[i].N > st.Reasons[j].N
		}
		return st.Reasons[i].Name < st.Reasons[j].Name
	})
	if len(st.Reasons) > 8 {
		st.Reasons = st.Reasons[:8]
	}
	st.PerMinute = minuteChart(from, granted, denied)
	st.ReasonChart = hbarChart(st.Reasons, "denied")
	st.Size = c.opts.Audit.Size()
	cp, err := c.opts.Audit.Checkpoint(ctx, false)
	if err == nil && cp != nil {
		st.CheckpointAt, st.CheckpointAge = cp.Time, now.Sub(cp.Time).Truncate(time.Second)
	}
	return nil
}

// tokenStats counts the tokens the caller may see by status, and the
// active ones expiring within 24 hours.
func (c *Console) tokenStats(ctx context.Context, cl *call, st *overviewStats, now time.Time) error {
	// counted by the store, every token, when it can
	switch n, err := c.auth.CountTokens(ctx, cl.ac, now, 24*time.Hour); {
	case err == nil:
		st.Expiring = n.Expiring
		st.ByStatus = []count{{string(token.StatusActive), n.Active}, {string(token.StatusSuspended), n.Suspended},
			{string(token.StatusRevoked), n.Revoked}, {"expired", n.Expired}}
		st.StatusChart = hbarChart(st.ByStatus, "status")
		return nil
	case !errors.Is(err, authority.ErrCannotCount):
		return err
	}
	// else read at most overviewTokens of them
	by := map[token.Status]int{}
	after, seen := "", 0
	for seen < overviewTokens {
		recs, next, err := c.auth.List(ctx, cl.ac, store.TokenFilter{After: after, Limit: 1000})
		if err != nil {
			return err
		}
		for _, rec := range recs {
			seen++
			status := rec.Status
			if status == token.StatusActive && !now.Before(rec.ExpiresAt) {
				status = "expired"
			}
			by[status]++
			if status == token.StatusActive && rec.ExpiresAt.Sub(now) < 24*time.Hour {
				st.Expiring++
			}
		}
		if next == "" {
			after = ""
			break
		}
		after = next
	}
	st.TokensTruncated = after != ""
	for _, s := range []token.Status{token.StatusActive, token.StatusSuspended, token.StatusRevoked, "expired"} {
		st.ByStatus = append(st.ByStatus, count{string(s), by[s]})
	}
	st.StatusChart = hbarChart(st.ByStatus, "status")
	return nil
}

// minuteChart is a stacked bar per minute: granted below, denied above.
func minuteChart(from time.Time, granted, denied [60]int) chart {
	const w, h, pad = 600.0, 160.0, 20.0
	peak := 1
	for i := range granted {
		peak = max(peak, granted[i]+denied[i])
	}
	ch := chart{W: w, H: h + pad}
	bw := w / 60
	for i := range granted {
		x := float64(i) * bw
		gh := h * float64(granted[i]) / float64(peak)
		dh := h * float64(denied[i]) / float64(peak)
		at := from.Add(time.Duration(i) * time.Minute).UTC().Format("15:04")
		if granted[i] > 0 {
			ch.Bars = append(ch.Bars, bar{X: x, Y: h - gh, W: bw - 1, H: gh, Class: "granted", Title: fmt.Sprintf("%s: %d granted", at, granted[i])})
		}
		if denied[i] > 0 {
			ch.Bars = append(ch.Bars, bar{X: x, Y: h - gh - dh, W: bw - 1, H: dh, Class: "denied", Title: fmt.Sprintf("%s: %d denied", at, denied[i])})
		}
	}
	ch.Labels = []label{{0, h + pad - 4, from.UTC().Format("15:04")}, {w - 40, h + pad - 4, from.Add(59 * time.Minute).UTC().Format("15:04")}, {w / 2, 12, fmt.Sprintf("peak %d/min", peak)}}
	return ch
}

// hbarChart is one horizontal bar per count.
func hbarChart(cs []count, class string) chart {
	const w, row, lw = 600.0, 22.0, 180.0
	peak := 1
	for _, c := range cs {
		peak = max(peak, c.N)
	}
	ch := chart{W: w, H: row*float64(len(cs)) + 4}
	for i, c := range cs {
		y := float64(i) * row
		bw := (w - lw - 60) * float64(c.N) / float64(peak)
		ch.Bars = append(ch.Bars, bar{X: lw, Y: y + 3, W: bw, H: row - 6, Class: class + " " + class + "-" + c.Name, Title: fmt.Sprintf("%s: %d", c.Name, c.N)})
		ch.Labels = append(ch.Labels, label{4, y + row - 7, c.Name}, label{lw + bw + 6, y + row - 7, itoa(c.N)})
	}
	return ch
}
