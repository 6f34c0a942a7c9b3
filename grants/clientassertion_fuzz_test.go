package grants

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// FuzzClientAssertion gets past the split: it signs fuzzed header and
// claims JSON with a key the engine trusts (c-pkj's ES256 key, c-jwt's
// HMAC secret, or nothing, by signer), so the fuzzer reaches the claim
// checks, and sends the assertion to the token endpoint. A refusal is
// 401 invalid_client and persists nothing; an accepted assertion names
// the signing client in iss and sub, is for this issuer, carries exp and
// jti, and cannot be used twice.
func FuzzClientAssertion(f *testing.F) {
	fe := newFuzzEngine(f)
	for _, s := range []struct {
		signer       uint8
		hdr, claims  string
		formClientID string
	}{
		{0, `{"alg":"ES256","kid":"k1","typ":"JWT"}`, `{"iss":"c-pkj","sub":"c-pkj","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI"}`, ""},
		{0, `{"alg":"ES256","kid":"k1"}`, `{"iss":"c-pkj","sub":"c-pkj","aud":["https://as.test"],"exp":$EXP,"nbf":$NOW,"jti":"$JTI"}`, "c-pkj"},
		{0, `{"alg":"ES256","kid":"k1"}`, `{"iss":"c-pkj","sub":"c-pkj","aud":"https://as.test/oauth/token","exp":$EXP,"jti":"$JTI"}`, ""},
		{0, `{"alg":"ES256","kid":"k1"}`, `{"ISS":"c-pkj","Sub":"c-pkj","aud":"https://as.test","exp":$EXP,"jti":"$JTI"}`, ""},
		{0, `{"alg":"ES256","typ":"client-authentication+jwt"}`, `{"iss":"c-pkj","sub":"c-pkj","aud":"https://as.test","exp":$EXP,"jti":"$JTI"}`, ""},
		{1, `{"alg":"HS256"}`, `{"iss":"c-jwt","sub":"c-jwt","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI"}`, ""},
		{1, `{"alg":"HS512","typ":"JWT"}`, `{"iss":"c-jwt","sub":"c-jwt","aud":"https://as.test","exp":$EXP,"jti":"$JTI"}`, "c-jwt"},
		{1, `{"alg":"HS256"}`, `{"iss":"c-jwt","sub":"c-jwt","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI","iss":"c-pkj"}`, ""},
		{2, `{"alg":"none"}`, `{"iss":"c-pkj","sub":"c-pkj","aud":"https://as.test","exp":$EXP,"jti":"$JTI"}`, ""},
		{0, `{"alg":"ES256","kid":"k1","crit":["exp"]}`, `{"iss":"c-pkj","sub":"c-pkj","aud":"https://as.test","exp":1e999,"jti":"$JTI"}`, ""},
		{0, `{"alg":"ES256","kid":"k1"}`, `{"iss":"c-pkj","sub":"c-pkj","aud":"https://as.test","exp":$EXP,"iat":$EXP,"jti":""}`, ""},
	} {
		f.Add(s.signer, s.hdr, s.claims, s.formClientID)
	}
	f.Fuzz(func(t *testing.T, signer uint8, hdr, claims, formClientID string) {
		var tok, client string
		switch signer % 3 {
		case 0:
			tok, client = fe.signJSON(t, "ES256", caKey, hdr, claims), "c-pkj"
		case 1:
			// Sign with the HMAC algorithm the header names, so a header
			// asking for HS384 or HS512 is not refused for its signature.
			var h struct{ Alg string }
			_ = json.Unmarshal([]byte(hdr), &h)
			alg := "HS256"
			if h.Alg == "HS384" || h.Alg == "HS512" {
				alg = h.Alg
			}
			tok, client = fe.signJSON(t, alg, []byte(caSecret), hdr, claims), "c-jwt"
		default:
			tok = fe.signJSON(t, "none", nil, hdr, claims)
		}
		v := url.Values{"grant_type": {GrantClientCredentials}, "client_assertion_type": {ClientAssertionType}, "client_assertion": {tok}}
		if formClientID != "" {
			v.Set("client_id", formClientID)
		}
		before := fe.st.Writes()
		w := serve(fe.Engine, tokenRequest(v.Encode()))
		if w.Code != 200 {
			checkFuzzRefusal(t, w)
			if kinds := fe.persisted(before, storage.KindAssertions); kinds != nil {
				t.Fatalf("refused request persisted %v", kinds)
			}
			if w.Code == 401 {
				if kinds := fe.persisted(before); kinds != nil {
					t.Fatalf("refused assertion persisted %v", kinds)
				}
			}
			return
		}
		// Authenticated: check the claims independently of the engine's
		// decoder.
		if client == "" {
			t.Fatalf("an unsigned assertion authenticated (%d %s)", w.Code, w.Body.String())
		}
		// Claim names are case-sensitive (RFC 7519 §4): read them as a map.
		var c map[string]any
		payload := segmentJSON(t, tok, 1)
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatalf("accepted claims %s that encoding/json refuses: %v", payload, err)
		}
		jti, _ := c["jti"].(string)
		_, exp := c["exp"].(float64)
		if c["iss"] != client || c["sub"] != client || jti == "" || !exp {
			t.Fatalf("accepted claims %s for client %s", payload, client)
		}
		if formClientID != "" && formClientID != client {
			t.Fatalf("accepted an assertion of %s with client_id %q", client, formClientID)
		}
		// aud names this server alone (the issuer), as a string or a
		// one-element array.
		if aud, ok := c["aud"].([]any); ok && len(aud) == 1 {
			c["aud"] = aud[0]
		}
		if c["aud"] != testIssuer {
			t.Fatalf("accepted claims %s not for this issuer alone", payload)
		}
		if kinds := fe.persisted(before); !slices.Equal(kinds, []storage.Kind{storage.KindAssertions}) {
			t.Fatalf("accepted assertion persisted %v, want its jti only", kinds)
		}
		// Single use: the same assertion again is refused.
		if w := serve(fe.Engine, tokenRequest(v.Encode())); w.Code != 401 {
			t.Fatalf("replayed assertion answered %d %s", w.Code, w.Body.String())
		}
	})
}
