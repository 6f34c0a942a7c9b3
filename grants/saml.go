package grants

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

// GrantSAML2Bearer is the SAML 2.0 bearer assertion grant (RFC 7522 §2.1).
const GrantSAML2Bearer = "urn:ietf:params:oauth:grant-type:saml2-bearer"

// SAML rules.
const (
	// MaxSAMLAssertionBytes caps the decoded assertion before any XML
	// parsing. Real assertions are a few KiB; the whole form body is
	// capped at MaxBodyBytes anyway.
	MaxSAMLAssertionBytes = 32 << 10
	// MaxSAMLLifetime caps how far ahead the bearer confirmation's
	// NotOnOrAfter may be.
	MaxSAMLLifetime = 10 * time.Minute

	samlNS         = "urn:oasis:names:tc:SAML:2.0:assertion"
	samlBearer     = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
	samlEntityFmt  = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
	maxSAMLIDBytes = 256
)

// SAMLIdP is a SAML 2.0 identity provider whose signed assertions the SAML
// bearer grant exchanges for access tokens.
type SAMLIdP struct {
	// EntityID is the exact Issuer of the provider's assertions.
	EntityID string
	// Certificate verifies the provider's signatures, and nobody else's.
	Certificate *x509.Certificate
	// AllowedClients may present this provider's assertions.
	AllowedClients []string
	// SubjectAttribute names the SAML attribute that becomes the token's
	// subject. Default: empty, meaning the Subject's NameID.
	SubjectAttribute string
	// Scopes may be granted on this provider's assertions (further
	// limited by the client's scopes).
	Scopes []string
	// MapSubject says what the asserted subject becomes, as for
	// TrustedIssuer.MapSubject: "external" (default) namespaces it,
	// "local_users" requires an existing local user of that name.
	MapSubject string
}

// validateSAMLIdP checks a SAML identity provider against the clients.
func validateSAMLIdP(idp *SAMLIdP, clients map[string]*Client) error {
	if idp.EntityID == "" {
		return errors.New("saml_idp needs an entity ID")
	}
	owner := fmt.Sprintf("saml_idp %q", idp.EntityID)
	if err := checkProviderID(owner, idp.EntityID); err != nil {
		return err
	}
	if idp.Certificate == nil {
		return fmt.Errorf("%s: cert_file is required", owner)
	}
	var err error
	if idp.MapSubject, err = validateMapSubject(owner, idp.MapSubject); err != nil {
		return err
	}
	return checkAllowedClients(owner, idp.AllowedClients, GrantSAML2Bearer, clients)
}

// samlAssertion is what the grant uses of a verified assertion.
type samlAssertion struct {
	ID      string
	Subject string
	// Expires is the bearer confirmation's NotOnOrAfter: the assertion
	// cannot be used after it, so its ID is remembered until then.
	Expires time.Time
}

// samlBearer is the RFC 7522 §2.1 grant: a client presents a SAML 2.0
// assertion signed by a configured identity provider and gets an access
// token for its subject. Every failure of the assertion is invalid_grant
// (RFC 7522 §3.1). No refresh token is issued.
func (e *Engine) samlBearer(ctx context.Context, c *Client, form Form) (*TokenResponse, *Error) {
	raw := form.Get("assertion")
	if raw == "" {
		return nil, errRequest("assertion is required")
	}
	idp, a, err := e.verifySAMLAssertion(raw, time.Now())
	if err != nil {
		return e.assertionRefused(ctx, c, GrantSAML2Bearer, err.Error())
	}
	if !slices.Contains(idp.AllowedClients, c.ID) {
		return e.assertionRefused(ctx, c, GrantSAML2Bearer, "this client may not present this identity provider's assertions")
	}
	sub, err := e.mapSubject(ctx, idp.EntityID, a.Subject, idp.MapSubject)
	if oerr := asStorageError(err); oerr != nil {
		return nil, oerr
	}
	if err != nil {
		return e.assertionRefused(ctx, c, GrantSAML2Bearer, err.Error())
	}
	return e.grantForAssertion(ctx, c, form, assertionGrant{
		grant: GrantSAML2Bearer, namespace: "saml", issuer: idp.EntityID, id: a.ID,
		subject: sub, extSub: a.Subject, exp: a.Expires.Unix(), expires: a.Expires.Add(assertionSkew), scopes: idp.Scopes,
	})
}

