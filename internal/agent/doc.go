// Package agent is `phigate agent`: it runs beside an application and keeps
// the application's phigate token fresh on disk, so that no person ever
// pastes a token and no token outlives its rotation period.
//
// # What it guarantees
//
// For each token of its Config the agent:
//
//   - starts from the secret in the token file (or an environment
//     variable, with a state file), checks it with the server
//     (GET /v1/tokens/self), and writes it to the sink file;
//   - rotates it itself (POST /v1/tokens/self/rotate) at about two thirds
//     of its rotation period (the token's TTL: its expiry minus its last
//     rotation), with jitter, through client.RotatingSource: one random
//     Idempotency-Key per rotation attempt, kept in memory only and reused
//     on every retry, so a lost answer cannot burn the chain; 409
//     already_rotated is retried with the same key, and no rotation ever
//     starts from a superseded secret;
//   - writes every new secret atomically (a temporary file in the same
//     directory, mode 0600, synced, renamed), first to the token file (or
//     the state file), then to the sink, so that a restarted agent
//     continues from the newest secret and the application never reads a
//     partial file;
//   - after the sink is written, signals a process (pid_file, signal) and
//     runs a command (exec, without a shell, with PHIGATE_SINK set and the
//     token variables removed), both optional;
//   - keeps working through server outages, retrying with exponential
//     backoff until the secret expires, and logs at error level, loudly,
//     once the token is in the last sixth of its period and rotation keeps
//     failing;
//   - stops for good on an answer no retry can change (the token revoked,
//     suspended, past its lifetime, its issuer revoked, its secret refused)
//     or a server whose key does not match the pins (the error names the
//     pin the server presented).
//
// The agent talks to the admin API over TLS 1.2+ and requires a pin
// (PHIGATE_PIN, one or more: a current and a backup) or a CA file
// (PHIGATE_CACERT); it does not trust the system roots alone.
//
// The health endpoint (GET /healthz, loopback only unless
// health_allow_remote) reports every token's state as JSON, 200 when all
// are valid and written, 503 otherwise. Neither it nor a log line nor an
// error ever contains a secret.
//
// # Configuration
//
// `phigate agent --token-file F --sink F` manages one token; `phigate agent
// --config F` several, from a YAML file:
//
//	addr: https://phigate.internal:8443
//	pins: ["<current pin>", "<backup pin>"]
//	health: 127.0.0.1:8479
//	tokens:
//	  - name: lab
//	    token_file: /var/lib/lab/phigate.token
//	    sink: /run/lab/token
//	    pid_file: /run/lab/lab.pid
//	    signal: HUP
//	  - name: billing
//	    token_env: BILLING_TOKEN
//	    state: /var/lib/billing/phigate.state
//	    sink: /run/billing/token
//	    exec: ["/usr/bin/systemctl", "reload", "billing"]
//
// Unknown keys are errors; files may not be shared between tokens; at most
// MaxTokens tokens and MaxConfigSize bytes. Addr, pins and CA file default
// to PHIGATE_ADDR, PHIGATE_PIN and PHIGATE_CACERT.
//
// # The command
//
// Main is the command itself (flags, environment, logging), so that
// `phigate agent` and cmd/phigate-agent, the same command built without the
// server, cannot drift. The steady state of the lean binary stays under
// 10 MiB resident; the full phigate binary's own start-up keeps more of
// its text resident (see bench/README.md).
package agent
