package scope

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/token"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// SMART v2.
		{"patient_read_search", "patient/Observation.rs", "patient/Observation.rs"},
		{"user_all_perms", "user/Patient.cruds", "user/Patient.cruds"},
		{"system_wildcard", "system/*.cud", "system/*.cud"},
		{"single_perm_c", "patient/Encounter.c", "patient/Encounter.c"},
		{"single_perm_s", "patient/Encounter.s", "patient/Encounter.s"},
		{"one_letter_resource", "patient/X.r", "patient/X.r"},
		{"resource_64_bytes", "patient/" + "R" + strings.Repeat("x", 63) + ".r", "patient/" + "R" + strings.Repeat("x", 63) + ".r"},
		// SMART v1, normalised.
		{"v1_read", "patient/Observation.read", "patient/Observation.rs"},
		{"v1_write", "user/Observation.write", "user/Observation.cud"},
		{"v1_star", "system/*.*", "system/*.cruds"},
		{"v1_read_with_param", "patient/Observation.read?category=laboratory", "patient/Observation.rs?category=laboratory"},
		// Restrictions.
		{"param", "patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=laboratory"},
		{"param_token", "patient/Observation.rs?code=http://loinc.org|1234-5", "patient/Observation.rs?code=http://loinc.org|1234-5"},
		{"params_sorted_by_name", "patient/Observation.rs?code=x&category=laboratory", "patient/Observation.rs?category=laboratory&code=x"},
		{"params_sorted_by_value", "patient/Observation.rs?category=vital-signs&category=laboratory", "patient/Observation.rs?category=laboratory&category=vital-signs"},
		{"params_duplicate_removed", "patient/Observation.rs?category=lab&category=lab", "patient/Observation.rs?category=lab"},
		{"param_pct_decoded_pipe", "patient/Observation.rs?code=x%7cy", "patient/Observation.rs?code=x|y"},
		{"param_pct_unreserved_decoded", "patient/Observation.rs?category=%6Cab", "patient/Observation.rs?category=lab"},
		{"param_pct_space_kept", "patient/Observation.rs?code=a%20b", "patient/Observation.rs?code=a%20b"},
		{"param_pct_lower_hex_upcased", "patient/Observation.rs?code=a%2bb", "patient/Observation.rs?code=a%2Bb"},
		{"param_pct_utf8", "patient/Observation.rs?code=%C3%A9", "patient/Observation.rs?code=%C3%A9"},
		{"param_pct_dedup_after_decode", "patient/Observation.rs?category=lab&category=%6cab", "patient/Observation.rs?category=lab"},
		{"param_underscore_name", "patient/Observation.rs?_security=R", "patient/Observation.rs?_security=R"},
		{"param_modifier_name", "patient/Condition.rs?clinical-status:not=inactive", "patient/Condition.rs?clinical-status:not=inactive"},
		{"param_on_wildcard", "patient/*.rs?_tag=x", "patient/*.rs?_tag=x"},
		// Plain.
		{"plain_simple", "introspect", "introspect"},
		{"plain_two_segments", "billing:read", "billing:read"},
		{"plain_wildcard", "billing:*", "billing:*"},
		{"plain_deep_wildcard", "billing:invoices:*", "billing:invoices:*"},
		{"plain_punct", "api.v2:read_all-x", "api.v2:read_all-x"},
		{"plain_digit_first", "2fa:reset", "2fa:reset"},
		{"plain_context_word", "patient", "patient"},
		{"plain_128_bytes", strings.Repeat("a", MaxPlainLen), strings.Repeat("a", MaxPlainLen)},
		{"root", "admin:*", "admin:*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := s.String(); got != tt.want {
				t.Fatalf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
			}
			again, err := Parse(s.String())
			if err != nil || !again.Equal(s) {
				t.Fatalf("canonical form does not parse back to itself: %v", err)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	long := "patient/Observation.rs?code=" + strings.Repeat("x", MaxLen)
	tests := []struct {
		name, in, why string // why: a substring of the error message
	}{
		{"empty", "", "empty"},
		{"unknown_context", "practitioner/Observation.rs", "unknown context"},
		{"uppercase_context", "Patient/Observation.rs", "unknown context"},
		{"empty_context", "/Observation.rs", "unknown context"},
		{"missing_dot", "patient/Observation", `missing "."`},
		{"trailing_dot", "patient/Observation.", "empty permissions"},
		{"empty_perms", "patient/Observation.?x=y", "empty permissions"},
		{"perms_out_of_order", "patient/Observation.sr", "out of order"},
		{"perms_out_of_order_cruds", "patient/Observation.crusd", "out of order"},
		{"perms_repeated", "patient/Observation.rrs", "repeated"},
		{"perms_unknown_letter", "patient/Observation.rx", "unknown permission"},
		{"perms_uppercase", "patient/Observation.RS", "unknown permission"},
		{"perms_v1_uppercase", "patient/Observation.Read", "unknown permission"},
		{"perms_mixed_v1_v2", "patient/Observation.reads", "unknown permission"},
		{"perms_star_and_letters", "patient/Observation.*r", "unknown permission"},
		{"double_dot", "patient/Observation..rs", "unknown permission"},
		{"lowercase_resource", "patient/observation.rs", "upper-case"},
		{"empty_resource", "patient/.rs", "empty resource"},
		{"resource_digit", "patient/Observation2.rs", "letters only"},
		{"resource_underscore", "patient/Obs_ervation.rs", "letters only"},
		{"resource_partial_wildcard", "patient/Obs*.rs", "letters only"},
		{"resource_too_long", "patient/R" + strings.Repeat("x", 64) + ".r", "longer than 64"},
		{"extra_slash", "patient/Observation/x.rs", "letters only"},
		{"double_slash", "patient//Observation.rs", "upper-case"},
		{"space_inside", "patient/Observation.rs x", "unknown permission"},
		{"trailing_question_mark", "patient/Observation.rs?", "no restriction"},
		{"bad_param", "patient/Observation.rs?category", `without "="`},
		{"param_empty_name", "patient/Observation.rs?=lab", "empty restriction name"},
		{"param_empty_value", "patient/Observation.rs?category=", "empty restriction value"},
		{"param_empty_between_ampersands", "patient/Observation.rs?a=b&&c=d", "empty restriction"},
		{"param_trailing_ampersand", "patient/Observation.rs?a=b&", "empty restriction"},
		{"param_name_digit_first", "patient/Observation.rs?1a=b", "must start"},
		{"param_name_bad_char", "patient/Observation.rs?a!=b", "not allowed in a restriction name"},
		{"param_raw_plus", "patient/Observation.rs?code=a+b", "not allowed in a restriction value"},
		{"param_raw_equals", "patient/Observation.rs?code=a=b", "not allowed in a restriction value"},
		{"param_second_question_mark", "patient/Observation.rs?code=a?b", "not allowed in a restriction value"},
		{"param_raw_non_ascii", "patient/Observation.rs?code=é", "not allowed in a restriction value"},
		{"param_raw_quote", `patient/Observation.rs?code=a"b`, "not allowed in a restriction value"},
		{"param_pct_truncated", "patient/Observation.rs?code=a%2", "two hex digits"},
		{"param_pct_not_hex", "patient/Observation.rs?code=a%zz", "two hex digits"},
		{"param_pct_control", "patient/Observation.rs?code=a%0Ab", "control character"},
		{"param_pct_nul", "patient/Observation.rs?code=a%00", "control character"},
		{"param_pct_del", "patient/Observation.rs?code=a%7F", "control character"},
		{"param_pct_invalid_utf8", "patient/Observation.rs?code=%C3", "UTF-8"},
		{"too_long", long, "longer than 256"},
		{"canonical_too_long", "patient/R" + strings.Repeat("x", 63) + ".*?n=" + strings.Repeat("v", MaxLen-len("patient/R.*?n=")-63), "canonical form longer"},
		{"plain_too_long", strings.Repeat("a", MaxPlainLen+1), "longer than 128"},
		{"plain_uppercase", "Billing:read", "must start with a lower-case"},
		{"plain_uppercase_inside", "billing:Read", "must start with a lower-case"},
		{"plain_bad_char", "billing:re ad", "not allowed in a plain scope"},
		{"plain_empty_segment", "billing::read", "empty segment"},
		{"plain_leading_colon", ":billing", "empty segment"},
		{"plain_trailing_colon", "billing:", "empty segment"},
		{"plain_bare_star", "*", `"*" alone`},
		{"plain_star_not_last", "billing:*:read", "only as the last segment"},
		{"plain_partial_star", "billing:re*", "not allowed in a plain scope"},
		{"plain_segment_starts_with_dash", "billing:-read", "must start"},
		{"plain_tab", "billing\tread", "not allowed"},
		{"smart_v1_launch", "launch/patient", "unknown context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error", tt.in, s)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %q does not say %q", err, tt.why)
			}
			if want := display(tt.in); e.Scope != want {
				t.Errorf("error names scope %q, want %q", e.Scope, want)
			}
		})
	}
}

