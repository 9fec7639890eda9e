package audit

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Search limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// scanBudget bounds the entries one Search reads, so that a query no
	// index helps with answers in bounded time; the page then ends early
	// and Next says where to go on.
	scanBudget = 20000
	maxParam   = 2048
)

// Query selects entries. Zero fields do not filter. Subject and TokenID use
// indexes; the time range is found by binary search (times never go back
// in the log); the other filters are applied while scanning.
type Query struct {
	From, To time.Time // From <= time < To
	Subject  string
	TokenID  string
	Actions  []Action // any of these
	Outcome  Outcome
	Upstream string
	// PathPrefix matches whole segments of the request path, without its
	// query: "/fhir/Patient" finds "/fhir/Patient/1?x=y", not
	// "/fhir/PatientX". With a Sealer it is looked up in the blind index.
	PathPrefix string
	// Patient is the patient id the entry was bound to (exact). With a
	// Sealer it is looked up in the blind index.
	Patient string
	// Desc returns the newest entries first.
	Desc bool
	// Cursor, when HasCursor is set, continues a previous page: entries
	// after it (ascending) or before it (Desc).
	Cursor    uint64
	HasCursor bool
	// Limit is the page size (DefaultLimit when 0, at most MaxLimit).
	Limit int
}

// Page is one page of a search.
type Page struct {
	Entries []*Entry `json:"entries"`
	// Next is the cursor of the next page ("after" ascending, "before"
	// descending); empty when there is no more.
	Next string `json:"next,omitempty"`
}

// QueryError is a bad search parameter.
type QueryError struct {
	Field string
	Msg   string
}

func (e *QueryError) Error() string { return "audit: search parameter " + e.Field + ": " + e.Msg }

// ParseQuery parses the URL query of GET /v1/audit:
//
//	from, to      RFC 3339 times (from inclusive, to exclusive)
//	subject       the actor's subject
//	token_id      the actor's token id
//	action        an action; repeat it or separate with commas for several
//	outcome       success | denied | failure
//	upstream      the upstream's name
//	path_prefix   the first whole segments of the request path
//	patient       the patient id (exact)
//	order         asc (default) | desc
//	after         cursor: the previous page's next (ascending)
//	before        cursor: the previous page's next (descending; implies desc)
//	limit         1 to 1000 (default 100)
//
// Unknown or repeated parameters are refused. Every error is a *QueryError.
func ParseQuery(v url.Values) (*Query, error) {
	q := &Query{}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	order := ""
	for _, k := range keys {
		vals := v[k]
		if k != "action" && len(vals) > 1 {
			return nil, &QueryError{k, "given more than once"}
		}
		for _, s := range vals {
			if len(s) > maxParam {
				return nil, &QueryError{k, "too long"}
			}
		}
		s := vals[0]
		var err error
		switch k {
		case "from":
			q.From, err = parseTime(s)
		case "to":
			q.To, err = parseTime(s)
		case "subject":
			q.Subject = s
		case "token_id":
			q.TokenID = s
		case "action":
			for _, s := range vals {
				for _, a := range strings.Split(s, ",") {
					a = strings.TrimSpace(a)
					if !Action(a).Known() {
						return nil, &QueryError{k, fmt.Sprintf("unknown action %q", cut(a, 64))}
					}
					if len(q.Actions) >= 32 {
						return nil, &QueryError{k, "too many actions"}
					}
					q.Actions = append(q.Actions, Action(a))
				}
			}
		case "outcome":
			if q.Outcome = Outcome(s); !q.Outcome.Valid() {
				return nil, &QueryError{k, "must be success, denied or failure"}
			}
		case "upstream":
			q.Upstream = s
		case "path_prefix":
			q.PathPrefix = s
		case "patient":
			q.Patient = s
		case "order":
			if s != "asc" && s != "desc" {
				return nil, &QueryError{k, "must be asc or desc"}
			}
			order = s
		case "after", "before":
			if q.HasCursor {
				return nil, &QueryError{k, "give either after or before"}
			}
			q.Cursor, err = strconv.ParseUint(s, 10, 64)
			if err != nil || strconv.FormatUint(q.Cursor, 10) != s {
				return nil, &QueryError{k, "must be a cursor (a sequence number) from a previous page"}
			}
			q.HasCursor, q.Desc = true, k == "before"
		case "limit":
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxLimit {
				return nil, &QueryError{k, fmt.Sprintf("must be 1 to %d", MaxLimit)}
			}
			q.Limit = n
		default:
			return nil, &QueryError{k, "unknown parameter"}
		}
		if err != nil {
			return nil, &QueryError{k, "must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z"}
		}
	}
	switch {
	case order == "asc" && q.HasCursor && q.Desc:
		return nil, &QueryError{"before", "is for order=desc; use after"}
	case order == "desc" && q.HasCursor && !q.Desc:
		return nil, &QueryError{"after", "is for order=asc; use before"}
	case order == "desc":
		q.Desc = true
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return nil, &QueryError{"to", "must be after from"}
	}
	return q, nil
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	if t.Year() < 1970 || t.Year() > 2261 {
		return time.Time{}, fmt.Errorf("out of range")
	}
	return t, nil
}

