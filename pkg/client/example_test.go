package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"

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
