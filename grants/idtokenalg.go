package grants

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// idTokenAlg is the algorithm of the client's ID tokens: the one it
// registered, or RS256.
func (c *Client) idTokenAlg() string { return cmp.Or(c.IDTokenSignedResponseAlg, tokens.IDTokenAlg) }

// validIDTokenAlg checks a client's id_token_signed_response_alg against
// the algorithms the server can sign with at all.
func (c *Client) validIDTokenAlg() error {
	if a := c.IDTokenSignedResponseAlg; a != "" && !slices.Contains(tokens.SigningAlgs, a) {
		return fmt.Errorf("client %q: id_token_signed_response_alg %q is not supported (use %s, or the signing_alg)", c.ID, a, tokens.IDTokenAlg)
	}
	return nil
}

// checkIDTokenAlgs makes sure that every configured client's ID-token
// algorithm has a key in the ring: RS256 or signing_alg.
func (e *Engine) checkIDTokenAlgs() error {
	for _, c := range e.clients {
		if err := e.checkIDTokenAlg(c); err != nil {
			return err
		}
	}
	return nil
}

// checkIDTokenAlg makes sure the ring holds a key for the client's ID
// tokens.
func (e *Engine) checkIDTokenAlg(c *Client) error {
	if a := c.idTokenAlg(); !slices.Contains(e.ringAlgs(), a) {
		return fmt.Errorf("client %q: id_token_signed_response_alg %s needs a key the server does not hold: use %s or set signing_alg %s",
			c.ID, a, tokens.IDTokenAlg, a)
	}
	return nil
}

// idTokenAlgs are the algorithms a client may register for its ID
// tokens, RS256 first: those the engine always holds a key for.
func (e *Engine) idTokenAlgs() []string {
	if e.signingAlg == tokens.IDTokenAlg {
		return []string{tokens.IDTokenAlg}
	}
	return []string{tokens.IDTokenAlg, e.signingAlg}
}

// idTokenKey is the key that signs the client's ID tokens.
func (e *Engine) idTokenKey(c *Client) (*tokens.Key, *Error) {
	k, ok := e.keyRing().Signer(c.idTokenAlg())
	if !ok {
		return nil, errServer.withCause(fmt.Errorf("no %s key to sign ID tokens of client %q", c.idTokenAlg(), c.ID))
	}
	return k, nil
}
