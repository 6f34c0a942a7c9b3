package integration

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/internal/samltest"
)

// Ports of the SAML bearer test: 19700 authorization server, 19780/19781
// Caddy's HTTP and HTTPS ports.
const (
	samlIssuer   = "http://localhost:19700"
	samlTokenURL = samlIssuer + "/oauth/token"
	samlEntityID = "https://idp.partner.test/saml"
)

func startSAML(t *testing.T) *samltest.Signer {
	idp, err := samltest.NewSigner("idp.partner.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idp.Cert})
	if err := os.WriteFile(filepath.Join(dir, "idp.pem"), cert, 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddy(t, fmt.Sprintf(`{
	admin %s
	http_port 19780
	https_port 19781
	skip_install_trust
	grace_period 1ns
	oauth {
		issuer %s
		storage_path %s/oauth.db
		client partner-app {
			secret partner-secret-0123456789
			auth_method client_secret_post
			grant_types urn:ietf:params:oauth:grant-type:saml2-bearer
			scopes invoices:read invoices:write
		}
		client other-app {
			secret other-secret-0123456789
			auth_method client_secret_post
			grant_types urn:ietf:params:oauth:grant-type:saml2-bearer
		}
		saml_idp %s {
			cert_file %s/idp.pem
			allowed_clients partner-app
			scopes invoices:read
		}
	}
}
http://localhost:19700 {
	oauth_server
}
`, adminAddr, samlIssuer, dir, samlEntityID, dir))
	return idp
}

// TestSAMLBearerEndToEnd: signed assertions built with the same
// XML-signature library are exchanged for access tokens through Caddy;
// replays, wrapped, retargeted and DTD-carrying ones are refused (RFC 7522
// §3, XML signature wrapping).
func TestSAMLBearerEndToEnd(t *testing.T) {
	idp := startSAML(t)
	sign := func(mod func(*samltest.Assertion)) string {
		a := samltest.New(samlEntityID, "partner-user-7", samlIssuer)
		if mod != nil {
			mod(&a)
		}
		x, err := idp.Sign(a.XML())
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	post := func(client, secret, assertion string) (int, map[string]any) {
		return postToken(t, samlTokenURL, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:saml2-bearer"}, "assertion": {assertion},
			"client_id": {client}, "client_secret": {secret}})
	}
	partner := func(assertion string) (int, map[string]any) {
		return post("partner-app", "partner-secret-0123456789", assertion)
	}

	_, meta := getJSON(t, samlIssuer+"/.well-known/oauth-authorization-server")
	raw, _ := json.Marshal(meta["grant_types_supported"])
	var types []string
	_ = json.Unmarshal(raw, &types)
	if !slices.Contains(types, "urn:ietf:params:oauth:grant-type:saml2-bearer") {
		t.Errorf("grant_types_supported %v", types)
	}

	good := samltest.Encode(sign(nil))
	status, body := partner(good)
	if status != 200 {
		t.Fatalf("status %d: %v", status, body)
	}
	_, claims := jwtParts(t, body["access_token"].(string))
	if claims["ext_sub"] != "partner-user-7" || !strings.HasPrefix(claims["sub"].(string), "ext#") || claims["scope"] != "invoices:read" || claims["client_id"] != "partner-app" || body["refresh_token"] != nil {
		t.Fatalf("token %v, claims %v", body, claims)
	}

	injected := strings.Replace(sign(func(a *samltest.Assertion) { a.NameID = "admin@evil.test" }), ">admin@evil.test<", ">admin<!---->@evil.test<", 1)
	if status, body := partner(samltest.Encode(injected)); status != 200 {
		t.Errorf("comment in NameID: %d %v", status, body)
	} else if _, claims := jwtParts(t, body["access_token"].(string)); claims["ext_sub"] != "admin@evil.test" {
		t.Errorf("comment in NameID: ext_sub %v", claims["ext_sub"])
	}

	// The signed assertion moved inside an evil one with the same ID.
	var signedID string
	signed := sign(func(a *samltest.Assertion) { signedID = a.ID })
	wrapped := samltest.New(samlEntityID, "admin", samlIssuer)
	wrapped.ID = signedID
	wrapped.Extra = "<saml:Advice>" + signed + "</saml:Advice>"
	for name, a := range map[string]string{
		"replay":           good,
		"unsigned":         samltest.Encode(samltest.New(samlEntityID, "admin", samlIssuer).XML()),
		"tampered":         samltest.Encode(strings.Replace(signed, ">partner-user-7<", ">admin<", 1)),
		"signature wrap":   samltest.Encode(wrapped.XML()),
		"second assertion": samltest.Encode(signed + samltest.New(samlEntityID, "admin", samlIssuer).XML()),
		"other SP":         samltest.Encode(sign(func(a *samltest.Assertion) { a.Audience = "https://other-sp.test" })),
		"other recipient":  samltest.Encode(sign(func(a *samltest.Assertion) { a.Recipient = "https://other-sp.test/token" })),
		"expired":          samltest.Encode(sign(func(a *samltest.Assertion) { a.NotOnOrAfter = time.Now().Add(-5 * time.Minute) })),
		"DOCTYPE":          samltest.Encode(`<!DOCTYPE x [<!ENTITY a "b">]>` + sign(nil)),
		"garbage":          "not base64!",
	} {
		if status, body := partner(a); status != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	if status, body := post("other-app", "other-secret-0123456789", samltest.Encode(sign(nil))); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("client not allowed: %d %v", status, body)
	}
}
