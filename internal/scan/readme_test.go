package scan_test

import (
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/scan/scantest"
	"github.com/phigate/phigate/internal/token"
)

// readmeRules returns the gitleaks and TruffleHog expressions of the
// README's "Leaked tokens" section.
func readmeRules(t *testing.T) (gitleaks, trufflehog string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\n## Leaked tokens\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Leaked tokens" section`)
	}
	sec := s[start+1:]
	if end := strings.Index(sec[3:], "\n## "); end >= 0 {
		sec = sec[:end+3]
	}
	if m := regexp.MustCompile("(?m)^regex = '''(.+)'''$").FindStringSubmatch(sec); m != nil {
		gitleaks = m[1]
	}
	if m := regexp.MustCompile(`(?m)^\s+token: '(.+)'$`).FindStringSubmatch(sec); m != nil {
		trufflehog = m[1]
	}
	if gitleaks == "" || trufflehog == "" {
		t.Fatal("the README's gitleaks rule or TruffleHog detector was not found")
	}
	return gitleaks, trufflehog
}

func TestReadmeRegexFindsGeneratedTokens(t *testing.T) {
	gl, th := readmeRules(t)
	if gl != th {
		t.Fatalf("the README's gitleaks and TruffleHog expressions differ")
	}
	re, err := regexp.Compile(gl)
	if err != nil {
		t.Fatalf("the README's regex does not compile: %v", err)
	}
	var want []string
	var text strings.Builder
	seps := []string{" ", "\n", "\"", "'", ",", "=", ":", "&", "`"}
	for i := 0; i < 200; i++ {
		tok := scantest.Generate(t)
		want = append(want, tok)
		text.WriteString("key" + seps[i%len(seps)] + tok + seps[(i+3)%len(seps)])
		text.WriteString(scantest.Lookalike(t) + " ") // regex-shaped, checksum fails
		text.WriteString(scantest.Generate(t) + "x ") // the run continues: no match
	}
	last := scantest.Generate(t)
	want = append(want, last)
	text.WriteString(last) // at the very end

	var got []string
	for _, m := range re.FindAllStringSubmatch(text.String(), -1) {
		if token.Check(m[1]) == nil { // the README's checksum rule
			got = append(got, m[1])
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("the documented rule found %d tokens, want %d", len(got), len(want))
	}
}

// The README spells the checksum rule out; this follows it literally.
func TestReadmeChecksumRuleIsTheFormats(t *testing.T) {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for i := 0; i < 100; i++ {
		for _, s := range []string{scantest.Generate(t), scantest.Lookalike(t)} {
			var v uint64
			for _, c := range s[47:] {
				v = v*62 + uint64(strings.IndexRune(digits, c))
			}
			if (v == uint64(crc32IEEE(s[:47]))) != (token.Check(s) == nil) {
				t.Fatal("the README's checksum rule disagrees with token.Check")
			}
		}
	}
}

func crc32IEEE(s string) uint32 { return crc32.ChecksumIEEE([]byte(s)) }
