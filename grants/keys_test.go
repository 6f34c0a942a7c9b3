package grants

import (
	"crypto"
	"encoding/base64"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// Every engine now holds an RSA key for ID tokens, and a 2048-bit RSA key
// takes about half a second to make. Tests draw RSA keys from a small
// pool instead, made on first use and handed out in turn: consecutive
// draws always differ, which is all a rotation in one test needs.
func init() {
	real := tokens.GenerateKey
	const size = 4
	var (
		mu   sync.Mutex
		pool []crypto.Signer
		next int
	)
	generateKey = func(alg string) (crypto.Signer, error) {
		if alg != "RS256" && alg != "PS256" {
			k, err := real(alg)
			if err == nil {
				remember(k)
			}
			return k, err
		}
		mu.Lock()
		defer mu.Unlock()
		if len(pool) < size {
			k, err := real(alg)
			if err != nil {
				return nil, err
			}
			pool = append(pool, k)
			remember(k)
			return k, nil
		}
		k := pool[next%size]
		next++
		return k, nil
	}
}

// privateKeys are the private keys the engines of these tests made, by
// kid (the RFC 7638 thumbprint of the public key), so that a test can
// sign hostile content with an engine's real key (signRaw).
var privateKeys sync.Map

func remember(k crypto.Signer) {
	pub, err := jwk.Import(k.Public())
	if err != nil {
		panic(err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err)
	}
	privateKeys.Store(base64.RawURLEncoding.EncodeToString(tp), k)
}

// signRaw signs an arbitrary header and payload with one of an engine's
// keys, bypassing MintAccessToken, so tests can produce tokens that carry
// our real signature over hostile content.
func signRaw(t testing.TB, k *tokens.Key, hdr, payload string) string {
	t.Helper()
	priv, ok := privateKeys.Load(k.ID)
	if !ok {
		t.Fatalf("no private key for kid %s", k.ID)
	}
	signer, err := jws.SignerFor(k.Alg)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := signer.Sign(priv, []byte(input))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return input + "." + enc.EncodeToString(sig)
}

// hdrMap is the header our keys put on access tokens; mod edits it.
func hdrMap(k *tokens.Key, mod func(map[string]any)) map[string]any {
	m := map[string]any{"alg": k.Alg.String(), "kid": k.ID, "typ": "at+jwt"}
	if mod != nil {
		mod(m)
	}
	return m
}
