package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SyslogOptions configure the syslog sink: every entry is sent, in order,
// as an RFC 5424 message over TLS with RFC 5425 octet-counting framing (the
// IHE ATNA transport), to a SIEM. Delivery is at least once: the position
// of the next entry to send is kept in StateFile, and after a connection
// failure the sink reconnects (backing off up to 30s) and resends from it.
// The sink never slows appends: it reads the committed log.
type SyslogOptions struct {
	// Addr is the collector, host:port (6514 is the registered port).
	Addr string
	// TLS configures the connection (nil: system roots, ServerName from
	// Addr). RFC 5425 requires TLS; there is no plaintext mode.
	TLS *tls.Config
	// Format of the message body: "json" (the entry, default) or "fhir"
	// (the FHIR AuditEvent).
	Format string
	// StateFile keeps the position (default <data>/audit-syslog.pos).
	StateFile string
	// FromStart sends the whole log when there is no state file yet;
	// otherwise the sink starts with the entries appended from now on.
	FromStart bool
	// Dialer dials the TCP connection (nil: a net.Dialer with a 10s
	// timeout).
	Dialer *net.Dialer
}

// Syslog facility 10 (security/authorization), as IHE ATNA asks; the
// severity says how much it matters.
const syslogFacility = 10

// SyslogMessage returns the RFC 5424 message for e, without framing:
//
//	<PRI>1 TIMESTAMP HOSTNAME phigate - MSGID [audit@32473 seq="…" origin="…" outcome="…"] BOM MSG
//
// PRI is facility 10 with severity 5 (notice) for a success, 4 (warning)
// for a denial or failure, 1 (alert) for break-glass and alerts. MSGID is
// the action; MSG is body (the entry's JSON or FHIR AuditEvent).
func SyslogMessage(e *Entry, origin string, body []byte) []byte {
	sev := 5
	switch {
	case e.Action == ActionBreakGlassUsed || e.Action == ActionAlertRaised || e.Action == ActionIPBlocked:
		sev = 1
	case e.Outcome == OutcomeDenied || e.Outcome == OutcomeFailure || e.Action == ActionAuthFailed || e.Action == ActionAccessDenied:
		sev = 4
	}
	host := e.Node
	if host == "" {
		host = "-"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s phigate - %s [audit@32473 seq=\"%d\" origin=\"%s\"",
		syslogFacility*8+sev, e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"),
		printable(host, 255), printable(string(e.Action), 32), e.Seq, sdEscape(origin))
	if e.Outcome != "" {
		fmt.Fprintf(&b, " outcome=\"%s\"", sdEscape(string(e.Outcome)))
	}
	b.WriteString("] \ufeff")
	b.Write(body)
	return []byte(b.String())
}

// printable keeps the printable ASCII of s (at most n bytes), "-" if none.
func printable(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if s[i] > ' ' && s[i] < 0x7f {
			b.WriteByte(s[i])
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdEscape escapes an SD-PARAM value (RFC 5424 section 6.3.3).
func sdEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(s)
}

// forwarder is the running syslog sink.
type forwarder struct {
	l     *Log
	o     SyslogOptions
	state string
}

func newForwarder(l *Log, o SyslogOptions) (*forwarder, error) {
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return nil, fmt.Errorf("audit: syslog address %q: %w", o.Addr, err)
	}
	if o.Format == "" {
		o.Format = "json"
	}
	if o.Format != "json" && o.Format != "fhir" {
		return nil, fmt.Errorf("audit: syslog format %q: want json or fhir", o.Format)
	}
	if o.StateFile == "" {
		o.StateFile = filepath.Join(l.dir, "audit-syslog.pos")
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{Timeout: 10 * time.Second}
	}
	return &forwarder{l: l, o: o, state: o.StateFile}, nil
}

func (f *forwarder) position() uint64 {
	b, err := os.ReadFile(f.state)
	if err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return n
		}
	}
	if f.o.FromStart {
		return 0
	}
	return f.l.Size()
}

