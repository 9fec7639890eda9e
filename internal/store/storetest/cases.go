package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// cases lists the suite, one clause of the contract each.
var cases = []testCase{
	{"RoundTripKeepsEveryField", testRoundTripKeepsEveryField},
	{"RoundTripKeepsZeroAndNil", testRoundTripKeepsZeroAndNil},
	{"RecordsAreNotRetainedAndReturnedFresh", testRecordsAreNotRetainedAndReturnedFresh},
	{"CreateWithTakenIDConflictsAndWritesNothing", testCreateWithTakenIDConflicts},
	{"CreateWithTakenSecretConflictsAndWritesNothing", testCreateWithTakenSecretConflicts},
	{"UnknownIsNotFound", testUnknownIsNotFound},
	{"InvalidArgumentsAreRefused", testInvalidArgumentsAreRefused},
	{"UpdateReplacesAllButUsesLastUsedAndNotAfter", testUpdateReplacesAllButUsesAndLastUsed},
	{"UpdateWithStaleRevisionConflictsAndChangesNothing", testUpdateWithStaleRevisionConflicts},
	{"ConcurrentUpdatesOfOneRevisionHaveOneWinner", testConcurrentUpdatesHaveOneWinner},
	{"SetStatusChangesOnlyWhatDiffers", testSetStatusChangesOnlyWhatDiffers},
	{"SetStatusNeverUnrevokes", testSetStatusNeverUnrevokes},
	{"DescendantsFollowsEveryGeneration", testDescendantsFollowsEveryGeneration},
	{"DescendantsSurvivesCycles", testDescendantsSurvivesCycles},
	{"RotateSecretKeepsOldSecretsForTheirGrace", testRotateSecretKeepsOldSecrets},
	{"RotateSecretWithEndedGraceEndsOldSecret", testRotateSecretWithEndedGrace},
	{"RotateSecretWithTakenHashConflictsAndChangesNothing", testRotateSecretWithTakenHash},
	{"RotateSecretWithKeepsLineageAndReplay", testRotateSecretWithKeepsLineageAndReplay},
	{"ReplayWithTakenKeyConflictsAndChangesNothing", testReplayWithTakenKeyConflicts},
	{"ReplaysExpireAndAreBounded", testReplaysExpireAndAreBounded},
	{"LiveSecretsByPepperCountsOnlySecretsThatCanVerify", testLiveSecretsByPepper},
	{"ReserveUsesNeverGoesBelowZero", testReserveUsesNeverGoesBelowZero},
	{"ReserveUsesOfUnlimitedTokenGrantsAll", testReserveUsesOfUnlimitedToken},
	{"ConcurrentReserveUsesGrantExactlyTheRemainder", testConcurrentReserveUses},
	{"ReleaseUsesGivesBack", testReleaseUsesGivesBack},
	{"TouchLastUsedKeepsTheLatest", testTouchLastUsedKeepsTheLatest},
	{"ListTokensPagesInIDOrder", testListTokensPagesInIDOrder},
	{"ListTokensLimitDefaultsTo100AndCapsAt1000", testListTokensLimits},
	{"MetaRoundTrip", testMetaRoundTrip},
	{"ConcurrentCreatesAllLand", testConcurrentCreatesAllLand},
	{"ConcurrentConflictFailsAlone", testConcurrentConflictFailsAlone},
	{"DoneContextChangesNothing", testDoneContextChangesNothing},
	{"PingWhileOpen", testPing},
	{"ClosedStoreReturnsErrClosed", testClosedStoreReturnsErrClosed},
}

// allCases is the whole suite: the token clauses and the alert clauses.
var allCases = append(append(slices.Clip(cases), alertCases...), clientCases...)

// concurrency is the number of goroutines of the concurrency tests: as many
// as a busy gateway has requests in flight against one store.
const concurrency = 64

func testRoundTripKeepsEveryField(e *env) {
	parent, _ := e.newToken()
	creator, _ := e.newToken(func(r *token.Record) { r.Kind = token.KindAdmin })
	rec := e.fx.record(func(r *token.Record) {
		r.Subject = "service:lab-results ✓"
		r.Kind = token.KindService
		r.Scopes = []string{"patient/Observation.rs", "user/Patient.r", "api:read"}
		r.CreatedAt = base.Add(1)
		r.CreatedBy = creator.ID
		r.ParentID = parent.ID
		r.ExpiresAt = base.Add(90*time.Minute + 123)
		r.MaxLifetime = 30*24*time.Hour + 1
		r.NotAfter = base.Add(20*24*time.Hour + 77)
		r.IdleTimeout = 10*time.Minute + 7
		r.LastUsedAt = base.Add(time.Second + 999)
		r.RemainingUses = ptr(int64(42))
		r.CIDRs = []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.168.1.7/32"),
			netip.MustParsePrefix("172.16.5.4/12"), // not masked: kept as given
			netip.MustParsePrefix("2001:db8::/32"),
			netip.MustParsePrefix("::ffff:10.1.2.3/128"),
		}
		r.Hours = &token.Hours{Start: "19:00", End: "07:00", TZ: "America/New_York", Days: []string{"Mon", "Sat"}}
		r.Rate = &token.Rate{PerSecond: 0.1, Burst: 20}
		r.Purposes = []string{"TREAT", "ETREAT", "HPAYMT"}
		r.PurposeRequired = true
		r.PatientID = "Patient/123"
		r.BreakGlass = true
		r.SubjectPrefix = "service:lab-"
		r.Status = token.StatusSuspended
		r.StatusReason = "monitor: new source address"
		r.StatusChangedAt = base.Add(3*time.Second + 1001)
		r.Metadata = map[string]string{"team": "cardiology", "ticket": "INC-1234", "city": "Zürich", "empty": ""}
		r.UpdatedAt = base.Add(5 * time.Second)
		r.Revision = 7
		r.TTL = time.Hour + 3
		r.Grace = 5*time.Minute + 9
		r.Rotations = 12
		r.RotatedAt = base.Add(4*time.Second + 11)
		r.RotatedFrom = "fp_0123456789abcdef"
		r.ClientID = "cli_0123456789abcdefghijkl"
	})
	sec := e.create(rec)
	want := rec.Clone()

	e.checkRecord("Token", e.get(rec.ID), want)

	got, gotSec, err := e.s.TokenBySecret(e.ctx, sec.Hash)
	if err != nil {
		e.t.Fatalf("TokenBySecret: %v", err)
	}
	e.checkRecord("TokenBySecret", got, want)
	e.checkSecret("TokenBySecret secret", gotSec, sec)

	recs, next, err := e.s.ListTokens(e.ctx, store.TokenFilter{ParentID: parent.ID})
	if err != nil {
		e.t.Fatalf("ListTokens: %v", err)
	}
	if len(recs) != 1 || next != "" {
		e.t.Fatalf("ListTokens(parent) = %d records, next %q; want 1, \"\"", len(recs), next)
	}
	e.checkRecord("ListTokens", recs[0], want)
	recs, _, err = e.s.ListTokens(e.ctx, store.TokenFilter{ClientID: rec.ClientID})
	if err != nil || len(recs) != 1 {
		e.t.Fatalf("ListTokens(client) = %d records, %v; want 1", len(recs), err)
	}
	e.checkRecord("ListTokens(client)", recs[0], want)

	secs, err := e.s.Secrets(e.ctx, rec.ID)
	if err != nil {
		e.t.Fatalf("Secrets: %v", err)
	}
	e.checkSecrets("Secrets", secs, []token.Secret{sec})
}

func testRoundTripKeepsZeroAndNil(e *env) {
	// Everything optional left out: nil pointers, nil slices, zero times.
	bare := &token.Record{ID: e.fx.id(), Kind: token.KindUser, Status: token.StatusActive}
	e.create(bare)
	got := e.get(bare.ID)
	e.checkRecord("bare record", got, bare)
	if got.RemainingUses != nil || got.Hours != nil || got.Rate != nil {
		e.t.Errorf("bare record: RemainingUses, Hours, Rate = %v, %v, %v; want nil (unlimited, unrestricted)",
			got.RemainingUses, got.Hours, got.Rate)
	}

	// A use limit of zero is not "no limit".
	usedUp, _ := e.newToken(func(r *token.Record) { r.RemainingUses = ptr(int64(0)) })
	got = e.get(usedUp.ID)
	if got.RemainingUses == nil || *got.RemainingUses != 0 {
		e.t.Errorf("RemainingUses = %s, want &0", showUses(got.RemainingUses))
	}
	if n, err := e.s.ReserveUses(e.ctx, usedUp.ID, 1); err != nil || n != 0 {
		e.t.Errorf("ReserveUses(used up) = %d, %v; want 0, nil", n, err)
	}

	// Empty but non-nil pointees survive as non-nil.
	empty, _ := e.newToken(func(r *token.Record) {
		r.Hours = &token.Hours{}
		r.Rate = &token.Rate{}
		r.Scopes = []string{}
		r.Metadata = map[string]string{}
	})
	got = e.get(empty.ID)
	e.checkRecord("empty pointees", got, empty)
}

