// Package tlsutil holds phigate's TLS policy: the server configuration, a
// certificate source that follows the files on disk, a self-signed
// certificate for development, and public-key pinning for clients.
//
// # Server guarantees
//
// A *tls.Config from [ServerConfig]:
//
//   - speaks TLS 1.2 and TLS 1.3 only; TLS 1.3 is negotiated whenever the
//     client offers it;
//   - under TLS 1.2 offers only ECDHE key exchange with an AEAD cipher
//     (AES-GCM or ChaCha20-Poly1305), so every session has forward secrecy
//     and no CBC, RC4, 3DES or static-RSA suite can be negotiated;
//   - offers the key exchanges X25519MLKEM768 and SecP256r1MLKEM768 (hybrid
//     post-quantum, Go's default since 1.24/1.26), X25519 and P-256;
//   - advertises ALPN "h2" and "http/1.1";
//   - takes its certificate from a [CertSource] on every handshake, so a
//     renewed certificate is served without a restart.
//
// [Reloader] is the CertSource for a certificate and key kept in two PEM
// files. It looks at the files' modification time and size at most once per
// second, on the handshake path and without a goroutine, and loads them again
// when either changed. A reload that fails (a half-written file, a key that
// does not match the certificate) leaves the previous certificate in service
// and is reported once through the injected *slog.Logger; the log carries the
// file names and the error, never key material.
//
// [GenerateSelfSigned] writes an ECDSA P-256 certificate for localhost,
// 127.0.0.1 and ::1 (plus any extra hosts), valid for one year, for
// `phigate server --dev`. It reuses the files it wrote before while they are
// still valid for at least seven days, so the pin printed at start-up stays
// the same across restarts.
//
// # Pins
//
// A pin is the SHA-256 digest of a certificate's DER-encoded
// SubjectPublicKeyInfo, written in standard base64 with padding (44
// characters). It is the scheme of HPKP (RFC 7469) and of curl's
// --pinnedpubkey, so the same value works in both places:
//
//	curl --pinnedpubkey "sha256//$PHIGATE_PIN" https://127.0.0.1:8443/healthz
//
// and it can be computed from a certificate file with OpenSSL:
//
//	openssl x509 -in tls.crt -pubkey -noout |
//	  openssl pkey -pubin -outform der |
//	  openssl dgst -sha256 -binary | base64
//
// [ParsePins] accepts one or more pins separated by commas or white space,
// each optionally prefixed with "sha256//".
//
// # Client guarantees
//
// A *tls.Config from [ClientConfig] never negotiates below TLS 1.2 and uses
// the same cipher suites as the server. Then:
//
//   - with pins only, the certificate chain is not checked against any root
//     (the pin replaces it, as a self-signed development certificate has no
//     chain), but the handshake fails unless the SHA-256 of the leaf
//     certificate's SubjectPublicKeyInfo equals one of the pins;
//   - with a CA file only, the chain and the host name are verified against
//     the certificates in that file, and only those;
//   - with both, both checks must pass;
//   - with neither, the chain is verified against the system roots.
//
// A pin mismatch fails the handshake with a *[PinMismatchError], which
// callers can find with errors.As; its Got is the pin seen. [VerifyPins]
// is the same check for a tls.Config built elsewhere (the gateway's
// upstream transports use ClientConfig, so the CLI, the agent, the SDK and
// the gateway verify pins with one function), and [Pin.WithPrefix] writes a
// pin as configuration files and curl do ("sha256//" and base64).
package tlsutil
