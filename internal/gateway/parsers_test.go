package gateway

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/scope"
)

func TestClassifyFHIR(t *testing.T) {
	for _, c := range []struct {
		method, path string
		query        bool
		want         fhirRequest
	}{
		{"GET", "", false, fhirRequest{interaction: SearchSystem, typ: "*"}},
		{"POST", "", false, fhirRequest{interaction: Batch}},
		{"GET", "metadata", false, fhirRequest{interaction: Capabilities}},
		{"GET", "_history", false, fhirRequest{interaction: HistorySystem, typ: "*"}},
		{"POST", "_search", false, fhirRequest{interaction: SearchSystem, typ: "*"}},
		{"POST", "$export", false, fhirRequest{interaction: Operation, typ: "*", op: "$export"}},
		{"GET", "Patient", true, fhirRequest{interaction: SearchType, typ: "Patient"}},
		{"HEAD", "Patient", false, fhirRequest{interaction: SearchType, typ: "Patient"}},
		{"POST", "Patient", false, fhirRequest{interaction: Create, typ: "Patient"}},
		{"PUT", "Patient", true, fhirRequest{interaction: ConditionalUpdate, typ: "Patient"}},
		{"PATCH", "Patient", true, fhirRequest{interaction: ConditionalPatch, typ: "Patient"}},
		{"DELETE", "Patient", true, fhirRequest{interaction: ConditionalDelete, typ: "Patient"}},
		{"POST", "Patient/_search", false, fhirRequest{interaction: SearchType, typ: "Patient"}},
		{"GET", "Patient/_history", false, fhirRequest{interaction: HistoryType, typ: "Patient"}},
		{"GET", "Patient/$match", false, fhirRequest{interaction: Operation, typ: "Patient", op: "$match"}},
		{"GET", "Patient/p-1.a", false, fhirRequest{interaction: Read, typ: "Patient", id: "p-1.a"}},
		{"PUT", "Patient/1", false, fhirRequest{interaction: Update, typ: "Patient", id: "1"}},
		{"PATCH", "Patient/1", false, fhirRequest{interaction: Patch, typ: "Patient", id: "1"}},
		{"DELETE", "Patient/1", false, fhirRequest{interaction: Delete, typ: "Patient", id: "1"}},
		{"GET", "Patient/1/_history", false, fhirRequest{interaction: HistoryInstance, typ: "Patient", id: "1"}},
		{"GET", "Patient/1/_history/3", false, fhirRequest{interaction: VRead, typ: "Patient", id: "1", vid: "3"}},
		{"POST", "Patient/1/$everything", false, fhirRequest{interaction: Operation, typ: "Patient", id: "1", op: "$everything", compType: "Patient", compID: "1"}},
		{"GET", "Patient/1/Observation", true, fhirRequest{interaction: SearchCompartment, typ: "Observation", compType: "Patient", compID: "1"}},
		{"GET", "Patient/1/*", false, fhirRequest{interaction: SearchCompartment, typ: "*", compType: "Patient", compID: "1"}},
		{"POST", "Patient/1/Observation/_search", false, fhirRequest{interaction: SearchCompartment, typ: "Observation", compType: "Patient", compID: "1"}},
	} {
		got, err := classifyFHIR(c.method, c.path, c.query)
		if err != nil || got != c.want {
			t.Errorf("%s %s: %+v %v, want %+v", c.method, c.path, got, err, c.want)
		}
	}
	for _, c := range [][2]string{
		{"PUT", ""}, {"DELETE", ""}, {"GET", "patient"}, {"GET", "Patient/"}, {"GET", "/Patient"}, {"PUT", "Patient"},
		{"POST", "Patient/1"}, {"GET", "Patient/1/2/3/4/5"}, {"GET", "Patient/a_b"}, {"GET", "Patient/" + strings.Repeat("a", 65)},
		{"GET", "Pat1ent/1"}, {"OPTIONS", "Patient"}, {"GET", "Patient/1/_history/"}, {"DELETE", "Patient/1/_history"},
		{"GET", "Patient/.."}, {"GET", "$"}, {"GET", "Patient/1/$ever thing"}, {"PUT", "metadata"}, {"GET", "Patient/1/x"},
	} {
		if got, err := classifyFHIR(c[0], c[1], false); err == nil {
			t.Errorf("%s %s: accepted as %+v", c[0], c[1], got)
		}
	}
}

