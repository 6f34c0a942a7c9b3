package grants

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/storage"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
)

// TestRunTimeClients: a client added at run time authenticates with the
// secret it was given once, which is stored only as a hash; config
// clients win and cannot be removed; removal revokes its tokens.
func TestRunTimeClients(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	ctx := context.Background()
	secret, err := e.AddClient(ctx, &Client{
		ClientSpec: ClientSpec{
			ID:         "rt-svc",
			GrantTypes: []string{GrantClientCredentials},
			Scopes:     []string{"read"},
			Audience:   []string{"https://app.test"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(raw) < 32 {
		t.Fatalf("secret %q is not 256 random bits", secret)
	}
	err = e.store.View(ctx, func(tx storage.Tx) error {
		rec, err := tx.Get(storage.KindClients, "rt-svc")
		if err == nil && strings.Contains(string(rec.Value), secret) {
			t.Errorf("the secret is stored in the clear")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	tr := postTokenRaw(e, form, siBasicAuth("rt-svc", secret))
	wantOK(t, tr)
	at := tr.str("access_token")
	wantErr(t, postTokenRaw(e, form, siBasicAuth("rt-svc", secret+"x")), http.StatusUnauthorized, CodeInvalidClient)

	for name, c := range map[string]*Client{
		"config client id": {ClientSpec: ClientSpec{ID: "c-web", GrantTypes: []string{GrantClientCredentials}}},
		"user name":        {ClientSpec: ClientSpec{ID: "alice", GrantTypes: []string{GrantClientCredentials}}},
		"invalid":          {ClientSpec: ClientSpec{ID: "bad", GrantTypes: []string{"implicit"}}},
		"duplicate":        {ClientSpec: ClientSpec{ID: "rt-svc", GrantTypes: []string{GrantClientCredentials}}},
	} {
		if _, err := e.AddClient(ctx, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	list, err := e.ListClients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := list[len(list)-1]
	if last.ID != "rt-svc" || last.Source != "storage" || list[0].Source != "config" {
		t.Fatalf("list: %+v", list)
	}
	if err := e.RemoveClient(ctx, "c-web"); !errors.Is(err, ErrConfigClient) {
		t.Fatalf("removing a config client: %v", err)
	}
	if err := e.RemoveClient(ctx, "nobody"); !errors.Is(err, ErrClientNotFound) {
		t.Fatalf("removing an unknown client: %v", err)
	}
	if err := e.RemoveClient(ctx, "rt-svc"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, postTokenRaw(e, form, siBasicAuth("rt-svc", secret)), http.StatusUnauthorized, CodeInvalidClient)
	if verifies(e, at) {
		t.Fatalf("a removed client's token still verifies")
	}
}

// TestRunTimePublicClientSignsIn: the authorization endpoint finds a
// client registered at run time.
func TestRunTimePublicClientSignsIn(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	secret, err := e.AddClient(context.Background(), &Client{
		ClientSpec: ClientSpec{
			ID:           "rt-spa",
			AuthMethod:   AuthNone,
			GrantTypes:   []string{GrantAuthorizationCode, GrantRefreshToken},
			Scopes:       []string{"openid"},
			RedirectURIs: []string{"http://127.0.0.1/cb"},
			Trusted:      true,
		},
	})
	if err != nil || secret != "" {
		t.Fatalf("AddClient = %q, %v", secret, err)
	}
	b := newBrowser(t, e)
	verifier, challenge := newPKCE()
	q := authzQuery("c-pub", challenge)
	q.Set("client_id", "rt-spa")
	loc := b.authorize(q, "alice", "alice-pw")
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %s", loc)
	}
	tr := postTokenRaw(e, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"rt-spa"},
		"redirect_uri": {"http://127.0.0.1/cb"}, "code_verifier": {verifier}}, "")
	wantOK(t, tr)
}

// TestRevokeBySubjectAndClient: every grant and access token of a user,
// or of a client, stops working at once; others are untouched.
func TestRevokeBySubjectAndClient(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	ctx := context.Background()
	web := firstGrant(t, e, "c-web")
	trusted := firstGrant(t, e, "c-trusted")
	cc := opClientToken(t, e)
	n, err := e.RevokeSubject(ctx, "alice")
	if err != nil || n != 2 {
		t.Fatalf("RevokeSubject = %d, %v; want 2", n, err)
	}
	for _, tr := range []tokenResult{web, trusted} {
		if verifies(e, tr.str("access_token")) {
			t.Fatalf("alice's access token still verifies")
		}
	}
	wantErr(t, refresh(e, "c-web", web.str("refresh_token")), 400, CodeInvalidGrant)
	if !verifies(e, cc) {
		t.Fatalf("a client_credentials token was revoked with alice")
	}
	if n, err := e.RevokeClient(ctx, "c-basic"); err != nil || n != 0 {
		t.Fatalf("RevokeClient = %d, %v", n, err)
	}
	if verifies(e, cc) {
		t.Fatalf("c-basic's token still verifies")
	}
	// Persisted: a new revocation set loaded from storage agrees.
	rev, err := tokens.LoadRevocations(ctx, e.store)
	if err != nil {
		t.Fatal(err)
	}
	claims := &tokens.AccessClaims{ID: "x", Subject: "c-basic", ClientID: "c-basic", IssuedAt: 1}
	if !rev.RevokedClaims(claims) || rev.Len() < 2 {
		t.Fatalf("revocations by subject and client were not persisted")
	}
}

// Discovery describes clients added at run time as well as the config's:
// a grant type or scope only they use appears, and goes again when they
// are removed.
func TestRunTimeClientsInDiscovery(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	ctx := context.Background()
	m := testMetadata(t, e)
	if slices.Contains(m.GrantTypesSupported, GrantPassword) || slices.Contains(m.ScopesSupported, "rt-only") {
		t.Fatalf("the config already uses what the run-time client adds: %+v", m)
	}
	if _, err := e.AddClient(ctx, &Client{
		ClientSpec: ClientSpec{
			ID:         "rt-legacy",
			GrantTypes: []string{GrantPassword},
			Scopes:     []string{"rt-only"},
		},
	}); err != nil {
		t.Fatal(err)
	}
	m = testMetadata(t, e)
	if !slices.Contains(m.GrantTypesSupported, GrantPassword) || !slices.Contains(m.ScopesSupported, "rt-only") {
		t.Fatalf("discovery does not describe the run-time client: grants %v scopes %v", m.GrantTypesSupported, m.ScopesSupported)
	}
	if err := e.RemoveClient(ctx, "rt-legacy"); err != nil {
		t.Fatal(err)
	}
	if m = testMetadata(t, e); slices.Contains(m.GrantTypesSupported, GrantPassword) {
		t.Fatalf("a removed client still shapes discovery: %v", m.GrantTypesSupported)
	}
}

// A run-time client may register the algorithm of its ID tokens, but only
// one the server holds a key for; the registration is kept with it.
func TestRunTimeClientIDTokenAlg(t *testing.T) {
	t.Parallel()
	e := newEngine(t, withResourceServers())
	ctx := context.Background()
	c := &Client{ClientSpec: ClientSpec{ID: "rt-eddsa", GrantTypes: []string{GrantAuthorizationCode}, RedirectURIs: []string{"https://app.test/cb"},
		IDTokenSignedResponseAlg: "EdDSA"}}
	if _, err := e.AddClient(ctx, c); err == nil || !strings.Contains(err.Error(), "id_token_signed_response_alg") {
		t.Fatalf("EdDSA ID tokens without an EdDSA key: %v", err)
	}
	c.IDTokenSignedResponseAlg = e.signingAlg
	if _, err := e.AddClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := e.lookupClient(ctx, "rt-eddsa")
	if err != nil || got == nil || got.IDTokenSignedResponseAlg != e.signingAlg {
		t.Fatalf("stored client = %+v, %v", got, err)
	}
}

// A run-time client is decoded once and shared while its record is
// unchanged; a change in storage (another config on the same file) or
// its removal is seen at the next lookup.
func TestRunTimeClientCache(t *testing.T) {
	e := newEngine(t, withResourceServers())
	ctx := context.Background()
	if _, err := e.AddClient(ctx, &Client{ClientSpec: ClientSpec{ID: "rt-cache", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}}}); err != nil {
		t.Fatal(err)
	}
	a, err := e.lookupClient(ctx, "rt-cache")
	if err != nil || a == nil {
		t.Fatal(err)
	}
	if b, _ := e.lookupClient(ctx, "rt-cache"); b != a {
		t.Fatal("an unchanged client was decoded again")
	}
	// Another config on the same file changes the record.
	err = e.store.Update(ctx, func(tx storage.Tx) error {
		var sc storedClient
		if _, err := getJSON(tx, storage.KindClients, "rt-cache", &sc); err != nil {
			return err
		}
		sc.Scopes = []string{"write"}
		return putJSON(tx, storage.KindClients, "rt-cache", &sc, time.Time{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := e.lookupClient(ctx, "rt-cache"); c == a || !slices.Equal(c.Scopes, []string{"write"}) {
		t.Fatalf("a changed record was not seen: %+v", c)
	}
	if err := e.RemoveClient(ctx, "rt-cache"); err != nil {
		t.Fatal(err)
	}
	if c, err := e.lookupClient(ctx, "rt-cache"); c != nil || err != nil {
		t.Fatalf("a removed client was found: %v, %v", c, err)
	}
}

// nthUpdateFails is a store whose write transactions fail from the nth
// on, as a disk that fills up during an operation.
type nthUpdateFails struct {
	storage.Store
	n, calls atomic.Int32
}

func (s *nthUpdateFails) Update(ctx context.Context, fn func(storage.Tx) error) error {
	if s.calls.Add(1) >= s.n.Load() {
		return errDiskFull
	}
	return s.Store.Update(ctx, fn)
}

// Removing a client or a user and revoking what they were issued is all
// or nothing: whichever write fails, either the client is still there
// (and a retry removes it and revokes its tokens) or it is gone and its
// tokens are dead — never gone with its tokens alive.
func TestRemoveIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for failFrom := int32(1); failFrom <= 3; failFrom++ {
		st := &nthUpdateFails{Store: openStore(t)}
		st.n.Store(1 << 30)
		e := newEngine(t, withResourceServers(), withStore(st))
		secret, err := e.AddClient(ctx, &Client{ClientSpec: ClientSpec{ID: "rt-atomic", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}}})
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"grant_type": {"client_credentials"}}
		tr := postTokenRaw(e, form, siBasicAuth("rt-atomic", secret))
		wantOK(t, tr)
		at := tr.str("access_token")
		st.calls.Store(0)
		st.n.Store(failFrom)
		rmErr := e.RemoveClient(ctx, "rt-atomic")
		c, err := e.lookupClient(ctx, "rt-atomic")
		if err != nil {
			t.Fatal(err)
		}
		_, verr := e.verifier.Verify(at, time.Now())
		switch {
		case c == nil && verr == nil:
			t.Fatalf("failing from write %d: the client is gone (RemoveClient: %v) but its token still verifies", failFrom, rmErr)
		case c != nil && rmErr == nil:
			t.Fatalf("failing from write %d: RemoveClient succeeded but the client is still there", failFrom)
		}
		st.n.Store(1 << 30)
		if c != nil {
			if err := e.RemoveClient(ctx, "rt-atomic"); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if _, err := e.verifier.Verify(at, time.Now()); err == nil {
				t.Fatal("after the retry the token still verifies")
			}
		}
	}
}
