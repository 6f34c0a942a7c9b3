package grants

import (
	"testing"

	"github.com/oauthgate/caddy-oauthgate/internal/samltest"
)

// Subjects asserted with control characters are refused, by a trusted
// issuer and by a SAML identity provider.
func TestExternalSubjectControlCharacters(t *testing.T) {
	e := newEngine(t, withExchange())
	for _, s := range []string{"a\nb", "a\x00b", "a\rb", "a\u0085b", "a\u2028b", "a\u202eb", "a\u200bb", "a\ufeffb", " p1", " "} {
		checkError(t, jbPost(e, "c-tx", txExternal(t, s, nil)), 400, CodeInvalidGrant)
	}
	checkToken(t, jbPost(e, "c-tx", txExternal(t, "a b", nil)))
	se := newEngine(t, ccFixture(), withSAML(nil))
	checkError(t, samlPost(se, "c-saml", samlGood(t, func(a *samltest.Assertion) { a.NameID = "ad\nmin" })), 400, CodeInvalidGrant)
}