func FuzzClassifyFHIR(f *testing.F) {
	for _, s := range []string{"", "metadata", "Patient", "Patient/1", "Patient/1/_history/2", "Patient/1/Observation/_search", "$export", "Patient/1/$everything"} {
		f.Add("GET", s, true)
		f.Add("POST", s, false)
	}
	f.Fuzz(func(t *testing.T, method, path string, query bool) {
		fr, err := classifyFHIR(method, path, query)
		if err != nil {
			return
		}
		if fr.interaction == InteractionNone || fr.interaction.String() == "" {
			t.Fatalf("%+v", fr)
		}
		if fr.typ != "" && fr.typ != "*" && !isType(fr.typ) {
			t.Fatalf("type %q", fr.typ)
		}
		if fr.id != "" && !isID(fr.id) || fr.vid != "" && !isID(fr.vid) {
			t.Fatalf("id %q vid %q", fr.id, fr.vid)
		}
		switch fr.interaction {
		case Batch, Capabilities, Operation:
			if fr.interaction.Op() != 0 {
				t.Fatal("op")
			}
		default:
			if fr.interaction.Op() == 0 || fr.typ == "" {
				t.Fatalf("%+v has no op or type", fr)
			}
		}
		again, _ := classifyFHIR(method, path, query)
		if again != fr {
			t.Fatal("not deterministic")
		}
	})
}

