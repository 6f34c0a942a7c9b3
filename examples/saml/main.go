// Command saml plays a SAML 2.0 identity provider for the SAML bearer
// grant (RFC 7522): it prints one signed assertion, base64url-encoded, to
// send as the `assertion` parameter. Each run makes a new assertion ID.
//
//	go run ./examples/saml -key examples/saml/idp-key.pem -cert examples/saml/idp-cert.pem
//
// The demo key pair in this directory is public: never trust it outside
// a demo.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/oauthgate/caddy-oauthgate/internal/samltest"
)

func main() {
	keyFile := flag.String("key", "examples/saml/idp-key.pem", "the identity provider's RSA private key (PEM)")
	certFile := flag.String("cert", "examples/saml/idp-cert.pem", "its certificate (PEM), as in the saml_idp cert_file")
	issuer := flag.String("issuer", "https://idp.partner.example/saml", "the identity provider's entity ID")
	subject := flag.String("subject", "partner-user-7", "the NameID")
	as := flag.String("as", "http://localhost:9080", "the authorization server's issuer (Audience; the Recipient is its /oauth/token)")
	ttl := flag.Duration("ttl", 5*time.Minute, "how long the assertion may be used (at most 10m)")
	flag.Parse()

	signer, err := samltest.LoadSigner(*keyFile, *certFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	a := samltest.New(*issuer, *subject, *as)
	a.NotOnOrAfter = a.IssueInstant.Add(*ttl)
	a.ConfirmUntil = a.NotOnOrAfter
	x, err := signer.Sign(a.XML())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(samltest.Encode(x))
}
