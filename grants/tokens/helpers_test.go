package tokens

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage/bolt"
)

const (
	testIssuer = "https://as.test"
	testRS     = "https://app.test"
)

// openStore opens a fresh bolt store in a temporary directory and closes
// it when the test ends.
func openStore(t testing.TB) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"), time.Second)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// LoadKeyRing loads (or makes) the key ring for alg on st, as a Keys does.
func LoadKeyRing(ctx context.Context, st *bolt.Store, alg string, now time.Time) (*KeyRing, error) {
	ks, err := NewKeys(KeyOptions{Algs: []string{alg}})
	if err != nil {
		return nil, err
	}
	if err := ks.Load(ctx, st, now); err != nil {
		return nil, err
	}
	return ks.Ring(), nil
}

// signRaw signs an arbitrary header and payload with one of our keys,
// bypassing MintAccessToken, so tests can produce tokens that carry our
// real signature over hostile content.
func signRaw(t testing.TB, k *Key, hdr, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := k.signer.Sign(k.private, []byte(input))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return input + "." + enc.EncodeToString(sig)
}

// mustJSON marshals v or fails the test.
func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testVerifier is a verifier of testIssuer tokens on its own Keys, which
// holds kr (nil for none).
func testVerifier(kr *KeyRing, leeway time.Duration, rev *Revocations) *Verifier {
	ks := &Keys{}
	v := NewVerifier(VerifierConfig{Issuer: testIssuer, Leeway: leeway, Keys: ks, Revocations: rev})
	if kr != nil {
		ks.set(kr)
	}
	return v
}
