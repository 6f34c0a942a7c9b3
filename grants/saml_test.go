package grants

import (
	"crypto"
	"encoding/base64"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/internal/samltest"
	"github.com/oauthgate/caddy-oauthgate/storage"
)

const samlIdP = "https://idp.saml.test/metadata"

var (
	samlKeysOnce        sync.Once
	samlIdPKey, samlBad *samltest.Signer
)

// samlSigners are the trusted IdP's signer and another one with its own
// self-signed certificate.
func samlSigners(t testing.TB) (idp, other *samltest.Signer) {
	samlKeysOnce.Do(func() {
		var err error
		if samlIdPKey, err = samltest.NewSigner("idp", 24*time.Hour); err != nil {
			panic(err)
		}
		if samlBad, err = samltest.NewSigner("idp", 24*time.Hour); err != nil {
			panic(err)
		}
	})
	return samlIdPKey, samlBad
}

func samlFields(mod func(*samltest.Assertion)) samltest.Assertion {
	a := samltest.New(samlIdP, "user-42", testIssuer)
	if mod != nil {
		mod(&a)
	}
	return a
}

// samlSigned is the signed XML of an assertion.
func samlSigned(t testing.TB, s *samltest.Signer, mod func(*samltest.Assertion)) string {
	t.Helper()
	x, err := s.Sign(samlFields(mod).XML())
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// samlGood is a valid encoded assertion.
func samlGood(t testing.TB, mod func(*samltest.Assertion)) string {
	idp, _ := samlSigners(t)
	return samltest.Encode(samlSigned(t, idp, mod))
}

func samlPost(e *Engine, client, assertion string, kv ...string) *httptest.ResponseRecorder {
	v := url.Values{"grant_type": {GrantSAML2Bearer}, "client_id": {client}, "client_secret": {postSecret}}
	if assertion != "" {
		v.Set("assertion", assertion)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return serve(e, tokenRequest(v.Encode()))
}

func TestSAMLBearerGrant(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withSAML(nil))
	idp, other := samlSigners(t)
	now := time.Now()
	signed := samlSigned(t, idp, nil)
	enc := samltest.Encode
	// The signed assertion, moved inside an evil one (XML signature wrapping).
	evil := func(id string) string {
		return enc(samlFields(func(a *samltest.Assertion) {
			a.NameID, a.ID = "admin", id
			a.Extra = "<saml:Advice>" + signed + "</saml:Advice>"
		}).XML())
	}
	origID := between(signed, `ID="`, `"`)
	response := func(inner string) string {
		return `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r1" Version="2.0">` + inner + `</samlp:Response>`
	}
	signedResponse, err := idp.Sign(response(samlFields(nil).XML()))
	if err != nil {
		t.Fatal(err)
	}
	lines := func(s string) string {
		var b strings.Builder
		for len(s) > 76 {
			b.WriteString(s[:76] + "\r\n")
			s = s[76:]
		}
		return b.String() + s
	}
	tests := []struct {
		name      string
		client    string
		assertion string
		kv        []string
		status    int
		code      string
		reason    string // in the refusal's log line
	}{
		{"valid", "c-saml", samlGood(t, nil), nil, 200, "", ""},
		{"padded base64url", "c-saml", base64.URLEncoding.EncodeToString([]byte(samlSigned(t, idp, nil))), nil, 200, "", ""},
		{"audience token endpoint", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.Audience = testIssuer + TokenPath }), nil, 200, "", ""},
		{"no conditions window", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.NotBefore, a.NotOnOrAfter = time.Time{}, time.Time{} }), nil, 200, "", ""},
		{"SAML-01 no assertion", "c-saml", "", nil, 400, CodeInvalidRequest, ""},
		{"SAML-01 garbage base64", "c-saml", "!!not base64!!", nil, 400, CodeInvalidGrant, "assertion is not base64url"},
		{"SAML-01 standard alphabet", "c-saml", base64.StdEncoding.EncodeToString([]byte("\xfb\xff" + signed)), nil, 400, CodeInvalidGrant, "assertion is not base64url"},
		{"SAML-01 line-wrapped base64", "c-saml", lines(samlGood(t, nil)), nil, 400, CodeInvalidGrant, "assertion is not base64url"},
		{"SAML-01 not XML", "c-saml", enc("hello"), nil, 400, CodeInvalidGrant, "assertion has text outside the root element"},
		{"SAML-01 samlp:Response wrapper", "c-saml", enc(response(signed)), nil, 400, CodeInvalidGrant, "the root element is not a saml:Assertion"},
		{"SAML-01 signed samlp:Response", "c-saml", enc(signedResponse), nil, 400, CodeInvalidGrant, "the root element is not a saml:Assertion"},
		{"SAML-02 unknown issuer", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.Issuer = "https://evil.test" }), nil, 400, CodeInvalidGrant, "issuer is not a configured identity provider"},
		{"SAML-03 audience other SP", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.Audience = "https://other-sp.test" }), nil, 400, CodeInvalidGrant, "audience does not name this server"},
		{"SAML-03 audience with slash", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.Audience = testIssuer + "/" }), nil, 400, CodeInvalidGrant, "audience does not name this server"},
		{"SAML-03 second restriction elsewhere", "c-saml", enc(signXML(t, strings.Replace(samlFields(nil).XML(), "</saml:AudienceRestriction>",
			"</saml:AudienceRestriction><saml:AudienceRestriction><saml:tokens.Audience>https://other-sp.test</saml:tokens.Audience></saml:AudienceRestriction>", 1))), nil, 400, CodeInvalidGrant, "audience does not name this server"},
		{"SAML-02 no Issuer", "c-saml", enc(signXML(t, cut(samlFields(nil).XML(), "<saml:Issuer>", "</saml:Issuer>"))), nil, 400, CodeInvalidGrant, "one Issuer is required"},
		{"SAML-04 no Subject", "c-saml", enc(signXML(t, cut(samlFields(nil).XML(), "<saml:Subject>", "</saml:Subject>"))), nil, 400, CodeInvalidGrant, "one Subject is required"},
		{"SAML-04 no NameID", "c-saml", enc(signXML(t, cut(samlFields(nil).XML(), "<saml:NameID", "</saml:NameID>"))), nil, 400, CodeInvalidGrant, "one NameID is required"},
		{"SAML-08 version 1.1", "c-saml", enc(signXML(t, strings.Replace(samlFields(nil).XML(), `Version="2.0"`, `Version="1.1"`, 1))), nil, 400, CodeInvalidGrant, "version is not 2.0"},
		{"SAML-04 empty NameID", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.NameID = "" }), nil, 400, CodeInvalidGrant, "no usable subject"},
		{"SAML-05 conditions expired", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.NotOnOrAfter = now.Add(-300 * time.Second) }), nil, 400, CodeInvalidGrant, "expired"},
		{"SAML-06 confirmation expired", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.ConfirmUntil = now.Add(-300 * time.Second) }), nil, 400, CodeInvalidGrant, "bearer confirmation expired"},
		{"SAML-06 confirmation without expiry", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.ConfirmUntil = time.Time{} }), nil, 400, CodeInvalidGrant, "SubjectConfirmationData@NotOnOrAfter is required"},
		{"SAML-06 confirmation too long", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.ConfirmUntil = now.Add(time.Hour) }), nil, 400, CodeInvalidGrant, "bearer confirmation lifetime too long"},
		{"SAML-06 wrong recipient", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.Recipient = "https://other.test/token" }), nil, 400, CodeInvalidGrant, "recipient is not this token endpoint"},
		{"SAML-06 recipient is the issuer", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.Recipient = testIssuer }), nil, 400, CodeInvalidGrant, "recipient is not this token endpoint"},
		{"SAML-06 holder-of-key", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.Method = samltest.HolderOfKey }), nil, 400, CodeInvalidGrant, "no bearer SubjectConfirmation"},
		{"SAML-07 unsigned", "c-saml", enc(samlFields(nil).XML()), nil, 400, CodeInvalidGrant, "Missing signature referencing the top-level element"},
		{"SAML-07 wrong certificate", "c-saml", samltest.Encode(samlSigned(t, other, nil)), nil, 400, CodeInvalidGrant, "Could not verify certificate against trusted certs"},
		{"SAML-07 tampered after signing", "c-saml", enc(strings.Replace(signed, ">user-42<", ">admin<", 1)), nil, 400, CodeInvalidGrant, "Signature could not be verified"},
		{"SAML-07 audience tampered after signing", "c-saml", enc(strings.Replace(samlSigned(t, idp, func(a *samltest.Assertion) { a.Audience = "https://other-sp.test" }), "https://other-sp.test", testIssuer, 1)), nil, 400, CodeInvalidGrant, "Signature could not be verified"},
		{"SAML-07 XSW signed assertion in Advice, same ID", "c-saml", evil(origID), nil, 400, CodeInvalidGrant, "Signature could not be verified"},
		{"SAML-07 XSW signed assertion in Advice, other ID", "c-saml", evil("_evil"), nil, 400, CodeInvalidGrant, "Missing signature referencing the top-level element"},
		{"SAML-07 XSW response extensions", "c-saml", enc(response(`<samlp:Extensions>` + signed + `</samlp:Extensions>` + samlFields(func(a *samltest.Assertion) { a.NameID = "admin" }).XML())), nil, 400, CodeInvalidGrant, "the root element is not a saml:Assertion"},
		{"SAML-07 second unsigned assertion after", "c-saml", enc(signed + samlFields(func(a *samltest.Assertion) { a.NameID = "admin" }).XML()), nil, 400, CodeInvalidGrant, "assertion has more than one root element"},
		{"SAML-07 second unsigned assertion before", "c-saml", enc(samlFields(func(a *samltest.Assertion) { a.NameID = "admin" }).XML() + signed), nil, 400, CodeInvalidGrant, "assertion has more than one root element"},
		{"SAML-07 unsigned assertion inserted inside", "c-saml", enc(strings.Replace(signed, "</saml:Assertion>", "<saml:Advice>"+samlFields(func(a *samltest.Assertion) { a.NameID = "admin" }).XML()+"</saml:Advice></saml:Assertion>", 1)), nil, 400, CodeInvalidGrant, "Signature could not be verified"},
		{"SAML-07 signature removed", "c-saml", enc(signed[:strings.Index(signed, "<ds:Signature")] + "</saml:Assertion>"), nil, 400, CodeInvalidGrant, "Missing signature referencing the top-level element"},
		{"SAML-08 NotBefore in the future", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.NotBefore = now.Add(600 * time.Second) }), nil, 400, CodeInvalidGrant, "not yet valid"},
		{"SAML-08 issued in the future", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.IssueInstant = now.Add(600 * time.Second) }), nil, 400, CodeInvalidGrant, "issued in the future"},
		{"SAML-08 no IssueInstant", "c-saml", samlGood(t, func(a *samltest.Assertion) { a.IssueInstant = time.Time{} }), nil, 400, CodeInvalidGrant, "Assertion@IssueInstant is required"},
		{"A-25 DOCTYPE", "c-saml", enc(`<?xml version="1.0"?><!DOCTYPE saml:Assertion>` + signed), nil, 400, CodeInvalidGrant, "assertion has a DTD or declaration"},
		{"A-25 entity expansion", "c-saml", enc(`<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>` + strings.Replace(signed, ">user-42<", ">&b;<", 1)), nil, 400, CodeInvalidGrant, "assertion has a DTD or declaration"},
		{"A-25 external entity", "c-saml", enc(`<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` + strings.Replace(signed, ">user-42<", ">&xxe;<", 1)), nil, 400, CodeInvalidGrant, "assertion has a DTD or declaration"},
		{"A-25 lowercase doctype", "c-saml", enc(`<!doctype x>` + signed), nil, 400, CodeInvalidGrant, "assertion has a DTD or declaration"},
		{"oversize", "c-saml", enc(strings.Replace(signed, "</saml:Assertion>", "<!--"+strings.Repeat("x", MaxSAMLAssertionBytes)+"--></saml:Assertion>", 1)), nil, 400, CodeInvalidGrant, "assertion too large"},
		{"client not allowed for the IdP", "c-saml2", samlGood(t, nil), nil, 400, CodeInvalidGrant, ""},
		{"client not registered for the grant", "c-post", samlGood(t, nil), nil, 400, CodeUnauthorizedClient, ""},
		{"bad client credentials", "c-saml", samlGood(t, nil), []string{"client_secret", "wrong"}, 401, CodeInvalidClient, ""},
		{"scope beyond the IdP's", "c-saml", samlGood(t, nil), []string{"scope", "admin"}, 400, CodeInvalidScope, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := countRecords(t, e, storage.KindAssertions)
			w := samlPost(e, tt.client, tt.assertion, tt.kv...)
			if tt.status == 200 {
				m := checkToken(t, w)
				_, claims := segments(t, m["access_token"].(string))
				if claims["ext_sub"] != "user-42" || claims["client_id"] != "c-saml" || claims["scope"] != "read write" {
					t.Errorf("claims %v", claims)
				}
				if _, ok := m["refresh_token"]; ok {
					t.Error("refresh token issued")
				}
				return
			}
			checkError(t, w, tt.status, tt.code)
			if _, _, err := e.verifySAMLAssertion(tt.assertion, time.Now()); tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)) {
				t.Errorf("verification error %v, want one containing %q", err, tt.reason)
			}
			if after := countRecords(t, e, storage.KindAssertions); after != before {
				t.Errorf("refused assertion recorded (%d -> %d)", before, after)
			}
		})
	}
}

