package grants

import (
	"net/url"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

// FuzzServeToken sends the whole token endpoint fuzzed Content-Type and
// Authorization headers and bodies. It must never panic or answer a 5xx;
// a refusal is a well-formed RFC 6749 §5.2 JSON error and persists
// nothing (but the jti of a client assertion that authenticated, which is
// spent by design before the grant is checked); a success is a token this
// engine verifies.
func FuzzServeToken(f *testing.F) {
	fe := newFuzzEngine(f)
	const form = "application/x-www-form-urlencoded"
	basic := siBasicAuth("c-basic", siBasicSecret)
	add := func(ct, authz string, v url.Values) { f.Add(ct, authz, v.Encode()) }
	add(form, basic, url.Values{"grant_type": {GrantClientCredentials}})
	add(form, basic, url.Values{"grant_type": {GrantClientCredentials}, "scope": {"read"}, "resource": {"https://app.test"}})
	add(form, "", url.Values{"grant_type": {GrantPassword}, "client_id": {"c-ropc"}, "client_secret": {fuzzPWSecret},
		"username": {"alice"}, "password": {"alice-pw"}, "scope": {"openid read"}})
	add(form, "", url.Values{"grant_type": {GrantRefreshToken}, "client_id": {"c-ropc"}, "client_secret": {fuzzPWSecret},
		"refresh_token": {"rt." + tokens.RandomID(16) + "." + tokens.RandomID(32)}})
	add(form, siBasicAuth("c-web", webSecret), url.Values{"grant_type": {GrantAuthorizationCode}, "code": {tokens.RandomID(32)},
		"redirect_uri": {"https://client.test/cb"}, "code_verifier": {tokens.RandomID(43)}})
	add(form, "", url.Values{"grant_type": {GrantAuthorizationCode}, "client_id": {"c-pub"}, "code": {tokens.RandomID(32)},
		"redirect_uri": {"http://127.0.0.1/cb"}, "code_verifier": {tokens.RandomID(43)}})
	f.Add(form, "", caForm(fe.signJSON(f, "ES256", caKey, `{"alg":"ES256","kid":"k1"}`,
		`{"iss":"c-pkj","sub":"c-pkj","aud":"https://as.test","exp":$EXP,"iat":$NOW,"jti":"$JTI"}`)))
	add(form, "", url.Values{"grant_type": {GrantJWTBearer}, "client_id": {"c-jb"}, "client_secret": {postSecret},
		"assertion": {jbAssertion(f, nil)}})
	add(form, "", url.Values{"grant_type": {GrantTokenExchange}, "client_id": {"c-tx"}, "client_secret": {postSecret},
		"subject_token": {jbAssertion(f, nil)}, "subject_token_type": {TokenTypeJWT}, "audience": {"urn:svc:b"}})
	add(form+"; charset=utf-8", basic+"\n"+basic, url.Values{"grant_type": {GrantClientCredentials}})
	f.Add("text/plain", basic, "grant_type=client_credentials")
	f.Add("multipart/form-data; boundary=x", basic, "--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--x--")
	f.Add(form, "Basic Og==", "grant_type=client_credentials&grant_type=password")
	f.Add(form, "Bearer x", "grant_type=%zz&scope=%ff")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, contentType, authz, body string) {
		before := fe.st.Writes()
		w := serve(fe.Engine, fuzzRequest(TokenPath, contentType, authz, body))
		if w.Code != 200 {
			checkFuzzRefusal(t, w)
			if kinds := fe.persisted(before, storage.KindAssertions); kinds != nil {
				t.Fatalf("refused request (%s) persisted %v", w.Body.String(), kinds)
			}
			return
		}
		m := checkToken(t, w)
		tok, _ := m["access_token"].(string)
		if _, err := fe.verifier.Verify(tok, time.Now()); err != nil {
			t.Fatalf("issued an access token the engine does not verify: %v", err)
		}
		if m["token_type"] != "Bearer" {
			t.Fatalf("token_type = %v", m["token_type"])
		}
	})
}
