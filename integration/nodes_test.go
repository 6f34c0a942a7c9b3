package integration

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// The two-node tests of issue 14: two real Caddy processes (node A and
// node B, nodes_cluster_test.go) on one real PostgreSQL, the way several
// nodes behind a load balancer run. Whatever one node spends, revokes or
// rotates, the other must honour.

// fanOutBound is the documented delay within which a revocation or a new
// signing key made on one node reaches every other node.
const fanOutBound = time.Second

// TestNodesCodeRace: 100 concurrent redemptions of one authorization code,
// half at each node. Exactly one gets tokens; the 99 others are
// invalid_grant, and the replay revokes what the first redemption issued
// (as TestCodeReplay asserts on one engine): its refresh token is refused
// at both nodes and its access token at both gates.
func TestNodesCodeRace(t *testing.T) {
	c := startCluster(t)
	code, verifier := c.a.code(t)

	var ok, invalid atomic.Int32
	winners := make(chan *oauth2.Token, 100)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 100 {
		node := c.a
		if i%2 == 1 {
			node = c.b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := node.exchange(code, verifier)
			switch {
			case err == nil && tok.RefreshToken != "":
				ok.Add(1)
				winners <- tok
			case isInvalidGrant(err):
				invalid.Add(1)
			default:
				t.Errorf("redemption at node %s: %v, want 200 or 400 invalid_grant", node.name, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(winners)
	if ok.Load() != 1 || invalid.Load() != 99 {
		t.Fatalf("successes = %d, invalid_grant = %d; want 1 and 99\n%s%s", ok.Load(), invalid.Load(), c.a.logs(), c.b.logs())
	}
	won := <-winners
	for _, n := range []*clusterNode{c.a, c.b} {
		if _, err := n.refresh(won.RefreshToken); !isInvalidGrant(err) {
			t.Errorf("the winner's refresh token at node %s after the replay: %v, want invalid_grant (grant revoked)", n.name, err)
		}
		took, refused, err := n.refusedWithin(won.AccessToken, fanOutBound)
		switch {
		case err != nil:
			t.Errorf("the winner's access token at node %s's gate: %v", n.name, err)
		case !refused:
			t.Errorf("the winner's access token still passes node %s's gate %s after the replay, want 401 within %s", n.name, took.Round(time.Millisecond), fanOutBound)
		}
	}
	if _, err := c.b.exchange(code, verifier); !isInvalidGrant(err) {
		t.Errorf("a further redemption at node B: %v, want invalid_grant", err)
	}
}

// TestNodesRefreshReuse: a grant's refresh token rotates twice on node
// A; its first refresh token, presented at node B, is reuse: invalid_grant,
// and the whole family is revoked, so A's newest refresh token is refused
// at both nodes.
func TestNodesRefreshReuse(t *testing.T) {
	c := startCluster(t)
	code, verifier := c.a.code(t)
	tok0, err := c.a.exchange(code, verifier)
	if err != nil || tok0.RefreshToken == "" {
		t.Fatalf("redeeming the code at node A: %v", err)
	}
	tok1, err := c.a.refresh(tok0.RefreshToken)
	if err != nil || tok1.RefreshToken == "" || tok1.RefreshToken == tok0.RefreshToken {
		t.Fatalf("first rotation at node A: %v (want a new refresh token)", err)
	}
	tok2, err := c.a.refresh(tok1.RefreshToken)
	if err != nil || tok2.RefreshToken == "" || tok2.RefreshToken == tok1.RefreshToken {
		t.Fatalf("second rotation at node A: %v (want a new refresh token)", err)
	}
	if _, err := c.b.refresh(tok0.RefreshToken); !isInvalidGrant(err) {
		t.Fatalf("the rotated-out refresh token at node B: %v, want invalid_grant", err)
	}
	if _, err := c.a.refresh(tok2.RefreshToken); !isInvalidGrant(err) {
		t.Errorf("node A's newest refresh token after the reuse at B: %v, want invalid_grant (family revoked)", err)
	}
	if _, err := c.b.refresh(tok2.RefreshToken); !isInvalidGrant(err) {
		t.Errorf("node A's newest refresh token at node B after the reuse: %v, want invalid_grant (family revoked)", err)
	}
}

// TestNodesRevocationReachesOtherGate: an access token revoked at node A
// (RFC 7009) is refused at node B's gate within fanOutBound, both when B
// never saw it and when B had verified (and cached) it before.
func TestNodesRevocationReachesOtherGate(t *testing.T) {
	c := startCluster(t)
	c.revocationReachesB(t, false, "a token node B never saw")
	c.revocationReachesB(t, true, "a token node B had verified (and cached)")
}

// TestNodesRevocationAfterDatabaseRestart: after PostgreSQL restarted
// (every node's connections to it, including any it listens on, were
// dropped), a revocation at node A still reaches node B's gate within
// fanOutBound.
func TestNodesRevocationAfterDatabaseRestart(t *testing.T) {
	c := startCluster(t)
	c.pg.Down()
	time.Sleep(500 * time.Millisecond)
	if err := c.pg.Up(); err != nil {
		t.Fatalf("starting the database again: %v", err)
	}
	// Both nodes use the database again (a sign-in writes to it).
	for _, n := range []*clusterNode{c.a, c.b} {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := relCode(n.server, oauth2.GenerateVerifier()); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("node %s does not sign in 5s after the database restarted: %v", n.name, err)
			}
		}
	}
	c.revocationReachesB(t, true, "after a database restart, a token node B had verified")
}

// revocationReachesB revokes a fresh client_credentials token at node A
// (RFC 7009) and checks node B's gate refuses it within fanOutBound;
// cached has B verify it first.
func (c *cluster) revocationReachesB(t *testing.T, cached bool, what string) {
	t.Helper()
	tok, err := c.a.clientCredentials()
	if err != nil {
		t.Fatalf("client_credentials at node A: %v", err)
	}
	c.a.mustPass(t, tok.AccessToken, "before the revocation")
	if cached {
		c.b.mustPass(t, tok.AccessToken, "before the revocation")
	}
	c.a.revoke(t, relSvcID, relSvcSecret, tok.AccessToken)
	if status, err := c.a.gateStatus(tok.AccessToken); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("%s: node A's own gate after the revocation: %d %v, want 401", what, status, err)
	}
	took, refused, err := c.b.refusedWithin(tok.AccessToken, fanOutBound)
	if err != nil {
		t.Fatal(err)
	}
	if refused {
		t.Logf("%s: node B refused it %s after the revocation at node A", what, took.Round(time.Millisecond))
		return
	}
	// Tell a revocation the database lacks from one the running node B
	// has not learnt of: a fresh B loads the stored ones.
	c.b.restart(t)
	status, err := c.b.gateStatus(tok.AccessToken)
	t.Errorf("%s, revoked at node A, still passes node B's gate after %s, want 401 within %s "+
		"(after a restart node B answers %d %v: 401 means the revocation is stored and only its fan-out to running nodes is missing)",
		what, took.Round(time.Millisecond), fanOutBound, status, err)
}

// TestNodesKeyRotationReachesOtherNode: after node A rotates the signing
// key (admin API), a token A signs with the new key passes node B's gate
// within fanOutBound, and B's JWKS lists the new kid.
func TestNodesKeyRotationReachesOtherNode(t *testing.T) {
	c := startCluster(t)
	before, err := c.a.clientCredentials()
	if err != nil {
		t.Fatal(err)
	}
	c.b.mustPass(t, before.AccessToken, "a token of the first key")
	kid := c.a.rotateKey(t)
	if got := crashKids(t, c.a.server); !slices.Contains(got, kid) {
		t.Fatalf("node A's JWKS after the rotation %q lacks the new kid %q", got, kid)
	}
	tok, err := c.a.clientCredentials()
	if err != nil {
		t.Fatalf("client_credentials at node A after the rotation: %v", err)
	}
	if h, _ := jwtParts(t, tok.AccessToken); h["kid"] != kid {
		t.Fatalf("node A signed after the rotation with kid %v, want the new %q", h["kid"], kid)
	}
	began := time.Now()
	for {
		status, err := c.b.gateStatus(tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if status == http.StatusOK {
			t.Logf("node B's gate took the new key's token after %s", time.Since(began).Round(time.Millisecond))
			break
		}
		if time.Since(began) > fanOutBound {
			// Tell a key the database lacks from one the running node B
			// has not loaded yet: a fresh B loads the stored ring.
			took := time.Since(began)
			jwks := crashKids(t, c.b.server)
			c.b.restart(t)
			after, err := c.b.gateStatus(tok.AccessToken)
			t.Fatalf("node B's gate still answers %d to a token of the key node A rotated to %s ago, want 200 within %s; B's JWKS %q, want %q in it "+
				"(after a restart node B's gate answers %d %v and its JWKS is %q: 200 and the kid mean the key is stored and only its fan-out to running nodes is missing)",
				status, took.Round(time.Millisecond), fanOutBound, jwks, kid, after, err, crashKids(t, c.b.server))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := crashKids(t, c.b.server); !slices.Contains(got, kid) {
		t.Errorf("node B's JWKS %q lacks the kid %q node A rotated to", got, kid)
	}
	c.b.mustPass(t, before.AccessToken, "a token of the retired key")
}

// TestNodesKillUnderLoad: node A is killed with SIGKILL while clients
// sign in, redeem codes and rotate refresh tokens through it. Every code
// and newest refresh token A acknowledged works exactly once at node B
// afterwards; what was in flight is spent at most once.
func TestNodesKillUnderLoad(t *testing.T) {
	c := startCluster(t)
	ledger := &crashLedger{chains: map[int]string{}} // what node A told its clients before it died
	var killed atomic.Bool
	var chainIDs atomic.Int32
	failed := func(what string, err error) {
		if !killed.Load() {
			t.Errorf("%s at node A before the kill: %v", what, err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []int
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				verifier := oauth2.GenerateVerifier()
				code, err := relCode(c.a.server, verifier)
				if err != nil {
					failed("getting a code", err)
					return
				}
				cc := crashCode{code, verifier}
				if (i+w)%2 == 0 { // keep every other code unspent
					ledger.mu.Lock()
					ledger.codes = append(ledger.codes, cc)
					ledger.issued++
					ledger.mu.Unlock()
				} else {
					ledger.mu.Lock()
					ledger.issued++
					ledger.mu.Unlock()
					tok, err := c.a.exchange(cc.code, cc.verifier)
					if _, _, answered := tokenErrorCode(err); err != nil && !answered {
						ledger.mu.Lock()
						ledger.doubtCodes = append(ledger.doubtCodes, cc)
						ledger.mu.Unlock()
						failed("redeeming a code", err)
						return
					}
					if err != nil || tok.RefreshToken == "" {
						t.Errorf("redeeming an unspent code at node A: %v", err)
						return
					}
					id := int(chainIDs.Add(1))
					ledger.mu.Lock()
					ledger.chains[id] = tok.RefreshToken
					ledger.redeemed++
					ledger.mu.Unlock()
					mine = append(mine, id)
				}
				// Rotate each of this worker's chains once.
				for _, id := range mine {
					ledger.mu.Lock()
					rt := ledger.chains[id]
					delete(ledger.chains, id)
					ledger.mu.Unlock()
					tok, err := c.a.refresh(rt)
					if _, _, answered := tokenErrorCode(err); err != nil && !answered {
						ledger.mu.Lock()
						ledger.doubtRefresh = append(ledger.doubtRefresh, rt)
						ledger.mu.Unlock()
						failed("rotating a refresh token", err)
						return
					}
					if err != nil || tok.RefreshToken == "" {
						t.Errorf("rotating the newest refresh token of a chain at node A: %v", err)
						return
					}
					ledger.mu.Lock()
					ledger.chains[id] = tok.RefreshToken
					ledger.rotated++
					ledger.mu.Unlock()
				}
			}
		}()
	}
	loadBegan := time.Now()
	ledger.awaitLoad(t, 20*time.Second, 30, stop, &wg, c.a.logs)
	// Kill at a random moment once the load has made some state.
	time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
	killed.Store(true)
	c.a.child.kill(t)
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("killed node A after %s of load: codes issued %d, redeemed %d, rotations %d; unspent codes %d, live chains %d, in doubt: %d codes, %d refresh tokens",
		time.Since(loadBegan).Round(time.Millisecond), ledger.issued, ledger.redeemed, ledger.rotated,
		len(ledger.codes), len(ledger.chains), len(ledger.doubtCodes), len(ledger.doubtRefresh))

	for _, cc := range ledger.codes {
		tok, err := c.b.exchange(cc.code, cc.verifier)
		if err != nil || tok.RefreshToken == "" {
			t.Errorf("a code node A acknowledged, at node B: %v, want tokens (lost?)", err)
			continue
		}
		if _, err := c.b.exchange(cc.code, cc.verifier); !isInvalidGrant(err) {
			t.Errorf("the same code a second time at node B: %v, want invalid_grant (spent twice?)", err)
		}
	}
	for id, rt := range ledger.chains {
		tok, err := c.b.refresh(rt)
		if err != nil || tok.RefreshToken == "" {
			t.Errorf("chain %d: the newest refresh token node A acknowledged, at node B: %v, want a rotation (lost?)", id, err)
			continue
		}
		if _, err := c.b.refresh(rt); !isInvalidGrant(err) {
			t.Errorf("chain %d: the same refresh token a second time at node B: %v, want invalid_grant (spent twice?)", id, err)
		}
	}
	for _, cc := range ledger.doubtCodes {
		if _, err := c.b.exchange(cc.code, cc.verifier); err == nil {
			if _, err := c.b.exchange(cc.code, cc.verifier); !isInvalidGrant(err) {
				t.Errorf("a code in flight at the kill redeemed twice at node B: %v", err)
			}
		} else if !isInvalidGrant(err) {
			t.Errorf("a code in flight at the kill, at node B: %v, want tokens or invalid_grant", err)
		}
	}
	for _, rt := range ledger.doubtRefresh {
		if _, err := c.b.refresh(rt); err == nil {
			if _, err := c.b.refresh(rt); !isInvalidGrant(err) {
				t.Errorf("a refresh token in flight at the kill rotated twice at node B: %v", err)
			}
		} else if !isInvalidGrant(err) {
			t.Errorf("a refresh token in flight at the kill, at node B: %v, want a rotation or invalid_grant", err)
		}
	}
}

// dbOutage records what clients saw while the database was down.
type dbOutage struct {
	mu sync.Mutex
	// unavailable counts 503 temporarily_unavailable answers by grant
	// and node ("refresh A").
	unavailable map[string]int
	// ok counts successes by grant and node.
	ok map[string]int
	// bad lists answers that are neither success nor 503
	// temporarily_unavailable, or that took too long.
	bad []string
	// slowest is the longest any token request took.
	slowest time.Duration
}

// note records one token request of grant at node that took took.
func (o *dbOutage) note(grant, node string, took time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.slowest = max(o.slowest, took)
	key := grant + " " + node
	status, code, answered := tokenErrorCode(err)
	switch {
	case err == nil:
		o.ok[key]++
	case answered && status == http.StatusServiceUnavailable && code == "temporarily_unavailable":
		o.unavailable[key]++
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response.Header.Get("Retry-After") == "" {
			o.bad = append(o.bad, fmt.Sprintf("%s at node %s: 503 without Retry-After", grant, node))
		}
	case isInvalidGrant(err):
		// the caller decides
	default:
		o.bad = append(o.bad, fmt.Sprintf("%s at node %s after %s: %v", grant, node, took.Round(time.Millisecond), err))
	}
}

// TestNodesDatabaseRestart: PostgreSQL is stopped and started again while
// both nodes rotate refresh tokens, redeem codes and issue
// client_credentials tokens. While it is down, what needs the database
// is answered 503 temporarily_unavailable (never a 500, never slower than
// the configured timeouts) and both gates keep verifying; after it is
// back both nodes serve again within a few seconds without a restart;
// and a 503 wrote nothing: the refresh token or code it refused works
// afterwards.
func TestNodesDatabaseRestart(t *testing.T) {
	c := startCluster(t)
	pre, err := c.a.clientCredentials()
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*clusterNode{c.a, c.b}
	// Two chains and two codes per node, made while the database is up.
	type chain struct {
		node *clusterNode
		rt   string
	}
	var chains []*chain
	var codes []struct {
		node           *clusterNode
		code, verifier string
	}
	for _, n := range nodes {
		for range 2 {
			code, verifier := n.code(t)
			tok, err := n.exchange(code, verifier)
			if err != nil {
				t.Fatal(err)
			}
			chains = append(chains, &chain{n, tok.RefreshToken})
			code, verifier = n.code(t)
			codes = append(codes, struct {
				node           *clusterNode
				code, verifier string
			}{n, code, verifier})
		}
	}

	out := &dbOutage{unavailable: map[string]int{}, ok: map[string]int{}}
	// limit is the longest a request may take: connect_timeout 1s plus
	// tx_timeout 3s, with slack for this shared machine.
	const limit = 6 * time.Second
	var down atomic.Bool
	var upAt atomic.Int64 // unix nanos when the database was back
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// recovered records, per node, the first success after the database
	// came back.
	var recMu sync.Mutex
	recovered := map[string]time.Duration{}
	success := func(n *clusterNode) {
		if at := upAt.Load(); at != 0 {
			recMu.Lock()
			if _, ok := recovered[n.name]; !ok {
				recovered[n.name] = time.Since(time.Unix(0, at))
			}
			recMu.Unlock()
		}
	}
	// Each chain rotates in a loop; after a 503 it presents the same
	// refresh token again, which must work once the database is back.
	for _, ch := range chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now()
				tok, err := ch.node.refresh(ch.rt)
				out.note("refresh", ch.node.name, time.Since(began), err)
				switch {
				case err == nil:
					ch.rt = tok.RefreshToken
					success(ch.node)
				case isInvalidGrant(err):
					// The store answers 503 without retrying only when a COMMIT
					// went out unanswered; pgtest's Down is a fast shutdown, in
					// which PostgreSQL answers the COMMIT a session is running
					// before it ends the session, so every 503 here wrote
					// nothing and the token must still work.
					t.Errorf("node %s refused a refresh token whose every earlier presentation was answered 503: a 503 rotated it (partial write)", ch.node.name)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	// Each code is presented until it is redeemed: a 503 must not spend it.
	for _, cd := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !down.Load() {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			for {
				began := time.Now()
				_, err := cd.node.exchange(cd.code, cd.verifier)
				out.note("code", cd.node.name, time.Since(began), err)
				switch {
				case err == nil:
					return
				case isInvalidGrant(err):
					t.Errorf("node %s refused a code whose every earlier presentation was answered 503: a 503 spent it (partial write)", cd.node.name)
					return
				}
				select {
				case <-stop:
					t.Errorf("a code at node %s was never redeemed after the database came back", cd.node.name)
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	// client_credentials needs no stored state: a 200 or a 503, never
	// anything else.
	for _, n := range nodes {
		untilStopped(&wg, 1, stop, func() bool {
			began := time.Now()
			_, err := n.clientCredentials()
			out.note("client_credentials", n.name, time.Since(began), err)
			if err == nil {
				success(n)
			}
			time.Sleep(20 * time.Millisecond)
			return true
		})
	}

	time.Sleep(300 * time.Millisecond)
	downAt := time.Now()
	c.pg.Down()
	down.Store(true)
	t.Logf("database stopped in %s", time.Since(downAt).Round(time.Millisecond))
	// While it is down both gates keep verifying.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		for _, n := range nodes {
			n.mustPass(t, pre.AccessToken, "while the database is down")
		}
	}
	out.mu.Lock()
	during := fmt.Sprint(out.unavailable)
	var missing []string
	for _, k := range []string{"refresh A", "refresh B", "code A", "code B"} {
		if out.unavailable[k] == 0 {
			missing = append(missing, k)
		}
	}
	out.mu.Unlock()
	if len(missing) > 0 {
		t.Errorf("503 temporarily_unavailable answers while the database was down: %s, want some for each of %q", during, missing)
	}
	if err := c.pg.Up(); err != nil {
		t.Fatalf("starting the database again: %v\n%s", err, c.pg.Log())
	}
	upAt.Store(time.Now().UnixNano())
	t.Logf("database was down for %s; 503s while down: %s", time.Since(downAt).Round(time.Millisecond), during)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recMu.Lock()
		n := len(recovered)
		recMu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("full service not back within 5s of the database: recovered %v", recovered)
			break
		}
	}
	// Let every chain and code go through at least once more.
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("first success after the database came back: %v; slowest token request %s; successes in all: %v",
		recovered, out.slowest.Round(time.Millisecond), out.ok)
	for _, b := range out.bad {
		t.Errorf("token request answer neither success nor 503 temporarily_unavailable: %s", b)
	}
	if out.slowest > limit {
		t.Errorf("the slowest token request took %s, want under %s (connect_timeout + tx_timeout)", out.slowest.Round(time.Millisecond), limit)
	}
	// Each chain's newest refresh token rotates once at the other node.
	for _, ch := range chains {
		other := c.a
		if ch.node == c.a {
			other = c.b
		}
		if _, err := other.refresh(ch.rt); err != nil {
			t.Errorf("a chain's newest refresh token at node %s after the restart: %v", other.name, err)
		}
	}
	for _, n := range nodes {
		n.mustPass(t, pre.AccessToken, "after the database came back")
	}
}

// TestNodesDatabaseHangs: the database stops answering without closing
// its connections (a hung host, a partition: pgtest's Freeze). A token
// request that needs it is answered 503 temporarily_unavailable within
// the configured timeouts (a refresh runs a read and a write transaction,
// each bounded by tx_timeout 3s), never held for as long as the client
// waits; the gates keep verifying; once the database answers again, the
// refresh token the 503 refused works at the other node.
func TestNodesDatabaseHangs(t *testing.T) {
	c := startCluster(t)
	pre, err := c.a.clientCredentials()
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*clusterNode{c.a, c.b}
	rts := map[*clusterNode]string{}
	for _, n := range nodes {
		code, verifier := n.code(t)
		tok, err := n.exchange(code, verifier)
		if err != nil {
			t.Fatal(err)
		}
		rts[n] = tok.RefreshToken
	}
	if err := c.pg.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.pg.Thaw() })
	const limit = 8 * time.Second
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			_, err := n.refresh(rts[n])
			took := time.Since(began)
			status, code, answered := tokenErrorCode(err)
			switch {
			case !answered:
				t.Errorf("refresh at node %s while the database hangs: no answer after %s: %v", n.name, took.Round(time.Millisecond), err)
			case status != http.StatusServiceUnavailable || code != "temporarily_unavailable":
				t.Errorf("refresh at node %s while the database hangs: %d %s, want 503 temporarily_unavailable", n.name, status, code)
			case took > limit:
				t.Errorf("refresh at node %s while the database hangs: answered after %s, want within %s (2 × tx_timeout)", n.name, took.Round(time.Millisecond), limit)
			default:
				t.Logf("refresh at node %s while the database hangs: 503 after %s", n.name, took.Round(time.Millisecond))
			}
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		n.mustPass(t, pre.AccessToken, "while the database hangs")
	}
	if err := c.pg.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	for _, n := range nodes {
		other := c.a
		if n == c.a {
			other = c.b
		}
		for {
			_, err := other.refresh(rts[n])
			if err == nil {
				break
			}
			if status, _, _ := tokenErrorCode(err); status != http.StatusServiceUnavailable || time.Since(thawed) > 5*time.Second {
				t.Errorf("node %s's refused refresh token at node %s %s after the database answers again: %v, want a rotation (the 503 wrote nothing)",
					n.name, other.name, time.Since(thawed).Round(time.Millisecond), err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("service back %s after the database answered again", time.Since(thawed).Round(time.Millisecond))
}
