package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exampleEntry is the entry of the package documentation's example.
func exampleEntry() *Entry {
	return &Entry{
		Seq:     5,
		Time:    time.Unix(0, 1767225600123456789).UTC(),
		Node:    "n1",
		Action:  ActionAccessGranted,
		Outcome: OutcomeSuccess,
		Actor:   Actor{TokenID: "tok_1", Subject: "svc:lab", Kind: "service"},
		Source:  Source{IP: "10.0.0.7"},
		Purpose: "TREAT",
		Method:  "GET",
		Path:    "/fhir/Observation",
	}
}

// TestDocExample pins the encoding in the package documentation, byte for
// byte, and its leaf hash.
func TestDocExample(t *testing.T) {
	b, err := exampleEntry().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	const want = "01" + // version
		"0105" + // seq 5
		"02959ad7aa9fca9cc318" + // time 1767225600123456789 (uvarint)
		"03026e31" + // node "n1"
		"040e6163636573732e6772616e746564" + // action "access.granted"
		"050773756363657373" + // outcome "success"
		"0605746f6b5f31" + // token id "tok_1"
		"07077376633a6c6162" + // subject "svc:lab"
		"080773657276696365" + // kind "service"
		"090831302e302e302e37" + // ip "10.0.0.7"
		"0e055452454154" + // purpose "TREAT"
		"1103474554" + // method "GET"
		"13112f666869722f4f62736572766174696f6e" // path "/fhir/Observation"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, want)
	}
	leaf := LeafHash(b)
	if got := hex.EncodeToString(leaf[:]); got != "fc181085965caa8a004af35301bddf0ac07a25b14771d06b6e3fe7fdacb77210" {
		t.Fatalf("leaf hash %s", got)
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	full := completion(7)
	full.Seq, full.Time, full.Node = 1<<40, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "node-1"
	full.Reason, full.Target, full.BreakGlass = "ok", "tok_x", "ED: cardiac arrest, patient unconscious"
	full.Before, full.After = json.RawMessage(`{"scopes":["a"]}`), json.RawMessage(`{"scopes":["a","b"]}`)
	full.Interaction = "search-type"
	for _, e := range []*Entry{exampleEntry(), full, {Time: time.Unix(0, 1).UTC(), Action: "x"}} {
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
		}
		// and through JSON
		j, _ := json.Marshal(e)
		var back Entry
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatal(err)
		}
		b2, _ := back.MarshalBinary()
		if !bytes.Equal(b, b2) {
			t.Fatalf("JSON round trip changed the entry: %s", j)
		}
	}
}

// TestEveryByteMutationIsRejectedOrCanonical mutates each byte of a valid
// encoding: the result must fail to decode, or decode to a different entry
// whose canonical encoding is exactly the mutated bytes (so no two byte
// strings decode to the same entry).
func TestEveryByteMutationIsRejectedOrCanonical(t *testing.T) {
	e := completion(3)
	e.Seq, e.Time, e.Node = 300, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "n1"
	e.Before = json.RawMessage(`{"a":1}`)
	valid, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for i := range valid {
		for _, mut := range []func(byte) byte{func(b byte) byte { return b ^ 0xff }, func(b byte) byte { return b + 1 }, func(b byte) byte { return b ^ 0x80 }} {
			b := bytes.Clone(valid)
			b[i] = mut(b[i])
			got, err := UnmarshalEntry(b)
			if err != nil {
				if !errors.Is(err, ErrMalformedEntry) {
					t.Fatalf("byte %d: error does not wrap ErrMalformedEntry: %v", i, err)
				}
				continue
			}
			accepted++
			again, err := got.MarshalBinary()
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("byte %d: mutated encoding decodes but is not canonical", i)
			}
			if reflect.DeepEqual(got, e) {
				t.Fatalf("byte %d: two encodings of the same entry", i)
			}
		}
	}
	// truncations and extensions
	for n := 0; n < len(valid); n++ {
		if _, err := UnmarshalEntry(valid[:n]); err == nil && n > 0 {
			if e2, _ := UnmarshalEntry(valid[:n]); e2 != nil {
				if again, _ := e2.MarshalBinary(); !bytes.Equal(again, valid[:n]) {
					t.Fatalf("prefix %d decodes but is not canonical", n)
				}
			}
		}
	}
	if _, err := UnmarshalEntry(append(bytes.Clone(valid), 0)); err == nil {
		t.Fatal("trailing zero byte accepted")
	}
	t.Logf("%d of %d single-byte mutations are other valid entries (e.g. a changed letter)", accepted, 3*len(valid))
}

func TestDecodingRejects(t *testing.T) {
	head := []byte{1, tagTime, 1, tagAction, 1, 'x'}
	cases := map[string][]byte{
		"empty":             {},
		"version_0":         {0, tagTime, 1, tagAction, 1, 'x'},
		"no_time":           {1, tagAction, 1, 'x'},
		"no_action":         {1, tagTime, 1},
		"zero_seq":          {1, tagSeq, 0, tagTime, 1, tagAction, 1, 'x'},
		"empty_string":      append(bytes.Clone(head), tagNode+2, 0),
		"out_of_order":      {1, tagAction, 1, 'x', tagTime, 1},
		"repeated":          {1, tagTime, 1, tagTime, 2, tagAction, 1, 'x'},
		"unknown_tag":       append(bytes.Clone(head), 99, 1, 'x'),
		"non_minimal_int":   {1, tagTime, 0x81, 0x00, tagAction, 1, 'x'},
		"non_minimal_len":   {1, tagTime, 1, tagAction, 0x81, 0x00, 'x'},
		"length_past_end":   {1, tagTime, 1, tagAction, 5, 'x'},
		"bad_utf8":          {1, tagTime, 1, tagAction, 1, 0xff},
		"before_not_json":   append(bytes.Clone(head), tagBefore, 1, '{'),
		"time_overflow":     {1, tagTime, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, tagAction, 1, 'x'},
		"status_overflow":   append(bytes.Clone(head), tagStatus, 0x80, 0x80, 0x80, 0x80, 0x10),
		"truncated_varint":  {1, tagTime, 0x80},
		"too_large":         append(bytes.Clone(head), make([]byte, MaxEntrySize)...),
		"garbage_after_end": append(bytes.Clone(head), tagPath),
	}
	for name, b := range cases {
		if e, err := UnmarshalEntry(b); err == nil {
			t.Errorf("%s: accepted: %+v", name, e)
		} else if !errors.Is(err, ErrMalformedEntry) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRedact(t *testing.T) {
	secret := "phi_" + strings.Repeat("aB3", 14) + "x12345"
	for in, want := range map[string]string{
		"Bearer " + secret:                        "Bearer phi_[REDACTED]",
		"/x?access_token=" + secret + "&a=1":      "/x?access_token=phi_[REDACTED]&a=1",
		secret[:40]:                               "phi_[REDACTED]", // a partial or mistyped secret
		"phi_records/2024":                        "phi_records/2024",
		"no secret here":                          "no secret here",
		"phi_" + strings.Repeat("a", 31) + " end": "phi_" + strings.Repeat("a", 31) + " end",
		secret + secret:                           "phi_[REDACTED]phi_[REDACTED]",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
