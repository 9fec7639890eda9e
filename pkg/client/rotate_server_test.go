package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// loseFirstRotation delivers the first self-rotation to the server and
// then loses its answer, as a network failure would.
type loseFirstRotation struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	lost bool
	keys []string
}

func (l *loseFirstRotation) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if r.URL.Path != "/v1/tokens/self/rotate" || err != nil {
		return resp, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, r.Header.Get(client.HeaderIdempotencyKey))
	if !l.lost {
		l.lost = true
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, errors.New("connection reset by peer (simulated)")
	}
	return resp, nil
}

// Against the real admin API (in process, wall clock): a rotation whose
// answer was lost is retried with the same Idempotency-Key and the source
// gets the new secret the server made, so the chain counts one rotation,
// not two, and the secret the source holds works.
func TestLostRotationAnswerIsRecoveredFromTheRealServerWithTheSameKey(t *testing.T) {
	addr, pin, admin, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm, _ := client.New(addr, client.WithToken(admin), client.WithPins(pin))
	issued, err := adm.CreateToken(ctx, client.CreateTokenRequest{Subject: "svc:lab", Kind: "service",
		Scopes: []string{"billing:read"}, TTL: "3s", Grace: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	lose := &loseFirstRotation{rt: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, // the pin is checked instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if client.SPKIPin(cs.PeerCertificates[0]) != pin {
				return errors.New("pin mismatch")
			}
			return nil
		}}}}
	got := make(chan client.Update, 4)
	src, err := client.NewRotatingSource(addr, issued.Secret, client.RotatingOptions{
		MinBackoff: 50 * time.Millisecond,
		OnUpdate: func(ctx context.Context, u client.Update) {
			if u.Rotated {
				select {
				case got <- u:
				case <-ctx.Done():
				}
			}
		}}, client.WithTransport(lose))
	if err != nil {
		t.Fatal(err)
	}
	go src.Run(ctx)
	var u client.Update
	select {
	case u = <-got:
	case <-ctx.Done():
		t.Fatalf("no rotation: %+v", src.State())
	}
	cancel()
	lose.mu.Lock()
	keys := lose.keys
	lose.mu.Unlock()
	if len(keys) < 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("keys %q: the retry must carry the lost attempt's key", keys)
	}
	tok, err := adm.Token(context.Background(), issued.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Rotations != 1 {
		t.Errorf("the chain counts %d rotations for one lost answer and its retry", tok.Rotations)
	}
	self, err := client.New(addr, client.WithToken(u.Secret), client.WithPins(pin))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := self.Self(context.Background()); err != nil {
		t.Errorf("the recovered secret does not work: %v", err)
	}
}

// Against the real admin API: a source started from a secret that a
// rotation already replaced never rotates again; the server answers 409
// already_rotated and the chain is left to the holder of the new secret.
func TestSupersededSecretNeverStartsASecondRotationOnTheRealServer(t *testing.T) {
	addr, pin, admin, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm, _ := client.New(addr, client.WithToken(admin), client.WithPins(pin))
	issued, err := adm.CreateToken(ctx, client.CreateTokenRequest{Subject: "svc:lab", Kind: "service",
		Scopes: []string{"billing:read"}, TTL: "3s", Grace: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := client.New(addr, client.WithToken(issued.Secret), client.WithPins(pin))
	if _, err := old.RotateSelf(ctx, client.RotateRequest{}); err != nil {
		t.Fatal(err)
	}
	src, _ := client.NewRotatingSource(addr, issued.Secret, client.RotatingOptions{MinBackoff: 50 * time.Millisecond}, client.WithPins(pin))
	err = src.Run(ctx)
	if !errors.Is(err, client.ErrRotationEnded) {
		t.Fatalf("Run = %v", err)
	}
	tok, _ := adm.Token(context.Background(), issued.ID)
	if tok.Rotations != 1 {
		t.Errorf("%d rotations: the superseded secret rotated the token again", tok.Rotations)
	}
}
