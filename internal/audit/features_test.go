package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func verifierOf(t *testing.T, l *Log) interface {
	Name() string
	KeyHash() uint32
	Verify(msg, sig []byte) bool
} {
	t.Helper()
	v, err := NewVerifier(l.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestProofBundlesVerifyOffline(t *testing.T) {
	l, _ := newTestLog(t, Options{CheckpointInterval: time.Hour})
	ctx := context.Background()
	appendN(t, l, 37)
	v := verifierOf(t, l)
	for seq := uint64(0); seq < 37; seq++ {
		b, err := l.Proof(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if b.TreeSize != 37 {
			t.Fatalf("Proof must sign a checkpoint covering the entry: %d", b.TreeSize)
		}
		data, _ := json.Marshal(b)
		parsed, err := ParseBundle(data)
		if err != nil {
			t.Fatal(err)
		}
		e, cp, err := VerifyBundle(parsed, v)
		if err != nil || e.Seq != seq || cp.Size != 37 {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
	if _, err := l.Proof(ctx, 37); !errors.Is(err, ErrNotFound) {
		t.Fatalf("proof past the end: %v", err)
	}

	// every way of lying is caught
	good, _ := l.Proof(ctx, 12)
	mutations := map[string]func(b *ProofBundle){
		"other_seq":       func(b *ProofBundle) { b.Seq = 13 },
		"other_entry":     func(b *ProofBundle) { b.EntryBytes[len(b.EntryBytes)-1] ^= 1 },
		"shown_entry":     func(b *ProofBundle) { b.Entry.Path = "/elsewhere" },
		"tree_size":       func(b *ProofBundle) { b.TreeSize = 36 },
		"proof_hash":      func(b *ProofBundle) { b.Inclusion[2][0] ^= 1 },
		"proof_short":     func(b *ProofBundle) { b.Inclusion = b.Inclusion[:len(b.Inclusion)-1] },
		"checkpoint_size": func(b *ProofBundle) { b.Checkpoint = strings.Replace(b.Checkpoint, "\n37\n", "\n38\n", 1) },
		"checkpoint_root": func(b *ProofBundle) {
			// another base64 letter in the root hash, whatever letter was there
			c := byte('x')
			if b.Checkpoint[30] == c {
				c = 'y'
			}
			b.Checkpoint = b.Checkpoint[:30] + string(c) + b.Checkpoint[31:]
		},
		"unsigned": func(b *ProofBundle) { b.Checkpoint = b.Checkpoint[:strings.Index(b.Checkpoint, "\n\n")+2] },
		"other_log_origin": func(b *ProofBundle) {
			b.Checkpoint = strings.Replace(b.Checkpoint, "phigate/test-node", "phigate/other", -1)
		},
	}
	for name, mut := range mutations {
		data, _ := json.Marshal(good)
		b, _ := ParseBundle(data)
		mut(b)
		if _, _, err := VerifyBundle(b, v); !errors.Is(err, ErrBadProof) {
			t.Errorf("%s: accepted or wrong error: %v", name, err)
		}
	}
	// another log's key proves nothing
	other, _ := newTestLog(t, Options{})
	if _, _, err := VerifyBundle(good, verifierOf(t, other)); err == nil {
		t.Fatal("verified with another log's key")
	}
}

func TestParseBundleRejects(t *testing.T) {
	for name, s := range map[string]string{
		"not_json":      "{",
		"unknown_field": `{"format":"phigate-audit-proof/1","extra":1}`,
		"other_format":  `{"format":"x","entry_bytes":"AQ==","checkpoint":"c"}`,
		"short_hash":    `{"format":"phigate-audit-proof/1","entry_bytes":"AQ==","checkpoint":"c","inclusion":["AAA="]}`,
		"trailing":      `{"format":"phigate-audit-proof/1","entry_bytes":"AQ==","checkpoint":"c"} {}`,
		"no_entry":      `{"format":"phigate-audit-proof/1","checkpoint":"c"}`,
		"too_big":       `{"format":"` + strings.Repeat("a", maxBundle) + `"}`,
	} {
		if _, err := ParseBundle([]byte(s)); !errors.Is(err, ErrBadProof) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCheckpointEveryByteMutationIsRejected(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	appendN(t, l, 5)
	cp, err := l.Checkpoint(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	v := verifierOf(t, l)
	if _, err := ParseCheckpoint(cp.Note, v); err != nil {
		t.Fatal(err)
	}
	for i := range cp.Note {
		for _, d := range []byte{1, 0x20, 0x80} {
			b := bytes.Clone(cp.Note)
			b[i] ^= d
			if got, err := ParseCheckpoint(b, v); err == nil {
				t.Fatalf("byte %d ^ %#x accepted: %+v", i, d, got)
			}
		}
	}
}

func TestSplitCheckpoints(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	var file []byte
	for i := 0; i < 3; i++ {
		appendN(t, l, 2)
		cp, _ := l.Checkpoint(context.Background(), true)
		file = append(append(file, cp.Note...), '\n')
	}
	notes, err := SplitCheckpoints(file)
	if err != nil || len(notes) != 3 {
		t.Fatalf("%d %v", len(notes), err)
	}
	for _, n := range notes {
		if _, err := ParseCheckpoint(n, verifierOf(t, l)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := SplitCheckpoints([]byte("\n\n")); err == nil {
		t.Fatal("empty file accepted")
	}
}

func searchLog(t *testing.T) *Log {
	t.Helper()
	l, _ := newTestLog(t, Options{Now: stepClock(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), time.Second)})
	ctx := context.Background()
	for i := 0; i < 60; i++ {
		e := grant(i)
		e.Actor.Subject = fmt.Sprintf("user-%d", i%3)
		e.Actor.TokenID = fmt.Sprintf("tok_%d", i%4)
		if i%5 == 0 {
			e.Action, e.Outcome, e.Reason = ActionAccessDenied, OutcomeDenied, "network_denied"
		}
		if i%2 == 0 {
			e.Upstream, e.Path = "billing", "/billing/invoices/"+strconv.Itoa(i)
		}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestSearchFiltersAndPages(t *testing.T) {
	l := searchLog(t)
	ctx := context.Background()
	count := func(q *Query) []*Entry {
		t.Helper()
		var all []*Entry
		for pages := 0; ; pages++ {
			p, err := l.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, p.Entries...)
			if p.Next == "" {
				return all
			}
			n, _ := strconv.ParseUint(p.Next, 10, 64)
			q.Cursor, q.HasCursor = n, true
			if pages > 100 {
				t.Fatal("cursor loops")
			}
		}
	}
	for name, tc := range map[string]struct {
		q    string
		want int
	}{
		"all":           {"", 60},
		"subject":       {"subject=user-1", 20},
		"token":         {"token_id=tok_2", 15},
		"subject_token": {"subject=user-0&token_id=tok_0", 5},
		"action":        {"action=access.denied", 12},
		"actions":       {"action=access.denied,access.granted", 60},
		"outcome":       {"outcome=denied", 12},
		"upstream":      {"upstream=billing", 30},
		"path_prefix":   {"path_prefix=/billing/invoices", 30},
		"path_whole":    {"path_prefix=/billing/invoices/12", 1},
		"path_segment":  {"path_prefix=/billing/invoices/1", 0}, // whole segments only
		"time_range":    {"from=2026-05-01T00:00:10Z&to=2026-05-01T00:00:20Z", 0},
		"small_pages":   {"limit=7", 60},
		"desc":          {"order=desc&limit=9", 60},
		"nothing":       {"subject=nobody", 0},
	} {
		v, _ := url.ParseQuery(tc.q)
		q, err := ParseQuery(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := count(q)
		if name == "time_range" {
			// one entry a second (every reading of the clock is a second);
			// the window holds some and only those
			for _, e := range got {
				if e.Time.Before(q.From) || !e.Time.Before(q.To) {
					t.Fatalf("time_range returned %v", e.Time)
				}
			}
			if len(got) == 0 {
				t.Fatal("time_range: nothing")
			}
			continue
		}
		if len(got) != tc.want {
			t.Errorf("%s: %d entries, want %d", name, len(got), tc.want)
		}
		for i := 1; i < len(got); i++ {
			if q.Desc != (got[i].Seq < got[i-1].Seq) {
				t.Fatalf("%s: out of order", name)
			}
		}
	}
}

func TestParseQueryRejects(t *testing.T) {
	for _, s := range []string{
		"limit=0", "limit=1001", "limit=x", "from=yesterday", "to=2026-01-01", "action=token.exploded",
		"outcome=maybe", "order=sideways", "after=-1", "after=01", "after=1&before=2", "order=desc&after=1",
		"order=asc&before=1", "subject=a&subject=b", "bogus=1", "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
		"subject=" + strings.Repeat("a", maxParam+1),
	} {
		v, _ := url.ParseQuery(s)
		_, err := ParseQuery(v)
		var qe *QueryError
		if !errors.As(err, &qe) || qe.Field == "" {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestFHIRAuditEvent(t *testing.T) {
	e := grant(1)
	e.Seq, e.Time, e.Node = 9, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "n1"
	e.Interaction = "search-type"
	ev := FHIR(e, "phigate/n1")
	b, _ := json.Marshal(ev)
	s := string(b)
	for _, want := range []string{
		`"resourceType":"AuditEvent"`, `"id":"n1-9"`, `"code":"rest"`, `"code":"search"`, `"action":"E"`,
		`"outcome":"0"`, `"requestor":true`, `"value":"svc:lab-results-app"`, `"altId":"tok_4f3kq9ZpLm2Xc8VbN1sTaR"`,
		`"address":"10.20.30.40"`, `"code":"TREAT"`, `"reference":"Patient/pat-000123456"`,
		`"query":"` + base64.StdEncoding.EncodeToString([]byte("patient=pat-000123456&category=laboratory&_count=50&page=1")) + `"`,
		`IHE.BasicAudit.Query`, `"display":"phigate/n1"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s in\n%s", want, s)
		}
	}
	bg := &Entry{Seq: 1, Time: e.Time, Action: ActionBreakGlassUsed, BreakGlass: "ED: unconscious patient", Actor: e.Actor, Purpose: "ETREAT"}
	b, _ = json.Marshal(FHIR(bg, "phigate/n1"))
	for _, want := range []string{`"code":"110113"`, `"code":"110127"`, `"code":"BTG"`, `"valueString":"ED: unconscious patient"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("break-glass: missing %s in %s", want, b)
		}
	}
	denied := &Entry{Time: e.Time, Action: ActionAccessDenied, Outcome: OutcomeDenied, Reason: "outside_hours", Method: "GET", Path: "/x"}
	if ev := FHIR(denied, "phigate/n1"); ev.Outcome != "4" || ev.OutcomeDesc != "outside_hours" {
		t.Errorf("denied: %+v", ev)
	}
}

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1 and a client config that trusts it.
func testTLS(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "siem"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool}
}

// readFrame reads one RFC 5425 frame: MSG-LEN SP SYSLOG-MSG.
func readFrame(r *bufio.Reader) (string, error) {
	lenStr, err := r.ReadString(' ')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
	if err != nil || n <= 0 || n > 1<<20 {
		return "", fmt.Errorf("bad frame length %q", lenStr)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return string(b), err
}

func TestSyslogSinkOverTLS(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msgs := make(chan string, 1000)
	var conns sync.WaitGroup
	go func() {
		first := true
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func(c net.Conn, dropEarly bool) {
				defer conns.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for i := 0; ; i++ {
					if dropEarly && i == 3 {
						return // the collector goes away mid-stream
					}
					m, err := readFrame(r)
					if err != nil {
						return
					}
					msgs <- m
				}
			}(c, first)
			first = false
		}
	}()
	dir := t.TempDir()
	if _, _, err := InitKeys(dir, "test-node", nil); err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), dir, Options{Syslog: &SyslogOptions{Addr: ln.Addr().String(), TLS: cliTLS, FromStart: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		e := grant(i)
		if i == 4 {
			e.Action, e.Outcome, e.Reason = ActionAccessDenied, OutcomeDenied, "outside_hours"
		}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]string{}
	deadline := time.After(15 * time.Second)
	for len(seen) < 10 {
		select {
		case m := <-msgs:
			// <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] BOM MSG
			f := strings.SplitN(m, " ", 7)
			if len(f) < 7 || !strings.HasPrefix(f[0], "<8") || !strings.HasSuffix(f[0], ">1") || f[2] != "test-node" || f[3] != "phigate" {
				t.Fatalf("not an RFC 5424 message: %q", m)
			}
			sd, msg, ok := strings.Cut(f[6], "] \ufeff")
			if !ok || !strings.HasPrefix(sd, `[audit@32473 seq="`) {
				t.Fatalf("structured data: %q", f[6])
			}
			var e Entry
			if err := json.Unmarshal([]byte(msg), &e); err != nil {
				t.Fatalf("body: %v %q", err, msg)
			}
			if e.Action == ActionAccessDenied && (f[0] != "<84>1" || f[5] != "access.denied") {
				t.Fatalf("a denial is a warning with its action as MSGID: %q", m)
			}
			seen[e.Seq] = e.RequestID
		case <-deadline:
			t.Fatalf("only %d of 10 entries reached the collector", len(seen))
		}
	}
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		pos, _ := os.ReadFile(filepath.Join(dir, "audit-syslog.pos"))
		if strings.TrimSpace(string(pos)) == "10" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("position %q", pos)
		}
	}
}

func TestSyslogMessageEscapes(t *testing.T) {
	e := &Entry{Seq: 1, Time: time.Unix(1, 0), Node: "n 1\x00", Action: "a b"}
	m := string(SyslogMessage(e, `phigate/x"]\`, []byte("{}")))
	if !strings.HasPrefix(m, `<85>1 1970-01-01T00:00:01.000000Z n1 phigate - ab [audit@32473 seq="1" origin="phigate/x\"\]\\"] `) {
		t.Fatalf("%q", m)
	}
}

func TestWitnessFileAndURL(t *testing.T) {
	var mu sync.Mutex
	var posted [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posted = append(posted, b)
		mu.Unlock()
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "witness.log")
	l, _ := newTestLog(t, Options{WitnessFile: file, WitnessURL: srv.URL, CheckpointInterval: time.Hour})
	for i := 0; i < 3; i++ {
		appendN(t, l, 2)
		if _, err := l.Checkpoint(context.Background(), true); err != nil {
			t.Fatal(err)
		}
	}
	v := verifierOf(t, l)
	l.Close()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := SplitCheckpoints(data)
	if err != nil {
		t.Fatal(err)
	}
	last, err := ParseCheckpoint(notes[len(notes)-1], v)
	if err != nil || last.Size != 6 {
		t.Fatalf("witness file's last checkpoint: %+v %v", last, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posted) == 0 {
		t.Fatal("nothing POSTed")
	}
	if cp, err := ParseCheckpoint(posted[len(posted)-1], v); err != nil || cp.Size != 6 {
		t.Fatalf("witness URL's last checkpoint: %+v %v", cp, err)
	}
}

func TestArchiveAndRetention(t *testing.T) {
	l, _ := newTestLog(t, Options{Now: stepClock(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), 24*time.Hour), Retention: 10 * 24 * time.Hour})
	ctx := context.Background()
	appendN(t, l, 30)
	n, err := l.Expired(ctx, time.Date(2020, 1, 31, 0, 0, 0, 0, time.UTC))
	if err != nil || n == 0 || n >= 30 {
		t.Fatalf("expired %d %v", n, err)
	}
	var buf bytes.Buffer
	cp, err := l.Archive(ctx, &buf, n)
	if err != nil {
		t.Fatal(err)
	}
	v := verifierOf(t, l)
	got, err := VerifyArchive(bytes.NewReader(buf.Bytes()), v)
	if err != nil || got.Size != n || !bytes.Equal(got.Root, cp.Root) {
		t.Fatalf("%+v %v", got, err)
	}
	lines := bytes.Split(buf.Bytes(), []byte("\n"))
	lines[3][5] ^= 1
	if _, err := VerifyArchive(bytes.NewReader(bytes.Join(lines, []byte("\n"))), v); err == nil {
		t.Fatal("a changed archive verified")
	}
	// the archive itself is recorded, and nothing was removed
	p, _ := l.Search(ctx, &Query{Actions: []Action{ActionAuditArchived}})
	if len(p.Entries) != 1 || l.Size() != 31 {
		t.Fatalf("archive not recorded or log changed: %d %d", len(p.Entries), l.Size())
	}
}

func TestReaderExportsOffline(t *testing.T) {
	l, dir := newTestLog(t, Options{})
	appendN(t, l, 25)
	l.Close() // offline: the server is stopped
	r, err := OpenReader(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	var buf bytes.Buffer
	for e, err := range r.All(context.Background(), Query{Limit: 7}) {
		if err != nil {
			t.Fatal(err)
		}
		WriteFHIR(&buf, e, r.Origin())
		n++
	}
	if n != 25 || bytes.Count(buf.Bytes(), []byte("\n")) != 25 || r.Origin() != "phigate/test-node" {
		t.Fatalf("%d entries exported", n)
	}
}
