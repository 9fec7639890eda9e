// Package monitor watches the use of tokens on the request path and acts
// on anomalies: it blocks the request that trips an inline detector, and
// raises alerts and suspends tokens for the windowed ones within a second.
package monitor