func testRecordsAreNotRetainedAndReturnedFresh(e *env) {
	rec, _ := e.newToken(func(r *token.Record) {
		r.RemainingUses = ptr(int64(5))
		r.Hours = &token.Hours{Start: "07:00", End: "19:00", TZ: "UTC", Days: []string{"Mon"}}
		r.Rate = &token.Rate{PerSecond: 1, Burst: 2}
		r.Metadata = map[string]string{"k": "v"}
		r.CIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	want := rec.Clone()

	// Changing what was handed in changes nothing stored.
	rec.Scopes[0] = "changed"
	*rec.RemainingUses = 0
	rec.Hours.Days[0] = "Sun"
	rec.Rate.Burst = 99
	rec.Metadata["k"] = "changed"
	rec.CIDRs[0] = netip.MustParsePrefix("0.0.0.0/0")
	e.checkRecord("after changing the record handed in", e.get(want.ID), want)

	// Changing what came back changes nothing stored either.
	got := e.get(want.ID)
	got.Scopes[0] = "changed"
	*got.RemainingUses = 0
	got.Hours.Days[0] = "Sun"
	got.Rate.Burst = 99
	got.Metadata["k"] = "changed"
	got.CIDRs[0] = netip.MustParsePrefix("0.0.0.0/0")
	e.checkRecord("after changing a returned record", e.get(want.ID), want)

	// Same for UpdateToken's argument.
	upd := e.get(want.ID)
	upd.Subject = "user:bob"
	if err := e.s.UpdateToken(e.ctx, upd); err != nil {
		e.t.Fatalf("UpdateToken: %v", err)
	}
	want2 := upd.Clone()
	want2.RemainingUses = want.RemainingUses
	upd.Scopes[0] = "changed"
	upd.Metadata["k"] = "changed"
	e.checkRecord("after changing the updated record", e.get(want.ID), want2)
}

func testCreateWithTakenIDConflicts(e *env) {
	first, firstSec := e.newToken()
	dup := e.fx.record(func(r *token.Record) { r.ID = first.ID; r.Subject = "user:mallory" })
	dupSec := e.fx.secret(dup.ID, dup.CreatedAt)
	if err := e.s.CreateToken(e.ctx, dup, dupSec); !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("CreateToken(taken id) = %v, want ErrConflict", err)
	}
	e.checkRecord("first record", e.get(first.ID), first)
	if _, _, err := e.s.TokenBySecret(e.ctx, dupSec.Hash); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("TokenBySecret(secret of the refused create) = %v, want ErrNotFound", err)
	}
	secs, err := e.s.Secrets(e.ctx, first.ID)
	if err != nil {
		e.t.Fatalf("Secrets: %v", err)
	}
	e.checkSecrets("Secrets", secs, []token.Secret{firstSec})
}

func testCreateWithTakenSecretConflicts(e *env) {
	first, firstSec := e.newToken()
	other := e.fx.record()
	sec := firstSec
	sec.TokenID = other.ID
	if err := e.s.CreateToken(e.ctx, other, sec); !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("CreateToken(taken secret hash) = %v, want ErrConflict", err)
	}
	if _, err := e.s.Token(e.ctx, other.ID); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("Token(refused id) = %v, want ErrNotFound (no partial write)", err)
	}
	got, _, err := e.s.TokenBySecret(e.ctx, firstSec.Hash)
	if err != nil {
		e.t.Fatalf("TokenBySecret: %v", err)
	}
	if got.ID != first.ID {
		e.t.Errorf("TokenBySecret found %s, want the first owner %s", got.ID, first.ID)
	}
}

func testUnknownIsNotFound(e *env) {
	e.newToken() // the store is not empty
	unknown := e.fx.id()
	unknownSec := e.fx.secret(unknown, base)
	now := e.now()
	var checks []namedErr
	add := func(name string, err error) { checks = append(checks, namedErr{name, err}) }

	_, err := e.s.Token(e.ctx, unknown)
	add("Token", err)
	_, _, err = e.s.TokenBySecret(e.ctx, unknownSec.Hash)
	add("TokenBySecret", err)
	add("UpdateToken", e.s.UpdateToken(e.ctx, e.fx.record(func(r *token.Record) { r.ID = unknown })))
	add("RotateSecret", e.s.RotateSecret(e.ctx, unknown, unknownSec, now.Add(time.Hour), time.Time{}))
	_, err = e.s.Secrets(e.ctx, unknown)
	add("Secrets", err)
	_, err = e.s.ReserveUses(e.ctx, unknown, 1)
	add("ReserveUses", err)
	add("ReleaseUses", e.s.ReleaseUses(e.ctx, unknown, 1))
	_, err = e.s.GetMeta(e.ctx, "no such key")
	add("GetMeta", err)
	for _, c := range checks {
		if !errors.Is(c.err, store.ErrNotFound) {
			e.t.Errorf("%s(unknown) = %v, want ErrNotFound", c.name, c.err)
		}
	}
	// RotateSecret of an unknown token stored nothing.
	if _, _, err := e.s.TokenBySecret(e.ctx, unknownSec.Hash); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("TokenBySecret(secret of a refused rotation) = %v, want ErrNotFound", err)
	}
	// The operations that skip unknown ids succeed.
	if changed, err := e.s.SetStatus(e.ctx, []string{unknown}, token.StatusRevoked, "test", now); err != nil || len(changed) != 0 {
		e.t.Errorf("SetStatus(unknown) = %v, %v; want nothing changed, nil", changed, err)
	}
	if err := e.s.TouchLastUsed(e.ctx, map[string]time.Time{unknown: now}); err != nil {
		e.t.Errorf("TouchLastUsed(unknown) = %v, want nil", err)
	}
	if ids, err := e.s.Descendants(e.ctx, unknown); err != nil || len(ids) != 0 {
		e.t.Errorf("Descendants(unknown) = %v, %v; want none, nil", ids, err)
	}
}

func testInvalidArgumentsAreRefused(e *env) {
	valid, _ := e.newToken(func(r *token.Record) { r.RemainingUses = ptr(int64(3)) })
	isSentinel := func(err error) bool {
		return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrClosed)
	}
	bad := []struct {
		name string
		mod  func(*token.Record)
	}{
		{"EmptyID", func(r *token.Record) { r.ID = "" }},
		{"UnknownKind", func(r *token.Record) { r.Kind = "superuser" }},
		{"EmptyKind", func(r *token.Record) { r.Kind = "" }},
		{"UnknownStatus", func(r *token.Record) { r.Status = "enabled" }},
		{"EmptyStatus", func(r *token.Record) { r.Status = "" }},
		{"NegativeRemainingUses", func(r *token.Record) { r.RemainingUses = ptr(int64(-1)) }},
	}
	for _, b := range bad {
		rec := e.fx.record(b.mod)
		err := e.s.CreateToken(e.ctx, rec, e.fx.secret(rec.ID, rec.CreatedAt))
		if err == nil || isSentinel(err) {
			e.t.Errorf("CreateToken(%s) = %v, want a refusal that is no sentinel", b.name, err)
		}
		if rec.ID != "" {
			if _, err := e.s.Token(e.ctx, rec.ID); !errors.Is(err, store.ErrNotFound) {
				e.t.Errorf("Token after CreateToken(%s) = %v, want ErrNotFound", b.name, err)
			}
		}
	}
	for _, b := range bad[:5] { // RemainingUses is not UpdateToken's
		rec := valid.Clone()
		b.mod(rec)
		if err := e.s.UpdateToken(e.ctx, rec); err == nil || isSentinel(err) {
			e.t.Errorf("UpdateToken(%s) = %v, want a refusal that is no sentinel", b.name, err)
		}
	}
	for _, n := range []int64{0, -1} {
		if _, err := e.s.ReserveUses(e.ctx, valid.ID, n); err == nil || isSentinel(err) {
			e.t.Errorf("ReserveUses(n=%d) = %v, want a refusal that is no sentinel", n, err)
		}
		if err := e.s.ReleaseUses(e.ctx, valid.ID, n); err == nil || isSentinel(err) {
			e.t.Errorf("ReleaseUses(n=%d) = %v, want a refusal that is no sentinel", n, err)
		}
	}
	if _, err := e.s.SetStatus(e.ctx, []string{valid.ID}, "gone", "", e.now()); err == nil || isSentinel(err) {
		e.t.Errorf("SetStatus(unknown status) = %v, want a refusal that is no sentinel", err)
	}
	sec := e.fx.secret(valid.ID, e.now())
	if err := e.s.RotateSecret(e.ctx, valid.ID, sec, time.Time{}, time.Time{}); err == nil || isSentinel(err) {
		e.t.Errorf("RotateSecret(zero oldNotAfter) = %v, want a refusal that is no sentinel", err)
	}
	foreign := e.fx.secret(e.fx.id(), e.now())
	if err := e.s.RotateSecret(e.ctx, valid.ID, foreign, e.now().Add(time.Hour), time.Time{}); err == nil || isSentinel(err) {
		e.t.Errorf("RotateSecret(secret of another token) = %v, want a refusal that is no sentinel", err)
	}
	if _, err := e.s.LiveSecretsByPepper(e.ctx, time.Time{}); err == nil || isSentinel(err) {
		e.t.Errorf("LiveSecretsByPepper(zero time) = %v, want a refusal that is no sentinel", err)
	}
	// Nothing of the above changed the valid token.
	e.checkRecord("valid token", e.get(valid.ID), valid)
}

