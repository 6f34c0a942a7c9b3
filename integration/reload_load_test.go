package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestReloadUnderLoad loads a changed config ten times through the admin
// API, as `caddy reload` does, while clients hammer the token endpoint
// (client_credentials) and an oauth_protect + respond route. Not one
// request may fail, and a token issued before the reloads still passes
// after them (the peers lose grants or refuse reloads). A
// third kind of client rotates a refresh token chain throughout, so
// storage is used by requests of every config generation.
//
// Transport errors before an answer are resent and counted apart: Caddy
// itself (not this module) drops some connections on every reload on
// Linux. Each config binds its own SO_REUSEPORT socket, and closing the
// old one resets the connections still in its accept queue (EOF or
// "connection reset by peer" on a fresh connection); and the old
// server's Shutdown closes idle keep-alive connections, racing clients
// that just sent a request on one ("server closed idle connection",
// which Go resends by itself only for idempotent methods). Such a
// request was never read by any handler, so resending it is safe even
// for a refresh token: had one been served and its answer cut, the
// resend would be reuse of a rotated token and fail the test.
func TestReloadUnderLoad(t *testing.T) {
	began := time.Now()
	path := storagePath(t)
	startCaddy(t, relReloadConfig(path, "10m", "gated-0"))
	pre, err := relTokenRequest(relNoRedirects, relIssuer, relSvcID, relSvcSecret, relCCForm)
	if err != nil || pre.status != http.StatusOK {
		t.Fatalf("client_credentials before the reloads: %v %d %v", err, pre.status, pre.body)
	}
	preToken := pre.str("access_token")
	verifier := oauth2.GenerateVerifier()
	code, err := relCode(relIssuer, verifier)
	if err != nil {
		t.Fatal(err)
	}
	first, err := relTokenRequest(relNoRedirects, relIssuer, relAppID, relAppSecret, relRedeemForm(code, verifier))
	if err != nil || first.status != http.StatusOK {
		t.Fatalf("redeeming a code: %v %d %v", err, first.status, first.body)
	}
	rt := first.str("refresh_token")
	var rotations atomic.Int64

	// Clients keep their connections alive, as real ones do.
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Timeout: 10 * time.Second, Transport: transport}

	var (
		ok       atomic.Int64
		resent   atomic.Int64
		failures atomic.Int64
		mu       sync.Mutex
		samples  []string // the first few failures, for the report
	)
	fail := func(format string, args ...any) {
		failures.Add(1)
		mu.Lock()
		if len(samples) < 10 {
			samples = append(samples, fmt.Sprintf("%s: ", time.Since(began).Round(time.Millisecond))+fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	untilStopped(&wg, 4, stop, func() bool {
		a, err := relResend(&resent, func() (relTokenAnswer, error) {
			return relTokenRequest(client, relIssuer, relSvcID, relSvcSecret, relCCForm)
		})
		switch {
		case err != nil:
			fail("token endpoint: %v", err)
		case a.status != http.StatusOK || a.str("access_token") == "":
			fail("token endpoint: %d %v", a.status, a.body)
		default:
			ok.Add(1)
		}
		return true
	})
	untilStopped(&wg, 4, stop, func() bool {
		var status int
		var body []byte
		_, err := relResend(&resent, func() (relTokenAnswer, error) {
			req, _ := http.NewRequest(http.MethodGet, relGateURL, nil)
			req.Header.Set("Authorization", "Bearer "+preToken)
			resp, err := client.Do(req)
			if err != nil {
				return relTokenAnswer{}, err
			}
			defer resp.Body.Close()
			status = resp.StatusCode
			body, err = io.ReadAll(resp.Body)
			return relTokenAnswer{}, err
		})
		switch {
		case err != nil:
			fail("gated route: %v", err)
		case status != http.StatusOK || !strings.HasPrefix(string(body), "gated-"):
			fail("gated route: %d %q", status, body)
		default:
			ok.Add(1)
		}
		return true
	})
	untilStopped(&wg, 1, stop, func() bool {
		a, err := relResend(&resent, func() (relTokenAnswer, error) {
			return relTokenRequest(client, relIssuer, relAppID, relAppSecret, relRefreshForm(rt))
		})
		switch {
		case err != nil:
			fail("refresh rotation: %v", err)
		case a.status != http.StatusOK || a.str("refresh_token") == "":
			fail("refresh rotation: %d %v", a.status, a.body)
			return false // the chain is dead
		default:
			rt = a.str("refresh_token")
			rotations.Add(1)
			ok.Add(1)
		}
		return true
	})

	time.Sleep(200 * time.Millisecond)
	for i := 1; i <= 10; i++ {
		ttl := fmt.Sprintf("%dm", 10+i)
		status, body, took := loadConfig(t, relReloadConfig(path, ttl, fmt.Sprintf("gated-%d", i)), "text/caddyfile")
		if status != http.StatusOK {
			t.Errorf("reload %d: /load answered %d: %s", i, status, body)
		}
		t.Logf("reload %d took %s", i, took.Round(time.Millisecond))
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("%d requests answered 200 (%d refresh rotations), %d failed; %d resent after a connection Caddy dropped unread; in %s",
		ok.Load(), rotations.Load(), failures.Load(), resent.Load(), time.Since(began).Round(time.Millisecond))
	if n := failures.Load(); n != 0 {
		t.Errorf("%d requests failed during the reloads, want none; first ones:\n%s", n, strings.Join(samples, "\n"))
	}
	if ok.Load() < 100 || rotations.Load() < 10 {
		t.Errorf("only %d requests succeeded: was there any load?", ok.Load())
	}
	// The newest config answers, and the old token still passes it.
	req := newRequest(t, http.MethodGet, relGateURL, nil)
	req.Header.Set("Authorization", "Bearer "+preToken)
	if resp, body := httpDo(t, req); resp.StatusCode != http.StatusOK || body != "gated-10" {
		t.Errorf("after the reloads the token from before got %d %q, want 200 gated-10", resp.StatusCode, body)
	}
	a, err := relTokenRequest(relNoRedirects, relIssuer, relSvcID, relSvcSecret, relCCForm)
	if err != nil || a.status != http.StatusOK {
		t.Fatalf("client_credentials after the reloads: %v %d %v", err, a.status, a.body)
	}
	if ttl, _ := a.body["expires_in"].(float64); ttl != 20*60 {
		t.Errorf("after the reloads expires_in = %v, want 1200 (the last config's 20m)", a.body["expires_in"])
	}
}

// relReloadConfig is relConfig with Caddy's default grace period: on a
// reload, requests in flight on the old servers run to the end.
func relReloadConfig(storage, ttl, body string) string {
	return strings.Replace(relConfig(storage, ttl, body), "\tgrace_period 1ns\n", "", 1)
}

// relResend runs do, and runs it again (at most 5 times) while it fails
// on a connection that closed before any answer: see TestReloadUnderLoad.
func relResend(resent *atomic.Int64, do func() (relTokenAnswer, error)) (relTokenAnswer, error) {
	a, err := do()
	for try := 0; err != nil && relDroppedUnread(err) && try < 5; try++ {
		resent.Add(1)
		time.Sleep(10 * time.Millisecond)
		a, err = do()
	}
	return a, err
}

// relDroppedUnread reports a connection closed or reset before an answer.
func relDroppedUnread(err error) bool {
	return neverServed(err) || strings.Contains(err.Error(), "server closed idle connection")
}
