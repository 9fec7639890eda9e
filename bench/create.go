package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
)

// createGoal: durable token creation must reach 35% of the baseline's
// requests per second.
const createGoal = 0.35

// createBody is the request of every creation: a small, typical token.
const createBody = `{"subject":"bench-create","scopes":["patient/Observation.rs"],"ttl":"15m"}`

// runCreate measures POST /v1/tokens with the bootstrap admin token from
// o.Concurrency clients. Each 201 means the token is durable (the store
// fsyncs each group-committed batch before answering).
func runCreate(ctx context.Context, o options, log *slog.Logger, _ io.Writer) (*Report, error) {
	if o.Store != "" {
		return runCreatePostgres(ctx, o, log)
	}
	p, err := startInTempDir(ctx, "phigate-bench-create-", log)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	t := &Target{
		Name:        "phigate",
		URL:         "https://" + p.Addr + "/v1/tokens",
		ContentType: "application/json",
		Header:      http.Header{"Authorization": {"Bearer " + p.admin}},
		Body:        []byte(createBody),
		Expect:      http.StatusCreated,
		Check:       checkIssued,
	}
	return compare(ctx, o, "create", p, t, createGoal)
}

var errNotIssued = errors.New("answer holds no token secret")

func checkIssued(body []byte) error {
	if !bytes.Contains(body, []byte(`"token":"phi_`)) {
		return errNotIssued
	}
	return nil
}