func testUpdateReplacesAllButUsesAndLastUsed(e *env) {
	parent, _ := e.newToken()
	lastUsed := base.Add(time.Minute)
	notAfter := base.Add(72 * time.Hour)
	rec, sec := e.newToken(func(r *token.Record) {
		r.RemainingUses = ptr(int64(10))
		r.LastUsedAt = lastUsed
		r.NotAfter = notAfter
		r.Revision = 4
		r.ClientID = "cli_issuer"
	})
	if n, err := e.s.ReserveUses(e.ctx, rec.ID, 3); err != nil || n != 3 {
		e.t.Fatalf("ReserveUses = %d, %v; want 3, nil", n, err)
	}

	upd := e.get(rec.ID)
	upd.Subject = "user:bob"
	upd.Kind = token.KindAdmin
	upd.Scopes = []string{"admin:tokens"}
	upd.CreatedAt = base.Add(-time.Hour)
	upd.CreatedBy = parent.ID
	upd.ParentID = parent.ID
	upd.ExpiresAt = base.Add(48*time.Hour + 17)
	upd.MaxLifetime = time.Hour
	upd.IdleTimeout = time.Minute
	upd.CIDRs = []netip.Prefix{netip.MustParsePrefix("fd00::/8")}
	upd.Hours = &token.Hours{Start: "08:00", End: "17:00", TZ: "Europe/Zurich"}
	upd.Rate = &token.Rate{PerSecond: 100, Burst: 1}
	upd.Purposes = []string{"HOPERAT"}
	upd.PurposeRequired = true
	upd.PatientID = "Patient/9"
	upd.BreakGlass = true
	upd.SubjectPrefix = "user:bob/"
	upd.Status = token.StatusSuspended
	upd.StatusReason = "manual"
	upd.StatusChangedAt = base.Add(2 * time.Hour)
	upd.Metadata = map[string]string{"a": "b"}
	upd.UpdatedAt = base.Add(2*time.Hour + 1)
	upd.TTL = 2 * time.Hour
	upd.Grace = time.Minute
	// None of these is UpdateToken's to change.
	upd.RemainingUses = ptr(int64(1000))
	upd.LastUsedAt = base.Add(24 * time.Hour)
	upd.NotAfter = base.Add(1000 * time.Hour) // fixed at creation
	upd.Rotations = 99                        // rotation's
	upd.RotatedAt = base.Add(time.Hour)
	upd.RotatedFrom = "fp_ffffffffffffffff"
	upd.ClientID = "cli_other" // fixed at creation

	if err := e.s.UpdateToken(e.ctx, upd); err != nil {
		e.t.Fatalf("UpdateToken: %v", err)
	}
	if upd.Revision != 5 {
		e.t.Errorf("Revision written back = %d, want 5", upd.Revision)
	}
	want := upd.Clone()
	want.RemainingUses = ptr(int64(7))
	want.LastUsedAt = lastUsed
	want.NotAfter = notAfter
	want.Rotations, want.RotatedAt, want.RotatedFrom = 0, time.Time{}, ""
	want.ClientID = "cli_issuer"
	e.checkRecord("after update", e.get(rec.ID), want)
	got, _, err := e.s.TokenBySecret(e.ctx, sec.Hash)
	if err != nil {
		e.t.Fatalf("TokenBySecret: %v", err)
	}
	e.checkRecord("TokenBySecret after update", got, want)

	// Clearing optional fields clears them; a nil RemainingUses does not
	// lift the use limit.
	clr := e.get(rec.ID)
	clr.CIDRs, clr.Hours, clr.Rate, clr.Metadata, clr.Purposes = nil, nil, nil, nil, nil
	clr.ParentID, clr.CreatedBy, clr.PatientID = "", "", ""
	clr.StatusChangedAt = time.Time{}
	clr.RemainingUses = nil
	clr.LastUsedAt = time.Time{}
	clr.NotAfter = time.Time{}
	clr.SubjectPrefix = ""
	if err := e.s.UpdateToken(e.ctx, clr); err != nil {
		e.t.Fatalf("UpdateToken(clear): %v", err)
	}
	want = clr.Clone()
	want.RemainingUses = ptr(int64(7))
	want.LastUsedAt = lastUsed
	want.NotAfter = notAfter
	e.checkRecord("after clearing update", e.get(rec.ID), want)
}

func testUpdateWithStaleRevisionConflicts(e *env) {
	rec, _ := e.newToken()
	stale := e.get(rec.ID)
	fresh := e.get(rec.ID)
	fresh.Subject = "user:first-writer"
	if err := e.s.UpdateToken(e.ctx, fresh); err != nil {
		e.t.Fatalf("UpdateToken: %v", err)
	}
	want := fresh.Clone()

	stale.Subject = "user:second-writer"
	staleRev := stale.Revision
	if err := e.s.UpdateToken(e.ctx, stale); !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("UpdateToken(stale revision) = %v, want ErrConflict", err)
	}
	if stale.Revision != staleRev {
		e.t.Errorf("failed UpdateToken changed rec.Revision to %d, want %d kept", stale.Revision, staleRev)
	}
	future := want.Clone()
	future.Revision += 5
	future.Subject = "user:time-traveller"
	if err := e.s.UpdateToken(e.ctx, future); !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("UpdateToken(future revision) = %v, want ErrConflict", err)
	}
	e.checkRecord("after refused updates", e.get(rec.ID), want)

	// Every revision-bumping change makes an older copy stale.
	old := e.get(rec.ID)
	if _, err := e.s.SetStatus(e.ctx, []string{rec.ID}, token.StatusSuspended, "alert", base); err != nil {
		e.t.Fatalf("SetStatus: %v", err)
	}
	if err := e.s.UpdateToken(e.ctx, old); !errors.Is(err, store.ErrConflict) {
		e.t.Errorf("UpdateToken(copy from before SetStatus) = %v, want ErrConflict", err)
	}
	old = e.get(rec.ID)
	if err := e.s.RotateSecret(e.ctx, rec.ID, e.fx.secret(rec.ID, e.now()), e.now().Add(time.Hour), time.Time{}); err != nil {
		e.t.Fatalf("RotateSecret: %v", err)
	}
	if err := e.s.UpdateToken(e.ctx, old); !errors.Is(err, store.ErrConflict) {
		e.t.Errorf("UpdateToken(copy from before RotateSecret) = %v, want ErrConflict", err)
	}
}