// decodeSAMLAssertion decodes the assertion parameter: base64url, padded
// or not, without line breaks or the standard alphabet (RFC 7522 §2.1).
func decodeSAMLAssertion(s string) ([]byte, error) {
	if len(s) > base64.RawURLEncoding.EncodedLen(MaxSAMLAssertionBytes)+2 {
		return nil, errors.New("assertion too large")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(s, "="))
	// The decoder skips \r and \n; RFC 7522 allows no line breaks.
	if err != nil || strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("assertion is not base64url")
	}
	if len(b) > MaxSAMLAssertionBytes {
		return nil, errors.New("assertion too large")
	}
	return b, nil
}

// parseSAMLDocument parses the decoded assertion after refusing what must
// never reach an XML parser: a DTD, entity, element or attribute-list
// declaration (XXE, billion laughs). The document must be
// one saml:Assertion element (a samlp:Response is refused, RFC 7522 §2.1).
func parseSAMLDocument(b []byte) (*etree.Element, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("assertion is not UTF-8")
	}
	// "<!" may only open a comment or a CDATA section.
	for rest := b; ; {
		i := bytes.Index(rest, []byte("<!"))
		if i < 0 {
			break
		}
		rest = rest[i+2:]
		if !bytes.HasPrefix(rest, []byte("--")) && !bytes.HasPrefix(rest, []byte("[CDATA[")) {
			return nil, errors.New("assertion has a DTD or declaration")
		}
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(b); err != nil {
		return nil, errors.New("assertion is not well-formed XML")
	}
	var root *etree.Element
	for _, tok := range doc.Child {
		switch t := tok.(type) {
		case *etree.Element:
			if root != nil {
				return nil, errors.New("assertion has more than one root element")
			}
			root = t
		case *etree.CharData:
			if strings.TrimSpace(t.Data) != "" {
				return nil, errors.New("assertion has text outside the root element")
			}
		case *etree.ProcInst:
			if t.Target != "xml" {
				return nil, errors.New("assertion has a processing instruction")
			}
		case *etree.Comment:
		default:
			return nil, errors.New("assertion has a declaration")
		}
	}
	if !isSAML(root, "Assertion") {
		return nil, errors.New("the root element is not a saml:Assertion")
	}
	return root, nil
}

// verifySAMLAssertion decodes, parses and verifies an assertion and
// checks it against RFC 7522 §3. Only the Issuer is read before the
// signature is verified, to pick the certificate; everything else is read
// from the element the signature library returns, which is rebuilt from
// the canonical bytes the digest covered (no signature wrapping, no
// comment truncation).
func (e *Engine) verifySAMLAssertion(raw string, now time.Time) (*SAMLIdP, *samlAssertion, error) {
	b, err := decodeSAMLAssertion(raw)
	if err != nil {
		return nil, nil, err
	}
	root, err := parseSAMLDocument(b)
	if err != nil {
		return nil, nil, err
	}
	issuer, err := samlIssuer(root)
	if err != nil {
		return nil, nil, err
	}
	idp, ok := e.samlIdPs[issuer]
	if !ok {
		return nil, nil, errors.New("issuer is not a configured identity provider")
	}
	if usesSHA1(root) {
		return nil, nil, errors.New("signature: SHA-1 is not accepted")
	}
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{idp.Certificate}})
	verified, err := vc.Validate(root)
	if err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	// From here on, only verified is read.
	a, err := e.checkSAMLAssertion(verified, idp, now)
	if err != nil {
		return nil, nil, err
	}
	return idp, a, nil
}