func (f *forwarder) save(pos uint64) error {
	tmp := f.state + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(pos, 10)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.state)
}

func (f *forwarder) dial(ctx context.Context) (net.Conn, error) {
	cfg := f.o.TLS
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(f.o.Addr)
		cfg.ServerName = host
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	d := &tls.Dialer{NetDialer: f.o.Dialer, Config: cfg}
	return d.DialContext(ctx, "tcp", f.o.Addr)
}

// resendWindow: after a connection is lost, the entries sent on it in
// this last while are sent again (syslog over TCP has no acknowledgement:
// what the kernel accepted may never have reached the collector).
const resendWindow = 30 * time.Second

// sent is a batch written on the current connection.
type sent struct {
	start uint64
	at    time.Time
}

// run sends entries until ctx ends.
func (f *forwarder) run(ctx context.Context) {
	log := f.l.log
	pos := f.position()
	var conn net.Conn
	var w *bufio.Writer
	var dead chan struct{} // closed when the collector closes the connection
	var recent []sent
	backoff := time.Second
	down := false
	drop := func(why string, err error) {
		log.Warn("audit: syslog connection lost; reconnecting and resending the last entries", "addr", f.o.Addr, "why", why, "err", err)
		conn.Close()
		conn, w = nil, nil
		// resend what went out recently on the lost connection
		for _, s := range recent {
			if time.Since(s.at) < resendWindow {
				pos = min(pos, s.start)
				break
			}
		}
		recent = recent[:0]
	}
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := f.dial(ctx)
			if err != nil {
				if !down {
					log.Error("audit: syslog collector unreachable; entries are kept and sent when it is back", "addr", f.o.Addr, "err", err)
					down = true
				}
				sleep(ctx, backoff)
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
			if down {
				log.Info("audit: syslog collector reachable again", "addr", f.o.Addr)
			}
			conn, w, down, backoff = c, bufio.NewWriterSize(c, 64<<10), false, time.Second
			dead = make(chan struct{})
			go func(c net.Conn, dead chan struct{}) {
				io.Copy(io.Discard, c) // a collector sends nothing: this returns when it closes
				close(dead)
			}(c, dead)
		}
		select {
		case <-dead:
			drop("closed by the collector", nil)
			continue
		default:
		}
		bodies, err := f.l.st.rawRange(ctx, pos, 500)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("audit: syslog sink cannot read the log", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		if len(bodies) == 0 {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			go func(dead chan struct{}) {
				select {
				case <-dead:
					cancel()
				case <-wctx.Done():
				}
			}(dead)
			err := f.l.waitCommitted(wctx, pos)
			cancel()
			if errors.Is(err, ErrClosed) {
				return
			}
			continue
		}
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		err = f.send(w, bodies)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			drop("write failed", err)
			continue
		}
		recent = append(recent, sent{start: pos, at: time.Now()})
		for len(recent) > 0 && time.Since(recent[0].at) > resendWindow {
			recent = recent[1:]
		}
		pos += uint64(len(bodies))
		if err := f.save(pos); err != nil {
			log.Warn("audit: syslog sink cannot save its position", "file", f.state, "err", err)
		}
	}
}

// send writes one frame per entry.
func (f *forwarder) send(w *bufio.Writer, bodies [][]byte) error {
	origin := f.l.Origin()
	for _, b := range bodies {
		e, err := UnmarshalEntry(b)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrTampered, err)
		}
		var body []byte
		if f.o.Format == "fhir" {
			body, err = json.Marshal(FHIR(e, origin))
		} else {
			body, err = json.Marshal(e)
		}
		if err != nil {
			return err
		}
		msg := SyslogMessage(e, origin, body)
		// RFC 5425 section 4.3: MSG-LEN SP SYSLOG-MSG
		if _, err := w.WriteString(strconv.Itoa(len(msg)) + " "); err != nil {
			return err
		}
		if _, err := w.Write(msg); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
