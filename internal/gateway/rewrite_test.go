package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

const upBase = "http://upstream.internal:8080/fhir"

// testMapper rewrites URLs on upBase to gw, and next links to a handle.
func testMapper(rel, u string) (string, error) {
	rest, ok := strings.CutPrefix(u, upBase)
	if !ok {
		return u, nil
	}
	if rel == "next" {
		return "https://gw/fhir/_page/HANDLE", nil
	}
	return "https://gw/fhir" + rest, nil
}

func rewriteAll(t testing.TB, body string, oneByte bool) (string, error) {
	t.Helper()
	var src io.Reader = strings.NewReader(body)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	rw := newLinkRewriter(io.NopCloser(src), testMapper, nil)
	out, err := io.ReadAll(rw)
	return string(out), err
}

// A searchset's links, fullUrls, entry links and response locations, and a
// CapabilityStatement's implementation.url, no longer name the upstream;
// nothing else changes, whatever the chunking.
func TestUpstreamURLsInFHIRBodiesAreRewritten(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"searchset",
			`{"resourceType":"Bundle","type":"searchset","link":[{"url":"` + upBase + `/Observation?patient=p1","relation":"self"},{"relation":"next","url":"` + upBase + `?_getpages=abc&_getpagesoffset=5"}],` +
				`"entry":[{"fullUrl":"` + upBase + `/Observation/1","resource":{"resourceType":"Observation","id":"1","note":[{"text":"see ` + upBase + `/x \" \\ \u00e9"}],"url":"` + upBase + `/keep"},"search":{"mode":"match"}}]}`,
			`{"resourceType":"Bundle","type":"searchset","link":[{"url":"https://gw/fhir/Observation?patient=p1","relation":"self"},{"relation":"next","url":"https://gw/fhir/_page/HANDLE"}],` +
				`"entry":[{"fullUrl":"https://gw/fhir/Observation/1","resource":{"resourceType":"Observation","id":"1","note":[{"text":"see ` + upBase + `/x \" \\ \u00e9"}],"url":"` + upBase + `/keep"},"search":{"mode":"match"}}]}`},
		{"batch-response",
			` { "resourceType" : "Bundle" , "entry" : [ { "link" : [ { "relation" : "alternate", "url" : "` + upBase + `/a" } ], "response" : { "status" : "201", "location" : "` + upBase + `/Patient/9/_history/1" } } ] } `,
			` { "resourceType" : "Bundle" , "entry" : [ { "link" : [ { "relation" : "alternate", "url" : "https://gw/fhir/a" } ], "response" : { "status" : "201", "location" : "https://gw/fhir/Patient/9/_history/1" } } ] } `},
		{"capabilities",
			`{"resourceType":"CapabilityStatement","implementation":{"description":"x","url":"` + upBase + `"},"rest":[{"mode":"server"}]}`,
			`{"resourceType":"CapabilityStatement","implementation":{"description":"x","url":"https://gw/fhir"},"rest":[{"mode":"server"}]}`},
		{"foreign links stay", `{"link":[{"relation":"next","url":"https://elsewhere/fhir?page=2"}],"entry":[{"fullUrl":"urn:uuid:1"}]}`,
			`{"link":[{"relation":"next","url":"https://elsewhere/fhir?page=2"}],"entry":[{"fullUrl":"urn:uuid:1"}]}`},
		{"keys in another case", `{"Link":[{"Relation":"next","URL":"` + upBase + `"}],"entry":[{"fullURL":"` + upBase + `/a"}]}`,
			`{"Link":[{"Relation":"next","URL":"https://gw/fhir/_page/HANDLE"}],"entry":[{"fullURL":"https://gw/fhir/a"}]}`},
		{"escaped url", `{"entry":[{"fullUrl":"http:\/\/upstream.internal:8080\/fhir\/Patient\/1"}]}`, `{"entry":[{"fullUrl":"https://gw/fhir/Patient/1"}]}`},
		{"nested not touched", `{"entry":[{"resource":{"entry":[{"fullUrl":"` + upBase + `/x"}],"link":[{"url":"` + upBase + `"}]}}],"total":3,"x":[true,false,null,-1.5e3]}`,
			`{"entry":[{"resource":{"entry":[{"fullUrl":"` + upBase + `/x"}],"link":[{"url":"` + upBase + `"}]}}],"total":3,"x":[true,false,null,-1.5e3]}`},
	} {
		for _, one := range []bool{false, true} {
			got, err := rewriteAll(t, tc.in, one)
			if err != nil {
				t.Errorf("%s (byte by byte %v): %v", tc.name, one, err)
				continue
			}
			if got != tc.want {
				t.Errorf("%s (byte by byte %v):\n got %s\nwant %s", tc.name, one, got, tc.want)
			}
		}
	}
}

