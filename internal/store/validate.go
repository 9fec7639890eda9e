package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ValidateNewAlert refuses an alert no backend may store: the invalid
// arguments of CreateAlert. Backends call it before writing.
func ValidateNewAlert(a *Alert) error {
	switch {
	case a == nil:
		return errors.New("nil alert")
	case a.ID == "":
		return errors.New("empty alert id")
	case a.Detector == "":
		return errors.New("empty detector")
	case !a.Severity.Valid():
		return fmt.Errorf("unknown severity %q", a.Severity)
	case a.CreatedAt.IsZero():
		return errors.New("zero created_at")
	case !a.AckedAt.IsZero() || a.AckedBy != "" || a.AckNote != "":
		return errors.New("a new alert is open: ack fields set")
	case a.State != "" && a.State != AlertOpen:
		return fmt.Errorf("a new alert is open, not %q", a.State)
	}
	if len(a.Evidence) > 0 {
		ev := bytes.TrimSpace(a.Evidence)
		if !json.Valid(ev) || len(ev) == 0 || ev[0] != '{' {
			return errors.New("evidence is not a JSON object")
		}
	}
	return nil
}

// ValidateNewClient refuses a client no backend may store: the invalid
// arguments of ClientStore.CreateClient. Backends call it before writing.
func ValidateNewClient(c *Client) error {
	switch {
	case c == nil:
		return errors.New("nil client")
	case c.ID == "":
		return errors.New("empty client id")
	case c.Name == "":
		return errors.New("empty client name")
	case c.Status != ClientActive:
		return fmt.Errorf("a new client is active, not %q", c.Status)
	case c.CreatedAt.IsZero():
		return errors.New("zero created_at")
	case (len(c.JWKS) == 0) == (c.JWKSURL == ""):
		return errors.New("exactly one of jwks and jwks_url must be set")
	case c.MaxTTL < 0:
		return errors.New("negative max ttl")
	}
	return nil
}
