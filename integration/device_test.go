package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

const deviceIssuer = "http://localhost:19420"

// deviceCaddyfile runs the authorization server with a TV app (a public
// client of the device grant) and one user. The poll interval is 1 s to
// keep the test short.
func deviceCaddyfile(t *testing.T, dir string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin %s
	http_port 19421
	https_port 19422
	skip_install_trust
	oauth {
		issuer %s
		storage_path %s/oauth.db
		device_poll_interval 1s
		client tv-app {
			name "Living Room TV"
			public
			grant_types urn:ietf:params:oauth:grant-type:device_code refresh_token
			scopes openid profile read
		}
		user alice {
			password_hash %s
			claim name "Alice Liddell"
		}
	}
}
http://localhost:19420 {
	oauth_server
}
`, adminAddr, deviceIssuer, dir, hash)
}

// deviceResult is what the polling device got.
type deviceResult struct {
	tok *oauth2.Token
	err error
}

// TestDeviceFlowLikeATV drives the device grant as a TV does: a real
// third-party client (golang.org/x/oauth2's DeviceAuth and
// DeviceAccessToken, configured from discovery by go-oidc) asks for codes
// and polls from its own goroutine, while the user approves, and then
// denies, in a real headless Chromium.
func TestDeviceFlowLikeATV(t *testing.T) {
	startCaddy(t, deviceCaddyfile(t, t.TempDir()))
	// The whole flow takes longer than clientContext's 10 s.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ctx = oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, testClient), testClient)
	provider, err := oidc.NewProvider(ctx, deviceIssuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if provider.Endpoint().DeviceAuthURL != deviceIssuer+"/oauth/device_authorization" {
		t.Fatalf("discovery: device_authorization_endpoint %q", provider.Endpoint().DeviceAuthURL)
	}
	ep := provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams
	conf := &oauth2.Config{ClientID: "tv-app", Endpoint: ep, Scopes: []string{oidc.ScopeOpenID, "read"}}
	poll := func(da *oauth2.DeviceAuthResponse) <-chan deviceResult {
		ch := make(chan deviceResult, 1)
		go func() {
			tok, err := conf.DeviceAccessToken(ctx, da)
			ch <- deviceResult{tok, err}
		}()
		return ch
	}
	wait := func(ch <-chan deviceResult) deviceResult {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(60 * time.Second):
			t.Fatal("the device never got an answer")
			return deviceResult{}
		}
	}

	// Approve: the TV shows verification_uri_complete (as a QR code, say);
	// the phone opens it, the code is filled in, the user confirms it,
	// signs in and allows.
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if da.VerificationURI != deviceIssuer+"/oauth/device" || !strings.Contains(da.VerificationURIComplete, url.QueryEscape(da.UserCode)) ||
		len(da.UserCode) != 9 || da.Interval != 1 || time.Until(da.Expiry) < 9*time.Minute {
		t.Fatalf("device authorization response: %+v", da)
	}
	got := poll(da)
	wd := startBrowser(t)
	// A phone's width: nothing may overflow sideways. With
	// OAUTHGATE_SCREENSHOTS=../docs/screenshots the pages are saved there.
	wd.SetViewport(320, 640)
	shot := func(page string) {
		t.Helper()
		var o struct{ ScrollWidth, InnerWidth int }
		wd.Exec(`return {ScrollWidth: document.documentElement.scrollWidth, InnerWidth: window.innerWidth}`, &o)
		if o.ScrollWidth > o.InnerWidth {
			t.Errorf("%s page overflows at 320 px: scrollWidth %d", page, o.ScrollWidth)
		}
		if dir := os.Getenv("OAUTHGATE_SCREENSHOTS"); dir != "" {
			if err := os.WriteFile(filepath.Join(dir, page+"-320.png"), wd.Screenshot(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	wd.Navigate(da.VerificationURIComplete)
	wd.WaitSource(func(src string) bool {
		return strings.Contains(src, `id="user_code"`) && strings.Contains(src, `value="`+da.UserCode+`"`)
	})
	shot("device")
	// Filled in is not approved: the device is still waiting.
	select {
	case r := <-got:
		t.Fatalf("the device got an answer before the user confirmed: %+v", r)
	case <-time.After(2500 * time.Millisecond):
	}
	wd.Click("#continue")
	wd.WaitSource(func(src string) bool {
		return strings.Contains(src, `id="password"`) && strings.Contains(src, "Living Room TV")
	})
	wd.Type("#username", "alice")
	wd.Type("#password", "alice-password\n")
	src := wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="allow"`) })
	for _, want := range []string{"Living Room TV", "tv-app", da.UserCode, "alice", "Know who you are", "read"} {
		if !strings.Contains(src, want) {
			t.Fatalf("consent page lacks %q:\n%s", want, src)
		}
	}
	shot("device-consent")
	wd.Click("#allow")
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "Your device is connected.") })
	shot("device-connected")
	r := wait(got)
	if r.err != nil {
		t.Fatalf("DeviceAccessToken: %v", r.err)
	}
	raw, _ := r.tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "tv-app"}).Verify(ctx, raw)
	if err != nil || idt.Subject != "alice" {
		t.Fatalf("ID token: %v %v", idt, err)
	}
	if err := idt.VerifyAccessToken(r.tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	if r.tok.RefreshToken == "" {
		t.Fatal("no refresh token for a client registered for refresh_token")
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(r.tok))
	if err != nil || ui.Subject != "alice" {
		t.Fatalf("userinfo: %+v %v", ui, err)
	}
	// The TV refreshes with x/oauth2's token source.
	if next, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: r.tok.RefreshToken}).Token(); err != nil || next.AccessToken == "" {
		t.Fatalf("refresh: %v", err)
	}
	// The device code is spent.
	if again, err := conf.DeviceAccessToken(ctx, da); err == nil || retrieveError(t, err).ErrorCode != "invalid_grant" {
		t.Fatalf("second redemption: %v %v", again, err)
	}

	// Deny: another TV shows the short address and the code; the user,
	// still signed in, types it (in lower case, with a space), and denies.
	da, err = conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	got = poll(da)
	wd.Navigate(da.VerificationURI)
	wd.WaitSource(func(src string) bool {
		return strings.Contains(src, `id="user_code"`) && strings.Contains(src, `value=""`)
	})
	wd.Type("#user_code", strings.ToLower(strings.Replace(da.UserCode, "-", " ", 1))+"\n")
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="deny"`) && strings.Contains(src, da.UserCode) })
	wd.Click("#deny")
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "Access denied") })
	r = wait(got)
	var re *oauth2.RetrieveError
	if !errors.As(r.err, &re) || re.ErrorCode != "access_denied" || re.Response.StatusCode != http.StatusBadRequest {
		t.Fatalf("after deny: %v", r.err)
	}

	// A wrong code is refused on the page.
	wd.Navigate(deviceIssuer + "/oauth/device")
	wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="user_code"`) })
	wd.Type("#user_code", "BBBB-BBBB\n")
	wd.WaitSource(func(src string) bool { return strings.Contains(src, "That code is wrong or has expired.") })
}