func testConcurrentUpdatesHaveOneWinner(e *env) {
	rec, _ := e.newToken()
	start := e.get(rec.ID)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		upd := start.Clone()
		upd.Subject = fmt.Sprintf("user:writer-%d", i)
		wg.Go(func() { errs[i] = e.s.UpdateToken(e.ctx, upd) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			e.t.Errorf("writers %d and %d both updated revision %d", winner, i, start.Revision)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			e.t.Errorf("writer %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		e.t.Fatal("no writer won")
	}
	got := e.get(rec.ID)
	if want := fmt.Sprintf("user:writer-%d", winner); got.Subject != want || got.Revision != start.Revision+1 {
		e.t.Errorf("stored subject %q revision %d, want %q revision %d", got.Subject, got.Revision, want, start.Revision+1)
	}
}

func testSetStatusChangesOnlyWhatDiffers(e *env) {
	a, _ := e.newToken()
	b, _ := e.newToken()
	c, _ := e.newToken()
	d, _ := e.newToken(func(r *token.Record) { r.Status = token.StatusSuspended; r.StatusReason = "earlier" })
	at := base.Add(time.Hour + 5)
	changed, err := e.s.SetStatus(e.ctx, []string{a.ID, e.fx.id(), d.ID, b.ID, a.ID}, token.StatusSuspended, "burst of denials", at)
	if err != nil {
		e.t.Fatalf("SetStatus: %v", err)
	}
	if want := []string{a.ID, b.ID}; !slices.Equal(changed, want) {
		e.t.Errorf("changed = %v, want %v (given order, unknown and unchanged skipped, duplicates once)", changed, want)
	}
	for _, r := range []*token.Record{a, b} {
		want := r.Clone()
		want.Status = token.StatusSuspended
		want.StatusReason = "burst of denials"
		want.StatusChangedAt = at
		want.UpdatedAt = at
		want.Revision = r.Revision + 1
		e.checkRecord("changed "+r.ID, e.get(r.ID), want)
	}
	e.checkRecord("not listed", e.get(c.ID), c)
	e.checkRecord("already suspended", e.get(d.ID), d)

	if changed, err := e.s.SetStatus(e.ctx, nil, token.StatusRevoked, "none", at); err != nil || len(changed) != 0 {
		e.t.Errorf("SetStatus(no ids) = %v, %v; want none, nil", changed, err)
	}

	// Reinstating is a change too.
	changed, err = e.s.SetStatus(e.ctx, []string{a.ID}, token.StatusActive, "reinstated", at.Add(time.Minute))
	if err != nil || !slices.Equal(changed, []string{a.ID}) {
		e.t.Fatalf("SetStatus(reinstate) = %v, %v; want [%s], nil", changed, err, a.ID)
	}
	if got := e.get(a.ID); got.Status != token.StatusActive || got.Revision != a.Revision+2 {
		e.t.Errorf("reinstated: status %s revision %d, want active revision %d", got.Status, got.Revision, a.Revision+2)
	}
}

func testSetStatusNeverUnrevokes(e *env) {
	r, _ := e.newToken()
	at := base.Add(time.Hour)
	if changed, err := e.s.SetStatus(e.ctx, []string{r.ID}, token.StatusRevoked, "compromised", at); err != nil || len(changed) != 1 {
		e.t.Fatalf("SetStatus(revoke) = %v, %v; want [%s], nil", changed, err, r.ID)
	}
	revoked := e.get(r.ID)
	for _, st := range []token.Status{token.StatusActive, token.StatusSuspended, token.StatusRevoked} {
		changed, err := e.s.SetStatus(e.ctx, []string{r.ID}, st, "try again", at.Add(time.Hour))
		if err != nil || len(changed) != 0 {
			e.t.Errorf("SetStatus(revoked → %s) = %v, %v; want nothing changed, nil", st, changed, err)
		}
	}
	e.checkRecord("revoked token", e.get(r.ID), revoked)
	// A token created revoked stays revoked too.
	born, _ := e.newToken(func(r *token.Record) { r.Status = token.StatusRevoked })
	if changed, err := e.s.SetStatus(e.ctx, []string{born.ID}, token.StatusActive, "", at); err != nil || len(changed) != 0 {
		e.t.Errorf("SetStatus(created revoked → active) = %v, %v; want nothing changed", changed, err)
	}
}

func testDescendantsFollowsEveryGeneration(e *env) {
	child := func(parent *token.Record) *token.Record {
		r, _ := e.newToken(func(r *token.Record) { r.ParentID = parent.ID; r.CreatedBy = parent.ID })
		return r
	}
	root, _ := e.newToken()
	a, b := child(root), child(root)
	a1, a2 := child(a), child(a)
	a1x := child(a1)
	b1 := child(b)
	other, _ := e.newToken()
	otherChild := child(other)

	for _, tc := range []struct {
		id   string
		want []string
	}{
		{root.ID, []string{a.ID, b.ID, a1.ID, a2.ID, a1x.ID, b1.ID}},
		{a.ID, []string{a1.ID, a2.ID, a1x.ID}},
		{a1.ID, []string{a1x.ID}},
		{b.ID, []string{b1.ID}},
		{a1x.ID, nil},
		{other.ID, []string{otherChild.ID}},
	} {
		got, err := e.s.Descendants(e.ctx, tc.id)
		if err != nil {
			e.t.Fatalf("Descendants(%s): %v", tc.id, err)
		}
		if !slices.Equal(sorted(got), sorted(tc.want)) {
			e.t.Errorf("Descendants(%s) = %v, want %v", tc.id, sorted(got), sorted(tc.want))
		}
	}
}

func testDescendantsSurvivesCycles(e *env) {
	x, _ := e.newToken()
	y, _ := e.newToken(func(r *token.Record) { r.ParentID = x.ID })
	z, _ := e.newToken(func(r *token.Record) { r.ParentID = y.ID })
	self, _ := e.newToken()
	// Close the loops through UpdateToken: x → z → y → x, and self → self.
	for _, c := range []struct{ id, parent string }{{x.ID, z.ID}, {self.ID, self.ID}} {
		r := e.get(c.id)
		r.ParentID = c.parent
		if err := e.s.UpdateToken(e.ctx, r); err != nil {
			e.t.Fatalf("UpdateToken(parent): %v", err)
		}
	}
	for _, tc := range []struct {
		id   string
		want []string
	}{
		{x.ID, []string{y.ID, z.ID}},
		{y.ID, []string{x.ID, z.ID}},
		{self.ID, nil},
	} {
		type result struct {
			ids []string
			err error
		}
		done := make(chan result, 1)
		go func() {
			ids, err := e.s.Descendants(e.ctx, tc.id)
			done <- result{ids, err}
		}()
		select {
		case r := <-done:
			if r.err != nil {
				e.t.Fatalf("Descendants(%s): %v", tc.id, r.err)
			}
			if !slices.Equal(sorted(r.ids), sorted(tc.want)) {
				e.t.Errorf("Descendants(%s) in a cycle = %v, want %v", tc.id, sorted(r.ids), sorted(tc.want))
			}
		case <-time.After(30 * time.Second):
			e.t.Fatalf("Descendants(%s) in a cycle did not return within 30s", tc.id)
		}
	}
}

func testRotateSecretKeepsOldSecrets(e *env) {
	// Secret times are relative to the store's clock: a backend may delete
	// a secret whose grace has ended by its own clock, and these must not end.
	now := e.now().Truncate(time.Microsecond).UTC()
	rec := e.fx.record(func(r *token.Record) {
		r.CreatedAt = now.Add(-time.Hour)
		r.ExpiresAt = now.Add(time.Hour)
	})
	sec1 := e.fx.secret(rec.ID, now.Add(-time.Hour))
	if err := e.s.CreateToken(e.ctx, rec, sec1); err != nil {
		e.t.Fatalf("CreateToken: %v", err)
	}

	// First rotation: new secret, old one ends after its grace, expiry moves.
	sec2 := e.fx.secret(rec.ID, now)
	grace1, newExp := now.Add(10*time.Minute), now.Add(2*time.Hour+1)
	if err := e.s.RotateSecret(e.ctx, rec.ID, sec2, grace1, newExp); err != nil {
		e.t.Fatalf("RotateSecret: %v", err)
	}
	want := rec.Clone()
	want.ExpiresAt = newExp
	want.UpdatedAt = sec2.CreatedAt
	want.Revision = rec.Revision + 1
	want.Rotations, want.RotatedAt = 1, sec2.CreatedAt
	got, gotSec, err := e.s.TokenBySecret(e.ctx, sec2.Hash)
	if err != nil {
		e.t.Fatalf("TokenBySecret(new secret): %v", err)
	}
	e.checkRecord("by new secret", got, want)
	e.checkSecret("new secret", gotSec, sec2)
	if !gotSec.NotAfter.IsZero() {
		e.t.Errorf("new secret has NotAfter %v, want zero (current)", gotSec.NotAfter)
	}
	old1 := sec1
	old1.NotAfter = grace1
	got, gotSec, err = e.s.TokenBySecret(e.ctx, sec1.Hash)
	if err != nil {
		e.t.Fatalf("TokenBySecret(old secret within grace): %v", err)
	}
	e.checkRecord("by old secret", got, want)
	e.checkSecret("old secret", gotSec, old1)
	e.checkSecrets("Secrets after one rotation", e.secrets(rec.ID), []token.Secret{sec2, old1})

	// Second rotation with a later grace end and no new expiry: the older
	// secret keeps its earlier end, the previous current one gets the new
	// end, ExpiresAt stays.
	sec3 := e.fx.secret(rec.ID, now.Add(time.Second))
	grace2 := now.Add(20 * time.Minute)
	if err := e.s.RotateSecret(e.ctx, rec.ID, sec3, grace2, time.Time{}); err != nil {
		e.t.Fatalf("RotateSecret: %v", err)
	}
	want.UpdatedAt = sec3.CreatedAt
	want.Revision++
	want.Rotations, want.RotatedAt = 2, sec3.CreatedAt
	e.checkRecord("after second rotation", e.get(rec.ID), want)
	old2 := sec2
	old2.NotAfter = grace2
	e.checkSecrets("Secrets after two rotations", e.secrets(rec.ID), []token.Secret{sec3, old2, old1})

	// Third rotation with an earlier grace end: it cuts every older secret.
	sec4 := e.fx.secret(rec.ID, now.Add(2*time.Second))
	grace3 := now.Add(5 * time.Minute)
	if err := e.s.RotateSecret(e.ctx, rec.ID, sec4, grace3, time.Time{}); err != nil {
		e.t.Fatalf("RotateSecret: %v", err)
	}
	old1.NotAfter, old2.NotAfter = grace3, grace3
	old3 := sec3
	old3.NotAfter = grace3
	e.checkSecrets("Secrets after three rotations", e.secrets(rec.ID), []token.Secret{sec4, old3, old2, old1})
	if got := e.get(rec.ID); got.Revision != rec.Revision+3 {
		e.t.Errorf("revision after three rotations = %d, want %d", got.Revision, rec.Revision+3)
	}
}

// secrets returns the stored secrets of a token.
func (e *env) secrets(id string) []token.Secret {
	e.t.Helper()
	secs, err := e.s.Secrets(e.ctx, id)
	if err != nil {
		e.t.Fatalf("Secrets(%s): %v", id, err)
	}
	return secs
}

func testRotateSecretWithEndedGrace(e *env) {
	now := e.now().UTC()
	rec := e.fx.record()
	sec1 := e.fx.secret(rec.ID, now.Add(-time.Hour))
	if err := e.s.CreateToken(e.ctx, rec, sec1); err != nil {
		e.t.Fatalf("CreateToken: %v", err)
	}
	// No grace: the old secret ends at once (a compromised secret).
	sec2 := e.fx.secret(rec.ID, now)
	ended := now.Add(-time.Second)
	if err := e.s.RotateSecret(e.ctx, rec.ID, sec2, ended, time.Time{}); err != nil {
		e.t.Fatalf("RotateSecret: %v", err)
	}
	if _, gotSec, err := e.s.TokenBySecret(e.ctx, sec2.Hash); err != nil || !gotSec.NotAfter.IsZero() {
		e.t.Errorf("TokenBySecret(new) = NotAfter %v, %v; want current, nil", gotSec.NotAfter, err)
	}
	// The old secret is either gone or marked as ended.
	_, gotSec, err := e.s.TokenBySecret(e.ctx, sec1.Hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		e.t.Fatalf("TokenBySecret(old): %v", err)
	default:
		if d := diffTime(gotSec.NotAfter, ended); d != "" {
			e.t.Errorf("old secret NotAfter: %s", d)
		}
	}
	secs := e.secrets(rec.ID)
	if len(secs) == 0 || !secs[0].Hash.Equal(sec2.Hash) {
		e.t.Errorf("Secrets does not start with the new secret")
	}
}

func testRotateSecretWithTakenHash(e *env) {
	other, otherSec := e.newToken()
	rec, sec := e.newToken()
	before := e.get(rec.ID)
	taken := otherSec
	taken.TokenID = rec.ID
	later := e.now().Add(time.Hour)
	if err := e.s.RotateSecret(e.ctx, rec.ID, taken, later, later.Add(time.Hour)); !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("RotateSecret(hash of another token) = %v, want ErrConflict", err)
	}
	own := sec
	if err := e.s.RotateSecret(e.ctx, rec.ID, own, later, later.Add(time.Hour)); !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("RotateSecret(own current hash) = %v, want ErrConflict", err)
	}
	e.checkRecord("after refused rotations", e.get(rec.ID), before)
	e.checkSecrets("Secrets after refused rotations", e.secrets(rec.ID), []token.Secret{sec})
	e.checkSecrets("other's Secrets", e.secrets(other.ID), []token.Secret{otherSec})
}