func TestParseOriginal(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	for name, c := range map[string]struct {
		h           http.Header
		method, sub string
		query       string
		want        original
		ok          bool
	}{
		"nginx":              {h("X-Original-Method", "POST", "X-Original-Uri", "/a/b?c=d"), "GET", "", "", original{"POST", "/a/b", "c=d"}, true},
		"nginx and traefik":  {h("X-Original-Method", "PUT", "X-Original-Uri", "/n", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/t"), "GET", "", "", original{}, false},
		"nginx and envoy":    {h("X-Original-Uri", "/n"), "GET", "/e", "", original{}, false},
		"traefik and envoy":  {h("X-Forwarded-Uri", "/t"), "GET", "/e", "", original{}, false},
		"empty nginx header": {h("X-Original-Method", "", "X-Forwarded-Uri", "/t"), "GET", "", "", original{}, false},
		"traefik":            {h("X-Forwarded-Method", "DELETE", "X-Forwarded-Uri", "/t/1"), "GET", "", "", original{"DELETE", "/t/1", ""}, true},
		"envoy":              {h(), "PATCH", "/e/1", "x=1", original{"PATCH", "/e/1", "x=1"}, true},
		// a proxy's method and URI come together: the call's own method
		// is not the original one (nginx's subrequest is always a GET)
		"uri without method":         {h("X-Original-Uri", "/a"), "GET", "", "", original{}, false},
		"method without uri":         {h("X-Original-Method", "GET"), "GET", "", "", original{}, false},
		"empty method":               {h("X-Original-Method", "", "X-Original-Uri", "/a"), "GET", "", "", original{}, false},
		"traefik uri without method": {h("X-Forwarded-Uri", "/t"), "GET", "", "", original{}, false},
		"traefik method without uri": {h("X-Forwarded-Method", "DELETE"), "GET", "", "", original{}, false},
		"nothing":                    {h(), "GET", "", "", original{}, false},
		"two URIs":                   {h("X-Original-Uri", "/a", "X-Original-Uri", "/b"), "GET", "", "", original{}, false},
		"lower-case method":          {h("X-Original-Method", "get", "X-Original-Uri", "/a"), "GET", "", "", original{}, false},
		"absolute":                   {h("X-Original-Method", "GET", "X-Original-Uri", "http://x/a"), "GET", "", "", original{}, false},
		"scheme-relative":            {h("X-Original-Method", "GET", "X-Original-Uri", "//x/a"), "GET", "", "", original{}, false},
		"space":                      {h("X-Original-Method", "GET", "X-Original-Uri", "/a b"), "GET", "", "", original{}, false},
		"fragment":                   {h("X-Original-Method", "GET", "X-Original-Uri", "/a#b"), "GET", "", "", original{}, false},
		"too long":                   {h("X-Original-Method", "GET", "X-Original-Uri", "/"+strings.Repeat("a", maxOriginalURI)), "GET", "", "", original{}, false},
	} {
		got, ok := parseOriginal(c.h, c.method, c.sub, c.query)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %+v %v, want %+v %v", name, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseOriginal(f *testing.F) {
	f.Add("GET", "/a/b?c=d", "", "", "GET", "", "")
	f.Add("", "", "POST", "/t", "GET", "", "")
	f.Add("", "", "", "", "DELETE", "/e/1", "q=1")
	f.Fuzz(func(t *testing.T, om, ou, fm, fu, method, sub, query string) {
		h := http.Header{}
		for k, v := range map[string]string{"X-Original-Method": om, "X-Original-Uri": ou, "X-Forwarded-Method": fm, "X-Forwarded-Uri": fu} {
			if v != "" {
				h.Set(k, v)
			}
		}
		o, ok := parseOriginal(h, method, sub, query)
		if !ok {
			return
		}
		// the call's own method is taken only from Envoy's form
		switch {
		case om != "" || ou != "":
			if o.method != om || om == "" || ou == "" {
				t.Fatalf("nginx headers %q %q: method %q", om, ou, o.method)
			}
		case fm != "" || fu != "":
			if o.method != fm || fm == "" || fu == "" {
				t.Fatalf("traefik headers %q %q: method %q", fm, fu, o.method)
			}
		}
		if !validMethod(o.method) || !strings.HasPrefix(o.path, "/") || strings.ContainsAny(o.path, "?# ") {
			t.Fatalf("%+v", o)
		}
		u := o.path
		if o.query != "" {
			u += "?" + o.query
		}
		if !validOriginURI(u) {
			t.Fatalf("%q", u)
		}
	})
}

func TestClientAddr(t *testing.T) {
	tr := trusted{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	peerT, peerU := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.1")
	for _, c := range []struct {
		peer netip.Addr
		xff  []string
		want string
	}{
		{peerU, []string{"203.0.113.1"}, "192.0.2.1"}, // untrusted peer: its XFF is ignored
		{peerT, nil, "10.0.0.1"},
		{peerT, []string{"203.0.113.1"}, "203.0.113.1"},
		{peerT, []string{"198.51.100.7, 203.0.113.1"}, "203.0.113.1"}, // rightmost untrusted
		{peerT, []string{"203.0.113.1, 10.0.0.9"}, "203.0.113.1"},
		{peerT, []string{"203.0.113.1", "10.0.0.9, 10.0.0.8"}, "203.0.113.1"}, // several lines
		{peerT, []string{"10.0.0.9, 10.0.0.8"}, "10.0.0.9"},                   // all trusted: the leftmost
		{peerT, []string{"203.0.113.1:443"}, "203.0.113.1"},
		{peerT, []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{peerT, []string{"[2001:db8::1]"}, "2001:db8::1"},
		{peerT, []string{"2001:db8::1"}, "2001:db8::1"},
		{peerT, []string{"::ffff:203.0.113.1"}, "203.0.113.1"},
		{peerT, []string{" 203.0.113.1 ,, "}, "203.0.113.1"},
		{peerT, []string{"unknown"}, "invalid IP"},
		{peerT, []string{"203.0.113.1, _hidden"}, "invalid IP"},
		{peerT, []string{"fe80::1%eth0"}, "invalid IP"},
		{peerT, []string{"[fe80::1%25eth0]"}, "invalid IP"},
		{peerT, []string{"1.2.3.4:99999999"}, "invalid IP"},
		{peerT, []string{strings.Repeat("10.0.0.2,", 40)}, "invalid IP"},
		{netip.MustParseAddr("::ffff:10.0.0.1"), []string{"203.0.113.1"}, "203.0.113.1"},
	} {
		if got := clientAddr(c.peer, c.xff, tr).String(); got != c.want {
			t.Errorf("peer %s xff %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}

func FuzzClientAddr(f *testing.F) {
	f.Add("10.0.0.1", "203.0.113.1, 10.0.0.9")
	f.Add("10.0.0.1", "[2001:db8::1]:443,unknown")
	f.Add("192.0.2.1", "1.2.3.4")
	tr := trusted{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		p, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		got := clientAddr(p, []string{xff}, tr)
		if !tr.contains(p) && got != p.Unmap() {
			t.Fatalf("untrusted peer %s gave %s", p, got)
		}
		if got.IsValid() && got != p.Unmap() && !strings.Contains(xff, strings.TrimPrefix(got.String(), "::ffff:")) && !strings.Contains(strings.ToLower(xff), ":") {
			t.Fatalf("%s is not in %q", got, xff)
		}
		appendForwardedFor(p, []string{xff}, tr)
	})
}

func TestParseBundle(t *testing.T) {
	typ, es, err := parseBundle([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation"},"request":{"method":"POST","url":"Observation"}},
		{"request":{"method":"GET","url":"Patient?name=x"}}]}`), 10)
	if err != nil || typ != "transaction" || len(es) != 2 {
		t.Fatalf("%s %+v %v", typ, es, err)
	}
	if es[0].method != "POST" || es[0].path != "Observation" || string(es[0].resource) != `{"resourceType":"Observation"}` ||
		es[1].path != "Patient" || es[1].query != "name=x" {
		t.Errorf("%+v", es)
	}
	for name, doc := range map[string]string{
		"not JSON":         `{`,
		"two values":       `{"resourceType":"Bundle","type":"batch"} {}`,
		"dup at top":       `{"resourceType":"Bundle","type":"batch","resourceType":"Bundle"}`,
		"dup deep":         `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"a":{"b":1,"b":2}},"request":{"method":"GET","url":"P/1"}}]}`,
		"no request":       `{"resourceType":"Bundle","type":"batch","entry":[{}]}`,
		"bad method":       `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"TRACE","url":"P/1"}}]}`,
		"leading slash":    `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"/P/1"}}]}`,
		"wrong types":      `{"resourceType":"Bundle","type":"batch","entry":{"request":1}}`,
		"invalid UTF-8":    "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"x\":\"\xff\"}",
		"too deep":         `{"resourceType":"Bundle","type":"batch","x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
		"too many entries": `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Repeat(`{"request":{"method":"GET","url":"P/1"}},`, 10) + `{"request":{"method":"GET","url":"P/1"}}]}`,
	} {
		if _, _, err := parseBundle([]byte(doc), 10); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseBundle(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"Patient/p1"}},"request":{"method":"POST","url":"Observation"}}]}`))
	f.Add([]byte(`{"a":{"b":1,"b":2}}`))
	f.Add([]byte(`[[[[]]]]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		if checkJSON(doc) == nil && !json.Valid(doc) {
			t.Fatalf("checkJSON accepted invalid JSON %q", doc)
		}
		_, es, err := parseBundle(doc, 100)
		if err != nil {
			return
		}
		if checkJSON(doc) != nil {
			t.Fatal("a Bundle with duplicate keys accepted")
		}
		for _, e := range es {
			if e.path != "" && e.path[0] == '/' || strings.Contains(e.path, "://") || e.method == "" {
				t.Fatalf("entry %+v", e)
			}
			if e.resource != nil {
				resourceRefs(e.resource)
			}
		}
	})
}

func TestResourceRefs(t *testing.T) {
	for doc, want := range map[string][3]string{
		`{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`: {"Observation", "Patient/p1", ""},
		`{"resourceType":"Encounter","patient":{"reference":"Patient/p1"}}`:   {"Encounter", "", "Patient/p1"},
		`{"resourceType":"Observation"}`:                                      {"Observation", "", ""},
	} {
		typ, s, p, ok := resourceRefs([]byte(doc))
		if !ok || [3]string{typ, s, p} != want {
			t.Errorf("%s: %s %s %s %v", doc, typ, s, p, ok)
		}
	}
	for _, doc := range []string{`[]`, `{"subject":{"reference":"Patient/p1"}}`, `{"resourceType":"O","subject":{}}`, `{"resourceType":"O","subject":"Patient/1"}`,
		`{"resourceType":"O","subject":{"reference":"Patient/1","reference":"Patient/2"}}`} {
		if _, _, _, ok := resourceRefs([]byte(doc)); ok {
			t.Errorf("%s accepted", doc)
		}
	}
}

func TestParams(t *testing.T) {
	p := params{raw: [2]string{"patient=p1&code=a%7Cb&category=x", "patient=Patient%2Fp1"}}
	if err := p.check(); err != nil {
		t.Fatal(err)
	}
	if !p.only("code", "a|b") || p.only("category", "y") || p.only("missing", "") {
		t.Error("only")
	}
	if !p.inCompartment("Observation", "p1") || p.inCompartment("Observation", "p2") || p.inCompartment("Patient", "p1") {
		t.Error("inCompartment")
	}
	for _, bad := range []string{"a=%zz", "a=1;b=2", "%=1", strings.Repeat("a=1&", maxParams+1)} {
		if err := (&params{raw: [2]string{bad}}).check(); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParams(f *testing.F) {
	f.Add("patient=p1&code=a%7Cb", "category=x")
	f.Add("_include=Observation:subject:Patient", "")
	f.Add("a=%zz;b", "&&=")
	f.Fuzz(func(t *testing.T, q, form string) {
		p := params{raw: [2]string{q, form}}
		if p.check() != nil {
			return
		}
		n := 0
		p.each(func(k, v string) bool { n++; return true })
		if n > maxParams {
			t.Fatalf("%d params passed check", n)
		}
		p.inCompartment("Observation", "p1")
		p.inCompartment("Patient", "p1")
		p.includes(func(bool, string) bool { return true })
		set, _ := scope.ParseSet([]string{"user/Observation.rs?category=x"})
		for g := range set.All() {
			restrictionsHold(g, &p)
		}
	})
}

func TestCanonicalPath(t *testing.T) {
	for _, ok := range []string{"/", "/a", "/a/", "/a/b.c", "/a/%41", "/a/b%20c", "/.well", "/a/..b"} {
		if !canonicalPath(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "a", "//", "/a//b", "/.", "/..", "/a/./b", "/a/../b", "/a/%2e%2E", "/a/%2E/b", "/a/b%2Fc", "/a/b%5cc", `/a\b`, "/a/%00", "/a/%zz", "/a/%"} {
		if canonicalPath(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// frameHeads feeds data to a frameConn in pieces cut at the given offsets
// and returns the heads it noted and whether it lost track.
func frameHeads(data []byte, cuts ...int) ([]head, bool) {
	c := &frameConn{maxHead: 1 << 16}
	prev := 0
	for _, cut := range append(cuts, len(data)) {
		if cut < prev || cut > len(data) {
			continue
		}
		c.scan(data[prev:cut])
		prev = cut
	}
	return c.heads, c.st == stBroken
}

func TestFrameConnFollowsFraming(t *testing.T) {
	data := []byte("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n" +
		"GET /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nGET " +
		"PUT /c HTTP/1.1\nContent-Length: 2\nTransfer-Encoding: chunked\n\n0\r\n\r\n" +
		"GET /d HTTP/1.0\r\n\r\n" +
		"POST /e HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx")
	want := []head{{method: "POST", target: "/a"}, {method: "GET", target: "/b"}, {method: "PUT", target: "/c", ambiguous: true},
		{method: "GET", target: "/d"}, {method: "POST", target: "/e", repeatedLength: true}}
	for cut := 0; cut <= len(data); cut++ {
		heads, broken := frameHeads(data, cut)
		if broken || !reflect.DeepEqual(heads, want) {
			t.Fatalf("cut at %d: %+v broken=%v", cut, heads, broken)
		}
	}
	for name, bad := range map[string]string{
		"bare LF after chunk": "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
		"chunk size garbage":  "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"gzip":                "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"no request line":     "GARBAGE\r\n\r\n",
		"negative length":     "POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
	} {
		if _, broken := frameHeads([]byte(bad)); !broken {
			t.Errorf("%s: followed", name)
		}
	}
}

func FuzzFrameScan(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 5)
	f.Add([]byte("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n"), 40)
	f.Add([]byte("POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		whole, wb := frameHeads(data)
		split, sb := frameHeads(data, cut)
		if wb != sb || !reflect.DeepEqual(whole, split) {
			t.Fatalf("split at %d changes the outcome: %+v %v vs %+v %v", cut, whole, wb, split, sb)
		}
		chunked := func(data []byte) []int {
			var cs []int
			for i := 1; i < len(data); i += 3 {
				cs = append(cs, i)
			}
			return cs
		}
		bytewise, bb := frameHeads(data, chunked(data)...)
		if bb != wb || !reflect.DeepEqual(whole, bytewise) {
			t.Fatalf("small reads change the outcome")
		}
	})
}
