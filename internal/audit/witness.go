package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// witness hands each new checkpoint to the outside: appended to a file
// and/or POSTed to a URL, off the writer's path. Only the latest pending
// checkpoint is kept: each covers all before it.
type witness struct {
	file   string
	url    string
	client *http.Client
	log    *slog.Logger

	mu      sync.Mutex
	pending *Checkpoint
	wake    chan struct{}
	last    uint64 // size of the last checkpoint delivered
	started bool
}

func newWitness(o Options, log *slog.Logger) *witness {
	c := o.WitnessClient
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	return &witness{file: o.WitnessFile, url: o.WitnessURL, client: c, log: log, wake: make(chan struct{}, 1)}
}

// send queues cp, replacing any checkpoint not yet delivered.
func (w *witness) send(cp *Checkpoint) {
	if cp == nil {
		return
	}
	w.mu.Lock()
	w.pending = cp
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run delivers checkpoints until ctx ends, then delivers the last one.
func (w *witness) run(ctx context.Context) {
	for {
		select {
		case <-w.wake:
			if ctx.Err() == nil {
				// not ctx: closing must not cut a delivery short
				w.deliver(context.Background())
				continue
			}
		case <-ctx.Done():
		}
		// closing: deliver the last checkpoint, within bounds
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		w.deliver(dctx)
		cancel()
		return
	}
}

func (w *witness) deliver(ctx context.Context) {
	w.mu.Lock()
	cp := w.pending
	w.pending = nil
	if cp == nil || w.started && cp.Size <= w.last {
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	if w.file != "" {
		if err := appendWitnessFile(w.file, cp.Note); err != nil {
			w.log.Error("audit: cannot append the checkpoint to the witness file", "file", w.file, "size", cp.Size, "err", err)
		}
	}
	if w.url != "" {
		if err := w.post(ctx, cp.Note); err != nil {
			w.log.Warn("audit: witness did not take the checkpoint", "url", w.url, "size", cp.Size, "err", err)
		}
	}
	w.mu.Lock()
	w.last, w.started = cp.Size, true
	w.mu.Unlock()
}

// appendWitnessFile appends note and an empty line to path (mode 0600),
// fsync'd.
func appendWitnessFile(path string, note []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(append([]byte(nil), note...), '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *witness) post(ctx context.Context, note []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(note))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answer %s", resp.Status)
	}
	return nil
}
