// Package audit is phigate's tamper-evident audit log (being built).
package audit

// Log is the audit log. (Placeholder until the audit package lands.)
type Log struct{}
