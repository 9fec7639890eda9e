package postgres_test

import (
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/storetest"
)

func TestCountTokensByStatus(t *testing.T) {
	storetest.RunCountTokens(t, func(t *testing.T, now func() time.Time) store.Store { return open(t, now) })
}
