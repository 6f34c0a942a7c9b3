package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/internal/dpoptest"
)

// TestDPoPReplayAcrossReload: a DPoP proof is spent once in the process,
// at the token endpoint and at the gate, before and after a config
// reload (which makes new endpoints and gates); attack round 2 of issue
// 15 found a reload forgot every spent proof.
func TestDPoPReplayAcrossReload(t *testing.T) {
	up := newUpstream(t)
	cfg := render(baseCaddyfile, storagePath(t), up.addr())
	startCaddy(t, cfg)
	k, err := dpoptest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	proof := func(c map[string]any) string {
		p, err := k.Proof(c)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := func(p string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
		req.Header.Set("DPoP", p)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	gate := func(tok, p string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, apiURL+"/orders", nil)
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", p)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	tp := proof(map[string]any{"htm": "POST", "htu": tokenURL})
	status, body := token(tp)
	tok, _ := body["access_token"].(string)
	if status != http.StatusOK || body["token_type"] != "DPoP" {
		t.Fatalf("DPoP token request: %d %v", status, body)
	}
	gp := proof(map[string]any{"htm": "GET", "htu": apiURL + "/orders", "ath": dpoptest.ATH(tok)})
	if status, b := gate(tok, gp); status != http.StatusOK {
		t.Fatalf("the gate with a fresh proof: %d %s", status, b)
	}

	next := strings.Replace(cfg, "access_token_ttl 10m", "access_token_ttl 9m", 1)
	if next == cfg {
		t.Fatal("the reload config is unchanged; Caddy would skip the reload")
	}
	if status, b, _ := loadConfig(t, next, "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, b)
	}
	if status, body := token(tp); status != http.StatusBadRequest || body["error"] != "invalid_dpop_proof" {
		t.Errorf("the token endpoint's proof again after the reload: %d %v", status, body)
	}
	if status, b := gate(tok, gp); status != http.StatusUnauthorized || !strings.Contains(b, "replay") {
		t.Errorf("the gate's proof again after the reload: %d %s", status, b)
	}
	// A fresh proof still works after the reload.
	if status, b := gate(tok, proof(map[string]any{"htm": "GET", "htu": apiURL + "/orders", "ath": dpoptest.ATH(tok)})); status != http.StatusOK {
		t.Errorf("a fresh proof after the reload: %d %s", status, b)
	}
}
