package client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReportLeakedKeepsTheSecretOutOfErrorsAndPrints: an oversized report
// is refused before anything is sent, a server error does not quote the
// secrets, and a Leak printed by mistake hides its token.
func TestReportLeakedKeepsTheSecretOutOfErrorsAndPrints(t *testing.T) {
	secret := "phi_" + strings.Repeat("Zq9", 14) // shaped like a token; not a real one
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"code":"invalid_request","message":"bad %s"}}`, secret)
	}))
	defer srv.Close()
	c, err := New(srv.URL, WithInsecureHTTP(), WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	many := make([]Leak, MaxLeaks+1)
	if _, err := c.ReportLeaked(context.Background(), many); err == nil || calls != 0 {
		t.Fatalf("an oversized report: %v after %d calls", err, calls)
	}
	_, err = c.ReportLeaked(context.Background(), []Leak{{Token: secret, Where: "a.go:1"}})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("error %v", err)
	}
	l := Leak{Token: secret, Where: "a.go:1"}
	for _, s := range []string{fmt.Sprint(l), fmt.Sprintf("%v %+v %#v %s", l, l, l, l)} {
		if strings.Contains(s, secret) {
			t.Fatalf("printed: %s", s)
		}
	}
}
