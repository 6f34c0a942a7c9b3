package grants

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// retireSlack is added to the longest token lifetime before a rotated-out
// key leaves the key set, beyond the verifier's leeway.
const retireSlack = time.Minute

// MinKeyRotation is the shortest automatic rotation period accepted.
const MinKeyRotation = time.Minute

// keyRing is the key ring in use: the current key signs, all verify.
func (e *Engine) keyRing() *tokens.KeyRing { return e.keys.Ring() }

// retireAfterTx is how long a rotated-out key keeps verifying: until
// every token it signed (access and ID tokens, which share
// access_token_ttl) has expired, allowing for clock leeway. The tokens
// are any node's, so the longest TTL recorded in the store counts.
func (e *Engine) retireAfterTx(tx storage.Tx) (time.Duration, error) {
	d, err := e.tokenLifetimeTx(tx)
	return d + verifierLeeway + retireSlack, err
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
	before := e.Keys()
	kid, err := e.rotate(ctx, time.Now(), 0)
	if err != nil {
		return "", err
	}
	err = e.ReloadKeys(ctx)
	e.observer.AdminChange(changeKey, actionRotated)
	e.keysRotated(ctx, "admin", before)
	return kid, err
}

// keysRotated writes the audit lines of a rotation this engine made
// (trigger "admin" or "key_rotation"): one per new key and one per key
// it scheduled for retirement, found by comparing the ring with the one
// before.
func (e *Engine) keysRotated(ctx context.Context, trigger string, before []KeyInfo) {
	old := make(map[string]KeyInfo, len(before))
	for _, k := range before {
		old[k.ID] = k
	}
	for _, k := range e.Keys() {
		prev, known := old[k.ID]
		switch {
		case !known && k.Retires == nil:
			e.auditLine(ctx, zapcore.InfoLevel, auditKeyRotated, zap.String("kid", k.ID), zap.String("alg", k.Alg),
				zap.String("trigger", trigger))
		case known && prev.Retires == nil && k.Retires != nil:
			e.auditLine(ctx, zapcore.InfoLevel, auditKeyRetiring, zap.String("kid", k.ID), zap.String("alg", k.Alg),
				zap.Time("retires", *k.Retires))
		}
	}
}

// rotate rotates in one transaction. With olderThan > 0 it rotates only
// if the current key is at least that old, so that engines sharing a
// file rotate once between them. It returns the new kid, or "".
//
// On a store shared by several nodes (storage.Locker) the transaction
// runs under the cluster-wide keys lock, so that nodes whose timers fire
// together do not all make keys and abort each other's transactions:
// a due rotation is skipped while another node holds the lock (the
// reload that follows picks up that node's key), and an operator's
// rotation waits for it, up to clusterLockWait.
func (e *Engine) rotate(ctx context.Context, now time.Time, olderThan time.Duration) (string, error) {
	var (
		release func()
		ok      bool
		err     error
	)
	if olderThan > 0 {
		// A key younger than the period here is younger in storage too
		// (keys only get newer): no lock, no transaction.
		if kr := e.keyRing(); kr != nil && kr.Current != nil && now.Sub(kr.Current.Created) < olderThan {
			return "", nil
		}
		release, ok, err = tryClusterLock(ctx, e.store, lockKeys)
	} else {
		release, ok, err = waitClusterLock(ctx, e.store, lockKeys)
		if err == nil && !ok {
			return "", fmt.Errorf("%w: another node has held the key rotation lock for %v; try again", storage.ErrUnavailable, clusterLockWait)
		}
	}
	if err != nil || !ok {
		return "", err
	}
	defer release()
	return e.keys.Rotate(ctx, e.store, now, olderThan, e.retireAfterTx)
}

// ReloadKeys reads the key ring from storage again: a key made by
// another engine on the same file starts signing here too, and retired
// keys leave the JWKS.
func (e *Engine) ReloadKeys(ctx context.Context) error {
	before := e.keyRing()
	if err := e.keys.Load(ctx, e.store, time.Now()); err != nil {
		return err
	}
	if before == nil {
		return nil
	}
	after := e.keyRing()
	for _, k := range before.All() {
		if _, ok := after.Lookup(k.ID); !ok {
			e.auditLine(ctx, zapcore.InfoLevel, auditKeyRetired, zap.String("kid", k.ID), zap.String("alg", k.Alg.String()))
		}
	}
	return nil
}

// MaintainKeys rotates the signing key when it is older than the
// configured key_rotation, and reloads the key ring. Run it periodically.
func (e *Engine) MaintainKeys(ctx context.Context, now time.Time) error {
	if e.keyRotation > 0 {
		before := e.Keys()
		kid, err := e.rotate(ctx, now, e.keyRotation)
		if err != nil {
			return err
		}
		if kid != "" {
			err := e.ReloadKeys(ctx)
			e.keysRotated(ctx, "key_rotation", before)
			return err
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
