package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// MinSealerSecretLen is the shortest secret NewSealer accepts.
const MinSealerSecretLen = 32

// sealerInfo is the HKDF info of every key a Sealer seals with, so that
// the key of a session cookie is never the key of anything else.
const sealerInfo = "oauthgate session cookie v1"

// sealKIDLen is the length in bytes of the key id a sealed value starts
// with: enough to tell the keys of one ring apart, short for a cookie.
const sealKIDLen = 6

// ErrSealed says a sealed value cannot be opened: it was altered, sealed
// for other additional data, or with a key that is no longer known.
var ErrSealed = errors.New("sealed value is invalid, altered or sealed with an unknown key")

// Sealer encrypts and authenticates small values (session cookies) with
// AES-256-GCM. A sealed value is URL-safe base64 without padding of
// kid(6) || nonce(12) || ciphertext || tag(16); the kid names the key it
// was sealed with, so that values sealed before a key rotation still open
// while the old key is in the ring.
//
// A Sealer is safe for concurrent use.
type Sealer struct {
	// keys is the key ring the keys are derived from (nil for NewSealer).
	keys *Keys
	// static holds the one key of NewSealer.
	static *sealKeys
}

// sealKeys are the derived keys of one key ring.
type sealKeys struct {
	// ring is the key ring these were derived from.
	ring    *KeyRing
	current *sealKey
	byID    map[[sealKIDLen]byte]*sealKey
}

type sealKey struct {
	id   [sealKIDLen]byte
	aead cipher.AEAD
}

// NewSealer is a Sealer with one key derived (HKDF-SHA256) from secret,
// which must hold at least MinSealerSecretLen random bytes.
func NewSealer(secret []byte) (*Sealer, error) {
	if len(secret) < MinSealerSecretLen {
		return nil, fmt.Errorf("the session sealing secret must be at least %d bytes (it has %d)", MinSealerSecretLen, len(secret))
	}
	k, err := deriveSealKey(secret)
	if err != nil {
		return nil, err
	}
	return &Sealer{static: &sealKeys{current: k, byID: map[[sealKIDLen]byte]*sealKey{k.id: k}}}, nil
}

// Sealer returns a Sealer whose keys are derived from the private keys of
// the ring: it seals with the key derived from the current signing key
// and opens with that of any key still in the ring, so a rotation signs
// nobody out until the old key leaves the ring. It follows every Load.
func (k *Keys) Sealer() *Sealer { return &Sealer{keys: k} }

// deriveSealKey derives the AEAD key and its id from secret.
func deriveSealKey(secret []byte) (*sealKey, error) {
	// One HKDF output gives the key and the id: the id reveals nothing
	// of the key, and two secrets give two ids.
	okm, err := hkdf.Key(sha256.New, secret, nil, sealerInfo, 32+sealKIDLen)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sk := &sealKey{aead: aead}
	copy(sk.id[:], okm[32:])
	return sk, nil
}

// privateMaterial is the secret part of a signing key, the input of the
// key derivation.
func privateMaterial(k *Key) ([]byte, error) {
	switch p := k.private.(type) {
	case *ecdsa.PrivateKey:
		return p.Bytes()
	case ed25519.PrivateKey:
		return p.Seed(), nil
	case *rsa.PrivateKey:
		return p.D.Bytes(), nil
	}
	return nil, fmt.Errorf("signing key %s has no private key material to derive a sealing key from", k.ID)
}

// deriveSealKeys derives the keys of kr; a key whose material cannot be
// read is left out (it then seals and opens nothing).
func deriveSealKeys(kr *KeyRing) *sealKeys {
	sk := &sealKeys{ring: kr, byID: make(map[[sealKIDLen]byte]*sealKey, len(kr.byID))}
	for _, k := range kr.byID {
		m, err := privateMaterial(k)
		if err != nil {
			continue
		}
		d, err := deriveSealKey(m)
		if err != nil {
			continue
		}
		sk.byID[d.id] = d
		if k == kr.Current {
			sk.current = d
		}
	}
	return sk
}

// current is the key set in use, derived again when the ring changed.
func (s *Sealer) current() *sealKeys {
	if s.static != nil {
		return s.static
	}
	kr := s.keys.Ring()
	if kr == nil {
		return nil
	}
	if sk := s.keys.seal.Load(); sk != nil && sk.ring == kr {
		return sk
	}
	sk := deriveSealKeys(kr)
	// A concurrent Load may have put a newer ring in use meanwhile: the
	// keys are stored only if they are still those of the ring in use, and
	// a later call derives the newer ones.
	if s.keys.Ring() == kr {
		s.keys.seal.Store(sk)
	}
	return sk
}

// Seal encrypts plaintext bound to aad (which is authenticated but not
// stored: Open needs the same aad). It returns "" when no key is loaded
// yet (a Sealer of a Keys before its first Load), which Open refuses.
func (s *Sealer) Seal(aad, plaintext []byte) string {
	sk := s.current()
	if sk == nil || sk.current == nil {
		return ""
	}
	k := sk.current
	ns := k.aead.NonceSize()
	rawLen := sealKIDLen + ns + len(plaintext) + k.aead.Overhead()
	encLen := base64.RawURLEncoding.EncodedLen(rawLen)
	// One buffer holds the encoded value and, after it, the raw one.
	out := make([]byte, encLen+rawLen)
	raw := out[encLen : encLen+sealKIDLen+ns]
	copy(raw, k.id[:])
	nonce := raw[sealKIDLen:]
	_, _ = rand.Read(nonce)
	raw = k.aead.Seal(raw, nonce, plaintext, aad)
	base64.RawURLEncoding.Encode(out[:encLen], raw)
	return string(out[:encLen])
}

// Open authenticates and decrypts a value Seal made with the same aad.
// Any change to sealed, another aad, or a key no longer in the ring gives
// ErrSealed.
func (s *Sealer) Open(aad []byte, sealed string) ([]byte, error) {
	sk := s.current()
	if sk == nil {
		return nil, ErrSealed
	}
	const minLen = sealKIDLen + 12 + 16
	if len(sealed) < base64.RawURLEncoding.EncodedLen(minLen) || len(sealed) > base64.RawURLEncoding.EncodedLen(1<<16) {
		return nil, ErrSealed
	}
	raw := make([]byte, base64.RawURLEncoding.DecodedLen(len(sealed)))
	n, err := sealEncoding.Decode(raw, []byte(sealed))
	if err != nil || n < minLen {
		return nil, ErrSealed
	}
	raw = raw[:n]
	k, ok := sk.byID[[sealKIDLen]byte(raw[:sealKIDLen])]
	if !ok {
		return nil, ErrSealed
	}
	ns := k.aead.NonceSize()
	ct := raw[sealKIDLen+ns:]
	plain, err := k.aead.Open(ct[:0], raw[sealKIDLen:sealKIDLen+ns], ct, aad)
	if err != nil {
		return nil, ErrSealed
	}
	return plain, nil
}

// sealEncoding is strict so that every character of a sealed value
// counts: unused trailing bits that are not zero are refused.
var sealEncoding = base64.RawURLEncoding.Strict()
