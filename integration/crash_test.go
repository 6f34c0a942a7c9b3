package integration

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// crashBinary builds ./cmd/caddy once per run, into the run's temporary
// directory (TestMain removes it), for tests that need a child process.
var crashBinary = sync.OnceValues(func() (string, error) {
	dir := filepath.Dir(os.Getenv("XDG_DATA_HOME"))
	bin := filepath.Join(dir, "caddy-oauthgate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/oauthgate/caddy-oauthgate/cmd/caddy").CombinedOutput()
	if err != nil {
		return "", &buildError{err, string(out)}
	}
	return bin, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build ./cmd/caddy: " + e.err.Error() + "\n" + e.out }

const (
	crashIssuer = "http://localhost:19600"
	crashGate   = "http://localhost:19601/"
)

// crashChild is one run of the built caddy as a child process.
type crashChild struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startCrashChild starts the binary on the Caddyfile at cfg, with its
// own data and config directories under home, and waits until the
// authorization server at issuer answers.
func startCrashChild(t *testing.T, bin, cfg, home, logName, issuer string) *crashChild {
	t.Helper()
	logf, err := os.Create(filepath.Join(home, logName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := crashCommand(context.Background(), bin, cfg, home)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &crashChild{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.kill(t) })
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-c.done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("caddy exited during start:\n%s", b)
		default:
		}
		resp, err := relNoRedirects.Get(issuer + "/oauth/jwks")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("caddy did not answer at %s within 15s (%v):\n%s", issuer, err, b)
		}
	}
}

// crashCommand is `caddy run` of the binary on the Caddyfile at cfg,
// with its own data and config directories under home.
func crashCommand(ctx context.Context, bin, cfg, home string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	return cmd
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *crashChild) kill(t *testing.T) {
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Errorf("SIGKILL: %v", err)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("caddy still running 10s after SIGKILL")
	}
}

// crashCode is an authorization code a client holds.
type crashCode struct{ code, verifier string }

// awaitLoad waits until the load has acknowledged at least 10 codes and
// rotated refresh tokens; when it does not get going within, it stops
// the load and fails the test, with logs() (a server's log) when given.
func (l *crashLedger) awaitLoad(t *testing.T, within time.Duration, rotated int, stop chan struct{}, wg *sync.WaitGroup, logs func() string) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		enough := len(l.codes) >= 10 && l.rotated >= rotated
		l.mu.Unlock()
		if enough {
			return
		}
		if time.Now().After(deadline) || t.Failed() {
			close(stop)
			wg.Wait()
			log := ""
			if logs != nil {
				log = logs()
			}
			t.Fatalf("the load did not get going within %s (issued %d, rotated %d)\n%s", within, l.issued, l.rotated, log)
		}
	}
}

// crashLedger is what the clients were told, per the server's answers
// that reached them before the crash.
type crashLedger struct {
	mu sync.Mutex
	// codes were acknowledged (302 with the code) and never presented.
	codes []crashCode
	// chains maps a chain id to its newest acknowledged refresh token,
	// for chains whose newest token was never presented.
	chains map[int]string
	// doubtCodes and doubtRefresh were presented, but the answer never
	// arrived: the server may or may not have spent them.
	doubtCodes   []crashCode
	doubtRefresh []string
	// counts of acknowledged operations, for the log
	issued, redeemed, rotated int
}

