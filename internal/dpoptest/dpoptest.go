// Package dpoptest makes DPoP proofs (RFC 9449 §4.2) for tests and the
// load generator: an ES256 key and proofs signed by jwx, with any claim
// set, changed or left out, so that refusals can be made on purpose.
package dpoptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Key is a client's DPoP key.
type Key struct {
	Priv *ecdsa.PrivateKey
	// JWK is the public key as the proof header carries it.
	JWK map[string]any
	// JKT is its RFC 7638 thumbprint: a bound token's cnf.jkt.
	JKT string

	header string // base64url of the protected header
	signer jws.Signer2
}

// NewKey makes a P-256 key.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		return nil, err
	}
	pb, err := json.Marshal(pub)
	if err != nil {
		return nil, err
	}
	k := &Key{Priv: priv}
	if err := json.Unmarshal(pb, &k.JWK); err != nil {
		return nil, err
	}
	if k.JKT, err = tokens.JWKThumbprint(pb); err != nil {
		return nil, err
	}
	hb, err := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.JWK})
	if err != nil {
		return nil, err
	}
	k.header = base64.RawURLEncoding.EncodeToString(hb)
	if k.signer, err = jws.SignerFor(jwa.ES256()); err != nil {
		return nil, err
	}
	return k, nil
}

// Proof signs the claims c, with a fresh jti and the current iat added
// unless c sets them; a nil value in c leaves that claim out.
func (k *Key) Proof(c map[string]any) (string, error) {
	claims := map[string]any{"jti": tokens.RandomID(12), "iat": time.Now().Unix()}
	for n, v := range c {
		if v == nil {
			delete(claims, n)
		} else {
			claims[n] = v
		}
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	in := k.header + "." + base64.RawURLEncoding.EncodeToString(cb)
	sig, err := k.signer.Sign(k.Priv, []byte(in))
	if err != nil {
		return "", err
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// ATH is the ath claim for an access token: base64url(SHA-256(token)).
func ATH(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
