package config

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseOrigin(t *testing.T) {
	for s, ok := range map[string]bool{
		"https://app.example.org": true, "http://localhost:3000": true, "https://127.0.0.1:8443": true,
		"https://[::1]:8443": true, "https://[2001:db8::1]": true, "https://a-b.c1": true,
		"":                              false,
		"*":                             false,
		"null":                          false,
		"https://*.example.org":         false,
		"https://App.example.org":       false, // upper case: browsers send lower case
		"HTTPS://app.example.org":       false,
		"https://app.example.org/":      false, // a path
		"https://app.example.org/x":     false,
		"https://app.example.org:443":   false, // the default port
		"http://app.example.org:80":     false,
		"https://app.example.org:0":     false,
		"https://app.example.org:08443": false,
		"https://app.example.org:99999": false,
		"https://app.example.org:":      false,
		"https://u@app.example.org":     false,
		"https://app.example.org?q":     false,
		"https://app.example.org#f":     false,
		"https://app.example.org.":      false,
		"https://-app.example.org":      false,
		"ftp://app.example.org":         false,
		"https://[::1":                  false,
		"https://[0:0::1]":              false, // not canonical
		"https://[fe80::1%25eth0]":      false,
		"https://1.2.3":                 false,
		"https://01.2.3.4":              false,
		"https://::1":                   false,
		"https://":                      false,
		"app.example.org":               false,
	} {
		if _, err := ParseOrigin(s); (err == nil) != ok {
			t.Errorf("ParseOrigin(%q): err %v, want ok=%v", s, err, ok)
		}
	}
}

// FuzzParseOrigin: an accepted origin is what url.Parse reads as scheme
// and host alone, lower case, without a default port: a browser's Origin
// for it is the same bytes.
func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{"https://app.example.org", "http://localhost:3000", "https://[::1]:8443", "https://a:443",
		"https://A", "https://a/", "null", "*", "https://[::1", "https://1.2.3.4:65535", "http://x:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseOrigin(s)
		if err != nil {
			return
		}
		u, perr := url.Parse(s)
		if got != s || perr != nil || u.Scheme+"://"+u.Host != s || u.Path != "" || u.User != nil || u.RawQuery != "" {
			t.Fatalf("accepted %q, which is not scheme://host (%v %+v)", s, perr, u)
		}
		if strings.ToLower(s) != s || strings.ContainsAny(s, "*/?#@ ") && strings.Count(s, "/") != 2 {
			t.Fatalf("accepted %q", s)
		}
		if p := u.Port(); p == "443" && u.Scheme == "https" || p == "80" && u.Scheme == "http" {
			t.Fatalf("accepted the default port in %q", s)
		}
	})
}
