package jsonscan

import (
	"encoding/json"
	"testing"
)

// Valid agrees with encoding/json on what is JSON.
func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range []string{`{}`, `[]`, ` {"a":[1,-2.5e+3,true,false,null,"x\"\\\u00e9"]} `, `"s"`, `0`, `-0.1`,
		`{"a":1,}`, `[1,]`, `{"a" 1}`, `{a:1}`, `01`, `1.`, `.5`, `+1`, `tru`, `"\x"`, "\"\\n\x01\"", `"\u12"`, `{"a":1}x`, `[`, ``, `nul`, `1e`, `[1 2]`} {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", s, got, want)
		}
	}
}

// Field takes the last member of a name, exactly as written.
func TestFieldTakesTheLastExactKey(t *testing.T) {
	b := []byte(`{"id":"a","ID":"x","id":"b","i\u0064":"c"}`)
	v, ok := Field(b, "id")
	if s, _ := String(v); !ok || s != "b" {
		t.Errorf("Field = %s %v", v, ok)
	}
	if _, ok := Field([]byte(`{"id":"a"`), "id"); ok {
		t.Error("a truncated object answered")
	}
	if !StringIs([]byte(`"P\u0061tient"`), "Patient") || StringIs([]byte(`"Patient"`), "Patien") {
		t.Error("StringIs")
	}
}

func FuzzValid(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"c\n"}]}`))
	f.Add([]byte(`[1e5,-0,"\ud800"]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want && !(got && hasRawControl(b)) {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
		Fields(b, func(k, v []byte) bool {
			if !Valid(v) {
				t.Fatalf("member value %q is not valid", v)
			}
			return true
		})
	})
}

// hasRawControl reports a control character in b: the one leniency of
// Valid that encoding/json does not share (inside an unescaped string).
func hasRawControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}