// usesSHA1 reports whether any signature or digest method anywhere in the
// document is SHA-1, which the signature library would accept. Checking
// every one, not just the one the library picks, only ever refuses more.
func usesSHA1(root *etree.Element) bool {
	if root.Tag == "SignatureMethod" || root.Tag == "DigestMethod" {
		if strings.HasSuffix(strings.ToLower(root.SelectAttrValue("Algorithm", "")), "sha1") {
			return true
		}
	}
	return slices.ContainsFunc(root.ChildElements(), usesSHA1)
}

// checkSAMLAssertion applies RFC 7522 §3 to the verified assertion.
func (e *Engine) checkSAMLAssertion(as *etree.Element, idp *SAMLIdP, now time.Time) (*samlAssertion, error) {
	if !isSAML(as, "Assertion") {
		return nil, errors.New("the signed element is not a saml:Assertion")
	}
	if as.SelectAttrValue("Version", "") != "2.0" {
		return nil, errors.New("version is not 2.0")
	}
	if issuer, err := samlIssuer(as); err != nil || issuer != idp.EntityID {
		return nil, errors.New("issuer changed")
	}
	id := as.SelectAttrValue("ID", "")
	if id == "" || len(id) > maxSAMLIDBytes {
		return nil, errors.New("ID is required")
	}
	skew := assertionSkew
	issued, err := samlTime(as, "IssueInstant", true)
	if err != nil {
		return nil, err
	}
	if issued.After(now.Add(skew)) {
		return nil, errors.New("issued in the future")
	}
	if err := checkSAMLConditions(as, []string{e.issuer, e.issuer + TokenPath}, now); err != nil {
		return nil, err
	}
	subject := onlyChild(as, "Subject")
	if subject == nil {
		return nil, errors.New("one Subject is required")
	}
	expires, err := bearerConfirmation(subject, e.issuer+TokenPath, now)
	if err != nil {
		return nil, err
	}
	name, err := samlSubject(as, subject, idp.SubjectAttribute)
	if err != nil {
		return nil, err
	}
	return &samlAssertion{ID: id, Subject: name, Expires: expires}, nil
}

// checkSAMLConditions checks the one Conditions element: its validity
// window (with assertionSkew) and that every AudienceRestriction names us
// (SAML Core §2.5.1.4: restrictions are ANDed, their audiences ORed).
func checkSAMLConditions(as *etree.Element, audiences []string, now time.Time) error {
	cond := onlyChild(as, "Conditions")
	if cond == nil {
		return errors.New("one Conditions element is required")
	}
	nbf, err := samlTime(cond, "NotBefore", false)
	if err != nil {
		return err
	}
	if !nbf.IsZero() && nbf.After(now.Add(assertionSkew)) {
		return errors.New("not yet valid")
	}
	exp, err := samlTime(cond, "NotOnOrAfter", false)
	if err != nil {
		return err
	}
	if !exp.IsZero() && !now.Add(-assertionSkew).Before(exp) {
		return errors.New("expired")
	}
	restrictions := samlChildren(cond, "AudienceRestriction")
	if len(restrictions) == 0 {
		return errors.New("AudienceRestriction is required")
	}
	for _, r := range restrictions {
		if !slices.ContainsFunc(samlChildren(r, "Audience"), func(a *etree.Element) bool {
			s, err := samlText(a)
			return err == nil && slices.Contains(audiences, s)
		}) {
			return errors.New("audience does not name this server")
		}
	}
	return nil
}

// bearerConfirmation finds a bearer SubjectConfirmation addressed to our
// token endpoint and still valid, and returns its NotOnOrAfter, which must
// be at most MaxSAMLLifetime ahead.
func bearerConfirmation(subject *etree.Element, recipient string, now time.Time) (time.Time, error) {
	reason := errors.New("no bearer SubjectConfirmation")
	for _, sc := range samlChildren(subject, "SubjectConfirmation") {
		if sc.SelectAttrValue("Method", "") != samlBearer {
			continue
		}
		data := onlyChild(sc, "SubjectConfirmationData")
		if data == nil {
			reason = errors.New("bearer confirmation without SubjectConfirmationData")
			continue
		}
		if data.SelectAttrValue("Recipient", "") != recipient {
			reason = errors.New("recipient is not this token endpoint")
			continue
		}
		exp, err := samlTime(data, "NotOnOrAfter", true)
		if err != nil {
			reason = err
			continue
		}
		nbf, err := samlTime(data, "NotBefore", false)
		switch {
		case err != nil:
			reason = err
		case !now.Add(-assertionSkew).Before(exp):
			reason = errors.New("bearer confirmation expired")
		case exp.After(now.Add(MaxSAMLLifetime + assertionSkew)):
			reason = errors.New("bearer confirmation lifetime too long")
		case !nbf.IsZero() && nbf.After(now.Add(assertionSkew)):
			reason = errors.New("bearer confirmation not yet valid")
		default:
			return exp, nil
		}
	}
	return time.Time{}, reason
}

