// Package reqctx carries the facts about an incoming request that the audit
// trail needs (request id, source address, user agent) through a context,
// from the HTTP edges to the core that records what happened.
package reqctx

import (
	"context"
	"net/netip"
)

// Info describes the request being served.
type Info struct {
	RequestID string
	Source    netip.Addr
	UserAgent string
	// Purpose is the HL7 purpose of use the request named, if any.
	Purpose string
}

type key struct{}

// With returns ctx carrying info.
func With(ctx context.Context, info Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// From returns the Info in ctx (zero when none).
func From(ctx context.Context) Info {
	v, _ := ctx.Value(key{}).(Info)
	return v
}
