package grants

// Several nodes on one PostgreSQL database: the cluster-wide chores
// (sweeping, key rotation) are done by one node at a time. These tests
// start a real PostgreSQL (internal/pgtest) on the first free port of
// 19365-19369, registered in integration/main_test.go.

import (
	"context"
	"crypto"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/caddy-oauthgate/grants/tokens"
	"github.com/oauthgate/caddy-oauthgate/internal/pgtest"
	"github.com/oauthgate/caddy-oauthgate/storage"
	"github.com/oauthgate/caddy-oauthgate/storage/postgres"
)

// clusterKEK is the key_encryption_key every node of these tests has.
const clusterKEK = "cluster-kek-0123456789abcdef0123456789"

// TestPostgresCluster runs the cluster tests against one PostgreSQL,
// each on a database of its own.
func TestPostgresCluster(t *testing.T) {
	srv, err := pgtest.Start(19365, 19369)
	if err != nil {
		t.Fatalf("PostgreSQL did not start: %v", err)
	}
	t.Cleanup(srv.Stop)
	nodes := func(t *testing.T, n int) []*postgres.Store {
		t.Helper()
		dsn, err := srv.NewDatabase()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]*postgres.Store, n)
		for i := range out {
			s, err := postgres.OpenDSN(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			out[i] = s
		}
		return out
	}
	t.Run("SweepOncePerRound", func(t *testing.T) { testSweepOncePerRound(t, nodes(t, 5)) })
	t.Run("RotateOnce", func(t *testing.T) { testRotateOnce(t, nodes(t, 5)) })
	t.Run("RetiredKeysOnOtherNode", func(t *testing.T) { testRetiredKeysOnOtherNode(t, nodes(t, 2)) })
	t.Run("AdminRotateWaits", func(t *testing.T) { testAdminRotateWaits(t, nodes(t, 2)) })
	t.Run("RevocationOutlivesLongestTTL", func(t *testing.T) { testRevocationOutlivesLongestTTL(t, nodes(t, 3)) })
	t.Run("GrantRevocationOutlivesLongestTTL", func(t *testing.T) { testGrantRevocationOutlivesLongestTTL(t, nodes(t, 2)) })
	t.Run("RetireAfterLongestTTL", func(t *testing.T) { testRetireAfterLongestTTL(t, nodes(t, 2)) })
	t.Run("OtherIssuerRefused", func(t *testing.T) { testOtherIssuerRefused(t, nodes(t, 2)) })
	t.Run("PARAcrossNodes", func(t *testing.T) { testPARAcrossNodes(t, nodes(t, 3)) })
	t.Run("DeviceAcrossNodes", func(t *testing.T) { testDeviceAcrossNodes(t, nodes(t, 2)) })
}

// countingStore counts the sweeps that reach the store, and makes each
// last long enough for every node to try meanwhile.
type countingStore struct {
	*postgres.Store
	sweeps *atomic.Int32
}

func (c countingStore) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	c.sweeps.Add(1)
	time.Sleep(300 * time.Millisecond)
	return c.Store.Sweep(ctx, now, limit)
}

