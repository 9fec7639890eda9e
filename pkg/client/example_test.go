package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

func Example() {
	// PHIGATE_ADDR, PHIGATE_TOKEN and PHIGATE_PIN (or PHIGATE_CACERT).
	c, err := client.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	tok, err := c.CreateToken(ctx, client.CreateTokenRequest{
		Subject:  "svc:lab-results",
		Kind:     "service",
		Scopes:   []string{"patient/Observation.rs"},
		TTL:      "15m",
		Purposes: []string{"TREAT"},
		Rate:     &client.Rate{PerSecond: 10, Burst: 20},
	})
	var apiErr *client.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden:
		log.Fatalf("not allowed: %s", apiErr.Message)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("created", tok.ID, "expires", tok.ExpiresAt)
	// tok.Secret is shown this once: hand it to the service now.
}

// A Go program keeps its own token fresh with a RotatingSource: no agent,
// no file. This one runs against a real server in process, with a 3 s
// rotation period so that a rotation happens while it runs.
func ExampleRotatingSource() {
	addr, pin, admin, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A person (or a deployment pipeline) issues the token once.
	adm, _ := client.New(addr, client.WithToken(admin), client.WithPins(pin))
	issued, err := adm.CreateToken(ctx, client.CreateTokenRequest{
		Subject: "svc:lab", Kind: "service", Scopes: []string{"billing:read"},
		TTL: "3s", Grace: "1s", // the TTL is the rotation period
	})
	if err != nil {
		log.Fatal(err)
	}

	// The program rotates it from then on.
	src, err := client.NewRotatingSource(addr, issued.Secret, client.RotatingOptions{}, client.WithPins(pin))
	if err != nil {
		log.Fatal(err)
	}
	go src.Run(ctx)

	for src.State().Rotations == 0 && src.State().Status != "ended" {
		time.Sleep(100 * time.Millisecond)
	}
	secret, _ := src.Token(ctx) // what goes in "Authorization: Bearer"
	self, err := src.Client().Self(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rotated:", secret != issued.Secret)
	fmt.Println("same token:", self.ID == issued.ID)
	// Output:
	// rotated: true
	// same token: true
}
