//go:build linux && (amd64 || arm64)

package fsync

import (
	"testing"
	"time"
)

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

// A Syncer made for latency leaves AIO alone while most AIO syncs are
// slow, probing it every aioProbe-th time, and goes back to it once the
// probes are quick again; one made by New keeps using it.
func TestStarvedAIOIsLeftAlone(t *testing.T) {
	blockingSyncs.Add(1) // another sync holds a P: AIO is wanted
	defer blockingSyncs.Add(-1)
	lat, plain := newSyncer(true), newSyncer(true)
	lat.latency = true
	defer lat.Close()
	defer plain.Close()
	for _, s := range []*Syncer{lat, plain} {
		s.blockingTime.add(100 * time.Microsecond)
		if s.aioStarved() {
			t.Fatal("starved before any AIO sync")
		}
		s.noteAIO(2 * time.Millisecond) // one slow sync is not starvation
		s.noteAIO(80 * time.Microsecond)
		if s.aioStarved() {
			t.Fatalf("starved after one slow sync in two (share %.2f)", s.aioSlow)
		}
		for range 20 {
			s.noteAIO(2 * time.Millisecond)
		}
		if !s.aioStarved() {
			t.Fatalf("not starved after 20 slow syncs (share %.2f)", s.aioSlow)
		}
	}
	for i := range 3 * aioProbe {
		if !plain.worthFreeing() {
			t.Fatalf("sync %d: a Syncer made by New gave up AIO", i)
		}
	}
	used := 0
	for range 3 * aioProbe {
		if lat.worthFreeing() {
			used++
		}
	}
	if used != 3 {
		t.Fatalf("a starved latency Syncer used AIO %d times in %d syncs, want one probe in %d", used, 3*aioProbe, aioProbe)
	}
	syncsInFlight.Add(1) // another loop is syncing: its callers wait on it anyway
	for i := range 3 * aioProbe {
		if !lat.worthFreeing() {
			syncsInFlight.Add(-1)
			t.Fatalf("sync %d: a starved latency Syncer gave up AIO while another sync was in flight", i)
		}
	}
	syncsInFlight.Add(-1)
	for range 20 {
		lat.noteAIO(120 * time.Microsecond) // quick probes: the CPUs are free again
	}
	if lat.aioStarved() || !lat.worthFreeing() || !lat.worthFreeing() {
		t.Fatalf("quick AIO syncs did not bring AIO back (share %.2f)", lat.aioSlow)
	}
}

// The slow mark follows fdatasync's own duration: on a slow disk an AIO
// sync as slow as fdatasync is not starved.
func TestStarvationIsRelativeToFdatasync(t *testing.T) {
	s := newSyncer(false)
	s.blockingTime.add(5 * time.Millisecond)
	for range 20 {
		s.noteAIO(8 * time.Millisecond)
	}
	if s.aioStarved() {
		t.Fatalf("AIO at 8 ms against fdatasync at 5 ms counted as starved (share %.2f)", s.aioSlow)
	}
}
