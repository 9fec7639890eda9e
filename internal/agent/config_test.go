package agent

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const goodConfig = `addr: https://127.0.0.1:8443
pins: ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
health: 127.0.0.1:8479
tokens:
  - token_file: /var/lib/lab/token
    sink: /run/lab/token
    grace: 30s
    pid_file: /run/lab/lab.pid
    signal: USR1
  - name: billing
    token_env: BILLING_TOKEN
    state: /var/lib/billing/state
    sink: /run/billing/token
    exec: ["/usr/bin/systemctl", "reload", "billing"]
`

func TestConfigParses(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tokens) != 2 || c.Tokens[0].Name != "token" || c.Tokens[0].Grace.String() != "30s" || c.Tokens[1].HookTimeout == 0 {
		t.Errorf("%+v", c)
	}
}

func (d Duration) String() string { return time.Duration(d).String() }

func TestBadConfigIsRefused(t *testing.T) {
	for name, mutate := range map[string][2]string{
		"unknown key":             {"health:", "helth:"},
		"no pin":                  {`pins: ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]`, ""},
		"no addr":                 {"addr: https://127.0.0.1:8443", ""},
		"remote health":           {"health: 127.0.0.1:8479", "health: 0.0.0.0:8479"},
		"health not host:port":    {"health: 127.0.0.1:8479", "health: 127.0.0.1"},
		"file shared":             {"/run/billing/token", "/run/lab/token"},
		"sink is the token file":  {"sink: /run/lab/token", "sink: /var/lib/lab/token"},
		"env without state":       {"    state: /var/lib/billing/state\n", ""},
		"file and env":            {"  - name: billing\n", "  - name: billing\n    token_file: /x\n"},
		"no source":               {"  - token_file: /var/lib/lab/token\n", "  - name: lab\n"},
		"bad signal":              {"signal: USR1", "signal: KILL"},
		"bad duration":            {"grace: 30s", "grace: soon"},
		"negative duration":       {"grace: 30s", "grace: -30s"},
		"signal without pid file": {"    pid_file: /run/lab/lab.pid\n", ""},
		"empty exec":              {`exec: ["/usr/bin/systemctl", "reload", "billing"]`, `exec: [""]`},
		"second document":         {"tokens:", "---\ntokens:"},
		"duplicate name":          {"name: billing", "name: token"},
	} {
		if !strings.Contains(goodConfig, mutate[0]) {
			t.Fatalf("%s: %q is not in the config", name, mutate[0])
		}
		_, err := ParseConfig([]byte(strings.Replace(goodConfig, mutate[0], mutate[1], 1)))
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParseConfig([]byte(strings.Repeat(" ", MaxConfigSize+1))); !errors.Is(err, ErrConfig) {
		t.Error("an oversized config was read")
	}
	if _, err := ParseConfig(nil); !errors.Is(err, ErrConfig) {
		t.Errorf("empty config: %v", err)
	}
}

// FuzzParseConfig: any input is parsed or refused with ErrConfig, never a
// panic, and an accepted config passes Check again unchanged.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if err := c.Check(); err != nil {
			t.Fatalf("accepted config fails Check: %v", err)
		}
	})
}