func testLiveSecretsByPepper(e *env) {
	if got, err := e.s.LiveSecretsByPepper(e.ctx, e.now()); err != nil || len(got) != 0 {
		e.t.Fatalf("LiveSecretsByPepper(empty store) = %v, %v; want none", got, err)
	}
	// Times relative to the store's clock, as in the rotation cases: a
	// backend may delete secrets whose grace has ended by its own clock.
	now := e.now().Truncate(time.Microsecond).UTC()
	at := now.Add(time.Minute)
	mk := func(pepper int, mods ...func(*token.Record)) (*token.Record, token.Secret) {
		rec := e.fx.record(append([]func(*token.Record){func(r *token.Record) {
			r.CreatedAt, r.ExpiresAt = now.Add(-time.Hour), now.Add(time.Hour)
		}}, mods...)...)
		sec := e.fx.secret(rec.ID, rec.CreatedAt)
		sec.PepperVersion = pepper
		if err := e.s.CreateToken(e.ctx, rec, sec); err != nil {
			e.t.Fatalf("CreateToken: %v", err)
		}
		return rec, sec
	}
	rotate := func(rec *token.Record, pepper int, oldNotAfter time.Time) {
		sec := e.fx.secret(rec.ID, now)
		sec.PepperVersion = pepper
		if err := e.s.RotateSecret(e.ctx, rec.ID, sec, oldNotAfter, time.Time{}); err != nil {
			e.t.Fatalf("RotateSecret: %v", err)
		}
	}
	mk(1)                                                               // live: counts
	mk(1, func(r *token.Record) { r.Status = token.StatusRevoked })     // revoked: never again
	mk(1, func(r *token.Record) { r.ExpiresAt = at.Add(-time.Second) }) // expired by at
	mk(1, func(r *token.Record) { r.ExpiresAt = at })                   // expires at at exactly
	mk(2, func(r *token.Record) { r.Status = token.StatusSuspended })   // may be reinstated: counts
	graced, _ := mk(1)
	rotate(graced, 2, at.Add(time.Minute)) // old secret still in its grace at at: both count
	cut, _ := mk(1)
	rotate(cut, 3, at.Add(-time.Second)) // old secret's grace over by at: only the new counts
	later, _ := mk(4)
	if _, err := e.s.SetStatus(e.ctx, []string{later.ID}, token.StatusRevoked, "", now); err != nil {
		e.t.Fatalf("SetStatus: %v", err)
	}

	want := map[int]int64{1: 2, 2: 2, 3: 1}
	got, err := e.s.LiveSecretsByPepper(e.ctx, at)
	if err != nil {
		e.t.Fatalf("LiveSecretsByPepper: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		e.t.Errorf("LiveSecretsByPepper(at) = %v, want %v", got, want)
	}
	// Two hours on, every token has expired.
	if got, err := e.s.LiveSecretsByPepper(e.ctx, now.Add(2*time.Hour)); err != nil || len(got) != 0 {
		e.t.Errorf("LiveSecretsByPepper(after every expiry) = %v, %v; want none", got, err)
	}
}

func testReserveUsesNeverGoesBelowZero(e *env) {
	rec, _ := e.newToken(func(r *token.Record) { r.RemainingUses = ptr(int64(10)) })
	for _, step := range []struct{ n, want, left int64 }{
		{3, 3, 7},
		{1, 1, 6},
		{10, 6, 0},
		{1, 0, 0},
		{1 << 62, 0, 0},
	} {
		got, err := e.s.ReserveUses(e.ctx, rec.ID, step.n)
		if err != nil || got != step.want {
			e.t.Fatalf("ReserveUses(%d) = %d, %v; want %d, nil", step.n, got, err, step.want)
		}
		r := e.get(rec.ID)
		if r.RemainingUses == nil || *r.RemainingUses != step.left {
			e.t.Fatalf("after ReserveUses(%d): RemainingUses = %s, want &%d", step.n, showUses(r.RemainingUses), step.left)
		}
	}
	want := rec.Clone()
	want.RemainingUses = ptr(int64(0))
	e.checkRecord("after reservations (no revision bump)", e.get(rec.ID), want)
}

func testReserveUsesOfUnlimitedToken(e *env) {
	rec, _ := e.newToken()
	for _, n := range []int64{1, 5, 1 << 40} {
		if got, err := e.s.ReserveUses(e.ctx, rec.ID, n); err != nil || got != n {
			e.t.Errorf("ReserveUses(unlimited, %d) = %d, %v; want %d, nil", n, got, err, n)
		}
	}
	e.checkRecord("unlimited token after reservations", e.get(rec.ID), rec)
}

func testConcurrentReserveUses(e *env) {
	const initial = 500
	rec, _ := e.newToken(func(r *token.Record) { r.RemainingUses = ptr(int64(initial)) })
	var granted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range concurrency {
		n := int64(1 + i%5)
		wg.Go(func() {
			<-start
			for {
				got, err := e.s.ReserveUses(e.ctx, rec.ID, n)
				if err != nil {
					e.t.Errorf("ReserveUses: %v", err)
					return
				}
				if got < 0 || got > n {
					e.t.Errorf("ReserveUses(%d) = %d", n, got)
					return
				}
				granted.Add(got)
				if got < n {
					return // the store ran dry
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if g := granted.Load(); g != initial {
		e.t.Errorf("%d goroutines were granted %d uses in total, want exactly %d", concurrency, g, initial)
	}
	if r := e.get(rec.ID); r.RemainingUses == nil || *r.RemainingUses != 0 {
		e.t.Errorf("RemainingUses = %s, want &0", showUses(r.RemainingUses))
	}
}

func testReleaseUsesGivesBack(e *env) {
	rec, _ := e.newToken(func(r *token.Record) { r.RemainingUses = ptr(int64(10)) })
	if n, err := e.s.ReserveUses(e.ctx, rec.ID, 4); err != nil || n != 4 {
		e.t.Fatalf("ReserveUses = %d, %v; want 4, nil", n, err)
	}
	if err := e.s.ReleaseUses(e.ctx, rec.ID, 3); err != nil {
		e.t.Fatalf("ReleaseUses: %v", err)
	}
	want := rec.Clone()
	want.RemainingUses = ptr(int64(9))
	e.checkRecord("after release (no revision bump)", e.get(rec.ID), want)

	unlimited, _ := e.newToken()
	if err := e.s.ReleaseUses(e.ctx, unlimited.ID, 3); err != nil {
		e.t.Fatalf("ReleaseUses(unlimited): %v", err)
	}
	e.checkRecord("unlimited after release", e.get(unlimited.ID), unlimited)
}

func testTouchLastUsedKeepsTheLatest(e *env) {
	a, _ := e.newToken()
	b, _ := e.newToken(func(r *token.Record) { r.LastUsedAt = base.Add(time.Hour) })
	t1 := base.Add(time.Minute + 1)
	if err := e.s.TouchLastUsed(e.ctx, map[string]time.Time{a.ID: t1, b.ID: base.Add(2 * time.Hour), e.fx.id(): t1}); err != nil {
		e.t.Fatalf("TouchLastUsed: %v", err)
	}
	wantA, wantB := a.Clone(), b.Clone()
	wantA.LastUsedAt = t1
	wantB.LastUsedAt = base.Add(2 * time.Hour)
	e.checkRecord("a", e.get(a.ID), wantA)
	e.checkRecord("b", e.get(b.ID), wantB)

	// Older and zero times are ignored; a newer one wins.
	if err := e.s.TouchLastUsed(e.ctx, map[string]time.Time{a.ID: t1.Add(-time.Millisecond), b.ID: {}}); err != nil {
		e.t.Fatalf("TouchLastUsed(older): %v", err)
	}
	e.checkRecord("a after older time", e.get(a.ID), wantA)
	e.checkRecord("b after zero time", e.get(b.ID), wantB)
	t2 := t1.Add(time.Second)
	if err := e.s.TouchLastUsed(e.ctx, map[string]time.Time{a.ID: t2}); err != nil {
		e.t.Fatalf("TouchLastUsed(newer): %v", err)
	}
	wantA.LastUsedAt = t2
	e.checkRecord("a after newer time (no revision bump)", e.get(a.ID), wantA)

	if err := e.s.TouchLastUsed(e.ctx, nil); err != nil {
		e.t.Errorf("TouchLastUsed(nil) = %v, want nil", err)
	}
}

func testListTokensPagesInIDOrder(e *env) {
	parent, _ := e.newToken(func(r *token.Record) { r.Subject = "user:root" })
	all := []*token.Record{parent}
	subjects := []string{"user:alice", "user:bob", "user:carol"}
	for i := range 20 {
		r, _ := e.newToken(func(r *token.Record) {
			r.Subject = subjects[i%3]
			if i%4 == 0 {
				r.Status = token.StatusSuspended
			}
			if i%2 == 0 {
				r.ParentID = parent.ID
			}
		})
		all = append(all, r)
	}
	filters := []store.TokenFilter{
		{},
		{Subject: "user:alice"},
		{Status: token.StatusSuspended},
		{Status: token.StatusActive},
		{ParentID: parent.ID},
		{Subject: "user:bob", Status: token.StatusActive},
		{Subject: "user:carol", ParentID: parent.ID, Status: token.StatusSuspended},
		{Subject: "user:nobody"},
		{ParentID: e.fx.id()},
	}
	for _, f := range filters {
		var want []string
		for _, r := range all {
			if (f.Subject == "" || r.Subject == f.Subject) &&
				(f.Status == "" || r.Status == f.Status) &&
				(f.ParentID == "" || r.ParentID == f.ParentID) {
				want = append(want, r.ID)
			}
		}
		slices.Sort(want)
		for _, limit := range []int{1, 4, len(want), len(want) + 1} {
			if limit == 0 {
				continue
			}
			f := f
			f.Limit = limit
			e.checkPages(f, want, all)
		}
	}

	// A cursor past the end, and one between ids, work as plain positions.
	allIDs := make([]string, len(all))
	for i, r := range all {
		allIDs[i] = r.ID
	}
	slices.Sort(allIDs)
	recs, next, err := e.s.ListTokens(e.ctx, store.TokenFilter{After: allIDs[len(allIDs)-1]})
	if err != nil || len(recs) != 0 || next != "" {
		e.t.Errorf("ListTokens(after the last id) = %d records, %q, %v; want none", len(recs), next, err)
	}
	between := allIDs[5] + "0"
	recs, _, err = e.s.ListTokens(e.ctx, store.TokenFilter{After: between, Limit: 1})
	if err != nil || len(recs) != 1 || recs[0].ID != allIDs[6] {
		e.t.Errorf("ListTokens(after a cursor between ids) did not start at the next id")
	}
}

// checkPages pages through ListTokens with f and compares the ids to want,
// and each record to its original in all.
func (e *env) checkPages(f store.TokenFilter, want []string, all []*token.Record) {
	e.t.Helper()
	byID := make(map[string]*token.Record, len(all))
	for _, r := range all {
		byID[r.ID] = r
	}
	var got []string
	for page := 0; ; page++ {
		if page > len(want)+1 {
			e.t.Fatalf("ListTokens(%+v): more pages than records", f)
		}
		recs, next, err := e.s.ListTokens(e.ctx, f)
		if err != nil {
			e.t.Fatalf("ListTokens(%+v): %v", f, err)
		}
		if len(recs) > f.Limit {
			e.t.Fatalf("ListTokens(%+v) returned %d records", f, len(recs))
		}
		for _, r := range recs {
			if len(got) > 0 && r.ID <= got[len(got)-1] {
				e.t.Fatalf("ListTokens(%+v): id %s after %s, want ascending", f, r.ID, got[len(got)-1])
			}
			got = append(got, r.ID)
			if orig, ok := byID[r.ID]; ok {
				e.checkRecord("listed "+r.ID, r, orig)
			}
		}
		if next == "" {
			break
		}
		if len(recs) == 0 || next != recs[len(recs)-1].ID {
			e.t.Fatalf("ListTokens(%+v): next %q is not the last id of the page", f, next)
		}
		f.After = next
	}
	if !slices.Equal(got, want) {
		e.t.Errorf("ListTokens pages with %+v = %v, want %v", f, got, want)
	}
	if len(got) == len(want) && len(want) > 0 {
		// The last page says there is no next one, even when it is full.
		f.After = ""
		if len(want) <= f.Limit {
			if _, next, _ := e.s.ListTokens(e.ctx, f); next != "" {
				e.t.Errorf("ListTokens(%+v) with every match on one page: next = %q, want \"\"", f, next)
			}
		}
	}
}

func testListTokensLimits(e *env) {
	const total = 1001
	e.createConcurrently(total, func(int) *token.Record { return e.fx.record() })
	for _, tc := range []struct {
		limit, want int
	}{
		{0, 100},
		{-1, 100},
		{5000, 1000},
		{1000, 1000},
	} {
		recs, next, err := e.s.ListTokens(e.ctx, store.TokenFilter{Limit: tc.limit})
		if err != nil {
			e.t.Fatalf("ListTokens(Limit %d): %v", tc.limit, err)
		}
		if len(recs) != tc.want || next == "" {
			e.t.Errorf("ListTokens(Limit %d) = %d records, next %q; want %d and a next page", tc.limit, len(recs), next, tc.want)
		}
	}
}

// createConcurrently creates n records made by mk from concurrency
// goroutines and fails the test on any error.
func (e *env) createConcurrently(n int, mk func(i int) *token.Record) []*token.Record {
	e.t.Helper()
	recs := make([]*token.Record, n)
	secs := make([]token.Secret, n)
	for i := range recs {
		recs[i] = mk(i)
		secs[i] = e.fx.secret(recs[i].ID, recs[i].CreatedAt)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(concurrency, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := e.s.CreateToken(e.ctx, recs[i], secs[i]); err != nil {
					e.t.Errorf("CreateToken(%s): %v", recs[i].ID, err)
				}
			}
		})
	}
	wg.Wait()
	if e.t.Failed() {
		e.t.FailNow()
	}
	return recs
}

func testMetaRoundTrip(e *env) {
	if _, err := e.s.GetMeta(e.ctx, "bootstrap"); !errors.Is(err, store.ErrNotFound) {
		e.t.Fatalf("GetMeta(unset) = %v, want ErrNotFound", err)
	}
	values := map[string][]byte{
		"bootstrap":      []byte("done"),
		"binary":         {0, 1, 2, 0xff, 0},
		"empty":          {},
		"schema/version": []byte("3"),
	}
	for k, v := range values {
		if err := e.s.PutMeta(e.ctx, k, v); err != nil {
			e.t.Fatalf("PutMeta(%s): %v", k, err)
		}
	}
	for k, v := range values {
		got, err := e.s.GetMeta(e.ctx, k)
		if err != nil || !slices.Equal(got, v) {
			e.t.Errorf("GetMeta(%s) = %v, %v; want %v, nil", k, got, err, v)
		}
	}
	// Overwrite, and the value handed in is not retained.
	v := []byte("second")
	if err := e.s.PutMeta(e.ctx, "bootstrap", v); err != nil {
		e.t.Fatalf("PutMeta(overwrite): %v", err)
	}
	v[0] = 'X'
	got, err := e.s.GetMeta(e.ctx, "bootstrap")
	if err != nil || string(got) != "second" {
		e.t.Errorf("GetMeta(overwritten) = %q, %v; want \"second\"", got, err)
	}
	// The value returned is a copy.
	got[0] = 'Y'
	if again, _ := e.s.GetMeta(e.ctx, "bootstrap"); string(again) != "second" {
		e.t.Errorf("GetMeta after changing a returned value = %q, want \"second\"", again)
	}
}

func testConcurrentCreatesAllLand(e *env) {
	recs := make([]*token.Record, concurrency)
	secs := make([]token.Secret, concurrency)
	for i := range recs {
		recs[i] = e.fx.record(func(r *token.Record) { r.Subject = fmt.Sprintf("service:worker-%d", i) })
		secs[i] = e.fx.secret(recs[i].ID, recs[i].CreatedAt)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range concurrency {
		wg.Go(func() {
			<-start
			if err := e.s.CreateToken(e.ctx, recs[i], secs[i]); err != nil {
				e.t.Errorf("CreateToken(%d): %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	for i, rec := range recs {
		e.checkRecord("created concurrently", e.get(rec.ID), rec)
		got, _, err := e.s.TokenBySecret(e.ctx, secs[i].Hash)
		if err != nil || got.ID != rec.ID {
			e.t.Errorf("TokenBySecret(secret %d) = %v; want token %s", i, err, rec.ID)
		}
	}
	listed, next, err := e.s.ListTokens(e.ctx, store.TokenFilter{Limit: 1000})
	if err != nil || len(listed) != concurrency || next != "" {
		e.t.Errorf("ListTokens = %d records, next %q, %v; want %d", len(listed), next, err, concurrency)
	}
}

func testConcurrentConflictFailsAlone(e *env) {
	_, takenSec := e.newToken()
	recs := make([]*token.Record, concurrency)
	secs := make([]token.Secret, concurrency)
	conflicting := func(i int) bool { return i%8 == 3 }
	for i := range recs {
		recs[i] = e.fx.record()
		secs[i] = e.fx.secret(recs[i].ID, recs[i].CreatedAt)
		if conflicting(i) {
			secs[i].Hash = takenSec.Hash
		}
	}
	errs := make([]error, concurrency)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range concurrency {
		wg.Go(func() {
			<-start
			errs[i] = e.s.CreateToken(e.ctx, recs[i], secs[i])
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		_, getErr := e.s.Token(e.ctx, recs[i].ID)
		if conflicting(i) {
			if !errors.Is(err, store.ErrConflict) || !errors.Is(getErr, store.ErrNotFound) {
				e.t.Errorf("conflicting create %d: %v, then Token: %v; want ErrConflict, ErrNotFound", i, err, getErr)
			}
			continue
		}
		if err != nil || getErr != nil {
			e.t.Errorf("create %d alongside conflicting ones: %v, then Token: %v; want both nil", i, err, getErr)
		}
	}
}

func testDoneContextChangesNothing(e *env) {
	rec, sec := e.newToken(func(r *token.Record) { r.RemainingUses = ptr(int64(5)) })
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()

	fresh := e.fx.record()
	if err := e.s.CreateToken(ctx, fresh, e.fx.secret(fresh.ID, fresh.CreatedAt)); !errors.Is(err, context.Canceled) {
		e.t.Errorf("CreateToken(done ctx) = %v, want context.Canceled", err)
	}
	upd := rec.Clone()
	upd.Subject = "user:changed"
	if err := e.s.UpdateToken(ctx, upd); !errors.Is(err, context.Canceled) {
		e.t.Errorf("UpdateToken(done ctx) = %v, want context.Canceled", err)
	}
	if _, err := e.s.ReserveUses(ctx, rec.ID, 1); !errors.Is(err, context.Canceled) {
		e.t.Errorf("ReserveUses(done ctx) = %v, want context.Canceled", err)
	}
	if _, err := e.s.SetStatus(ctx, []string{rec.ID}, token.StatusRevoked, "", base); !errors.Is(err, context.Canceled) {
		e.t.Errorf("SetStatus(done ctx) = %v, want context.Canceled", err)
	}
	if err := e.s.PutMeta(ctx, "k", []byte("v")); !errors.Is(err, context.Canceled) {
		e.t.Errorf("PutMeta(done ctx) = %v, want context.Canceled", err)
	}
	if _, err := e.s.Token(ctx, rec.ID); !errors.Is(err, context.Canceled) {
		e.t.Errorf("Token(done ctx) = %v, want context.Canceled", err)
	}
	if _, _, err := e.s.TokenBySecret(ctx, sec.Hash); !errors.Is(err, context.Canceled) {
		e.t.Errorf("TokenBySecret(done ctx) = %v, want context.Canceled", err)
	}

	if _, err := e.s.Token(e.ctx, fresh.ID); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("Token(created with done ctx) = %v, want ErrNotFound", err)
	}
	if _, err := e.s.GetMeta(e.ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("GetMeta(put with done ctx) = %v, want ErrNotFound", err)
	}
	e.checkRecord("after calls with a done ctx", e.get(rec.ID), rec)
}

func testPing(e *env) {
	if err := e.s.Ping(e.ctx); err != nil {
		e.t.Errorf("Ping = %v, want nil", err)
	}
}

func testClosedStoreReturnsErrClosed(e *env) {
	rec, sec := e.newToken()
	if err := e.s.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	ctx := e.ctx
	now := e.now()
	var errs []namedErr
	add := func(name string, err error) { errs = append(errs, namedErr{name, err}) }
	fresh := e.fx.record()
	add("CreateToken", e.s.CreateToken(ctx, fresh, e.fx.secret(fresh.ID, now)))
	_, err := e.s.Token(ctx, rec.ID)
	add("Token", err)
	_, _, err = e.s.TokenBySecret(ctx, sec.Hash)
	add("TokenBySecret", err)
	_, _, err = e.s.ListTokens(ctx, store.TokenFilter{})
	add("ListTokens", err)
	add("UpdateToken", e.s.UpdateToken(ctx, rec.Clone()))
	_, err = e.s.SetStatus(ctx, []string{rec.ID}, token.StatusRevoked, "", now)
	add("SetStatus", err)
	_, err = e.s.Descendants(ctx, rec.ID)
	add("Descendants", err)
	add("RotateSecret", e.s.RotateSecret(ctx, rec.ID, e.fx.secret(rec.ID, now), now.Add(time.Hour), time.Time{}))
	_, err = e.s.Secrets(ctx, rec.ID)
	add("Secrets", err)
	_, err = e.s.LiveSecretsByPepper(ctx, now)
	add("LiveSecretsByPepper", err)
	_, err = e.s.ReserveUses(ctx, rec.ID, 1)
	add("ReserveUses", err)
	add("ReleaseUses", e.s.ReleaseUses(ctx, rec.ID, 1))
	add("TouchLastUsed", e.s.TouchLastUsed(ctx, map[string]time.Time{rec.ID: now}))
	_, err = e.s.GetMeta(ctx, "k")
	add("GetMeta", err)
	add("PutMeta", e.s.PutMeta(ctx, "k", nil))
	add("Ping", e.s.Ping(ctx))
	add("Close", e.s.Close())
	for _, c := range errs {
		if !errors.Is(c.err, store.ErrClosed) {
			e.t.Errorf("%s after Close = %v, want ErrClosed", c.name, c.err)
		}
	}
}

// namedErr is the result of one call in a list of calls checked together.
type namedErr struct {
	name string
	err  error
}

// showUses formats a RemainingUses value.
func showUses(p *int64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprintf("&%d", *p)
}

// replay returns a replay record of token id under key k for the
// store's clock, living for life.
func (e *env) replay(id string, k byte, life time.Duration) *store.Replay {
	now := e.now().Truncate(time.Microsecond).UTC()
	r := &store.Replay{TokenID: id, CallerID: id, Sealed: []byte{k, 1, 2, 3}, CreatedAt: now, ExpiresAt: now.Add(life)}
	r.Key[0], r.Request[0] = k, k+1
	return r
}

func testRotateSecretWithKeepsLineageAndReplay(e *env) {
	rec, sec1 := e.newToken()
	now := e.now().Truncate(time.Microsecond).UTC()
	sec2 := e.fx.secret(rec.ID, now)
	rp := e.replay(rec.ID, 7, 10*time.Minute)
	if _, err := e.s.Replay(e.ctx, rec.ID, rp.Key, now); !errors.Is(err, store.ErrNotFound) {
		e.t.Fatalf("Replay(before any) = %v, want ErrNotFound", err)
	}
	from := token.Fingerprint(sec1.Hash)
	if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: sec2, OldNotAfter: now.Add(time.Minute), RotatedFrom: from, Replay: rp}); err != nil {
		e.t.Fatalf("RotateSecretWith: %v", err)
	}
	got := e.get(rec.ID)
	if got.Rotations != 1 || got.RotatedFrom != from || diffTime(got.RotatedAt, sec2.CreatedAt) != "" {
		e.t.Errorf("after rotation: Rotations %d, RotatedFrom %q, RotatedAt %v; want 1, %q, %v", got.Rotations, got.RotatedFrom, got.RotatedAt, from, sec2.CreatedAt)
	}
	r, err := e.s.Replay(e.ctx, rec.ID, rp.Key, now)
	if err != nil {
		e.t.Fatalf("Replay: %v", err)
	}
	if r.TokenID != rec.ID || r.CallerID != rp.CallerID || r.Request != rp.Request || r.Rotation != 1 ||
		!slices.Equal(r.Sealed, rp.Sealed) || diffTime(r.CreatedAt, rp.CreatedAt) != "" || diffTime(r.ExpiresAt, rp.ExpiresAt) != "" {
		e.t.Errorf("Replay = %+v, want %+v with Rotation 1", r, rp)
	}
	if _, err := e.s.Replay(e.ctx, rec.ID, rp.Key, rp.ExpiresAt); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("Replay(at its expiry) = %v, want ErrNotFound", err)
	}
	other, _ := e.newToken()
	if _, err := e.s.Replay(e.ctx, other.ID, rp.Key, now); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("Replay(another token, same key) = %v, want ErrNotFound", err)
	}
	// A stale revision is a conflict and changes nothing.
	stale := e.fx.secret(rec.ID, now.Add(2*time.Second))
	if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: stale, OldNotAfter: now, Revision: got.Revision - 1}); !errors.Is(err, store.ErrConflict) {
		e.t.Errorf("RotateSecretWith(stale revision) = %v, want ErrConflict", err)
	}
	if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: stale, OldNotAfter: now.Add(time.Minute), Revision: got.Revision}); err != nil {
		e.t.Errorf("RotateSecretWith(current revision) = %v", err)
	}
	// A replay of another token is refused, changing nothing.
	bad := e.replay(other.ID, 8, time.Minute)
	sec3 := e.fx.secret(rec.ID, now.Add(time.Second))
	if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: sec3, OldNotAfter: now, Replay: bad}); err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrClosed) {
		e.t.Errorf("RotateSecretWith(replay of another token) = %v, want a refusal that is no sentinel", err)
	}
	if got := e.get(rec.ID); got.Rotations != 2 {
		e.t.Errorf("Rotations after a refused rotation = %d, want 2", got.Rotations)
	}
}

