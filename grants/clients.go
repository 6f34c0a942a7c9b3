package grants

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"
)

// Errors of run-time client management.
var (
	ErrClientExists   = errors.New("client already exists")
	ErrClientNotFound = errors.New("client not found")
	// ErrConfigClient refuses to change a client defined in the config:
	// config entries win and change only with the config.
	ErrConfigClient = errors.New("client is defined in the config")
)

// ClientSpec is a client's registration as operators and storage see
// it: everything but the secret.
type ClientSpec struct {
	ID                     string   `json:"client_id"`
	AuthMethod             string   `json:"auth_method,omitempty"`
	GrantTypes             []string `json:"grant_types"`
	Scopes                 []string `json:"scopes,omitempty"`
	Audience               []string `json:"audience,omitempty"`
	RedirectURIs           []string `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
	Trusted                bool     `json:"trusted,omitempty"`
	PKCEOptional           bool     `json:"pkce_optional,omitempty"`
	ResourceServer         bool     `json:"resource_server,omitempty"`
	AccessTokenFormat      string   `json:"access_token_format,omitempty"`
}

// Client builds the engine's client (without a secret).
func (s ClientSpec) Client() *Client {
	return &Client{ID: s.ID, AuthMethod: s.AuthMethod, GrantTypes: s.GrantTypes, Scopes: s.Scopes,
		Audience: s.Audience, RedirectURIs: s.RedirectURIs, PostLogoutRedirectURIs: s.PostLogoutRedirectURIs,
		Trusted: s.Trusted, PKCEOptional: s.PKCEOptional, ResourceServer: s.ResourceServer, AccessTokenFormat: s.AccessTokenFormat}
}

// Spec is the client's registration without its secret.
func (c *Client) Spec() ClientSpec {
	return ClientSpec{ID: c.ID, AuthMethod: c.AuthMethod, GrantTypes: c.GrantTypes, Scopes: c.Scopes,
		Audience: c.Audience, RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
		Trusted: c.Trusted, PKCEOptional: c.PKCEOptional, ResourceServer: c.ResourceServer, AccessTokenFormat: c.AccessTokenFormat}
}

// storedClient is a run-time client at rest. The secret is kept only as
// its SHA-256.
type storedClient struct {
	ClientSpec
	SecretHash string    `json:"secret_sha256,omitempty"`
	Created    time.Time `json:"created"`
}

func (sc *storedClient) client() (*Client, error) {
	c := sc.ClientSpec.Client()
	if sc.SecretHash != "" {
		h, err := hex.DecodeString(sc.SecretHash)
		if err != nil || len(h) != len(c.SecretHash) {
			return nil, fmt.Errorf("stored client %q has a malformed secret hash", sc.ID)
		}
		copy(c.SecretHash[:], h)
	}
	return c, nil
}

// lookupClient finds a client: in the config first, then among those
// registered at run time. It returns nil, nil for an unknown client.
func (e *Engine) lookupClient(ctx context.Context, id string) (*Client, error) {
	if c, ok := e.clients[id]; ok {
		return c, nil
	}
	if id == "" || e.store == nil {
		return nil, nil
	}
	var c *Client
	err := e.store.View(ctx, func(tx storage.Tx) error {
		var sc storedClient
		_, err := getJSON(tx, storage.KindClients, id, &sc)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		c, err = sc.client()
		return err
	})
	return c, err
}

// ClientInfo is a client as operators see it: never its secret.
type ClientInfo struct {
	ClientSpec
	// Source is "config" or "storage" (added at run time).
	Source string `json:"source"`
}

// ListClients returns the config clients, then the run-time ones, each
// sorted by id.
func (e *Engine) ListClients(ctx context.Context) ([]ClientInfo, error) {
	var out []ClientInfo
	for _, c := range e.clients {
		out = append(out, ClientInfo{c.Spec(), "config"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	stored, err := e.storedClients(ctx)
	for _, c := range stored {
		out = append(out, ClientInfo{c.Spec(), "storage"})
	}
	return out, err
}

// storedClients returns the clients registered at run time, by id.
func (e *Engine) storedClients(ctx context.Context) ([]*Client, error) {
	if e.store == nil {
		return nil, nil
	}
	var out []*Client
	err := e.store.View(ctx, func(tx storage.Tx) error {
		out = out[:0]
		return tx.ForEach(storage.KindClients, func(id string, rec storage.Record) error {
			var sc storedClient
			if err := json.Unmarshal(rec.Value, &sc); err != nil {
				return err
			}
			c, err := sc.client()
			if err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// allClients returns every client: the config's and the run-time ones.
func (e *Engine) allClients(ctx context.Context) ([]*Client, error) {
	stored, err := e.storedClients(ctx)
	return append(slices.Collect(maps.Values(e.clients)), stored...), err
}

// AddClient registers a client at run time. A confidential client gets a
// new secret of 256 random bits, returned once and stored only as its
// SHA-256; a public one (AuthNone) gets none. c.SecretHash is ignored.
func (e *Engine) AddClient(ctx context.Context, c *Client) (secret string, err error) {
	if _, ok := e.clients[c.ID]; ok {
		return "", ErrConfigClient
	}
	if c.AuthMethod == "" {
		c.AuthMethod = AuthSecretBasic
	}
	c.SecretHash = [32]byte{}
	if c.AuthMethod != AuthNone {
		secret = newSecretToken()
		c.SecretHash = HashSecret(secret)
	}
	if err := c.Validate(); err != nil {
		return "", err
	}
	if _, err := e.users.Lookup(ctx, c.ID); err == nil {
		return "", fmt.Errorf("client id %q is a user name; users and clients must have different names", c.ID)
	} else if !errors.Is(err, ErrUserNotFound) {
		return "", err
	}
	// A client acts under its id as subject: a removed user's subject
	// must not come back as a client.
	if used, err := nameWasUser(ctx, e.store, c.ID); err != nil {
		return "", err
	} else if used {
		return "", fmt.Errorf("client id %q was a user name; subjects are never reassigned, choose another id", c.ID)
	}
	sc := storedClient{ClientSpec: c.Spec(), Created: time.Now().UTC()}
	if secret != "" {
		sc.SecretHash = hex.EncodeToString(c.SecretHash[:])
	}
	err = e.store.Update(ctx, func(tx storage.Tx) error {
		if _, err := tx.Get(storage.KindClients, c.ID); err == nil {
			return ErrClientExists
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		// Its id is now a used subject: a later user of that name gets
		// another one.
		if err := recordClientTx(tx, c.ID, false); err != nil {
			return err
		}
		return putJSON(tx, storage.KindClients, c.ID, &sc, time.Time{})
	})
	if err != nil {
		return "", err
	}
	e.corsOrigins.forget()
	return secret, nil
}

// RemoveClient deletes a run-time client and revokes every grant and
// token issued to it.
func (e *Engine) RemoveClient(ctx context.Context, id string) error {
	if _, ok := e.clients[id]; ok {
		return ErrConfigClient
	}
	err := e.store.Update(ctx, func(tx storage.Tx) error {
		if _, err := tx.Get(storage.KindClients, id); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return ErrClientNotFound
			}
			return err
		}
		// Clients registered before client ids were recorded are
		// recorded now.
		if err := recordClientTx(tx, id, false); err != nil {
			return err
		}
		return tx.Delete(storage.KindClients, id)
	})
	if err != nil {
		return err
	}
	e.corsOrigins.forget()
	_, err = e.RevokeClient(ctx, id)
	return err
}
