package grants

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// retireSlack is added to the longest token lifetime before a rotated-out
// key leaves the key set, beyond the verifier's leeway.
const retireSlack = time.Minute

// MinKeyRotation is the shortest automatic rotation period accepted.
const MinKeyRotation = time.Minute

// keyRing is the key ring in use: the current key signs, all verify.
func (e *Engine) keyRing() *KeyRing { return e.Verifier.keys.Load() }

// retireAfter is how long a rotated-out key keeps verifying: until every
// token it signed (access and ID tokens, which share access_token_ttl)
// has expired, allowing for clock leeway.
func (e *Engine) retireAfter() time.Duration {
	return e.AccessTokenTTL + e.Verifier.Leeway + retireSlack
}

// KeyInfo describes one key for operators.
type KeyInfo struct {
	ID      string    `json:"kid"`
	Alg     string    `json:"alg"`
	Created time.Time `json:"created"`
	Current bool      `json:"current"`
	// Retires is when the key leaves the key set; absent for keys that
	// are not being retired.
	Retires *time.Time `json:"retires,omitempty"`
}

// Keys lists the keys in use, newest first.
func (e *Engine) Keys() []KeyInfo {
	kr := e.keyRing()
	var out []KeyInfo
	for _, k := range kr.All() {
		ki := KeyInfo{ID: k.ID, Alg: k.Alg.String(), Created: k.Created, Current: k == kr.Current}
		if !k.Retires.IsZero() {
			r := k.Retires
			ki.Retires = &r
		}
		out = append(out, ki)
	}
	return out
}

// RotateKeys makes a new signing key, which signs from now on, and
// schedules every other key for retirement once the tokens it signed have
// expired. It returns the new key's id.
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
	var kid string
	err := e.store.Update(ctx, func(tx storage.Tx) error {
		kid = ""
		kr := &KeyRing{byID: map[string]*Key{}}
		if _, _, err := readKeys(tx, kr, e.signingAlg, e.sealer); err != nil {
			return err
		}
		if olderThan > 0 && kr.Current != nil && now.Sub(kr.Current.Created) < olderThan {
			return nil
		}
		k, err := putNewKey(tx, e.signingAlg, e.sealer, now)
		if err != nil {
			return err
		}
		for _, old := range kr.byID {
			if old.Retires.IsZero() {
				old.Retires = now.Add(e.retireAfter())
				if err := putKey(tx, old, e.sealer); err != nil {
					return err
				}
			}
		}
		kid = k.ID
		if e.sealer != nil {
			return e.sealer.writeKeySet(tx)
		}
		return nil
	})
	return kid, err
}

// ReloadKeys reads the key ring from storage again: a key made by
// another engine on the same file starts signing here too, and retired
// keys leave the JWKS.
func (e *Engine) ReloadKeys(ctx context.Context) error {
	kr, err := loadKeyRing(ctx, e.store, e.signingAlg, e.sealer, time.Now())
	if err != nil {
		return err
	}
	e.Verifier.SetKeys(kr)
	return nil
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

// checkKeyConfig validates the key options of a Config.
func checkKeyConfig(cfg Config) (*keySealer, error) {
	if cfg.KeyRotation < 0 || (cfg.KeyRotation > 0 && cfg.KeyRotation < MinKeyRotation) {
		return nil, errors.New("key_rotation must be at least 1m (or absent to rotate only on demand)")
	}
	return newKeySealer(cfg.KeyEncryptionKey)
}
