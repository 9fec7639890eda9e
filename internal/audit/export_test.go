package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// restfulInteractions are the codes of http://hl7.org/fhir/restful-interaction
// that the export uses (the top level of the code system).
var restfulInteractions = []string{"read", "vread", "update", "patch", "delete", "history", "create", "search", "capabilities", "transaction", "batch", "operation"}

// profileAction is the AuditEvent.action each BALP profile the export
// claims requires, and the restful-interaction subtypes it allows.
var profileAction = map[string]struct {
	action   string
	subtypes []string
}{
	"Read":   {"R", []string{"read", "vread"}},
	"Query":  {"E", []string{"search"}},
	"Create": {"C", []string{"create"}},
	"Update": {"U", []string{"update", "patch"}},
	"Delete": {"D", []string{"delete"}},
}

var fhirIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// checkShape checks that b is one well-formed FHIR R4 AuditEvent as the
// export promises: no empty or null element, the required elements, codes
// from their value sets, extensions with exactly one value, BALP profiles
// consistent with action and subtype. It returns the decoded event.
func checkShape(t *testing.T, name string, b []byte) map[string]any {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\n")) || bytes.Count(b, []byte("\n")) != 1 {
		t.Fatalf("%s: not one NDJSON line: %q", name, b)
	}
	var ev map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case nil:
			t.Errorf("%s: %s is null", name, path)
		case string:
			if v == "" {
				t.Errorf("%s: %s is an empty string", name, path)
			}
		case []any:
			if len(v) == 0 {
				t.Errorf("%s: %s is an empty array", name, path)
			}
			for i, x := range v {
				walk(path+"["+string(rune('0'+i))+"]", x)
			}
		case map[string]any:
			if len(v) == 0 {
				t.Errorf("%s: %s is an empty object", name, path)
			}
			for k, x := range v {
				walk(path+"."+k, x)
			}
		}
	}
	walk("AuditEvent", ev)

	str := func(v any) string { s, _ := v.(string); return s }
	obj := func(v any) map[string]any { m, _ := v.(map[string]any); return m }
	list := func(v any) []any { l, _ := v.([]any); return l }
	coding := func(path string, v any) (system, code string) {
		c := obj(v)
		if str(c["system"]) == "" || str(c["code"]) == "" {
			t.Errorf("%s: %s is not a coding with system and code: %v", name, path, v)
		}
		return str(c["system"]), str(c["code"])
	}
	extensions := func(path string, v any) {
		for _, x := range list(v) {
			x := obj(x)
			u := str(x["url"])
			if !strings.Contains(u, ":") {
				t.Errorf("%s: %s: url %q is not absolute", name, path, u)
			}
			n := 0
			for k, val := range x {
				if strings.HasPrefix(k, "value") {
					n++
					if k == "valueBase64Binary" {
						if _, err := base64.StdEncoding.DecodeString(str(val)); err != nil {
							t.Errorf("%s: %s: %s is not base64", name, path, u)
						}
					}
				}
			}
			if n != 1 {
				t.Errorf("%s: %s: extension %s has %d values", name, path, u, n)
			}
		}
	}

	if ev["resourceType"] != "AuditEvent" || !fhirIDPattern.MatchString(str(ev["id"])) {
		t.Errorf("%s: resourceType %v, id %v", name, ev["resourceType"], ev["id"])
	}
	coding("type", ev["type"])
	if a := str(ev["action"]); !slices.Contains([]string{"C", "R", "U", "D", "E"}, a) {
		t.Errorf("%s: action %q", name, a)
	}
	if _, err := time.Parse(time.RFC3339Nano, str(ev["recorded"])); err != nil {
		t.Errorf("%s: recorded: %v", name, err)
	}
	if o := str(ev["outcome"]); !slices.Contains([]string{"0", "4", "8", "12"}, o) {
		t.Errorf("%s: outcome %q", name, o)
	}
	var restful []string
	for _, c := range list(ev["subtype"]) {
		if sys, code := coding("subtype", c); sys == sysRestful {
			if !slices.Contains(restfulInteractions, code) {
				t.Errorf("%s: %q is not a restful-interaction code", name, code)
			}
			restful = append(restful, code)
		}
	}
	if len(restful) > 1 {
		t.Errorf("%s: %d restful-interaction subtypes", name, len(restful))
	}
	requestors := 0
	for _, a := range list(ev["agent"]) {
		r, ok := obj(a)["requestor"].(bool)
		if !ok {
			t.Errorf("%s: an agent without requestor", name)
		}
		if r {
			requestors++
		}
	}
	if len(list(ev["agent"])) == 0 || requestors > 1 {
		t.Errorf("%s: %d agents, %d requestors", name, len(list(ev["agent"])), requestors)
	}
	if obj(obj(ev["source"])["observer"]) == nil {
		t.Errorf("%s: no source.observer", name)
	}
	extensions("extension", ev["extension"])
	for _, en := range list(ev["entity"]) {
		en := obj(en)
		extensions("entity.extension", en["extension"])
		if q := str(en["query"]); q != "" {
			if _, err := base64.StdEncoding.DecodeString(q); err != nil {
				t.Errorf("%s: entity.query is not base64", name)
			}
		}
		if en["what"] == nil && en["extension"] == nil && en["detail"] == nil {
			t.Errorf("%s: an entity says nothing: %v", name, en)
		}
	}
	for _, p := range list(obj(ev["meta"])["profile"]) {
		pn, ok := strings.CutPrefix(str(p), balpProfile)
		want, known := profileAction[pn]
		if !ok || !known {
			t.Errorf("%s: profile %v", name, p)
			continue
		}
		if str(ev["action"]) != want.action || len(restful) != 1 || !slices.Contains(want.subtypes, restful[0]) {
			t.Errorf("%s: profile %s with action %v and subtype %v", name, pn, ev["action"], restful)
		}
	}
	return ev
}