// signXML signs raw assertion XML with the trusted IdP's key.
func signXML(t testing.TB, x string) string {
	t.Helper()
	idp, _ := samlSigners(t)
	signed, err := idp.Sign(x)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// cut removes the first part of s from start through end.
func cut(s, start, end string) string {
	i := strings.Index(s, start)
	j := i + strings.Index(s[i:], end) + len(end)
	return s[:i] + s[j:]
}

func between(s, start, end string) string {
	i := strings.Index(s, start) + len(start)
	return s[i : i+strings.Index(s[i:], end)]
}

// A comment inside the NameID neither truncates nor changes the
// subject, whether it was there when signing or inserted afterwards
// (exclusive canonicalisation drops comments, so the signature holds).
func TestSAMLCommentInjection(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withSAML(nil))
	idp, _ := samlSigners(t)
	after := strings.Replace(samlSigned(t, idp, func(a *samltest.Assertion) { a.NameID = "admin@evil" }), ">admin@evil<", ">admin<!---->@evil<", 1)
	if !strings.Contains(after, "admin<!---->@evil") {
		t.Fatal("comment not inserted")
	}
	before, err := idp.Sign(strings.Replace(samlFields(func(a *samltest.Assertion) { a.NameID = "admin@evil" }).XML(), ">admin@evil<", ">admin<!---->@evil<", 1))
	if err != nil {
		t.Fatal(err)
	}
	for name, x := range map[string]string{"inserted after signing": after, "signed with the comment": before} {
		t.Run(name, func(t *testing.T) {
			m := checkToken(t, samlPost(e, "c-saml", samltest.Encode(x)))
			if _, claims := segments(t, m["access_token"].(string)); claims["ext_sub"] != "admin@evil" {
				t.Errorf("ext_sub = %v, want admin@evil", claims["ext_sub"])
			}
		})
	}
}