func testReplayWithTakenKeyConflicts(e *env) {
	rec, _ := e.newToken()
	now := e.now().Truncate(time.Microsecond).UTC()
	rp := e.replay(rec.ID, 3, time.Hour)
	sec2 := e.fx.secret(rec.ID, now)
	if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: sec2, OldNotAfter: now.Add(time.Hour), Replay: rp}); err != nil {
		e.t.Fatalf("RotateSecretWith: %v", err)
	}
	before := e.get(rec.ID)
	secsBefore := e.secrets(rec.ID)
	again := e.replay(rec.ID, 3, time.Hour)
	again.Sealed = []byte("other")
	sec3 := e.fx.secret(rec.ID, now.Add(time.Second))
	if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: sec3, OldNotAfter: now.Add(time.Hour), Replay: again}); !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("RotateSecretWith(taken key) = %v, want ErrConflict", err)
	}
	e.checkRecord("after the refused rotation", e.get(rec.ID), before)
	e.checkSecrets("Secrets after the refused rotation", e.secrets(rec.ID), secsBefore)
	if r, err := e.s.Replay(e.ctx, rec.ID, rp.Key, now); err != nil || !slices.Equal(r.Sealed, rp.Sealed) {
		e.t.Errorf("Replay after the refused rotation = %v, %v; want the first", r, err)
	}
}

