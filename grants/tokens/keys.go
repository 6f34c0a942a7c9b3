package tokens

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// SigningAlgs are the JWS algorithms the server can sign with.
var SigningAlgs = []string{"ES256", "EdDSA", "RS256", "PS256"}

// IDTokenAlg is the algorithm of ID tokens unless a client registers
// another (id_token_signed_response_alg). OIDC Discovery §3 and Core
// §15.1 require RS256, and many relying parties accept nothing else, so
// the key ring always holds an RS256 key besides the signing_alg key
// that signs access tokens.
const IDTokenAlg = "RS256"

// Key is one signing key pair. Its algorithm is fixed when it is made and
// is the only algorithm it is ever used or accepted with.
type Key struct {
	ID      string
	Alg     jwa.SignatureAlgorithm
	Created time.Time
	// Retires is when a rotated-out key leaves the key set (zero for a
	// key that is not being retired).
	Retires time.Time

	private crypto.Signer
	public  crypto.PublicKey
	signer  jws.Signer2
	// atHeader and idHeader are the base64url JWS protected headers for
	// access tokens and ID tokens signed with this key, computed once.
	atHeader string
	idHeader string
}

// storedKey is a key at rest.
type storedKey struct {
	ID      string          `json:"kid"`
	Alg     string          `json:"alg"`
	Created time.Time       `json:"created"`
	JWK     json.RawMessage `json:"jwk"`
	// Enc names the encryption of JWK ("" for none, A256GCM).
	Enc string `json:"enc,omitempty"`
}

// GenerateKey makes a new private key for a signing algorithm from
// crypto/rand; Keys use it unless KeyOptions.Generate says otherwise.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case "RS256", "PS256":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("signing_alg %q is not supported (use one of %v)", alg, SigningAlgs)
}

func newKey(alg string, priv crypto.Signer, created time.Time) (*Key, error) {
	a, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		return nil, fmt.Errorf("signing_alg %q is not supported (use one of %v)", alg, SigningAlgs)
	}
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		return nil, err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	signer, err := jws.SignerFor(a)
	if err != nil {
		return nil, err
	}
	k := &Key{
		ID:      base64.RawURLEncoding.EncodeToString(tp),
		Alg:     a,
		Created: created,
		private: priv,
		public:  priv.Public(),
		signer:  signer,
	}
	header := func(typ string) string {
		hdr, _ := json.Marshal(struct {
			Alg string `json:"alg"`
			Kid string `json:"kid"`
			Typ string `json:"typ"`
		}{alg, k.ID, typ})
		return base64.RawURLEncoding.EncodeToString(hdr)
	}
	k.atHeader = header("at+jwt")
	k.idHeader = header("JWT")
	return k, nil
}

// PublicJWK is the key's public half as a JWK with kid, alg and use.
func (k *Key) PublicJWK() (jwk.Key, error) {
	pub, err := jwk.Import(k.public)
	if err != nil {
		return nil, err
	}
	for name, v := range map[string]any{jwk.KeyIDKey: k.ID, jwk.AlgorithmKey: k.Alg, jwk.KeyUsageKey: "sig"} {
		if err := pub.Set(name, v); err != nil {
			return nil, err
		}
	}
	return pub, nil
}

func (k *Key) marshal() ([]byte, error) { return k.marshalWith(nil) }

// marshalWith is the key's stored form, its private half sealed when s is
// not nil.
func (k *Key) marshalWith(s *keySealer) ([]byte, error) {
	priv, err := jwk.Import(k.private)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(priv)
	if err != nil {
		return nil, err
	}
	stored, enc, err := s.sealJWK(k.ID, raw)
	if err != nil {
		return nil, err
	}
	return json.Marshal(storedKey{ID: k.ID, Alg: k.Alg.String(), Created: k.Created, JWK: stored, Enc: enc})
}

// unmarshalKey reads a stored key; sealed reports whether it was stored
// encrypted.
func unmarshalKey(b []byte, s *keySealer) (k *Key, sealed bool, err error) {
	var sk storedKey
	if err := json.Unmarshal(b, &sk); err != nil {
		return nil, false, err
	}
	raw, err := s.openJWK(&sk)
	if err != nil {
		return nil, false, err
	}
	k, err = parseStoredKey(&sk, raw)
	return k, sk.Enc != "", err
}