// TestParseRejectsEveryByteMutation replaces each byte of valid scopes with
// bytes that cannot appear there and expects every result to be rejected.
func TestParseRejectsEveryByteMutation(t *testing.T) {
	for _, valid := range []string{
		"patient/Observation.rs?category=laboratory",
		"billing:invoices:write",
	} {
		for i := range len(valid) {
			for _, c := range []byte{' ', '\t', 0, 0x7f, 0xff, '"', '\\', '#', '^'} {
				b := []byte(valid)
				b[i] = c
				if s, err := Parse(string(b)); err == nil {
					t.Errorf("Parse(%q) = %q, want error", b, s)
				}
			}
		}
	}
}

func TestErrorMessageNamesScopeTruncated(t *testing.T) {
	in := "patient/observation.rs?code=" + strings.Repeat("é", 60) // lower-case resource
	_, err := Parse(in)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse: %v, want *Error", err)
	}
	if len(e.Scope) > displayLen+len("…") || !strings.HasSuffix(e.Scope, "…") {
		t.Errorf("Scope = %q, want at most %d bytes and a trailing …", e.Scope, displayLen)
	}
	if !strings.HasPrefix(err.Error(), `invalid scope "patient/observation.rs?code=`) {
		t.Errorf("message %q does not start with the quoted scope", err)
	}
	if !strings.Contains(err.Error(), "at byte 8") {
		t.Errorf("message %q does not give the offset", err)
	}
}

