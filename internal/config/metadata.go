package config

import "time"

// PublicMetadata bounds what the gateway serves without a token: GET
// <prefix>metadata of a fhir upstream (the CapabilityStatement, which FHIR
// and SMART clients read before they have a token). A zero field takes its
// default (WithDefaults).
type PublicMetadata struct {
	// PerMinute is the sustained rate of public requests allowed per
	// source (an IPv4 address or an IPv6 /64); 1..60000.
	PerMinute int `yaml:"per_minute"`
	// Burst is how many a source may send at once; 1..1000.
	Burst int `yaml:"burst"`
	// MaxSources bounds the sources tracked (memory); 1..1000000.
	MaxSources int `yaml:"max_sources"`
	// MaxBytes bounds the upstream's CapabilityStatement, which the
	// gateway reads whole to declare its security (502 beyond);
	// 1 KiB..64 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
}

// Defaults of gateway.metadata.
const (
	DefaultMetadataPerMinute  = 60
	DefaultMetadataBurst      = 10
	DefaultMetadataMaxSources = 10_000
	DefaultMetadataMaxBytes   = 4 << 20
)

// Bounds of gateway.metadata.
const (
	maxMetadataPerMinute  = 60_000
	maxMetadataBurst      = 1000
	maxMetadataMaxSources = 1_000_000
	minMetadataMaxBytes   = 1 << 10
	maxMetadataMaxBytes   = 64 << 20
)

// WithDefaults returns m with every zero field replaced by its default.
func (m PublicMetadata) WithDefaults() PublicMetadata {
	if m.PerMinute == 0 {
		m.PerMinute = DefaultMetadataPerMinute
	}
	if m.Burst == 0 {
		m.Burst = DefaultMetadataBurst
	}
	if m.MaxSources == 0 {
		m.MaxSources = DefaultMetadataMaxSources
	}
	if m.MaxBytes == 0 {
		m.MaxBytes = DefaultMetadataMaxBytes
	}
	return m
}

// Interval is the time one public request of a source costs (the rate's
// inverse).
func (m PublicMetadata) Interval() time.Duration { return time.Minute / time.Duration(m.PerMinute) }

func (ps *problems) metadata(m PublicMetadata) {
	if m.PerMinute < 0 || m.PerMinute > maxMetadataPerMinute {
		ps.add("gateway.metadata.per_minute", "must be from 1 to %d (got %d; absent or 0 takes the default, %d)", maxMetadataPerMinute, m.PerMinute, DefaultMetadataPerMinute)
	}
	if m.Burst < 0 || m.Burst > maxMetadataBurst {
		ps.add("gateway.metadata.burst", "must be from 1 to %d (got %d; absent or 0 takes the default, %d)", maxMetadataBurst, m.Burst, DefaultMetadataBurst)
	}
	if m.MaxSources < 0 || m.MaxSources > maxMetadataMaxSources {
		ps.add("gateway.metadata.max_sources", "must be from 1 to %d (got %d; absent or 0 takes the default, %d)", maxMetadataMaxSources, m.MaxSources, DefaultMetadataMaxSources)
	}
	if m.MaxBytes != 0 && (m.MaxBytes < minMetadataMaxBytes || m.MaxBytes > maxMetadataMaxBytes) {
		ps.add("gateway.metadata.max_bytes", "must be from %d to %d (got %d; absent or 0 takes the default, %d)", minMetadataMaxBytes, maxMetadataMaxBytes, m.MaxBytes, DefaultMetadataMaxBytes)
	}
}
