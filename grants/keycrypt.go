package grants

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
)

// keyEncryption is the "enc" value of a stored key whose private JWK is
// sealed with AES-256-GCM.
const keyEncryption = "A256GCM"

// MinKeyEncryptionKeyLen is the shortest key_encryption_key accepted.
const MinKeyEncryptionKeyLen = 32

// ErrKeyEncryption says a stored signing key cannot be opened with the
// configured key encryption key (or none is configured).
var ErrKeyEncryption = errors.New("cannot decrypt the stored signing keys")

// keySealer encrypts private signing keys at rest with AES-256-GCM under
// a key derived (HKDF-SHA256) from the operator's key encryption key. The
// key id is the additional data, so a sealed key cannot be moved to
// another record.
type keySealer struct{ aead cipher.AEAD }

// newKeySealer returns nil (keys stay plain) for an empty secret.
func newKeySealer(secret []byte) (*keySealer, error) {
	if len(secret) == 0 {
		return nil, nil
	}
	if len(secret) < MinKeyEncryptionKeyLen {
		return nil, fmt.Errorf("key_encryption_key must be at least %d bytes (for example: openssl rand -base64 32)", MinKeyEncryptionKeyLen)
	}
	k, err := hkdf.Key(sha256.New, secret, nil, "caddy-oauthgate signing keys", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &keySealer{aead: aead}, nil
}

func (s *keySealer) seal(kid string, plain []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(kid))
}

func (s *keySealer) open(kid string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrKeyEncryption
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("%w: key %s (is key_encryption_key the one the keys were stored with?)", ErrKeyEncryption, kid)
	}
	return plain, nil
}

// sealJWK returns the stored form of a private JWK: as is without a
// sealer, else the sealed bytes as a JSON string.
func (s *keySealer) sealJWK(kid string, raw []byte) (json.RawMessage, string, error) {
	if s == nil {
		return raw, "", nil
	}
	b, err := json.Marshal(s.seal(kid, raw))
	return b, keyEncryption, err
}

// openJWK reverses sealJWK.
func (s *keySealer) openJWK(sk *storedKey) ([]byte, error) {
	switch sk.Enc {
	case "":
		return sk.JWK, nil
	case keyEncryption:
		if s == nil {
			return nil, fmt.Errorf("%w: key %s is encrypted; set key_encryption_key (or the OAUTH_KEK environment variable) to the key it was stored with", ErrKeyEncryption, sk.ID)
		}
		var sealed []byte
		if err := json.Unmarshal(sk.JWK, &sealed); err != nil {
			return nil, fmt.Errorf("%w: key %s is malformed", ErrKeyEncryption, sk.ID)
		}
		return s.open(sk.ID, sealed)
	}
	return nil, fmt.Errorf("stored key %s uses unknown encryption %q", sk.ID, sk.Enc)
}
