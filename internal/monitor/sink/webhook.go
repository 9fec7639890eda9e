package sink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/monitor"
)

// Header names of a webhook delivery.
const (
	HeaderTimestamp = "X-Phigate-Timestamp"
	HeaderSignature = "X-Phigate-Signature"
)

// MaxAge is how old a delivery's timestamp may be for Verify.
const MaxAge = 5 * time.Minute

// Sign returns the X-Phigate-Signature value of body sent at ts (unix
// seconds): "sha256=" and the hex HMAC-SHA256 under secret of
// "<ts>.<body>".
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature: a delivery whose signature or timestamp does not hold.
var ErrBadSignature = errors.New("sink: bad webhook signature")

// Verify is the receiver's check: the timestamp header is decimal unix
// seconds within MaxAge of now (either way), and the signature header is
// Sign of it and body under secret (compared in constant time).
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || ts <= 0 || len(timestamp) > 19 {
		return fmt.Errorf("%w: timestamp", ErrBadSignature)
	}
	d := now.Sub(time.Unix(ts, 0))
	if d > MaxAge || d < -MaxAge {
		return fmt.Errorf("%w: timestamp outside %v", ErrBadSignature, MaxAge)
	}
	if !hmac.Equal([]byte(signature), []byte(Sign(secret, ts, body))) {
		return ErrBadSignature
	}
	return nil
}

// WebhookOptions configure a Webhook. URL, Secret and Now are required.
type WebhookOptions struct {
	URL    string
	Secret []byte
	// Client posts (nil: a client with a 5 s timeout).
	Client *http.Client
	Now    func() time.Time
	// Queue bounds the alerts waiting (default 256).
	Queue int
	// Attempts per alert (default 5); Backoff the first wait between two
	// (default 250 ms), doubled each time up to MaxBackoff (default 10 s).
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	Logger     *slog.Logger
}

// Webhook posts alerts to one URL. Raise queues; Run delivers.
type Webhook struct {
	o       WebhookOptions
	q       chan []byte
	dropped atomic.Uint64
	sent    atomic.Uint64
	failed  atomic.Uint64
}

// ErrQueueFull: the alert was dropped (counted in Dropped).
var ErrQueueFull = errors.New("sink: webhook queue full, alert dropped")

// NewWebhook checks o and returns the sink; call Run to deliver.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	if o.URL == "" || len(o.Secret) == 0 || o.Now == nil {
		return nil, errors.New("sink: webhook needs a URL, a secret and a clock")
	}
	if !strings.HasPrefix(o.URL, "https://") && !strings.HasPrefix(o.URL, "http://") {
		return nil, errors.New("sink: webhook URL must be http(s)")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if o.Queue <= 0 {
		o.Queue = 256
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Webhook{o: o, q: make(chan []byte, o.Queue)}, nil
}

// Raise implements monitor.Sink: it encodes the alert and queues it,
// never waiting. a.ID must be set (Fanout runs the Recorder first).
func (w *Webhook) Raise(ctx context.Context, a *monitor.Alert) error {
	rec, err := StoreAlert(a)
	if err != nil {
		return err
	}
	v := ViewOf(rec)
	body, err := json.Marshal(Payload{Alert: v, Text: Text(&v)})
	if err != nil {
		return fmt.Errorf("sink: webhook body: %w", err)
	}
	select {
	case w.q <- body:
		return nil
	default:
		n := w.dropped.Add(1)
		w.o.Logger.Warn("webhook queue full: alert dropped", "alert", a.ID, "dropped", n)
		return ErrQueueFull
	}
}

// Stats: delivered, given up on, dropped (queue full).
func (w *Webhook) Stats() (sent, failed, dropped uint64) {
	return w.sent.Load(), w.failed.Load(), w.dropped.Load()
}

// Run delivers queued alerts, one at a time in order, until ctx ends.
func (w *Webhook) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case body := <-w.q:
			if err := w.deliver(ctx, body); err != nil {
				w.failed.Add(1)
				w.o.Logger.Warn("webhook delivery failed", "err", err)
			} else {
				w.sent.Add(1)
			}
		}
	}
}

// errPermanent: an answer that retrying will not change.
var errPermanent = errors.New("refused")

func (w *Webhook) deliver(ctx context.Context, body []byte) error {
	wait := w.o.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		err = w.post(ctx, body)
		if err == nil || errors.Is(err, errPermanent) || attempt >= w.o.Attempts {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, w.o.MaxBackoff)
	}
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	ts := w.o.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "phigate-webhook")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.o.Secret, ts, body))
	resp, err := w.o.Client.Do(req)
	if err != nil {
		// Not the *url.Error: its text holds the URL, and a webhook URL
		// can be a credential (Slack's are).
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("post: %w", ue.Err)
		}
		return fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	default:
		return fmt.Errorf("%w: webhook answered %d", errPermanent, resp.StatusCode)
	}
}
