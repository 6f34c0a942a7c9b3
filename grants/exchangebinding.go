package grants

import (
	"context"
	"crypto/subtle"
	"encoding/json"
)

// boundTokenError refuses a subject or actor token that is sender-
// constrained (cnf) when the exchange request does not prove possession:
// otherwise a stolen DPoP-bound or certificate-bound token would be
// exchanged for a bearer token (or one bound to the thief's key).
type boundTokenError struct{ reason string }

func (e *boundTokenError) Error() string { return e.reason }

// checkExchangedCnf checks the cnf claim of a subject or actor token
// (raw, its verified payload) against the token request in ctx: a jkt
// needs a valid DPoP proof of that key (RFC 9449), an x5t#S256 the same
// client certificate on the connection (RFC 8705 §3); a token bound both
// ways needs both. A confirmation method nothing here can check (x5t,
// jwk, … from a trusted issuer) is refused: such a token is not a bearer
// token.
func checkExchangedCnf(ctx context.Context, raw []byte) error {
	var p struct {
		Cnf json.RawMessage `json:"cnf"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || len(p.Cnf) == 0 || string(p.Cnf) == "null" {
		return nil // malformed payloads are refused by the caller
	}
	var cnf map[string]any
	if err := json.Unmarshal(p.Cnf, &cnf); err != nil || len(cnf) == 0 {
		return &boundTokenError{"has a cnf claim this server cannot check"}
	}
	for k := range cnf {
		if k != "jkt" && k != "x5t#S256" {
			return &boundTokenError{"is bound (cnf " + k + ") by a confirmation method this server cannot check"}
		}
	}
	if v, ok := cnf["jkt"]; ok {
		jkt, _ := v.(string)
		if got := dpopJKT(ctx); jkt == "" || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(jkt)) != 1 {
			return &boundTokenError{"is bound to a DPoP key (cnf jkt): send a DPoP proof signed with that key"}
		}
	}
	if v, ok := cnf["x5t#S256"]; ok {
		th, _ := v.(string)
		got, _ := ctx.Value(certBindingKey{}).(string)
		if th == "" || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(th)) != 1 {
			return &boundTokenError{"is bound to a client certificate (cnf x5t#S256): send the request over a TLS connection that presents that certificate"}
		}
	}
	return nil
}
