package audit

import (
	"context"
	"testing"
	"time"
)

// generate appends n entries made by mk directly on the writer goroutine,
// in journal frames of up to 1024 entries (indexed as appends are), then
// signs a checkpoint. It is how the benchmarks build big logs quickly; the rows are
// exactly what Append would write.
func generate(tb testing.TB, l *Log, n int, mk func(i int) *Entry) {
	tb.Helper()
	err := l.control(context.Background(), func(done chan error) error {
		w := l.w
		for i := 0; i < n; {
			m := min(n-i, 1024)
			rows := make([]row, m)
			var tiles []tileRow
			t := max(l.opts.Now().UnixNano(), w.lastTime)
			first := w.size
			for j := range rows {
				e := mk(i + j)
				if e.Node == "" {
					e.Node = l.node
				}
				if err := e.normalize(); err != nil {
					done <- err
					return err
				}
				seq := w.size
				body := appendTrailer(appendTail(appendHead(nil, seq, time.Unix(0, t)), e), e)
				hs := w.appendLeaf(w.rng, seq, body, &tiles)
				rows[j] = row{seq: seq, t: t, tokenID: e.Actor.TokenID, subject: e.Actor.Subject, hashes: hs, body: body}
				w.size++
			}
			if err := l.journal(first, t, rows, nil, nil); err != nil {
				done <- err
				return err
			}
			w.lastTime = t
			l.durable.Store(w.size)
			l.idx <- &indexBatch{rows: rows, tiles: tiles, size: w.size}
			i += m
		}
		return l.checkpointAsync(done)
	})
	if err != nil {
		tb.Fatal(err)
	}
}