// Values encodes q as URL query parameters (the inverse of ParseQuery).
func (q *Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339Nano))
	}
	set("subject", q.Subject)
	set("token_id", q.TokenID)
	for _, a := range q.Actions {
		v.Add("action", string(a))
	}
	set("outcome", string(q.Outcome))
	set("upstream", q.Upstream)
	set("path_prefix", q.PathPrefix)
	set("patient", q.Patient)
	switch {
	case q.HasCursor && q.Desc:
		v.Set("before", strconv.FormatUint(q.Cursor, 10))
	case q.HasCursor:
		v.Set("after", strconv.FormatUint(q.Cursor, 10))
	case q.Desc:
		v.Set("order", "desc")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// match reports whether e passes the filters of q (all of them: the
// search columns are only a way to find candidates); prefix is
// q.PathPrefix as wholePrefix returns it.
func (q *Query) match(e *Entry, prefix string) bool {
	if q.Subject != "" && e.Actor.Subject != q.Subject || q.TokenID != "" && e.Actor.TokenID != q.TokenID {
		return false
	}
	if !q.From.IsZero() && e.Time.Before(q.From) || !q.To.IsZero() && !e.Time.Before(q.To) {
		return false
	}
	if q.Outcome != "" && e.Outcome != q.Outcome || q.Upstream != "" && e.Upstream != q.Upstream {
		return false
	}
	if !pathHasPrefix(e.Path, prefix) || q.Patient != "" && e.Patient != q.Patient {
		return false
	}
	if len(q.Actions) > 0 {
		for _, a := range q.Actions {
			if e.Action == a {
				return true
			}
		}
		return false
	}
	return true
}

// timeBound returns the first seq in [0, size) whose time is at or after t
// (size when none).
func (s *store) timeBound(ctx context.Context, t time.Time, size uint64) (uint64, error) {
	want := t.UnixNano()
	lo, hi := uint64(0), size
	for lo < hi {
		mid := lo + (hi-lo)/2
		mt, err := s.entryTime(ctx, mid)
		if err != nil {
			return 0, err
		}
		if mt < want {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// search runs q over the first size entries.
func (s *store) search(ctx context.Context, q *Query, size uint64) (*Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	lo, hi := uint64(0), size
	if q.HasCursor {
		if q.Desc {
			hi = min(hi, q.Cursor)
		} else {
			lo = q.Cursor + 1
			if q.Cursor == ^uint64(0) {
				lo = hi
			}
		}
	}
	var err error
	if !q.From.IsZero() && lo < hi {
		b, err := s.timeBound(ctx, q.From, size)
		if err != nil {
			return nil, err
		}
		lo = max(lo, b)
	}
	if !q.To.IsZero() && lo < hi {
		b, err := s.timeBound(ctx, q.To, size)
		if err != nil {
			return nil, err
		}
		hi = min(hi, b)
	}
	page := &Page{Entries: []*Entry{}}
	if lo >= hi {
		return page, nil
	}
	sqlq := "SELECT seq, body FROM entries WHERE seq >= ? AND seq < ?"
	args := []any{int64(lo), int64(hi)}
	order := "seq"
	prefix, segs := wholePrefix(q.PathPrefix)
	if tag, ok := queryTag(s.sealer, q, prefix, segs); ok {
		// the blind index gives the candidates (see seal.go)
		sqlq = "SELECT e.seq, e.body FROM phi_index i JOIN entries e ON e.seq = i.seq WHERE i.tag = ? AND i.seq >= ? AND i.seq < ?"
		args = []any{tag, int64(lo), int64(hi)}
		order = "i.seq"
	}
	if q.Subject != "" {
		sqlq += " AND subject = ?"
		args = append(args, q.Subject)
	}
	if q.TokenID != "" {
		sqlq += " AND token_id = ?"
		args = append(args, q.TokenID)
	}
	if q.Desc {
		sqlq += " ORDER BY " + order + " DESC"
	} else {
		sqlq += " ORDER BY " + order
	}
	sqlq += " LIMIT ?"
	args = append(args, scanBudget)
	st, err := s.stmt(ctx, sqlq)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	scanned := 0
	var last int64
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&last, &body); err != nil {
			return nil, err
		}
		scanned++
		e, err := UnmarshalEntry(body)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v (run phigate audit verify)", ErrTampered, last, err)
		}
		if err := openEntry(ctx, s.sealer, e); err != nil {
			return nil, err
		}
		if !q.match(e, prefix) {
			continue
		}
		page.Entries = append(page.Entries, e)
		if len(page.Entries) == limit {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(page.Entries) == limit || scanned == scanBudget {
		page.Next = strconv.FormatInt(last, 10)
	}
	return page, nil
}

// Search returns one page of the entries matching q.
func (l *Log) Search(ctx context.Context, q *Query) (*Page, error) {
	if l.isClosed.Load() {
		return nil, ErrClosed
	}
	size, err := l.visible(ctx)
	if err != nil {
		return nil, err
	}
	return l.st.search(ctx, q, size)
}

// Entry returns the entry with sequence number seq.
func (l *Log) Entry(ctx context.Context, seq uint64) (*Entry, error) {
	if size, err := l.visible(ctx); err != nil {
		return nil, err
	} else if seq >= size {
		return nil, ErrNotFound
	}
	b, err := l.st.entry(ctx, seq)
	if err != nil {
		return nil, err
	}
	e, err := UnmarshalEntry(b)
	if err != nil {
		return nil, err
	}
	if err := openEntry(ctx, l.st.sealer, e); err != nil {
		return nil, err
	}
	return e, nil
}

// rawRange returns the encoded entries [from, from+n) that exist.
func (s *store) rawRange(ctx context.Context, from uint64, n int) ([][]byte, error) {
	st, err := s.stmt(ctx, "SELECT body FROM entries WHERE seq >= ? ORDER BY seq LIMIT ?")
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, int64(from), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}
