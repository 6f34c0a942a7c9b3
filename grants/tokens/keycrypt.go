package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/oauthgate/caddy-oauthgate/storage"
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
type keySealer struct {
	aead cipher.AEAD
	// macKey authenticates the set of stored key ids (keySetRecord).
	macKey []byte
	// sealPlain allows sealing keys stored unencrypted (SealPlainKeys).
	sealPlain bool
}

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
	macKey, err := hkdf.Key(sha256.New, secret, nil, "caddy-oauthgate signing key set", 32)
	if err != nil {
		return nil, err
	}
	return &keySealer{aead: aead, macKey: macKey}, nil
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

// keySetRecord names the KindSecrets record that lists, under a MAC keyed
// from the key encryption key, the ids of the keys this server stored.
// Each sealed key authenticates itself, but not the set: without it, a
// key copied in from another file or an old backup, or a plain key, would
// be taken (a plain one sealed and adopted as the signing key).
const keySetRecord = "signing-key-set"

// keySet is keySetRecord's value.
type keySet struct {
	Kids []string `json:"kids"`
	MAC  []byte   `json:"mac"`
}

func (s *keySealer) keySetMAC(kids []string) []byte {
	m := hmac.New(sha256.New, s.macKey)
	for _, k := range kids {
		m.Write([]byte(k))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// readKeySet returns the authenticated set of key ids, or nil when none
// was stored yet.
func (s *keySealer) readKeySet(tx storage.Tx) (map[string]bool, error) {
	rec, err := tx.Get(storage.KindSecrets, keySetRecord)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ks keySet
	if json.Unmarshal(rec.Value, &ks) != nil || !hmac.Equal(ks.MAC, s.keySetMAC(ks.Kids)) {
		return nil, fmt.Errorf("%w: the stored list of signing keys does not verify with key_encryption_key (a different key, or the storage was tampered with)", ErrKeyEncryption)
	}
	set := make(map[string]bool, len(ks.Kids))
	for _, k := range ks.Kids {
		set[k] = true
	}
	return set, nil
}

// writeKeySet authenticates the ids of the keys now stored in tx.
func (s *keySealer) writeKeySet(tx storage.Tx) error {
	var kids []string
	err := tx.ForEach(storage.KindKeys, func(id string, _ storage.Record) error {
		kids = append(kids, id)
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(kids)
	b, err := json.Marshal(keySet{Kids: kids, MAC: s.keySetMAC(kids)})
	if err != nil {
		return err
	}
	return tx.Put(storage.KindSecrets, keySetRecord, storage.Record{Value: b})
}
