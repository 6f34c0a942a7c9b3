package tokens

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// fuzzFixture is a key ring held in memory (no storage: fuzzing calls the
// target many times) and the tokens it minted.
type fuzzFixture struct {
	v      *Verifier
	minted map[string]bool // header.payload of every minted token
	now    time.Time
	toks   []string
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	now := time.Unix(1_700_000_000, 0)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	kES, err := newKey("ES256", ec, now)
	if err != nil {
		f.Fatal(err)
	}
	kEd, err := newKey("EdDSA", ed, now)
	if err != nil {
		f.Fatal(err)
	}
	ks := &Keys{algs: []string{"ES256", "EdDSA"}}
	ks.ring.Store(&KeyRing{Current: kES, byID: map[string]*Key{kES.ID: kES, kEd.ID: kEd}})
	fx := &fuzzFixture{v: NewVerifier(VerifierConfig{Issuer: testIssuer, Leeway: 30 * time.Second, Keys: ks}), minted: map[string]bool{}, now: now}
	for _, k := range []*Key{kES, kEd} {
		for _, scope := range [][]string{nil, {"read"}, {"read", "write"}} {
			tok, err := k.MintAccessToken(NewAccessClaims(testIssuer, "c-basic", "c-basic", []string{testRS}, scope, now, time.Hour))
			if err != nil {
				f.Fatal(err)
			}
			fx.toks = append(fx.toks, tok)
			fx.minted[tok[:strings.LastIndexByte(tok, '.')]] = true
		}
	}
	return fx
}

func FuzzVerify(f *testing.F) {
	fx := newFuzzFixture(f)
	enc := base64.RawURLEncoding
	for _, tok := range fx.toks {
		f.Add(tok)
		p := strings.Split(tok, ".")
		f.Add(p[0] + "." + p[1] + ".")
		f.Add(p[0] + "." + p[1])
		f.Add(tok + ".")
		f.Add(tok + "\n")
		f.Add(strings.Replace(tok, p[0], enc.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`)), 1))
		f.Add(strings.Replace(tok, p[0], enc.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt"}`)), 1))
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "eyJ.eyJ.", "{}", `{"payload":"","signatures":[]}`,
		strings.Repeat("A", MaxTokenBytes+1), "\x00.\x00.\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := fx.v.Verify(tok, fx.now)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			return
		}
		// Accepted: the signed part must be one we produced. (The
		// signature segment itself is not unique: base64 decoding
		// tolerates some variation, and ECDSA signatures are malleable.)
		dot := strings.LastIndexByte(tok, '.')
		if dot < 0 || !fx.minted[tok[:dot]] {
			t.Fatalf("Verify accepted a token we never minted: %q", tok)
		}
		if c.Issuer != testIssuer || c.ClientID != "c-basic" {
			t.Fatalf("claims = %+v", c)
		}
	})
}
