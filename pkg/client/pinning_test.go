package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/phigate/phigate/internal/tlsutil/tlstest"
	"github.com/phigate/phigate/pkg/client"
)

// selfHandler answers GET /v1/tokens/self and counts the requests.
func selfHandler(n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, tokenJSON)
	})
}

// A server with a certificate for the right name, signed by the trusted
// CA even, but with another key than the pinned one, is refused before a
// request is sent, and the error names the pin it presented.
func TestCertificateWithTheRightNameButAnotherKeyIsRefused(t *testing.T) {
	ca := tlstest.NewCA(t)
	var n atomic.Int64
	good, evil := ca.Serve(t, selfHandler(&n)), ca.Serve(t, selfHandler(&n))
	for name, opts := range map[string][]client.Option{
		"pin only":       {client.WithPins(good.Pin)},
		"pin and CA":     {client.WithPins(good.Pin), client.WithCAFile(ca.File)},
		"current+backup": {client.WithPins(good.Pin, base64Zero)},
	} {
		c, err := client.New(evil.URL, append(opts, client.WithToken(testToken))...)
		if err != nil {
			t.Fatal(err)
		}
		before := n.Load()
		_, err = c.Self(context.Background())
		var pe *client.PinMismatchError
		if !errors.As(err, &pe) || pe.Presented != evil.Pin {
			t.Errorf("%s: err = %v, want a pin mismatch naming %s", name, err, evil.Pin)
		}
		if n.Load() != before {
			t.Errorf("%s: a request reached the server with the wrong key", name)
		}
		c, _ = client.New(good.URL, append(opts, client.WithToken(testToken))...)
		if _, err := c.Self(context.Background()); err != nil {
			t.Errorf("%s: the pinned server: %v", name, err)
		}
	}
}

const base64Zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// PHIGATE_PIN holds the current pin and a backup: after the server moves
// to the backup key, the same configuration keeps working.
func TestRolloverToTheBackupPinWorks(t *testing.T) {
	ca := tlstest.NewCA(t)
	var n atomic.Int64
	current, next := ca.Serve(t, selfHandler(&n)), ca.Serve(t, selfHandler(&n))
	for _, s := range []*tlstest.Server{current, next} {
		env := map[string]string{client.EnvAddr: s.URL, client.EnvToken: testToken, client.EnvPin: current.Pin + ", sha256//" + next.Pin}
		c, err := client.FromEnvFunc(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Self(context.Background()); err != nil {
			t.Errorf("server with pin %s: %v", s.Pin, err)
		}
	}
}
