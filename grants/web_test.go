package grants

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An operator replaces the login page and the logo; pages not replaced
// keep the built-in ones, and a broken template fails the config load.
func TestCustomTemplatesAndLogo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	custom := `{{define "content"}}<p id="acme">ACME sign-in for {{.Client}}</p><form method="post" action="{{.Action}}">` +
		`<input type="hidden" name="state" value="{{.State}}"><input type="hidden" name="csrf" value="{{.CSRF}}"></form>{{end}}{{template "layout" .}}`
	if err := os.WriteFile(filepath.Join(dir, "login.html"), []byte(custom), 0o600); err != nil {
		t.Fatal(err)
	}
	logo := []byte("\x89PNG\r\n\x1a\n0000")
	if err := os.WriteFile(filepath.Join(dir, "logo.png"), logo, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, withConfig(func(c *Config) {
		c.Web.TemplatesDir = dir
		c.Web.LogoFile = filepath.Join(dir, "logo.png")
	}))
	w := httptest.NewRecorder()
	e.web.render(w, http.StatusOK, "login.html", pageData{Title: "Sign in", Client: "c-web<script>"})
	body := w.Body.String()
	if !strings.Contains(body, `<p id="acme">ACME sign-in for c-web&lt;script&gt;</p>`) {
		t.Fatalf("custom login page not used or not escaped:\n%s", body)
	}
	w = httptest.NewRecorder()
	e.web.render(w, http.StatusOK, "consent.html", pageData{Title: "Allow access", Client: "c-web"})
	if !strings.Contains(w.Body.String(), `id="allow"`) {
		t.Fatalf("consent page should stay the built-in one:\n%s", w.Body.String())
	}
	w = httptest.NewRecorder()
	e.serveAsset(w, httptest.NewRequest(http.MethodGet, "/oauth/assets/logo", nil))
	if w.Body.String() != string(logo) || w.Header().Get("Content-Type") != "image/png" {
		t.Fatalf("logo = %q (%s)", w.Body.String(), w.Header().Get("Content-Type"))
	}

	if err := os.WriteFile(filepath.Join(dir, "error.html"), []byte(`{{define "content"}}{{.Nope`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Issuer: testIssuer, AccessTokenTTL: testTTL, Web: WebConfig{TemplatesDir: dir}}
	if _, err := NewEngine(cfg); err == nil || !strings.Contains(err.Error(), "error.html") {
		t.Fatalf("a broken template loaded: %v", err)
	}
}

// The sign-in, consent and sign-out forms are capped like POST
// /oauth/authorize: a larger body is 413, declared or chunked, not 400.
func TestFormPostBodyCapped(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	for _, path := range []string{AuthorizePath + "/login", AuthorizePath + "/consent", LogoutPath} {
		for _, chunked := range []bool{false, true} {
			body := "csrf=x&pad=" + strings.Repeat("a", 9<<20)
			r, _ := http.NewRequest(http.MethodPost, "https://as.test"+path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if chunked {
				r.ContentLength = -1
			}
			if rec := newBrowser(t, e).do(r); rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("%s chunked=%v: %d-byte body: %d, want 413", path, chunked, len(body), rec.Code)
			}
		}
	}
}