func parseStoredKey(sk *storedKey, jwkJSON []byte) (*Key, error) {
	jk, err := jwk.ParseKey(jwkJSON)
	if err != nil {
		return nil, err
	}
	var raw any
	if err := jwk.Export(jk, &raw); err != nil {
		return nil, err
	}
	var signer crypto.Signer
	switch p := raw.(type) {
	case *ecdsa.PrivateKey:
		signer = p
	case *rsa.PrivateKey:
		signer = p
	case ed25519.PrivateKey:
		signer = p
	case *ed25519.PrivateKey:
		signer = *p
	default:
		return nil, fmt.Errorf("stored key %s is not a private signing key", sk.ID)
	}
	k, err := newKey(sk.Alg, signer, sk.Created)
	if err != nil {
		return nil, err
	}
	if k.ID != sk.ID {
		return nil, fmt.Errorf("stored key %s does not match its thumbprint", sk.ID)
	}
	return k, nil
}

// KeyRing holds the keys that sign and every key that still verifies.
type KeyRing struct {
	// Current signs access tokens (signing_alg).
	Current *Key
	byID    map[string]*Key
	// signers holds the newest key of each algorithm that is not being
	// retired: Current, and the keys ID tokens are signed with.
	signers map[string]*Key
}

// Signer returns the key that signs with alg, if the ring holds one.
func (kr *KeyRing) Signer(alg string) (*Key, bool) {
	k, ok := kr.signers[alg]
	return k, ok
}

// Lookup finds a verification key by kid.
func (kr *KeyRing) Lookup(kid string) (*Key, bool) {
	k, ok := kr.byID[kid]
	return k, ok
}

// All returns the keys that verify, newest first.
func (kr *KeyRing) All() []*Key {
	out := make([]*Key, 0, len(kr.byID))
	for _, k := range kr.byID {
		out = append(out, k)
	}
	// Keys made together (the signing_alg and RS256 keys) are ordered by
	// kid, so that the JWKS lists them in the same order every time.
	slices.SortFunc(out, func(a, b *Key) int { return cmp.Or(b.Created.Compare(a.Created), strings.Compare(a.ID, b.ID)) })
	return out
}

// newKeyRing is an empty key ring.
func newKeyRing() *KeyRing { return &KeyRing{byID: map[string]*Key{}, signers: map[string]*Key{}} }

