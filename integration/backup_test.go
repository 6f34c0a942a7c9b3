package integration

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Ports of the backup test (19900-19949):
//
//	19900  authorization server, issuer http://localhost:19900
//	19901  gate: oauth_protect + respond
//	19902  http_port, 19903 https_port (nothing listens)
//	19904  the child Caddy's admin API (the backup is taken through it)
const (
	backupIssuer = "http://localhost:19900"
	backupGate   = "http://localhost:19901/"
	backupAdmin  = "localhost:19904"
)

// backupCode is a code as its client saw it.
type backupCode struct {
	code, verifier string
	acked          time.Time // the 302 carrying it arrived
	presented      time.Time // sent for redemption (zero: never)
	answered       time.Time // the redemption's answer arrived (zero: none)
}

// backupChain is the refresh tokens of one grant, in order: tokens[i+1]
// was the answer to presenting tokens[i].
type backupChain struct {
	tokens    []string
	acked     []time.Time // acked[i]: tokens[i] arrived
	presented []time.Time // presented[i]: tokens[i] was sent to be rotated (zero: never)
}

// TestBackupRestoreUnderLoad takes a backup with `caddy oauth backup`
// from a child Caddy while clients get codes, redeem them, rotate refresh
// tokens and get client_credentials tokens, stops that Caddy, starts a
// new one on the restored file and checks that it holds the state as of
// the backup.
//
// The backup's read transaction began at some moment between the CLI's
// start (bStart) and its exit (bEnd). So:
//   - whatever a client was answered before bStart is in the backup;
//   - whatever a client sent after bEnd is not;
//   - between the two, either, and the test asserts only that nothing
//     works twice.
//
// For a chain, the pre-backup state is its newest token acknowledged
// before bStart. If that token was not sent again until after bEnd (or
// never), it is the live one in the backup: it rotates exactly once in
// the restored server, even though the original rotated it after the
// backup. A code acknowledged before bStart and not presented until
// after bEnd redeems exactly once; one whose redemption was answered
// before bStart is spent. The restored server has the same signing keys:
// an access token minted before the backup passes its gate.
func TestBackupRestoreUnderLoad(t *testing.T) {
	bin, err := crashBinary()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	render := func(storage string) string {
		cfg := filepath.Join(home, "Caddyfile-"+filepath.Base(filepath.Dir(storage)))
		caddyfile := relRender(storage, backupAdmin, "19902", "19903", "19900", "19901", "10m", "crash-ok") // the body crashAssertGate expects
		if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	origDir, restDir := filepath.Join(home, "original"), filepath.Join(home, "restored")
	for _, d := range []string{origDir, restDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	orig := startCrashChild(t, bin, render(filepath.Join(origDir, "oauth.db")), home, "caddy-original.log", backupIssuer)
	kids := crashKids(t, backupIssuer)
	pre, err := relTokenRequest(relNoRedirects, backupIssuer, relSvcID, relSvcSecret, relCCForm)
	if err != nil || pre.status != http.StatusOK || pre.str("access_token") == "" {
		t.Fatalf("client_credentials before the backup: %v %d %v", err, pre.status, pre.body)
	}
	preToken := pre.str("access_token")
	crashAssertGate(t, backupGate, preToken, "before the backup")

	// Load: each code worker keeps its own codes and chains.
	const workers = 4
	codes := make([][]*backupCode, workers)
	chains := make([][]*backupChain, workers)
	var rotations sync.Map // worker -> count, for the start condition
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			rotated := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				verifier := oauth2.GenerateVerifier()
				code, err := relCode(backupIssuer, verifier)
				if err != nil {
					t.Errorf("getting a code: %v", err)
					return
				}
				c := &backupCode{code: code, verifier: verifier, acked: time.Now()}
				codes[w] = append(codes[w], c)
				// Redeem every other code; keep the others unspent.
				if rng.IntN(2) == 0 {
					c.presented = time.Now()
					a, err := relTokenRequest(relNoRedirects, backupIssuer, relAppID, relAppSecret, relRedeemForm(c.code, c.verifier))
					c.answered = time.Now()
					if err != nil || a.status != http.StatusOK || a.str("refresh_token") == "" {
						t.Errorf("redeeming a fresh code: %v %d %v", err, a.status, a.body)
						return
					}
					chains[w] = append(chains[w], &backupChain{tokens: []string{a.str("refresh_token")},
						acked: []time.Time{c.answered}, presented: []time.Time{{}}})
				}
				if len(chains[w]) == 0 {
					continue
				}
				ch := chains[w][rng.IntN(len(chains[w]))]
				last := len(ch.tokens) - 1
				ch.presented[last] = time.Now()
				a, err := relTokenRequest(relNoRedirects, backupIssuer, relAppID, relAppSecret, relRefreshForm(ch.tokens[last]))
				if err != nil || a.status != http.StatusOK || a.str("refresh_token") == "" {
					t.Errorf("rotating the newest refresh token of a chain: %v %d %v", err, a.status, a.body)
					return
				}
				ch.tokens = append(ch.tokens, a.str("refresh_token"))
				ch.acked = append(ch.acked, time.Now())
				ch.presented = append(ch.presented, time.Time{})
				rotated++
				rotations.Store(w, rotated)
			}
		}()
	}
	untilStopped(&wg, 2, stop, func() bool {
		a, err := relTokenRequest(relNoRedirects, backupIssuer, relSvcID, relSvcSecret, relCCForm)
		if err != nil || a.status != http.StatusOK {
			t.Errorf("client_credentials under load: %v %d %v", err, a.status, a.body)
			return false
		}
		return true
	})
	halt := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer halt()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n := 0
		rotations.Range(func(_, v any) bool { n += v.(int); return true })
		if n >= 40 {
			break
		}
		if time.Now().After(deadline) || t.Failed() {
			halt()
			t.Fatalf("the load did not get going within 20s (%d rotations)", n)
		}
	}

	// The backup, through the CLI, mid-load.
	backupFile := filepath.Join(home, "oauth-backup.db")
	bStart := time.Now()
	out, err := exec.Command(bin, "oauth", "backup", "--address", backupAdmin, backupFile).CombinedOutput()
	bEnd := time.Now()
	if err != nil {
		halt()
		t.Fatalf("caddy oauth backup: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`^wrote backup .*oauth-backup\.db: \d+ bytes in \d`).Match(out) {
		t.Errorf("caddy oauth backup printed %q, want the file, its size and the time taken", out)
	}
	t.Logf("backup took %s: %s", bEnd.Sub(bStart).Round(time.Millisecond), bytes.TrimSpace(out))
	time.Sleep(300 * time.Millisecond) // the original goes on changing after the backup
	halt()
	if t.Failed() {
		t.FailNow()
	}
	fi, err := os.Stat(backupFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, want 0600", fi.Mode().Perm())
	}
	// On a copy: the --force backup there is of the state after the load.
	if b, err := os.ReadFile(backupFile); err != nil || os.WriteFile(backupFile+".copy", b, 0o600) != nil {
		t.Fatalf("copying the backup: %v", err)
	}
	backupAdminChecks(t, bin, backupFile+".copy")

	// Stop the original; restore into a new storage_path; start anew.
	stopChild(t, orig)
	b, err := os.ReadFile(backupFile)
	if err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(restDir, "oauth.db")
	if err := os.WriteFile(restored, b, 0o600); err != nil {
		t.Fatal(err)
	}
	startCrashChild(t, bin, render(restored), home, "caddy-restored.log", backupIssuer)

	// Same signing keys: the JWKS, a token minted before the backup, and
	// a new token's kid.
	if got := crashKids(t, backupIssuer); !slices.Equal(got, kids) {
		t.Errorf("JWKS kids of the restored server %q, want %q", got, kids)
	}
	crashAssertGate(t, backupGate, preToken, "token minted before the backup, at the restored gate")
	if a, err := relTokenRequest(relNoRedirects, backupIssuer, relSvcID, relSvcSecret, relCCForm); err != nil || a.status != http.StatusOK {
		t.Errorf("client_credentials at the restored server: %v %d %v", err, a.status, a.body)
	} else if h, _ := jwtParts(t, a.str("access_token")); !slices.Contains(kids, h["kid"].(string)) {
		t.Errorf("the restored server signs with kid %v, not one of %q", h["kid"], kids)
	}

	// Chains first: presenting a spent code below revokes the grant it
	// made (RFC 6749 §4.1.2).
	var definite, doubtful, later int
	for _, chs := range chains {
		for _, ch := range chs {
			k := -1
			for i, at := range ch.acked {
				if at.Before(bStart) {
					k = i
				}
			}
			if k < 0 {
				later++ // the grant began during or after the backup
				continue
			}
			form := relRefreshForm(ch.tokens[k])
			if p := ch.presented[k]; p.IsZero() || p.After(bEnd) {
				definite++
				a, err := relTokenRequest(relNoRedirects, backupIssuer, relAppID, relAppSecret, form)
				if err != nil || a.status != http.StatusOK || a.str("refresh_token") == "" {
					t.Errorf("newest refresh token acknowledged before the backup (token %d of %d in its chain), at the restored server: %v %d %v, want 200",
						k+1, len(ch.tokens), err, a.status, a.body)
					continue
				}
				crashAssertSpent(t, backupIssuer, form, "refresh token rotated at the restored server")
				continue
			}
			doubtful++
			backupAtMostOnce(t, form, "refresh token rotated while the backup was taken")
		}
	}
	var unspent, spent, codeDoubt int
	for _, cs := range codes {
		for _, c := range cs {
			form := relRedeemForm(c.code, c.verifier)
			switch {
			case c.acked.Before(bStart) && (c.presented.IsZero() || c.presented.After(bEnd)):
				unspent++
				a, err := relTokenRequest(relNoRedirects, backupIssuer, relAppID, relAppSecret, form)
				if err != nil || a.status != http.StatusOK || a.str("refresh_token") == "" {
					t.Errorf("code acknowledged before the backup and unspent then, at the restored server: %v %d %v, want 200", err, a.status, a.body)
					continue
				}
				crashAssertSpent(t, backupIssuer, form, "code redeemed at the restored server")
			case !c.answered.IsZero() && c.answered.Before(bStart):
				spent++
				crashAssertSpent(t, backupIssuer, form, "code redeemed before the backup")
			default:
				codeDoubt++
				backupAtMostOnce(t, form, "code issued or redeemed while the backup was taken, or after")
			}
		}
	}
	t.Logf("chains: %d rotate from their pre-backup token, %d in doubt, %d began later; codes: %d unspent, %d spent, %d in doubt or later",
		definite, doubtful, later, unspent, spent, codeDoubt)
	if definite < 5 || unspent < 5 || spent < 5 {
		t.Errorf("too little pre-backup state to check (chains %d, unspent codes %d, spent codes %d, want at least 5 each)", definite, unspent, spent)
	}
}