// samlSubject is the token subject: the NameID, or the single value of
// the configured attribute. A NameID is required either way (RFC 7522 §3, item 3).
func samlSubject(as, subject *etree.Element, attribute string) (string, error) {
	nameID := onlyChild(subject, "NameID")
	if nameID == nil {
		return "", errors.New("one NameID is required")
	}
	name, err := samlText(nameID)
	if err == nil && attribute != "" {
		name, err = samlAttribute(as, attribute)
	}
	if err != nil || name == "" || len(name) > 255 {
		return "", errors.New("no usable subject")
	}
	return name, nil
}

// samlAttribute is the one value of the one attribute with this Name.
func samlAttribute(as *etree.Element, attribute string) (string, error) {
	var values []*etree.Element
	n := 0
	for _, st := range samlChildren(as, "AttributeStatement") {
		for _, at := range samlChildren(st, "Attribute") {
			if at.SelectAttrValue("Name", "") == attribute {
				n++
				values = append(values, samlChildren(at, "AttributeValue")...)
			}
		}
	}
	if n != 1 || len(values) != 1 {
		return "", fmt.Errorf("attribute %q must have exactly one value", attribute)
	}
	return samlText(values[0])
}

// samlIssuer is the text of the assertion's one Issuer, which must be an
// entity ID.
func samlIssuer(as *etree.Element) (string, error) {
	iss := onlyChild(as, "Issuer")
	if iss == nil {
		return "", errors.New("one Issuer is required")
	}
	if f := iss.SelectAttrValue("Format", samlEntityFmt); f != samlEntityFmt {
		return "", errors.New("issuer format is not entity")
	}
	return samlText(iss)
}

// samlText is the whole text of a simple-content element: every character
// data node, joined, so a comment inside (admin<!---->@evil) can neither
// truncate nor alter the value. Child elements are refused.
func samlText(el *etree.Element) (string, error) {
	var sb strings.Builder
	for _, tok := range el.Child {
		switch t := tok.(type) {
		case *etree.CharData:
			sb.WriteString(t.Data)
		case *etree.Comment:
		default:
			return "", fmt.Errorf("%s has child nodes", el.Tag)
		}
	}
	return strings.TrimSpace(sb.String()), nil
}

// samlTime reads an xs:dateTime attribute; zero when absent and not
// required.
func samlTime(el *etree.Element, attr string, required bool) (time.Time, error) {
	v := el.SelectAttrValue(attr, "")
	if v == "" {
		if required {
			return time.Time{}, fmt.Errorf("%s@%s is required", el.Tag, attr)
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s@%s is not a dateTime", el.Tag, attr)
	}
	return t, nil
}

// isSAML reports whether el is the SAML assertion-namespace element tag.
func isSAML(el *etree.Element, tag string) bool {
	return el != nil && el.Tag == tag && el.NamespaceURI() == samlNS
}

// samlChildren are el's child elements named tag in the SAML namespace.
func samlChildren(el *etree.Element, tag string) []*etree.Element {
	var out []*etree.Element
	for _, c := range el.ChildElements() {
		if isSAML(c, tag) {
			out = append(out, c)
		}
	}
	return out
}

// onlyChild is el's single child named tag, or nil when there is none or
// more than one.
func onlyChild(el *etree.Element, tag string) *etree.Element {
	if cs := samlChildren(el, tag); len(cs) == 1 {
		return cs[0]
	}
	return nil
}