// TestCrashUnderLoad kills a child Caddy with SIGKILL while clients get
// codes, redeem them and rotate refresh tokens, then restarts it on the
// same storage file. The design says whatever a client must use
// later is committed before the answer goes out: so every code and
// newest refresh token a client was handed works exactly once after the
// restart, the signing key is the same, and an access token from before
// the crash still passes oauth_protect.
func TestCrashUnderLoad(t *testing.T) {
	began := time.Now()
	bin, err := crashBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("caddy binary ready after %s", time.Since(began).Round(time.Millisecond))

	home := t.TempDir()
	cfg := filepath.Join(home, "Caddyfile")
	caddyfile := relRender(filepath.Join(home, "oauth.db"), "localhost:19690", "19602", "19603", "19600", "19601", "10m", "crash-ok")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	child := startCrashChild(t, bin, cfg, home, "caddy-1.log", crashIssuer)
	kids := crashKids(t, crashIssuer)
	pre, err := relTokenRequest(relNoRedirects, crashIssuer, relSvcID, relSvcSecret, relCCForm)
	if err != nil || pre.status != http.StatusOK || pre.str("access_token") == "" {
		t.Fatalf("client_credentials before the crash: %v %d %v", err, pre.status, pre.body)
	}
	preToken := pre.str("access_token")
	crashAssertGate(t, crashGate, preToken, "before the crash")

	// Load: code workers sign in, redeem some codes and rotate their
	// chains; client_credentials workers get access tokens.
	ledger := &crashLedger{chains: map[int]string{}}
	loadBegan := time.Now()
	var killed atomic.Bool
	var chainIDs atomic.Int32
	var ccTokens atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// failed reports an error seen before the kill; after it, errors are
	// expected and end the worker.
	failed := func(what string, err error) {
		if !killed.Load() {
			t.Errorf("%s before the kill: %v", what, err)
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []int // chains this worker rotates
			for {
				select {
				case <-stop:
					return
				default:
				}
				// A new code.
				verifier := oauth2.GenerateVerifier()
				code, err := relCode(crashIssuer, verifier)
				if err != nil {
					failed("getting a code", err)
					return
				}
				ledger.mu.Lock()
				ledger.codes = append(ledger.codes, crashCode{code, verifier})
				ledger.issued++
				ledger.mu.Unlock()

				// Redeem every other code: take it out of the unspent set
				// before presenting it.
				if rng.IntN(2) == 0 {
					ledger.mu.Lock()
					cc := ledger.codes[len(ledger.codes)-1]
					ledger.codes = ledger.codes[:len(ledger.codes)-1]
					ledger.mu.Unlock()
					a, err := relTokenRequest(relNoRedirects, crashIssuer, relAppID, relAppSecret, relRedeemForm(cc.code, cc.verifier))
					if err != nil {
						ledger.mu.Lock()
						ledger.doubtCodes = append(ledger.doubtCodes, cc)
						ledger.mu.Unlock()
						failed("redeeming a code", err)
						return
					}
					if a.status != http.StatusOK || a.str("refresh_token") == "" {
						t.Errorf("redeeming an unspent code: %d %v", a.status, a.body)
						return
					}
					id := int(chainIDs.Add(1))
					ledger.mu.Lock()
					ledger.chains[id] = a.str("refresh_token")
					ledger.redeemed++
					ledger.mu.Unlock()
					mine = append(mine, id)
				}
				// Rotate one of this worker's chains.
				if len(mine) == 0 {
					continue
				}
				id := mine[rng.IntN(len(mine))]
				ledger.mu.Lock()
				rt := ledger.chains[id]
				delete(ledger.chains, id)
				ledger.mu.Unlock()
				a, err := relTokenRequest(relNoRedirects, crashIssuer, relAppID, relAppSecret, relRefreshForm(rt))
				if err != nil {
					ledger.mu.Lock()
					ledger.doubtRefresh = append(ledger.doubtRefresh, rt)
					ledger.mu.Unlock()
					failed("rotating a refresh token", err)
					return
				}
				if a.status != http.StatusOK || a.str("refresh_token") == "" {
					t.Errorf("rotating the newest refresh token of a chain: %d %v", a.status, a.body)
					return
				}
				ledger.mu.Lock()
				ledger.chains[id] = a.str("refresh_token")
				ledger.rotated++
				ledger.mu.Unlock()
			}
		}()
	}
	untilStopped(&wg, 2, stop, func() bool {
		a, err := relTokenRequest(relNoRedirects, crashIssuer, relSvcID, relSvcSecret, relCCForm)
		if err != nil {
			failed("client_credentials", err)
			return false
		}
		if a.status != http.StatusOK {
			t.Errorf("client_credentials: %d %v", a.status, a.body)
			return false
		}
		ccTokens.Add(1)
		return true
	})

	// Kill at a random moment once the load has produced some state.
	ledger.awaitLoad(t, 15*time.Second, 10, stop, &wg, nil)
	time.Sleep(time.Duration(rand.IntN(700)) * time.Millisecond)
	killed.Store(true)
	killedAt := time.Now()
	child.kill(t)
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("killed after %s of load: codes issued %d, redeemed %d, rotations %d, client_credentials tokens %d; "+
		"unspent codes %d, live chains %d, in doubt: %d codes, %d refresh tokens",
		killedAt.Sub(loadBegan).Round(time.Millisecond), ledger.issued, ledger.redeemed, ledger.rotated, ccTokens.Load(),
		len(ledger.codes), len(ledger.chains), len(ledger.doubtCodes), len(ledger.doubtRefresh))

	// Restart on the same file.
	restart := time.Now()
	startCrashChild(t, bin, cfg, home, "caddy-2.log", crashIssuer)
	t.Logf("restarted in %s", time.Since(restart).Round(time.Millisecond))

	// Codes live 60s: redeem them first. Each works exactly once.
	for _, cc := range ledger.codes {
		form := relRedeemForm(cc.code, cc.verifier)
		a, err := relTokenRequest(relNoRedirects, crashIssuer, relAppID, relAppSecret, form)
		if err != nil || a.status != http.StatusOK || a.str("refresh_token") == "" {
			t.Errorf("acknowledged unspent code after the crash: %v %d %v, want 200 with a refresh token (lost?)", err, a.status, a.body)
			continue
		}
		crashAssertSpent(t, crashIssuer, form, "acknowledged code after the crash")
	}
	for id, rt := range ledger.chains {
		form := relRefreshForm(rt)
		a, err := relTokenRequest(relNoRedirects, crashIssuer, relAppID, relAppSecret, form)
		if err != nil || a.status != http.StatusOK || a.str("refresh_token") == "" {
			t.Errorf("chain %d: newest acknowledged refresh token after the crash: %v %d %v, want 200 (lost?)", id, err, a.status, a.body)
			continue
		}
		crashAssertSpent(t, crashIssuer, form, "newest refresh token after the crash")
	}
	// Presented but unanswered: the server may have spent them or not,
	// but never twice.
	for _, cc := range ledger.doubtCodes {
		crashAtMostOnce(t, relRedeemForm(cc.code, cc.verifier), "code in flight at the kill")
	}
	for _, rt := range ledger.doubtRefresh {
		crashAtMostOnce(t, relRefreshForm(rt), "refresh token in flight at the kill")
	}

	if got := crashKids(t, crashIssuer); !slices.Equal(got, kids) {
		t.Errorf("JWKS kids after the crash %q, want %q", got, kids)
	}
	crashAssertGate(t, crashGate, preToken, "after the crash")
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// crashAssertSpent presents form to issuer again: the value was just
// used, so the answer is invalid_grant.
func crashAssertSpent(t *testing.T, issuer string, form map[string][]string, what string) {
	t.Helper()
	a, err := relTokenRequest(relNoRedirects, issuer, relAppID, relAppSecret, form)
	if err != nil || a.status != http.StatusBadRequest || a.str("error") != "invalid_grant" {
		t.Errorf("%s presented a second time: %v %d %v, want 400 invalid_grant", what, err, a.status, a.body)
	}
}

// crashAtMostOnce presents form twice: at most the first succeeds.
func crashAtMostOnce(t *testing.T, form map[string][]string, what string) {
	t.Helper()
	a, err := relTokenRequest(relNoRedirects, crashIssuer, relAppID, relAppSecret, form)
	switch {
	case err != nil:
		t.Errorf("%s: %v", what, err)
	case a.status == http.StatusOK:
		crashAssertSpent(t, crashIssuer, form, what)
	case a.status != http.StatusBadRequest || a.str("error") != "invalid_grant":
		t.Errorf("%s: %d %v, want 200 or 400 invalid_grant", what, a.status, a.body)
	}
}

func crashAssertGate(t *testing.T, gate, tok, when string) {
	t.Helper()
	req := newRequest(t, http.MethodGet, gate, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, body := httpDo(t, req)
	if resp.StatusCode != http.StatusOK || body != "crash-ok" {
		t.Errorf("%s: access token at oauth_protect got %d %q, want 200 crash-ok", when, resp.StatusCode, body)
	}
}

func crashKids(t *testing.T, issuer string) []string {
	t.Helper()
	_, set := getJSON(t, issuer+"/oauth/jwks")
	keys, _ := set["keys"].([]any)
	var kids []string
	for _, k := range keys {
		m, _ := k.(map[string]any)
		kid, _ := m["kid"].(string)
		kids = append(kids, kid)
	}
	if len(kids) == 0 {
		t.Fatalf("JWKS has no keys: %v", set)
	}
	return kids
}

// untilStopped runs step in n goroutines, each calling it again until
// stop is closed or step returns false.
func untilStopped(wg *sync.WaitGroup, n int, stop <-chan struct{}, step func() bool) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !step() {
					return
				}
			}
		}()
	}
}
