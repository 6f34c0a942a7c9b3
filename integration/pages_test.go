package integration

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// pagesCaddyfile has a client with a display name, links and its own
// scope, described in the oauth block.
func pagesCaddyfile(t *testing.T, dir string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin %s
	http_port 19281
	https_port 19282
	skip_install_trust
	oauth {
		issuer %s
		storage_path %s/oauth.db
		scope_description invoices:read "Read your invoices"
		client billing {
			name "Billing portal"
			client_uri https://billing.example.com/
			policy_uri https://billing.example.com/privacy
			secret billing-secret-1234567890
			redirect_uri http://127.0.0.1/callback
			grant_types authorization_code refresh_token
			scopes openid profile email offline_access invoices:read
		}
		user alice {
			password_hash %s
		}
	}
}
http://localhost:19280 {
	oauth_server
}
`, adminAddr, signinIssuer, dir, hash)
}

// TestPagesScreenshots renders the login, consent and sign-out pages in
// Chromium at 320 px and at desktop width, saves each as a PNG in
// docs/screenshots/, and checks that the client's name and the scope
// descriptions are on screen and that nothing overflows sideways.
func TestPagesScreenshots(t *testing.T) {
	startCaddy(t, pagesCaddyfile(t, t.TempDir()))
	// The screenshots in docs/screenshots/ are made with
	// OAUTHGATE_SCREENSHOTS=../docs/screenshots; otherwise they go to a
	// temporary directory, so that a test run leaves the tree as it was.
	outDir := os.Getenv("OAUTHGATE_SCREENSHOTS")
	if outDir == "" {
		outDir = t.TempDir()
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	authorize := signinIssuer + "/oauth/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {"billing"}, "redirect_uri": {"http://127.0.0.1/callback"},
		"scope": {"openid profile email offline_access invoices:read"}, "state": {"s1"}, "login_hint": {"alice"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuzdbQOjchM"}, "code_challenge_method": {"S256"},
	}.Encode()
	for _, size := range []struct {
		name          string
		width, height int
	}{{"320", 320, 640}, {"desktop", 1280, 800}} {
		t.Run(size.name, func(t *testing.T) {
			wd := startBrowser(t)
			wd.SetViewport(size.width, size.height)
			var w int
			wd.Exec("return window.innerWidth", &w)
			if w != size.width {
				t.Fatalf("viewport is %d px wide, want %d", w, size.width)
			}
			shot := func(page string, visible ...string) {
				t.Helper()
				var overflow struct {
					ScrollWidth, InnerWidth int
					Text                    string
				}
				wd.Exec(`return {ScrollWidth: document.documentElement.scrollWidth, InnerWidth: window.innerWidth, Text: document.body.innerText}`, &overflow)
				if overflow.ScrollWidth > overflow.InnerWidth {
					t.Errorf("%s page overflows: scrollWidth %d > innerWidth %d", page, overflow.ScrollWidth, overflow.InnerWidth)
				}
				for _, v := range visible {
					if !strings.Contains(overflow.Text, v) {
						t.Errorf("%s page does not show %q; it shows:\n%s", page, v, overflow.Text)
					}
				}
				name := filepath.Join(outDir, page+"-"+size.name+".png")
				if err := os.WriteFile(name, wd.Screenshot(), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			wd.Navigate(authorize)
			wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="password"`) })
			var focused string
			wd.Exec("return document.activeElement.id", &focused)
			if focused != "password" {
				t.Errorf("with login_hint the focus is on %q, want the password", focused)
			}
			shot("login", "Billing portal asks you to sign in.", "Not alice?", "Sign in as someone else")

			wd.Type("#password", "wrong-password\n")
			wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="error"`) })
			wd.Exec("return document.activeElement.id", &focused)
			if focused != "password" {
				t.Errorf("after a failed attempt the focus is on %q, want the password", focused)
			}
			shot("login-failed", "The user name or password is wrong.")

			wd.Type("#password", "alice-password\n")
			wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="allow"`) })
			shot("consent", "Billing portal", "billing", "Website", "Privacy policy",
				"Know who you are", "See your name and basic profile", "See your email address",
				"Keep access while you are not using it", "Read your invoices")

			wd.Navigate(signinIssuer + "/oauth/logout")
			wd.WaitSource(func(src string) bool { return strings.Contains(src, `id="signout"`) })
			shot("logout", "Sign out alice from this sign-in service?", "Cancel")
		})
	}
}
