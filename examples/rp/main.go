// Command rp is a small web application that signs users in with OpenID
// Connect against the caddy-oauthgate example (Caddyfile.example). It uses
// golang.org/x/oauth2 and github.com/coreos/go-oidc/v3 unmodified, as any
// relying party would, then calls the protected legacy API with the user's
// access token.
//
//	go run ./examples/rp
//
// and open http://127.0.0.1:9083/ in a browser.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"os"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const (
	issuer   = "http://localhost:9080"
	api      = "http://localhost:9081/"
	listen   = "127.0.0.1:9083"
	clientID = "web-portal"
)

// pending holds the state, nonce and PKCE verifier of sign-ins in flight.
type pending struct {
	nonce, verifier string
}

var (
	mu       sync.Mutex
	inFlight = map[string]pending{}
)

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var page = template.Must(template.New("p").Parse(`<!doctype html><title>Example app</title>
<h1>Example app</h1>
{{if .Sub}}<p id="who">Signed in as <b>{{.Sub}}</b> ({{.Email}})</p>
<p>The legacy API behind oauth_protect answered: <code id="api">{{.API}}</code></p>
<p><a href="{{.Logout}}">Sign out</a></p>
{{else}}<p><a id="login" href="/login">Sign in with caddy-oauthgate</a></p>{{end}}`))

func main() {
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		log.Fatalf("discovery at %s failed (is `go run ./cmd/caddy run --config Caddyfile.example --envfile examples/demo.env` running?): %v", issuer, err)
	}
	secret := os.Getenv("PORTAL_SECRET")
	if secret == "" {
		secret = "portal-demo-secret"
	}
	conf := &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, Endpoint: provider.Endpoint(),
		RedirectURL: "http://" + listen + "/callback",
		Scopes:      []string{oidc.ScopeOpenID, "profile", "email", "invoices:read"},
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: clientID})

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_ = page.Execute(w, nil)
	})
	http.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		state, p := random(), pending{nonce: random(), verifier: oauth2.GenerateVerifier()}
		mu.Lock()
		inFlight[state] = p
		mu.Unlock()
		http.Redirect(w, r, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(p.verifier), oidc.Nonce(p.nonce)), http.StatusFound)
	})
	http.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mu.Lock()
		p, ok := inFlight[q.Get("state")]
		delete(inFlight, q.Get("state"))
		mu.Unlock()
		if e := q.Get("error"); e != "" || !ok {
			http.Error(w, "sign-in failed: "+e+" "+q.Get("error_description"), http.StatusBadRequest)
			return
		}
		tok, err := conf.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(p.verifier))
		if err != nil {
			http.Error(w, "code exchange failed: "+err.Error(), http.StatusBadGateway)
			return
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := verifier.Verify(r.Context(), raw)
		if err != nil || idt.Nonce != p.nonce {
			http.Error(w, fmt.Sprintf("ID token rejected: %v", err), http.StatusBadGateway)
			return
		}
		var claims struct {
			Email string `json:"email"`
		}
		_ = idt.Claims(&claims)
		// Call the legacy app through oauth_protect with the access token.
		resp, err := conf.Client(r.Context(), tok).Get(api)
		apiAnswer := ""
		if err != nil {
			apiAnswer = err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			apiAnswer = fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		_ = page.Execute(w, map[string]string{"Sub": idt.Subject, "Email": claims.Email, "API": apiAnswer,
			"Logout": issuer + "/oauth/logout?client_id=" + clientID + "&post_logout_redirect_uri=http://" + listen + "/"})
	})
	log.Printf("example app: open http://%s/ in a browser", listen)
	log.Fatal(http.ListenAndServe(listen, nil))
}
