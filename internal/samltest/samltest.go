// Package samltest builds and signs SAML 2.0 bearer assertions (RFC 7522)
// with the same XML-signature library the server verifies them with. It
// serves the tests and the example generator in examples/saml.
package samltest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // for Hash: crypto.SHA1 in tests of its refusal
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"math/big"
	"os"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

// Method names of SubjectConfirmation.
const (
	Bearer      = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
	HolderOfKey = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
)

// Assertion is the content of one assertion. Zero times are left out.
type Assertion struct {
	ID, Issuer, NameID, Audience, Recipient, Method string
	IssueInstant, NotBefore, NotOnOrAfter           time.Time
	// ConfirmUntil is SubjectConfirmationData@NotOnOrAfter.
	ConfirmUntil time.Time
	// Attributes become one AttributeStatement, one value each.
	Attributes map[string]string
	// Extra is raw XML appended inside the Assertion.
	Extra string
}

// New is a valid assertion from issuer about subject for the token
// endpoint of the authorization server as, confirmed for five minutes.
func New(issuer, subject, as string) Assertion {
	now := time.Now().UTC()
	return Assertion{
		ID: "_" + randomHex(16), Issuer: issuer, NameID: subject, Audience: as,
		Recipient: as + "/oauth/token", Method: Bearer,
		IssueInstant: now, NotBefore: now.Add(-time.Minute), NotOnOrAfter: now.Add(5 * time.Minute),
		ConfirmUntil: now.Add(5 * time.Minute),
	}
}

// XML is the unsigned assertion.
func (a Assertion) XML() string {
	esc := html.EscapeString
	attr := func(name string, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return fmt.Sprintf(` %s="%s"`, name, t.UTC().Format("2006-01-02T15:04:05Z"))
	}
	statement := ""
	if len(a.Attributes) > 0 {
		statement = "<saml:AttributeStatement>"
		for k, v := range a.Attributes {
			statement += fmt.Sprintf(`<saml:Attribute Name="%s"><saml:AttributeValue>%s</saml:AttributeValue></saml:Attribute>`, esc(k), esc(v))
		}
		statement += "</saml:AttributeStatement>"
	}
	return fmt.Sprintf(`<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="%s" Version="2.0"%s>`+
		`<saml:Issuer>%s</saml:Issuer>`+
		`<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">%s</saml:NameID>`+
		`<saml:SubjectConfirmation Method="%s"><saml:SubjectConfirmationData Recipient="%s"%s/></saml:SubjectConfirmation></saml:Subject>`+
		`<saml:Conditions%s%s><saml:AudienceRestriction><saml:Audience>%s</saml:Audience></saml:AudienceRestriction></saml:Conditions>`+
		`%s%s</saml:Assertion>`,
		esc(a.ID), attr("IssueInstant", a.IssueInstant), esc(a.Issuer), esc(a.NameID),
		esc(a.Method), esc(a.Recipient), attr("NotOnOrAfter", a.ConfirmUntil),
		attr("NotBefore", a.NotBefore), attr("NotOnOrAfter", a.NotOnOrAfter), esc(a.Audience),
		statement, a.Extra)
}

// Signer signs with an RSA key and names its certificate in KeyInfo.
type Signer struct {
	Key  *rsa.PrivateKey
	Cert []byte // DER
	// Hash is the digest and signature hash. Default: SHA-256.
	Hash crypto.Hash
}

// GetKeyPair implements dsig.X509KeyStore.
func (s *Signer) GetKeyPair() (*rsa.PrivateKey, []byte, error) { return s.Key, s.Cert, nil }

// Certificate is the parsed certificate.
func (s *Signer) Certificate() *x509.Certificate {
	c, err := x509.ParseCertificate(s.Cert)
	if err != nil {
		panic(err)
	}
	return c
}

// Sign signs the root element of doc (enveloped signature, exclusive
// canonicalisation, RSA-SHA256) and returns the signed XML.
func (s *Signer) Sign(doc string) (string, error) {
	d := etree.NewDocument()
	if err := d.ReadFromString(doc); err != nil {
		return "", err
	}
	ctx := dsig.NewDefaultSigningContext(s)
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if s.Hash != 0 {
		ctx.Hash = s.Hash
	}
	signed, err := ctx.SignEnveloped(d.Root())
	if err != nil {
		return "", err
	}
	out := etree.NewDocument()
	out.SetRoot(signed)
	return out.WriteToString()
}

// Encode is the RFC 7522 §2.1 form of an assertion: base64url, no padding.
func Encode(xml string) string { return base64.RawURLEncoding.EncodeToString([]byte(xml)) }

// NewSigner makes an RSA-2048 key and a self-signed certificate for cn,
// valid from an hour ago for the given time.
func NewSigner(cn string, valid time.Duration) (*Signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(valid),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &Signer{Key: key, Cert: der}, nil
}

// LoadSigner reads a PEM private key (PKCS#1 or PKCS#8 RSA) and a PEM
// certificate.
func LoadSigner(keyFile, certFile string) (*Signer, error) {
	kb, err := pemBlock(keyFile)
	if err != nil {
		return nil, err
	}
	cb, err := pemBlock(certFile)
	if err != nil {
		return nil, err
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS1PrivateKey(kb); err == nil {
		key = k
	} else if k, err := x509.ParsePKCS8PrivateKey(kb); err == nil {
		key, _ = k.(*rsa.PrivateKey)
	}
	if key == nil {
		return nil, fmt.Errorf("%s: not an RSA private key", keyFile)
	}
	return &Signer{Key: key, Cert: cb}, nil
}

func pemBlock(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, errors.New(file + ": no PEM block")
	}
	return p.Bytes, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
