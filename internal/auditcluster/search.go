package auditcluster

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/audit"
)

// Cursor names an entry in the merged order (time, origin, seq).
type Cursor struct {
	Time   int64 // nanoseconds since 1970
	Origin string
	Seq    uint64
}

// String prints c as "<time>.<seq>.<origin>".
func (c Cursor) String() string {
	return strconv.FormatInt(c.Time, 10) + "." + strconv.FormatUint(c.Seq, 10) + "." + c.Origin
}

// maxOrigin bounds the origin of a cursor ("phigate/" and a node name of
// at most 64 bytes, with room to spare).
const maxOrigin = 128

// ParseCursor parses what Cursor.String printed, and nothing else.
func ParseCursor(s string) (Cursor, error) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 || len(s) > 64+maxOrigin {
		return Cursor{}, ErrBadCursor
	}
	t, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 63)
	c := Cursor{Time: t, Seq: seq, Origin: parts[2]}
	if err1 != nil || err2 != nil || t < 0 || c.Origin == "" || len(c.Origin) > maxOrigin || !utf8.ValidString(c.Origin) || c.String() != s {
		return Cursor{}, ErrBadCursor
	}
	return c, nil
}

// Query is a merged search: the filters of audit.Query (its Cursor and
// HasCursor are ignored), and a merged cursor.
type Query struct {
	audit.Query
	// After, when not nil, continues a previous page: entries after it
	// (ascending) or before it (Desc).
	After *Cursor
}

// ParseQuery parses the URL query of GET /v1/audit on a cluster: the
// parameters of audit.ParseQuery, with after and before holding merged
// cursors. Every error is an *audit.QueryError.
func ParseQuery(v url.Values) (*Query, error) {
	rest := url.Values{}
	var cur, which string
	for k, vals := range v {
		if k == "after" || k == "before" {
			if which != "" || len(vals) != 1 {
				return nil, &audit.QueryError{Field: k, Msg: "give one cursor, after or before"}
			}
			which, cur = k, vals[0]
			continue
		}
		rest[k] = vals
	}
	aq, err := audit.ParseQuery(rest)
	if err != nil {
		return nil, err
	}
	q := &Query{Query: *aq}
	if which != "" {
		c, err := ParseCursor(cur)
		if err != nil {
			return nil, &audit.QueryError{Field: which, Msg: "not a cursor of this cluster (the next of a previous page)"}
		}
		q.After = &c
		if which == "before" {
			q.Desc = true
		}
	}
	return q, nil
}

// Item is an entry of the merged view with the origin it comes from.
type Item struct {
	Origin string
	Entry  *audit.Entry
}

// scanBudget bounds the entries one page reads, as audit.Search does: the
// page then ends early and Next says where to go on.
const scanBudget = 20000

// SearchPage returns one page of the merged entries matching q, and the
// cursor of the next page ("" when there is no more).
func (c *Cluster) SearchPage(ctx context.Context, q *Query) ([]Item, string, error) {
	if c.sealer == nil && (q.Patient != "" || q.PathPrefix != "") {
		// they are sealed in a node's entries: the filter would silently
		// match nothing
		f := "patient"
		if q.Patient == "" {
			f = "path_prefix"
		}
		return nil, "", &audit.QueryError{Field: f, Msg: "the cluster's merged view cannot search the sealed PHI fields; search on the node (phigate audit export --data DIR --decrypt)"}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = audit.DefaultLimit
	}
	limit = min(limit, audit.MaxLimit)
	sql := "SELECT origin, seq, time, body FROM audit_entries WHERE true"
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	cmp, dir := ">", ""
	if q.Desc {
		cmp, dir = "<", " DESC"
	}
	if a := q.After; a != nil {
		sql += fmt.Sprintf(" AND (time, origin, seq) %s (%s, %s, %s)", cmp, arg(a.Time), arg(a.Origin), arg(int64(a.Seq)))
	}
	if !q.From.IsZero() {
		sql += " AND time >= " + arg(q.From.UnixNano())
	}
	if !q.To.IsZero() {
		sql += " AND time < " + arg(q.To.UnixNano())
	}
	if q.Subject != "" {
		sql += " AND subject = " + arg([]byte(q.Subject))
	}
	if q.TokenID != "" {
		sql += " AND token_id = " + arg([]byte(q.TokenID))
	}
	sql += " ORDER BY time" + dir + ", origin" + dir + ", seq" + dir + " LIMIT " + arg(scanBudget)
	rows, err := c.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	items := []Item{}
	scanned := 0
	var last Cursor
	var body []byte
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&last.Origin, &seq, &last.Time, &body); err != nil {
			return nil, "", err
		}
		last.Seq = uint64(seq)
		scanned++
		e, err := audit.UnmarshalEntry(body)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %s entry %d: %v (run phigate audit verify --cluster)", audit.ErrTampered, last.Origin, seq, err)
		}
		if c.sealer != nil {
			if err := audit.OpenSealed(ctx, c.sealer(last.Origin), e); err != nil {
				return nil, "", err
			}
		}
		if !q.Matches(e) {
			continue
		}
		items = append(items, Item{Origin: last.Origin, Entry: e})
		if len(items) == limit {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(items) == limit || scanned == scanBudget {
		next = last.String()
	}
	return items, next, nil
}

// Search is SearchPage as an audit.Page (each entry names its node).
func (c *Cluster) Search(ctx context.Context, q *Query) (*audit.Page, error) {
	items, next, err := c.SearchPage(ctx, q)
	if err != nil {
		return nil, err
	}
	p := &audit.Page{Entries: make([]*audit.Entry, len(items)), Next: next}
	for i, it := range items {
		p.Entries[i] = it.Entry
	}
	return p, nil
}

// SearchValues answers GET /v1/audit on a cluster node: ParseQuery, then
// Search. It is what api.Options.AuditSearch takes.
func (c *Cluster) SearchValues(ctx context.Context, v url.Values) (*audit.Page, error) {
	q, err := ParseQuery(v)
	if err != nil {
		return nil, err
	}
	return c.Search(ctx, q)
}

// All iterates over the merged entries matching q, following the pages to
// the end (q.Limit is the page size, audit.MaxLimit when 0). It stops at
// the first error, which it yields.
func (c *Cluster) All(ctx context.Context, q Query) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		if q.Limit == 0 {
			q.Limit = audit.MaxLimit
		}
		for {
			items, next, err := c.SearchPage(ctx, &q)
			if err != nil {
				yield(Item{}, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			cur, err := ParseCursor(next)
			if err != nil {
				yield(Item{}, err)
				return
			}
			q.After = &cur
		}
	}
}
