package client

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// The environment variables read by FromEnv.
const (
	EnvAddr   = "PHIGATE_ADDR"   // server address; DefaultAddr when unset
	EnvToken  = "PHIGATE_TOKEN"  // bearer token
	EnvPin    = "PHIGATE_PIN"    // one or more pins, comma or space separated
	EnvCACert = "PHIGATE_CACERT" // PEM file of the CA to verify the server with
)

// FromEnv returns a client configured from PHIGATE_ADDR, PHIGATE_TOKEN,
// PHIGATE_PIN and PHIGATE_CACERT. opts are applied after the environment
// and may add to it or override it.
func FromEnv(opts ...Option) (*Client, error) {
	return FromEnvFunc(os.Getenv, opts...)
}

// FromEnvFunc is FromEnv reading variables through getenv (for tests, or a
// program that keeps its own environment).
func FromEnvFunc(getenv func(string) string, opts ...Option) (*Client, error) {
	addr := strings.TrimSpace(getenv(EnvAddr))
	if addr == "" {
		addr = DefaultAddr
	}
	var envOpts []Option
	if tok := strings.TrimSpace(getenv(EnvToken)); tok != "" {
		if err := checkToken(tok); err != nil {
			return nil, fmt.Errorf("phigate: %s: %w", EnvToken, errors.Unwrap(err))
		}
		envOpts = append(envOpts, WithToken(tok))
	}
	if p := getenv(EnvPin); strings.TrimSpace(p) != "" {
		pins, err := ParsePins(p)
		if err != nil {
			return nil, fmt.Errorf("phigate: %s: %w", EnvPin, err)
		}
		envOpts = append(envOpts, WithPins(pins...))
	}
	if ca := strings.TrimSpace(getenv(EnvCACert)); ca != "" {
		envOpts = append(envOpts, WithCAFile(ca))
	}
	c, err := New(addr, append(envOpts, opts...)...)
	if err != nil {
		return nil, err
	}
	return c, nil
}
