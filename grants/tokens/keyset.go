package tokens

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// KeyOptions say which keys a Keys holds and how they are kept at rest.
type KeyOptions struct {
	// Algs are the algorithms signed with; the first signs access tokens.
	Algs []string
	// EncryptionKey, when set (at least MinKeyEncryptionKeyLen bytes),
	// seals the private keys in storage with AES-256-GCM.
	EncryptionKey []byte
	// SealPlain lets keys stored unencrypted be sealed (the one-time
	// migration to an encryption key).
	SealPlain bool
	// Generate makes a new private key for an algorithm; nil makes one
	// from crypto/rand (tests hand out pooled RSA keys, which take half a
	// second each to make).
	Generate func(alg string) (crypto.Signer, error)
}

// Keys is the one key ring of a server: the minting side signs with its
// current keys and the Verifier checks with all of them, so a reload or a
// rotation is seen by both at once.
type Keys struct {
	algs     []string
	sealer   *keySealer
	generate func(string) (crypto.Signer, error)
	ring     atomic.Pointer[KeyRing]
	// dropped is called when a reload removes a key that verified before
	// (the verifier forgets what it verified with it).
	dropped func()
	// seal caches the session sealing keys derived from the ring in use
	// (Sealer); they are derived again when the ring changes.
	seal atomic.Pointer[sealKeys]
}

// NewKeys checks opts; Load fills the ring.
func NewKeys(opts KeyOptions) (*Keys, error) {
	if len(opts.Algs) == 0 {
		return nil, errors.New("no signing algorithm given")
	}
	for _, a := range opts.Algs {
		if _, ok := jwa.LookupSignatureAlgorithm(a); !ok || !slices.Contains(SigningAlgs, a) {
			return nil, fmt.Errorf("signing_alg %q is not supported (use one of %v)", a, SigningAlgs)
		}
	}
	s, err := newKeySealer(opts.EncryptionKey)
	if err != nil {
		return nil, err
	}
	if s == nil && opts.SealPlain {
		return nil, errors.New("seal_plain_keys needs key_encryption_key (the key to seal the stored signing keys with)")
	}
	if s != nil {
		s.sealPlain = opts.SealPlain
	}
	gen := opts.Generate
	if gen == nil {
		gen = defaultGenerate
	}
	return &Keys{algs: opts.Algs, sealer: s, generate: gen}, nil
}

// defaultGenerate is GenerateKey; a variable so that this package's tests
// can pool RSA keys.
var defaultGenerate = GenerateKey

// Ring is the key ring in use; nil before the first Load.
func (k *Keys) Ring() *KeyRing { return k.ring.Load() }

// Sealed reports whether private keys are encrypted at rest.
func (k *Keys) Sealed() bool { return k.sealer != nil }

// SealPlain reports whether the one-time sealing of plain keys is on.
func (k *Keys) SealPlain() bool { return k.sealer != nil && k.sealer.sealPlain }

// Load reads the key ring from st, creating the keys that are missing in
// the same transaction (so that two configs starting at once agree on
// one key), and puts it in use.
func (k *Keys) Load(ctx context.Context, st storage.Store, now time.Time) error {
	kr, err := loadKeyRing(ctx, st, k.algs, k.sealer, k.generate, now)
	if err != nil {
		return err
	}
	k.set(kr)
	return nil
}

// set puts kr in use. When a key that verified before is gone, dropped
// is told; a reload that changes nothing (or only adds a key) is not.
func (k *Keys) set(kr *KeyRing) {
	old := k.ring.Swap(kr)
	if old == nil || k.dropped == nil {
		return
	}
	for kid := range old.byID {
		if _, ok := kr.Lookup(kid); !ok {
			k.dropped()
			return
		}
	}
}

// Rotate makes a new key for each algorithm in one transaction, and
// schedules every other key to leave the ring retireAfter from now (when
// the tokens it signed have expired; read in the rotation's transaction,
// so that it can depend on what the store records). With olderThan > 0 it rotates only
// if the current key is at least that old, so that servers sharing a
// store rotate once between them. It returns the id of the new key of
// the first algorithm, or "" when nothing was rotated. Load puts the new
// ring in use.
func (k *Keys) Rotate(ctx context.Context, st storage.Store, now time.Time, olderThan time.Duration, retireAfter func(storage.Tx) (time.Duration, error)) (string, error) {
	var kid string
	err := st.Update(ctx, func(tx storage.Tx) error {
		kid = ""
		kr := newKeyRing()
		if _, _, err := readKeys(tx, kr, k.algs[0], k.sealer); err != nil {
			return err
		}
		if olderThan > 0 && kr.Current != nil && now.Sub(kr.Current.Created) < olderThan {
			return nil
		}
		retire, err := retireAfter(tx)
		if err != nil {
			return err
		}
		var first *Key
		for _, alg := range k.algs {
			nk, err := putNewKey(tx, alg, k.sealer, k.generate, now)
			if err != nil {
				return err
			}
			if first == nil {
				first = nk
			}
		}
		for _, old := range kr.byID {
			if old.Retires.IsZero() {
				old.Retires = now.Add(retire)
				if err := putKey(tx, old, k.sealer); err != nil {
					return err
				}
			}
		}
		kid = first.ID
		if k.sealer != nil {
			return k.sealer.writeKeySet(tx)
		}
		return nil
	})
	return kid, err
}