func TestErrorNeverEchoesATokenSecret(t *testing.T) {
	secret, err := token.Generate(nil) // made now: no token-shaped literal in the repository
	if err != nil {
		t.Fatal(err)
	}
	tail := secret[len(secret)-12:]
	for _, in := range []string{
		secret,
		"billing:" + secret,
		"patient/Observation.rs?code=" + secret,
		"patient/Observation." + secret,
	} {
		_, err = Parse(in)
		if err == nil {
			continue // a well-formed scope is not an error
		}
		if strings.Contains(err.Error(), "phi_") || strings.Contains(err.Error(), tail) {
			t.Errorf("error for %q echoes the secret: %v", in, err)
		}
	}
	_, err = ParseSet([]string{"billing:read " + secret})
	if err == nil || strings.Contains(err.Error(), tail) {
		t.Errorf("ParseSet error echoes the secret: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	s, err := Parse("user/Observation.rs?code=x%7Cy&category=laboratory")
	if err != nil {
		t.Fatal(err)
	}
	if !s.IsSMART() || s.IsPlain() || s.IsRoot() || s.IsWildcard() {
		t.Errorf("kind accessors wrong for %q", s)
	}
	if s.Context() != User || s.Context().String() != "user" {
		t.Errorf("Context() = %v", s.Context())
	}
	if s.Resource() != "Observation" {
		t.Errorf("Resource() = %q", s.Resource())
	}
	if p := s.Perms(); p.String() != "rs" || !p.Has(OpRead) || !p.Has(OpSearch) || p.Has(OpCreate) || p.Has(Op('x')) {
		t.Errorf("Perms() = %q", p)
	}
	want := []Param{{"category", "laboratory"}, {"code", "x|y"}}
	if got := slices.Collect(s.Params()); !slices.Equal(got, want) || !s.Restricted() {
		t.Errorf("Params() = %v, want %v", got, want)
	}

	root, _ := Parse(Root)
	if !root.IsRoot() || !root.IsPlain() || !root.IsWildcard() || root.IsSMART() {
		t.Errorf("kind accessors wrong for root")
	}
	if root.Context() != System || root.Resource() != "*" || root.Perms().String() != "cruds" || root.Restricted() {
		t.Errorf("root reports %v %q %q, want system * cruds", root.Context(), root.Resource(), root.Perms())
	}

	plain, _ := Parse("billing:read")
	if plain.Context() != 0 || plain.Resource() != "" || plain.Perms() != 0 || plain.IsWildcard() {
		t.Errorf("plain scope reports SMART parts")
	}

	for op, name := range map[Op]string{OpCreate: "create", OpRead: "read", OpUpdate: "update", OpDelete: "delete", OpSearch: "search", 'x': ""} {
		if op.String() != name {
			t.Errorf("Op(%q).String() = %q, want %q", byte(op), op.String(), name)
		}
	}
	if Context(0).String() != "" || Patient.String() != "patient" || System.String() != "system" {
		t.Error("Context.String wrong")
	}
	var zero Scope
	if zero.String() != "" || zero.IsSMART() || zero.IsPlain() || zero.Covers(zero) || root.Covers(zero) {
		t.Error("zero Scope is not inert")
	}
}
