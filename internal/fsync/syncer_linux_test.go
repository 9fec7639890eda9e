//go:build linux && (amd64 || arm64)

package fsync

import "testing"

func TestWorthFreeingWhileAnotherSyncHoldsAP(t *testing.T) {
	s := newSyncer(true)
	defer s.Close()
	if !s.Async() {
		t.Skip("Linux AIO is not available here")
	}
	blockingSyncs.Add(1)
	defer blockingSyncs.Add(-1)
	if !s.worthFreeing() {
		t.Fatal("a second sync while one holds a P must go through AIO")
	}
}
