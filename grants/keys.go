package grants

import (
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
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// SigningAlgs are the JWS algorithms the server can sign with.
var SigningAlgs = []string{"ES256", "EdDSA", "RS256", "PS256"}

// Key is one signing key pair. Its algorithm is fixed when it is made and
// is the only algorithm it is ever used or accepted with.
type Key struct {
	ID      string
	Alg     jwa.SignatureAlgorithm
	Created time.Time

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
}

// generateKey makes a new key pair for alg.
func generateKey(alg string) (crypto.Signer, error) {
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

func (k *Key) marshal() ([]byte, error) {
	priv, err := jwk.Import(k.private)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(priv)
	if err != nil {
		return nil, err
	}
	return json.Marshal(storedKey{ID: k.ID, Alg: k.Alg.String(), Created: k.Created, JWK: raw})
}

func unmarshalKey(b []byte) (*Key, error) {
	var sk storedKey
	if err := json.Unmarshal(b, &sk); err != nil {
		return nil, err
	}
	jk, err := jwk.ParseKey(sk.JWK)
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

// KeyRing holds the key that signs and every key that still verifies.
type KeyRing struct {
	Current *Key
	byID    map[string]*Key
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
	slices.SortFunc(out, func(a, b *Key) int { return b.Created.Compare(a.Created) })
	return out
}

// LoadKeyRing loads the stored keys, creating and storing a key for alg
// in the same transaction when none exists yet, so that two configs
// starting at once (a reload) agree on one key.
func LoadKeyRing(ctx context.Context, st storage.Store, alg string, now time.Time) (*KeyRing, error) {
	if _, ok := jwa.LookupSignatureAlgorithm(alg); !ok {
		return nil, fmt.Errorf("signing_alg %q is not supported (use one of %v)", alg, SigningAlgs)
	}
	kr := &KeyRing{byID: map[string]*Key{}}
	load := func(tx storage.Tx) error {
		clear(kr.byID)
		kr.Current = nil
		return tx.ForEach(storage.KindKeys, func(id string, rec storage.Record) error {
			k, err := unmarshalKey(rec.Value)
			if err != nil {
				return fmt.Errorf("signing key %s in storage is unreadable: %w", id, err)
			}
			kr.byID[k.ID] = k
			if k.Alg.String() == alg && (kr.Current == nil || k.Created.After(kr.Current.Created)) {
				kr.Current = k
			}
			return nil
		})
	}
	if err := st.View(ctx, load); err != nil {
		return nil, err
	}
	if kr.Current != nil {
		return kr, nil
	}
	err := st.Update(ctx, func(tx storage.Tx) error {
		if err := load(tx); err != nil || kr.Current != nil {
			return err
		}
		priv, err := generateKey(alg)
		if err != nil {
			return err
		}
		k, err := newKey(alg, priv, now)
		if err != nil {
			return err
		}
		b, err := k.marshal()
		if err != nil {
			return err
		}
		if err := tx.Put(storage.KindKeys, k.ID, storage.Record{Value: b}); err != nil {
			return err
		}
		kr.byID[k.ID] = k
		kr.Current = k
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