// SHA-1 signatures are refused (Go's x509 no longer checks them).
func TestSAMLSHA1Refused(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withSAML(nil))
	idp, _ := samlSigners(t)
	sha1 := *idp
	sha1.Hash = crypto.SHA1
	x, err := sha1.Sign(samlFields(nil).XML())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(x, "rsa-sha1") {
		t.Fatal("not signed with SHA-1")
	}
	checkError(t, samlPost(e, "c-saml", samltest.Encode(x)), 400, CodeInvalidGrant)
}

// RFC 7521 §8.2: an assertion works once.
func TestSAMLReplay(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withSAML(nil))
	a := samlGood(t, nil)
	checkToken(t, samlPost(e, "c-saml", a))
	checkError(t, samlPost(e, "c-saml", a), 400, CodeInvalidGrant)
	// The same ID re-signed with new content is still the same assertion.
	id := between(string(mustDecode(t, a)), `ID="`, `"`)
	checkError(t, samlPost(e, "c-saml", samlGood(t, func(x *samltest.Assertion) { x.ID = id; x.NameID = "other" })), 400, CodeInvalidGrant)
}

func mustDecode(t testing.TB, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSAMLSubjectAttribute(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withSAML(func(p *SAMLIdP) { p.SubjectAttribute = "uid" }))
	m := checkToken(t, samlPost(e, "c-saml", samlGood(t, func(a *samltest.Assertion) { a.Attributes = map[string]string{"uid": "u42", "mail": "u@x.test"} }), "scope", "read"))
	if _, claims := segments(t, m["access_token"].(string)); claims["ext_sub"] != "u42" || claims["scope"] != "read" {
		t.Errorf("claims %v", claims)
	}
	checkError(t, samlPost(e, "c-saml", samlGood(t, nil)), 400, CodeInvalidGrant)
	checkError(t, samlPost(e, "c-saml", samlGood(t, func(a *samltest.Assertion) {
		a.Extra = `<saml:AttributeStatement><saml:Attribute Name="uid"><saml:AttributeValue>a</saml:AttributeValue><saml:AttributeValue>b</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>`
	})), 400, CodeInvalidGrant)
}