func testReplaysExpireAndAreBounded(e *env) {
	rec, _ := e.newToken()
	now := e.now().Truncate(time.Microsecond).UTC()
	// An expired replay (by the store's clock) frees its key.
	old := e.replay(rec.ID, 1, time.Microsecond)
	old.CreatedAt, old.ExpiresAt = now.Add(-time.Hour), now.Add(-time.Minute)
	if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: e.fx.secret(rec.ID, now), OldNotAfter: now, Replay: old}); err != nil {
		e.t.Fatalf("RotateSecretWith(expired replay): %v", err)
	}
	fresh := e.replay(rec.ID, 1, time.Hour)
	if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: e.fx.secret(rec.ID, now.Add(1)), OldNotAfter: now, Replay: fresh}); err != nil {
		e.t.Fatalf("RotateSecretWith(key of an expired replay) = %v, want nil", err)
	}
	// A token keeps at most MaxReplays: the oldest go.
	for i := range store.MaxReplays + 3 {
		rp := e.replay(rec.ID, byte(10+i), time.Hour)
		rp.CreatedAt = now.Add(time.Duration(i+1) * time.Millisecond)
		if err := e.s.RotateSecretWith(e.ctx, rec.ID, store.Rotation{Secret: e.fx.secret(rec.ID, now.Add(time.Duration(i+2))), OldNotAfter: now, Replay: rp}); err != nil {
			e.t.Fatalf("RotateSecretWith(%d): %v", i, err)
		}
	}
	kept := 0
	for i := range store.MaxReplays + 3 {
		var k [32]byte
		k[0] = byte(10 + i)
		if _, err := e.s.Replay(e.ctx, rec.ID, k, now); err == nil {
			kept++
		} else if i >= 3 {
			e.t.Errorf("Replay(%d, among the newest) = %v", i, err)
		}
	}
	if kept != store.MaxReplays {
		e.t.Errorf("kept %d replays, want %d", kept, store.MaxReplays)
	}
}
