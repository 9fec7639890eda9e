package audit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// newTestLog opens a log in a fresh data directory with a new key.
func newTestLog(t testing.TB, opts Options) (*Log, string) {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := InitKeys(dir, "test-node", nil); err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, dir
}

// stepClock is a clock that advances by step at each reading.
func stepClock(start time.Time, step time.Duration) func() time.Time {
	var n atomic.Int64
	return func() time.Time { return start.Add(time.Duration(n.Add(1)) * step) }
}

// grant is a realistic access.granted entry.
func grant(i int) *Entry {
	return &Entry{
		Action:    ActionAccessGranted,
		Outcome:   OutcomeSuccess,
		Actor:     Actor{TokenID: "tok_4f3kq9ZpLm2Xc8VbN1sTaR", Subject: "svc:lab-results-app", Kind: "service"},
		Source:    Source{IP: "10.20.30.40", UserAgent: "lab-client/2.3.1 (+https://lab.example.org)"},
		RequestID: fmt.Sprintf("req_8c1e4b2a9f03%06d", i),
		Purpose:   "TREAT",
		Patient:   "pat-000123456",
		Method:    "GET",
		Upstream:  "fhir",
		Path:      fmt.Sprintf("/fhir/Observation?patient=pat-000123456&category=laboratory&_count=50&page=%d", i%10),
	}
}

// completion is the matching access.completed entry.
func completion(i int) *Entry {
	e := grant(i)
	e.Action = ActionAccessCompleted
	e.Status = 200
	e.Bytes = 48213
	e.Duration = 37*time.Millisecond + 412*time.Microsecond
	return e
}

func appendN(t testing.TB, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := l.Append(context.Background(), grant(i)); err != nil {
			t.Fatal(err)
		}
	}
}
