package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/storetest"
)

func TestCountTokensByStatus(t *testing.T) {
	storetest.RunCountTokens(t, func(t *testing.T, now func() time.Time) store.Store {
		st, err := Open(t.Context(), filepath.Join(t.TempDir(), "c.db"), Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
