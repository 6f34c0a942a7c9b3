package grants

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// FuzzTokenExchange fuzzes the RFC 8693 subject token past the split:
// fuzzed header and claims JSON signed with this server's current key (a
// subject access or ID token), with the trusted issuer's key (a JWT), or
// sent as they are (by signer), under a fuzzed subject_token_type and
// extra form parameters (audience, resource, scope, actor_token…),
// presented by c-tx. A refusal is a well-formed error and persists
// nothing; an issued token verifies and never outlives the subject token,
// and for one of our tokens keeps its subject.
func FuzzTokenExchange(f *testing.F) {
	fe := newFuzzEngine(f)
	const (
		atHdr   = `{"alg":"ES256","kid":"$KID","typ":"at+jwt"}`
		atClaim = `{"iss":"https://as.test","sub":"alice","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI","client_id":"c-web","scope":"read write"}`
		jwtHdr  = `{"alg":"ES256","kid":"idp1","typ":"JWT"}`
		jwtCl   = `{"iss":"https://idp.partner.test","sub":"user-42","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI"}`
	)
	actor, err := fe.keyRing().Current.MintAccessToken(tokens.NewAccessClaims(testIssuer, "svc-a", "svc-a", []string{testIssuer}, nil, time.Now(), time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	withActor := url.Values{"actor_token_type": {TokenTypeAccessToken}, "actor_token": {actor}}.Encode()
	for _, s := range []struct {
		signer           uint8
		hdr, claims, typ string
		extra            string
	}{
		{0, atHdr, atClaim, TokenTypeAccessToken, ""},
		{0, atHdr, atClaim, TokenTypeAccessToken, "audience=urn%3Asvc%3Ab&scope=read"},
		{0, atHdr, `{"iss":"https://as.test","sub":"alice","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI","client_id":"c-web","scope":"read","may_act":{"sub":"svc-a"}}`,
			TokenTypeAccessToken, withActor},
		{0, atHdr, atClaim, TokenTypeAccessToken, "actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&actor_token=x.y.z"},
		{0, atHdr, `{"iss":"https://as.test","sub":"alice","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI","client_id":"c-web","act":{"sub":"svc-b","act":{"sub":"svc-a"}}}`, TokenTypeAccessToken, "resource=https%3A%2F%2Fb.test"},
		{0, `{"alg":"ES256","kid":"$KID","typ":"JWT"}`, `{"iss":"https://as.test","sub":"alice","aud":"c-tx","azp":"c-tx","exp":$EXP,"iat":$NOW,"auth_time":$NOW}`, TokenTypeIDToken, ""},
		{0, atHdr, `{"iss":"https://as.test","sub":"nobody","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI","client_id":"c-web"}`, TokenTypeAccessToken, ""},
		{1, jwtHdr, jwtCl, TokenTypeJWT, ""},
		{1, jwtHdr, jwtCl, TokenTypeJWT, "audience=urn%3Asvc%3Ab&audience=urn%3Asvc%3Ab"},
		{1, jwtHdr, jwtCl, TokenTypeAccessToken, ""},
		{2, "", "eyJhbGciOiJFUzI1NiJ9.e30.AA", TokenTypeAccessToken, ""},
		{2, "", "", TokenTypeJWT, "requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token"},
	} {
		f.Add(s.signer, s.hdr, s.claims, s.typ, s.extra)
	}
	f.Fuzz(func(t *testing.T, signer uint8, hdr, claims, typ, extra string) {
		var tok string
		switch signer % 3 {
		case 0:
			tok = signRaw(t, fe.keyRing().Current, fe.fuzzPlaceholders(hdr), fe.fuzzPlaceholders(claims))
		case 1:
			tok = fe.signJSON(t, "ES256", caOtherKey, hdr, claims)
		default:
			tok = claims
		}
		v, err := url.ParseQuery(extra)
		if err != nil {
			v = url.Values{}
		}
		for _, k := range []string{"grant_type", "client_id", "client_secret", "subject_token", "subject_token_type"} {
			delete(v, k)
		}
		v.Set("grant_type", GrantTokenExchange)
		v.Set("client_id", "c-tx")
		v.Set("client_secret", postSecret)
		v.Set("subject_token", tok)
		v.Set("subject_token_type", typ)
		before := fe.st.Writes()
		w := serve(fe.Engine, tokenRequest(v.Encode()))
		if w.Code != 200 {
			checkFuzzRefusal(t, w)
			if kinds := fe.persisted(before); kinds != nil {
				t.Fatalf("refused exchange persisted %v", kinds)
			}
			return
		}
		m := checkToken(t, w)
		if m["issued_token_type"] != TokenTypeAccessToken {
			t.Fatalf("issued_token_type = %v", m["issued_token_type"])
		}
		at, err := fe.verifier.Verify(m["access_token"].(string), time.Now())
		if err != nil {
			t.Fatalf("issued a token the engine does not verify: %v", err)
		}
		if signer%3 == 2 {
			return // a raw token can only be one the fuzzer copied
		}
		var c map[string]any
		payload := segmentJSON(t, tok, 1)
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatalf("accepted claims %s that encoding/json refuses: %v", payload, err)
		}
		exp, ok := c["exp"].(float64)
		if !ok || float64(at.ExpiresAt) > exp {
			t.Fatalf("exchanged token expires at %d, after its subject token %s", at.ExpiresAt, payload)
		}
		if signer%3 == 0 && at.Subject != c["sub"] {
			t.Fatalf("exchanged token for %q from a subject token %s", at.Subject, payload)
		}
		if signer%3 == 1 && (at.ExtSub != c["sub"] || at.ExtIss != jbIssuer) {
			t.Fatalf("exchanged token ext %q %q from %s", at.ExtIss, at.ExtSub, payload)
		}
	})
}