// testSweepOncePerRound: five nodes' sweepers firing together delete
// the expired records once, by one node, while each prunes its own
// in-memory revocations.
func testSweepOncePerRound(t *testing.T, stores []*postgres.Store) {
	ctx := context.Background()
	var sweeps atomic.Int32
	sweepers := make([]*Sweeper, len(stores))
	revs := make([]*tokens.Revocations, len(stores))
	for i, st := range stores {
		rev, err := tokens.LoadRevocations(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		revs[i] = rev
		sweepers[i] = StartSweeper(countingStore{st, &sweeps}, revs[i], time.Hour, nil)
		t.Cleanup(sweepers[i].Stop)
	}
	for round := range 3 {
		if err := stores[round%len(stores)].Update(ctx, func(tx storage.Tx) error {
			for i := range 50 {
				if err := tx.Put(storage.KindCodes, string(rune('a'+round))+string(rune('A'+i)), storage.Record{Value: []byte("x"), Expires: time.Now().Add(50 * time.Millisecond)}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, r := range revs {
			r.Add(map[string]int64{"jti-expired": time.Now().Add(-24 * time.Hour).Unix()})
		}
		time.Sleep(100 * time.Millisecond)
		sweeps.Store(0)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			deleted atomic.Int64
		)
		for _, s := range sweepers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				n, err := s.Sweep(ctx, time.Now())
				if err != nil {
					t.Error(err)
				}
				deleted.Add(int64(n))
			}()
		}
		close(start)
		wg.Wait()
		if n := sweeps.Load(); n != 1 {
			t.Fatalf("round %d: %d of %d nodes swept at once, want 1", round, n, len(stores))
		}
		if d := deleted.Load(); d != 50 {
			t.Fatalf("round %d: %d records deleted, want the 50 expired", round, d)
		}
		for i, r := range revs {
			if r.Len() != 0 {
				t.Fatalf("round %d: node %d kept %d expired revocations in memory", round, i, r.Len())
			}
		}
	}
}

// clusterEngines starts one engine per store, as nodes do.
func clusterEngines(t *testing.T, stores []*postgres.Store, rotation time.Duration) []*Engine {
	t.Helper()
	out := make([]*Engine, len(stores))
	for i, st := range stores {
		out[i] = newEngine(t, withStore(st), withConfig(func(c *Config) {
			c.KeyEncryptionKey = []byte(clusterKEK)
			c.KeyRotation = rotation
			c.SharedStore = true
		}))
	}
	return out
}

// testRotateOnce: five nodes whose key_rotation falls due at the same
// instant make one new key per algorithm between them (one node makes
// them; the others neither make keys nor retry conflicting
// transactions), and all sign with it after.
func testRotateOnce(t *testing.T, stores []*postgres.Store) {
	var made atomic.Int32
	real := generateKey
	generateKey = func(alg string) (crypto.Signer, error) {
		made.Add(1)
		return real(alg)
	}
	t.Cleanup(func() { generateKey = real })
	engines := clusterEngines(t, stores, time.Hour)
	ctx := context.Background()
	first := engines[0].keyRing().Current.ID
	made.Store(0)
	later := time.Now().Add(61 * time.Minute)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for _, e := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := e.MaintainKeys(ctx, later); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	algs := len(engines[0].ringAlgs())
	if n := int(made.Load()); n != algs {
		t.Fatalf("%d keys made by %d nodes at once, want %d (one per algorithm, by one node)", n, len(engines), algs)
	}
	for i, e := range engines {
		if err := e.ReloadKeys(ctx); err != nil {
			t.Fatal(err)
		}
		if cur := e.keyRing().Current.ID; cur == first || cur != engines[0].keyRing().Current.ID {
			t.Fatalf("node %d signs with %s (first key %s, node 0 %s)", i, cur, first, engines[0].keyRing().Current.ID)
		}
		if n := len(e.Keys()); n != 2*algs {
			t.Fatalf("node %d has %d keys, want %d", i, n, 2*algs)
		}
	}
}

// jwksKids lists the kids e publishes.
func jwksKids(t *testing.T, e *Engine) map[string]bool {
	t.Helper()
	w := httptest.NewRecorder()
	e.serveJWKS(w, httptest.NewRequest("GET", JWKSPath, nil))
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, k := range set.Keys {
		out[k.Kid] = true
	}
	return out
}

// testRetiredKeysOnOtherNode: after node A rotates, node B (which
// signed a token with the old key) publishes and accepts the old key
// until that token has expired, and signs with A's new key.
func testRetiredKeysOnOtherNode(t *testing.T, stores []*postgres.Store) {
	engines := clusterEngines(t, stores, 0)
	a, b := engines[0], engines[1]
	ctx := context.Background()
	oldKid := b.keyRing().Current.ID
	old := opClientToken(t, b)
	_, claims := segments(t, old)
	expSec, err := claims["exp"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(expSec, 0)

	kid, err := a.RotateKeys(ctx)
	if err != nil || kid == oldKid {
		t.Fatalf("RotateKeys on A: %q, %v", kid, err)
	}
	if err := b.MaintainKeys(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if cur := b.keyRing().Current.ID; cur != kid {
		t.Fatalf("B signs with %s after A rotated to %s", cur, kid)
	}
	for _, k := range b.Keys() {
		if k.ID != oldKid {
			continue
		}
		if k.Retires == nil || k.Retires.Before(exp.Add(verifierLeeway)) {
			t.Fatalf("B retires the old key at %v, before its last token expires (%v) plus leeway", k.Retires, exp)
		}
	}
	for _, e := range engines {
		if kids := jwksKids(t, e); !kids[oldKid] || !kids[kid] {
			t.Fatalf("JWKS %v, want both the old key %s and the new %s", kids, oldKid, kid)
		}
		if !verifies(e, old) {
			t.Fatal("a token of the retired key is refused before it expires")
		}
	}
}

// testAdminRotateWaits: an operator's rotation is not skipped while
// another node holds the keys lock: it waits for the lock (here until
// its context ends, making nothing), and rotates once the lock is free.
func testAdminRotateWaits(t *testing.T, stores []*postgres.Store) {
	e := clusterEngines(t, stores[:1], 0)[0]
	release, ok, err := stores[1].TryLock(context.Background(), lockKeys)
	if err != nil || !ok {
		t.Fatalf("TryLock: %v %v", ok, err)
	}
	before := e.keyRing().Current.ID
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if kid, err := e.RotateKeys(ctx); err == nil || kid != "" {
		t.Fatalf("RotateKeys while another node holds the lock: %q, %v", kid, err)
	}
	if len(e.Keys()) != len(e.ringAlgs()) {
		t.Fatalf("keys %v made while another node held the lock", krKids(e))
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		release()
	}()
	kid, err := e.RotateKeys(context.Background())
	if err != nil || kid == "" || kid == before {
		t.Fatalf("RotateKeys after the lock was freed: %q, %v", kid, err)
	}
}

// ttlNode starts a node whose access tokens live ttl.
func ttlNode(t *testing.T, st storage.Store, ttl time.Duration) *Engine {
	t.Helper()
	return newEngine(t, withStore(st), withConfig(func(c *Config) {
		c.KeyEncryptionKey = []byte(clusterKEK)
		c.SharedStore = true
		c.AccessTokenTTL = ttl
	}))
}

// tokenExp is the exp of a JWT.
func tokenExp(t *testing.T, tok string) time.Time {
	t.Helper()
	_, claims := segments(t, tok)
	sec, err := claims["exp"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(sec, 0)
}

// testRevocationOutlivesLongestTTL: nodes with different
// access_token_ttl on one database. A client revoked through the node
// with the short TTL (G, 1m, started first) is refused, after a sweep
// and a restart, for as long as the long-TTL node's (H, 30m, started
// later) tokens live; so is one revoked through a node started after H
// with the short TTL again (the stored maximum is kept).
func testRevocationOutlivesLongestTTL(t *testing.T, stores []*postgres.Store) {
	ctx := context.Background()
	g := ttlNode(t, stores[0], time.Minute)
	h := ttlNode(t, stores[1], 30*time.Minute)
	g2 := ttlNode(t, stores[2], time.Minute)
	for i, revoker := range []*Engine{g, g2} {
		tok := opClientToken(t, h)
		exp := tokenExp(t, tok)
		if _, err := revoker.RevokeClient(ctx, "c-basic"); err != nil {
			t.Fatal(err)
		}
		// The sweeper of any node, shortly before H's token expires.
		later := exp.Add(-2 * time.Minute)
		if _, err := stores[1].Sweep(ctx, later, 10000); err != nil {
			t.Fatal(err)
		}
		rev, err := tokens.LoadRevocations(ctx, stores[1])
		if err != nil {
			t.Fatal(err)
		}
		rev.Prune(later)
		if _, err := revoker.verifier.Verify(tok, time.Now()); err == nil {
			t.Fatalf("revoker %d: H's token verifies at the revoking node right after the revocation", i)
		}
		claims := tokens.NewAccessClaims(testIssuer, "c-basic", "c-basic", nil, nil, exp.Add(-30*time.Minute), 30*time.Minute)
		if !rev.RevokedClaims(claims) {
			t.Fatalf("revoker %d: after a sweep at %v (H's token expires %v), the client revocation is gone: H's tokens verify again", i, later, exp)
		}
		// The stored record itself outlives H's token.
		var recExp time.Time
		if err := stores[1].View(ctx, func(tx storage.Tx) error {
			rec, err := tx.Get(storage.KindRevoked, tokens.BeforeKey("client", "c-basic"))
			recExp = rec.Expires
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if recExp.Before(exp.Add(verifierLeeway)) {
			t.Fatalf("revoker %d: the revocation is kept until %v, before H's token (exp %v) stops verifying", i, recExp, exp)
		}
	}
}

// testRetireAfterLongestTTL: a rotation on the node with the short TTL
// keeps the old key until the tokens the long-TTL node signed with it
// have expired.
func testRetireAfterLongestTTL(t *testing.T, stores []*postgres.Store) {
	ctx := context.Background()
	g := ttlNode(t, stores[0], time.Minute)
	h := ttlNode(t, stores[1], 30*time.Minute)
	oldKid := h.keyRing().Current.ID
	exp := tokenExp(t, opClientToken(t, h))
	if _, err := g.RotateKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range h.Keys() {
		if k.ID != oldKid {
			continue
		}
		found = true
		if k.Retires == nil || k.Retires.Before(exp.Add(verifierLeeway)) {
			t.Fatalf("the old key retires at %v, before H's token signed with it expires (%v)", k.Retires, exp)
		}
	}
	if !found {
		t.Fatalf("the old key %s left the ring at once", oldKid)
	}
}

// testOtherIssuerRefused: a node configured with another issuer than
// the shared database's refuses to start, naming both; after the
// operator deletes the issuer record (the documented way to change the
// issuer), it starts.
func testOtherIssuerRefused(t *testing.T, stores []*postgres.Store) {
	ctx := context.Background()
	ttlNode(t, stores[0], time.Minute)
	const other = "https://other.test"
	_, err := startEngine(t, withStore(stores[1]), withConfig(func(c *Config) {
		c.KeyEncryptionKey = []byte(clusterKEK)
		c.SharedStore = true
		c.Issuer = other
	}))
	if err == nil || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), testIssuer) {
		t.Fatalf("a node with issuer %s on a database of %s started: %v", other, testIssuer, err)
	}
	if err := stores[1].Update(ctx, func(tx storage.Tx) error { return tx.Delete(storage.KindSecrets, issuerRecord) }); err != nil {
		t.Fatal(err)
	}
	if _, err := startEngine(t, withStore(stores[1]), withConfig(func(c *Config) {
		c.KeyEncryptionKey = []byte(clusterKEK)
		c.SharedStore = true
		c.Issuer = other
	})); err != nil {
		t.Fatalf("the issuer record deleted, the new issuer does not start: %v", err)
	}
	if _, err := startEngine(t, withStore(stores[0]), withConfig(func(c *Config) {
		c.KeyEncryptionKey = []byte(clusterKEK)
		c.SharedStore = true
	})); err == nil {
		t.Fatal("after the change, a node with the old issuer started")
	}
}

// testGrantRevocationOutlivesLongestTTL: a grant made at H (30m) and
// revoked through G (1m, RFC 7009 with its refresh token) keeps its
// revocation for as long as H's access token of that grant lives.
func testGrantRevocationOutlivesLongestTTL(t *testing.T, stores []*postgres.Store) {
	ctx := context.Background()
	g := ttlNode(t, stores[0], time.Minute)
	h := ttlNode(t, stores[1], 30*time.Minute)
	tr := firstGrant(t, h, "c-web")
	at := tr.str("access_token")
	exp := tokenExp(t, at)
	if r := opRevoke(g, "c-web", "token", tr.str("refresh_token")); r.status != 200 {
		t.Fatalf("revoke at G: %d %s", r.status, r.raw)
	}
	later := exp.Add(-2 * time.Minute)
	if _, err := stores[0].Sweep(ctx, later, 10000); err != nil {
		t.Fatal(err)
	}
	rev, err := tokens.LoadRevocations(ctx, stores[0])
	if err != nil {
		t.Fatal(err)
	}
	rev.Prune(later)
	c, err := h.verifier.Verify(at, time.Now())
	if err != nil {
		t.Fatal(err) // H has not heard of the revocation yet (no watch here)
	}
	if !rev.RevokedClaims(c) {
		t.Fatalf("after a sweep at %v (H's token expires %v), the grant's revocation is gone: H's token verifies again", later, exp)
	}
}