// subtypeCode is the restful-interaction subtype of ev, or "".
func subtypeCode(ev map[string]any) string {
	for _, c := range ev["subtype"].([]any) {
		if c := c.(map[string]any); c["system"] == sysRestful {
			return c["code"].(string)
		}
	}
	return ""
}

// sealedEntry is e with its PHI fields sealed, as an export without the
// key reads it.
func sealedEntry(e *Entry) *Entry {
	e.takePHI()
	e.Sealed = []byte("ciphertext:\x00\x01\xfe")
	return e
}

func TestFHIRExportShapeOfEveryEntryKind(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	access := func(action Action, method, path, interaction string) *Entry {
		e := grant(1)
		e.Action, e.Method, e.Path, e.Interaction = action, method, path, interaction
		if action == ActionAccessCompleted {
			e.Status, e.Bytes, e.Duration = 200, 512, 3*time.Millisecond
		}
		if action == ActionAccessDenied {
			e.Outcome, e.Reason, e.Status = OutcomeDenied, "insufficient_scope", 403
		}
		return e
	}
	snapshot := json.RawMessage(`{"id":"tok_1","scopes":["patient/Observation.rs"]}`)
	for _, tc := range []struct {
		name     string
		e        *Entry
		subtype  string // restful-interaction code; "" for none
		action   string
		profile  string // BALP profile; "" for none
		outcome  string
		sealed   bool
		typeCode string
	}{
		{"token created", &Entry{Action: ActionTokenCreated, Outcome: OutcomeSuccess, Actor: Actor{TokenID: "tok_root", Subject: "root"}, Target: "tok_1", After: snapshot}, "", "C", "", "0", false, "110113"},
		{"token changed", &Entry{Action: ActionTokenUpdated, Outcome: OutcomeSuccess, Actor: Actor{TokenID: "tok_root"}, Target: "tok_1", Before: snapshot, After: snapshot}, "", "U", "", "0", false, "110113"},
		{"token revoked", &Entry{Action: ActionTokenRevoked, Outcome: OutcomeSuccess, Actor: Actor{TokenID: "tok_root"}, Target: "tok_1", Reason: "leaked"}, "", "D", "", "0", false, "110113"},
		{"token rotated", &Entry{Action: ActionTokenRotated, Outcome: OutcomeSuccess, Actor: Actor{TokenID: "tok_1"}, Target: "tok_1"}, "", "U", "", "0", false, "110113"},
		{"grant read", access(ActionAccessGranted, "GET", "/fhir/Patient/pat-1", "read"), "read", "R", "Read", "0", false, "rest"},
		{"grant vread", access(ActionAccessGranted, "GET", "/fhir/Patient/pat-1/_history/2", "vread"), "vread", "R", "Read", "0", false, "rest"},
		{"grant search", access(ActionAccessGranted, "GET", "/fhir/Observation?patient=pat-1", "search-type"), "search", "E", "Query", "0", false, "rest"},
		{"grant POST _search", access(ActionAccessGranted, "POST", "/fhir/Observation/_search", "search-type"), "search", "E", "Query", "0", false, "rest"},
		{"grant compartment search", access(ActionAccessGranted, "GET", "/fhir/Patient/pat-1/Observation", "search-compartment"), "search", "E", "Query", "0", false, "rest"},
		{"grant system search", access(ActionAccessGranted, "GET", "/fhir/?_type=Patient", "search-system"), "search", "E", "Query", "0", false, "rest"},
		{"grant history", access(ActionAccessGranted, "GET", "/fhir/Patient/pat-1/_history", "history-instance"), "history", "R", "", "0", false, "rest"},
		{"grant create", access(ActionAccessGranted, "POST", "/fhir/Observation", "create"), "create", "C", "Create", "0", false, "rest"},
		{"grant update", access(ActionAccessGranted, "PUT", "/fhir/Observation/1", "update"), "update", "U", "Update", "0", false, "rest"},
		{"grant conditional update", access(ActionAccessGranted, "PUT", "/fhir/Observation?code=x", "conditional-update"), "update", "U", "Update", "0", false, "rest"},
		{"grant patch", access(ActionAccessGranted, "PATCH", "/fhir/Observation/1", "patch"), "patch", "U", "Update", "0", false, "rest"},
		{"grant delete", access(ActionAccessGranted, "DELETE", "/fhir/Observation/1", "delete"), "delete", "D", "Delete", "0", false, "rest"},
		{"grant conditional delete", access(ActionAccessGranted, "DELETE", "/fhir/Observation?code=x", "conditional-delete"), "delete", "D", "Delete", "0", false, "rest"},
		{"grant batch", access(ActionAccessGranted, "POST", "/fhir/", "batch"), "batch", "E", "", "0", false, "rest"},
		{"grant transaction", access(ActionAccessGranted, "POST", "/fhir/", "transaction"), "transaction", "E", "", "0", false, "rest"},
		{"grant capabilities", access(ActionAccessGranted, "GET", "/fhir/metadata", "capabilities"), "capabilities", "R", "", "0", false, "rest"},
		{"grant operation", access(ActionAccessGranted, "GET", "/fhir/Patient/pat-1/$everything", "operation"), "operation", "E", "", "0", false, "rest"},
		{"grant http route", access(ActionAccessGranted, "POST", "/billing/invoices/", "route"), "", "E", "", "0", false, "rest"},
		{"completion", access(ActionAccessCompleted, "GET", "/fhir/Observation?patient=pat-1", "search-type"), "search", "E", "Query", "0", false, "rest"},
		{"denial", access(ActionAccessDenied, "GET", "/fhir/Observation?patient=pat-2", "search-type"), "search", "E", "Query", "4", false, "rest"},
		{"denial before classification", access(ActionAccessDenied, "GET", "/fhir/%2e%2e/x", ""), "", "R", "", "4", false, "rest"},
		{"auth failed", &Entry{Action: ActionAuthFailed, Outcome: OutcomeDenied, Reason: "invalid_token", Source: Source{IP: "192.0.2.9"}, Method: "GET", Path: "/fhir/Patient"}, "", "E", "", "4", false, "110114"},
		{"break-glass", func() *Entry {
			e := access(ActionBreakGlassUsed, "GET", "/fhir/Patient/pat-1", "read")
			e.BreakGlass, e.Purpose, e.Target = "ED: unconscious", "ETREAT", "Patient"
			return e
		}(), "", "E", "", "0", false, "110113"},
		{"sealed grant", sealedEntry(access(ActionAccessGranted, "GET", "/fhir/Patient/pat-1/Observation", "search-compartment")), "search", "E", "Query", "0", true, "rest"},
		{"sealed completion", sealedEntry(access(ActionAccessCompleted, "POST", "/fhir/Observation/_search", "search-type")), "search", "E", "Query", "0", true, "rest"},
		{"sealed denial", sealedEntry(access(ActionAccessDenied, "GET", "/fhir/Patient/pat-2", "read")), "read", "R", "Read", "4", true, "rest"},
		{"sealed break-glass", func() *Entry {
			e := access(ActionBreakGlassUsed, "GET", "/fhir/Patient/pat-1", "read")
			e.BreakGlass, e.Purpose, e.Target = "ED: unconscious", "ETREAT", "Patient"
			return sealedEntry(e)
		}(), "", "E", "", "0", true, "110113"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.e
			e.Seq, e.Time, e.Node = 7, at, "n1"
			var buf bytes.Buffer
			if err := WriteFHIR(&buf, e, "phigate/n1"); err != nil {
				t.Fatal(err)
			}
			ev := checkShape(t, tc.name, buf.Bytes())
			if got := ev["type"].(map[string]any)["code"]; got != tc.typeCode {
				t.Errorf("type %v, want %s", got, tc.typeCode)
			}
			if got := subtypeCode(ev); got != tc.subtype {
				t.Errorf("restful subtype %q, want %q", got, tc.subtype)
			}
			if ev["action"] != tc.action || ev["outcome"] != tc.outcome {
				t.Errorf("action %v, outcome %v; want %s, %s", ev["action"], ev["outcome"], tc.action, tc.outcome)
			}
			var profile string
			if m, ok := ev["meta"].(map[string]any); ok {
				profile = strings.TrimPrefix(m["profile"].([]any)[0].(string), balpProfile)
			}
			if profile != tc.profile {
				t.Errorf("profile %q, want %q", profile, tc.profile)
			}
			out := buf.String()
			if got := strings.Count(out, ExtSealed); tc.sealed != (got > 0) {
				t.Errorf("sealed marker %d times, sealed %v:\n%s", got, tc.sealed, out)
			}
			if !tc.sealed {
				return
			}
			// the ciphertext is the event's sealed extension; the entity of
			// the request (and the justification's) is marked; no PHI
			if !strings.Contains(out, `{"url":"`+ExtSealed+`","valueBase64Binary":"`+base64.StdEncoding.EncodeToString(e.Sealed)+`"}`) {
				t.Errorf("no sealed extension with the ciphertext:\n%s", out)
			}
			marked := 0
			for _, en := range ev["entity"].([]any) {
				en := en.(map[string]any)
				if x, ok := en["extension"].([]any); ok && x[0].(map[string]any)["url"] == ExtSealed && x[0].(map[string]any)["valueBoolean"] == true {
					marked++
					if en["query"] != nil || en["detail"] != nil && strings.Contains(out, "break-glass-justification") {
						t.Errorf("a sealed entity shows what it withholds: %v", en)
					}
					if role, _ := en["role"].(map[string]any); role != nil && role["code"] == "4" && en["what"] != nil {
						t.Errorf("the sealed request entity names its path: %v", en)
					}
				}
			}
			want := 1
			if e.Action == ActionBreakGlassUsed {
				want = 2
			}
			if marked != want {
				t.Errorf("%d entities marked sealed, want %d:\n%s", marked, want, out)
			}
			for _, phi := range []string{"pat-1", "pat-2", "unconscious", "Observation/_search", "Patient/pat"} {
				if strings.Contains(out, phi) {
					t.Errorf("sealed export shows %q:\n%s", phi, out)
				}
			}
		})
	}
}

// An export of a sealed log without the key: the interaction, in the
// clear, still codes the event; the PHI fields are marked sealed.
func TestFHIRExportOfASealedLogWithoutTheKey(t *testing.T) {
	l, dir := newTestLog(t, Options{Sealer: VaultSealer(testVault(t))})
	ctx := context.Background()
	e := grant(1)
	e.Method, e.Path, e.Interaction = "POST", "/fhir/Observation/_search", "search-type"
	if _, err := l.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	for e, err := range r.All(ctx, Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := WriteFHIR(&buf, e, r.Origin()); err != nil {
			t.Fatal(err)
		}
		ev := checkShape(t, "offline", buf.Bytes())
		if subtypeCode(ev) != "search" || ev["action"] != "E" || !strings.Contains(buf.String(), ExtSealed) || strings.Contains(buf.String(), "pat-000123456") {
			t.Fatalf("offline export of a sealed search:\n%s", buf.String())
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d entries", n)
	}
}
