package grants

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// retireSlack is added to the longest token lifetime before a rotated-out
// key leaves the key set, beyond the verifier's leeway.
const retireSlack = time.Minute

// MinKeyRotation is the shortest automatic rotation period accepted.
const MinKeyRotation = time.Minute

// keyRing is the key ring in use: the current key signs, all verify.
func (e *Engine) keyRing() *tokens.KeyRing { return e.keys.Ring() }

// retireAfter is how long a rotated-out key keeps verifying: until every
// token it signed (access and ID tokens, which share access_token_ttl)
// has expired, allowing for clock leeway.
func (e *Engine) retireAfter() time.Duration {
	return e.accessTokenTTL + verifierLeeway + retireSlack
}

// ringAlgs are the algorithms the engine signs with: signing_alg for
// access tokens, then IDTokenAlg for ID tokens (one key when they agree).
func (e *Engine) ringAlgs() []string {
	if e.signingAlg == tokens.IDTokenAlg {
		return []string{e.signingAlg}
	}
	return []string{e.signingAlg, tokens.IDTokenAlg}
}

// KeyInfo describes one key for operators.
type KeyInfo struct {
	ID      string    `json:"kid"`
	Alg     string    `json:"alg"`
	Created time.Time `json:"created"`
	// Current is set for the keys that sign: the signing_alg key (access
	// tokens) and the ID-token keys.
	Current bool `json:"current"`
	// Retires is when the key leaves the key set; absent for keys that
	// are not being retired.
	Retires *time.Time `json:"retires,omitempty"`
}

// Keys lists the keys in use, newest first.
func (e *Engine) Keys() []KeyInfo {
	kr := e.keyRing()
	var out []KeyInfo
	for _, k := range kr.All() {
		signer, _ := kr.Signer(k.Alg.String())
		ki := KeyInfo{ID: k.ID, Alg: k.Alg.String(), Created: k.Created, Current: k == signer}
		if !k.Retires.IsZero() {
			r := k.Retires
			ki.Retires = &r
		}
		out = append(out, ki)
	}
	return out
}

// RotateKeys makes a new signing key for each algorithm the engine signs
// with (signing_alg and the RS256 ID-token key), which sign from now on,
// and schedules every other key for retirement once the tokens it signed
// have expired. It returns the id of the new signing_alg key.
func (e *Engine) RotateKeys(ctx context.Context) (string, error) {
	kid, err := e.rotate(ctx, time.Now(), 0)
	if err != nil {
		return "", err
	}
	return kid, e.ReloadKeys(ctx)
}

// rotate rotates in one transaction. With olderThan > 0 it rotates only
// if the current key is at least that old, so that engines sharing a
// file rotate once between them. It returns the new kid, or "".
func (e *Engine) rotate(ctx context.Context, now time.Time, olderThan time.Duration) (string, error) {
	return e.keys.Rotate(ctx, e.store, now, olderThan, e.retireAfter())
}

// ReloadKeys reads the key ring from storage again: a key made by
// another engine on the same file starts signing here too, and retired
// keys leave the JWKS.
func (e *Engine) ReloadKeys(ctx context.Context) error {
	return e.keys.Load(ctx, e.store, time.Now())
}

// MaintainKeys rotates the signing key when it is older than the
// configured key_rotation, and reloads the key ring. Run it periodically.
func (e *Engine) MaintainKeys(ctx context.Context, now time.Time) error {
	if e.keyRotation > 0 {
		kid, err := e.rotate(ctx, now, e.keyRotation)
		if err != nil {
			return err
		}
		if kid != "" {
			e.logger.Info("rotated the signing key", zap.String("kid", kid))
		}
	}
	return e.ReloadKeys(ctx)
}

// KeyMaintenanceInterval is how often MaintainKeys should run.
func (e *Engine) KeyMaintenanceInterval() time.Duration {
	if e.keyRotation > 0 && e.keyRotation/10 < time.Minute {
		return max(e.keyRotation/10, time.Second)
	}
	return time.Minute
}
