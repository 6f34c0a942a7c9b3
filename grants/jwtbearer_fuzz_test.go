package grants

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// FuzzJWTBearer gets past the split of the RFC 7523 grant: fuzzed header
// and claims JSON are signed with the trusted issuer's key (or with a key
// it does not trust, or not at all, by signer) and presented by c-jb. A
// refusal is a well-formed error and persists nothing; a token is issued
// only for an assertion of the trusted issuer, signed by its key, for
// this server, with a subject, exp and jti; its ext_sub is the asserted
// sub; and the assertion cannot be used twice.
func FuzzJWTBearer(f *testing.F) {
	fe := newFuzzEngine(f)
	for _, s := range []struct {
		signer      uint8
		hdr, claims string
		scope       string
	}{
		{0, `{"alg":"ES256","kid":"idp1","typ":"JWT"}`, `{"iss":"https://idp.partner.test","sub":"user-42","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI"}`, ""},
		{0, `{"alg":"ES256","kid":"idp1"}`, `{"iss":"https://idp.partner.test","sub":"user-42","aud":["https://as.test/oauth/token"],"exp":$EXP,"nbf":$NOW,"jti":"$JTI","email":"u@x.test"}`, "read"},
		{0, `{"alg":"ES256"}`, `{"iss":"https://idp.partner.test","sub":"a\u0000b","aud":"https://as.test","exp":$EXP,"jti":"$JTI"}`, "write"},
		{0, `{"alg":"ES256","kid":"idp1"}`, `{"iss":"https://idp.partner.test","sub":"user-42","aud":"https://as.test","exp":$EXP,"iat":$EXP,"jti":"$JTI"}`, "read write"},
		{0, `{"alg":"ES256","kid":"idp1","typ":"at+jwt"}`, `{"iss":"https://idp.partner.test","sub":"user-42","aud":"https://as.test","exp":$EXP,"jti":"$JTI"}`, ""},
		{1, `{"alg":"ES256","kid":"k1"}`, `{"iss":"https://idp.partner.test","sub":"user-42","aud":"https://as.test","exp":$EXP,"jti":"$JTI"}`, ""},
		{2, `{"alg":"none"}`, `{"iss":"https://idp.partner.test","sub":"user-42","aud":"https://as.test","exp":$EXP,"jti":"$JTI"}`, ""},
		{0, `{"alg":"ES256","kid":"idp1"}`, `{"iss":"https://idp.partner.test","sub":"user-42","aud":"https://as.test","exp":1e308,"jti":"$JTI"}`, "admin"},
	} {
		f.Add(s.signer, s.hdr, s.claims, s.scope)
	}
	f.Fuzz(func(t *testing.T, signer uint8, hdr, claims, scope string) {
		var tok string
		switch signer % 3 {
		case 0:
			tok = fe.signJSON(t, "ES256", caOtherKey, hdr, claims)
		case 1:
			tok = fe.signJSON(t, "ES256", caKey, hdr, claims) // a client's key, not the issuer's
		default:
			tok = fe.signJSON(t, "none", nil, hdr, claims)
		}
		v := url.Values{"grant_type": {GrantJWTBearer}, "client_id": {"c-jb"}, "client_secret": {postSecret}, "assertion": {tok}}
		if scope != "" {
			v.Set("scope", scope)
		}
		before := fe.st.Writes()
		w := serve(fe.Engine, tokenRequest(v.Encode()))
		if w.Code != 200 {
			checkFuzzRefusal(t, w)
			if kinds := fe.persisted(before); kinds != nil {
				t.Fatalf("refused assertion persisted %v", kinds)
			}
			return
		}
		if signer%3 != 0 {
			t.Fatalf("accepted an assertion the issuer did not sign: %s", tok)
		}
		// Claim names are case-sensitive (RFC 7519 §4): read them as a map.
		var c map[string]any
		payload := segmentJSON(t, tok, 1)
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatalf("accepted claims %s that encoding/json refuses: %v", payload, err)
		}
		sub, _ := c["sub"].(string)
		jti, _ := c["jti"].(string)
		_, exp := c["exp"].(float64)
		if c["iss"] != jbIssuer || sub == "" || jti == "" || !exp {
			t.Fatalf("accepted claims %s", payload)
		}
		if aud, ok := c["aud"].([]any); ok && len(aud) == 1 {
			c["aud"] = aud[0]
		}
		if c["aud"] != testIssuer && c["aud"] != testIssuer+TokenPath {
			t.Fatalf("accepted claims %s not for this server", payload)
		}
		m := checkToken(t, w)
		at, err := fe.verifier.Verify(m["access_token"].(string), time.Now())
		if err != nil {
			t.Fatalf("issued a token the engine does not verify: %v", err)
		}
		if at.ExtSub != sub || at.ExtIss != jbIssuer || at.ClientID != "c-jb" {
			t.Fatalf("token for %s: ext_iss %q ext_sub %q client %q", payload, at.ExtIss, at.ExtSub, at.ClientID)
		}
		if kinds := fe.persisted(before); !slices.Equal(kinds, []storage.Kind{storage.KindAssertions}) {
			t.Fatalf("accepted assertion persisted %v, want its jti only", kinds)
		}
		if w := serve(fe.Engine, tokenRequest(v.Encode())); w.Code != 400 {
			t.Fatalf("replayed assertion answered %d %s", w.Code, w.Body.String())
		}
	})
}