// backupAtMostOnce presents form to the restored server twice: at most
// the first succeeds.
func backupAtMostOnce(t *testing.T, form map[string][]string, what string) {
	t.Helper()
	a, err := relTokenRequest(relNoRedirects, backupIssuer, relAppID, relAppSecret, form)
	switch {
	case err != nil:
		t.Errorf("%s: %v", what, err)
	case a.status == http.StatusOK:
		crashAssertSpent(t, backupIssuer, form, what)
	case a.status != http.StatusBadRequest || a.str("error") != "invalid_grant":
		t.Errorf("%s: %d %v, want 200 or 400 invalid_grant", what, a.status, a.body)
	}
}

// backupAdminChecks: the CLI keeps an existing file unless --force, and
// the admin route answers GET only, as a download.
func backupAdminChecks(t *testing.T, bin, existing string) {
	t.Helper()
	before, _ := os.ReadFile(existing)
	out, err := exec.Command(bin, "oauth", "backup", "--address", backupAdmin, existing).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already exists") || !strings.Contains(string(out), "--force") {
		t.Errorf("backup over an existing file without --force: %v %s", err, out)
	}
	if after, _ := os.ReadFile(existing); !bytes.Equal(before, after) {
		t.Errorf("a refused backup changed the existing file")
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(existing), ".*tmp-*")); len(matches) > 0 {
		t.Errorf("temporary files left behind: %q", matches)
	}
	if out, err := exec.Command(bin, "oauth", "backup", "--force", "--address", backupAdmin, existing).CombinedOutput(); err != nil {
		t.Errorf("backup --force over an existing file: %v %s", err, out)
	}
	resp, body := httpDo(t, newRequest(t, http.MethodPost, "http://"+backupAdmin+"/oauth/backup", nil))
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST /oauth/backup: %d Allow %q %s, want 405 with Allow: GET", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
	resp, body = httpDo(t, newRequest(t, http.MethodGet, "http://"+backupAdmin+"/oauth/backup", nil))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="oauth-backup-`) || len(body) < 4096 {
		t.Errorf("GET /oauth/backup: %d %v, %d bytes", resp.StatusCode, resp.Header, len(body))
	}
}

// stopChild stops a child Caddy as an operator does (SIGTERM) and waits
// for it to exit.
func stopChild(t *testing.T, c *crashChild) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	select {
	case <-c.done:
	case <-ctx.Done():
		c.kill(t)
		t.Fatal("caddy did not stop within 15s of SIGTERM")
	}
}
