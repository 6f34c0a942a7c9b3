package tokens

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// TestES256Signature checks the token endpoint's own ES256 signer
// (signES256) against the RFC 7518 §3.4 format: R and S as 32 big-endian
// bytes each, so also when one of them is shorter (about one token in
// 128), and verifiable by crypto/ecdsa and by jwx.
func TestES256Signature(t *testing.T) {
	priv, err := GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	k, err := newKey("ES256", priv, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(*ecdsa.PublicKey)
	short := 0
	for i := range 2000 {
		tok, err := k.MintAccessToken(NewAccessClaims("https://issuer", "sub", "client", []string{"aud"}, []string{"a"}, time.Now(), time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		dot := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		if err != nil || len(sig) != 64 {
			t.Fatalf("token %d: signature of %d bytes (%v), want 64", i, len(sig), err)
		}
		if sig[0] == 0 || sig[32] == 0 {
			short++
		}
		digest := sha256.Sum256([]byte(tok[:dot]))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, digest[:], r, s) {
			t.Fatalf("token %d: crypto/ecdsa does not verify its signature", i)
		}
		if i%100 == 0 {
			if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.ES256(), pub)); err != nil {
				t.Fatalf("token %d: jwx does not verify it: %v", i, err)
			}
		}
	}
	if short == 0 {
		t.Log("no signature with a short R or S in this run")
	}
}
