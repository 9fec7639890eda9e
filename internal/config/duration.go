package config

import (
	"errors"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a Go duration string such as
// "15m" or "1h30m". A bare number other than 0 is rejected, since its unit
// would be a guess.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does, without zero trailing units:
// "15m" rather than "15m0s", "24h" rather than "24h0m0s". The result parses
// back with time.ParseDuration.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// errDurationSyntax is the message of every malformed duration.
var errDurationSyntax = errors.New(`must be a duration such as "15m" or "1h30m" (units ns, us, ms, s, m, h)`)

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errDurationSyntax
	}
	if tag := n.ShortTag(); tag != "!!str" && tag != "!!int" {
		return errDurationSyntax
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return errDurationSyntax
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