// A body the rewriter cannot follow where it looks is an error, never
// passed on half-rewritten.
func TestUnrewritableBodyIsAnError(t *testing.T) {
	for name, in := range map[string]string{
		"truncated":        `{"resourceType":"Bundle","entry":[{"fullUrl":"` + upBase,
		"escaped key":      `{"entry":[{"full\u0055rl":"` + upBase + `/1"}]}`,
		"garbage":          `{"entry":[}`,
		"two relations":    `{"link":[{"relation":"self","relation":"next","url":"` + upBase + `"}]}`,
		"url too long":     `{"entry":[{"fullUrl":"` + upBase + strings.Repeat("a", maxURLBytes) + `"}]}`,
		"links too long":   `{"link":[{"url":"` + strings.Repeat("a", maxLinkBytes) + `"}]}`,
		"too deep":         strings.Repeat("[", maxRewriteDepth+1) + strings.Repeat("]", maxRewriteDepth+1),
		"trailing garbage": `{}x`,
		"mismatched":       `{"a":[1}`,
	} {
		if _, err := rewriteAll(t, in, false); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The rewriter's memory does not grow with the body: a 10 MiB Bundle is
// rewritten through a fixed buffer.
func TestRewriterMemoryIsBoundedFor10MiB(t *testing.T) {
	body := bigBundle(10 << 20)
	rw := newLinkRewriter(io.NopCloser(bytes.NewReader(body)), testMapper, nil)
	buf := make([]byte, 32<<10)
	n := 0
	for {
		k, err := rw.Read(buf)
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if cap(rw.out) > 2*rewriteBufLen || cap(rw.hold) > maxLinkBytes*2 {
			t.Fatalf("buffers grew: out %d, hold %d", cap(rw.out), cap(rw.hold))
		}
	}
	if n < 9<<20 {
		t.Fatalf("read %d bytes", n)
	}
	allocs := testing.AllocsPerRun(1, func() {
		rw := newLinkRewriter(io.NopCloser(bytes.NewReader(body)), testMapper, nil)
		io.Copy(io.Discard, rw)
	})
	t.Logf("allocations for a 10 MiB Bundle: %.0f", allocs)
}

// bigBundle is a searchset of at least size bytes.
func bigBundle(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"` + upBase + `?_getpages=x"}],"entry":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"fullUrl":"` + upBase + `/Observation/1","resource":{"resourceType":"Observation","id":"1","status":"final","subject":{"reference":"Patient/p1"},"valueString":"` + strings.Repeat("x", 900) + `"},"search":{"mode":"match"}}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// FuzzLinkRewriter: any input either fails or comes out as the same JSON
// value with only URL strings changed; and chunking changes nothing.
func FuzzLinkRewriter(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","link":[{"relation":"next","url":"` + upBase + `?p=2"}],"entry":[{"fullUrl":"` + upBase + `/a/1","response":{"location":"` + upBase + `/a/1"}}]}`))
	f.Add([]byte(`{"implementation":{"url":"` + upBase + `"}}`))
	f.Add([]byte(`[1,"a\"b",{"c":null}]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, errA := rewriteAll(t, string(in), false)
		b, errB := rewriteAll(t, string(in), true)
		if (errA == nil) != (errB == nil) || a != b && errA == nil {
			t.Fatalf("chunking changed the result: %v %v", errA, errB)
		}
		if errA != nil {
			return
		}
		if json.Valid(in) && !json.Valid([]byte(a)) {
			t.Fatalf("valid %q became invalid %q", in, a)
		}
		if !strings.Contains(string(in), "upstream.internal") && a != string(in) {
			t.Fatalf("%q changed without an upstream URL: %q", in, a)
		}
	})
}