// readKeys fills kr from the unexpired stored keys. Current is the newest
// key of alg that is not being retired; signers holds that of every
// algorithm. plain counts keys stored unencrypted. With a sealer,
// unmarked reports that no authenticated key set is stored yet (the key
// encryption key is new); once one is, a key stored plain or missing from
// the set is refused.
func readKeys(tx storage.Tx, kr *KeyRing, alg string, s *keySealer) (plain int, unmarked bool, err error) {
	clear(kr.byID)
	clear(kr.signers)
	kr.Current = nil
	defer func() { kr.Current = kr.signers[alg] }()
	var set map[string]bool
	if s != nil {
		if set, err = s.readKeySet(tx); err != nil {
			return 0, false, err
		}
	}
	sealed := 0
	var plainIDs []string
	err = tx.ForEach(storage.KindKeys, func(id string, rec storage.Record) error {
		k, isSealed, err := unmarshalKey(rec.Value, s)
		if err != nil {
			if errors.Is(err, ErrKeyEncryption) {
				return err
			}
			return fmt.Errorf("signing key %s in storage is unreadable: %w", id, err)
		}
		if isSealed {
			sealed++
		} else {
			plain++
			plainIDs = append(plainIDs, id)
		}
		if set != nil && isSealed && !set[id] {
			return fmt.Errorf("%w: signing key %s in storage is not one this server stored (copied from another file or an old backup?); delete it, or restore the storage file", ErrKeyEncryption, id)
		}
		k.Retires = rec.Expires
		kr.byID[k.ID] = k
		if cur := kr.signers[k.Alg.String()]; k.Retires.IsZero() && (cur == nil || k.Created.After(cur.Created)) {
			kr.signers[k.Alg.String()] = k
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	// Plain keys are sealed only the first time a key encryption key is
	// configured: once keys are sealed, a plain one was planted by someone
	// who can write the file but does not know the key encryption key.
	if s != nil && plain > 0 && (set != nil || sealed > 0) {
		return 0, false, fmt.Errorf("%w: signing key %s is stored unencrypted although key_encryption_key is set and the other keys are sealed; it may have been planted: delete it from the storage, or restore the storage file", ErrKeyEncryption, plainIDs[0])
	}
	// Even with no sealed key left, a plain key may have been planted by
	// someone who deleted the sealed keys and the key set: seal it only
	// when the operator asked for the migration.
	if s != nil && plain > 0 && !s.sealPlain {
		return 0, false, fmt.Errorf("%w: signing key %s is stored unencrypted although key_encryption_key is set; if this storage holds keys from before key_encryption_key was configured, set seal_plain_keys once to seal them (then remove it); otherwise the key may have been planted: delete it from the storage, or restore the storage file", ErrKeyEncryption, plainIDs[0])
	}
	// Sealed keys without the key set: the set was deleted to slip in a
	// sealed key from another file of the same key encryption key, or the
	// file comes from a version that kept no set. Only the operator can
	// tell: adopting the keys as they are takes seal_plain_keys.
	if s != nil && set == nil && sealed > 0 && !s.sealPlain {
		return 0, false, fmt.Errorf("%w: the storage holds sealed signing keys but no authenticated key set: it was deleted (restore the storage file), or the file comes from a version without one; then set seal_plain_keys once to adopt its keys (then remove it)", ErrKeyEncryption)
	}
	return plain, s != nil && set == nil, nil
}

// putNewKey generates a key for alg and stores it.
func putNewKey(tx storage.Tx, alg string, s *keySealer, gen func(string) (crypto.Signer, error), now time.Time) (*Key, error) {
	priv, err := gen(alg)
	if err != nil {
		return nil, err
	}
	k, err := newKey(alg, priv, now)
	if err != nil {
		return nil, err
	}
	return k, putKey(tx, k, s)
}

// putKey stores k (sealed with s, if any) until k.Retires.
func putKey(tx storage.Tx, k *Key, s *keySealer) error {
	b, err := k.marshalWith(s)
	if err != nil {
		return err
	}
	return tx.Put(storage.KindKeys, k.ID, storage.Record{Value: b, Expires: k.Retires})
}

// loadKeyRing loads the ring that signs with each of algs, the first of
// which signs access tokens, creating the keys that are missing.
func loadKeyRing(ctx context.Context, st storage.Store, algs []string, s *keySealer, gen func(string) (crypto.Signer, error), now time.Time) (*KeyRing, error) {
	alg := algs[0]
	for _, a := range algs {
		if _, ok := jwa.LookupSignatureAlgorithm(a); !ok {
			return nil, fmt.Errorf("signing_alg %q is not supported (use one of %v)", a, SigningAlgs)
		}
	}
	kr := newKeyRing()
	complete := func() bool {
		return !slices.ContainsFunc(algs, func(a string) bool { _, ok := kr.signers[a]; return !ok })
	}
	plain, unmarked := 0, false
	err := st.View(ctx, func(tx storage.Tx) error {
		var err error
		plain, unmarked, err = readKeys(tx, kr, alg, s)
		return err
	})
	if err != nil {
		return nil, err
	}
	if complete() && !unmarked && (s == nil || plain == 0) {
		return kr, nil
	}
	err = st.Update(ctx, func(tx storage.Tx) error {
		plain, _, err := readKeys(tx, kr, alg, s)
		if err != nil {
			return err
		}
		// A key encryption key was configured for keys stored plain:
		// seal them now.
		if s != nil && plain > 0 {
			for _, k := range kr.byID {
				if err := putKey(tx, k, s); err != nil {
					return err
				}
			}
		}
		for _, a := range algs {
			if _, ok := kr.signers[a]; ok {
				continue
			}
			k, err := putNewKey(tx, a, s, gen, now)
			if err != nil {
				return err
			}
			kr.byID[k.ID] = k
			kr.signers[a] = k
		}
		kr.Current = kr.signers[alg]
		if s != nil {
			return s.writeKeySet(tx)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if kr.Current == nil {
		return nil, errors.New("no signing key could be created")
	}
	return kr, nil
}
