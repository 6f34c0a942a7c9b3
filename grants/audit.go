package grants

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The audit lines: security events an operator must see at the default
// level, written by one logger (the engine's, named "audit": "oauth.audit"
// under Caddy) with one fixed message per event, so that a log query can
// select them by logger and message. Their fields name who and what, never
// a password, hash, secret, token or code. docs/audit.md lists each line;
// a new one is added there and in audit_test.go.
const (
	auditSignInFailed  = "sign-in failed"
	auditSignInLocked  = "sign-in locked out"
	auditSignInRefused = "sign-in refused: locked out"
	auditRefreshReuse  = "refresh token reuse detected; grant revoked"
	auditUserCreated   = "user created"
	auditUserUpdated   = "user updated"
	auditUserRemoved   = "user removed"
	auditClientCreated = "client created"
	auditClientRemoved = "client removed"
	auditClientUpdated = "client updated"
	auditKeyRotated    = "signing key rotated"
	auditKeyRetiring   = "signing key retiring"
	auditKeyRetired    = "signing key retired"
	auditGrantsRevoked = "grants revoked"
	auditLoggerName    = "audit"
)

// Kinds and actions of Observer.AdminChange.
const (
	changeUser    = "user"
	changeClient  = "client"
	changeKey     = "key"
	changeGrants  = "grants"
	actionCreated = "created"
	actionUpdated = "updated"
	actionRemoved = "removed"
	actionRotated = "rotated"
	actionRevoked = "revoked"
)

// auditLine writes one audit line, with the request id when there is one
// (it ties the line to Caddy's access log line of the same request).
func (e *Engine) auditLine(ctx context.Context, level zapcore.Level, msg string, fields ...zap.Field) {
	if ce := e.audit.Check(level, msg); ce != nil {
		if id := RequestID(ctx); id != "" {
			fields = append(fields, zap.String("request_id", id))
		}
		ce.Write(fields...)
	}
}

// userFields names what a user record given to AddUser holds: the
// password (never its hash) and the names of its claims (never their
// values, which are personal data).
func userFields(u *User) (fields, claims []string) {
	if u.PasswordHash != "" {
		fields = append(fields, "password")
	}
	if len(u.Claims) > 0 {
		fields = append(fields, "claims")
	}
	return fields, slices.Sorted(maps.Keys(u.Claims))
}

// changedClaims names the claims that differ between two claim sets:
// added, removed or given another value.
func changedClaims(old, next map[string]string) []string {
	var out []string
	for k, v := range next {
		if ov, ok := old[k]; !ok || ov != v {
			out = append(out, k)
		}
	}
	for k := range old {
		if _, ok := next[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// specFields names the registration fields a client was created with
// (its JSON names), so that the line says what was set without copying
// redirect URIs and scopes into the log.
func specFields(s *ClientSpec) []string {
	b, err := json.Marshal(s)
	if err != nil {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	delete(m, "client_id")
	return slices.Sorted(maps.Keys(m))
}