// The whole request body is capped before the form is read.
func TestSAMLBodyTooLarge(t *testing.T) {
	t.Parallel()
	e := newEngine(t, ccFixture(), withSAML(nil))
	w := samlPost(e, "c-saml", strings.Repeat("A", MaxBodyBytes))
	checkError(t, w, 413, CodeInvalidRequest)
}

func TestSAMLConfig(t *testing.T) {
	t.Parallel()
	idp, _ := samlSigners(t)
	cert := idp.Certificate()
	sc := &Client{ClientSpec: ClientSpec{ID: "c-saml", AuthMethod: AuthSecretPost, GrantTypes: []string{GrantSAML2Bearer}}, SecretHash: HashSecret(postSecret)}
	cc := &Client{ClientSpec: ClientSpec{ID: "c-cc", AuthMethod: AuthSecretPost, GrantTypes: []string{GrantClientCredentials}}, SecretHash: HashSecret(postSecret)}
	tests := []struct {
		name string
		idps []*SAMLIdP
		want string
	}{
		{"no entity ID", []*SAMLIdP{{Certificate: cert, AllowedClients: []string{"c-saml"}}}, "entity ID"},
		{"no certificate", []*SAMLIdP{{EntityID: samlIdP, AllowedClients: []string{"c-saml"}}}, "cert_file"},
		{"no clients", []*SAMLIdP{{EntityID: samlIdP, Certificate: cert}}, "allowed_clients"},
		{"unknown client", []*SAMLIdP{{EntityID: samlIdP, Certificate: cert, AllowedClients: []string{"nobody"}}}, "not defined"},
		{"client without the grant", []*SAMLIdP{{EntityID: samlIdP, Certificate: cert, AllowedClients: []string{"c-cc"}}}, "grant_types"},
		{"twice", []*SAMLIdP{{EntityID: samlIdP, Certificate: cert, AllowedClients: []string{"c-saml"}}, {EntityID: samlIdP, Certificate: cert, AllowedClients: []string{"c-saml"}}}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewEngine(Config{Issuer: testIssuer, AccessTokenTTL: time.Minute, Clients: []*Client{sc, cc}, SAMLIdPs: tt.idps})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewEngine err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	pub := &Client{ClientSpec: ClientSpec{ID: "c-pub", AuthMethod: AuthNone, GrantTypes: []string{GrantSAML2Bearer}}}
	if err := pub.Validate(); err == nil {
		t.Error("a public client may use the SAML bearer grant")
	}
	e := newEngine(t, ccFixture(), withSAML(nil))
	if !contains(testMetadata(t, e).GrantTypesSupported, GrantSAML2Bearer) {
		t.Error("saml2-bearer not in discovery")
	}
	if _, ok := newEngine(t, ccFixture()).grants[GrantSAML2Bearer]; ok {
		t.Error("saml2-bearer offered without a client for it")
	}
}

// FuzzSAMLAssertion: whatever the assertion, verification never panics
// and never accepts a document that carries no signature. Minimizing a
// signed input takes long; run it with -fuzzminimizetime 1x.
func FuzzSAMLAssertion(f *testing.F) {
	idp, _ := samlSigners(f)
	signed := samlSigned(f, idp, nil)
	for _, s := range []string{
		signed,
		samlFields(nil).XML(),
		strings.Replace(signed, ">user-42<", ">admin<!---->@evil<", 1),
		`<!DOCTYPE x [<!ENTITY a "a">]>` + signed,
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">` + signed + `</samlp:Response>`,
		"", "<", "<a/>", "<saml:Assertion/>",
	} {
		f.Add(samltest.Encode(s))
	}
	e := newEngine(f, ccFixture(), withSAML(nil))
	f.Fuzz(func(t *testing.T, raw string) {
		_, a, err := e.verifySAMLAssertion(raw, time.Now())
		if err != nil {
			return
		}
		b, derr := decodeSAMLAssertion(raw)
		if derr != nil || !strings.Contains(string(b), "SignatureValue") || a.Subject == "" {
			t.Fatalf("accepted %q", raw)
		}
	})
}
